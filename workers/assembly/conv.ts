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
//   Rows of ky outside the input are skipped per output row.
// - conv2dBackwardInput: the same micro-kernels in gather form: dx[iy, ix, ci] sums, over the taps
//   (ky, kx) that reach it (iy + pt − ky·dh divisible by sh, quotient oy in range), dy[oy, ox, :] times
//   wt[ky, kx, :, ci] (the filter transposed per tap by conv2dTransposeFilter, so ci is contiguous).
//   Pixels ix and ix + sw share their tap set in the interior, so they pair up.
// - conv2dBackwardFilter: im2col of a chunk of pixels into the caller's work buffer, then the GEMM
//   dW += colᵀ · dY (A transposed costs nothing in gemm.ts). Chunking keeps col in L2.
// - conv2dForwardIm2col: the im2col + GEMM alternative to conv2dForward, kept for measurements.
//
// Every output element is computed by the same operation sequence whatever the image range, so a split
// over batch images is bitwise identical to one thread.

import { gemm } from './gemm';
import { addBias } from './elementwise';

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
 * taps outside the input contributing 0 (zero padding). bias = 0: none.
 */
export function conv2dForward(
  x: usize, w: usize, bias: usize, y: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
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
      let ox = 0;
      while (ox < OW) {
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
