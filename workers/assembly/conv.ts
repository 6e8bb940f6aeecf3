// 2-D convolution over NHWC tensors (contract: workers/kernel-api.ts, conv2d*).
//
// Filters are [kh][kw][cin][cout] (Keras / TF layout), so for one filter row ky the (kx, ci) run of a
// stride-1, dilation-1 window is kw·cin contiguous floats of the input, and the matching weights are
// kw·cin rows of cout contiguous floats (KERNELS.md §6).
//
// - conv2dForward: direct implicit GEMM. Register tile 2 output pixels × 16 output channels (8 f32x4
//   accumulators, 4 weight vectors, 2 splats = 14 of V8's ~15 xmm registers). Pixels whose window lies
//   in the input in x (the interior) go in pairs over the whole contiguous (kx, ci) run; border pixels
//   go one by one over their valid taps only (no padded copy, no bounds checks in the inner loop).
//   Rows of ky outside the input are skipped per output row. With outC % 16 = 0 the interior pairs of a
//   row go through one convRowP16 / convRow3P16 call per 16-channel block (one call per pair cost the
//   C = 1 layer ~40% of its time: 20 → 31–35 GFLOP/s).
// - conv2dBackwardInput: the same micro-kernels in gather form: dx[iy, ix, ci] sums, over the taps
//   (ky, kx) that reach it (iy + pt − ky·dh divisible by sh, quotient oy in range), dy[oy, ox, :] times
//   wt[ky, kx, :, ci] (the filter transposed per tap by conv2dTransposeFilter, so ci is contiguous).
//   Pixels ix and ix + sw share their tap set in the interior, so they pair up. C = 1 (a first layer
//   behind augmentation), strideW = 1, outC % 16 = 0: vectorised over co instead (dxC1Quad: 4 pixels,
//   horizontal sums at the end), since a 1-channel output has nothing to vectorise over.
// - conv2dBackwardFilter: direct when outC % 16 = 0 and one image's dy is ≤ 256 KiB (backwardFilterDirect:
//   per image, two taps or two input channels × 16 output channels per micro-kernel over the pixels both
//   reach), else im2col of a chunk of pixels into the caller's work buffer, then the GEMM
//   dW += colᵀ · dY (A transposed costs nothing in gemm.ts). Chunking keeps col in L2.
// - conv2dForwardIm2col: the im2col + GEMM alternative to conv2dForward, kept for measurements.
//
// Every output element is computed by the same operation sequence whatever the image range, so a split
// over batch images is bitwise identical to one thread.

import { gemm } from './gemm';
import { addBias, reluForward } from './elementwise';

/**
 * Largest dy image (bytes) for the direct filter gradient: it re-reads one image's dy once per (tap, channel
 * pair, 16-channel block), which is fast while the image stays in L1/L2 (both example layers: 50 / 25 KiB,
 * measured 40 / 55 GFLOP/s vs 6 / 38 for im2col + GEMM); larger images go through im2col + GEMM.
 */
const DIRECT_DW_MAX_IMAGE_BYTES: i32 = 256 << 10;

// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// ---------------------------------------------------------------- micro-kernels
//
// Common shape: acc = bias (or 0); for i1 < n1: for i2 < n2: for p < len: acc += a[p] · w[p, 0..NC),
// where a advances 4 bytes and w `ldw` bytes per p; (a, w) advance (sa2, sw2) per i2 and (sa1, sw1)
// per i1 (strides may be negative: usize arithmetic wraps). Pair kernels read the second pixel at
// a + ap and write it at y + yp. Separate, non-inlined functions (each has several call sites).

