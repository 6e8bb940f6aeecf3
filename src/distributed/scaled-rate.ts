/**
 * The learning rate for N data-parallel replicas. With `allReduceGradients`, N replicas on batches of
 * b take one step per N·b rows: N times fewer steps than one process on batches of b, each on a
 * gradient with 1/N of the variance. The standard remedy is to scale the rate with the batch and warm
 * it up from the base rate, so the large early gradients do not diverge:
 *
 * - `'linear'`: rate · N (Goyal et al. 2017, "Accurate, Large Minibatch SGD"; for SGD, also used for
 *   local SGD by Lin et al. 2020), reached by a linear warm-up from the base rate;
 * - `'sqrt'`: rate · √N (the square-root rule for adaptive methods: Malladi et al. 2022, "On the SDEs
 *   and Scaling Rules for Adaptive Gradient Algorithms"; Adam's update is normalised by the gradient's
 *   scale, so its noise shrinks as √N, not N).
 *
 * The result is a schedule (a warm-up to the scaled rate, then constant), part of the optimizer's
 * configuration: every replica of a group must be built with the same N (the fingerprint checks it).
 */
import { cosineDecay, type LearningRateSchedule } from '../schedules.ts';

/** Options of {@link scaledLearningRate}. */
export interface ScaledRateOptions {
  /** Replicas whose batches one step averages (the factor the global batch grew by). */
  replicas: number;
  /** 'linear' (SGD; Goyal et al.) or 'sqrt' (Adam and other adaptive methods; Malladi et al.). */
  rule: 'linear' | 'sqrt';
  /** Steps of linear warm-up from the base rate to the scaled one (Goyal et al.: ~5% of training). */
  warmupSteps: number;
}

/**
 * The base rate scaled for `replicas` replicas by `rule`, with a linear warm-up; the base rate itself
 * for one replica.
 *
 * Usage: `adam({ learningRate: scaledLearningRate(1e-3, { replicas: 4, rule: 'sqrt', warmupSteps: 50 }) })`
 */
export function scaledLearningRate(baseRate: number, options: ScaledRateOptions): number | LearningRateSchedule {
  const { replicas, rule, warmupSteps } = options;
  if (!(Number.isInteger(replicas) && replicas >= 1)) throw new RangeError(`scaledLearningRate: replicas must be a positive integer, got ${replicas}`);
  if (rule !== 'linear' && rule !== 'sqrt') throw new RangeError(`scaledLearningRate: rule must be 'linear' or 'sqrt', got '${String(rule)}'`);
  if (!(baseRate > 0 && Number.isFinite(baseRate))) throw new RangeError(`scaledLearningRate: baseRate must be a positive number, got ${baseRate}`);
  if (replicas === 1) return baseRate;
  const peak = baseRate * (rule === 'linear' ? replicas : Math.sqrt(replicas));
  // A cosine whose floor (alpha) is its peak is flat: warm-up, then constant.
  return cosineDecay({ initialRate: baseRate, warmupSteps, warmupTarget: peak, decaySteps: 1, alpha: 1 });
}
