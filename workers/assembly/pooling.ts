// 2-D pooling over NHWC tensors and per-channel batch-norm kernels (contract: workers/kernel-api.ts).
// Vectorised over channels, 4 at a time; the last C % 4 channels go through scalar code. All memory-bound:
// one pass over the input (two for batch statistics). Max pooling has batch-slice entry points
// (maxPool2dForwardPart, maxPool2dBackwardPart) for the pool's split over images (wasm-compute.ts).

// ---------------------------------------------------------------- max pooling

/**
 * y = max over the window's taps inside the input (padding never wins); argmax = the element index of
 * that tap in x (i32, counted from x over the whole batch), or not written when argmax = 0 (inference).
 * Ties and NaN: the first tap in (ky, kx) order is kept unless a later one is strictly greater
 * (f32x4.pmax(m, v) = m < v ? v : m is exactly that). A window with no tap inside gives −∞ and −1.
 */
export function maxPool2dForward(
  x: usize, y: usize, argmax: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32,
): void {
  maxPool2dForwardPart(x, y, argmax, 0, batch, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl);
}

/**
 * maxPool2dForward for a slice of the batch (the pool's split over images): x, y and argmax point at the
 * slice's first image and `indexBase` (its first element's index in the whole batch) is added to every
 * argmax, so the parts write exactly what one call over the whole batch writes.
 *
 * 2×2 windows wholly inside the input (the usual pool) go through maxRow2x2 / maxRow2x2Arg per output
 * row: a tap-loop per 4 channels cost ~10 cycles of loop control per 4 loads (5.5 GB/s at C = 16).
 * Other windows, and the last C % 4 channels, take the general pointer walk. Both compute
 * pmax(pmax(pmax(v00, v01), v10), v11) in (ky, kx) order (the general walk's extra pmax(v00, v00) = v00),
 * so every path gives the same bits.
 */