function convP16(
  a: usize, ap: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize, yp: usize,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  if (bias) {
    c00 = v128.load(bias); c01 = v128.load(bias, 16); c02 = v128.load(bias, 32); c03 = v128.load(bias, 48);
  }
  let c10 = c00, c11 = c01, c12 = c02, c13 = c03;
  for (let i1 = 0; i1 < n1; i1++) {
    let a2 = a, w2 = w;
    for (let i2 = 0; i2 < n2; i2++) {
      let pa = a2, pb = a2 + ap, pw = w2;
      for (let p = 0; p < len; p++) {
        const w0 = v128.load(pw), w1 = v128.load(pw, 16), w2v = v128.load(pw, 32), w3 = v128.load(pw, 48);
        const x0 = v128.load32_splat(pa);
        c00 = madd(x0, w0, c00); c01 = madd(x0, w1, c01); c02 = madd(x0, w2v, c02); c03 = madd(x0, w3, c03);
        const x1 = v128.load32_splat(pb);
        c10 = madd(x1, w0, c10); c11 = madd(x1, w1, c11); c12 = madd(x1, w2v, c12); c13 = madd(x1, w3, c13);
        pa += 4; pb += 4; pw += ldw;
      }
      a2 += sa2; w2 += sw2;
    }
    a += sa1; w += sw1;
  }
  v128.store(y, c00); v128.store(y, c01, 16); v128.store(y, c02, 32); v128.store(y, c03, 48);
  const y1 = y + yp;
  v128.store(y1, c10); v128.store(y1, c11, 16); v128.store(y1, c12, 32); v128.store(y1, c13, 48);
}

/**
 * `pairs` pixel pairs × 16 channels along an output row: convP16's loop with the pair loop inside, so a
 * row of short windows (C = 1: a 3-float (kx, ci) run) pays one call, not one per pair. Pair j reads
 * a + 2j·ap and writes y + 2j·yp (and + ap / + yp). The per-element operation sequence is convP16's, so
 * the results are bitwise identical to it.
 */
function convRowP16(
  a: usize, ap: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize, yp: usize, pairs: i32,
): void {
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  if (bias) {
    b0 = v128.load(bias); b1 = v128.load(bias, 16); b2 = v128.load(bias, 32); b3 = v128.load(bias, 48);
  }
  for (let j = 0; j < pairs; j++) {
    let c00 = b0, c01 = b1, c02 = b2, c03 = b3;
    let c10 = b0, c11 = b1, c12 = b2, c13 = b3;
    let a1 = a, w1 = w;
    for (let i1 = 0; i1 < n1; i1++) {
      let a2 = a1, w2 = w1;
      for (let i2 = 0; i2 < n2; i2++) {
        let pa = a2, pb = a2 + ap, pw = w2;
        for (let p = 0; p < len; p++) {
          const w0 = v128.load(pw), wv1 = v128.load(pw, 16), wv2 = v128.load(pw, 32), w3 = v128.load(pw, 48);
          const x0 = v128.load32_splat(pa);
          c00 = madd(x0, w0, c00); c01 = madd(x0, wv1, c01); c02 = madd(x0, wv2, c02); c03 = madd(x0, w3, c03);
          const x1 = v128.load32_splat(pb);
          c10 = madd(x1, w0, c10); c11 = madd(x1, wv1, c11); c12 = madd(x1, wv2, c12); c13 = madd(x1, w3, c13);
          pa += 4; pb += 4; pw += ldw;
        }
        a2 += sa2; w2 += sw2;
      }
      a1 += sa1; w1 += sw1;
    }
    v128.store(y, c00); v128.store(y, c01, 16); v128.store(y, c02, 32); v128.store(y, c03, 48);
    const y1 = y + yp;
    v128.store(y1, c10); v128.store(y1, c11, 16); v128.store(y1, c12, 32); v128.store(y1, c13, 48);
    a += ap << 1; y += yp << 1;
  }
}

/**
 * convRowP16 for a 3-float run (C = 1, KW = 3, dilation 1: the usual first layer), the run unrolled so
 * the loop only steps over filter rows. Same per-element operation sequence as convRowP16.
 */
