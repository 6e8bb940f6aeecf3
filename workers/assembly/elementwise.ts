// Element-wise, row-wise and optimizer kernels over raw pointers (contract: workers/kernel-api.ts).
// Four lanes at a time; the last n % 4 elements go through the same vector code, loaded lane by lane,
// so tails give the same results as the body and never touch memory past n.

import { expV, sigmoidV, tanhV, geluV, geluGradV, logF64 } from './vmath';

// @ts-ignore: decorator
@inline function off(i: i32): usize {
  return <usize>i << 2;
}

/** Loads r (1..3) floats into the low lanes of a vector; the others are 0. */
function loadTail(p: usize, r: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (r > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (r > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Stores the low r (1..3) lanes of v. */
function storeTail(p: usize, v: v128, r: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (r > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (r > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

export function reluForward(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + off(i));
    // x > 0 ? x : +0 (NaN and −0 give +0, like the reference).
    v128.store(y + off(i), v128.and(v, f32x4.gt(v, f32x4.splat(0))));
  }
  if (i < n) {
    const v = loadTail(x + off(i), n - i);
    storeTail(y + off(i), v128.and(v, f32x4.gt(v, f32x4.splat(0))), n - i);
  }
}

export function reluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    v128.store(dx + off(i), v128.and(v128.load(dy + off(i)), f32x4.gt(v128.load(x + off(i)), f32x4.splat(0))));
  }
  if (i < n) {
    const r = n - i;
    storeTail(dx + off(i), v128.and(loadTail(dy + off(i), r), f32x4.gt(loadTail(x + off(i), r), f32x4.splat(0))), r);
  }
}

export function leakyReluForward(x: usize, y: usize, n: i32, slope: f32): void {
  const s = f32x4.splat(slope);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + off(i));
    v128.store(y + off(i), v128.bitselect(v, f32x4.mul(s, v), f32x4.gt(v, f32x4.splat(0))));
  }
  if (i < n) {
    const v = loadTail(x + off(i), n - i);
    storeTail(y + off(i), v128.bitselect(v, f32x4.mul(s, v), f32x4.gt(v, f32x4.splat(0))), n - i);
  }
}

export function leakyReluBackward(x: usize, dy: usize, dx: usize, n: i32, slope: f32): void {
  const s = f32x4.splat(slope);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const d = v128.load(dy + off(i));
    v128.store(dx + off(i), v128.bitselect(d, f32x4.mul(s, d), f32x4.gt(v128.load(x + off(i)), f32x4.splat(0))));
  }
  if (i < n) {
    const r = n - i;
    const d = loadTail(dy + off(i), r);
    storeTail(dx + off(i), v128.bitselect(d, f32x4.mul(s, d), f32x4.gt(loadTail(x + off(i), r), f32x4.splat(0))), r);
  }
}

export function sigmoidForward(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + off(i), sigmoidV(v128.load(x + off(i))));
  if (i < n) storeTail(y + off(i), sigmoidV(loadTail(x + off(i), n - i)), n - i);
}

// @ts-ignore: decorator
@inline function sigmoidGrad(y: v128, dy: v128): v128 {
  return f32x4.mul(f32x4.mul(dy, y), f32x4.sub(f32x4.splat(1), y));
}

export function sigmoidBackward(y: usize, dy: usize, dx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dx + off(i), sigmoidGrad(v128.load(y + off(i)), v128.load(dy + off(i))));
  if (i < n) {
    const r = n - i;
    storeTail(dx + off(i), sigmoidGrad(loadTail(y + off(i), r), loadTail(dy + off(i), r)), r);
  }
}

export function tanhForward(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + off(i), tanhV(v128.load(x + off(i))));
  if (i < n) storeTail(y + off(i), tanhV(loadTail(x + off(i), n - i)), n - i);
}

// @ts-ignore: decorator
@inline function tanhGrad(y: v128, dy: v128): v128 {
  return f32x4.mul(dy, f32x4.sub(f32x4.splat(1), f32x4.mul(y, y)));
}

