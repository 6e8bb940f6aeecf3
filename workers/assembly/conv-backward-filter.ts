// 2-D convolution filter gradient over NHWC tensors (contract: workers/kernel-api.ts, conv2dBackwardFilter;
// layout and im2col: conv-common.ts).
//
// - conv2dBackwardFilter: direct when outC % 16 = 0 and one image's dy is ≤ 256 KiB (backwardFilterDirect:
//   per image, two taps or two input channels × 16 output channels per micro-kernel over the pixels both
//   reach), else im2col of a chunk of pixels into the caller's work buffer, then the GEMM
//   dW += colᵀ · dY (A transposed costs nothing in gemm.ts). Chunking keeps col in L2.
//
// Every output element is computed by the same operation sequence whatever the image range, so a split
// over batch images is bitwise identical to one thread.

import { gemm } from './gemm';
import { im2col, madd } from './conv-common';
import { winogradFits, winogradPays } from './conv-winograd';
import { conv2dBackwardFilterWinograd, FILTER_TILE_BLOCK } from './conv-winograd-filter';

/**
 * Largest dy image (bytes) for the direct filter gradient: it re-reads one image's dy once per (tap, channel
 * pair, 16-channel block), which is fast while the image stays in L1/L2 (both example layers: 50 / 25 KiB,
 * measured 40 / 55 GFLOP/s vs 6 / 38 for im2col + GEMM); larger images go through im2col + GEMM.
 */
const DIRECT_DW_MAX_IMAGE_BYTES: i32 = 256 << 10;

// ---------------------------------------------------------------- backward filter, direct

/**
 * acc[0..16) += Σ over a rows × cols grid of pixels of x[pixel] · dy[pixel, 0..16): x at x + r·xr + c·xc
 * (one float), dy at dy + r·dyr + c·dyc. Even and odd columns go to separate accumulators (8 independent
 * FMA chains instead of 4), added at the end.
 */
function dwTap16(x: usize, xr: usize, xc: usize, dy: usize, dyr: usize, dyc: usize, rows: i32, cols: i32, acc: usize): void {
  let a0 = v128.load(acc), a1 = v128.load(acc, 16), a2 = v128.load(acc, 32), a3 = v128.load(acc, 48);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const xc2 = xc << 1, dyc2 = dyc << 1;
  for (let r = 0; r < rows; r++) {
    let px = x, pd = dy;
    let c = 0;
    for (; c + 2 <= cols; c += 2) {
      const s0 = v128.load32_splat(px);
      a0 = madd(s0, v128.load(pd), a0); a1 = madd(s0, v128.load(pd, 16), a1);
      a2 = madd(s0, v128.load(pd, 32), a2); a3 = madd(s0, v128.load(pd, 48), a3);
      const s1 = v128.load32_splat(px + xc);
      const pe = pd + dyc;
      b0 = madd(s1, v128.load(pe), b0); b1 = madd(s1, v128.load(pe, 16), b1);
      b2 = madd(s1, v128.load(pe, 32), b2); b3 = madd(s1, v128.load(pe, 48), b3);
      px += xc2; pd += dyc2;
    }
    if (c < cols) {
      const s0 = v128.load32_splat(px);
      a0 = madd(s0, v128.load(pd), a0); a1 = madd(s0, v128.load(pd, 16), a1);
      a2 = madd(s0, v128.load(pd, 32), a2); a3 = madd(s0, v128.load(pd, 48), a3);
    }
    x += xr; dy += dyr;
  }
  v128.store(acc, f32x4.add(a0, b0)); v128.store(acc, f32x4.add(a1, b1), 16);
  v128.store(acc, f32x4.add(a2, b2), 32); v128.store(acc, f32x4.add(a3, b3), 48);
}

