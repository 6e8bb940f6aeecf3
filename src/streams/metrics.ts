/**
 * Per-example scores of predictions and rolling-window metrics over them (progressive
 * validation: each prediction is scored before the model learns from its label).
 */
import type { Loss } from '../losses.ts';

/** The score of one prediction. Absent fields do not apply (no accuracy for regression). */
export interface ExampleScore {
  loss?: number;
  /** 1 if correct, 0 if not (a fraction for multi-output binary classification). */
  correct?: number;
  /** Mean |y − t| over the example's outputs (regression). */
  absError?: number;
  /** Mean (y − t)² over the example's outputs (regression). */
  squaredError?: number;
}

/** Metrics over the last `window` examples. */
export interface RollingSnapshot {
  /** Examples in the window (fewer than `window` at the start). */
  count: number;
  loss?: number;
  accuracy?: number;
  mae?: number;
  rmse?: number;
}

const KEYS = ['loss', 'correct', 'absError', 'squaredError'] as const;

/**
 * Loss, accuracy, MAE and RMSE over a sliding window of the last `window` examples, in O(1) per
 * example (ring buffers with running sums, re-summed exactly once per lap so float error cannot
 * accumulate over a long stream).
 *
 * Usage: `const rolling = rollingMetrics({ window: 500 }); rolling.add({ loss: 0.3, correct: 1 }); rolling.snapshot();`
 */
export function rollingMetrics(options: { window: number }): RollingMetrics {
  return new RollingMetrics(options.window);
}

/**
 * See {@link rollingMetrics}.
 *
 * Usage: `const rolling = new RollingMetrics(500);`
 */
export class RollingMetrics {
  private readonly rings = KEYS.map(() => ({ values: new Float64Array(0), present: new Uint8Array(0), sum: 0, n: 0 }));
  private next = 0;
  private filled = 0;

  constructor(readonly window: number) {
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`rollingMetrics: window must be a positive integer, got ${window}`);
    for (const ring of this.rings) {
      ring.values = new Float64Array(window);
      ring.present = new Uint8Array(window);
    }
  }

  /** Adds one example's score (evicting the oldest when the window is full). */
  add(score: ExampleScore): void {
    const slot = this.next;
    KEYS.forEach((key, k) => {
      const ring = this.rings[k]!;
      if (ring.present[slot]) {
        ring.sum -= ring.values[slot]!;
        ring.n--;
      }
      const v = score[key];
      if (v !== undefined && Number.isFinite(v)) {
        ring.values[slot] = v;
        ring.present[slot] = 1;
        ring.sum += v;
        ring.n++;
      } else {
        ring.present[slot] = 0;
      }
    });
    this.next = (slot + 1) % this.window;
    if (this.filled < this.window) this.filled++;
    if (this.next === 0) this.resum();
  }

  private resum(): void {
    for (const ring of this.rings) {
      let sum = 0;
      for (let i = 0; i < this.window; i++) if (ring.present[i]) sum += ring.values[i]!;
      ring.sum = sum;
    }
  }

  /** The current window's metrics. */
  snapshot(): RollingSnapshot {
    const mean = (k: number) => {
      const ring = this.rings[k]!;
      return ring.n > 0 ? ring.sum / ring.n : undefined;
    };
    const out: RollingSnapshot = { count: this.filled };
    const loss = mean(0);
    const accuracy = mean(1);
    const mae = mean(2);
    const mse = mean(3);
    if (loss !== undefined) out.loss = loss;
    if (accuracy !== undefined) out.accuracy = accuracy;
    if (mae !== undefined) out.mae = mae;
    if (mse !== undefined) out.rmse = Math.sqrt(mse);
    return out;
  }
}

/**
 * Scores one example's output against its label or target, restating the loss in float64 from
 * its definition (src/losses.ts) for the three built-in losses; other losses get accuracy
 * (argmax) or MAE/RMSE only.
 *
 * Usage: `const s = scoreExample(softmaxCrossEntropy(), logitsRow, { label: 3 });`
 */
export function scoreExample(loss: Pick<Loss, 'name'>, output: ArrayLike<number>, truth: { label?: number; target?: ArrayLike<number> }): ExampleScore {
  const width = output.length;
  const score: ExampleScore = {};
  if (truth.label !== undefined && loss.name !== 'binaryCrossEntropyWithLogits') {
    let best = 0;
    let max = -Infinity;
    for (let c = 0; c < width; c++) {
      if (output[c]! > max) {
        max = output[c]!;
        best = c;
      }
    }
    score.correct = best === truth.label ? 1 : 0;
    if (loss.name === 'softmaxCrossEntropy') {
      let sum = 0;
      for (let c = 0; c < width; c++) sum += Math.exp(output[c]! - max);
      score.loss = max + Math.log(sum) - output[truth.label]!;
    }
    return score;
  }
  if (loss.name === 'binaryCrossEntropyWithLogits') {
    let sum = 0;
    let correct = 0;
    for (let i = 0; i < width; i++) {
      const x = output[i]!;
      const t = truth.target ? truth.target[i]! : truth.label!;
      sum += Math.max(x, 0) - x * t + Math.log1p(Math.exp(-Math.abs(x)));
      if (x > 0 === t >= 0.5) correct++;
    }
    score.loss = sum / width;
    score.correct = correct / width;
    return score;
  }
  if (truth.target) {
    let abs = 0;
    let sq = 0;
    for (let i = 0; i < width; i++) {
      const d = output[i]! - truth.target[i]!;
      abs += Math.abs(d);
      sq += d * d;
    }
    score.absError = abs / width;
    score.squaredError = sq / width;
    if (loss.name === 'meanSquaredError') score.loss = sq / width;
  }
  return score;
}

/**
 * Sums of scores, for a batch's mean.
 *
 * Usage: `const sums = new ScoreSums(); sums.add(score); sums.means().accuracy;`
 */
export class ScoreSums {
  private readonly sums = [0, 0, 0, 0];
  private readonly counts = [0, 0, 0, 0];
  add(score: ExampleScore): void {
    KEYS.forEach((key, k) => {
      const v = score[key];
      if (v !== undefined) {
        this.sums[k]! += v;
        this.counts[k]!++;
      }
    });
  }
  /** Means: loss, accuracy, mae, rmse (only those that applied). */
  means(): { loss?: number; accuracy?: number; mae?: number; rmse?: number } {
    const m = (k: number) => (this.counts[k]! > 0 ? this.sums[k]! / this.counts[k]! : undefined);
    const out: { loss?: number; accuracy?: number; mae?: number; rmse?: number } = {};
    const [loss, accuracy, mae, mse] = [m(0), m(1), m(2), m(3)];
    if (loss !== undefined) out.loss = loss;
    if (accuracy !== undefined) out.accuracy = accuracy;
    if (mae !== undefined) out.mae = mae;
    if (mse !== undefined) out.rmse = Math.sqrt(mse);
    return out;
  }
}
