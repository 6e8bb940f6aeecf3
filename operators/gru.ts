import { zeros, type Initializer } from '../src/initializers.ts';
import type { StepContext } from '../src/layer.ts';
import type { Shape, Tensor } from '../src/tensor.ts';
import { readRecurrentOptions, Recurrent, type RecurrentLayer, type RecurrentOptions, type RecurrentSaved } from './simple-rnn.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/**
 * Gated recurrent unit, Keras v3 default (`reset_after = true`, the cuDNN-compatible form; the only
 * variant implemented). Gate blocks along the `3U` axis: z (update), r (reset), h (candidate).
 *   a = x_t·W + b_in;  q = h_{t−1}·U + b_rec
 *   z = σ(a_z + q_z), r = σ(a_r + q_r), ĥ = tanh(a_h + r·q_h)
 *   h_t = z·h_{t−1} + (1 − z)·ĥ
 * Parameters: kernel `[F, 3U]` (Glorot uniform), recurrentKernel `[U, 3U]` (orthogonal, Keras style),
 * bias `[2, 3U]` (zeros; row 0 the input bias, row 1 the recurrent bias, as Keras stores it).
 *
 * Because r multiplies q_h, the recurrent product q is kept separately per step (saved for the
 * backward), and the backward keeps two pre-activation gradients: dA (input side, for dW, db_in, dX)
 * and dQ (recurrent side, for dU, db_rec, dh_{t−1}); they differ only in the h block (dQ_h = dA_h·r).
 *   dĥ = dh·(1−z);  dA_h = dĥ·(1−ĥ²);  dA_z = dQ_z = dh·(h_{t−1} − ĥ)·z(1−z)
 *   dA_r = dQ_r = dA_h·q_h·r(1−r);  dQ_h = dA_h·r;  dh_{t−1} = dh·z + dQ·Uᵀ (GEMM, beta = 1)
 * The gates and their derivatives are one fused kernel per step each (gruCellForward / gruCellBackward).
 */
class Gru extends Recurrent {
  readonly kind = 'gru';
  protected readonly gates = 3;

  constructor(options: RecurrentOptions) {
    super(options, 'gru');
  }