export function tanhBackward(y: usize, dy: usize, dx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dx + off(i), tanhGrad(v128.load(y + off(i)), v128.load(dy + off(i))));
  if (i < n) {
    const r = n - i;
    storeTail(dx + off(i), tanhGrad(loadTail(y + off(i), r), loadTail(dy + off(i), r)), r);
  }
}

export function geluForward(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + off(i), geluV(v128.load(x + off(i))));
  if (i < n) storeTail(y + off(i), geluV(loadTail(x + off(i), n - i)), n - i);
}

export function geluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dx + off(i), geluGradV(v128.load(x + off(i)), v128.load(dy + off(i))));
  if (i < n) {
    const r = n - i;
    storeTail(dx + off(i), geluGradV(loadTail(x + off(i), r), loadTail(dy + off(i), r)), r);
  }
}

// @ts-ignore: decorator
@inline function hmax(v: v128): f32 {
  const w = f32x4.max(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return max(f32x4.extract_lane(w, 0), f32x4.extract_lane(w, 1));
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  const w = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(w, 0) + f32x4.extract_lane(w, 1);
}

/** Max of a row of n floats (NaN if any is NaN). */
function rowMax(x: usize, n: i32): f32 {
  let i = 0;
  let m: f32 = -Infinity;
  if (n >= 4) {
    let vm = v128.load(x);
    for (i = 4; i + 4 <= n; i += 4) vm = f32x4.max(vm, v128.load(x + off(i)));
    m = hmax(vm);
  }
  for (; i < n; i++) m = max(m, load<f32>(x + off(i)));
  return m;
}

/** y[i] = e^(x[i] − shift) for a row of n floats; returns Σ y[i]. y may be 0: only the sum then. */
function rowExpSum(x: usize, y: usize, n: i32, shift: f32): f32 {
  const s = f32x4.splat(shift);
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const e = expV(f32x4.sub(v128.load(x + off(i)), s));
    if (y) v128.store(y + off(i), e);
    acc = f32x4.add(acc, e);
  }
  let sum = hsum(acc);
  if (i < n) {
    const r = n - i;
    const e = expV(f32x4.sub(loadTail(x + off(i), r), s));
    if (y) storeTail(y + off(i), e, r);
    // The zero-padded lanes hold e^(0 − shift): sum only the r real ones.
    sum += f32x4.extract_lane(e, 0);
    if (r > 1) sum += f32x4.extract_lane(e, 1);
    if (r > 2) sum += f32x4.extract_lane(e, 2);
  }
  return sum;
}

export function scale(x: usize, n: i32, s: f32): void {
  const vs = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(x + off(i), f32x4.mul(v128.load(x + off(i)), vs));
  for (; i < n; i++) store<f32>(x + off(i), load<f32>(x + off(i)) * s);
}

export function softmaxForward(x: usize, y: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * off(cols);
    const yr = y + <usize>r * off(cols);
    const m = rowMax(xr, cols);
    const sum = rowExpSum(xr, yr, cols, m);
    scale(yr, cols, 1 / sum);
  }
}

export function softmaxBackward(y: usize, dy: usize, dx: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * off(cols);
    const yr = y + o, dr = dy + o, xr = dx + o;
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= cols; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(dr + off(i)), v128.load(yr + off(i))));
    let dot = hsum(acc);
    for (let j = i; j < cols; j++) dot += load<f32>(dr + off(j)) * load<f32>(yr + off(j));
    const vd = f32x4.splat(dot);
    for (i = 0; i + 4 <= cols; i += 4) {
      v128.store(xr + off(i), f32x4.mul(v128.load(yr + off(i)), f32x4.sub(v128.load(dr + off(i)), vd)));
    }
    for (; i < cols; i++) store<f32>(xr + off(i), load<f32>(yr + off(i)) * (load<f32>(dr + off(i)) - dot));
  }
}

