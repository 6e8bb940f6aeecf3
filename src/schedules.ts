/**
 * Learning-rate schedules: the rate as a function of the optimizer's step index (the number of
 * steps already applied, 0 for the first), looked up before each step. The formulas are Keras's.
 * A schedule is plain data (`config()`), so a checkpoint rebuilds it and a resumed run continues on
 * the same curve.
 */

/** A learning rate that depends on the step. Pass one as an optimizer's `learningRate`. */
export interface LearningRateSchedule {
  readonly kind: ScheduleKind;
  /** The rate of the step with this index (steps applied before it). */
  rateAt(step: number): number;
  /** `{ kind, ...options }`, for checkpoints; {@link scheduleFromConfig} rebuilds it. */
  config(): Record<string, unknown>;
}

type ScheduleKind = 'exponentialDecay' | 'cosineDecay' | 'piecewiseConstant';

/** Options of {@link exponentialDecay}. */
export interface ExponentialDecayOptions {
  initialRate: number;
  /** The rate is multiplied by `decayRate` every `decaySteps` steps. */
  decaySteps: number;
  decayRate: number;
  /** Decay in whole periods (a staircase) instead of continuously. Default false. */
  staircase?: boolean;
}

/** Options of {@link cosineDecay}. */
export interface CosineDecayOptions {
  /** The rate at step 0 (the start of the warm-up when there is one). */
  initialRate: number;
  /** Steps of the cosine from the peak rate down to `alpha` × peak (after the warm-up). */
  decaySteps: number;
  /** Fraction of the peak rate the decay ends at and stays at. Default 0. */
  alpha?: number;
  /** Steps of linear warm-up from `initialRate` to `warmupTarget` before the decay. Default 0. */
  warmupSteps?: number;
  /** The peak rate reached by the warm-up; required when `warmupSteps` > 0. */
  warmupTarget?: number;
}

/** Options of {@link piecewiseConstant}. */
export interface PiecewiseConstantOptions {
  /** Increasing step indices where the rate changes. */
  boundaries: number[];
  /** One more value than boundaries: `values[i]` holds for steps in (boundaries[i − 1], boundaries[i]]. */
  values: number[];
}

function rate(kind: string, field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new RangeError(`${kind}: ${field} must be a finite number ≥ 0, got ${JSON.stringify(value)}`);
  return value;
}

