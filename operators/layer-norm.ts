import { constant, zeros } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';

/** Options of {@link layerNorm}. */
export interface LayerNormOptions {
  /** Added to the variance before the square root (default 1e-5, PyTorch's; Keras uses 1e-3). */
  epsilon?: number;
  name?: string;
}

/**
 * Layer normalisation over the last axis (Ba et al. 2016):
 *   y = (x − μ) / √(σ² + ε) · gain + bias,  μ, σ² the mean and biased variance of each row.
 * Shape rule: identity, at least one axis; gain (ones) and bias (zeros) have the last axis' size.
 * Backward, per row with x̂ = (x − μ)·r, r = 1/√(σ² + ε), g = dy ⊙ gain:
 *   dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)),  dgain = Σ_rows dy ⊙ x̂,  dbias = Σ_rows dy.
 * Statistics are accumulated in float64 (JS numbers), so a row with a large common offset keeps
 * its variance; x̂ and r are saved for backward (one row-sized and one per-row tensor).
 */
class LayerNorm implements Layer {
  readonly kind = 'layerNorm';
  private gain!: Parameter;
  private bias!: Parameter;
  private features = 0;

  constructor(readonly epsilon: number, public name: string) {
    if (!(epsilon > 0) || !Number.isFinite(epsilon)) throw new RangeError(`layerNorm: epsilon must be a positive finite number, got ${epsilon}`);
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.length === 0) throw new ShapeError(`${this.name} (layerNorm)`, `input shape ${formatShape(inputShape)} has no axis to normalise`);
    this.features = inputShape[inputShape.length - 1]!;
    const fans = { fanIn: this.features, fanOut: this.features };
    this.gain = ctx.addParameter('gain', [this.features], constant(1), fans);
    this.bias = ctx.addParameter('bias', [this.features], zeros(), fans);
    return inputShape;
  }

  parameters(): Parameter[] {
    return [this.gain, this.bias];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const n = this.features;
    const rows = x.size / n;
    const y = step.alloc(x.shape);
    const xhat = step.alloc(x.shape);
    const rstd = step.alloc([rows]);
    // Views after every alloc: an allocation may grow the memory and replace the heap's views.
    const h = step.engine.heap.f32;
    const g = this.gain.value.ptr >> 2;
    const b = this.bias.value.ptr >> 2;
    for (let r = 0; r < rows; r++) {
      const xo = (x.ptr >> 2) + r * n;
      let mean = 0;
      for (let i = 0; i < n; i++) mean += h[xo + i]!;
      mean /= n;
      let variance = 0;
      for (let i = 0; i < n; i++) {
        const d = h[xo + i]! - mean;
        variance += d * d;
      }
      variance /= n;
      const rs = 1 / Math.sqrt(variance + this.epsilon);
      h[(rstd.ptr >> 2) + r] = rs;
      const ho = (xhat.ptr >> 2) + r * n;
      const yo = (y.ptr >> 2) + r * n;
      for (let i = 0; i < n; i++) {
        const xh = (h[xo + i]! - mean) * rs;
        h[ho + i] = xh;
        h[yo + i] = xh * h[g + i]! + h[b + i]!;
      }
    }
    step.save(this, xhat, rstd);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    const [xhat, rstd] = step.restore(this) as [Tensor, Tensor];
    const n = this.features;
    const rows = dy.size / n;
    const dx = needInputGradient ? step.alloc(dy.shape) : null;
    const h = step.engine.heap.f32;
    const g = this.gain.value.ptr >> 2;
    const dg = this.gain.grad.ptr >> 2;
    const db = this.bias.grad.ptr >> 2;
    // Parameter gradients in float64 across rows (a long sequence sums thousands of rows).
    const dGain = new Float64Array(n);
    const dBias = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      const dyo = (dy.ptr >> 2) + o;
      const ho = (xhat.ptr >> 2) + o;
      let meanG = 0;
      let meanGX = 0;
      for (let i = 0; i < n; i++) {
        const d = h[dyo + i]!;
        const xh = h[ho + i]!;
        dGain[i]! += d * xh;
        dBias[i]! += d;
        const gi = d * h[g + i]!;
        meanG += gi;
        meanGX += gi * xh;
      }
      if (!dx) continue;
      meanG /= n;
      meanGX /= n;
      const rs = h[(rstd.ptr >> 2) + r]!;
      const dxo = (dx.ptr >> 2) + o;
      for (let i = 0; i < n; i++) h[dxo + i] = rs * (h[dyo + i]! * h[g + i]! - meanG - h[ho + i]! * meanGX);
    }
    for (let i = 0; i < n; i++) {
      h[dg + i] = dGain[i]!;
      h[db + i] = dBias[i]!;
    }
    return dx;
  }

  config(): Record<string, unknown> {
    return { epsilon: this.epsilon };
  }
}

/**
 * Layer normalisation over the last axis with a learned gain and bias.
 *
 * Usage: `residual([layerNorm(), multiHeadAttention({ heads: 4, keyDim: 16, causal: true })])`
 */
export function layerNorm(options: LayerNormOptions = {}): Layer {
  return new LayerNorm(options.epsilon ?? 1e-5, options.name ?? '');
}

registerLayer('layerNorm', (c, name) => {
  const epsilon = c.number('epsilon', 1e-5);
  c.done();
  return layerNorm({ epsilon, name });
});
