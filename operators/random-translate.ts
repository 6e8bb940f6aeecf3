import type { Layer, StepContext } from '../src/layer.ts';
import type { Random } from '../src/random.ts';
import type { Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';
import { ImageAugmentation } from './image-augmentation.ts';

/**
 * out[n, i, j, :] = src[n, i − sign·sy, j − sign·sx, :] inside the image, else `fill`, with (sy, sx) the
 * example's integer shift from `shifts` (int32 pairs at element index `s`). sign = 1 moves the content
 * down/right by (sy, sx); sign = −1 with fill 0 is its adjoint (the gradient of the shift).
 */
export function shiftImages(
  f32: Float32Array, i32: Int32Array, src: number, out: number, shifts: number, batch: number, H: number, W: number,
  C: number, sign: 1 | -1, fill: number,
): void {
  for (let n = 0; n < batch; n++) {
    const sy = sign * i32[shifts + 2 * n]!;
    const sx = sign * i32[shifts + 2 * n + 1]!;
    const base = n * H * W * C;
    for (let i = 0; i < H; i++) {
      const si = i - sy;
      const rowOut = out + base + i * W * C;
      if (si < 0 || si >= H) {
        f32.fill(fill, rowOut, rowOut + W * C);
        continue;
      }
      // Columns j with 0 ≤ j − sx < W: one contiguous copy, fill on either side.
      const j0 = Math.max(0, sx);
      const j1 = Math.min(W, W + sx);
      if (j0 >= j1) {
        f32.fill(fill, rowOut, rowOut + W * C);
        continue;
      }
      f32.fill(fill, rowOut, rowOut + j0 * C);
      const rowSrc = src + base + si * W * C;
      f32.copyWithin(rowOut + j0 * C, rowSrc + (j0 - sx) * C, rowSrc + (j1 - sx) * C);
      f32.fill(fill, rowOut + j1 * C, rowOut + W * C);
    }
  }
}

/**
 * Base of the integer-shift augmentations (translate, crop): training only, features only (labels are
 * never touched), one (sy, sx) per example drawn from `step.rng` in example order, saved for backward.
 * Inference: identity. Backward: the exact adjoint of the shift (dy shifted back, zeros where the
 * forward wrote the fill value), so the layer may sit anywhere in a model.
 * Shape rule: identity on [H, W, C].
 */
export abstract class RandomShift extends ImageAugmentation {
  constructor(name: string, readonly fillValue: number) {
    super(name);
    if (!Number.isFinite(fillValue)) throw new RangeError(`fillValue must be finite, got ${fillValue}`);
  }

  /** The shift of one example (rows down, columns right). */
  protected abstract drawShift(rng: Random): [number, number];

  protected draw(step: StepContext, batch: number): Tensor {
    const shifts = step.alloc([batch, 2], 'int32');
    const i32 = step.engine.heap.i32;
    for (let n = 0; n < batch; n++) {
      const [sy, sx] = this.drawShift(step.rng);
      i32[(shifts.ptr >> 2) + 2 * n] = sy;
      i32[(shifts.ptr >> 2) + 2 * n + 1] = sx;
    }
    return shifts;
  }

  /** The adjoint of a shift is the opposite shift with zeros where the forward wrote the fill value. */
  protected transform(heap: { f32: Float32Array; i32: Int32Array }, src: number, dst: number, shifts: Tensor, batch: number, adjoint: boolean): void {
    shiftImages(heap.f32, heap.i32, src, dst, shifts.ptr >> 2, batch, this.H, this.W, this.C, adjoint ? -1 : 1, adjoint ? 0 : this.fillValue);
  }
}

/** Options of {@link randomTranslate}. */
export interface RandomTranslateOptions {
  /** Largest vertical shift as a fraction of the height (Keras height_factor): shift = round(U(−f, f)·H). Default 0.1. */
  height?: number;
  /** Largest horizontal shift as a fraction of the width. Default 0.1. */
  width?: number;
  /** Value of the pixels shifted in (constant fill). Default 0. */
  fillValue?: number;
  name?: string;
}

/** Whole-pixel random translation with constant fill (Keras RandomTranslation uses reflect fill and bilinear sub-pixel shifts). */
class RandomTranslate extends RandomShift {
  readonly kind = 'randomTranslate';
  readonly height: number;
  readonly width: number;
  constructor(options: RandomTranslateOptions) {
    super(options.name ?? '', options.fillValue ?? 0);
    this.height = options.height ?? 0.1;
    this.width = options.width ?? 0.1;
    for (const [k, v] of [['height', this.height], ['width', this.width]] as const) {
      if (!(v >= 0 && v <= 1)) throw new RangeError(`randomTranslate: ${k} must be a fraction in [0, 1], got ${v}`);
    }
  }

  protected drawShift(rng: Random): [number, number] {
    const sy = Math.round((2 * rng.uniform() - 1) * this.height * this.H);
    const sx = Math.round((2 * rng.uniform() - 1) * this.width * this.W);
    return [sy, sx];
  }

  config(): Record<string, unknown> {
    return { height: this.height, width: this.width, fillValue: this.fillValue };
  }
}

/**
 * Shifts each training image by a random whole number of pixels (identity at inference).
 *
 * Usage: `sequential([randomTranslate({ height: 0.1, width: 0.1 }), conv2d(16, 3), relu(), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function randomTranslate(options: RandomTranslateOptions = {}): Layer {
  return new RandomTranslate(options);
}

registerLayer('randomTranslate', (c, name) => {
  const height = c.number('height', 0.1);
  const width = c.number('width', 0.1);
  const fillValue = c.number('fillValue', 0);
  c.done();
  return constructLayer(c, 'height', () => randomTranslate({ height, width, fillValue, name }));
});
