import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';

/** Options of {@link randomFlip}. */
export interface RandomFlipOptions {
  /** Mirror left-right with probability ½. Default true. */
  horizontal?: boolean;
  /** Mirror top-bottom with probability ½. Default false (wrong for clothing, digits, text). */
  vertical?: boolean;
  name?: string;
}

/**
 * Random mirroring of training images: each example is flipped left-right (and/or top-bottom) with
 * probability ½, one draw per enabled axis per example from `step.rng` (horizontal first). Features
 * only; labels untouched; inference = identity. Backward: the exact adjoint, which is the same flip of
 * dy (a flip is its own inverse and transpose). Shape rule: identity on [H, W, C].
 */
class RandomFlip implements Layer {
  readonly kind = 'randomFlip';
  private H = 0;
  private W = 0;
  private C = 0;
  constructor(readonly horizontal: boolean, readonly vertical: boolean, public name: string) {}

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length !== 3) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} must be [height, width, channels]`);
    [this.H, this.W, this.C] = inputShape as [number, number, number];
    return inputShape;
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    if (!step.training || (!this.horizontal && !this.vertical)) return x;
    const batch = x.shape[0]!;
    const flags = step.alloc([batch, 2], 'int32');
    const y = step.alloc(x.shape);
    const { f32, i32 } = step.engine.heap;
    for (let n = 0; n < batch; n++) {
      i32[(flags.ptr >> 2) + 2 * n] = this.horizontal && step.rng.uniform() < 0.5 ? 1 : 0;
      i32[(flags.ptr >> 2) + 2 * n + 1] = this.vertical && step.rng.uniform() < 0.5 ? 1 : 0;
    }
    flipImages(f32, i32, x.ptr >> 2, y.ptr >> 2, flags.ptr >> 2, batch, this.H, this.W, this.C);
    step.save(this, flags);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    if (!step.training || (!this.horizontal && !this.vertical)) return dy;
    const [flags] = step.restore(this) as [Tensor];
    const dx = step.alloc(dy.shape);
    const { f32, i32 } = step.engine.heap;
    flipImages(f32, i32, dy.ptr >> 2, dx.ptr >> 2, flags.ptr >> 2, dy.shape[0]!, this.H, this.W, this.C);
    return dx;
  }

  config(): Record<string, unknown> {
    return { horizontal: this.horizontal, vertical: this.vertical };
  }
}

/** out[n] = src[n] mirrored per the example's (horizontal, vertical) flags (element indices). */
function flipImages(f32: Float32Array, i32: Int32Array, src: number, out: number, flags: number, batch: number, H: number, W: number, C: number): void {
  for (let n = 0; n < batch; n++) {
    const fh = i32[flags + 2 * n] === 1;
    const fv = i32[flags + 2 * n + 1] === 1;
    const base = n * H * W * C;
    for (let i = 0; i < H; i++) {
      const si = fv ? H - 1 - i : i;
      const o = out + base + i * W * C;
      const s = src + base + si * W * C;
      if (!fh) {
        f32.copyWithin(o, s, s + W * C);
        continue;
      }
      for (let j = 0; j < W; j++) {
        const oj = o + j * C;
        const sj = s + (W - 1 - j) * C;
        for (let c = 0; c < C; c++) f32[oj + c] = f32[sj + c]!;
      }
    }
  }
}

/**
 * Randomly mirrors training images (identity at inference).
 *
 * Usage: `sequential([randomFlip({ horizontal: true }), conv2d(16, 3), relu(), flatten(), dense(10)], { inputShape: [32, 32, 3] })`
 */
export function randomFlip(options: RandomFlipOptions = {}): Layer {
  return new RandomFlip(options.horizontal ?? true, options.vertical ?? false, options.name ?? '');
}

registerLayer('randomFlip', (c, name) => {
  const horizontal = c.boolean('horizontal', true);
  const vertical = c.boolean('vertical', false);
  c.done();
  return randomFlip({ horizontal, vertical, name });
});
