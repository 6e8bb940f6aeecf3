import { modelHost, type Model } from '../model.ts';
import { asyncGradients, type GradientOperator, type ParameterGradients } from '../reverse-stream.ts';
import type { Optimizer } from '../optimizers.ts';
import type { ReplicaGroup } from './group.ts';

/** Every parameter's gradient in one vector, in the model's parameter order. */
function flatten(g: ParameterGradients): Float32Array {
  const total = g.parameters.reduce((n, p) => n + p.grad.size, 0);
  const out = new Float32Array(total);
  let at = 0;
  for (const p of g.parameters) {
    out.set(p.grad.data(), at);
    at += p.grad.size;
  }
  return out;
}

/**
 * A reverse-stream operator that replaces each step's gradients with the rows-weighted mean of the
 * group's replicas' gradients for that step (a round through Redis; the step waits for it), so N
 * replicas on batches of b rows take the same step as one process on the N·b rows. The mean is
 * written only after every message of the round has been verified: a corrupt one fails the step
 * before the weights change. A replica missing the round timeout is left out (the round's result,
 * with `missing`, is on `group.lastRound`).
 *
 * Usage: `model.fit({ loss, optimizer, gradientOperators: [allReduceGradients(group)] })`
 */
export function allReduceGradients(group: ReplicaGroup): GradientAllReduce {
  const operator = asyncGradients(async (g: ParameterGradients) => {
    const result = await group.exchange('gradients', flatten(g), g.rows);
    let at = 0;
    for (const p of g.parameters) {
      p.grad.data().set(result.mean.subarray(at, at + p.grad.size));
      at += p.grad.size;
    }
    g.afterApply(() => group.afterUpdate());
    return g;
  });
  const idleRound = async (model: Model, optimizer: Optimizer): Promise<void> => {
    const host = modelHost(model);
    const params = host.parameters;
    const result = await group.exchange('gradients', new Float32Array(params.reduce((n, p) => n + p.grad.size, 0)), 0);
    // Nobody had rows: every replica skips the update alike (Adam would move on a zero gradient).
    if (result.rows === 0) return void (await new Promise((resolve) => setTimeout(resolve, 20)));
    let at = 0;
    for (const p of params) {
      p.grad.data().set(result.mean.subarray(at, at + p.grad.size));
      at += p.grad.size;
    }
    optimizer.apply(params, model.engine);
    host.steps++;
    group.afterUpdate();
  };
  return Object.assign(operator, { idleRound });
}

/** {@link allReduceGradients}'s operator; `idleRound` lets a replica with no batch take part in the group's round (zero rows), so it applies the same update as the others. */
export type GradientAllReduce = GradientOperator & { idleRound(model: Model, optimizer: Optimizer): Promise<void> };