/**
 * Two taps at once: acc[0..16) += Σ x[pixel] · dy[pixel, 0..16) and acc2[0..16) += Σ x[pixel + d] ·
 * dy[pixel, 0..16) over a rows × cols grid (addressing as dwTap16). Each dy vector feeds two FMAs:
 * 8 accumulators + 4 dy + 2 splats = 14 xmm, the GEMM micro-kernel's budget (dwTap16 with two pixel sets
 * needs 18 and V8 spills accumulators, measured at 18 GFLOP/s).
 */
export function dwTap2x16(x: usize, d: usize, xr: usize, xc: usize, dy: usize, dyr: usize, dyc: usize, rows: i32, cols: i32, acc: usize, acc2: usize): void {
  let a0 = v128.load(acc), a1 = v128.load(acc, 16), a2 = v128.load(acc, 32), a3 = v128.load(acc, 48);
  let b0 = v128.load(acc2), b1 = v128.load(acc2, 16), b2 = v128.load(acc2, 32), b3 = v128.load(acc2, 48);
  for (let r = 0; r < rows; r++) {
    let px = x, pd = dy;
    for (let c = 0; c < cols; c++) {
      const d0 = v128.load(pd), d1 = v128.load(pd, 16), d2 = v128.load(pd, 32), d3 = v128.load(pd, 48);
      const s0 = v128.load32_splat(px);
      a0 = madd(s0, d0, a0); a1 = madd(s0, d1, a1); a2 = madd(s0, d2, a2); a3 = madd(s0, d3, a3);
      const s1 = v128.load32_splat(px + d);
      b0 = madd(s1, d0, b0); b1 = madd(s1, d1, b1); b2 = madd(s1, d2, b2); b3 = madd(s1, d3, b3);
      px += xc; pd += dyc;
    }
    x += xr; dy += dyr;
  }
  v128.store(acc, a0); v128.store(acc, a1, 16); v128.store(acc, a2, 32); v128.store(acc, a3, 48);
  v128.store(acc2, b0); v128.store(acc2, b1, 16); v128.store(acc2, b2, 32); v128.store(acc2, b3, 48);
}

/** First output index o ≥ 0 whose input o·s + off is ≥ 0. */
// @ts-ignore: decorator
@inline function outFirst(off: i32, s: i32): i32 {
  return off >= 0 ? 0 : (s - 1 - off) / s;
}

/** One past the last output index o < count whose input o·s + off is ≤ size − 1 (≥ 0). */
// @ts-ignore: decorator
@inline function outEnd(off: i32, s: i32, size: i32, count: i32): i32 {
  const room = size - 1 - off;
  return room < 0 ? 0 : min(count, room / s + 1);
}

/**
 * Direct filter gradient (outC a multiple of 16): per image (its x and dy stay in L1/L2), per tap
 * (ky, kx, ci) and 16-channel block, dwTap16 over the rectangle of output pixels whose tap lands inside
 * the input (padding contributes nothing, so nothing is materialised). No im2col, no GEMM: the im2col of
 * a C = 1 layer is 9 scalar copies per pixel and its GEMM has m = 9 rows (KERNELS.md §6).
 */
