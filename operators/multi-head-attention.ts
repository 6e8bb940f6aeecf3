import { glorotUniform, zeros } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer, type ConfigReader } from '../src/registry.ts';
import { dropoutMask } from './dropout.ts';

/**
 * The score given to a masked (query, key) pair before the softmax. Replacing the score (not adding
 * to it) with −1e30 makes e^(score − rowMax) underflow to exactly 0 in both kernel backends (the
 * wasm exp clamps below −88 to 0), so masked keys get exactly zero weight and zero gradient, while
 * staying finite (no −∞ − (−∞) = NaN when a whole row is masked).
 */
export const MASKED_SCORE = -1e30;

// ---------------------------------------------------------------- the operator

/** Where cross-attention's keys and values come from. */
export interface CrossAttentionSource {
  /** Name of the side column holding the memory sequence, `[S, dim]` per example (Float32). */
  column: string;
  /** Feature size of the memory (default: the query input's feature size). */
  dim?: number;
  /** Side column with the memory's padding mask, `[S]` per example (1 = real position, 0 = padding). */
  mask?: string;
}

/** Options of {@link multiHeadAttention}. */
export interface MultiHeadAttentionOptions {
  heads: number;
  /** Size of each head's queries and keys. */
  keyDim: number;
  /** Size of each head's values (default keyDim). */
  valueDim?: number;
  /** Output features (default: the input's feature size, so the layer fits in a residual block). */
  outputDim?: number;
  /** Position t attends only to positions ≤ t (self-attention only). */
  causal?: boolean;
  /** Dropout rate on the attention weights while training (default 0). */
  dropout?: number;
  /** Side column with the padding mask of the (self-attention) sequence, `[T]` per example, Int32 or Float32, 1 = real, 0 = padding. */
  mask?: string;
  /** Cross-attention: queries from the main stream, keys and values from this side column. */
  cross?: CrossAttentionSource;
  /** Biases on the four projections (default true). */
  useBias?: boolean;
  name?: string;
}

/**
 * Multi-head scaled dot-product attention (Vaswani et al. 2017) over `[T, D]` sequences:
 *   Q = x·Wq + bq,  K = m·Wk + bk,  V = m·Wv + bv   (m = x for self-attention, the memory for cross)
 *   A_h = softmax(Q_h·K_hᵀ / √keyDim + masks),  y = concat_h(A_h·V_h)·Wo + bo.
 * Shape rule: `[T, D]` → `[T, outputDim]`; cross memory `[S, dim]` may have another length S.
 * Masks replace scores by {@link MASKED_SCORE}: causal (key s > query t) and padding (key s with
 * mask 0). Queries are never masked (a padded query's output is ignored by the loss's ignoreIndex);
 * a query whose every key is masked (a left-padded causal row) gets zero weights and a zero output.
 * Every product is a `compute.gemm`: the projections over all B·T rows at once, the per-(example,
 * head) score and value products on strided views of Q, K and V (a head is a column block of the
 * `[B·T, heads·keyDim]` projection, addressed with leading dimension heads·keyDim), so no head is
 * ever copied or transposed.
 * Backward: dO = dy·Woᵀ, dA = dO_h·V_hᵀ (dropout mask applied), dV_h = A_hᵀ·dO_h, dS = softmax'(A, dA),
 * dQ_h = dS·K_h/√dk, dK_h = dSᵀ·Q_h/√dk, then the projections' weight, bias and input gradients;
 * for cross-attention the memory gradient is added to the column's accumulator when one is open.
 */
export class MultiHeadAttention implements Layer {
  readonly kind = 'multiHeadAttention';
  readonly heads: number;
  readonly keyDim: number;
  readonly valueDim: number;
  readonly causal: boolean;
  readonly dropout: number;
  readonly cross: CrossAttentionSource | null;
  private readonly useBias: boolean;
  private params: Record<'wq' | 'wk' | 'wv' | 'wo', Parameter> | null = null;
  private biases: Record<'bq' | 'bk' | 'bv' | 'bo', Parameter> | null = null;
  private inDim = 0;
  private memDim = 0;
  private outDim = 0;
  private length = 0;

  get trainingDiffers(): boolean {
    return this.dropout > 0;
  }

