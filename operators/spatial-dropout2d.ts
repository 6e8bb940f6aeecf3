import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';
import { dropoutMask } from './dropout.ts';

/**
 * Spatial (channel) dropout for NHWC feature maps: while training, each whole channel of each example
 * is kept with probability 1 − rate and scaled by 1/(1 − rate), else zeroed (Tompson et al. 2015;
 * Keras SpatialDropout2D). Adjacent pixels are correlated, so per-element dropout barely regularises
 * conv features; dropping channels does. The [batch, C] mask comes from the step's seeded generator
 * (one draw per example and channel, in that order) and is saved: dx = dy·mask. Inference: identity.
 * Shape rule: identity on [H, W, C].
 */
class SpatialDropout2d implements Layer {
  readonly kind = 'spatialDropout2d';
  get trainingDiffers(): boolean {
    return this.rate > 0;
  }
  private channels = 0;
  constructor(readonly rate: number, public name: string) {
    if (!(rate >= 0 && rate < 1)) throw new RangeError(`spatialDropout2d: rate must be in [0, 1), got ${rate}`);
  }

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length !== 3) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} must be [height, width, channels]`);
    this.channels = inputShape[2]!;
    return inputShape;
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    if (!step.training || this.rate === 0) return x;
    const batch = x.shape[0]!;
    const c = this.channels;
    const mask = dropoutMask(step, [batch, c], this.rate);
    const y = step.alloc(x.shape);
    scaleChannels(step.engine.heap.f32, x.ptr >> 2, mask.ptr >> 2, y.ptr >> 2, batch, x.size / batch / c, c);
    step.save(this, mask);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    if (!step.training || this.rate === 0) return dy;
    const [mask] = step.restore(this) as [Tensor];
    const batch = dy.shape[0]!;
    const dx = step.alloc(dy.shape);
    scaleChannels(step.engine.heap.f32, dy.ptr >> 2, mask.ptr >> 2, dx.ptr >> 2, batch, dy.size / batch / this.channels, this.channels);
    return dx;
  }

  config(): Record<string, unknown> {
    return { rate: this.rate };
  }
}

/** out[n, p, c] = x[n, p, c]·mask[n, c] (float indices). */
function scaleChannels(h: Float32Array, x: number, mask: number, out: number, batch: number, pixels: number, c: number): void {
  for (let n = 0; n < batch; n++) {
    const m = mask + n * c;
    for (let p = 0; p < pixels; p++) {
      const o = (n * pixels + p) * c;
      for (let i = 0; i < c; i++) h[out + o + i] = h[x + o + i]! * h[m + i]!;
    }
  }
}

/**
 * Drops whole feature-map channels while training.
 *
 * Usage: `sequential([conv2d(32, 3), relu(), spatialDropout2d(0.1), maxPool2d(2), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function spatialDropout2d(rate: number, options: { name?: string } = {}): Layer {
  return new SpatialDropout2d(rate, options.name ?? '');
}

registerLayer('spatialDropout2d', (c, name) => {
  const rate = c.number('rate');
  c.done();
  return constructLayer(c, 'rate', () => spatialDropout2d(rate, { name }));
});