function backwardFilterDirect(
  x: usize, dy: usize, dw_: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
  memory.fill(dw_, 0, <usize>(KH * KW * C * CO) << 2);
  const xr = <usize>(sh * W * C) << 2, xc = <usize>(sw * C) << 2;
  const dyr = <usize>(OW * CO) << 2, dyc = <usize>CO << 2;
  const imageX = <usize>(H * W * C) << 2, imageDy = <usize>(OH * OW * CO) << 2;
  const T = KH * KW;
  for (let n = 0; n < batch; n++) {
    const xn = x + <usize>n * imageX, dyn = dy + <usize>n * imageDy;
    if (C == 1) {
      // Taps t, t + 1 (row-major over (ky, kx)) in pairs over the output pixels both reach; the rest of
      // each tap's rectangle (its border strips) alone; an odd last tap alone.
      let t = 0;
      for (; t + 2 <= T; t += 2) {
        const offYa = (t / KW) * dh - pt, offXa = (t % KW) * dw - pl;
        const offYb = ((t + 1) / KW) * dh - pt, offXb = ((t + 1) % KW) * dw - pl;
        const ay0 = outFirst(offYa, sh), ay1 = outEnd(offYa, sh, H, OH), ax0 = outFirst(offXa, sw), ax1 = outEnd(offXa, sw, W, OW);
        const by0 = outFirst(offYb, sh), by1 = outEnd(offYb, sh, H, OH), bx0 = outFirst(offXb, sw), bx1 = outEnd(offXb, sw, W, OW);
        const iy0 = max(ay0, by0), iy1 = min(ay1, by1), ix0 = max(ax0, bx0), ix1 = min(ax1, bx1);
        const accA = dw_ + (<usize>(t * CO) << 2), accB = accA + (<usize>CO << 2);
        if (iy1 > iy0 && ix1 > ix0) {
          const xs = xn + (<usize>((iy0 * sh + offYa) * W + ix0 * sw + offXa) << 2);
          const d = <usize>((offYb - offYa) * W + offXb - offXa) << 2;
          const ds = dyn + (<usize>((iy0 * OW + ix0) * CO) << 2);
          for (let co = 0; co < CO; co += 16) {
            const o = <usize>co << 2;
            dwTap2x16(xs, d, xr, xc, ds + o, dyr, dyc, iy1 - iy0, ix1 - ix0, accA + o, accB + o);
          }
          dwRest(xn, dyn, offYa, offXa, ay0, ay1, ax0, ax1, iy0, iy1, ix0, ix1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, accA);
          dwRest(xn, dyn, offYb, offXb, by0, by1, bx0, bx1, iy0, iy1, ix0, ix1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, accB);
        } else {
          dwRect(xn, dyn, offYa, offXa, ay0, ay1, ax0, ax1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, accA);
          dwRect(xn, dyn, offYb, offXb, by0, by1, bx0, bx1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, accB);
        }
      }
      if (t < T) {
        const offY = (t / KW) * dh - pt, offX = (t % KW) * dw - pl;
        dwRect(xn, dyn, offY, offX, outFirst(offY, sh), outEnd(offY, sh, H, OH), outFirst(offX, sw), outEnd(offX, sw, W, OW),
          W, OW, CO, sh, sw, xr, xc, dyr, dyc, dw_ + (<usize>(t * CO) << 2));
      }
      continue;
    }
    for (let ky = 0; ky < KH; ky++) {
      const offY = ky * dh - pt;
      const oy0 = outFirst(offY, sh), oy1 = outEnd(offY, sh, H, OH);
      if (oy1 <= oy0) continue;
      const rows = oy1 - oy0;
      const xRow = xn + (<usize>((oy0 * sh + offY) * W * C) << 2);
      const dyRow = dyn + (<usize>(oy0 * OW * CO) << 2);
      const wRow = dw_ + (<usize>(ky * KW * C * CO) << 2);
      for (let kx = 0; kx < KW; kx++) {
        const offX = kx * dw - pl;
        const ox0 = outFirst(offX, sw), ox1 = outEnd(offX, sw, W, OW);
        if (ox1 <= ox0) continue;
        const xs = xRow + (<usize>((ox0 * sw + offX) * C) << 2);
        const ds = dyRow + (<usize>(ox0 * CO) << 2);
        const tap = wRow + (<usize>(kx * C * CO) << 2);
        // Channels ci, ci + 1 of one tap share every pixel: pairs, then the odd channel alone.
        let ci = 0;
        for (; ci + 2 <= C; ci += 2) {
          for (let co = 0; co < CO; co += 16) {
            const acc = tap + (<usize>(ci * CO + co) << 2);
            dwTap2x16(xs + (<usize>ci << 2), 4, xr, xc, ds + (<usize>co << 2), dyr, dyc, rows, ox1 - ox0, acc, acc + (<usize>CO << 2));
          }
        }
        if (ci < C) {
          for (let co = 0; co < CO; co += 16) {
            dwTap16(xs + (<usize>ci << 2), xr, xc, ds + (<usize>co << 2), dyr, dyc, rows, ox1 - ox0, tap + (<usize>(ci * CO + co) << 2));
          }
        }
      }
    }
  }
}

