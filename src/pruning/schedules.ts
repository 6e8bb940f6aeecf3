/**
 * Pruning schedules of TensorFlow Model Optimization (`tfmot.sparsity.keras`): at which optimizer steps the
 * masks are recomputed, and to what sparsity.
 */

/** Raised for a bad pruning setting; names the field. */
export class PruningConfigError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'PruningConfigError';
  }
}

/** When and how much to prune. `step` is the number of optimizer steps taken before the batch. */
export interface PruningSchedule {
  /** Whether the masks are recomputed at `step`, and the sparsity they get then. */
  at(step: number): { prune: boolean; sparsity: number };
  /** The schedule's settings (rebuilt by {@link pruningScheduleFromConfig}). */
  config(): Record<string, unknown> & { kind: string };
}

/** Checks a sparsity is a number in [0, 1), naming `field`. */
export function checkSparsity(field: string, value: unknown): number {
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) throw new PruningConfigError(field, `sparsity must be in [0, 1), got ${JSON.stringify(value)}`);
  return value;
}

function checkSteps(kind: string, beginStep: unknown, endStep: unknown, frequency: unknown): void {
  if (!Number.isSafeInteger(beginStep) || (beginStep as number) < 0) throw new PruningConfigError(`${kind}.beginStep`, `must be a non-negative integer, got ${JSON.stringify(beginStep)}`);
  if (!Number.isSafeInteger(endStep) || ((endStep as number) !== -1 && (endStep as number) < (beginStep as number))) {
    throw new PruningConfigError(`${kind}.endStep`, `must be -1 (never ends) or an integer ≥ beginStep (${String(beginStep)}), got ${JSON.stringify(endStep)}`);
  }
  if (!Number.isSafeInteger(frequency) || (frequency as number) < 1) throw new PruningConfigError(`${kind}.frequency`, `must be a positive integer, got ${JSON.stringify(frequency)}`);
}

/** TF-MOT's `should_prune_in_step`: inside [beginStep, endStep] (endStep −1: open) and on a multiple of `frequency` from beginStep. */
function pruningTurn(step: number, beginStep: number, endStep: number, frequency: number): boolean {
  return step >= beginStep && (endStep === -1 || step <= endStep) && (step - beginStep) % frequency === 0;
}

/** Options of {@link constantSparsity}. */
export interface ConstantSparsityOptions {
  targetSparsity: number;
  /** Default 0. */
  beginStep?: number;
  /** Default -1: prune every `frequency` steps for ever. */
  endStep?: number;
  /** Default 100. */
  frequency?: number;
}

/**
 * Prunes to `targetSparsity` from `beginStep` on, every `frequency` steps (`tfmot.sparsity.keras.ConstantSparsity`).
 *
 * Usage: `pruneLowMagnitude(model, { schedule: constantSparsity({ targetSparsity: 0.8, frequency: 50 }) })`
 */
export function constantSparsity(options: ConstantSparsityOptions): PruningSchedule {
  const target = checkSparsity('constantSparsity.targetSparsity', options.targetSparsity);
  const { beginStep = 0, endStep = -1, frequency = 100 } = options;
  checkSteps('constantSparsity', beginStep, endStep, frequency);
  return {
    at: (step) => ({ prune: pruningTurn(step, beginStep, endStep, frequency), sparsity: target }),
    config: () => ({ kind: 'constantSparsity', targetSparsity: target, beginStep, endStep, frequency }),
  };
}

/** Options of {@link polynomialDecay}. */
export interface PolynomialDecayOptions {
  initialSparsity: number;
  finalSparsity: number;
  beginStep: number;
  endStep: number;
  /** Default 3. */
  power?: number;
  /** Default 100. */
  frequency?: number;
}

/**
 * Sparsity rising from `initialSparsity` to `finalSparsity` between `beginStep` and `endStep` as
 * final + (initial − final)·(1 − p)^power, p the fraction of the way (`tfmot.sparsity.keras.PolynomialDecay`).
 *
 * Usage: `polynomialDecay({ initialSparsity: 0.5, finalSparsity: 0.8, beginStep: 0, endStep: 2000, frequency: 100 })`
 */
export function polynomialDecay(options: PolynomialDecayOptions): PruningSchedule {
  const initial = checkSparsity('polynomialDecay.initialSparsity', options.initialSparsity);
  const final = checkSparsity('polynomialDecay.finalSparsity', options.finalSparsity);
  const { beginStep, endStep, power = 3, frequency = 100 } = options;
  checkSteps('polynomialDecay', beginStep, endStep, frequency);
  if (endStep === -1) throw new PruningConfigError('polynomialDecay.endStep', 'must be a step ≥ beginStep (the decay needs an end)');
  if (!(Number.isFinite(power) && power > 0)) throw new PruningConfigError('polynomialDecay.power', `must be a positive number, got ${power}`);
  return {
    at: (step) => {
      const p = endStep === beginStep ? 1 : Math.min(1, Math.max(0, (step - beginStep) / (endStep - beginStep)));
      return { prune: pruningTurn(step, beginStep, endStep, frequency), sparsity: final + (initial - final) * (1 - p) ** power };
    },
    config: () => ({ kind: 'polynomialDecay', initialSparsity: initial, finalSparsity: final, beginStep, endStep, power, frequency }),
  };
}

/** Rebuilds a schedule from its `config()` (checkpoints). Usage: `pruningScheduleFromConfig(schedule.config())` */
export function pruningScheduleFromConfig(config: Record<string, unknown>): PruningSchedule {
  const { kind, ...rest } = config;
  if (kind === 'constantSparsity') return constantSparsity(rest as unknown as ConstantSparsityOptions);
  if (kind === 'polynomialDecay') return polynomialDecay(rest as unknown as PolynomialDecayOptions);
  throw new PruningConfigError('schedule.kind', `must be 'constantSparsity' or 'polynomialDecay', got ${JSON.stringify(kind)}`);
}
