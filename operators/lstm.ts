import { zeros, type Initializer } from '../src/initializers.ts';
import type { StepContext } from '../src/layer.ts';
import type { Shape, Tensor } from '../src/tensor.ts';
import { readRecurrentOptions, Recurrent, type RecurrentLayer, type RecurrentOptions, type RecurrentSaved } from './simple-rnn.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link lstm}. */
export interface LstmOptions extends RecurrentOptions {
  /** Initialise the forget-gate bias to 1 (Keras `unit_forget_bias`, default true); the rest of the bias is 0. */
  unitForgetBias?: boolean;
}

/** Bias `[4U]`: zeros, with the forget block (the second) set to 1 when asked. */
function lstmBias(units: number, unitForgetBias: boolean): Initializer {
  return {
    name: unitForgetBias ? 'zeros+unitForgetBias' : 'zeros',
    fill(values) {
      values.fill(0);
      if (unitForgetBias) values.fill(1, units, 2 * units);
    },
  };
}

/**
 * Long short-term memory, Keras layout and formulas. Gate blocks along the `4U` axis: i, f, c, o.
 *   z = x_t·W + h_{t−1}·U + b;  i = σ(z_i), f = σ(z_f), g = tanh(z_c), o = σ(z_o)
 *   c_t = f·c_{t−1} + i·g;  h_t = o·tanh(c_t)
 * Parameters: kernel `[F, 4U]` (Glorot uniform), recurrentKernel `[U, 4U]` (orthogonal, Keras style),
 * bias `[4U]` (zeros, forget block 1). Initial state `[2, U]` = (h_0, c_0) when learned or a column.
 *
 * Forward per step: one GEMM accumulates h_{t−1}·U into the precomputed input projection; one fused kernel
 * (lstmCellForward) applies the gate non-linearities in place (so the saved `z` holds the activations) and
 * updates c, tanh(c) and h.
 * Backward per step (no transcendental: every derivative comes from saved activations):
 *   dh = dh_rec + dy_t;  dc = dc_rec + dh·o·(1 − tanh²c_t)
 *   dz_i = dc·g·i(1−i), dz_f = dc·c_{t−1}·f(1−f), dz_c = dc·i·(1−g²), dz_o = dh·tanh(c_t)·o(1−o)
 *   dc_rec ← dc·f (one fused kernel, lstmCellBackward);  dh_rec ← dz·Uᵀ (GEMM)
 * then dW, dU, db, dX over the whole window at once (see simple-rnn.ts).
 */
class Lstm extends Recurrent {
  readonly kind = 'lstm';
  protected readonly gates = 4;
  protected override readonly states = 2;
  private readonly unitForgetBias: boolean;

  constructor(options: LstmOptions) {
    super(options, 'lstm');
    this.unitForgetBias = options.unitForgetBias ?? true;
  }

