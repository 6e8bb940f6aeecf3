import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Softmax over the last axis (max-subtracted, so large logits do not overflow).
 * Backward from the saved output: dx = y·(dy − Σ dy·y). Shape rule: identity, at least one axis.
 * For classification training prefer a linear last layer with `softmaxCrossEntropy`, which fuses
 * both and is more stable; this layer is for models that need probabilities mid-network.
 */
class Softmax implements Layer {
  readonly kind = 'softmax';
  private classes = 0;
  constructor(public name: string) {}
  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length === 0) throw new ShapeError(`${this.name} (softmax)`, `input shape ${formatShape(inputShape)} has no axis to normalise`);
    this.classes = inputShape[inputShape.length - 1]!;
    return inputShape;
  }
  parameters(): Parameter[] {
    return [];
  }
  forward(x: Tensor, step: StepContext): Tensor {
    const y = step.alloc(x.shape);
    step.engine.kernels.softmaxForward(x.ptr, y.ptr, x.size / this.classes, this.classes);
    step.save(this, y);
    return y;
  }
  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    const [y] = step.restore(this) as [Tensor];
    const dx = step.alloc(dy.shape);
    step.engine.kernels.softmaxBackward(y.ptr, dy.ptr, dx.ptr, dy.size / this.classes, this.classes);
    return dx;
  }
  config(): Record<string, unknown> {
    return {};
  }
}

/**
 * Softmax over the last axis.
 *
 * Usage: `sequential([dense(10), softmax()], { inputShape: [784] })`
 */
export function softmax(options: { name?: string } = {}): Layer {
  return new Softmax(options.name ?? '');
}

registerLayer('softmax', (c, name) => (c.done(), softmax({ name })));