function steps(kind: string, field: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new RangeError(`${kind}: ${field} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * `initialRate · decayRate^(step / decaySteps)` (the exponent floored with `staircase`).
 *
 * Usage: `sgd({ learningRate: exponentialDecay({ initialRate: 0.1, decaySteps: 1000, decayRate: 0.5 }), momentum: 0.9 })`
 */
export function exponentialDecay(options: ExponentialDecayOptions): LearningRateSchedule {
  const kind = 'exponentialDecay';
  const initialRate = rate(kind, 'initialRate', options.initialRate);
  const decaySteps = steps(kind, 'decaySteps', options.decaySteps, 1);
  const decayRate = rate(kind, 'decayRate', options.decayRate);
  if (decayRate === 0) throw new RangeError(`${kind}: decayRate must be > 0, got 0`);
  const staircase = options.staircase ?? false;
  if (typeof staircase !== 'boolean') throw new RangeError(`${kind}: staircase must be a boolean, got ${JSON.stringify(staircase)}`);
  return {
    kind,
    rateAt: (step) => {
      const periods = step / decaySteps;
      return initialRate * decayRate ** (staircase ? Math.floor(periods) : periods);
    },
    config: () => ({ kind, initialRate, decaySteps, decayRate, staircase }),
  };
}

/**
 * Cosine decay (Loshchilov & Hutter's SGDR without restarts) from the peak rate to `alpha` × peak
 * over `decaySteps`, after an optional linear warm-up from `initialRate` to `warmupTarget`.
 *
 * Usage: `adam({ learningRate: cosineDecay({ initialRate: 0, warmupSteps: 500, warmupTarget: 3e-4, decaySteps: 9500 }) })`
 */
export function cosineDecay(options: CosineDecayOptions): LearningRateSchedule {
  const kind = 'cosineDecay';
  const initialRate = rate(kind, 'initialRate', options.initialRate);
  const decaySteps = steps(kind, 'decaySteps', options.decaySteps, 1);
  const alpha = rate(kind, 'alpha', options.alpha ?? 0);
  if (alpha > 1) throw new RangeError(`${kind}: alpha must be in [0, 1], got ${alpha}`);
  const warmupSteps = steps(kind, 'warmupSteps', options.warmupSteps ?? 0, 0);
  if (warmupSteps > 0 && options.warmupTarget === undefined) throw new RangeError(`${kind}: warmupSteps ${warmupSteps} needs a warmupTarget (the peak rate)`);
  const warmupTarget = options.warmupTarget === undefined ? null : rate(kind, 'warmupTarget', options.warmupTarget);
  const peak = warmupTarget ?? initialRate;
  return {
    kind,
    rateAt: (step) => {
      if (step < warmupSteps) return initialRate + ((peak - initialRate) * step) / warmupSteps;
      const progress = Math.min(step - warmupSteps, decaySteps) / decaySteps;
      return peak * ((1 - alpha) * 0.5 * (1 + Math.cos(Math.PI * progress)) + alpha);
    },
    config: () => ({ kind, initialRate, decaySteps, alpha, warmupSteps, ...(warmupTarget === null ? {} : { warmupTarget }) }),
  };
}

/**
 * A rate that is constant between boundaries: `values[0]` up to and including step
 * `boundaries[0]`, then `values[1]`, and so on.
 *
 * Usage: `sgd({ learningRate: piecewiseConstant({ boundaries: [3000, 6000], values: [0.1, 0.01, 0.001] }) })`
 */
export function piecewiseConstant(options: PiecewiseConstantOptions): LearningRateSchedule {
  const kind = 'piecewiseConstant';
  if (!Array.isArray(options.boundaries) || !Array.isArray(options.values)) throw new RangeError(`${kind}: boundaries and values must be arrays`);
  const boundaries = options.boundaries.map((b, i) => steps(kind, `boundaries[${i}]`, b, 0));
  const values = options.values.map((v, i) => rate(kind, `values[${i}]`, v));
  if (values.length !== boundaries.length + 1) throw new RangeError(`${kind}: needs one more value than boundaries, got ${values.length} values for ${boundaries.length} boundaries`);
  boundaries.forEach((b, i) => {
    if (i > 0 && b <= boundaries[i - 1]!) throw new RangeError(`${kind}: boundaries must increase, got ${boundaries[i - 1]} then ${b}`);
  });
  return {
    kind,
    rateAt: (step) => {
      let i = 0;
      while (i < boundaries.length && step > boundaries[i]!) i++;
      return values[i]!;
    },
    config: () => ({ kind, boundaries: [...boundaries], values: [...values] }),
  };
}

const SCHEDULES: Record<ScheduleKind, { fields: readonly string[]; make: (c: Record<string, unknown>) => LearningRateSchedule }> = {
  exponentialDecay: { fields: ['initialRate', 'decaySteps', 'decayRate', 'staircase'], make: (c) => exponentialDecay(c as unknown as ExponentialDecayOptions) },
  cosineDecay: { fields: ['initialRate', 'decaySteps', 'alpha', 'warmupSteps', 'warmupTarget'], make: (c) => cosineDecay(c as unknown as CosineDecayOptions) },
  piecewiseConstant: { fields: ['boundaries', 'values'], make: (c) => piecewiseConstant(c as unknown as PiecewiseConstantOptions) },
};

/**
 * Rebuilds a schedule from its `config()` (checkpoint loading); an unknown kind or field, or a bad
 * value, is a RangeError naming it.
 *
 * Usage: `const schedule = scheduleFromConfig(JSON.parse(text))`
 */
export function scheduleFromConfig(config: unknown): LearningRateSchedule {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new RangeError(`a schedule config must be an object, got ${JSON.stringify(config)}`);
  const { kind, ...options } = config as Record<string, unknown>;
  if (typeof kind !== 'string' || !Object.hasOwn(SCHEDULES, kind)) throw new RangeError(`kind: unknown schedule ${JSON.stringify(kind)} (known: ${Object.keys(SCHEDULES).join(', ')})`);
  const known = SCHEDULES[kind as ScheduleKind];
  for (const field of Object.keys(options)) if (!known.fields.includes(field)) throw new RangeError(`${field}: is not an option of ${kind}`);
  return known.make(options);
}