export function maxPool2dForwardPart(
  x: usize, y: usize, argmax: usize, indexBase: i32, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32,
): void {
  const lanes = i32x4(0, 1, 2, 3);
  const rowBytes = <usize>(W * C) << 2, pixBytes = <usize>C << 2;
  const C4 = C & ~3;
  // Output columns whose 2-wide window lies inside the input in x: ox·sw − pl ≥ 0 and ≤ W − 2.
  let fx0 = OW, fx1 = OW;
  if (KH == 2 && KW == 2 && C4 > 0) {
    fx0 = min(OW, (pl + sw - 1) / sw);
    fx1 = W - 2 + pl < 0 ? 0 : min(OW, (W - 2 + pl) / sw + 1);
    if (fx1 < fx0) fx1 = fx0;
  }
  for (let n = 0; n < batch; n++) {
    for (let oy = 0; oy < OH; oy++) {
      const iy0 = oy * sh - pt;
      const ky0 = max(0, -iy0), ky1 = min(KH, H - iy0);
      // Vector channels of [fx0, fx1) already done by the row kernel (2×2 window inside in y too).
      const fast = fx1 > fx0 && ky0 == 0 && ky1 == 2;
      if (fast) {
        const first = ((n * H + iy0) * W + fx0 * sw - pl) * C;
        const o = ((n * OH + oy) * OW + fx0) * C;
        const xs = x + (<usize>first << 2), ys = y + (<usize>o << 2);
        const sx = <usize>(sw * C) << 2;
        // Two call sites each (all channels / with a scalar tail), so binaryen keeps the row kernels out of
        // line (the micro-kernel rule: KERNELS.md §1); the branch itself costs nothing per row.
        if (argmax) {
          maxRow2x2Arg(xs, ys, argmax + (<usize>o << 2), fx1 - fx0, sx, rowBytes, pixBytes, C4, indexBase + first, sw * C, W * C, C);
        } else {
          maxRow2x2(xs, ys, fx1 - fx0, sx, rowBytes, pixBytes, C4);
        }
      }
      for (let ox = 0; ox < OW; ox++) {
        if (fast && ox == fx0 && C4 == C) {
          ox = fx1 - 1; // the row kernel did every channel of [fx0, fx1)
          continue;
        }
        const ix0 = ox * sw - pl;
        const kx0 = max(0, -ix0), kx1 = min(KW, W - ix0);
        const o = ((n * OH + oy) * OW + ox) * C;
        const yo = y + (<usize>o << 2);
        const ao = argmax + (<usize>o << 2);
        if (ky0 >= ky1 || kx0 >= kx1) {
          for (let c = 0; c < C; c++) {
            store<f32>(yo + (<usize>c << 2), -Infinity);
            if (argmax) store<i32>(ao + (<usize>c << 2), -1);
          }
          continue;
        }
        const first = ((n * H + iy0 + ky0) * W + ix0 + kx0) * C;
        const xf = x + (<usize>first << 2);
        let c = fast && ox >= fx0 && ox < fx1 ? C4 : 0;
        if (argmax) {
          const rowElems = W * C;
          for (; c + 4 <= C; c += 4) {
            let m = v128.load(xf + (<usize>c << 2));
            let mi = i32x4.add(i32x4.splat(indexBase + first + c), lanes);
            let row = xf + (<usize>c << 2), e0 = indexBase + first + c;
            for (let ky = ky0; ky < ky1; ky++) {
              let px = row, e = e0;
              for (let kx = kx0; kx < kx1; kx++) {
                const v = v128.load(px);
                const gt = f32x4.gt(v, m);
                m = f32x4.pmax(m, v);
                mi = v128.bitselect(i32x4.add(i32x4.splat(e), lanes), mi, gt);
                px += pixBytes; e += C;
              }
              row += rowBytes; e0 += rowElems;
            }
            v128.store(yo + (<usize>c << 2), m);
            v128.store(ao + (<usize>c << 2), mi);
          }
        } else {
          for (; c + 4 <= C; c += 4) {
            let m = v128.load(xf + (<usize>c << 2));
            let row = xf + (<usize>c << 2);
            for (let ky = ky0; ky < ky1; ky++) {
              let px = row;
              for (let kx = kx0; kx < kx1; kx++) {
                m = f32x4.pmax(m, v128.load(px));
                px += pixBytes;
              }
              row += rowBytes;
            }
            v128.store(yo + (<usize>c << 2), m);
          }
        }
        for (; c < C; c++) {
          let m = load<f32>(xf + (<usize>c << 2));
          let mi = first + c;
          for (let ky = ky0; ky < ky1; ky++) {
            for (let kx = kx0; kx < kx1; kx++) {
              const e = ((n * H + iy0 + ky) * W + ix0 + kx) * C + c;
              const v = load<f32>(x + (<usize>e << 2));
              if (v > m) {
                m = v;
                mi = e;
              }
            }
          }
          store<f32>(yo + (<usize>c << 2), m);
          if (argmax) store<i32>(ao + (<usize>c << 2), indexBase + mi);
        }
      }
    }
  }
}

/**
 * `count` output pixels of one row, 2×2 windows inside the input, channels [0, C4) (C4 % 4 = 0): taps at
 * x, x + pix, x + row, x + row + pix; the next pixel's window starts `sx` bytes later, its output `pix` later.
 */
function maxRow2x2(x: usize, y: usize, count: i32, sx: usize, row: usize, pix: usize, C4: i32): void {
  const bytes = <usize>C4 << 2;
  for (let i = 0; i < count; i++) {
    const q = x + row;
    for (let o: usize = 0; o < bytes; o += 16) {
      const m01 = f32x4.pmax(v128.load(x + o), v128.load(x + pix + o));
      v128.store(y + o, f32x4.pmax(f32x4.pmax(m01, v128.load(q + o)), v128.load(q + pix + o)));
    }
    x += sx;
    y += pix;
  }
}

