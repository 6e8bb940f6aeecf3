// Vectorised transcendental functions on f32x4 (no tables: std Math would bring data segments).
// Measured max error against float64 (workers/README.md): exp ≈ 1.2e-7 rel; tanh, sigmoid, GELU ≈ 2e-7 rel.

// @ts-ignore: decorator
@inline const LOG2E: f32 = 1.44269504088896341;
// ln 2 split in two so that n·LN2_HI is exact for |n| ≤ 128 (Cephes expf).
// @ts-ignore: decorator
@inline const LN2_HI: f32 = 0.693359375;
// @ts-ignore: decorator
@inline const LN2_LO: f32 = -2.12194440e-4;
// @ts-ignore: decorator
@inline const EXP_HI: f32 = 88.0;
// Below this exp underflows to a subnormal; flushed to 0.
// @ts-ignore: decorator
@inline const EXP_LO: f32 = -87.33654;
// 1.5·2^23: adding it rounds |t| < 2^22 to an integer held in the low mantissa bits.
// @ts-ignore: decorator
@inline const ROUND_MAGIC: f32 = 12582912.0;
// @ts-ignore: decorator
@inline const ROUND_MAGIC_BITS: i32 = 0x4B400000;

/**
 * e^x lane-wise (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial, 2^n through the exponent
 * bits). Inputs above 88 saturate at e^88; below −87.34 give 0; NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function expV(x: v128): v128 {
  const lo = f32x4.lt(x, f32x4.splat(EXP_LO));
  // pmax / pmin (one instruction each; wasm min / max cost ~8 for their NaN and −0 rules): NaN in x
  // still passes through both, as the first operand.
  let v = f32x4.pmin(f32x4.pmax(x, f32x4.splat(EXP_LO)), f32x4.splat(EXP_HI));
  // Round to nearest (even) by adding 1.5·2^23: the sum's low mantissa bits are then n + 2^22 as an
  // integer, so n needs no float→int conversion (|n| ≤ 128). The same n as nearest() + trunc_sat.
  const shifted = f32x4.add(f32x4.mul(v, f32x4.splat(LOG2E)), f32x4.splat(ROUND_MAGIC));
  const fx = f32x4.sub(shifted, f32x4.splat(ROUND_MAGIC));
  v = f32x4.sub(v, f32x4.mul(fx, f32x4.splat(LN2_HI)));
  v = f32x4.sub(v, f32x4.mul(fx, f32x4.splat(LN2_LO)));
  const z = f32x4.mul(v, v);
  let y = f32x4.splat(1.9875691500e-4);
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(1.3981999507e-3));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(8.3334519073e-3));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(4.1665795894e-2));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(1.6666665459e-1));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(5.0000001201e-1));
  y = f32x4.add(f32x4.add(f32x4.mul(y, z), v), f32x4.splat(1));
  // (n + 2^22 + 0x4B400000 − 2^22 …): the bits of `shifted` minus those of the magic are n; + 127, << 23.
  const pow2n = i32x4.shl(i32x4.add(i32x4.sub(shifted, i32x4.splat(ROUND_MAGIC_BITS)), i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(y, pow2n), lo);
}

/** σ(x) = 1 / (1 + e^−x), computed from e^−|x| so neither side cancels or overflows. */
// @ts-ignore: decorator
@inline export function sigmoidV(x: v128): v128 {
  const e = expV(f32x4.neg(f32x4.abs(x)));
  const q = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), e));
  // x ≥ 0: q; x < 0: e·q = e / (1 + e).
  return v128.bitselect(q, f32x4.mul(e, q), f32x4.ge(x, f32x4.splat(0)));
}

/** tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), (1 − e)/(1 + e) with e = e^−2|x| above. */
// @ts-ignore: decorator
@inline export function tanhV(x: v128): v128 {
  const ax = f32x4.abs(x);
  const z = f32x4.mul(x, x);
  let p = f32x4.splat(-5.70498872745e-3);
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(2.06390887954e-2));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(-5.37397155531e-2));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(1.33314422036e-1));
  p = f32x4.add(f32x4.mul(p, z), f32x4.splat(-3.33332819422e-1));
  const small = f32x4.add(f32x4.mul(f32x4.mul(p, z), ax), ax);
  const e = expV(f32x4.mul(ax, f32x4.splat(-2)));
  const large = f32x4.div(f32x4.sub(f32x4.splat(1), e), f32x4.add(f32x4.splat(1), e));
  const t = v128.bitselect(small, large, f32x4.lt(ax, f32x4.splat(0.625)));
  // Copy the sign of x (t ≥ 0); NaN passes through both branches.
  return v128.or(t, v128.and(x, i32x4.splat(<i32>0x80000000)));
}

// @ts-ignore: decorator
@inline const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
// @ts-ignore: decorator
@inline const GELU_C: f32 = 0.044715;

/** GELU (tanh form) as x · σ(2u), u = √(2/π)(x + 0.044715x³): 0.5(1 + tanh u) = σ(2u) without cancellation. */
// @ts-ignore: decorator
@inline export function geluV(x: v128): v128 {
  const x2 = f32x4.mul(x, x);
  const u2 = f32x4.mul(f32x4.mul(x, f32x4.splat(2 * SQRT_2_OVER_PI)), f32x4.add(f32x4.splat(1), f32x4.mul(x2, f32x4.splat(GELU_C))));
  return f32x4.mul(x, sigmoidV(u2));
}

/** d GELU / dx · dy = dy · (s + 2x·s(1 − s)·u'), s = σ(2u), u' = √(2/π)(1 + 3·0.044715x²). */
// @ts-ignore: decorator
@inline export function geluGradV(x: v128, dy: v128): v128 {
  const x2 = f32x4.mul(x, x);
  const u2 = f32x4.mul(f32x4.mul(x, f32x4.splat(2 * SQRT_2_OVER_PI)), f32x4.add(f32x4.splat(1), f32x4.mul(x2, f32x4.splat(GELU_C))));
  const e = expV(f32x4.neg(f32x4.abs(u2)));
  const q = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), e));
  const eq = f32x4.mul(e, q);
  const pos = f32x4.ge(u2, f32x4.splat(0));
  const s = v128.bitselect(q, eq, pos);
  const oneMinusS = v128.bitselect(eq, q, pos);
  const du = f32x4.mul(f32x4.splat(SQRT_2_OVER_PI), f32x4.add(f32x4.splat(1), f32x4.mul(x2, f32x4.splat(3 * GELU_C))));
  const g = f32x4.add(s, f32x4.mul(f32x4.mul(f32x4.mul(f32x4.add(x, x), s), oneMinusS), du));
  return f32x4.mul(dy, g);
}

/** Natural log in f64 (scalar; one per softmax row): x = m·2^e, m ∈ [√½, √2), 2·atanh series. */
export function logF64(x: f64): f64 {
  if (!(x > 0) || !(x < Infinity)) return x == 0 ? -Infinity : (x < 0 ? NaN : x);
  let bits = reinterpret<u64>(x);
  let e = <i32>((bits >> 52) & 0x7ff);
  if (e == 0) {
    // Subnormal: scale up by 2^54.
    bits = reinterpret<u64>(x * 18014398509481984.0);
    e = <i32>((bits >> 52) & 0x7ff) - 54;
  }
  e -= 1023;
  let mant = reinterpret<f64>((bits & 0x000fffffffffffff) | 0x3ff0000000000000);
  if (mant > 1.4142135623730951) {
    mant *= 0.5;
    e += 1;
  }
  const s = (mant - 1) / (mant + 1);
  const s2 = s * s;
  let t = 1.0 / 19;
  t = t * s2 + 1.0 / 17;
  t = t * s2 + 1.0 / 15;
  t = t * s2 + 1.0 / 13;
  t = t * s2 + 1.0 / 11;
  t = t * s2 + 1.0 / 9;
  t = t * s2 + 1.0 / 7;
  t = t * s2 + 1.0 / 5;
  t = t * s2 + 1.0 / 3;
  t = t * s2 + 1;
  return <f64>e * 0.6931471805599453 + 2 * s * t;
}
