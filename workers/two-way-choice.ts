/**
 * A choice between two ways of doing the same thing on a busy host, by measured cost: the split judge
 * (workers/split-judge.ts) uses one per kind of job (split across the pool, or alone on the caller). The step
 * judge (workers/step-judge.ts) uses a PairedChoice (workers/paired-choice.ts), which shares this module's margin,
 * settings and busy-host reading.
 *
 * It keeps each way's cost (time per unit, smoothed over its rounds), runs the
 * cheaper, and measures the other again once its figure is older than an interval that starts at `exploreMs`,
 * doubles up to `maxExploreMs` while re-measuring confirms the choice, and drops to `recheckMs` after a switch
 * (one noisy round must not hold the worse way for long). On a quiet host it always takes the first way and
 * forgets the second's figure.
 *
 * Busy or quiet is what the caller says at each decision, held for SUSTAIN_MS before it counts: a busy-host
 * reading can flicker (other processes' CPU time is counted in 10 ms ticks; the workers' run-queue signal, the
 * fallback, fires for a moment on a quiet host when V8's helper threads run), and a choice made on a few noisy
 * rounds of a moment's reading cost up to a third of the quiet 2-thread speed (seventh session: quiet MLP b64
 * 1.04–1.06× instead of 1.3–1.4×).
 */

/** How long (ms) the host must have been said busy (or quiet) at every decision before the choice treats it so. */
export const SUSTAIN_MS = 100;
/** How much cheaper (a fraction) the other way must be for the choice to switch to it (PairedChoice: the pool only). */
export const MARGIN = 0.03;

/** Intervals (ms) of a {@link TwoWayChoice} or a PairedChoice (workers/paired-choice.ts). */
export interface ChoiceSettings {
  /** How old the other way's figure may get before it is measured again, at first. */
  readonly exploreMs: number;
  /** Longest such interval: it doubles while re-measuring confirms the choice. */
  readonly maxExploreMs: number;
  /** The interval right after a switch. */
  readonly recheckMs: number;
}

/** Weight of a round's figure in its way's smoothed cost (the rest is the cost before it). */
const WEIGHT = 0.5;

/** The median of `values` (one to a few numbers), the mean of the middle two for an even count. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Whether the host counts as busy: what the caller said at every decision for SUSTAIN_MS (see the module comment).
 *
 * Usage: `const busy = new SustainedBusy(); busy.say(contended, now); if (busy.busy) …`
 */
export class SustainedBusy {
  busy = false;
  private flipSince = NaN;

  /** The caller's word at a decision at time `now` (ms). */
  say(contended: boolean, now: number): void {
    if (contended === this.busy) this.flipSince = NaN;
    else if (Number.isNaN(this.flipSince)) this.flipSince = now;
    else if (now - this.flipSince >= SUSTAIN_MS) {
      this.busy = contended;
      this.flipSince = NaN;
    }
  }
}

/**
 * Usage: `const c = new TwoWayChoice(settings); …run a round the way c.way says (0 or 1)…; c.record(msPerUnit, now, contended);`
 */
export class TwoWayChoice {
  /** The way the next round runs: 0 (the default, always on a quiet host) or 1. */
  way: 0 | 1 = 0;
  /** Cost (time per unit) of each way, smoothed over its rounds; NaN before its first. */
  readonly cost: [number, number] = [NaN, NaN];
  /** When each way's cost was last measured. */
  readonly at: [number, number] = [-Infinity, -Infinity];
  exploreMs: number;
  /** The current round measures the way not chosen, to see whether the choice still holds. */
  exploring = false;
  /** Times the choice went from way 0 to way 1 (a measurement hook). */
  switches = 0;
  /** Whether the host counts as busy. */
  private readonly host = new SustainedBusy();

  constructor(private readonly settings: ChoiceSettings) {
    this.exploreMs = settings.exploreMs;
  }

  /** Whether the host counts as busy: what the caller said at every decision for SUSTAIN_MS. */
  get hostBusy(): boolean {
    return this.host.busy;
  }

  /** Records the cost of a finished round (run the way {@link way} said), then decides how the next round runs. */
  record(cost: number, now: number, contended: boolean): void {
    const way = this.way;
    this.host.say(contended, now);
    this.cost[way] = Number.isNaN(this.cost[way]) ? cost : (1 - WEIGHT) * this.cost[way] + WEIGHT * cost;
    this.at[way] = now;
    const before = this.way;
    const other = before === 0 ? 1 : 0;
    // The way chosen before this round (when exploring, the other one) stays unless the other is cheaper by
    // MARGIN: rounds on a busy host are noisy, and each switch costs a round of the dearer way to undo.
    const incumbent = this.exploring ? other : before;
    const challenger = incumbent === 0 ? 1 : 0;
    const best = this.cost[challenger] < (1 - MARGIN) * this.cost[incumbent] ? challenger : incumbent;
    const { recheckMs, maxExploreMs } = this.settings;
    if (!this.host.busy) {
      // A quiet host: the first way; figures of the second from a busy spell are forgotten.
      this.way = 0;
      this.cost[1] = NaN;
      this.exploring = false;
      this.exploreMs = this.settings.exploreMs;
    } else if (Number.isNaN(this.cost[0]) || Number.isNaN(this.cost[1])) {
      this.way = other; // the other way's first figure
      this.exploring = true;
    } else if (this.exploring) {
      // The round measured the other way again: check a switch again soon, a confirmed choice less and less often.
      this.exploring = false;
      this.exploreMs = best === before ? recheckMs : Math.min(maxExploreMs, 2 * this.exploreMs);
      this.way = best;
    } else if (now - this.at[other] > this.exploreMs) {
      this.way = other; // the other way's figure is stale: measure it again
      this.exploring = true;
    } else {
      if (best !== before) this.exploreMs = recheckMs; // the current way got dearer: check the switch soon too
      this.way = best;
    }
    if (before === 0 && this.way === 1) this.switches++;
  }
}
