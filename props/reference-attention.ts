/**
 * Float64 references of the sequence operators (layer normalisation, multi-head attention,
 * positional encodings, Transformer blocks) and of the combinators, written plainly over arrays
 * of numbers from the math, not from the implementation: no heap, no kernels, no GEMM with
 * leading dimensions. Masked attention is a softmax over the *allowed* keys only (not a large
 * negative score), so the oracle does not share the code's masking trick. The properties compare
 * the engine against these and use their central differences as the true gradient.
 *
 * All tensors are row-major; a sequence batch is `[B, T, D]` flattened.
 */
import * as ref from './reference.ts';

export type Values = ref.Values;

// ---------------------------------------------------------------- layer normalisation

/** y = (x − mean) / √(var + ε) · gain + bias per row of `n` features, var the biased (1/n) variance. */
export function layerNorm(x: Values, rows: number, n: number, gain: Values, bias: Values, epsilon: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r * n + i]!;
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (x[r * n + i]! - mean) ** 2;
    variance /= n;
    const denominator = Math.sqrt(variance + epsilon);
    for (let i = 0; i < n; i++) y[r * n + i] = ((x[r * n + i]! - mean) / denominator) * gain[i]! + bias[i]!;
  }
  return y;
}

// ---------------------------------------------------------------- positional encodings

/**
 * The sinusoidal code written with the frequency as an exponential: ω_j = e^(−ln(10000)·2⌊j/2⌋/D),
 * PE[t, j] = sin(t·ω_j) for even j, cos(t·ω_j) for odd j.
 */
export function sinusoidal(length: number, dim: number): Float64Array {
  const pe = new Float64Array(length * dim);
  for (let t = 0; t < length; t++) {
    for (let j = 0; j < dim; j++) {
      const omega = Math.exp((-Math.log(10000) * 2 * Math.floor(j / 2)) / dim);
      pe[t * dim + j] = j % 2 === 0 ? Math.sin(t * omega) : Math.cos(t * omega);
    }
  }
  return pe;
}

/** y[b, t, :] = x[b, t, :] + table[t, :] for a `[B, T, D]` batch (the table has ≥ T rows). */
export function addPositions(x: Values, batch: number, length: number, dim: number, table: Values): Float64Array {
  const y = new Float64Array(batch * length * dim);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < length * dim; i++) y[b * length * dim + i] = x[b * length * dim + i]! + table[i]!;
  }
  return y;
}

// ---------------------------------------------------------------- attention

/** Shapes and options of one attention call. */
export interface AttentionDims {
  batch: number;
  /** Query length T. */
  length: number;
  /** Query features D. */
  dim: number;
  /** Memory length S (= T for self-attention). */
  memoryLength: number;
  /** Memory features (= D for self-attention). */
  memoryDim: number;
  heads: number;
  keyDim: number;
  valueDim: number;
  outputDim: number;
  causal: boolean;
}

/** The eight projection tensors in the engine's parameter order (biases may be null). */
export interface AttentionWeights {
  wq: Values; bq: Values | null;
  wk: Values; bk: Values | null;
  wv: Values; bv: Values | null;
  wo: Values; bo: Values | null;
}

/**
 * Multi-head attention: Q = x·Wq + bq, K = m·Wk + bk, V = m·Wv + bv (m = memory, or x itself);
 * for each example b, head h and query t the weights over keys s are
 *   w[s] = e^(q·k_s/√dk) / Σ_{s' allowed} e^(q·k_s'/√dk)   for allowed s, 0 otherwise,
 * allowed(t, s) = (not causal or s ≤ t) and keyMask[b, s] ≠ 0; a query with no allowed key has all
 * weights 0. The weights are multiplied by `dropMask` (indexed [b, h, t, s]) when given;
 * out = concat_h(Σ_s w[s]·v_s)·Wo + bo.
 */
export function attention(
  x: Values, memory: Values | null, w: AttentionWeights, d: AttentionDims, keyMask: Values | null, dropMask: Values | null = null,
): Float64Array {
  const { batch: B, length: T, dim: D, heads: H, keyDim: dk, valueDim: dv } = d;
  const m = memory ?? x;
  const S = memory ? d.memoryLength : T;
  const Dm = memory ? d.memoryDim : D;
  const q = ref.dense(x, B * T, D, w.wq, H * dk, w.bq);
  const k = ref.dense(m, B * S, Dm, w.wk, H * dk, w.bk);
  const v = ref.dense(m, B * S, Dm, w.wv, H * dv, w.bv);
  const o = new Float64Array(B * T * H * dv);
  const scores = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const allowed = (s: number) => (!d.causal || s <= t) && (!keyMask || keyMask[b * S + s] !== 0);
        let max = -Infinity;
        for (let s = 0; s < S; s++) {
          let dot = 0;
          for (let i = 0; i < dk; i++) dot += q[(b * T + t) * H * dk + h * dk + i]! * k[(b * S + s) * H * dk + h * dk + i]!;
          scores[s] = dot / Math.sqrt(dk);
          if (allowed(s)) max = Math.max(max, scores[s]!);
        }
        let total = 0;
        for (let s = 0; s < S; s++) if (allowed(s)) total += Math.exp(scores[s]! - max);
        for (let s = 0; s < S; s++) {
          let weight = allowed(s) ? Math.exp(scores[s]! - max) / total : 0;
          if (dropMask) weight *= dropMask[((b * H + h) * T + t) * S + s]!;
          if (weight === 0) continue;
          for (let j = 0; j < dv; j++) o[(b * T + t) * H * dv + h * dv + j]! += weight * v[(b * S + s) * H * dv + h * dv + j]!;
        }
      }
    }
  }
  return ref.dense(o, B * T, H * dv, w.wo, d.outputDim, w.bo);
}

