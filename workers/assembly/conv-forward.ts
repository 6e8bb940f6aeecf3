// 2-D convolution forward over NHWC tensors (contract: workers/kernel-api.ts, conv2dForward*; layout and
// shared micro-kernels: conv-common.ts).
//
// - conv2dForward: direct implicit GEMM. Register tile 2 output pixels × 16 output channels (8 f32x4
//   accumulators, 4 weight vectors, 2 splats = 14 of V8's ~15 xmm registers). Pixels whose window lies
//   in the input in x (the interior) go in pairs over the whole contiguous (kx, ci) run; border pixels
//   go one by one over their valid taps only (no padded copy, no bounds checks in the inner loop).
//   Rows of ky outside the input are skipped per output row. With outC % 16 = 0 the interior pairs of a
//   row go through one convRowP16 / convRow3P16 call per 16-channel block (one call per pair cost the
//   C = 1 layer ~40% of its time: 20 → 31–35 GFLOP/s).
// - conv2dForwardIm2col: the im2col + GEMM alternative to conv2dForward, kept for measurements.
//
// Every output element is computed by the same operation sequence whatever the image range, so a split
// over batch images is bitwise identical to one thread.

import { gemm } from './gemm';
import { addBias, reluForward } from './elementwise';
import { channels, convRow3P16, convRowP16, im2col } from './conv-common';
import { conv2dForwardWinograd, winogradFits, winogradPays } from './conv-winograd';

// ---------------------------------------------------------------- tap ranges

/** Smallest k ≥ 0 with i0 + k·d ≥ 0. */
// @ts-ignore: decorator
@inline function firstTap(i0: i32, d: i32): i32 {
  return i0 >= 0 ? 0 : (d - 1 - i0) / d;
}

/** One past the largest k < count with i0 + k·d ≤ size − 1 (0 if none). */
// @ts-ignore: decorator
@inline function endTap(i0: i32, d: i32, size: i32, count: i32): i32 {
  const room = size - 1 - i0;
  return room < 0 ? 0 : min(count, room / d + 1);
}

// ---------------------------------------------------------------- forward

/**
 * y[n, oy, ox, co] = bias[co] + Σ_{ky, kx, ci} x[n, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw, ci] · w[ky, kx, ci, co],
 * taps outside the input contributing 0 (zero padding). bias = 0: none. activation = 1: then y = relu(y),
 * applied to each output row while it is still in L1 (reluForward in place, so the same bits as a separate
 * relu pass; a separate pass over a batch-256 feature map costs a full read + write of 12.8 MB).
 * 3×3 stride-1 windows with enough channels and output (winogradFits, winogradPays) go through
 * conv2dForwardWinograd instead.
 */
