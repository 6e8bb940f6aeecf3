import { map, tap } from 'rxjs';
import type { GradientOperator, ParameterGradients } from './protocol.ts';

/**
 * Rescales all parameter gradients of a batch so that their global L2 norm is at most `maxNorm`
 * (as `clip_grad_norm_` in PyTorch). A reverse-stream operator.
 *
 * Usage: `model.fit({ loss, optimizer, gradientOperators: [clipGradientNorm(1)] })`
 */
export function clipGradientNorm(maxNorm: number): GradientOperator {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradientNorm: maxNorm must be > 0, got ${maxNorm}`);
  return map((g: ParameterGradients) => {
    const norm = gradientNorm(g);
    if (norm > maxNorm) for (const p of g.parameters) g.step.engine.kernels.scale(p.grad.ptr, p.grad.size, maxNorm / norm);
    return g;
  });
}

/** Global L2 norm of a batch's parameter gradients. Usage: `gradientNorm(g)` */
export function gradientNorm(g: ParameterGradients): number {
  let sum = 0;
  for (const p of g.parameters) {
    const d = p.grad.data();
    for (let i = 0; i < d.length; i++) sum += d[i]! * d[i]!;
  }
  return Math.sqrt(sum);
}

/**
 * Calls `observer` with each batch's parameter gradients before the optimizer sees them (for
 * logging gradient norms, histograms, …). The gradients are live views: copy what you keep.
 *
 * Usage: `gradientOperators: [tapGradients((g) => norms.push(gradientNorm(g)))]`
 */
export function tapGradients(observer: (g: ParameterGradients) => void): GradientOperator {
  return tap(observer);
}
