import type { Layer, StepContext } from '../src/layer.ts';
import type { Tensor } from '../src/tensor.ts';
import type { Pair } from './conv2d.ts';
import { Pool2d, registerPool2d, type Pool2dOptions } from './max-pool2d.ts';

/**
 * Average pooling: y = mean of the window's inputs inside the image (padding excluded from the count,
 * as TF does). Backward spreads dy / count over the window's taps. Shape rule: see {@link Pool2d}.
 */
class AvgPool2d extends Pool2d {
  readonly kind = 'avgPool2d';
  constructor(poolSize: Pair, options: Pool2dOptions) {
    super('avgPool2d', poolSize, options, options.name ?? '');
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const batch = x.shape[0]!;
    const y = step.alloc([batch, this.win.outH, this.win.outW, this.win.channels]);
    step.engine.kernels.avgPool2dForward(x.ptr, y.ptr, ...this.geometry(batch));
    step.save(this, x);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    const [x] = step.restore(this) as [Tensor];
    const dx = step.alloc(x.shape);
    step.engine.kernels.avgPool2dBackward(dy.ptr, dx.ptr, ...this.geometry(x.shape[0]!));
    return dx;
  }
}

/**
 * 2-D average pooling over NHWC images (default strides = poolSize).
 *
 * Usage: `sequential([conv2d(16, 3), relu(), avgPool2d(2), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function avgPool2d(poolSize: Pair = 2, options: Pool2dOptions = {}): Layer {
  return new AvgPool2d(poolSize, options);
}

registerPool2d('avgPool2d', avgPool2d);