export function conv2dForward(
  x: usize, w: usize, bias: usize, y: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32, activation: i32,
): void {
  if (winogradFits(C, CO, KH, KW, sh, sw, dh, dw) && winogradPays(OH, OW)) {
    conv2dForwardWinograd(x, w, bias, y, batch, H, W, C, OH, OW, CO, pt, pl, activation);
    return;
  }
  const ldw = <usize>CO << 2;
  const sa1 = <usize>(dh * W * C) << 2;
  const sw1 = <usize>(KW * C * CO) << 2;
  const sa2 = <usize>(dw * C) << 2;
  const sw2 = <usize>(C * CO) << 2;
  const pixA = <usize>(sw * C) << 2;
  const pixY = <usize>CO << 2;
  const imageX = <usize>(H * W * C) << 2;
  for (let n = 0; n < batch; n++) {
    const xn = x + <usize>n * imageX;
    for (let oy = 0; oy < OH; oy++) {
      const iy0 = oy * sh - pt;
      const ky0 = firstTap(iy0, dh);
      const ky1 = endTap(iy0, dh, H, KH);
      const n1 = max(0, ky1 - ky0);
      const yRow = y + (<usize>((n * OH + oy) * OW) << 2) * <usize>CO;
      const xRow = xn + (<usize>((iy0 + ky0 * dh) * W) << 2) * <usize>C;
      const wRow = w + <usize>ky0 * sw1;
      // Interior run [oxa, oxb): whole windows in x. With 16-channel tiles only, its pairs go through
      // convRowP16 (one call per row and channel block instead of one per pair).
      let oxa = OW, oxb = OW;
      if (CO % 16 == 0) {
        oxa = min(OW, (pl + sw - 1) / sw);
        const last = W - 1 - (KW - 1) * dw + pl; // largest ox·sw with a whole window
        oxb = last < 0 ? 0 : min(OW, last / sw + 1);
        if (oxb < oxa) oxb = oxa;
      }
      let ox = 0;
      while (ox < OW) {
        if (ox == oxa && oxb - oxa >= 2) {
          const pairs = (oxb - oxa) >> 1;
          const a = xRow + (<usize>(ox * sw - pl) << 2) * <usize>C;
          const yo = yRow + <usize>ox * pixY;
          for (let co = 0; co < CO; co += 16) {
            const o = <usize>co << 2;
            if (dw == 1 && KW * C == 3) {
              if (bias) convRow3P16(a, pixA, wRow + o, ldw, n1, sa1, sw1, bias + o, yo + o, pixY, pairs);
              else convRow3P16(a, pixA, wRow + o, ldw, n1, sa1, sw1, 0, yo + o, pixY, pairs);
            } else if (dw == 1) {
              if (bias) convRowP16(a, pixA, wRow + o, ldw, KW * C, n1, sa1, sw1, 1, 0, 0, bias + o, yo + o, pixY, pairs);
              else convRowP16(a, pixA, wRow + o, ldw, KW * C, n1, sa1, sw1, 1, 0, 0, 0, yo + o, pixY, pairs);
            } else {
              if (bias) convRowP16(a, pixA, wRow + o, ldw, C, n1, sa1, sw1, KW, sa2, sw2, bias + o, yo + o, pixY, pairs);
              else convRowP16(a, pixA, wRow + o, ldw, C, n1, sa1, sw1, KW, sa2, sw2, 0, yo + o, pixY, pairs);
            }
          }
          ox += pairs << 1;
          continue;
        }
        const ix0 = ox * sw - pl;
        const kx0 = firstTap(ix0, dw);
        const kx1 = endTap(ix0, dw, W, KW);
        const nx = max(0, kx1 - kx0);
        // ix0 + kx0·dw is in the input unless nx = 0 (then nothing is read).
        const a = xRow + (<usize>(ix0 + kx0 * dw) << 2) * <usize>C;
        const wa = wRow + <usize>kx0 * sw2;
        const yo = yRow + <usize>ox * pixY;
        const full = kx0 == 0 && kx1 == KW;
        // In x, the next pixel's window starts sw later, so its kx range is also full if its end fits.
        const pair = full && ox + 1 < OW && endTap(ix0 + sw, dw, W, KW) == KW;
        if (dw == 1) {
          channels(pair, a, pixA, wa, ldw, nx * C, n1, sa1, sw1, 1, 0, 0, bias, yo, pixY, CO);
        } else {
          channels(pair, a, pixA, wa, ldw, C, n1, sa1, sw1, nx, sa2, sw2, bias, yo, pixY, CO);
        }
        ox += pair ? 2 : 1;
      }
      if (activation == 1) reluForward(yRow, yRow, OW * CO);
    }
  }
}

/** conv2dForward computed as im2col (chunks of ⌊workFloats / (KH·KW·C)⌋ pixels) + GEMM + addBias. */
export function conv2dForwardIm2col(
  x: usize, w: usize, bias: usize, y: usize, work: usize, workFloats: i32, batch: i32, H: i32, W: i32, C: i32,
  OH: i32, OW: i32, CO: i32, KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
  const K = KH * KW * C;
  const P = batch * OH * OW;
  const chunk = max(1, workFloats / K);
  for (let p0 = 0; p0 < P; p0 += chunk) {
    const cp = min(chunk, P - p0);
    const yc = y + (<usize>(p0 * CO) << 2);
    im2col(x, work, p0, cp, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw);
    gemm(0, 0, cp, CO, K, 1, work, K, w, CO, 0, yc, CO);
    if (bias) addBias(yc, bias, cp, CO);
  }
}
