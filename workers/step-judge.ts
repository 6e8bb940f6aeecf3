/**
 * The step judge of the worker pool (workers/pool.ts): on a busy host, whether whole steps (training or
 * inference batches, marked by the engine) run faster with the pool or with every job on the caller alone.
 *
 * The split judge (workers/split-judge.ts) times each job; it cannot see what a woken worker costs after its
 * job. On this 2-vCPU VM with a busy-loop process, a 2-thread engine's main thread waited on a run queue for
 * 8–28% of a training run against 0–11% for a 1-thread engine, although most jobs ran alone: each wake-up of
 * the third runnable thread lets the scheduler move threads between cores, at times onto the main thread's
 * (docs/PERFORMANCE.md, seventh session). Step time counts all of it. So while steps are being marked, a
 * {@link PairedChoice} between way 0, every job split, and way 1, every job alone (the workers
 * sleep), is decided on the mean wall time per step over windows of at least WINDOW_STEPS steps and WINDOW_MS:
 * the other way's window between two of the chosen way's, their ratio the figure (workers/paired-choice.ts).
 * Way 0 does not ask the split judge: its choices, made on noisy figures of single kinds, would blur the
 * comparison. On a quiet host it is always way 0.
 */
import { performance } from 'node:perf_hooks';
import { PairedChoice } from './paired-choice.ts';
import type { ChoiceSettings } from './two-way-choice.ts';

/**
 * A window (steps and ms, both at least) whose mean step time is one figure for the way it ran. Mostly the ms
 * decide: 3 steps at least, so that a model with long steps (the LSTM's take ~22 ms with one core busy) does not
 * spend 8 of them, 180 ms, on every re-measurement of the dearer way (8 steps: the LSTM's busy row 0.93×).
 */
export const WINDOW_STEPS = 3;
export const WINDOW_MS = 80;
/** Marks further apart than this (ms) are not one stream of steps: the step judge stops deciding. */
export const STEP_GAP_MS = 250;
/**
 * A step interval this many times the typical one is a pause, not a step (another model's steps, an evaluation,
 * the source waiting): the window starts again without a figure. A scheduler time slice lost inside a step (1–3
 * ms against a 1 ms step) stays well below it, and is counted.
 */
const PAUSE_FACTOR = 10;
/**
 * Windows are 80 ms, not 40 (until the twelfth session a way's cost was the median of its last three windows):
 * with one core busy, 40 ms windows of the same way varied by ±15% and the choice followed single windows (a half
 * weight), so whole steps spent most of their time alone although split steps were faster on average (in one run,
 * forced split 1.09–1.22× a 1-thread engine on three models of four, the judge 0.98–1.02×; ninth session). The ninth session's quarter
 * weight then held an outlier too long: a first split figure of 1.57 ms per step, taken as the host turned busy,
 * still weighed in after five re-measurements of 0.87–1.03 (cost 1.115 against alone's 0.81; tenth session).
 *
 * The intervals count stepping time only (see {@link StepJudge.mark}), and a confirmed choice is re-measured at most
 * every 6.4 s of it. With wall time and 1.6 s, a busy-host LSTM in the threads bench (rounds of ~0.55 s, another
 * engine's round between them) re-measured the dearer way about once a round: 40 of its 216 steps ran split, 13%
 * slower than alone (median 24.2 against 21.3 ms), which cost the row ~2.4% (twelfth session, docs/PERFORMANCE.md).
 */
const SETTINGS: ChoiceSettings = { exploreMs: 100, maxExploreMs: 6400, recheckMs: 40 };

/**
 * Usage: `const steps = new StepJudge(() => hostBusy()); steps.mark(); // at each step … if (steps.active() && steps.alone) …run the job alone…`
 */
export class StepJudge {
  readonly choice = new PairedChoice(SETTINGS);
  private windowStart = NaN;
  private windowSteps = 0;
  /** The way just changed: the step under way pays for the change and is left out of the next window. */
  private settling = false;
  private lastMark = -Infinity;
  /** Typical step interval (ms), smoothed; NaN before the first. */
  private typical = NaN;
  /**
   * Time spent stepping (ms): step intervals summed, pauses left out. The choice's clock: a way's figure ages
   * while this judge's steps run, not while the process does something else (another model's steps, the
   * source waiting), or a model trained in bursts would re-measure the dearer way at nearly every burst.
   */
  private steppingMs = 0;

  /** `contended`: whether the host is busy (the pool: workers/host-load.ts); `now`: the clock (ms), a test hook. */
  constructor(private readonly contended: () => boolean, private readonly now: () => number = () => performance.now()) {}

  /** A step begins (the previous one, if any, ended). */
  mark(): void {
    const now = this.now();
    const interval = now - this.lastMark;
    const pause = interval > STEP_GAP_MS || interval > PAUSE_FACTOR * this.typical;
    if (interval <= STEP_GAP_MS) this.typical = Number.isNaN(this.typical) ? interval : 0.9 * this.typical + 0.1 * Math.min(interval, 2 * this.typical);
    if (!pause) this.steppingMs += interval;
    if (pause || this.settling) {
      this.windowStart = now;
      this.windowSteps = 0;
      this.settling = false;
    } else if (++this.windowSteps >= WINDOW_STEPS && now - this.windowStart >= WINDOW_MS) {
      const before = this.choice.way;
      this.choice.record((now - this.windowStart) / this.windowSteps, this.steppingMs, this.contended());
      this.windowStart = now;
      this.windowSteps = 0;
      // The first step the other way wakes a sleeping worker (or lets it go to sleep) and the scheduler places
      // the threads again: a cost of the change, not of the way.
      this.settling = this.choice.way !== before;
    }
    this.lastMark = now;
  }

  /** True while steps are being marked (the last mark at most STEP_GAP_MS ago): this judge decides. */
  active(): boolean {
    return this.now() - this.lastMark <= STEP_GAP_MS;
  }

  /** Whether the host counts as busy (said so at every window for SUSTAIN_MS, workers/two-way-choice.ts). */
  get busy(): boolean {
    return this.choice.hostBusy;
  }

  /** True when running every job alone is the faster way (what it means while steps are being marked, {@link active}). */
  get alone(): boolean {
    return this.choice.way === 1;
  }
}