/**
 * maxRow2x2 with argmax: e = the element index (in the whole batch) of the first pixel's top-left tap;
 * it advances `se` elements per pixel, a tap row is `re` elements, a tap pixel C. Same tie rule as the
 * general walk (a later tap replaces the index only when strictly greater).
 */
function maxRow2x2Arg(
  x: usize, y: usize, a: usize, count: i32, sx: usize, row: usize, pix: usize, C4: i32,
  e: i32, se: i32, re: i32, C: i32,
): void {
  const bytes = <usize>C4 << 2;
  const lanes = i32x4(0, 1, 2, 3);
  const dC = i32x4.splat(C), dR = i32x4.splat(re);
  for (let i = 0; i < count; i++) {
    const q = x + row;
    let i00 = i32x4.add(i32x4.splat(e), lanes);
    for (let o: usize = 0; o < bytes; o += 16) {
      let m = v128.load(x + o);
      let mi = i00;
      const v01 = v128.load(x + pix + o);
      let gt = f32x4.gt(v01, m);
      m = f32x4.pmax(m, v01);
      mi = v128.bitselect(i32x4.add(i00, dC), mi, gt);
      const v10 = v128.load(q + o);
      const i10 = i32x4.add(i00, dR);
      gt = f32x4.gt(v10, m);
      m = f32x4.pmax(m, v10);
      mi = v128.bitselect(i10, mi, gt);
      const v11 = v128.load(q + pix + o);
      gt = f32x4.gt(v11, m);
      m = f32x4.pmax(m, v11);
      mi = v128.bitselect(i32x4.add(i10, dC), mi, gt);
      v128.store(y + o, m);
      v128.store(a + o, mi);
      i00 = i32x4.add(i00, i32x4.splat(4));
    }
    x += sx;
    y += pix;
    a += pix;
    e += se;
  }
}

/** dx = 0 (xCount elements), then dx[argmax[i]] += dy[i] for the yCount outputs (argmax −1 skipped). */
export function maxPool2dBackward(dy: usize, argmax: usize, dx: usize, xCount: i32, yCount: i32): void {
  maxPool2dBackwardPart(dy, argmax, dx, 0, xCount, yCount);
}

/**
 * maxPool2dBackward for a slice of the batch: dx[xStart, xStart + xCount) = 0, then dx[argmax[i]] += dy[i]
 * for i < yCount (dy, argmax at the slice's first output; indices count over the whole batch and stay
 * inside the slice's images, since no window crosses an image).
 */
export function maxPool2dBackwardPart(dy: usize, argmax: usize, dx: usize, xStart: i32, xCount: i32, yCount: i32): void {
  memory.fill(dx + (<usize>xStart << 2), 0, <usize>xCount << 2);
  for (let i = 0; i < yCount; i++) {
    const e = load<i32>(argmax + (<usize>i << 2));
    if (e < 0) continue;
    const at = dx + (<usize>e << 2);
    store<f32>(at, load<f32>(at) + load<f32>(dy + (<usize>i << 2)));
  }
}

// ---------------------------------------------------------------- average pooling

/** y = mean of the window's taps inside the input (padding excluded from the count; none inside: 0). */
export function avgPool2dForward(
  x: usize, y: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32,
): void {
  for (let n = 0; n < batch; n++) {
    for (let oy = 0; oy < OH; oy++) {
      const iy0 = oy * sh - pt;
      const ky0 = max(0, -iy0), ky1 = min(KH, H - iy0);
      for (let ox = 0; ox < OW; ox++) {
        const ix0 = ox * sw - pl;
        const kx0 = max(0, -ix0), kx1 = min(KW, W - ix0);
        const count = max(0, ky1 - ky0) * max(0, kx1 - kx0);
        const inv: f32 = count > 0 ? <f32>1 / <f32>count : 0;
        const yo = y + (<usize>(((n * OH + oy) * OW + ox) * C) << 2);
        let c = 0;
        for (; c + 4 <= C; c += 4) {
          let s = f32x4.splat(0);
          for (let ky = ky0; ky < ky1; ky++) {
            const row = x + (<usize>(((n * H + iy0 + ky) * W + ix0) * C + c) << 2);
            for (let kx = kx0; kx < kx1; kx++) s = f32x4.add(s, v128.load(row + (<usize>(kx * C) << 2)));
          }
          v128.store(yo + (<usize>c << 2), f32x4.mul(s, f32x4.splat(inv)));
        }
        for (; c < C; c++) {
          let s: f32 = 0;
          for (let ky = ky0; ky < ky1; ky++) {
            const row = x + (<usize>(((n * H + iy0 + ky) * W + ix0) * C + c) << 2);
            for (let kx = kx0; kx < kx1; kx++) s += load<f32>(row + (<usize>(kx * C) << 2));
          }
          store<f32>(yo + (<usize>c << 2), s * inv);
        }
      }
    }
  }
}

