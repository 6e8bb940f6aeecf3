import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';

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
class RandomRotate implements Layer {
  readonly kind = 'randomRotate';
  readonly range: [number, number];
  private H = 0;
  private W = 0;
  private C = 0;
  constructor(degrees: number | readonly [number, number], readonly fillValue: number, public name: string) {
    this.range = typeof degrees === 'number' ? [-Math.abs(degrees), Math.abs(degrees)] : [degrees[0], degrees[1]];
    if (!this.range.every(Number.isFinite) || this.range[0] > this.range[1]) throw new RangeError(`randomRotate: degrees must be a finite [min, max], got ${JSON.stringify(degrees)}`);
    if (!Number.isFinite(fillValue)) throw new RangeError(`randomRotate: fillValue must be finite, got ${fillValue}`);
  }

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length !== 3) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} must be [height, width, channels]`);
    [this.H, this.W, this.C] = inputShape as [number, number, number];
    return inputShape;
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    if (!step.training) return x;
    const batch = x.shape[0]!;
    const angles = step.alloc([batch]);
    const y = step.alloc(x.shape);
    const f32 = step.engine.heap.f32;
    const [lo, hi] = this.range;
    for (let n = 0; n < batch; n++) f32[(angles.ptr >> 2) + n] = ((lo + (hi - lo) * step.rng.uniform()) * Math.PI) / 180;
    this.sample(f32, x.ptr >> 2, y.ptr >> 2, angles.ptr >> 2, batch, false);
    step.save(this, angles);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    if (!step.training) return dy;
    const [angles] = step.restore(this) as [Tensor];
    const dx = step.alloc(dy.shape);
    this.sample(step.engine.heap.f32, dy.ptr >> 2, dx.ptr >> 2, angles.ptr >> 2, dy.shape[0]!, true);
    return dx;
  }

  /**
   * Forward (adjoint = false): out[p] = Σ_k w_k·src[q_k] over the 4 bilinear neighbours q_k of p's source
   * point, fillValue for those outside. Adjoint: out = 0, then out[q_k] += w_k·src[p] for neighbours inside.
   */
  private sample(f32: Float32Array, src: number, out: number, angles: number, batch: number, adjoint: boolean): void {
    const { H, W, C } = this;
    const cy = (H - 1) / 2;
    const cx = (W - 1) / 2;
    const fill = this.fillValue;
    if (adjoint) f32.fill(0, out, out + batch * H * W * C);
    for (let n = 0; n < batch; n++) {
      const theta = f32[angles + n]!;
      const cos = Math.cos(theta);
      const sin = Math.sin(theta);
      const base = n * H * W * C;
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          // Inverse rotation of the output point (image y axis points down, so + sin on x for a CCW turn).
          const dy = i - cy;
          const dx = j - cx;
          const sy = cos * dy - sin * dx + cy;
          const sx = sin * dy + cos * dx + cx;
          const y0 = Math.floor(sy);
          const x0 = Math.floor(sx);
          const fy = sy - y0;
          const fx = sx - x0;
          const p = base + (i * W + j) * C;
          const corners: [number, number, number][] = [
            [y0, x0, (1 - fy) * (1 - fx)], [y0, x0 + 1, (1 - fy) * fx], [y0 + 1, x0, fy * (1 - fx)], [y0 + 1, x0 + 1, fy * fx],
          ];
          if (!adjoint) for (let c = 0; c < C; c++) f32[out + p + c] = 0;
          for (const [qy, qx, w] of corners) {
            if (w === 0) continue;
            const inside = qy >= 0 && qy < H && qx >= 0 && qx < W;
            const q = base + (qy * W + qx) * C;
            for (let c = 0; c < C; c++) {
              if (adjoint) {
                if (inside) f32[out + q + c] += w * f32[src + p + c]!;
              } else {
                f32[out + p + c] += w * (inside ? f32[src + q + c]! : fill);
              }
            }
          }
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
  try {
    return randomRotate({ degrees: [min, max], fillValue, name });
  } catch (error) {
    return c.fail('minDegrees', (error as Error).message);
  }
});