/** C = 1: dwTap16 of the tap at input offset (offY, offX) over output rows [y0, y1) × columns [x0, x1). */
function dwRect(
  xn: usize, dyn: usize, offY: i32, offX: i32, y0: i32, y1: i32, x0: i32, x1: i32, W: i32, OW: i32, CO: i32,
  sh: i32, sw: i32, xr: usize, xc: usize, dyr: usize, dyc: usize, acc: usize,
): void {
  if (y1 <= y0 || x1 <= x0) return;
  const xs = xn + (<usize>((y0 * sh + offY) * W + x0 * sw + offX) << 2);
  const ds = dyn + (<usize>((y0 * OW + x0) * CO) << 2);
  for (let co = 0; co < CO; co += 16) {
    const o = <usize>co << 2;
    dwTap16(xs, xr, xc, ds + o, dyr, dyc, y1 - y0, x1 - x0, acc + o);
  }
}

/** C = 1: dwRect over the tap's rectangle [y0, y1) × [x0, x1) minus the inner rectangle [iy0, iy1) × [ix0, ix1) inside it. */
function dwRest(
  xn: usize, dyn: usize, offY: i32, offX: i32, y0: i32, y1: i32, x0: i32, x1: i32, iy0: i32, iy1: i32, ix0: i32, ix1: i32,
  W: i32, OW: i32, CO: i32, sh: i32, sw: i32, xr: usize, xc: usize, dyr: usize, dyc: usize, acc: usize,
): void {
  dwRect(xn, dyn, offY, offX, y0, iy0, x0, x1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, acc);
  dwRect(xn, dyn, offY, offX, iy1, y1, x0, x1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, acc);
  dwRect(xn, dyn, offY, offX, iy0, iy1, x0, ix0, W, OW, CO, sh, sw, xr, xc, dyr, dyc, acc);
  dwRect(xn, dyn, offY, offX, iy0, iy1, ix1, x1, W, OW, CO, sh, sw, xr, xc, dyr, dyc, acc);
}

/**
 * dw[ky, kx, ci, co] = Σ_{n, oy, ox} x[n, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw, ci] · dy[n, oy, ox, co]
 * (overwritten). work: ≥ KH·KW·C floats; chunks of ⌊workFloats / (KH·KW·C)⌋ pixels are im2col'd there.
 * 3×3 stride-1 windows with enough channels and output (winogradFits, winogradPays) go through
 * conv2dBackwardFilterWinograd instead.
 */
export function conv2dBackwardFilter(
  x: usize, dy: usize, dw_: usize, work: usize, workFloats: i32, batch: i32, H: i32, W: i32, C: i32,
  OH: i32, OW: i32, CO: i32, KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
  if (winogradFits(C, CO, KH, KW, sh, sw, dh, dw, FILTER_TILE_BLOCK) && winogradPays(OH, OW)) {
    conv2dBackwardFilterWinograd(x, dy, dw_, batch, H, W, C, OH, OW, CO, pt, pl);
    return;
  }
  if (CO % 16 == 0 && OH * OW * CO * 4 <= DIRECT_DW_MAX_IMAGE_BYTES) {
    backwardFilterDirect(x, dy, dw_, batch, H, W, C, OH, OW, CO, KH, KW, sh, sw, pt, pl, dh, dw);
    return;
  }
  const K = KH * KW * C;
  const P = batch * OH * OW;
  const chunk = max(1, workFloats / K);
  if (P == 0) {
    memory.fill(dw_, 0, <usize>(K * CO) << 2);
    return;
  }
  for (let p0 = 0; p0 < P; p0 += chunk) {
    const cp = min(chunk, P - p0);
    im2col(x, work, p0, cp, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw);
    gemm(1, 0, K, CO, cp, 1, work, K, dy + (<usize>(p0 * CO) << 2), CO, p0 == 0 ? 0 : 1, dw_, CO);
  }
}
