import type { Layer, StepContext } from '../src/layer.ts';
import type { Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';
import { ImageAugmentation } from './image-augmentation.ts';

/** Options of {@link randomRotate}. */
export interface RandomRotateOptions {
  /** Angle range in degrees: a number d means [−d, d]; default [−10, 10]. Positive = counter-clockwise. */
  degrees?: number | readonly [number, number];
  /** Value of the pixels rotated in from outside the image (constant fill). Default 0. */
  fillValue?: number;
  name?: string;
}

/**
 * Random rotation of training images about their centre, bilinear: output pixel p samples the input at
 * R(−θ)·(p − c) + c (c = ((H − 1)/2, (W − 1)/2)), each of the four neighbours outside the image reading
 * `fillValue`. θ is uniform in the degree range, one draw per example from `step.rng`. Features only;
 * labels untouched; inference = identity. θ = 0 gives the input exactly (weights 1, 0, 0, 0).
 * Backward: the exact adjoint of the (linear in x) sampling: every output gradient is scattered back to
 * the in-image neighbours with the same bilinear weights. Shape rule: identity on [H, W, C].
 */
class RandomRotate extends ImageAugmentation {
  readonly kind = 'randomRotate';
  readonly range: [number, number];
  constructor(degrees: number | readonly [number, number], readonly fillValue: number, name: string) {
    super(name);
    this.range = typeof degrees === 'number' ? [-Math.abs(degrees), Math.abs(degrees)] : [degrees[0], degrees[1]];
    if (!this.range.every(Number.isFinite) || this.range[0] > this.range[1]) throw new RangeError(`randomRotate: degrees must be a finite [min, max], got ${JSON.stringify(degrees)}`);
    if (!Number.isFinite(fillValue)) throw new RangeError(`randomRotate: fillValue must be finite, got ${fillValue}`);
  }

  protected draw(step: StepContext, batch: number): Tensor {
    const angles = step.alloc([batch]);
    const f32 = step.engine.heap.f32;
    const [lo, hi] = this.range;
    for (let n = 0; n < batch; n++) f32[(angles.ptr >> 2) + n] = ((lo + (hi - lo) * step.rng.uniform()) * Math.PI) / 180;
    return angles;
  }

  /**
   * Forward: out[p] = Σ_k w_k·src[q_k] over the 4 bilinear neighbours q_k of p's source point,
   * fillValue for those outside. Adjoint: out = 0, then out[q_k] += w_k·src[p] for neighbours inside.
   */
  protected transform(heap: { f32: Float32Array }, src: number, out: number, anglesTensor: Tensor, batch: number, adjoint: boolean): void {
    const { H, W, C } = this;
    const f32 = heap.f32;
    const angles = anglesTensor.ptr >> 2;
    const cy = (H - 1) / 2;
    const cx = (W - 1) / 2;
    const fill = this.fillValue;
    if (adjoint) f32.fill(0, out, out + batch * H * W * C);
    // One neighbour's contribution; a function rather than a per-pixel array of corners (no allocation in the loop).
    const neighbour = (base: number, p: number, qy: number, qx: number, w: number): void => {
      if (w === 0) return;
      const inside = qy >= 0 && qy < H && qx >= 0 && qx < W;
      const q = base + (qy * W + qx) * C;
      for (let c = 0; c < C; c++) {
        if (adjoint) {
          if (inside) f32[out + q + c] += w * f32[src + p + c]!;
        } else {
          f32[out + p + c] += w * (inside ? f32[src + q + c]! : fill);
        }
      }
    };
    for (let n = 0; n < batch; n++) {
      const theta = f32[angles + n]!;
      const cos = Math.cos(theta);
      const sin = Math.sin(theta);
      const base = n * H * W * C;
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          // Inverse rotation of the output point (image y axis points down, so + sin on x for a CCW turn).
          const sy = cos * (i - cy) - sin * (j - cx) + cy;
          const sx = sin * (i - cy) + cos * (j - cx) + cx;
          const y0 = Math.floor(sy);
          const x0 = Math.floor(sx);
          const fy = sy - y0;
          const fx = sx - x0;
          const p = base + (i * W + j) * C;
          if (!adjoint) f32.fill(0, out + p, out + p + C);
          neighbour(base, p, y0, x0, (1 - fy) * (1 - fx));
          neighbour(base, p, y0, x0 + 1, (1 - fy) * fx);
          neighbour(base, p, y0 + 1, x0, fy * (1 - fx));
          neighbour(base, p, y0 + 1, x0 + 1, fy * fx);
        }
      }
    }
  }

  config(): Record<string, unknown> {
    return { minDegrees: this.range[0], maxDegrees: this.range[1], fillValue: this.fillValue };
  }
}

/**
 * Rotates each training image by a random angle (identity at inference).
 *
 * Usage: `sequential([randomRotate({ degrees: 10 }), conv2d(16, 3), relu(), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function randomRotate(options: RandomRotateOptions = {}): Layer {
  return new RandomRotate(options.degrees ?? 10, options.fillValue ?? 0, options.name ?? '');
}

registerLayer('randomRotate', (c, name) => {
  const min = c.number('minDegrees', -10);
  const max = c.number('maxDegrees', 10);
  const fillValue = c.number('fillValue', 0);
  c.done();
  return constructLayer(c, 'minDegrees', () => randomRotate({ degrees: [min, max], fillValue, name }));
});