function convRow3P16(
  a: usize, ap: usize, w: usize, ldw: usize, n1: i32, sa1: usize, sw1: usize,
  bias: usize, y: usize, yp: usize, pairs: i32,
): void {
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  if (bias) {
    b0 = v128.load(bias); b1 = v128.load(bias, 16); b2 = v128.load(bias, 32); b3 = v128.load(bias, 48);
  }
  for (let j = 0; j < pairs; j++) {
    let c00 = b0, c01 = b1, c02 = b2, c03 = b3;
    let c10 = b0, c11 = b1, c12 = b2, c13 = b3;
    let pa = a, pw = w;
    for (let i1 = 0; i1 < n1; i1++) {
      const pb = pa + ap;
      let w0 = v128.load(pw), wv1 = v128.load(pw, 16), wv2 = v128.load(pw, 32), w3 = v128.load(pw, 48);
      let x0 = v128.load32_splat(pa);
      c00 = madd(x0, w0, c00); c01 = madd(x0, wv1, c01); c02 = madd(x0, wv2, c02); c03 = madd(x0, w3, c03);
      let x1 = v128.load32_splat(pb);
      c10 = madd(x1, w0, c10); c11 = madd(x1, wv1, c11); c12 = madd(x1, wv2, c12); c13 = madd(x1, w3, c13);
      const pw1 = pw + ldw;
      w0 = v128.load(pw1); wv1 = v128.load(pw1, 16); wv2 = v128.load(pw1, 32); w3 = v128.load(pw1, 48);
      x0 = v128.load32_splat(pa, 4);
      c00 = madd(x0, w0, c00); c01 = madd(x0, wv1, c01); c02 = madd(x0, wv2, c02); c03 = madd(x0, w3, c03);
      x1 = v128.load32_splat(pb, 4);
      c10 = madd(x1, w0, c10); c11 = madd(x1, wv1, c11); c12 = madd(x1, wv2, c12); c13 = madd(x1, w3, c13);
      const pw2 = pw1 + ldw;
      w0 = v128.load(pw2); wv1 = v128.load(pw2, 16); wv2 = v128.load(pw2, 32); w3 = v128.load(pw2, 48);
      x0 = v128.load32_splat(pa, 8);
      c00 = madd(x0, w0, c00); c01 = madd(x0, wv1, c01); c02 = madd(x0, wv2, c02); c03 = madd(x0, w3, c03);
      x1 = v128.load32_splat(pb, 8);
      c10 = madd(x1, w0, c10); c11 = madd(x1, wv1, c11); c12 = madd(x1, wv2, c12); c13 = madd(x1, w3, c13);
      pa += sa1; pw += sw1;
    }
    v128.store(y, c00); v128.store(y, c01, 16); v128.store(y, c02, 32); v128.store(y, c03, 48);
    const y1 = y + yp;
    v128.store(y1, c10); v128.store(y1, c11, 16); v128.store(y1, c12, 32); v128.store(y1, c13, 48);
    a += ap << 1; y += yp << 1;
  }
}

function convS16(
  a: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  if (bias) {
    c00 = v128.load(bias); c01 = v128.load(bias, 16); c02 = v128.load(bias, 32); c03 = v128.load(bias, 48);
  }
  for (let i1 = 0; i1 < n1; i1++) {
    let a2 = a, w2 = w;
    for (let i2 = 0; i2 < n2; i2++) {
      let pa = a2, pw = w2;
      for (let p = 0; p < len; p++) {
        const x0 = v128.load32_splat(pa);
        c00 = madd(x0, v128.load(pw), c00); c01 = madd(x0, v128.load(pw, 16), c01);
        c02 = madd(x0, v128.load(pw, 32), c02); c03 = madd(x0, v128.load(pw, 48), c03);
        pa += 4; pw += ldw;
      }
      a2 += sa2; w2 += sw2;
    }
    a += sa1; w += sw1;
  }
  v128.store(y, c00); v128.store(y, c01, 16); v128.store(y, c02, 32); v128.store(y, c03, 48);
}

function convP4(
  a: usize, ap: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize, yp: usize,
): void {
  let c0 = f32x4.splat(0);
  if (bias) c0 = v128.load(bias);
  let c1 = c0;
  for (let i1 = 0; i1 < n1; i1++) {
    let a2 = a, w2 = w;
    for (let i2 = 0; i2 < n2; i2++) {
      let pa = a2, pb = a2 + ap, pw = w2;
      for (let p = 0; p < len; p++) {
        const w0 = v128.load(pw);
        c0 = madd(v128.load32_splat(pa), w0, c0);
        c1 = madd(v128.load32_splat(pb), w0, c1);
        pa += 4; pb += 4; pw += ldw;
      }
      a2 += sa2; w2 += sw2;
    }
    a += sa1; w += sw1;
  }
  v128.store(y, c0);
  v128.store(y + yp, c1);
}