/** dx = 0, then each output's dy / count is added to every tap of its window inside the input. */
export function avgPool2dBackward(
  dy: usize, dx: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32,
): void {
  memory.fill(dx, 0, <usize>(batch * H * W * C) << 2);
  for (let n = 0; n < batch; n++) {
    for (let oy = 0; oy < OH; oy++) {
      const iy0 = oy * sh - pt;
      const ky0 = max(0, -iy0), ky1 = min(KH, H - iy0);
      for (let ox = 0; ox < OW; ox++) {
        const ix0 = ox * sw - pl;
        const kx0 = max(0, -ix0), kx1 = min(KW, W - ix0);
        const count = max(0, ky1 - ky0) * max(0, kx1 - kx0);
        if (count == 0) continue;
        const inv: f32 = <f32>1 / <f32>count;
        const go = dy + (<usize>(((n * OH + oy) * OW + ox) * C) << 2);
        let c = 0;
        for (; c + 4 <= C; c += 4) {
          const g = f32x4.mul(v128.load(go + (<usize>c << 2)), f32x4.splat(inv));
          for (let ky = ky0; ky < ky1; ky++) {
            const row = dx + (<usize>(((n * H + iy0 + ky) * W + ix0) * C + c) << 2);
            for (let kx = kx0; kx < kx1; kx++) {
              const at = row + (<usize>(kx * C) << 2);
              v128.store(at, f32x4.add(v128.load(at), g));
            }
          }
        }
        for (; c < C; c++) {
          const g = load<f32>(go + (<usize>c << 2)) * inv;
          for (let ky = ky0; ky < ky1; ky++) {
            const row = dx + (<usize>(((n * H + iy0 + ky) * W + ix0) * C + c) << 2);
            for (let kx = kx0; kx < kx1; kx++) {
              const at = row + (<usize>(kx * C) << 2);
              store<f32>(at, load<f32>(at) + g);
            }
          }
        }
      }
    }
  }
}

/** y[n, c] = mean over the `pixels` positions of x[n, :, c]. */
export function globalAvgPool2dForward(x: usize, y: usize, batch: i32, pixels: i32, C: i32): void {
  const inv: f32 = pixels > 0 ? <f32>1 / <f32>pixels : 0;
  for (let n = 0; n < batch; n++) {
    const xn = x + (<usize>(n * pixels * C) << 2);
    const yn = y + (<usize>(n * C) << 2);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      let s = f32x4.splat(0);
      let p = xn + (<usize>c << 2);
      for (let i = 0; i < pixels; i++) {
        s = f32x4.add(s, v128.load(p));
        p += <usize>C << 2;
      }
      v128.store(yn + (<usize>c << 2), f32x4.mul(s, f32x4.splat(inv)));
    }
    for (; c < C; c++) {
      let s: f32 = 0;
      let p = xn + (<usize>c << 2);
      for (let i = 0; i < pixels; i++) {
        s += load<f32>(p);
        p += <usize>C << 2;
      }
      store<f32>(yn + (<usize>c << 2), s * inv);
    }
  }
}