export function softmaxCrossEntropy(
  logits: usize, labels: usize, rows: i32, cols: i32, lossPerRow: usize, dLogits: usize, scale_: f32,
): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * off(cols);
    const xr = logits + o;
    const label = load<i32>(labels + off(r));
    const m = rowMax(xr, cols);
    const gr = dLogits ? dLogits + o : 0;
    const sum = rowExpSum(xr, gr, cols, m);
    // In f64: logits of large magnitude would otherwise cancel in logSum − x[label].
    const logSum = <f64>m + logF64(<f64>sum);
    store<f32>(lossPerRow + off(r), <f32>(logSum - <f64>load<f32>(xr + off(label))));
    if (dLogits) {
      // softmax = e^(x − m) / sum, then scale · (softmax − onehot).
      scale(gr, cols, scale_ / sum);
      if (label >= 0 && label < cols) store<f32>(gr + off(label), load<f32>(gr + off(label)) - scale_);
    }
  }
}

export function addBias(y: usize, bias: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const yr = y + <usize>r * off(cols);
    let i = 0;
    for (; i + 4 <= cols; i += 4) v128.store(yr + off(i), f32x4.add(v128.load(yr + off(i)), v128.load(bias + off(i))));
    for (; i < cols; i++) store<f32>(yr + off(i), load<f32>(yr + off(i)) + load<f32>(bias + off(i)));
  }
}

export function sumRows(x: usize, out: usize, rows: i32, cols: i32, beta: f32): void {
  const stride = off(cols);
  const vb = f32x4.splat(beta);
  let c = 0;
  // 16 columns at a time: four accumulators stream down the rows.
  for (; c + 16 <= cols; c += 16) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let p = x + off(c);
    for (let r = 0; r < rows; r++) {
      a0 = f32x4.add(a0, v128.load(p));
      a1 = f32x4.add(a1, v128.load(p, 16));
      a2 = f32x4.add(a2, v128.load(p, 32));
      a3 = f32x4.add(a3, v128.load(p, 48));
      p += stride;
    }
    const q = out + off(c);
    if (beta != 0) {
      a0 = f32x4.add(f32x4.mul(vb, v128.load(q)), a0);
      a1 = f32x4.add(f32x4.mul(vb, v128.load(q, 16)), a1);
      a2 = f32x4.add(f32x4.mul(vb, v128.load(q, 32)), a2);
      a3 = f32x4.add(f32x4.mul(vb, v128.load(q, 48)), a3);
    }
    v128.store(q, a0);
    v128.store(q, a1, 16);
    v128.store(q, a2, 32);
    v128.store(q, a3, 48);
  }
  for (; c + 4 <= cols; c += 4) {
    let a0 = f32x4.splat(0);
    let p = x + off(c);
    for (let r = 0; r < rows; r++) {
      a0 = f32x4.add(a0, v128.load(p));
      p += stride;
    }
    const q = out + off(c);
    if (beta != 0) a0 = f32x4.add(f32x4.mul(vb, v128.load(q)), a0);
    v128.store(q, a0);
  }
  for (; c < cols; c++) {
    let s: f32 = 0;
    let p = x + off(c);
    for (let r = 0; r < rows; r++) {
      s += load<f32>(p);
      p += stride;
    }
    const q = out + off(c);
    store<f32>(q, beta != 0 ? beta * load<f32>(q) + s : s);
  }
}

export function adamUpdate(
  param: usize, grad: usize, m: usize, v: usize, n: i32, lr: f32, beta1: f32, beta2: f32,
  eps: f32, weightDecay: f32, decoupled: i32, bc1: f32, bc2: f32,
): void {
  const vlr = f32x4.splat(lr), b1 = f32x4.splat(beta1), b1c = f32x4.splat(1 - beta1);
  const b2 = f32x4.splat(beta2), b2c = f32x4.splat(1 - beta2), ve = f32x4.splat(eps), wd = f32x4.splat(weightDecay);
  const c1 = f32x4.splat(bc1), c2 = f32x4.splat(bc2);
  const dec = decoupled != 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = off(i);
    const p = v128.load(param + o), g0 = v128.load(grad + o), mv = v128.load(m + o), vv = v128.load(v + o);
    const g = dec ? g0 : f32x4.add(g0, f32x4.mul(wd, p));
    const m2 = f32x4.add(f32x4.mul(b1, mv), f32x4.mul(b1c, g));
    const v2 = f32x4.add(f32x4.mul(b2, vv), f32x4.mul(f32x4.mul(b2c, g), g));
    let upd = f32x4.div(f32x4.div(m2, c1), f32x4.add(f32x4.sqrt(f32x4.div(v2, c2)), ve));
    if (dec) upd = f32x4.add(upd, f32x4.mul(wd, p));
    v128.store(param + o, f32x4.sub(p, f32x4.mul(vlr, upd)));
    v128.store(m + o, m2);
    v128.store(v + o, v2);
  }
  for (; i < n; i++) {
    const o = off(i);
    const p = load<f32>(param + o);
    const g = load<f32>(grad + o) + (dec ? 0 : weightDecay * p);
    const m2 = beta1 * load<f32>(m + o) + (1 - beta1) * g;
    const v2 = beta2 * load<f32>(v + o) + (1 - beta2) * g * g;
    const upd = m2 / bc1 / (sqrt<f32>(v2 / bc2) + eps) + (dec ? weightDecay * p : 0);
    store<f32>(param + o, p - lr * upd);
    store<f32>(m + o, m2);
    store<f32>(v + o, v2);
  }
}

