import type { BuildContext, Layer, Parameter, StepContext } from '../src/layer.ts';
import type { Shape, Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/**
 * Inverted dropout: while training, each element is kept with probability 1 − rate and scaled by
 * 1/(1 − rate), so inference is the identity. The mask comes from the step's seeded generator and
 * is saved for backward: dx = dy·mask. Shape rule: identity.
 */
class Dropout implements Layer {
  readonly kind = 'dropout';
  get trainingDiffers(): boolean {
    return this.rate > 0;
  }
  constructor(readonly rate: number, public name: string) {
    if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout: rate must be in [0, 1), got ${rate}`);
  }
  build(inputShape: Shape, _ctx: BuildContext): Shape {
    return inputShape;
  }
  parameters(): Parameter[] {
    return [];
  }
  forward(x: Tensor, step: StepContext): Tensor {
    if (!step.training || this.rate === 0) return x;
    const mask = dropoutMask(step, x.shape, this.rate);
    const y = step.alloc(x.shape);
    multiply(step.engine.heap.f32, x.ptr >> 2, mask.ptr >> 2, y.ptr >> 2, x.size);
    step.save(this, mask);
    return y;
  }
  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    if (!step.training || this.rate === 0) return dy;
    const [mask] = step.restore(this) as [Tensor];
    const dx = step.alloc(dy.shape);
    multiply(step.engine.heap.f32, dy.ptr >> 2, mask.ptr >> 2, dx.ptr >> 2, dy.size);
    return dx;
  }
  config(): Record<string, unknown> {
    return { rate: this.rate };
  }
}

/**
 * An inverted-dropout mask of the given shape in the step's arena: each entry is 1/(1 − rate) with
 * probability 1 − rate, else 0, drawn in order from the step's seeded generator. The one mask
 * helper of dropout, spatialDropout2d (a [batch, channels] mask) and attention dropout.
 *
 * Usage: `const mask = dropoutMask(step, x.shape, 0.1);`
 */
export function dropoutMask(step: StepContext, shape: Shape, rate: number): Tensor {
  const mask = step.alloc(shape);
  const heap = step.engine.heap.f32;
  const m = mask.ptr >> 2;
  const keep = 1 - rate;
  const scale = 1 / keep;
  for (let i = 0; i < mask.size; i++) heap[m + i] = step.rng.uniform() < keep ? scale : 0;
  return mask;
}

function multiply(heap: Float32Array, a: number, b: number, out: number, n: number): void {
  for (let i = 0; i < n; i++) heap[out + i] = heap[a + i]! * heap[b + i]!;
}

/**
 * Randomly zeroes a fraction `rate` of activations while training.
 *
 * Usage: `sequential([dense(256), relu(), dropout(0.2), dense(10)], { inputShape: [784], seed: 1 })`
 */
export function dropout(rate: number, options: { name?: string } = {}): Layer {
  return new Dropout(rate, options.name ?? '');
}

registerLayer('dropout', (c, name) => {
  const rate = c.number('rate');
  c.done();
  return constructLayer(c, 'rate', () => dropout(rate, { name }));
});
