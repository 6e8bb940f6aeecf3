import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, sizeOf, type Shape, type Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Flattens each example to one axis (row-major, so NHWC [H, W, C] becomes H·W·C with the channel
 * fastest, as Keras' channels_last Flatten). A view: no copy forward or backward.
 * Shape rule: [d1, …, dk] → [d1·…·dk] (k ≥ 1).
 */
class Flatten implements Layer {
  readonly kind = 'flatten';
  private inputShape: Shape = [];
  constructor(public name: string) {}

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length === 0) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} has no axis to flatten`);
    this.inputShape = inputShape;
    return [sizeOf(inputShape)];
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, _step: StepContext): Tensor {
    return x.reshape([x.shape[0]!, sizeOf(this.inputShape)]);
  }

  backward(dy: Tensor, _step: StepContext, needInputGradient: boolean): Tensor | null {
    return needInputGradient ? dy.reshape([dy.shape[0]!, ...this.inputShape]) : null;
  }

  config(): Record<string, unknown> {
    return {};
  }
}

/**
 * Flattens images (or any per-example shape) into vectors, e.g. before a dense layer.
 *
 * Usage: `sequential([conv2d(16, 3), relu(), maxPool2d(2), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function flatten(options: { name?: string } = {}): Layer {
  return new Flatten(options.name ?? '');
}

registerLayer('flatten', (c, name) => (c.done(), flatten({ name })));