  protected biasSpec(): { shape: Shape; init: Initializer } {
    return { shape: [4 * this.units], init: this.unitForgetBias ? lstmBias(this.units, true) : zeros() };
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const fr = this.frame(x);
    const { batch: B, steps: T, units: U, width: W } = fr;
    const xt = this.timeMajor(step, x, fr);
    const z = step.alloc([T, B, W]);
    const h = step.alloc([T + 1, B, U]);
    const c = step.alloc([T + 1, B, U]);
    const tc = step.alloc([T, B, U]);
    const { compute, kernels } = step.engine;
    // The sequence kernel adds the bias itself, step by step while z_t is in cache.
    await this.projectInputs(step, xt, z, fr, compute.lstmForwardSequence ? 0 : this.bias.value.ptr);
    this.writeInitialState(step, fr, [h.ptr, c.ptr]);
    const rk = this.recurrentKernel.value.ptr;
    const n = B * U;
    // With a zero initial state the first recurrent product is zero: skipped.
    const skipFirst = this.initialState === 'zeros';
    if (compute.lstmForwardSequence) {
      // The whole time loop as one job (row ranges of the batch on the pool).
      await compute.lstmForwardSequence(z.ptr, rk, this.bias.value.ptr, h.ptr, c.ptr, tc.ptr, B, T, U, skipFirst ? 1 : 0);
    } else {
      for (let t = 0; t < T; t++) {
        const zt = z.ptr + 4 * t * B * W;
        if (t > 0 || !skipFirst) await compute.gemm(0, 0, B, W, U, 1, h.ptr + 4 * t * n, U, rk, W, 1, zt, W);
        // Gate non-linearities and the cell update in one pass over the step's gates (z keeps the activations).
        await (compute.lstmCellForward ?? kernels.lstmCellForward)(zt, c.ptr + 4 * t * n, c.ptr + 4 * (t + 1) * n, tc.ptr + 4 * t * n, h.ptr + 4 * (t + 1) * n, B, U);
      }
    }
    step.save(this, x, xt, h, c, tc, z);
    return this.output(step, h, fr);
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const [x, xt, h, c, tc, z] = step.restore(this) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const fr = this.frame(x);
    const saved: RecurrentSaved = { frame: fr, xt, h };
    const { batch: B, steps: T, units: U, width: W } = fr;
    const t0 = this.windowStart(T);
    const dyt = this.timeMajorGradient(step, dy, fr);
    const dz = step.alloc([T - t0, B, W]);
    const dh = step.alloc([B, U]);
    const dc = step.alloc([B, U]);
    const grads = needInputGradient ? this.allocInputGradient(step, fr) : null;
    const { compute, kernels } = step.engine;
    const n = B * U;
    kernels.fill(dh.ptr, n, 0);
    kernels.fill(dc.ptr, n, 0);
    const rk = this.recurrentKernel.value.ptr;
    const carry = this.wantsInitialGradient(t0);
    if (compute.lstmBackwardSequence) {
      // The whole time loop as one job; dh = dz·Uᵀ through Uᵀ transposed once, read in place by every step.
      const rkT = this.transposedRecurrentKernel(step, fr);
      const dyPtr = this.returnSequences ? dyt.ptr : dy.ptr;
      await compute.lstmBackwardSequence(z.ptr, c.ptr, tc.ptr, dh.ptr, dyPtr, this.returnSequences ? 1 : 0, dc.ptr, dz.ptr, rkT, B, T, t0, U, carry ? 1 : 0);
    } else {
      for (let t = T - 1; t >= t0; t--) {
        const dyAt = this.dyIndex(dyt, fr, t);
        const dzt = dz.ptr + 4 * (t - t0) * B * W;
        // Every gate derivative in one pass (no transcendental: from the saved activations).
        await (compute.lstmCellBackward ?? kernels.lstmCellBackward)(z.ptr + 4 * t * B * W, c.ptr + 4 * t * n, tc.ptr + 4 * t * n, dh.ptr, dyAt >= 0 ? 4 * dyAt : 0, dc.ptr, dzt, B, U);
        if (t > t0 || carry) await compute.gemm(0, 1, B, U, W, 1, dzt, W, rk, W, 0, dh.ptr, U);
      }
    }
    (compute.sumRows ?? kernels.sumRows)(dz.ptr, this.bias.grad.ptr, (T - t0) * B, W, 0);
    await this.weightGradients(step, saved, t0, dz, dz, grads?.dx ?? null, grads?.dxt ?? null);
    this.initialGradient(step, fr, t0, [dh.ptr, dc.ptr]);
    return grads?.dx ?? null;
  }

  override config(): Record<string, unknown> {
    return { ...super.config(), unitForgetBias: this.unitForgetBias };
  }
}

/**
 * An LSTM layer over `[B, T, F]` sequences (Keras gate layout i, f, c, o; unit forget bias).
 * Output `[B, units]` (the last h) or `[B, T, units]` with `returnSequences`.
 *
 * Usage: `sequential([lstm({ units: 128 }), dense(10)], { inputShape: [28, 28] })`
 */
export function lstm(options: LstmOptions): RecurrentLayer {
  return new Lstm(options);
}

registerLayer('lstm', (c, name) => {
  const options = { ...readRecurrentOptions(c, name), unitForgetBias: c.boolean('unitForgetBias', true) };
  c.done();
  return constructLayer(c, 'units', () => lstm(options));
});
