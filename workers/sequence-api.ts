/**
 * Whole-sequence recurrent kernels (workers/assembly/recurrent-sequence.ts): a recurrent layer's time
 * loop (the per-step recurrent GEMM and the fused cell) in one call per sequence, so a training step
 * dispatches one pool job per direction instead of two kernel calls per time step, and the pool splits
 * the batch into row ranges that each run every step on their own (rows of a batch never interact).
 *
 * Outside the {@link Kernels} contract: a backend may lack them (the JS reference does), and the layers
 * then run the same loop step by step through the cell kernels. Layout: time-major, `[T, B, ·]`; `batch`
 * is B. All pointers are byte addresses in the shared memory.
 */
export interface SequenceKernels {
  /**
   * LSTM forward: for t < T, z_t += bias (`[4U]`, 0: none), z_t += h_t·rk (skipped at t = 0 when skipFirst ≠ 0,
   * a zero initial state), then lstmCellForward(z_t, c_t, c_{t+1}, tanhC_t, h_{t+1}). z `[T, B, 4U]` (the input
   * projection), h and c `[T + 1, B, U]` with h_0, c_0 filled in, tanhC `[T, B, U]`, rk `[U, 4U]`.
   */
  lstmForwardSequence(z: number, rk: number, bias: number, h: number, c: number, tanhC: number, batch: number, steps: number, units: number, skipFirst: number): Promise<void> | void;
  /**
   * LSTM backward for t = T − 1 … t0: lstmCellBackward(z_t, c_t, tanhC_t, dh, dy_t, dc, dz_{t−t0}), then
   * dh = dz_{t−t0}·rkT unless t = t0 and carry = 0. dy: `[T, B, U]` when dyEvery ≠ 0, else `[B, U]` for the
   * last step only (0: none). dh, dc `[B, U]` (zeros on entry); dz `[T − t0, B, 4U]`; rkT = rkᵀ `[4U, U]`.
   */
  lstmBackwardSequence(
    z: number, c: number, tanhC: number, dh: number, dy: number, dyEvery: number, dc: number, dz: number, rkT: number,
    batch: number, steps: number, t0: number, units: number, carry: number,
  ): Promise<void> | void;
  /**
   * GRU forward: for t < T, a_t += inputBias (0: none), q_t = h_t·rk (zeros at t = 0 when skipFirst ≠ 0) +
   * recurrentBias, then gruCellForward(a_t, q_t, h_t, h_{t+1}). a, q `[T, B, 3U]` (a: the input projection),
   * h `[T + 1, B, U]`, biases `[3U]`.
   */
  gruForwardSequence(a: number, q: number, rk: number, inputBias: number, recurrentBias: number, h: number, batch: number, steps: number, units: number, skipFirst: number): Promise<void> | void;
  /**
   * GRU backward for t = T − 1 … t0: gruCellBackward(a_t, q_t, h_t, dh, dy_t, da_{t−t0}, dq_{t−t0}), then
   * dh += dq_{t−t0}·rkT unless t = t0 and carry = 0. dy as in lstmBackwardSequence; rkT = rkᵀ `[3U, U]`.
   */
  gruBackwardSequence(
    a: number, q: number, h: number, dh: number, dy: number, dyEvery: number, da: number, dq: number, rkT: number,
    batch: number, steps: number, t0: number, units: number, carry: number,
  ): Promise<void> | void;
}

/** The wasm exports behind {@link SequenceKernels}, callable by the pool. */
export const SEQUENCE_KERNEL_NAMES = ['lstmForwardSequence', 'lstmBackwardSequence', 'gruForwardSequence', 'gruBackwardSequence'] as const satisfies readonly (keyof SequenceKernels)[];
