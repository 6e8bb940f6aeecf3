/**
 * Float64 references of the sequence operators (operators/embedding.ts, simple-rnn.ts, lstm.ts,
 * gru.ts), written plainly per sequence and per step from the published formulas (Keras), without
 * the engine, the heap, the time-major layout or the kernels. They are the oracle of
 * props/recurrent.prop.ts and the functions whose central differences stand in for the gradients.
 *
 * Truncated backprop is expressed as a function, not as a backward: {@link RecurrentInputs.frozen}
 * gives a second copy of every input used for the steps before the window (and for the initial
 * state). Central differences with respect to the live copy, the frozen copy held at the same values,
 * are then exactly the gradients with the prefix detached (stop-gradient at the window).
 */
import type { Values } from './reference.ts';

/** Everything a recurrent reference reads; arrays are row-major float64 or float32 values. */
export interface RecurrentInputs {
  batch: number;
  steps: number;
  features: number;
  units: number;
  /** `[B, T, F]`. */
  x: Values;
  /** `[F, G·U]`. */
  kernel: Values;
  /** `[U, G·U]`. */
  recurrentKernel: Values;
  /** `[G·U]` (GRU: `[2, 3U]`, input bias row then recurrent bias row). */
  bias: Values;
  /** Per-sequence initial states `[B, S, U]` (S = 2 for LSTM: h then c), or null for zeros. */
  initial: Values | null;
  returnSequences: boolean;
  /** Steps before `windowStart` read `frozen` instead of the fields above (truncated backprop). */
  frozen?: { windowStart: number; inputs: Omit<RecurrentInputs, 'frozen'> };
}

/** The per-step update of one sequence: reads the previous states, returns the new ones (`[h]` or `[h, c]`). */
type Cell = (xt: Float64Array, prev: Float64Array[], p: RecurrentInputs) => Float64Array[];

const sigmoid = (v: number): number => (v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v)));

/** pre[j] = bias[biasOffset + j] + Σ_i x[i]·W[i, j] + Σ_u h[u]·U[u, j] for j < width (h may be null). */
function affine(x: Float64Array, h: Float64Array | null, p: RecurrentInputs, width: number, biasOffset: number, withInput = true, withRecurrent = true): Float64Array {
  const pre = new Float64Array(width);
  for (let j = 0; j < width; j++) {
    let s = p.bias[biasOffset + j]!;
    if (withInput) for (let i = 0; i < p.features; i++) s += x[i]! * p.kernel[i * width + j]!;
    if (withRecurrent && h) for (let u = 0; u < p.units; u++) s += h[u]! * p.recurrentKernel[u * width + j]!;
    pre[j] = s;
  }
  return pre;
}

/** Runs a cell over every sequence; output `[B, T, U]` or `[B, U]`. */
function run(cell: Cell, stateCount: number, p: RecurrentInputs): Float64Array {
  const { batch: B, steps: T, features: F, units: U } = p;
  const out = new Float64Array(B * (p.returnSequences ? T : 1) * U);
  const windowStart = p.frozen?.windowStart ?? 0;
  for (let b = 0; b < B; b++) {
    const source = (t: number): RecurrentInputs => (t < windowStart && p.frozen ? { ...p.frozen.inputs } : p);
    const init = source(0).initial;
    let state: Float64Array[] = Array.from({ length: stateCount }, (_, s) => {
      const v = new Float64Array(U);
      if (init) for (let u = 0; u < U; u++) v[u] = init[(b * stateCount + s) * U + u]!;
      return v;
    });
    for (let t = 0; t < T; t++) {
      const q = source(t);
      const xt = new Float64Array(F);
      for (let i = 0; i < F; i++) xt[i] = q.x[(b * T + t) * F + i]!;
      state = cell(xt, state, q);
      const h = state[0]!;
      if (p.returnSequences) out.set(h, (b * T + t) * U);
      else if (t === T - 1) out.set(h, b * U);
    }
  }
  return out;
}

/** Elman RNN: h_t = tanh(x_t·W + h_{t−1}·U + b). */
export function simpleRnn(p: RecurrentInputs): Float64Array {
  return run((x, [h], q) => [affine(x, h!, q, q.units, 0).map(Math.tanh)], 1, p);
}

/** Keras LSTM, gates i, f, c, o: c_t = σ(f)·c_{t−1} + σ(i)·tanh(c̃), h_t = σ(o)·tanh(c_t). */
export function lstm(p: RecurrentInputs): Float64Array {
  return run((x, [h, c], q) => {
    const U = q.units;
    const z = affine(x, h!, q, 4 * U, 0);
    const hn = new Float64Array(U);
    const cn = new Float64Array(U);
    for (let u = 0; u < U; u++) {
      const i = sigmoid(z[u]!);
      const f = sigmoid(z[U + u]!);
      const g = Math.tanh(z[2 * U + u]!);
      const o = sigmoid(z[3 * U + u]!);
      cn[u] = f * c![u]! + i * g;
      hn[u] = o * Math.tanh(cn[u]!);
    }
    return [hn, cn];
  }, 2, p);
}

/**
 * Keras GRU with reset_after = true, gates z, r, h; bias rows (input, recurrent):
 * z = σ(x·W_z + b_z + h·U_z + b'_z), r likewise, ĥ = tanh(x·W_h + b_h + r·(h·U_h + b'_h)),
 * h_t = z·h_{t−1} + (1 − z)·ĥ.
 */
export function gru(p: RecurrentInputs): Float64Array {
  return run((x, [h], q) => {
    const U = q.units;
    const W = 3 * U;
    const a = affine(x, null, q, W, 0, true, false);
    const r0 = affine(x, h!, q, W, W, false, true);
    const hn = new Float64Array(U);
    for (let u = 0; u < U; u++) {
      const z = sigmoid(a[u]! + r0[u]!);
      const r = sigmoid(a[U + u]! + r0[U + u]!);
      const cand = Math.tanh(a[2 * U + u]! + r * r0[2 * U + u]!);
      hn[u] = z * h![u]! + (1 - z) * cand;
    }
    return [hn];
  }, 1, p);
}

/** Embedding lookup: out[i, :] = table[ids[i], :], `[N, dim]`. */
export function embedding(ids: ArrayLike<number>, table: Values, dim: number): Float64Array {
  const out = new Float64Array(ids.length * dim);
  for (let i = 0; i < ids.length; i++) for (let d = 0; d < dim; d++) out[i * dim + d] = table[ids[i]! * dim + d]!;
  return out;
}