export function sgdUpdate(
  param: usize, grad: usize, velocity: usize, n: i32, lr: f32, momentum: f32, nesterov: i32, weightDecay: f32,
): void {
  const vlr = f32x4.splat(lr), mu = f32x4.splat(momentum), wd = f32x4.splat(weightDecay);
  let i = 0;
  if (momentum == 0) {
    for (; i + 4 <= n; i += 4) {
      const o = off(i);
      const p = v128.load(param + o);
      const g = f32x4.add(v128.load(grad + o), f32x4.mul(wd, p));
      v128.store(param + o, f32x4.sub(p, f32x4.mul(vlr, g)));
    }
    for (; i < n; i++) {
      const o = off(i);
      const p = load<f32>(param + o);
      store<f32>(param + o, p - lr * (load<f32>(grad + o) + weightDecay * p));
    }
    return;
  }
  const nest = nesterov != 0;
  for (; i + 4 <= n; i += 4) {
    const o = off(i);
    const p = v128.load(param + o);
    const g = f32x4.add(v128.load(grad + o), f32x4.mul(wd, p));
    const vel = f32x4.add(f32x4.mul(mu, v128.load(velocity + o)), g);
    v128.store(velocity + o, vel);
    const step = nest ? f32x4.add(g, f32x4.mul(mu, vel)) : vel;
    v128.store(param + o, f32x4.sub(p, f32x4.mul(vlr, step)));
  }
  for (; i < n; i++) {
    const o = off(i);
    const p = load<f32>(param + o);
    const g = load<f32>(grad + o) + weightDecay * p;
    const vel = momentum * load<f32>(velocity + o) + g;
    store<f32>(velocity + o, vel);
    store<f32>(param + o, p - lr * (nest ? g + momentum * vel : vel));
  }
}

export function fill(x: usize, n: i32, value: f32): void {
  const v = f32x4.splat(value);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(x + off(i), v);
  for (; i < n; i++) store<f32>(x + off(i), value);
}

export function copy(x: usize, y: usize, n: i32): void {
  // memmove semantics (overlap allowed), like Float32Array.copyWithin.
  if (n > 0) memory.copy(y, x, off(n));
}

/** ema = ema·m + a·x in one pass: the operations of scale(ema, m) then axpy(a, x, ema), so the same bits. */
export function emaUpdate(ema: usize, x: usize, n: i32, m: f32, a: f32): void {
  const vm = f32x4.splat(m);
  const va = f32x4.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    v128.store(ema + off(i), f32x4.add(f32x4.mul(v128.load(ema + off(i)), vm), f32x4.mul(va, v128.load(x + off(i)))));
  }
  for (; i < n; i++) store<f32>(ema + off(i), load<f32>(ema + off(i)) * m + a * load<f32>(x + off(i)));
}

export function axpy(n: i32, a: f32, x: usize, y: usize): void {
  const va = f32x4.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + off(i), f32x4.add(v128.load(y + off(i)), f32x4.mul(va, v128.load(x + off(i)))));
  for (; i < n; i++) store<f32>(y + off(i), load<f32>(y + off(i)) + a * load<f32>(x + off(i)));
}
