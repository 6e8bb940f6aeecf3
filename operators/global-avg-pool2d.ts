import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * Global average pooling: y[n, c] = mean over all H·W positions of x[n, :, :, c].
 * Shape rule: [H, W, C] → [C]. Backward: dx[n, p, c] = dy[n, c] / (H·W).
 */
class GlobalAvgPool2d implements Layer {
  readonly kind = 'globalAvgPool2d';
  private pixels = 0;
  private channels = 0;
  constructor(public name: string) {}

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length !== 3) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} must be [height, width, channels]`);
    this.pixels = inputShape[0]! * inputShape[1]!;
    this.channels = inputShape[2]!;
    return [this.channels];
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const batch = x.shape[0]!;
    const y = step.alloc([batch, this.channels]);
    step.engine.kernels.globalAvgPool2dForward(x.ptr, y.ptr, batch, this.pixels, this.channels);
    step.save(this, x);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    const [x] = step.restore(this) as [Tensor];
    const dx = step.alloc(x.shape);
    step.engine.kernels.globalAvgPool2dBackward(dy.ptr, dx.ptr, x.shape[0]!, this.pixels, this.channels);
    return dx;
  }

  config(): Record<string, unknown> {
    return {};
  }
}

/**
 * Averages each channel over the whole image.
 *
 * Usage: `sequential([conv2d(32, 3), relu(), globalAvgPool2d(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function globalAvgPool2d(options: { name?: string } = {}): Layer {
  return new GlobalAvgPool2d(options.name ?? '');
}

registerLayer('globalAvgPool2d', (c, name) => (c.done(), globalAvgPool2d({ name })));