/** dx[n, p, c] = dy[n, c] / pixels. */
export function globalAvgPool2dBackward(dy: usize, dx: usize, batch: i32, pixels: i32, C: i32): void {
  const inv: f32 = pixels > 0 ? <f32>1 / <f32>pixels : 0;
  for (let n = 0; n < batch; n++) {
    const gn = dy + (<usize>(n * C) << 2);
    let p = dx + (<usize>(n * pixels * C) << 2);
    for (let i = 0; i < pixels; i++) {
      let c = 0;
      for (; c + 4 <= C; c += 4) v128.store(p + (<usize>c << 2), f32x4.mul(v128.load(gn + (<usize>c << 2)), f32x4.splat(inv)));
      for (; c < C; c++) store<f32>(p + (<usize>c << 2), load<f32>(gn + (<usize>c << 2)) * inv);
      p += <usize>C << 2;
    }
  }
}

// ---------------------------------------------------------------- batch normalisation

/** Rows summed in float32 before the block sum is added to the float64 total. */
const BLOCK: i32 = 64;

/**
 * Per-channel mean and biased variance of a rows × C matrix, two-pass (Σ(x − mean)², no cancellation);
 * float32 sums over blocks of 64 rows, float64 across blocks, so 10⁵ rows keep ~1e-7 relative accuracy.
 */
export function batchNormStats(x: usize, mean: usize, variance: usize, rows: i32, C: i32): void {
  const stride = <usize>C << 2;
  const invRows: f64 = rows > 0 ? 1.0 / <f64>rows : 0;
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    let t01 = f64x2.splat(0), t23 = f64x2.splat(0);
    for (let r0 = 0; r0 < rows; r0 += BLOCK) {
      const r1 = min(rows, r0 + BLOCK);
      let s = f32x4.splat(0);
      let p = x + <usize>r0 * stride + (<usize>c << 2);
      for (let r = r0; r < r1; r++) {
        s = f32x4.add(s, v128.load(p));
        p += stride;
      }
      t01 = f64x2.add(t01, f64x2.promote_low_f32x4(s));
      t23 = f64x2.add(t23, f64x2.promote_low_f32x4(i32x4.shuffle(s, s, 2, 3, 0, 1)));
    }
    t01 = f64x2.mul(t01, f64x2.splat(invRows));
    t23 = f64x2.mul(t23, f64x2.splat(invRows));
    const m = f32x4.demote_f64x2_zero(t01);
    const mv = i32x4.shuffle(m, f32x4.demote_f64x2_zero(t23), 0, 1, 4, 5);
    v128.store(mean + (<usize>c << 2), mv);
    let v01 = f64x2.splat(0), v23 = f64x2.splat(0);
    for (let r0 = 0; r0 < rows; r0 += BLOCK) {
      const r1 = min(rows, r0 + BLOCK);
      let s = f32x4.splat(0);
      let p = x + <usize>r0 * stride + (<usize>c << 2);
      for (let r = r0; r < r1; r++) {
        const d = f32x4.sub(v128.load(p), mv);
        s = f32x4.add(s, f32x4.mul(d, d));
        p += stride;
      }
      v01 = f64x2.add(v01, f64x2.promote_low_f32x4(s));
      v23 = f64x2.add(v23, f64x2.promote_low_f32x4(i32x4.shuffle(s, s, 2, 3, 0, 1)));
    }
    v01 = f64x2.mul(v01, f64x2.splat(invRows));
    v23 = f64x2.mul(v23, f64x2.splat(invRows));
    v128.store(variance + (<usize>c << 2), i32x4.shuffle(f32x4.demote_f64x2_zero(v01), f32x4.demote_f64x2_zero(v23), 0, 1, 4, 5));
  }
  for (; c < C; c++) {
    let t: f64 = 0;
    let p = x + (<usize>c << 2);
    for (let r = 0; r < rows; r++) {
      t += <f64>load<f32>(p);
      p += stride;
    }
    const m = <f32>(t * invRows);
    store<f32>(mean + (<usize>c << 2), m);
    let v: f64 = 0;
    p = x + (<usize>c << 2);
    for (let r = 0; r < rows; r++) {
      const d = load<f32>(p) - m;
      v += <f64>(d * d);
      p += stride;
    }
    store<f32>(variance + (<usize>c << 2), <f32>(v * invRows));
  }
}

