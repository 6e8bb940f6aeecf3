// Whole-sequence recurrent loops (one call per sequence and row range instead of two kernel calls per
// time step): the per-step recurrent GEMM and the fused cell of workers/assembly/recurrent.ts, for rows
// [r0, r0 + rows) of a time-major batch of `batch` rows. The caller passes every pointer already advanced
// to row r0 of step 0; step t of an operand with row width w is `batch·w` floats further on. Rows never
// interact, so a batch split into row ranges (one range per pool chunk) computes exactly what one call
// over the whole batch computes, provided every range uses the same GEMM path (`path`, chosen by the
// caller for the whole batch: see gemmWith).

import { gemmPrepacked, gemmWith, packBOnce } from './gemm';
import { addBias, fill } from './elementwise';
import { gruCellBackward, gruCellForward, lstmCellBackward, lstmCellForward } from './recurrent';

// @ts-ignore: decorator
@inline function off(i: i32): usize {
  return <usize>i << 2;
}

/**
 * `path` value asking for the recurrent kernel packed once per call (per row range) into this thread's
 * workspace, then the packed micro-kernel at every step; the direct path where it does not fit.
 */
const PACK_ONCE: i32 = 3;

/** B for the step GEMMs of a call: packed once (PACK_ONCE and it fits), else 0 (read in place at every step). */
// @ts-ignore: decorator
@inline function packedOnce(path: i32, k: i32, n: i32, b: usize): usize {
  return path == PACK_ONCE ? packBOnce(k, n, b, n) : 0;
}

/** One step's C = A·B + beta·C over the range's rows (A rows k wide, B k × n, C rows n wide): through B packed once, or `path`. */
// @ts-ignore: decorator
@inline function stepGemm(path: i32, pb: usize, rows: i32, n: i32, k: i32, a: usize, b: usize, beta: f32, c: usize): void {
  if (pb != 0) gemmPrepacked(0, rows, n, k, 1, a, k, pb, beta, c, n);
  else gemmWith(path == PACK_ONCE ? 1 : path, 0, 0, rows, n, k, 1, a, k, b, n, beta, c, n);
}

/** dy of step t: per step (`dyEvery` ≠ 0, stride batch·U), only at the last step, or none (dy = 0). */
// @ts-ignore: decorator
@inline function dyAt(dy: usize, dyEvery: i32, t: i32, T: i32, batch: i32, U: i32): usize {
  if (dy == 0) return 0;
  if (dyEvery != 0) return dy + off(t * batch * U);
  return t == T - 1 ? dy : 0;
}

/**
 * LSTM forward over T steps: z (T × batch × 4U, the input projection) gets the bias (4U; 0: none) and
 * then h_{t−1}·U added (skipped at t = 0 when `skipFirst`: a zero initial state), then the cell in place;
 * h and c are (T + 1) × batch × U with h_0, c_0 filled in; tanhC is T × batch × U. The bias is added per
 * step, just before the step's GEMM reads z_t back (in cache), in the order of a separate bias pass.
 */
export function lstmForwardSequence(
  z: usize, rk: usize, bias: usize, h: usize, c: usize, tanhC: usize, rows: i32, batch: i32, T: i32, U: i32, skipFirst: i32, path: i32,
): void {
  const W = 4 * U;
  const pb = packedOnce(path, U, W, rk);
  for (let t = 0; t < T; t++) {
    const zt = z + off(t * batch * W);
    const s = off(t * batch * U);
    const s1 = off((t + 1) * batch * U);
    if (bias != 0) addBias(zt, bias, rows, W);
    if (t > 0 || skipFirst == 0) stepGemm(path, pb, rows, W, U, h + s, rk, 1, zt);
    lstmCellForward(zt, c + s, c + s1, tanhC + s, h + s1, rows, U);
  }
}

/**
 * LSTM backward over steps T − 1 … t0: per step the cell's gradient into dz (step t at row block t − t0),
 * then dh = dz_t·Uᵀ through `rkT` (Uᵀ, 4U × U, transposed once by the caller) unless t = t0 and not
 * `carry`. dh and dc (batch × U, rows at r0) enter as zeros or the carried state and leave as the
 * gradient of the state entering step t0.
 */
export function lstmBackwardSequence(
  z: usize, c: usize, tanhC: usize, dh: usize, dy: usize, dyEvery: i32, dc: usize, dz: usize, rkT: usize,
  rows: i32, batch: i32, T: i32, t0: i32, U: i32, carry: i32, path: i32,
): void {
  const W = 4 * U;
  const pb = packedOnce(path, W, U, rkT);
  for (let t = T - 1; t >= t0; t--) {
    const dzt = dz + off((t - t0) * batch * W);
    const s = off(t * batch * U);
    lstmCellBackward(z + off(t * batch * W), c + s, tanhC + s, dh, dyAt(dy, dyEvery, t, T, batch, U), dc, dzt, rows, U);
    if (t > t0 || carry != 0) stepGemm(path, pb, rows, U, W, dzt, rkT, 0, dh);
  }
}

/**
 * GRU forward over T steps: a_t += the input bias (3U; 0: none); q_t = h_{t−1}·U (zeros at t = 0 when
 * `skipFirst`) + the recurrent bias `recurrentBias` (3U), then the cell (a ← z, r, ĥ in place; h_t). a and
 * q are T × batch × 3U, h is (T + 1) × batch × U with h_0 filled in.
 */
export function gruForwardSequence(
  a: usize, q: usize, rk: usize, inputBias: usize, recurrentBias: usize, h: usize, rows: i32, batch: i32, T: i32, U: i32, skipFirst: i32, path: i32,
): void {
  const W = 3 * U;
  const pb = packedOnce(path, U, W, rk);
  for (let t = 0; t < T; t++) {
    const at = a + off(t * batch * W);
    const qt = q + off(t * batch * W);
    const s = off(t * batch * U);
    if (inputBias != 0) addBias(at, inputBias, rows, W);
    if (t == 0 && skipFirst != 0) fill(qt, rows * W, 0);
    else stepGemm(path, pb, rows, W, U, h + s, rk, 0, qt);
    addBias(qt, recurrentBias, rows, W);
    gruCellForward(at, qt, h + s, h + off((t + 1) * batch * U), rows, U);
  }
}

/**
 * GRU backward over steps T − 1 … t0: the cell's gradients into da and dq (row block t − t0), then
 * dh += dq_t·Uᵀ through `rkT` (Uᵀ, 3U × U) unless t = t0 and not `carry`.
 */
export function gruBackwardSequence(
  a: usize, q: usize, h: usize, dh: usize, dy: usize, dyEvery: i32, da: usize, dq: usize, rkT: usize,
  rows: i32, batch: i32, T: i32, t0: i32, U: i32, carry: i32, path: i32,
): void {
  const W = 3 * U;
  const pb = packedOnce(path, W, U, rkT);
  for (let t = T - 1; t >= t0; t--) {
    const g = off(t * batch * W);
    const d = off((t - t0) * batch * W);
    gruCellBackward(a + g, q + g, h + off(t * batch * U), dh, dyAt(dy, dyEvery, t, T, batch, U), da + d, dq + d, rows, U);
    if (t > t0 || carry != 0) stepGemm(path, pb, rows, U, W, dq + d, rkT, 1, dh);
  }
}
