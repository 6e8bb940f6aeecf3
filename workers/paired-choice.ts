/**
 * A choice between two ways of running whole steps on a busy host, decided on paired figures: the step judge's
 * (workers/step-judge.ts). Way 0 is every job split across the pool, way 1 every job alone on the caller.
 *
 * Why paired: this VM's speed moves in phases of a second or so (the pair probe of the threads bench, eleventh
 * session), and a figure of one way taken in a slow phase, weighed against the other's from a fast one, picks
 * the wrong way. The {@link TwoWayChoice} it replaces did: with one core busy, the CNN's split steps ran 18%
 * faster than its alone steps in the same run (median 9.6 against 11.6 ms), yet 59% of the steps ran alone,
 * over 29 switches in 11 rounds (twelfth session, docs/PERFORMANCE.md). So the other way is only ever measured
 * between two windows of the chosen way, and the figure is its cost over theirs: a ratio taken within ~0.3 s,
 * which a phase moves little. The choice follows the median of the last RATIOS ratios.
 *
 * The margin is one-sided. Every job alone is the 1-thread engine's path, so the pool is chosen, or kept, only while
 * it is cheaper by MARGIN, and alone as soon as the pool is no cheaper. With a symmetric margin and the pool as the
 * first way, a pool up to 3% dearer held: with one core busy the LSTM and MLP b64 rows, which gain nothing there,
 * read 0.96–1.00× (LSTM) and 0.90–1.25× (MLP b64) a 1-thread engine in the runs M–S (twelfth and thirteenth sessions;
 * the A/B of the fourteenth is in docs/PERFORMANCE.md).
 *
 * Intervals as in {@link TwoWayChoice}: the other way is measured again once the last pair is older than an
 * interval that starts at `exploreMs`, doubles up to `maxExploreMs` while pairs confirm the choice, and drops to
 * `recheckMs` after a switch. A pair that contradicts the choice, which the median of three still keeps, is
 * followed by another after `recheckMs`, the interval kept. Without that second pair soon, a change of the host
 * under a settled choice was followed only two intervals later, up to 12.8 s of steps: with one core busy and the
 * worker pinned beside the busy loop, a pair read the pool 1.32× as fast as alone, the two before it (0.92 and 0.82)
 * outvoted it, and the next pair was due 2.56 s of steps later, after the placement bench's arrangement had ended
 * (fifteenth session). For the same reason, while the pool is chosen, the next pair comes soon when the median of its
 * last three windows rises by more than RISE above its level at the last pair. A change that makes the pool dearer
 * shows there at once: in the placement bench the kernel moved the worker from beside the busy loop to beside the main
 * thread, the CNN's pool windows went from 5.2–6.5 to 7.5–8.0 ms a step (alone 7.2), and the settled choice ran ~5 s
 * of the arrangement's ~8 on the dearer pool before its next pair (sixteenth session).
 * On a quiet host it is always way 0, and the ratios of a busy spell are forgotten.
 */
import { MARGIN, median, SustainedBusy, type ChoiceSettings } from './two-way-choice.ts';

/** Paired ratios the choice follows (the median of): one odd pair neither flips it nor lingers. */
export const RATIOS = 3;

/**
 * How far the median of the pool's last RATIOS windows, while it is the chosen way, may rise above its level at the
 * last pair before the next pair comes soon (see the class comment). A move of the worker between the cores raised
 * it by 30–45% (CNN, one core busy); on a steady arrangement it set off twice in ~10 s of steps, a pair each
 * (traced placement run, sixteenth session).
 */
export const RISE = 0.2;

/**
 * The way a paired ratio (alone's cost over the pool's) calls for, `chosen` being the way chosen now: alone must
 * only not be dearer; the pool must be cheaper by MARGIN (see the class comment).
 */
function bestWay(chosen: 0 | 1, ratio: number): 0 | 1 {
  return chosen === 0 ? (ratio < 1 ? 1 : 0) : ratio > 1 / (1 - MARGIN) ? 0 : 1;
}

/**
 * Usage: `const c = new PairedChoice(settings); …run a window the way c.way says (0 or 1)…;
 * c.record(msPerStep, now, contended);`
 */
