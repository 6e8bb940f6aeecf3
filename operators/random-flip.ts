import type { Layer, StepContext } from '../src/layer.ts';
import type { Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';
import { ImageAugmentation } from './image-augmentation.ts';

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
class RandomFlip extends ImageAugmentation {
  readonly kind = 'randomFlip';
  constructor(readonly horizontal: boolean, readonly vertical: boolean, name: string) {
    super(name);
  }

  protected override get active(): boolean {
    return this.horizontal || this.vertical;
  }

  protected draw(step: StepContext, batch: number): Tensor {
    const flags = step.alloc([batch, 2], 'int32');
    const i32 = step.engine.heap.i32;
    for (let n = 0; n < batch; n++) {
      i32[(flags.ptr >> 2) + 2 * n] = this.horizontal && step.rng.uniform() < 0.5 ? 1 : 0;
      i32[(flags.ptr >> 2) + 2 * n + 1] = this.vertical && step.rng.uniform() < 0.5 ? 1 : 0;
    }
    return flags;
  }

  /** A flip is its own inverse and its own transpose: the adjoint is the same flip. */
  protected transform(heap: { f32: Float32Array; i32: Int32Array }, src: number, dst: number, flags: Tensor, batch: number): void {
    flipImages(heap.f32, heap.i32, src, dst, flags.ptr >> 2, batch, this.H, this.W, this.C);
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
