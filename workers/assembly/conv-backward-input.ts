// 2-D convolution input gradient over NHWC tensors (contract: workers/kernel-api.ts, conv2dBackwardInput,
// conv2dTransposeFilter; layout and shared micro-kernels: conv-common.ts).
//
// - conv2dBackwardInput: the same micro-kernels in gather form: dx[iy, ix, ci] sums, over the taps
//   (ky, kx) that reach it (iy + pt − ky·dh divisible by sh, quotient oy in range), dy[oy, ox, :] times
//   wt[ky, kx, :, ci] (the filter transposed per tap by conv2dTransposeFilter, so ci is contiguous).
//   Pixels ix and ix + sw share their tap set in the interior, so they pair up. C = 1 (a first layer
//   behind augmentation), strideW = 1, outC % 16 = 0: vectorised over co instead (dxC1Quad: 4 pixels,
//   horizontal sums at the end), since a 1-channel output has nothing to vectorise over.
//
// Every output element is computed by the same operation sequence whatever the image range, so a split
// over batch images is bitwise identical to one thread.

import { channels, madd } from './conv-common';
import { conv2dBackwardInputWinograd, winogradFits, winogradPays } from './conv-winograd';

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
 * Every element of dx is written (0 where no tap reaches it). 3×3 stride-1 windows with enough channels
 * and input (winogradFits with CO in, C out; winogradPays over H × W) go through conv2dBackwardInputWinograd.
 */
export function conv2dBackwardInput(
  dy: usize, wt: usize, dx: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, dh: i32, dw: i32,
): void {
  if (winogradFits(CO, C, KH, KW, sh, sw, dh, dw) && winogradPays(H, W)) {
    conv2dBackwardInputWinograd(dy, wt, dx, batch, H, W, C, OH, OW, CO, pt, pl);
    return;
  }
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