/** Splits a flat parameter list in the engine's order (kernel, bias per projection) into weights. */
export function attentionWeights(params: readonly Values[], useBias: boolean): AttentionWeights {
  if (!useBias) {
    const [wq, wk, wv, wo] = params as [Values, Values, Values, Values];
    return { wq, bq: null, wk, bk: null, wv, bv: null, wo, bo: null };
  }
  const [wq, bq, wk, bk, wv, bv, wo, bo] = params as [Values, Values, Values, Values, Values, Values, Values, Values];
  return { wq, bq, wk, bk, wv, bv, wo, bo };
}

// ---------------------------------------------------------------- Transformer blocks

/** Shapes and options of a Transformer block. */
export interface BlockDims {
  batch: number;
  length: number;
  dim: number;
  heads: number;
  keyDim: number;
  ffDim: number;
  causal: boolean;
  norm: 'pre' | 'post';
  epsilon: number;
  /** Cross-attention memory `[B, S, memoryDim]` (decoder blocks with cross). */
  memory: { values: Values; length: number; dim: number; mask: Values | null } | null;
}

const add = (a: Values, b: Values): Float64Array => Float64Array.from(a, (v, i) => v + b[i]!);

/**
 * A Transformer block with GELU feed-forward, parameters in the engine's order:
 * pre-norm:  per sublayer [gain, bias, …sublayer] — self-attention (8), cross-attention (8), FF (W1, b1, W2, b2);
 * post-norm: per sublayer […sublayer, gain, bias].
 *   pre:  x ← x + Sub(LN(x));   post: x ← LN(x + Sub(x)).
 */
export function transformerBlock(x: Values, params: readonly Values[], d: BlockDims, keyMask: Values | null): Float64Array {
  const rows = d.batch * d.length;
  let p = 0;
  const take = (n: number) => params.slice(p, (p += n));
  const attentionDims = (memory: BlockDims['memory']): AttentionDims => ({
    batch: d.batch, length: d.length, dim: d.dim, memoryLength: memory ? memory.length : d.length, memoryDim: memory ? memory.dim : d.dim,
    heads: d.heads, keyDim: d.keyDim, valueDim: d.keyDim, outputDim: d.dim, causal: memory ? false : d.causal,
  });
  const sublayers: ((h: Values) => Float64Array)[] = [
    (h) => attention(h, null, attentionWeights(take(8), true), attentionDims(null), keyMask),
    ...(d.memory ? [(h: Values) => attention(h, d.memory!.values, attentionWeights(take(8), true), attentionDims(d.memory), d.memory!.mask)] : []),
    (h) => {
      const [w1, b1, w2, b2] = take(4) as [Values, Values, Values, Values];
      return ref.dense(ref.gelu(ref.dense(h, rows, d.dim, w1, d.ffDim, b1)), rows, d.ffDim, w2, d.dim, b2);
    },
  ];
  let h: Values = x;
  for (const sub of sublayers) {
    if (d.norm === 'pre') {
      const [gain, bias] = take(2) as [Values, Values];
      h = add(h, sub(layerNorm(h, rows, d.dim, gain, bias, d.epsilon)));
    } else {
      const out = add(h, sub(h));
      const [gain, bias] = take(2) as [Values, Values];
      h = layerNorm(out, rows, d.dim, gain, bias, d.epsilon);
    }
  }
  if (p !== params.length) throw new Error(`transformerBlock reference: used ${p} of ${params.length} parameter tensors`);
  return Float64Array.from(h);
}

// ---------------------------------------------------------------- combinators

/** y = x + f(x). */
export function residual(x: Values, f: (x: Values) => Values): Float64Array {
  return add(x, f(x));
}

/** Branch outputs concatenated along the last axis: each branch gives rows × widths[i]. */
export function concat(outputs: readonly Values[], rows: number, widths: readonly number[]): Float64Array {
  const total = widths.reduce((a, b) => a + b, 0);
  const y = new Float64Array(rows * total);
  let offset = 0;
  outputs.forEach((o, i) => {
    const w = widths[i]!;
    for (let r = 0; r < rows; r++) for (let c = 0; c < w; c++) y[r * total + offset + c] = o[r * w + c]!;
    offset += w;
  });
  return y;
}

/** Element-wise sum of branch outputs. */
export function sum(outputs: readonly Values[]): Float64Array {
  const y = new Float64Array(outputs[0]!.length);
  for (const o of outputs) for (let i = 0; i < y.length; i++) y[i]! += o[i]!;
  return y;
}
