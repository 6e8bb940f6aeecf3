// Fused LSTM cell kernels (contract: workers/kernel-api.ts lstmCellForward / lstmCellBackward): the gate
// non-linearities, the cell update and their derivatives in one pass over a step's [rows, 4U] gates,
// instead of several kernel calls per row and JS loops over the heap.

import { sigmoidV, tanhV } from './vmath';

// @ts-ignore: decorator
@inline function off(i: i32): usize {
  return <usize>i << 2;
}

/** Loads min(r, 4) floats into the low lanes (the others 0), never past them. */
// @ts-ignore: decorator
@inline function ld(p: usize, r: i32): v128 {
  if (r >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (r > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (r > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Stores the low min(r, 4) lanes of v. */
// @ts-ignore: decorator
@inline function st(p: usize, v: v128, r: i32): void {
  if (r >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (r > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (r > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** One step forward over 4 units (r ≤ 4 valid lanes) of one row: see lstmCellForward. */
function cellForward4(z: usize, cp: usize, c: usize, tc: usize, h: usize, U: i32, r: i32): void {
  const gi = sigmoidV(ld(z, r));
  const gf = sigmoidV(ld(z + off(U), r));
  const gg = tanhV(ld(z + off(2 * U), r));
  const go = sigmoidV(ld(z + off(3 * U), r));
  st(z, gi, r);
  st(z + off(U), gf, r);
  st(z + off(2 * U), gg, r);
  st(z + off(3 * U), go, r);
  const cn = f32x4.add(f32x4.mul(gf, ld(cp, r)), f32x4.mul(gi, gg));
  const t = tanhV(cn);
  st(c, cn, r);
  st(tc, t, r);
  st(h, f32x4.mul(go, t), r);
}

/** cellForward4 over 8 full lanes (two vectors per gate), the two halves interleaved. */
function cellForward8(z: usize, cp: usize, c: usize, tc: usize, h: usize, U: i32): void {
  const gi = sigmoidV(v128.load(z)), gi2 = sigmoidV(v128.load(z, 16));
  const gf = sigmoidV(v128.load(z + off(U))), gf2 = sigmoidV(v128.load(z + off(U), 16));
  const gg = tanhV(v128.load(z + off(2 * U))), gg2 = tanhV(v128.load(z + off(2 * U), 16));
  const go = sigmoidV(v128.load(z + off(3 * U))), go2 = sigmoidV(v128.load(z + off(3 * U), 16));
  v128.store(z, gi); v128.store(z, gi2, 16);
  v128.store(z + off(U), gf); v128.store(z + off(U), gf2, 16);
  v128.store(z + off(2 * U), gg); v128.store(z + off(2 * U), gg2, 16);
  v128.store(z + off(3 * U), go); v128.store(z + off(3 * U), go2, 16);
  const cn = f32x4.add(f32x4.mul(gf, v128.load(cp)), f32x4.mul(gi, gg));
  const cn2 = f32x4.add(f32x4.mul(gf2, v128.load(cp, 16)), f32x4.mul(gi2, gg2));
  const t = tanhV(cn), t2 = tanhV(cn2);
  v128.store(c, cn); v128.store(c, cn2, 16);
  v128.store(tc, t); v128.store(tc, t2, 16);
  v128.store(h, f32x4.mul(go, t)); v128.store(h, f32x4.mul(go2, t2), 16);
}

/**
 * z (rows × 4U, gate blocks i, f, g, o) → activations in place: i, f, o = σ, g = tanh; then
 * c = f·cPrev + i·g, tanhC = tanh(c), h = o·tanhC (each rows × U).
 */
export function lstmCellForward(z: usize, cPrev: usize, c: usize, tanhC: usize, h: usize, rows: i32, U: i32): void {
  for (let b = 0; b < rows; b++) {
    const zr = z + off(b * 4 * U);
    const s = off(b * U);
    let u = 0;
    // Two groups of 4 units per iteration: independent dependency chains for the out-of-order core.
    for (; u + 8 <= U; u += 8) cellForward8(zr + off(u), cPrev + s + off(u), c + s + off(u), tanhC + s + off(u), h + s + off(u), U);
    for (; u < U; u += 4) {
      cellForward4(zr + off(u), cPrev + s + off(u), c + s + off(u), tanhC + s + off(u), h + s + off(u), U, U - u);
    }
  }
}

/** One step backward over 4 units of one row: see lstmCellBackward. */
function cellBackward4(z: usize, cp: usize, tc: usize, dh: usize, dy: usize, dc: usize, dz: usize, U: i32, r: i32): void {
  const one = f32x4.splat(1);
  const gi = ld(z, r);
  const gf = ld(z + off(U), r);
  const gg = ld(z + off(2 * U), r);
  const go = ld(z + off(3 * U), r);
  const th = ld(tc, r);
  let gradH = ld(dh, r);
  if (dy != 0) gradH = f32x4.add(gradH, ld(dy, r));
  const gradC = f32x4.add(ld(dc, r), f32x4.mul(f32x4.mul(gradH, go), f32x4.sub(one, f32x4.mul(th, th))));
  st(dz, f32x4.mul(f32x4.mul(gradC, gg), f32x4.mul(gi, f32x4.sub(one, gi))), r);
  st(dz + off(U), f32x4.mul(f32x4.mul(gradC, ld(cp, r)), f32x4.mul(gf, f32x4.sub(one, gf))), r);
  st(dz + off(2 * U), f32x4.mul(f32x4.mul(gradC, gi), f32x4.sub(one, f32x4.mul(gg, gg))), r);
  st(dz + off(3 * U), f32x4.mul(f32x4.mul(gradH, th), f32x4.mul(go, f32x4.sub(one, go))), r);
  st(dc, f32x4.mul(gradC, gf), r);
}

/**
 * From the forward's activations z (rows × 4U), cPrev and tanhC: gradH = dh + dy (dy = 0: none);
 * gradC = dc + gradH·o·(1 − tanhC²); dz = (gradC·g·i(1−i), gradC·cPrev·f(1−f), gradC·i·(1−g²),
 * gradH·tanhC·o(1−o)); dc ← gradC·f (in place).
 */
export function lstmCellBackward(
  z: usize, cPrev: usize, tanhC: usize, dh: usize, dy: usize, dc: usize, dz: usize, rows: i32, U: i32,
): void {
  for (let b = 0; b < rows; b++) {
    const zr = z + off(b * 4 * U);
    const dzr = dz + off(b * 4 * U);
    const s = off(b * U);
    for (let u = 0; u < U; u += 4) {
      const at = s + off(u);
      cellBackward4(zr + off(u), cPrev + at, tanhC + at, dh + at, dy != 0 ? dy + at : 0, dc + at, dzr + off(u), U, U - u);
    }
  }
}

/** One GRU step forward over 4 units of one row: see gruCellForward. */
function gruForward4(a: usize, q: usize, hp: usize, h: usize, U: i32, r: i32): void {
  const one = f32x4.splat(1);
  const gz = sigmoidV(f32x4.add(ld(a, r), ld(q, r)));
  const gr = sigmoidV(f32x4.add(ld(a + off(U), r), ld(q + off(U), r)));
  const gh = tanhV(f32x4.add(ld(a + off(2 * U), r), f32x4.mul(gr, ld(q + off(2 * U), r))));
  st(a, gz, r);
  st(a + off(U), gr, r);
  st(a + off(2 * U), gh, r);
  st(h, f32x4.add(f32x4.mul(gz, ld(hp, r)), f32x4.mul(f32x4.sub(one, gz), gh)), r);
}

/**
 * One GRU step (reset after the recurrent product, gate blocks z, r, h) after a = x·W + b_x and
 * q = h_{t−1}·U + b_h (rows × 3U each): a ← (z, r, ĥ) in place with z = σ(a_z + q_z), r = σ(a_r + q_r),
 * ĥ = tanh(a_h + r·q_h); h = z·hPrev + (1 − z)·ĥ (rows × U).
 */
export function gruCellForward(a: usize, q: usize, hPrev: usize, h: usize, rows: i32, U: i32): void {
  for (let b = 0; b < rows; b++) {
    const g = off(b * 3 * U);
    const s = off(b * U);
    for (let u = 0; u < U; u += 4) gruForward4(a + g + off(u), q + g + off(u), hPrev + s + off(u), h + s + off(u), U, U - u);
  }
}

/** One GRU step backward over 4 units of one row: see gruCellBackward. */
function gruBackward4(a: usize, q: usize, hp: usize, dh: usize, dy: usize, da: usize, dq: usize, U: i32, r: i32): void {
  const one = f32x4.splat(1);
  const gz = ld(a, r);
  const gr = ld(a + off(U), r);
  const gh = ld(a + off(2 * U), r);
  let gradH = ld(dh, r);
  if (dy != 0) gradH = f32x4.add(gradH, ld(dy, r));
  const dPreH = f32x4.mul(f32x4.mul(gradH, f32x4.sub(one, gz)), f32x4.sub(one, f32x4.mul(gh, gh)));
  const dPreZ = f32x4.mul(f32x4.mul(gradH, f32x4.sub(ld(hp, r), gh)), f32x4.mul(gz, f32x4.sub(one, gz)));
  const dPreR = f32x4.mul(f32x4.mul(dPreH, ld(q + off(2 * U), r)), f32x4.mul(gr, f32x4.sub(one, gr)));
  st(da, dPreZ, r);
  st(da + off(U), dPreR, r);
  st(da + off(2 * U), dPreH, r);
  st(dq, dPreZ, r);
  st(dq + off(U), dPreR, r);
  st(dq + off(2 * U), f32x4.mul(dPreH, gr), r);
  st(dh, f32x4.mul(gradH, gz), r);
}

/**
 * Its gradient, from the forward's (z, r, ĥ) in a, q and hPrev: gradH = dh + dy (dy = 0: none);
 * dPreH = gradH·(1 − z)·(1 − ĥ²), dPreZ = gradH·(hPrev − ĥ)·z(1−z), dPreR = dPreH·q_h·r(1−r);
 * da = (dPreZ, dPreR, dPreH), dq = (dPreZ, dPreR, dPreH·r) (rows × 3U); dh ← gradH·z in place (the direct
 * path h_{t−1} → h_t; the caller adds dq·Uᵀ).
 */
export function gruCellBackward(
  a: usize, q: usize, hPrev: usize, dh: usize, dy: usize, da: usize, dq: usize, rows: i32, U: i32,
): void {
  for (let b = 0; b < rows; b++) {
    const g = off(b * 3 * U);
    const s = off(b * U);
    for (let u = 0; u < U; u += 4) {
      const at = s + off(u);
      gruBackward4(a + g + off(u), q + g + off(u), hPrev + at, dh + at, dy != 0 ? dy + at : 0, da + g + off(u), dq + g + off(u), U, U - u);
    }
  }
}
