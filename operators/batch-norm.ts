import { constant, zeros } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link batchNorm} (defaults as Keras BatchNormalization). */
export interface BatchNormOptions {
  /** Moving statistics: moving = momentum·moving + (1 − momentum)·batch. Default 0.99. */
  momentum?: number;
  /** Added to the variance before the square root. Default 1e-3. */
  epsilon?: number;
  /** Learn the offset beta. Default true. */
  center?: boolean;
  /** Learn the scale gamma. Default true. */
  scale?: boolean;
  name?: string;
}

/**
 * Batch normalisation over the last axis (channels of NHWC images, features of vectors):
 *   training:  y = (x − μ_B)/√(σ²_B + ε)·γ + β with μ_B, σ²_B the batch mean and biased variance per
 *              channel over every other axis; the moving statistics are updated in the forward pass
 *              (moving = m·moving + (1 − m)·batch, biased variance as Keras; PyTorch uses the unbiased one);
 *   inference: the same with the moving mean and variance.
 * The moving statistics are non-trainable parameters (`movingMean`, `movingVariance`), so checkpoints
 * save them with the weights; their gradients stay zero and optimizers skip them.
 * Backward (training, batch statistics), x̂ = (x − μ)·r, r = 1/√(σ² + ε):
 *   dβ = Σ dy, dγ = Σ dy·x̂, dx = γ·r·(dy − dβ/N − x̂·dγ/N). In inference mode dx = γ·r·dy.
 * Shape rule: identity (rank ≥ 1).
 */
class BatchNorm implements Layer {
  readonly kind = 'batchNorm';
  /** Training normalises with the batch's statistics, inference with the running ones. */
  readonly trainingDiffers = true;
  readonly momentum: number;
  readonly epsilon: number;
  readonly center: boolean;
  readonly scale: boolean;
  private gamma: Parameter | null = null;
  private beta: Parameter | null = null;
  private movingMean!: Parameter;
  private movingVariance!: Parameter;
  private channels = 0;

  constructor(options: BatchNormOptions, public name: string) {
    this.momentum = options.momentum ?? 0.99;
    this.epsilon = options.epsilon ?? 1e-3;
    this.center = options.center ?? true;
    this.scale = options.scale ?? true;
    if (!(this.momentum >= 0 && this.momentum <= 1)) throw new RangeError(`batchNorm: momentum must be in [0, 1], got ${this.momentum}`);
    if (!(this.epsilon > 0) || !Number.isFinite(this.epsilon)) throw new RangeError(`batchNorm: epsilon must be a positive finite number, got ${this.epsilon}`);
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.length === 0) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} has no channel axis`);
    const c = inputShape[inputShape.length - 1]!;
    this.channels = c;
    const fans = { fanIn: c, fanOut: c };
    if (this.scale) this.gamma = ctx.addParameter('gamma', [c], constant(1), fans);
    if (this.center) this.beta = ctx.addParameter('beta', [c], zeros(), fans);
    this.movingMean = ctx.addParameter('movingMean', [c], zeros(), fans);
    this.movingVariance = ctx.addParameter('movingVariance', [c], constant(1), fans);
    this.movingMean.trainable = false;
    this.movingVariance.trainable = false;
    return inputShape;
  }

  parameters(): Parameter[] {
    return [...(this.gamma ? [this.gamma] : []), ...(this.beta ? [this.beta] : []), this.movingMean, this.movingVariance];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const c = this.channels;
    const rows = x.size / c;
    const y = step.alloc(x.shape);
    const mean = step.alloc([c]);
    const invStd = step.alloc([c]);
    const k = step.engine.kernels;
    if (step.training) {
      const variance = step.alloc([c]);
      k.batchNormStats(x.ptr, mean.ptr, variance.ptr, rows, c);
      const h = step.engine.heap.f32;
      const m = this.momentum;
      for (let i = 0; i < c; i++) {
        const mu = h[(mean.ptr >> 2) + i]!;
        const v = h[(variance.ptr >> 2) + i]!;
        h[(invStd.ptr >> 2) + i] = 1 / Math.sqrt(v + this.epsilon);
        const mm = (this.movingMean.value.ptr >> 2) + i;
        const mv = (this.movingVariance.value.ptr >> 2) + i;
        h[mm] = m * h[mm]! + (1 - m) * mu;
        h[mv] = m * h[mv]! + (1 - m) * v;
      }
    } else {
      const h = step.engine.heap.f32;
      for (let i = 0; i < c; i++) {
        h[(mean.ptr >> 2) + i] = h[(this.movingMean.value.ptr >> 2) + i]!;
        h[(invStd.ptr >> 2) + i] = 1 / Math.sqrt(h[(this.movingVariance.value.ptr >> 2) + i]! + this.epsilon);
      }
    }
    k.batchNormForward(x.ptr, y.ptr, mean.ptr, invStd.ptr, this.gamma?.value.ptr ?? 0, this.beta?.value.ptr ?? 0, rows, c);
    step.save(this, x, mean, invStd);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    const [x, mean, invStd] = step.restore(this) as [Tensor, Tensor, Tensor];
    const c = this.channels;
    const rows = x.size / c;
    const dx = needInputGradient ? step.alloc(x.shape) : null;
    const k = step.engine.kernels;
    const gamma = this.gamma?.value.ptr ?? 0;
    if (step.training) {
      k.batchNormBackward(x.ptr, dy.ptr, dx?.ptr ?? 0, mean.ptr, invStd.ptr, gamma, this.gamma?.grad.ptr ?? 0, this.beta?.grad.ptr ?? 0, rows, c);
      return dx;
    }
    // Fixed statistics: parameter gradients from the backward kernel (dx = 0 there), then dx = γ·r·dy.
    k.batchNormBackward(x.ptr, dy.ptr, 0, mean.ptr, invStd.ptr, gamma, this.gamma?.grad.ptr ?? 0, this.beta?.grad.ptr ?? 0, rows, c);
    if (!dx) return null;
    const zero = step.alloc([c]);
    k.fill(zero.ptr, c, 0);
    k.batchNormForward(dy.ptr, dx.ptr, zero.ptr, invStd.ptr, gamma, 0, rows, c);
    return dx;
  }

  config(): Record<string, unknown> {
    return { momentum: this.momentum, epsilon: this.epsilon, center: this.center, scale: this.scale };
  }
}

/**
 * Batch normalisation with learned scale and offset and moving statistics for inference.
 *
 * Usage: `sequential([conv2d(32, 3, { useBias: false }), batchNorm(), relu(), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function batchNorm(options: BatchNormOptions = {}): Layer {
  return new BatchNorm(options, options.name ?? '');
}

registerLayer('batchNorm', (c, name) => {
  const momentum = c.number('momentum', 0.99);
  const epsilon = c.number('epsilon', 1e-3);
  const center = c.boolean('center', true);
  const scale = c.boolean('scale', true);
  c.done();
  return constructLayer(c, 'momentum', () => batchNorm({ momentum, epsilon, center, scale, name }));
});