  constructor(private readonly options: MultiHeadAttentionOptions, public name: string) {
    const positive = (v: number | undefined, what: string) => {
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`multiHeadAttention: ${what} must be a positive integer, got ${v}`);
    };
    positive(options.heads, 'heads');
    positive(options.keyDim, 'keyDim');
    positive(options.valueDim, 'valueDim');
    positive(options.outputDim, 'outputDim');
    positive(options.cross?.dim, 'cross.dim');
    this.heads = options.heads;
    this.keyDim = options.keyDim;
    this.valueDim = options.valueDim ?? options.keyDim;
    this.causal = options.causal ?? false;
    this.dropout = options.dropout ?? 0;
    this.cross = options.cross ?? null;
    this.useBias = options.useBias ?? true;
    if (!(this.dropout >= 0 && this.dropout < 1)) throw new RangeError(`multiHeadAttention: dropout must be in [0, 1), got ${this.dropout}`);
    if (this.causal && this.cross) throw new RangeError('multiHeadAttention: causal masking is for self-attention; cross-attention sees the whole memory');
    if (this.cross && options.mask) throw new RangeError("multiHeadAttention: with cross-attention the keys are the memory's; give its padding mask as cross.mask, not mask");
    if (this.cross && !this.cross.column) throw new RangeError('multiHeadAttention: cross.column must name the side column holding the memory');
  }

  get sideInputs(): readonly string[] {
    const names: string[] = [];
    if (this.options.mask && !this.cross) names.push(this.options.mask);
    if (this.cross) {
      names.push(this.cross.column);
      if (this.cross.mask) names.push(this.cross.mask);
    }
    return names;
  }

  /** Feature size of the keys' and values' source (the memory for cross-attention), known after build. */
  get memoryDim(): number {
    return this.memDim;
  }

  private get operator(): string {
    return `${this.name} (multiHeadAttention)`;
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.length !== 2) throw new ShapeError(this.operator, `input shape ${formatShape(inputShape)} must be [length, features]`);
    this.length = inputShape[0]!;
    this.inDim = inputShape[1]!;
    this.memDim = this.cross ? (this.cross.dim ?? this.inDim) : this.inDim;
    this.outDim = this.options.outputDim ?? this.inDim;
    const hk = this.heads * this.keyDim;
    const hv = this.heads * this.valueDim;
    const kernel = (name: string, rows: number, cols: number) => ctx.addParameter(`${name}/kernel`, [rows, cols], glorotUniform(), { fanIn: rows, fanOut: cols });
    const bias = (name: string, rows: number, cols: number) => ctx.addParameter(`${name}/bias`, [cols], zeros(), { fanIn: rows, fanOut: cols });
    // Creation order fixes the initialisation draws: query, key, value, output, each kernel then bias.
    const wq = kernel('query', this.inDim, hk);
    const bq = this.useBias ? bias('query', this.inDim, hk) : null;
    const wk = kernel('key', this.memDim, hk);
    const bk = this.useBias ? bias('key', this.memDim, hk) : null;
    const wv = kernel('value', this.memDim, hv);
    const bv = this.useBias ? bias('value', this.memDim, hv) : null;
    const wo = kernel('output', hv, this.outDim);
    const bo = this.useBias ? bias('output', hv, this.outDim) : null;
    this.params = { wq, wk, wv, wo };
    this.biases = bq && bk && bv && bo ? { bq, bk, bv, bo } : null;
    return [this.length, this.outDim];
  }

  parameters(): Parameter[] {
    if (!this.params) return [];
    const { wq, wk, wv, wo } = this.params;
    if (!this.biases) return [wq, wk, wv, wo];
    const { bq, bk, bv, bo } = this.biases;
    return [wq, bq, wk, bk, wv, bv, wo, bo];
  }

  /** The memory tensor `[B, S, memDim]` (cross) or x itself (self), checked against the batch. */
  private memoryOf(x: Tensor, step: StepContext): Tensor {
    if (!this.cross) return x;
    const memory = step.columns.get(this.cross.column);
    if (!memory) throw new TypeError(`${this.operator}: cross-attention needs the side column '${this.cross.column}' (the memory), which this step does not have`);
    const batch = x.shape[0]!;
    if (memory.dtype !== 'float32' || memory.shape.length !== 3 || memory.shape[0] !== batch || memory.shape[2] !== this.memDim) {
      throw new ShapeError(this.operator, `memory column '${this.cross.column}' has shape ${formatShape(memory.shape.slice(1))} (${memory.dtype}) per example; expected Float32 [length, ${this.memDim}]`);
    }
    return memory;
  }

  /** 1 = real key, 0 = padding, per example and key position; null when no padding mask applies. */
  private keyMask(step: StepContext, batch: number, keys: number): ArrayLike<number> | null {
    const name = this.cross ? this.cross.mask : this.options.mask;
    if (!name) return null;
    const mask = step.columns.get(name);
    if (!mask) throw new TypeError(`${this.operator}: needs the padding-mask side column '${name}', which this step does not have`);
    if (mask.size !== batch * keys) {
      throw new ShapeError(this.operator, `padding mask '${name}' has shape ${formatShape(mask.shape.slice(1))} per example; expected [${keys}]`);
    }
    return mask.dtype === 'int32' ? mask.int32() : mask.data();
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const { wq, wk, wv, wo } = this.params!;
    const { compute, kernels } = step.engine;
    const B = x.shape[0]!;
    const T = x.shape[1]!;
    if (x.shape.length !== 3 || x.shape[2] !== this.inDim) throw new ShapeError(this.operator, `input ${formatShape(x.shape.slice(1))} per example; expected [length, ${this.inDim}]`);
    const memory = this.memoryOf(x, step);
    const S = memory.shape[1]!;
    const H = this.heads;
    const dk = this.keyDim;
    const dv = this.valueDim;
    const hk = H * dk;
    const hv = H * dv;
    const alpha = 1 / Math.sqrt(dk);

    const q = step.alloc([B, T, hk]);
    const k = step.alloc([B, S, hk]);
    const v = step.alloc([B, S, hv]);
    await compute.gemm(0, 0, B * T, hk, this.inDim, 1, x.ptr, this.inDim, wq.value.ptr, hk, 0, q.ptr, hk);
    await compute.gemm(0, 0, B * S, hk, this.memDim, 1, memory.ptr, this.memDim, wk.value.ptr, hk, 0, k.ptr, hk);
    await compute.gemm(0, 0, B * S, hv, this.memDim, 1, memory.ptr, this.memDim, wv.value.ptr, hv, 0, v.ptr, hv);
    if (this.biases) {
      kernels.addBias(q.ptr, this.biases.bq.value.ptr, B * T, hk);
      kernels.addBias(k.ptr, this.biases.bk.value.ptr, B * S, hk);
      kernels.addBias(v.ptr, this.biases.bv.value.ptr, B * S, hv);
    }

    // Scores of every (example, head): a T×S block, rows = queries.
    const scores = step.alloc([B, H, T, S]);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        await compute.gemm(0, 1, T, S, dk, alpha, q.ptr + (b * T * hk + h * dk) * 4, hk, k.ptr + (b * S * hk + h * dk) * 4, hk, 0, scores.ptr + (b * H + h) * T * S * 4, S);
      }
    }
    const emptyRows = this.applyMasks(scores, step, B, T, S);
    const weights = step.alloc([B, H, T, S]);
    kernels.softmaxForward(scores.ptr, weights.ptr, B * H * T, S);
    if (emptyRows) {
      const f = step.engine.heap.f32;
      for (const row of emptyRows) f.fill(0, (weights.ptr >> 2) + row * S, (weights.ptr >> 2) + (row + 1) * S);
    }
    let used = weights;
    let dropMask: Tensor | null = null;
    if (step.training && this.dropout > 0) {
      dropMask = dropoutMask(step, weights.shape, this.dropout);
      used = step.alloc(weights.shape);
      const f = step.engine.heap.f32;
      const m0 = dropMask.ptr >> 2;
      const w0 = weights.ptr >> 2;
      const u0 = used.ptr >> 2;
      // The kept weights are scaled by 1/keep in double precision (not by the mask's float32 value), as they always were.
      const scale = 1 / (1 - this.dropout);
      for (let i = 0; i < weights.size; i++) f[u0 + i] = f[w0 + i]! * (f[m0 + i] !== 0 ? scale : 0);
    }
    // Heads' outputs side by side: head h writes the column block [h·dv, (h+1)·dv) of [B·T, H·dv].
    const o = step.alloc([B, T, hv]);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        await compute.gemm(0, 0, T, dv, S, 1, used.ptr + (b * H + h) * T * S * 4, S, v.ptr + (b * S * hv + h * dv) * 4, hv, 0, o.ptr + (b * T * hv + h * dv) * 4, hv);
      }
    }
    const y = step.alloc([B, T, this.outDim]);
    await compute.gemm(0, 0, B * T, this.outDim, hv, 1, o.ptr, hv, wo.value.ptr, this.outDim, 0, y.ptr, this.outDim);
    if (this.biases) kernels.addBias(y.ptr, this.biases.bo.value.ptr, B * T, this.outDim);
    step.save(this, x, memory, q, k, v, weights, used, o, ...(dropMask ? [dropMask] : []));
    return y;
  }

  /**
   * Writes {@link MASKED_SCORE} into masked score entries; returns the flat indices (over B·H·T) of
   * rows with no visible key, whose softmax must be zeroed, or null when there are none.
   */
  private applyMasks(scores: Tensor, step: StepContext, B: number, T: number, S: number): number[] | null {
    const padding = this.keyMask(step, B, S);
    if (!this.causal && !padding) return null;
    const f = step.engine.heap.f32;
    const H = this.heads;
    const base = scores.ptr >> 2;
    let empty: number[] | null = null;
    for (let b = 0; b < B; b++) {
      const padded: number[] = [];
      if (padding) for (let s = 0; s < S; s++) if (padding[b * S + s] === 0) padded.push(s);
      // visible[t]: keys query t may see (for the empty-row check).
      for (let t = 0; t < T; t++) {
        const limit = this.causal ? Math.min(t + 1, S) : S;
        let visible = limit;
        for (const s of padded) if (s < limit) visible--;
        for (let h = 0; h < H; h++) {
          const row = base + ((b * H + h) * T + t) * S;
          if (limit < S) f.fill(MASKED_SCORE, row + limit, row + S);
          for (const s of padded) if (s < limit) f[row + s] = MASKED_SCORE;
          if (visible === 0) (empty ??= []).push((b * H + h) * T + t);
        }
      }
    }
    return empty;
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const saved = step.restore(this);
    const [x, memory, q, k, v, weights, used, o] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const dropMask = saved[8] ?? null;
    const { wq, wk, wv, wo } = this.params!;
    const { compute, kernels } = step.engine;
    const B = x.shape[0]!;
    const T = x.shape[1]!;
    const S = memory.shape[1]!;
    const H = this.heads;
    const dk = this.keyDim;
    const dv = this.valueDim;
    const hk = H * dk;
    const hv = H * dv;
    const alpha = 1 / Math.sqrt(dk);
    const out = this.outDim;

    // Output projection.
    await compute.gemm(1, 0, hv, out, B * T, 1, o.ptr, hv, dy.ptr, out, 0, wo.grad.ptr, out);
    if (this.biases) kernels.sumRows(dy.ptr, this.biases.bo.grad.ptr, B * T, out, 0);
    const dO = step.alloc([B, T, hv]);
    await compute.gemm(0, 1, B * T, hv, out, 1, dy.ptr, out, wo.value.ptr, out, 0, dO.ptr, hv);

    // Through the weighted sum of values.
    const dWeights = step.alloc(weights.shape);
    const dV = step.alloc([B, S, hv]);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const block = (b * H + h) * T * S * 4;
        const dOh = dO.ptr + (b * T * hv + h * dv) * 4;
        const vh = (b * S * hv + h * dv) * 4;
        await compute.gemm(0, 1, T, S, dv, 1, dOh, hv, v.ptr + vh, hv, 0, dWeights.ptr + block, S);
        await compute.gemm(1, 0, S, dv, T, 1, used.ptr + block, S, dOh, hv, 0, dV.ptr + vh, hv);
      }
    }
    if (dropMask) {
      const f = step.engine.heap.f32;
      const d0 = dWeights.ptr >> 2;
      const m0 = dropMask.ptr >> 2;
      for (let i = 0; i < dWeights.size; i++) f[d0 + i]! *= f[m0 + i]!;
    }
    // Through the softmax: masked entries have weight 0, hence zero score gradient.
    const dScores = step.alloc(weights.shape);
    kernels.softmaxBackward(weights.ptr, dWeights.ptr, dScores.ptr, B * H * T, S);

    // Through the scaled scores.
    const dQ = step.alloc([B, T, hk]);
    const dK = step.alloc([B, S, hk]);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const block = dScores.ptr + (b * H + h) * T * S * 4;
        const qh = (b * T * hk + h * dk) * 4;
        const kh = (b * S * hk + h * dk) * 4;
        await compute.gemm(0, 0, T, dk, S, alpha, block, S, k.ptr + kh, hk, 0, dQ.ptr + qh, hk);
        await compute.gemm(1, 0, S, dk, T, alpha, block, S, q.ptr + qh, hk, 0, dK.ptr + kh, hk);
      }
    }

    // Projections: weights and biases, then the inputs.
    await compute.gemm(1, 0, this.inDim, hk, B * T, 1, x.ptr, this.inDim, dQ.ptr, hk, 0, wq.grad.ptr, hk);
    await compute.gemm(1, 0, this.memDim, hk, B * S, 1, memory.ptr, this.memDim, dK.ptr, hk, 0, wk.grad.ptr, hk);
    await compute.gemm(1, 0, this.memDim, hv, B * S, 1, memory.ptr, this.memDim, dV.ptr, hv, 0, wv.grad.ptr, hv);
    if (this.biases) {
      kernels.sumRows(dQ.ptr, this.biases.bq.grad.ptr, B * T, hk, 0);
      kernels.sumRows(dK.ptr, this.biases.bk.grad.ptr, B * S, hk, 0);
      kernels.sumRows(dV.ptr, this.biases.bv.grad.ptr, B * S, hv, 0);
    }
    // The memory's gradient: into x's for self-attention, into the column's accumulator for cross.
    const memoryGrad = this.cross ? step.columnGradient(this.cross.column) : null;
    if (memoryGrad) {
      await compute.gemm(0, 1, B * S, this.memDim, hk, 1, dK.ptr, hk, wk.value.ptr, hk, 1, memoryGrad.ptr, this.memDim);
      await compute.gemm(0, 1, B * S, this.memDim, hv, 1, dV.ptr, hv, wv.value.ptr, hv, 1, memoryGrad.ptr, this.memDim);
    }
    if (!needInputGradient) return null;
    const dx = step.alloc(x.shape);
    await compute.gemm(0, 1, B * T, this.inDim, hk, 1, dQ.ptr, hk, wq.value.ptr, hk, 0, dx.ptr, this.inDim);
    if (!this.cross) {
      await compute.gemm(0, 1, B * T, this.inDim, hk, 1, dK.ptr, hk, wk.value.ptr, hk, 1, dx.ptr, this.inDim);
      await compute.gemm(0, 1, B * T, this.inDim, hv, 1, dV.ptr, hv, wv.value.ptr, hv, 1, dx.ptr, this.inDim);
    }
    return dx;
  }

  config(): Record<string, unknown> {
    return {
      heads: this.heads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      outputDim: this.options.outputDim ?? null,
      causal: this.causal,
      dropout: this.dropout,
      mask: this.options.mask ?? null,
      cross: this.cross ? { column: this.cross.column, dim: this.cross.dim ?? null, mask: this.cross.mask ?? null } : null,
      useBias: this.useBias,
    };
  }
}