function convS4(
  a: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize,
): void {
  let c0 = f32x4.splat(0);
  if (bias) c0 = v128.load(bias);
  for (let i1 = 0; i1 < n1; i1++) {
    let a2 = a, w2 = w;
    for (let i2 = 0; i2 < n2; i2++) {
      let pa = a2, pw = w2;
      for (let p = 0; p < len; p++) {
        c0 = madd(v128.load32_splat(pa), v128.load(pw), c0);
        pa += 4; pw += ldw;
      }
      a2 += sa2; w2 += sw2;
    }
    a += sa1; w += sw1;
  }
  v128.store(y, c0);
}

/** One output channel of one pixel (channel counts that are not multiples of 4). */
function convS1(
  a: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize,
): void {
  let c: f32 = bias ? load<f32>(bias) : 0;
  for (let i1 = 0; i1 < n1; i1++) {
    let a2 = a, w2 = w;
    for (let i2 = 0; i2 < n2; i2++) {
      let pa = a2, pw = w2;
      for (let p = 0; p < len; p++) {
        c += load<f32>(pa) * load<f32>(pw);
        pa += 4; pw += ldw;
      }
      a2 += sa2; w2 += sw2;
    }
    a += sa1; w += sw1;
  }
  store<f32>(y, c);
}

/**
 * All `nc` output channels of one pixel (pair = false) or of two pixels (the second at a + ap, written
 * at y + yp): 16-wide tiles, then 4-wide, then single channels. Weights of channel block co start at
 * w + 4·co, as do bias and output. The bias / no-bias split gives each micro-kernel two call sites, so
 * binaryen keeps them out of line (inlined into this driver, V8 spills the accumulators: KERNELS.md §1).
 */
function channels(
  pair: bool, a: usize, ap: usize, w: usize, ldw: usize, len: i32,
  n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize,
  bias: usize, y: usize, yp: usize, nc: i32,
): void {
  let co = 0;
  for (; co + 16 <= nc; co += 16) {
    const o = <usize>co << 2;
    if (pair) {
      if (bias) convP16(a, ap, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, bias + o, y + o, yp);
      else convP16(a, ap, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, 0, y + o, yp);
    } else {
      if (bias) convS16(a, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, bias + o, y + o);
      else convS16(a, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, 0, y + o);
    }
  }
  for (; co + 4 <= nc; co += 4) {
    const o = <usize>co << 2;
    if (pair) {
      if (bias) convP4(a, ap, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, bias + o, y + o, yp);
      else convP4(a, ap, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, 0, y + o, yp);
    } else {
      if (bias) convS4(a, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, bias + o, y + o);
      else convS4(a, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, 0, y + o);
    }
  }
  for (; co < nc; co++) {
    const o = <usize>co << 2;
    const b = bias ? bias + o : 0;
    convS1(a, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, b, y + o);
    if (pair) convS1(a + ap, w + o, ldw, len, n1, sa1, sw1, n2, sa2, sw2, b, y + o + yp);
  }
}

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
 */
