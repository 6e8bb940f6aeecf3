// The three transforms of Winograd F(2×2, 3×3) (Lavin & Gray 2015), vectorised over 4 channels (NHWC:
// channels are contiguous). With
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],  Aᵀ = [1 1 1 0; 0 1 −1 −1]
// a 2×2 output tile of a 3×3 correlation is Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A over the 4×4 input tile d: 16
// products instead of 36. Over channels the ⊙ becomes 16 GEMMs, M[ξ] = V[ξ] · U[ξ] (conv-winograd.ts).
// ξ = 4i + j indexes the 4×4 transformed tile; a "plane" is everything of one ξ.

// @ts-ignore: decorator
@inline function half(a: v128): v128 {
  return f32x4.mul(a, f32x4.splat(0.5));
}

/** Row (x0, x1, x2) · Gᵀ = [x0, ½(x0 + x1 + x2), ½(x0 − x1 + x2), x2], stored to planes dst, dst + ps, …. */
// @ts-ignore: decorator
@inline function filterRow(x0: v128, x1: v128, x2: v128, dst: usize, ps: usize): void {
  const s = f32x4.add(x0, x2);
  v128.store(dst, x0);
  v128.store(dst + ps, half(f32x4.add(s, x1)));
  v128.store(dst + 2 * ps, half(f32x4.sub(s, x1)));
  v128.store(dst + 3 * ps, x2);
}

/**
 * U[ξ, ci, co] = (G g Gᵀ)[ξ] with g[ky, kx] = w[ky, kx, ci, co] (w: [3, 3, Cin, Cout]), or with flip
 * g[ky, kx] = w[2 − ky, 2 − kx, ci, co] (the rotated filter of the input gradient). Cout % 4 = 0.
 * U is 16 planes of Cin × Cout floats.
 */
export function winogradFilter(w: usize, U: usize, Cin: i32, Cout: i32, flip: bool): void {
  const tap = <usize>(Cin * Cout) << 2;
  const ps = tap;
  // Byte offsets of taps (r, c) = (0, 0) and steps along r and c: the flip walks backwards (usize wraps).
  const t0: usize = flip ? 8 * tap : 0;
  const dr: usize = flip ? <usize>0 - 3 * tap : 3 * tap;
  const dc: usize = flip ? <usize>0 - tap : tap;
  for (let ci = 0; ci < Cin; ci++) {
    for (let co = 0; co < Cout; co += 4) {
      const off = <usize>(ci * Cout + co) << 2;
      const r0 = w + off + t0, r1 = r0 + dr, r2 = r1 + dr;
      const g00 = v128.load(r0), g01 = v128.load(r0 + dc), g02 = v128.load(r0 + 2 * dc);
      const g10 = v128.load(r1), g11 = v128.load(r1 + dc), g12 = v128.load(r1 + 2 * dc);
      const g20 = v128.load(r2), g21 = v128.load(r2 + dc), g22 = v128.load(r2 + 2 * dc);
      // G g: rows g0, ½(g0 + g1 + g2), ½(g0 − g1 + g2), g2; then each row · Gᵀ.
      const s0 = f32x4.add(g00, g20), s1 = f32x4.add(g01, g21), s2 = f32x4.add(g02, g22);
      const dst = U + off;
      filterRow(g00, g01, g02, dst, ps);
      filterRow(half(f32x4.add(s0, g10)), half(f32x4.add(s1, g11)), half(f32x4.add(s2, g12)), dst + 4 * ps, ps);
      filterRow(half(f32x4.sub(s0, g10)), half(f32x4.sub(s1, g11)), half(f32x4.sub(s2, g12)), dst + 8 * ps, ps);
      filterRow(g20, g21, g22, dst + 12 * ps, ps);
    }
  }
}

/** Row (t0, t1, t2, t3) · B = [t0 − t2, t1 + t2, t2 − t1, t1 − t3], stored to planes dst, dst + vs, …. */
// @ts-ignore: decorator
@inline function inputRow(t0: v128, t1: v128, t2: v128, t3: v128, dst: usize, vs: usize): void {
  v128.store(dst, f32x4.sub(t0, t2));
  v128.store(dst + vs, f32x4.add(t1, t2));
  v128.store(dst + 2 * vs, f32x4.sub(t2, t1));
  v128.store(dst + 3 * vs, f32x4.sub(t1, t3));
}

/**
 * V[ξ, ci] = (Bᵀ d B)[ξ] for the 4×4 tile d[r, c] = src[r·rs + c·cs + ci] (bytes), ci < Cin (Cin % 4 = 0);
 * plane ξ of V at V + ξ·vs. Rows of Bᵀ d are d0 − d2, d1 + d2, d2 − d1, d1 − d3: computed a pair of input
 * rows at a time (12 live vectors, no spills).
 */
