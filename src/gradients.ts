import { map, Observable, tap } from 'rxjs';
import type { Engine } from './engine.ts';
import type { Parameter } from './layer.ts';
import { ParameterGradients, type GradientOperator } from './reverse-stream.ts';

/**
 * Rescales all parameter gradients of an item so that their global L2 norm is at most `maxNorm`
 * (as `clip_grad_norm_` in PyTorch). A reverse-stream operator.
 *
 * Usage: `model.fit({ loss, optimizer, gradientOperators: [clipGradientNorm(1)] })`
 */
export function clipGradientNorm(maxNorm: number): GradientOperator {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradientNorm: maxNorm must be > 0, got ${maxNorm}`);
  return map((g: ParameterGradients) => {
    const norm = gradientNorm(g);
    if (norm > maxNorm) for (const p of g.parameters) g.engine.kernels.scale(p.grad.ptr, p.grad.size, maxNorm / norm);
    return g;
  });
}

/** Global L2 norm of an item's parameter gradients. Usage: `gradientNorm(g)` */
export function gradientNorm(g: ParameterGradients): number {
  let sum = 0;
  for (const p of g.parameters) {
    const d = p.grad.data();
    for (let i = 0; i < d.length; i++) sum += d[i]! * d[i]!;
  }
  return Math.sqrt(sum);
}

/**
 * Calls `observer` with each item's parameter gradients before the optimizer sees them (for
 * logging gradient norms, histograms, …). The gradients are live views: copy what you keep.
 *
 * Usage: `gradientOperators: [tapGradients((g) => norms.push(gradientNorm(g)))]`
 */
export function tapGradients(observer: (g: ParameterGradients) => void): GradientOperator {
  return tap(observer);
}

/**
 * Gradient accumulation: sums the gradients of `k` consecutive steps, each weighted by its share of
 * the loss terms (rows, or counted positions), and lets one optimizer step through with the sum, so
 * k batches of b rows make the same update as one batch of k·b rows. The first k − 1 steps report
 * `update: 'held'` (the next forward uses the weights as they are), the k-th 'applied'. The sums live
 * in the heap, allocated on the first step and freed when the subscription ends; a partial
 * accumulation left at the end is discarded.
 *
 * Usage: `model.fit({ loss, optimizer, gradientOperators: [accumulateGradients(4)] })`
 */
export function accumulateGradients(k: number): GradientOperator {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`accumulateGradients: k must be a positive integer, got ${k}`);
  return (source) =>
    new Observable<ParameterGradients>((subscriber) => {
      let sums: { engine: Engine; ptrs: number[] } | null = null;
      let members: ParameterGradients[] = [];
      const add = (g: ParameterGradients, params: readonly Parameter[], engine: Engine) => {
        if (!sums) {
          sums = { engine, ptrs: params.map((p) => engine.heap.alloc(p.grad.size * 4)) };
          sums.ptrs.forEach((ptr, i) => engine.kernels.fill(ptr, params[i]!.grad.size, 0));
        }
        params.forEach((p, i) => engine.kernels.axpy(p.grad.size, g.lossCount, p.grad.ptr, sums!.ptrs[i]!));
      };
      const subscription = source.subscribe({
        next: (g) => {
          const { parameters: params, engine } = g;
          add(g, params, engine);
          members.push(g);
          if (members.length < k) return g.hold();
          const count = members.reduce((s, m) => s + m.lossCount, 0);
          const rows = members.reduce((s, m) => s + m.rows, 0);
          const steps = members.reduce((s, m) => s + m.steps, 0);
          const loss = members.reduce((s, m) => s + m.loss * m.lossCount, 0) / count;
          // The sum replaces the live gradients the optimizer reads; the accumulator starts over.
          params.forEach((p, i) => {
            engine.kernels.copy(sums!.ptrs[i]!, p.grad.ptr, p.grad.size);
            engine.kernels.scale(p.grad.ptr, p.grad.size, 1 / count);
            engine.kernels.fill(sums!.ptrs[i]!, p.grad.size, 0);
          });
          const combined = new ParameterGradients(params, engine, members[0]!.firstStep, g.lastStep, steps, rows, count, loss, members);
          members = [];
          subscriber.next(combined);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
      return () => {
        subscription.unsubscribe();
        if (sums) for (const ptr of sums.ptrs) sums.engine.heap.free(ptr);
        sums = null;
      };
    });
}
