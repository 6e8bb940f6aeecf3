import { tap } from 'rxjs';
import { modelHost, type Model } from '../model.ts';
import type { Optimizer } from '../optimizers.ts';
import type { GradientOperator, ParameterGradients } from '../reverse-stream.ts';
import type { ReplicaGroup, RoundResult } from './group.ts';

/** Options of {@link averageWeights}. */
export interface AverageWeightsOptions {
  /** Average every this many local steps (H). */
  every: number;
  /**
   * 'average' (default): the optimizer's slots (Adam's moments, SGD's velocity, the weight EMA) are
   * averaged with the weights, so after a sync every replica holds the same full state (a joiner's
   * snapshot is then exact too). 'local': each replica keeps its own slots.
   */
  optimizerState?: 'average' | 'local';
}

/** A reverse-stream operator for periodic model averaging; the averaging itself runs after the update, in `afterStep`. */
export type WeightAveraging = GradientOperator & {
  /** Runs the round due after the latest update (null when none is due; `force`: also when steps were taken since the last average). The replica driver calls it between steps. */
  afterStep(model: Model, optimizer: Optimizer, force?: boolean): Promise<RoundResult | null>;
  /** An idle replica's part in the group's next average (its weights count as a model). */
  idleRound(model: Model, optimizer: Optimizer): Promise<RoundResult>;
  readonly every: number;
};

/**
 * Periodic model averaging (local SGD): each replica takes H optimizer steps on its own batches,
 * then the replicas' weights (and, by default, optimizer state) are replaced by their mean through a
 * round in Redis. For slow links: one exchange per H steps instead of one per step. The average is
 * taken after the H-th update (between steps), so use it with {@link fitReplica}, which runs it;
 * used elsewhere, the step after a missed average fails naming it.
 *
 * Usage: `fitReplica(model, group, redis, { …, fit: { loss, optimizer, gradientOperators: [averageWeights(group, { every: 8 })] } })`
 */
export function averageWeights(group: ReplicaGroup, options: AverageWeightsOptions): WeightAveraging {
  const { every } = options;
  if (!(Number.isInteger(every) && every >= 1)) throw new RangeError(`averageWeights: every must be a positive integer, got ${every}`);
  const mode = options.optimizerState ?? 'average';
  if (mode !== 'average' && mode !== 'local') throw new RangeError(`averageWeights: optimizerState must be 'average' or 'local', got '${String(mode)}'`);
  let due = false;
  let sinceAverage = 0;
  const operator = tap<ParameterGradients>(() => {
    if (due) throw new Error(`averageWeights: the average due after ${every} steps did not run; train through fitReplica, which runs it between steps`);
    if (++sinceAverage % every === 0) due = true;
  });
  /** One round: this replica's weights (and slots) in, the group's mean out. */
  const average = async (model: Model, optimizer: Optimizer): Promise<RoundResult> => {
    due = false;
    sinceAverage = 0;
    const params = modelHost(model).parameters;
    const slots = mode === 'average' ? optimizer.state() : new Map();
    const slotNames = (name: string) => Object.keys(slots.get(name) ?? {}).sort();
    const parts: Float32Array[] = [];
    for (const p of params) parts.push(p.value.data());
    for (const p of params) for (const slot of slotNames(p.name)) parts.push(slots.get(p.name)![slot]!.data());
    const values = new Float32Array(parts.reduce((n, v) => n + v.length, 0));
    let at = 0;
    for (const v of parts) {
      values.set(v, at);
      at += v.length;
    }
    // Plain mean (every replica weighs 1): local SGD averages models, not rows.
    const result = await group.exchange('weights', values, 1);
    at = 0;
    const take = (n: number) => result.mean.subarray(at, (at += n));
    for (const p of params) p.value.data().set(take(p.value.size));
    if (mode === 'average' && slots.size > 0) {
      const restored = new Map<string, Record<string, Float32Array>>();
      for (const p of params) {
        const names = slotNames(p.name);
        if (names.length > 0) restored.set(p.name, Object.fromEntries(names.map((slot) => [slot, take(p.value.size).slice()])));
      }
      optimizer.restoreState!(params, model.engine, optimizer.iterations, restored);
    }
    group.afterUpdate();
    return result;
  };
  const afterStep = async (model: Model, optimizer: Optimizer, force = false) => (due || (force && sinceAverage > 0) ? average(model, optimizer) : null);
  const idleRound = (model: Model, optimizer: Optimizer) => average(model, optimizer);
  return Object.assign(operator, { afterStep, every, idleRound });
}