/** y[r, c] = (x[r, c] − mean[c]) · invStd[c] · gamma[c] + beta[c]; gamma = 0: 1, beta = 0: 0 (pointers). */
export function batchNormForward(
  x: usize, y: usize, mean: usize, invStd: usize, gamma: usize, beta: usize, rows: i32, C: i32,
): void {
  const stride = <usize>C << 2;
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const o = <usize>c << 2;
    const m = v128.load(mean + o);
    const s = gamma ? f32x4.mul(v128.load(invStd + o), v128.load(gamma + o)) : v128.load(invStd + o);
    const b = beta ? v128.load(beta + o) : f32x4.splat(0);
    let px = x + o, py = y + o;
    for (let r = 0; r < rows; r++) {
      v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px), m), s), b));
      px += stride;
      py += stride;
    }
  }
  for (; c < C; c++) {
    const o = <usize>c << 2;
    const m = load<f32>(mean + o);
    const s = gamma ? load<f32>(invStd + o) * load<f32>(gamma + o) : load<f32>(invStd + o);
    const b: f32 = beta ? load<f32>(beta + o) : 0;
    let px = x + o, py = y + o;
    for (let r = 0; r < rows; r++) {
      store<f32>(py, (load<f32>(px) - m) * s + b);
      px += stride;
      py += stride;
    }
  }
}

/**
 * Training-mode batch-norm backward with x̂ = (x − mean)·invStd (batch statistics):
 * dbeta = Σ_r dy, dgamma = Σ_r dy·x̂ (written when the pointers are non-zero), and, when dx ≠ 0,
 * dx = gamma·invStd·(dy − dbeta/rows − x̂·dgamma/rows) (gamma = 0: 1). Sums as in batchNormStats.
 */
export function batchNormBackward(
  x: usize, dy: usize, dx: usize, mean: usize, invStd: usize, gamma: usize, dgamma: usize, dbeta: usize,
  rows: i32, C: i32,
): void {
  const stride = <usize>C << 2;
  const invRows: f32 = rows > 0 ? <f32>1 / <f32>rows : 0;
  for (let c = 0; c < C; c++) {
    const o = <usize>c << 2;
    const m = load<f32>(mean + o);
    const is = load<f32>(invStd + o);
    let sg: f64 = 0, sgx: f64 = 0;
    for (let r0 = 0; r0 < rows; r0 += BLOCK) {
      const r1 = min(rows, r0 + BLOCK);
      let bg: f32 = 0, bgx: f32 = 0;
      let px = x + <usize>r0 * stride + o, pg = dy + <usize>r0 * stride + o;
      for (let r = r0; r < r1; r++) {
        const g = load<f32>(pg);
        bg += g;
        bgx += g * (load<f32>(px) - m) * is;
        px += stride;
        pg += stride;
      }
      sg += <f64>bg;
      sgx += <f64>bgx;
    }
    if (dbeta) store<f32>(dbeta + o, <f32>sg);
    if (dgamma) store<f32>(dgamma + o, <f32>sgx);
    if (!dx) continue;
    const k = (gamma ? load<f32>(gamma + o) : 1) * is;
    const mg = <f32>sg * invRows, mgx = <f32>sgx * invRows;
    let px = x + o, pg = dy + o, pd = dx + o;
    for (let r = 0; r < rows; r++) {
      const xh = (load<f32>(px) - m) * is;
      store<f32>(pd, k * (load<f32>(pg) - mg - xh * mgx));
      px += stride;
      pg += stride;
      pd += stride;
    }
  }
}