export function conv2dForward(
  x: usize, w: usize, bias: usize, y: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32, activation: i32,
): void {
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

// ---------------------------------------------------------------- backward input

/** wt[t, co, ci] = w[t, ci, co] for each of `taps` filter positions (ci contiguous for the gather). */
export function conv2dTransposeFilter(w: usize, wt: usize, taps: i32, C: i32, CO: i32): void {
  for (let t = 0; t < taps; t++) {
    const src = w + (<usize>(t * C * CO) << 2);
    const dst = wt + (<usize>(t * C * CO) << 2);
    for (let ci = 0; ci < C; ci++) {
      for (let co = 0; co < CO; co++) {
        store<f32>(dst + (<usize>(co * C + ci) << 2), load<f32>(src + (<usize>(ci * CO + co) << 2)));
      }
    }
  }
}

function gcd(a: i32, b: i32): i32 {
  while (b) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Result of tapSet (per-instance globals: each thread has its own instance, nothing is shared).
let tapFirst: i32 = 0;
let tapCount: i32 = 0;
let tapOut: i32 = 0;

/**
 * Taps k of a transposed axis: input index i receives from output o = (i + pad − k·d) / s when that is
 * an integer in [0, outSize). The k form an arithmetic progression of step s/g (g = gcd(s, d)) along
 * which o decreases by d/g; sets tapFirst, tapCount and tapOut (o of the first tap).
 */
function tapSet(i: i32, pad: i32, d: i32, s: i32, K: i32, outSize: i32, step: i32): void {
  tapCount = 0;
  let k = 0;
  for (; k < K; k++) {
    const t = i + pad - k * d;
    if (t < 0) return;
    if (t % s == 0 && t / s < outSize) break;
  }
  if (k >= K) return;
  tapFirst = k;
  tapOut = (i + pad - k * d) / s;
  for (; k < K; k += step) {
    const t = i + pad - k * d;
    if (t < 0) break;
    tapCount++;
  }
}

/** [Σ lanes of s0, Σ s1, Σ s2, Σ s3]: a 4×4 transpose-add. */
// @ts-ignore: decorator
@inline function hsum4(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const v0 = f32x4.add(v128.shuffle<f32>(s0, s1, 0, 4, 1, 5), v128.shuffle<f32>(s0, s1, 2, 6, 3, 7));
  const v1 = f32x4.add(v128.shuffle<f32>(s2, s3, 0, 4, 1, 5), v128.shuffle<f32>(s2, s3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(v0, v1, 0, 1, 4, 5), v128.shuffle<f32>(v0, v1, 2, 3, 6, 7));
}

/**
 * dx of one input channel (C = 1), vectorised over output channels: 4 adjacent input pixels (stride 1 in
 * x, so their dy pixels are adjacent too: + ap each) with the same taps; per tap the dot products of
 * dy[pixel, 0..len) with wt[tap, 0..len) (len a multiple of 16), alternating co-vectors into separate
 * accumulators (8 chains), reduced by a transpose-add and stored as one vector (4 contiguous dx).
 * Tap walk as the other micro-kernels: (a, w) advance (sa2, sw2) per i2 and (sa1, sw1) per i1.
 */
function dxC1Quad(
  a: usize, ap: usize, w: usize, len: i32, n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize, out: usize,
): void {
  let p0 = f32x4.splat(0), p1 = f32x4.splat(0), p2 = f32x4.splat(0), p3 = f32x4.splat(0);
  let e0 = f32x4.splat(0), e1 = f32x4.splat(0), e2 = f32x4.splat(0), e3 = f32x4.splat(0);
  // 16 channels per step, the block loop outermost: the tap loop body is 16 FMAs with no inner loop
  // (a 1-trip inner loop made V8 keep five accumulators on the stack across iterations).
  for (let q = 0; q < len; q += 16) {
    let a1 = a + (<usize>q << 2), w1 = w + (<usize>q << 2);
    for (let i1 = 0; i1 < n1; i1++) {
      let pa = a1, pw = w1;
      for (let i2 = 0; i2 < n2; i2++) {
        const pb = pa + ap, pc = pb + ap, pd = pc + ap;
        let wa = v128.load(pw), wb = v128.load(pw, 16);
        p0 = madd(v128.load(pa), wa, p0); e0 = madd(v128.load(pa, 16), wb, e0);
        p1 = madd(v128.load(pb), wa, p1); e1 = madd(v128.load(pb, 16), wb, e1);
        p2 = madd(v128.load(pc), wa, p2); e2 = madd(v128.load(pc, 16), wb, e2);
        p3 = madd(v128.load(pd), wa, p3); e3 = madd(v128.load(pd, 16), wb, e3);
        wa = v128.load(pw, 32); wb = v128.load(pw, 48);
        p0 = madd(v128.load(pa, 32), wa, p0); e0 = madd(v128.load(pa, 48), wb, e0);
        p1 = madd(v128.load(pb, 32), wa, p1); e1 = madd(v128.load(pb, 48), wb, e1);
        p2 = madd(v128.load(pc, 32), wa, p2); e2 = madd(v128.load(pc, 48), wb, e2);
        p3 = madd(v128.load(pd, 32), wa, p3); e3 = madd(v128.load(pd, 48), wb, e3);
        pa += sa2; pw += sw2;
      }
      a1 += sa1; w1 += sw1;
    }
  }
  v128.store(out, hsum4(f32x4.add(p0, e0), f32x4.add(p1, e1), f32x4.add(p2, e2), f32x4.add(p3, e3)));
}

/** dxC1Quad for one pixel (border pixels, row tails): 4 accumulators over co-vector pairs. */
function dxC1One(
  a: usize, w: usize, len: i32, n1: i32, sa1: usize, sw1: usize, n2: i32, sa2: usize, sw2: usize, out: usize,
): void {
  let p0 = f32x4.splat(0), e0 = f32x4.splat(0);
  for (let i1 = 0; i1 < n1; i1++) {
    let a2 = a, w2 = w;
    for (let i2 = 0; i2 < n2; i2++) {
      let pa = a2, pw = w2;
      for (let q = 0; q < len; q += 16) {
        p0 = madd(v128.load(pa), v128.load(pw), p0);
        e0 = madd(v128.load(pa, 16), v128.load(pw, 16), e0);
        p0 = madd(v128.load(pa, 32), v128.load(pw, 32), p0);
        e0 = madd(v128.load(pa, 48), v128.load(pw, 48), e0);
        pa += 64; pw += 64;
      }
      a2 += sa2; w2 += sw2;
    }
    a += sa1; w += sw1;
  }
  const s = f32x4.add(p0, e0);
  store<f32>(out, f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
}

/**
 * dx[n, iy, ix, ci] = Σ over (ky, kx, co) with iy = oy·sh − pt + ky·dh, ix = ox·sw − pl + kx·dw of
 * dy[n, oy, ox, co] · w[ky, kx, ci, co]; wt is the filter from conv2dTransposeFilter ([ky, kx, co, ci]).
 * Every element of dx is written (0 where no tap reaches it).
 */
export function conv2dBackwardInput(
  dy: usize, wt: usize, dx: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
  const gy = gcd(sh, dh), gx = gcd(sw, dw);
  const stepY = sh / gy, stepX = sw / gx;
  const ldw = <usize>C << 2;
  const tapW = <usize>(CO * C) << 2;
  // Along the progression: dy moves back dh/g rows (dw/g pixels), wt forward s/g taps.
  const sa1 = <usize>(-(dh / gy) * OW * CO) << 2;
  const sw1 = <usize>(stepY * KW) * tapW;
  const sa2 = <usize>(-(dw / gx) * CO) << 2;
  const sw2 = <usize>stepX * tapW;
  const pixDy = <usize>CO << 2;
  const pixDx = <usize>(sw * C) << 2;
  for (let n = 0; n < batch; n++) {
    for (let iy = 0; iy < H; iy++) {
      tapSet(iy, pt, dh, sh, KH, OH, stepY);
      const ky0 = tapFirst, nky = tapCount, oy0 = tapOut;
      const dxRow = dx + (<usize>((n * H + iy) * W) << 2) * <usize>C;
      const dyRow = dy + (<usize>((n * OH + (nky > 0 ? oy0 : 0)) * OW) << 2) * <usize>CO;
      if (C == 1 && sw == 1 && CO % 16 == 0) {
        // One input channel: vectorised over co, 4 pixels at a time over [ixa, ixb] where every kx
        // reaches the output (first tap kx = 0 at ox = ix + pl), found without tapSet; the rest one by one.
        const ixa = (KW - 1) * dw - pl, ixb = min(W - 1, OW - 1 - pl);
        const waFull = wt + <usize>(ky0 * KW) * tapW;
        let ix = 0;
        while (ix < W) {
          if (nky > 0 && ix >= ixa && ix + 3 <= ixb) {
            for (; ix + 3 <= ixb; ix += 4) {
              const a = dyRow + <usize>(ix + pl) * pixDy;
              const out = dxRow + (<usize>ix << 2);
              if (nky == 1) dxC1Quad(a, pixDy, waFull, CO, 1, 0, 0, KW, sa2, sw2, out);
              else dxC1Quad(a, pixDy, waFull, CO, nky, sa1, sw1, KW, sa2, sw2, out);
            }
            continue;
          }
          tapSet(ix, pl, dw, sw, KW, OW, stepX);
          const kx0 = tapFirst, nkx = tapCount, ox0 = tapOut;
          const out = dxRow + (<usize>ix << 2);
          if (nky == 0 || nkx == 0) {
            store<f32>(out, 0);
            ix++;
            continue;
          }
          const a = dyRow + <usize>ox0 * pixDy;
          const wa = wt + <usize>(ky0 * KW + kx0) * tapW;
          // Two call sites each (one-row tap sets need no row strides) keep the micro-kernels out of line.
          if (nky == 1) dxC1One(a, wa, CO, 1, 0, 0, nkx, sa2, sw2, out);
          else dxC1One(a, wa, CO, nky, sa1, sw1, nkx, sa2, sw2, out);
          ix++;
        }
        continue;
      }
      // Pixels of one residue class mod sw, in order; ix and ix + sw pair up when their tap sets match.
      for (let r = 0; r < sw; r++) {
        let ix = r;
        while (ix < W) {
          tapSet(ix, pl, dw, sw, KW, OW, stepX);
          const kx0 = tapFirst, nkx = tapCount, ox0 = tapOut;
          let pair = false;
          if (ix + sw < W && nky > 0 && nkx > 0) {
            tapSet(ix + sw, pl, dw, sw, KW, OW, stepX);
            pair = tapCount == nkx && tapFirst == kx0;
          }
          const out = dxRow + (<usize>ix << 2) * <usize>C;
          if (nky == 0 || nkx == 0) {
            for (let ci = 0; ci < C; ci++) store<f32>(out + (<usize>ci << 2), 0);
          } else {
            const a = dyRow + <usize>ox0 * pixDy;
            const wa = wt + <usize>(ky0 * KW + kx0) * tapW;
            channels(pair, a, pixDy, wa, ldw, CO, nky, sa1, sw1, nkx, sa2, sw2, 0, out, pixDx, C);
          }
          ix += pair ? 2 * sw : sw;
        }
      }
    }
  }
}

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
function dwTap2x16(x: usize, d: usize, xr: usize, xc: usize, dy: usize, dyr: usize, dyc: usize, rows: i32, cols: i32, acc: usize, acc2: usize): void {
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

// ---------------------------------------------------------------- im2col paths

/** col[p − p0, (ky·KW + kx)·C + ci] = x at the tap, 0 outside: pixels p0 .. p0 + count of the batch. */
function im2col(
  x: usize, col: usize, p0: i32, count: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
  const rowBytes = <usize>C << 2;
  let dst = col;
  for (let p = p0; p < p0 + count; p++) {
    const n = p / (OH * OW);
    const rem = p - n * OH * OW;
    const oy = rem / OW;
    const ox = rem - oy * OW;
    const xn = x + (<usize>(n * H * W) << 2) * <usize>C;
    for (let ky = 0; ky < KH; ky++) {
      const iy = oy * sh - pt + ky * dh;
      for (let kx = 0; kx < KW; kx++) {
        const ix = ox * sw - pl + kx * dw;
        if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
          memory.fill(dst, 0, rowBytes);
        } else if (C == 1) {
          store<f32>(dst, load<f32>(xn + (<usize>(iy * W + ix) << 2)));
        } else {
          memory.copy(dst, xn + (<usize>(iy * W + ix) << 2) * <usize>C, rowBytes);
        }
        dst += rowBytes;
      }
    }
  }
}

/**
 * dw[ky, kx, ci, co] = Σ_{n, oy, ox} x[n, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw, ci] · dy[n, oy, ox, co]
 * (overwritten). work: ≥ KH·KW·C floats; chunks of ⌊workFloats / (KH·KW·C)⌋ pixels are im2col'd there.
 */
export function conv2dBackwardFilter(
  x: usize, dy: usize, dw_: usize, work: usize, workFloats: i32, batch: i32, H: i32, W: i32, C: i32,
  OH: i32, OW: i32, CO: i32, KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
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