export function winogradInputTile(src: usize, rs: usize, cs: usize, Cin: i32, V: usize, vs: usize): void {
  const vs4 = vs << 2;
  for (let q = 0; q < Cin; q += 4) {
    const s0 = src + (<usize>q << 2), s1 = s0 + rs, s2 = s1 + rs, s3 = s2 + rs;
    const v = V + (<usize>q << 2);
    let a0 = v128.load(s0), a1 = v128.load(s0 + cs), a2 = v128.load(s0 + 2 * cs), a3 = v128.load(s0 + 3 * cs);
    let b0 = v128.load(s2), b1 = v128.load(s2 + cs), b2 = v128.load(s2 + 2 * cs), b3 = v128.load(s2 + 3 * cs);
    inputRow(f32x4.sub(a0, b0), f32x4.sub(a1, b1), f32x4.sub(a2, b2), f32x4.sub(a3, b3), v, vs);
    a0 = v128.load(s1); a1 = v128.load(s1 + cs); a2 = v128.load(s1 + 2 * cs); a3 = v128.load(s1 + 3 * cs);
    inputRow(f32x4.add(a0, b0), f32x4.add(a1, b1), f32x4.add(a2, b2), f32x4.add(a3, b3), v + vs4, vs);
    inputRow(f32x4.sub(b0, a0), f32x4.sub(b1, a1), f32x4.sub(b2, a2), f32x4.sub(b3, a3), v + 2 * vs4, vs);
    b0 = v128.load(s3); b1 = v128.load(s3 + cs); b2 = v128.load(s3 + 2 * cs); b3 = v128.load(s3 + 3 * cs);
    inputRow(f32x4.sub(a0, b0), f32x4.sub(a1, b1), f32x4.sub(a2, b2), f32x4.sub(a3, b3), v + 3 * vs4, vs);
  }
}

/** y + bias, then ReLU when act = 1 (reluForward's rule: NaN and −0 give +0). */
// @ts-ignore: decorator
@inline function finish(v: v128, b: v128, act: i32): v128 {
  const s = f32x4.add(v, b);
  return act == 1 ? v128.and(s, f32x4.gt(s, f32x4.splat(0))) : s;
}

/**
 * Y = Aᵀ m A (+ bias, ReLU when act = 1) of one tile, every channel co < Cout (Cout % 4 = 0): m[ξ, co] at
 * M + ξ·ms + 4co; Y[a, b, co] written to y + a·ys + b·xs + 4co for a < rows, b < cols (partial tiles at the
 * bottom / right edge). bias = 0: none.
 */
export function winogradOutputTile(M: usize, ms: usize, bias: usize, act: i32, y: usize, ys: usize, xs: usize, rows: i32, cols: i32, Cout: i32): void {
  const ms4 = ms << 2;
  for (let co = 0; co < Cout; co += 4) {
    const o = <usize>co << 2;
    const b = bias ? v128.load(bias + o) : f32x4.splat(0);
    // (m A)[i] = [m_i0 + m_i1 + m_i2, m_i1 − m_i2 − m_i3] per row i, then Aᵀ over the rows.
    let p = M + o;
    let m0 = v128.load(p), m1 = v128.load(p + ms), m2 = v128.load(p + 2 * ms), m3 = v128.load(p + 3 * ms);
    const u0 = f32x4.add(f32x4.add(m0, m1), m2), w0 = f32x4.sub(f32x4.sub(m1, m2), m3);
    p += ms4;
    m0 = v128.load(p); m1 = v128.load(p + ms); m2 = v128.load(p + 2 * ms); m3 = v128.load(p + 3 * ms);
    const u1 = f32x4.add(f32x4.add(m0, m1), m2), w1 = f32x4.sub(f32x4.sub(m1, m2), m3);
    p += ms4;
    m0 = v128.load(p); m1 = v128.load(p + ms); m2 = v128.load(p + 2 * ms); m3 = v128.load(p + 3 * ms);
    const u2 = f32x4.add(f32x4.add(m0, m1), m2), w2 = f32x4.sub(f32x4.sub(m1, m2), m3);
    p += ms4;
    m0 = v128.load(p); m1 = v128.load(p + ms); m2 = v128.load(p + 2 * ms); m3 = v128.load(p + 3 * ms);
    const u3 = f32x4.add(f32x4.add(m0, m1), m2), w3 = f32x4.sub(f32x4.sub(m1, m2), m3);
    const yo = y + o;
    v128.store(yo, finish(f32x4.add(f32x4.add(u0, u1), u2), b, act));
    if (cols > 1) v128.store(yo + xs, finish(f32x4.add(f32x4.add(w0, w1), w2), b, act));
    if (rows > 1) {
      v128.store(yo + ys, finish(f32x4.sub(f32x4.sub(u1, u2), u3), b, act));
      if (cols > 1) v128.store(yo + ys + xs, finish(f32x4.sub(f32x4.sub(w1, w2), w3), b, act));
    }
  }
}

// ---------------------------------------------------------------- filter gradient
// With y = Aᵀ [U ⊙ V] A per tile and U = G g Gᵀ: ∂L/∂U = Σ_tiles (A e Aᵀ) ⊙ V for the tile's output
// gradient e, and ∂L/∂g = Gᵀ (∂L/∂U) G.