  protected biasSpec(): { shape: Shape; init: Initializer } {
    return { shape: [2, 3 * this.units], init: zeros() };
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const fr = this.frame(x);
    const { batch: B, steps: T, units: U, width: W } = fr;
    const xt = this.timeMajor(step, x, fr);
    const a = step.alloc([T, B, W]);
    const q = step.alloc([T, B, W]);
    const h = step.alloc([T + 1, B, U]);
    const { compute, kernels } = step.engine;
    // The sequence kernel adds the input bias itself, step by step while a_t is in cache.
    await this.projectInputs(step, xt, a, fr, compute.gruForwardSequence ? 0 : this.bias.value.ptr);
    this.writeInitialState(step, fr, [h.ptr]);
    const rk = this.recurrentKernel.value.ptr;
    const recurrentBias = this.bias.value.ptr + 4 * W;
    const n = B * U;
    // With a zero initial state the first recurrent product is zero: q_0 is the bias alone.
    const skipFirst = this.initialState === 'zeros';
    if (compute.gruForwardSequence) {
      // The whole time loop as one job (row ranges of the batch on the pool).
      await compute.gruForwardSequence(a.ptr, q.ptr, rk, this.bias.value.ptr, recurrentBias, h.ptr, B, T, U, skipFirst ? 1 : 0);
    } else {
      for (let t = 0; t < T; t++) {
        const at = a.ptr + 4 * t * B * W;
        const qt = q.ptr + 4 * t * B * W;
        if (t === 0 && skipFirst) kernels.fill(qt, B * W, 0);
        else await compute.gemm(0, 0, B, W, U, 1, h.ptr + 4 * t * n, U, rk, W, 0, qt, W);
        kernels.addBias(qt, recurrentBias, B, W);
        // Gates and the state update in one pass (a keeps z, r, ĥ for the backward).
        await (compute.gruCellForward ?? kernels.gruCellForward)(at, qt, h.ptr + 4 * t * n, h.ptr + 4 * (t + 1) * n, B, U);
      }
    }
    step.save(this, x, xt, h, a, q);
    return this.output(step, h, fr);
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const [x, xt, h, a, q] = step.restore(this) as [Tensor, Tensor, Tensor, Tensor, Tensor];
    const fr = this.frame(x);
    const saved: RecurrentSaved = { frame: fr, xt, h };
    const { batch: B, steps: T, units: U, width: W } = fr;
    const t0 = this.windowStart(T);
    const dyt = this.timeMajorGradient(step, dy, fr);
    const da = step.alloc([T - t0, B, W]);
    const dq = step.alloc([T - t0, B, W]);
    const dh = step.alloc([B, U]);
    const grads = needInputGradient ? this.allocInputGradient(step, fr) : null;
    const { compute, kernels } = step.engine;
    const n = B * U;
    kernels.fill(dh.ptr, n, 0);
    const rk = this.recurrentKernel.value.ptr;
    const carry = this.wantsInitialGradient(t0);
    if (compute.gruBackwardSequence) {
      // The whole time loop as one job; dh += dq·Uᵀ through Uᵀ transposed once, read in place by every step.
      const rkT = this.transposedRecurrentKernel(step, fr);
      const dyPtr = this.returnSequences ? dyt.ptr : dy.ptr;
      await compute.gruBackwardSequence(a.ptr, q.ptr, h.ptr, dh.ptr, dyPtr, this.returnSequences ? 1 : 0, da.ptr, dq.ptr, rkT, B, T, t0, U, carry ? 1 : 0);
    } else {
      for (let t = T - 1; t >= t0; t--) {
        const dyAt = this.dyIndex(dyt, fr, t);
        const dqt = dq.ptr + 4 * (t - t0) * B * W;
        // Every gate derivative in one pass; dh becomes the direct path h_{t−1} → h_t, the GEMM adds the rest.
        await (compute.gruCellBackward ?? kernels.gruCellBackward)(
          a.ptr + 4 * t * B * W, q.ptr + 4 * t * B * W, h.ptr + 4 * t * n, dh.ptr, dyAt >= 0 ? 4 * dyAt : 0, da.ptr + 4 * (t - t0) * B * W, dqt, B, U,
        );
        if (t > t0 || carry) await compute.gemm(0, 1, B, U, W, 1, dqt, W, rk, W, 1, dh.ptr, U);
      }
    }
    const rows = (T - t0) * B;
    const sumRows = compute.sumRows ?? kernels.sumRows;
    sumRows(da.ptr, this.bias.grad.ptr, rows, W, 0);
    sumRows(dq.ptr, this.bias.grad.ptr + 4 * W, rows, W, 0);
    await this.weightGradients(step, saved, t0, da, dq, grads?.dx ?? null, grads?.dxt ?? null);
    this.initialGradient(step, fr, t0, [dh.ptr]);
    return grads?.dx ?? null;
  }

  override config(): Record<string, unknown> {
    return { ...super.config(), resetAfter: true };
  }
}

/**
 * A GRU layer over `[B, T, F]` sequences (Keras v3 default: gate layout z, r, h; reset after the
 * recurrent product; bias `[2, 3U]`). Output `[B, units]` (the last h) or `[B, T, units]`.
 *
 * Usage: `sequential([gru({ units: 64, returnSequences: true }), gru({ units: 64 }), dense(10)], { inputShape: [28, 28] })`
 */
export function gru(options: RecurrentOptions): RecurrentLayer {
  return new Gru(options);
}

registerLayer('gru', (c, name) => {
  const options = readRecurrentOptions(c, name);
  // Only the reset-after variant exists; the field is recorded so a checkpoint says which one it holds.
  if (!c.boolean('resetAfter', true)) c.fail('resetAfter', 'only the reset-after GRU (the Keras v3 default) is implemented');
  c.done();
  return constructLayer(c, 'units', () => gru(options));
});
