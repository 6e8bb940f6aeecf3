// Shared pieces of the 2-D convolution kernels over NHWC tensors (contract: workers/kernel-api.ts, conv2d*):
// the micro-kernels that conv2dForward (conv-forward.ts) and conv2dBackwardInput (conv-backward-input.ts)
// both drive, and im2col for the im2col + GEMM paths (conv-forward.ts, conv-backward-filter.ts).
//
// Filters are [kh][kw][cin][cout] (Keras / TF layout), so for one filter row ky the (kx, ci) run of a
// stride-1, dilation-1 window is kw·cin contiguous floats of the input, and the matching weights are
// kw·cin rows of cout contiguous floats (KERNELS.md §6).
//
// Every output element is computed by the same operation sequence whatever the image range, so a split
// over batch images is bitwise identical to one thread.

// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
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
export function convRowP16(
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
export function convRow3P16(
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
export function channels(
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

// ---------------------------------------------------------------- im2col (for the im2col + GEMM paths)

/** col[p − p0, (ky·KW + kx)·C + ci] = x at the tap, 0 outside: pixels p0 .. p0 + count of the batch. */
export function im2col(
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