/**
 * Multi-head scaled dot-product attention: self-attention over the main stream (optionally causal
 * and with a padding mask from a side column), or cross-attention to a memory sequence in a side column.
 *
 * Usage: `residual([layerNorm(), multiHeadAttention({ heads: 4, keyDim: 16, causal: true, mask: 'mask' })])`
 */
export function multiHeadAttention(options: MultiHeadAttentionOptions): Layer {
  return new MultiHeadAttention(options, options.name ?? '');
}

/** Reads a `cross` config (`{ column, dim, mask }` or null) back (checkpoints). */
export function readCrossSource(c: ConfigReader): CrossAttentionSource | undefined {
  const cross = c.nested('cross');
  if (!cross) return undefined;
  const column = cross.string('column');
  const dim = cross.numberOrNull('dim');
  const mask = cross.stringOrNull('mask');
  cross.done();
  return { column, ...(dim !== null ? { dim } : {}), ...(mask !== null ? { mask } : {}) };
}

registerLayer('multiHeadAttention', (c, name) => {
  const outputDim = c.numberOrNull('outputDim');
  const mask = c.stringOrNull('mask');
  const cross = readCrossSource(c);
  const options: MultiHeadAttentionOptions = {
    name,
    heads: c.positiveInteger('heads'),
    keyDim: c.positiveInteger('keyDim'),
    valueDim: c.positiveInteger('valueDim'),
    causal: c.boolean('causal', false),
    dropout: c.number('dropout', 0),
    useBias: c.boolean('useBias', true),
    ...(outputDim !== null ? { outputDim } : {}),
    ...(mask !== null ? { mask } : {}),
    ...(cross ? { cross } : {}),
  };
  c.done();
  return constructLayer(c, 'heads', () => multiHeadAttention(options));
});