/** Row (p, q) · Aᵀ = [p, p + q, p − q, −q], stored to planes dst, dst + gs, …. */
// @ts-ignore: decorator
@inline function gradRow(p: v128, q: v128, dst: usize, gs: usize): void {
  v128.store(dst, p);
  v128.store(dst + gs, f32x4.add(p, q));
  v128.store(dst + 2 * gs, f32x4.sub(p, q));
  v128.store(dst + 3 * gs, f32x4.neg(q));
}

/**
 * E[ξ, co] = (A e Aᵀ)[ξ] for the 2×2 output-gradient tile e[a, b] = src[a·rs + b·cs + 4co] (a < rows,
 * b < cols; 0 beyond: partial tiles), every co < Cout (Cout % 4 = 0); plane ξ of E at E + ξ·gs.
 */
export function winogradGradTile(src: usize, rs: usize, cs: usize, rows: i32, cols: i32, Cout: i32, E: usize, gs: usize): void {
  const gs4 = gs << 2;
  const zero = f32x4.splat(0);
  for (let co = 0; co < Cout; co += 4) {
    const o = <usize>co << 2;
    const s = src + o;
    const e00 = v128.load(s);
    const e01 = cols > 1 ? v128.load(s + cs) : zero;
    const e10 = rows > 1 ? v128.load(s + rs) : zero;
    const e11 = rows > 1 && cols > 1 ? v128.load(s + rs + cs) : zero;
    // Rows of A e: e0, e0 + e1, e0 − e1, −e1; each row · Aᵀ.
    const d = E + o;
    gradRow(e00, e01, d, gs);
    gradRow(f32x4.add(e00, e10), f32x4.add(e01, e11), d + gs4, gs);
    gradRow(f32x4.sub(e00, e10), f32x4.sub(e01, e11), d + 2 * gs4, gs);
    gradRow(f32x4.neg(e10), f32x4.neg(e11), d + 3 * gs4, gs);
  }
}

/**
 * dw[ky, kx, ci, co] = (Gᵀ D G)[ky, kx] for D[ξ] = dU[ξ, ci, co] (16 planes of Cin × Cout floats), every
 * (ci, co) (Cout % 4 = 0). Gᵀ X = [X0 + ½(X1 + X2), ½(X1 − X2), ½(X1 + X2) + X3] along both axes.
 */
export function winogradFilterGradient(dU: usize, dw: usize, Cin: i32, Cout: i32): void {
  const ps = <usize>(Cin * Cout) << 2;
  for (let ci = 0; ci < Cin; ci++) {
    for (let co = 0; co < Cout; co += 4) {
      const off = <usize>(ci * Cout + co) << 2;
      const s = dU + off;
      // Columns j of Gᵀ D (rows r = 0..2), then each row · G.
      let x0 = v128.load(s), x1 = v128.load(s + 4 * ps), x2 = v128.load(s + 8 * ps), x3 = v128.load(s + 12 * ps);
      let h = half(f32x4.add(x1, x2));
      const a0 = f32x4.add(x0, h), b0 = half(f32x4.sub(x1, x2)), c0 = f32x4.add(h, x3);
      x0 = v128.load(s + ps); x1 = v128.load(s + 5 * ps); x2 = v128.load(s + 9 * ps); x3 = v128.load(s + 13 * ps);
      h = half(f32x4.add(x1, x2));
      const a1 = f32x4.add(x0, h), b1 = half(f32x4.sub(x1, x2)), c1 = f32x4.add(h, x3);
      x0 = v128.load(s + 2 * ps); x1 = v128.load(s + 6 * ps); x2 = v128.load(s + 10 * ps); x3 = v128.load(s + 14 * ps);
      h = half(f32x4.add(x1, x2));
      const a2 = f32x4.add(x0, h), b2 = half(f32x4.sub(x1, x2)), c2 = f32x4.add(h, x3);
      x0 = v128.load(s + 3 * ps); x1 = v128.load(s + 7 * ps); x2 = v128.load(s + 11 * ps); x3 = v128.load(s + 15 * ps);
      h = half(f32x4.add(x1, x2));
      const a3 = f32x4.add(x0, h), b3 = half(f32x4.sub(x1, x2)), c3 = f32x4.add(h, x3);
      const d = dw + off;
      gradFilterRow(a0, a1, a2, a3, d, ps);
      gradFilterRow(b0, b1, b2, b3, d + 3 * ps, ps);
      gradFilterRow(c0, c1, c2, c3, d + 6 * ps, ps);
    }
  }
}

/** Row (p0, p1, p2, p3) · G = [p0 + ½(p1 + p2), ½(p1 − p2), ½(p1 + p2) + p3], stored to taps dst, dst + ts, dst + 2ts. */
// @ts-ignore: decorator
@inline function gradFilterRow(p0: v128, p1: v128, p2: v128, p3: v128, dst: usize, ts: usize): void {
  const h = half(f32x4.add(p1, p2));
  v128.store(dst, f32x4.add(p0, h));
  v128.store(dst + ts, half(f32x4.sub(p1, p2)));
  v128.store(dst + 2 * ts, f32x4.add(h, p3));
}
