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
    await this.projectInputs(step, xt, a, fr, this.bias.value.ptr);
    this.writeInitialState(step, fr, [h.ptr]);
    const { compute, kernels, heap } = step.engine;
    const rk = this.recurrentKernel.value.ptr;
    const recurrentBias = this.bias.value.ptr + 4 * W;
    const n = B * U;
    for (let t = 0; t < T; t++) {
      const at = a.ptr + 4 * t * B * W;
      const qt = q.ptr + 4 * t * B * W;
      // With a zero initial state the first recurrent product is zero: q_0 is the bias alone.
      if (t === 0 && this.initialState === 'zeros') kernels.fill(qt, B * W, 0);
      else await compute.gemm(0, 0, B, W, U, 1, h.ptr + 4 * t * n, U, rk, W, 0, qt, W);
      kernels.addBias(qt, recurrentBias, B, W);
      let f = heap.f32;
      const af = at >> 2;
      const qf = qt >> 2;
      // a_z += q_z, a_r += q_r: one contiguous 2U run per row.
      for (let b = 0; b < B; b++) {
        const ra = af + b * W;
        const rq = qf + b * W;
        for (let j = 0; j < 2 * U; j++) f[ra + j] = f[ra + j]! + f[rq + j]!;
      }
      for (let b = 0; b < B; b++) kernels.sigmoidForward(at + 4 * b * W, at + 4 * b * W, 2 * U);
      f = heap.f32;
      for (let b = 0; b < B; b++) {
        const ra = af + b * W;
        const rq = qf + b * W + 2 * U;
        for (let u = 0; u < U; u++) f[ra + 2 * U + u] = f[ra + 2 * U + u]! + f[ra + U + u]! * f[rq + u]!;
      }
      for (let b = 0; b < B; b++) kernels.tanhForward(at + 4 * (b * W + 2 * U), at + 4 * (b * W + 2 * U), U);
      const hp = (h.ptr >> 2) + t * n;
      const hn = hp + n;
      for (let b = 0; b < B; b++) {
        const ra = af + b * W;
        const s = b * U;
        for (let u = 0; u < U; u++) {
          const gz = f[ra + u]!;
          f[hn + s + u] = gz * f[hp + s + u]! + (1 - gz) * f[ra + 2 * U + u]!;
        }
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
    const { compute, kernels, heap } = step.engine;
    const n = B * U;
    kernels.fill(dh.ptr, n, 0);
    const rk = this.recurrentKernel.value.ptr;
    const carry = this.wantsInitialGradient(t0);
    const dhf = dh.ptr >> 2;
    for (let t = T - 1; t >= t0; t--) {
      const f = heap.f32;
      const dyAt = this.dyIndex(dyt, fr, t);
      const at = (a.ptr >> 2) + t * B * W;
      const qt = (q.ptr >> 2) + t * B * W;
      const dat = (da.ptr >> 2) + (t - t0) * B * W;
      const dqt = (dq.ptr >> 2) + (t - t0) * B * W;
      const hp = (h.ptr >> 2) + t * n;
      for (let b = 0; b < B; b++) {
        const ra = at + b * W;
        const rq = qt + b * W;
        const rda = dat + b * W;
        const rdq = dqt + b * W;
        const s = b * U;
        for (let u = 0; u < U; u++) {
          const k = s + u;
          const gz = f[ra + u]!;
          const gr = f[ra + U + u]!;
          const gh = f[ra + 2 * U + u]!;
          const gradH = f[dhf + k]! + (dyAt >= 0 ? f[dyAt + k]! : 0);
          const dPreH = gradH * (1 - gz) * (1 - gh * gh);
          const dPreZ = gradH * (f[hp + k]! - gh) * gz * (1 - gz);
          const dPreR = dPreH * f[rq + 2 * U + u]! * gr * (1 - gr);
          f[rda + u] = dPreZ;
          f[rda + U + u] = dPreR;
          f[rda + 2 * U + u] = dPreH;
          f[rdq + u] = dPreZ;
          f[rdq + U + u] = dPreR;
          f[rdq + 2 * U + u] = dPreH * gr;
          // The direct path h_{t−1} → h_t; the GEMM below adds the path through the gates.
          f[dhf + k] = gradH * gz;
        }
      }
      if (t > t0 || carry) await compute.gemm(0, 1, B, U, W, 1, dqt * 4, W, rk, W, 1, dh.ptr, U);
    }
    const rows = (T - t0) * B;
    kernels.sumRows(da.ptr, this.bias.grad.ptr, rows, W, 0);
    kernels.sumRows(dq.ptr, this.bias.grad.ptr + 4 * W, rows, W, 0);
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
