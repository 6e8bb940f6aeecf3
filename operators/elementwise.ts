import type { Kernels } from '../workers/kernel-api.ts';
import type { ElementwiseKernel } from '../workers/compute-api.ts';
import type { BuildContext, Layer, Parameter, StepContext } from '../src/layer.ts';
import type { Shape, Tensor } from '../src/tensor.ts';

/**
 * Shared plumbing of the shape-preserving activations: each activation file names its kernels and
 * whether its backward reads the forward input or the forward output. Not a public operator.
 */
export interface ActivationSpec {
  kind: string;
  forward: (k: Kernels, x: number, y: number, n: number) => void;
  backward: (k: Kernels, saved: number, dy: number, dx: number, n: number) => void;
  /** 'input' if backward needs x (relu, gelu), 'output' if it needs y (sigmoid, tanh, softmax). */
  saves: 'input' | 'output';
  config?: Record<string, unknown>;
  /**
   * The forward / backward kernels by name (`forward(x, y, n, …floats)`, `backward(saved, dy, dx, n, …floats)`):
   * when given, large tensors are split across the worker pool through `compute.elementwise` instead of
   * calling `forward` / `backward` on the calling thread (same results: elementwise).
   */
  split?: { forward: ElementwiseKernel; backward: ElementwiseKernel; floats?: readonly number[] };
}

class Activation implements Layer {
  readonly kind: string;
  constructor(private readonly spec: ActivationSpec, public name: string) {
    this.kind = spec.kind;
  }
  build(inputShape: Shape, _ctx: BuildContext): Shape {
    return inputShape;
  }
  parameters(): Parameter[] {
    return [];
  }
  forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor> {
    const y = step.alloc(x.shape);
    step.save(this, this.spec.saves === 'input' ? x : y);
    const { split } = this.spec;
    const { compute } = step.engine;
    if (split && compute.elementwise) {
      // A Promise only when the pool took a share: small tensors stay synchronous (no microtask).
      const pending = compute.elementwise(split.forward, [x.ptr, y.ptr], x.size, split.floats);
      return pending ? pending.then(() => y) : y;
    }
    this.spec.forward(step.engine.kernels, x.ptr, y.ptr, x.size);
    return y;
  }
  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null | Promise<Tensor | null> {
    if (!needInputGradient) return null;
    const [saved] = step.restore(this) as [Tensor];
    const dx = step.alloc(dy.shape);
    const { split } = this.spec;
    const { compute } = step.engine;
    if (split && compute.elementwise) {
      const pending = compute.elementwise(split.backward, [saved.ptr, dy.ptr, dx.ptr], dy.size, split.floats);
      return pending ? pending.then(() => dx) : dx;
    }
    this.spec.backward(step.engine.kernels, saved.ptr, dy.ptr, dx.ptr, dy.size);
    return dx;
  }
  config(): Record<string, unknown> {
    return this.spec.config ?? {};
  }
}

/** Builds a shape-preserving activation layer from its kernels. */
export function activation(spec: ActivationSpec, name = ''): Layer {
  return new Activation(spec, name);
}