export class PairedChoice {
  /** The chosen way. */
  chosen: 0 | 1 = 0;
  /** The next window runs the way not chosen, between two windows of the chosen way. */
  exploring = false;
  /** Times the choice went from way 0 to way 1 (a measurement hook). */
  switches = 0;
  /** Latest paired ratios, cost of way 1 over cost of way 0, oldest first. */
  readonly ratios: number[] = [];
  exploreMs: number;
  private readonly host = new SustainedBusy();
  /** The chosen way's window before the other way's, and the other way's, of the pair under way. */
  private before = NaN;
  private other = NaN;
  /** When the last pair was completed (or the first window was judged). */
  private pairedAt = -Infinity;
  /** The last pair contradicted the choice (which its median kept), or the chosen way's windows rose: the next pair comes after `recheckMs`. */
  private soon = false;
  /** The chosen way's latest window costs, oldest first (at most RATIOS): the pool's, watched for a rise (RISE). */
  private readonly recent: number[] = [];
  /** The median of {@link recent} at the last pair: the chosen way's level then; NaN before one. */
  private level = NaN;

  constructor(private readonly settings: ChoiceSettings) {
    this.exploreMs = settings.exploreMs;
  }

  /** The way the next window runs: the chosen way, or the other while {@link exploring}. */
  get way(): 0 | 1 {
    return this.exploring ? (this.chosen === 0 ? 1 : 0) : this.chosen;
  }

  /** Whether the host counts as busy: what the caller said at every window for SUSTAIN_MS. */
  get hostBusy(): boolean {
    return this.host.busy;
  }

  /** Records the figure of a finished window (run the way {@link way} said), then decides how the next runs. */
  record(cost: number, now: number, contended: boolean): void {
    this.host.say(contended, now);
    if (!this.host.busy) {
      this.chosen = 0;
      this.exploring = false;
      this.ratios.length = 0;
      this.before = this.other = NaN;
      this.exploreMs = this.settings.exploreMs;
      this.soon = false;
      this.recent.length = 0;
      this.level = NaN;
      return;
    }
    if (this.exploring) {
      // The other way's window: the chosen way's next closes the pair.
      this.other = cost;
      this.exploring = false;
      return;
    }
    this.recent.push(cost);
    if (this.recent.length > RATIOS) this.recent.shift();
    if (!Number.isNaN(this.other)) {
      const mine = (this.before + cost) / 2;
      this.ratios.push(this.chosen === 0 ? this.other / mine : mine / this.other);
      if (this.ratios.length > RATIOS) this.ratios.shift();
      this.other = NaN;
      this.pairedAt = now;
      const best = bestWay(this.chosen, median(this.ratios));
      // This pair alone says the other way while the median keeps the choice: the host may have changed under a
      // settled choice (the kernel moved a thread, or the host moved the vCPUs apart or together). One more pair
      // soon settles it, the interval kept (class comment).
      this.soon = best === this.chosen && bestWay(this.chosen, this.ratios.at(-1)!) !== this.chosen;
      if (best !== this.chosen) {
        if (best === 1) this.switches++;
        this.chosen = best;
        this.exploreMs = this.settings.recheckMs;
        this.recent.length = 0;
        this.level = NaN;
      } else {
        if (!this.soon) this.exploreMs = Math.min(this.settings.maxExploreMs, 2 * this.exploreMs);
        this.level = median(this.recent);
      }
      return;
    }
    // The pool's own steps turned dearer since the last pair: the host may have changed under the choice. Not alone's:
    // what makes the pool win again (the worker moved beside the other process) does not show in steps it sleeps
    // through, and alone's windows, noisier with a woken worker beside the main thread, would only buy pool windows.
    if (this.chosen === 0 && this.recent.length === RATIOS && median(this.recent) > (1 + RISE) * this.level) this.soon = true;
    if (this.ratios.length === 0 || now - this.pairedAt > (this.soon ? this.settings.recheckMs : this.exploreMs)) {
      this.before = cost;
      this.exploring = true;
    }
  }
}
