/**
 * Gradient and forward properties of the sequence operators:
 *   operators/layer-norm.ts (layerNorm), operators/multi-head-attention.ts (multiHeadAttention: self
 *   and cross, causal on/off, padding masks from Int32 and Float32 side columns, attention dropout),
 *   operators/positional-encoding.ts (positionalEncoding: sinusoidal and learned),
 *   operators/transformer.ts (transformerEncoderBlock, transformerDecoderBlock pre/post-norm, encoderDecoder).
 *
 * Each property draws small random shapes (batch 1–3, lengths 1–5, features 1–8, heads 1–3, key
 * sizes 1–4), random values from a drawn seed, and random masks; builds the layer with a minimal
 * BuildContext, overwrites its parameters with random values, runs forward and backward on the
 * engine with a random upstream gradient dy, and compares
 *  (a) the output with the float64 reference of props/reference-attention.ts, and
 *  (b) dL/dx, every parameter gradient and (cross-attention) the memory gradient with central
 *      differences of L = Σ dy ⊙ f(x, θ, memory) evaluated on that reference.
 *
 * Tolerances (the harness defaults of props/harness.ts, with their reasoning, except whole blocks):
 *   forward   |engine − ref| ≤ 1e-5·max(1, ‖ref‖∞) + 1e-4·|ref|
 *   gradients |engine − fd|  ≤ 1e-4·max(1, ‖fd‖∞)  + 1e-3·|fd|    (single operators)
 *             |engine − fd|  ≤ 3e-4·max(1, ‖fd‖∞)  + 3e-3·|fd|    (whole Transformer blocks: ~12 float32
 *             operators deep, layerNorm's 1/σ amplifies each rounding; still 100× below any wrong term)
 *   central differences in float64 with step 1e-6 (error ≈ 1e-10).
 * Runs on the JS reference backend and on the wasm backend with one thread.
 * Replay a failure: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/attention.prop.ts`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import { lastValueFrom, from, toArray } from 'rxjs';
import { batchFromArrays } from '../src/batch.ts';
import type { Engine } from '../src/engine.ts';
import type { Layer, StepContext } from '../src/layer.ts';
import { sequential } from '../src/model.ts';
import { adam } from '../src/optimizers.ts';
import { meanSquaredError } from '../src/losses.ts';
import { Random } from '../src/random.ts';
import type { Shape } from '../src/tensor.ts';
import { dense } from '../operators/dense.ts';
import { embedding } from '../operators/embedding.ts';
import { tanh } from '../operators/tanh.ts';
import { layerNorm } from '../operators/layer-norm.ts';
import { MASKED_SCORE, multiHeadAttention } from '../operators/multi-head-attention.ts';
import { positionalEncoding, sinusoidalTable } from '../operators/positional-encoding.ts';
import { encoderDecoder, transformerDecoderBlock, transformerEncoderBlock } from '../operators/transformer.ts';
import {
  assertClose, buildLayer, checkGradients as checkForwardAndGradients, FD_EPS, fcParams, GRAD_ATOL, GRAD_RTOL, parameterValues, runLayer,
  testBackends, values, type BuiltLayer, type LayerRun, type Tolerance,
} from './harness.ts';
import * as ref from './reference.ts';
import * as refA from './reference-attention.ts';

// Forward and single-operator gradient tolerances and the central-difference step: the harness defaults.
/** Whole Transformer blocks: ~12 float32 operators deep, layerNorm's 1/σ amplifies each rounding; still 100× below any wrong term. */
const BLOCK_GRAD_ATOL = 3e-4;
const BLOCK_GRAD_RTOL = 3e-3;
/** Rows of a layerNorm input must have at least this variance: below it 1/σ makes float32 x̂ too coarse to compare. */
const MIN_ROW_VARIANCE = 1e-2;

// ---------------------------------------------------------------- harness

/** This file's engines start with a 16 MiB heap (the harness default is 8 MiB). */
const BACKENDS = testBackends(16 << 20);

interface Column {
  values: Float32Array | Int32Array;
  shape: Shape;
  /** Open a gradient accumulator for it (a memory produced inside the model). */
  differentiable?: boolean;
}

interface Run extends LayerRun {
  /** Gradients of the differentiable columns (after backward with the input gradient). */
  columnGrads: Map<string, Float32Array>;
}

/** Bytes of each step's arena filled with NaN here (the harness default is 64 KiB). */
const ATTENTION_POISON_BYTES = 256 << 10;

/**
 * The harness run (forward, backward without and with the input gradient, on one NaN-poisoned step)
 * with side columns on the step and gradient accumulators opened for the differentiable ones.
 */
async function run(
  engine: Engine, layer: Layer, built: BuiltLayer, batch: number, inputShape: Shape, x: readonly number[], dy: readonly number[],
  options: { columns?: Record<string, Column>; training?: boolean; seed?: number } = {},
): Promise<Run> {
  const columns = Object.entries(options.columns ?? {});
  const differentiable = columns.filter(([, c]) => c.differentiable).map(([n]) => n);
  const openGradients = (step: StepContext) => {
    for (const [name, c] of columns) if (c.differentiable) step.openColumnGradient(name, [batch, ...c.shape]);
  };
  /** Column gradients after backward(…, false), then after backward(…, true). */
  const columnGrads: Map<string, Float32Array>[] = [];
  const r = await runLayer(engine, layer, built.params, batch, inputShape, x, dy, {
    training: options.training ?? false, seed: options.seed ?? 1, poisonBytes: ATTENTION_POISON_BYTES,
    readSaved: layer.kind === 'multiHeadAttention',
    beforeForward(step) {
      for (const [name, c] of columns) {
        const t = step.alloc([batch, ...c.shape], c.values instanceof Int32Array ? 'int32' : 'float32');
        if (c.values instanceof Int32Array) t.int32().set(c.values);
        else t.data().set(c.values);
        step.columns.set(name, t);
      }
      openGradients(step);
    },
    afterBackward(step, needInputGradient) {
      columnGrads.push(new Map(differentiable.map((n) => [n, step.columnGradient(n)!.toFloat32Array()])));
      // Backward accumulates into the column gradients: fresh accumulators for the second backward.
      if (!needInputGradient) openGradients(step);
    },
  });
  assert.deepEqual(r.xAfter, Float32Array.from(x), `${layer.kind}: the input was modified`);
  const [without, withInput] = columnGrads as [Map<string, Float32Array>, Map<string, Float32Array>];
  for (const [n, g] of withInput) assert.deepEqual(g, without.get(n), `${layer.kind}: gradient of column '${n}' depends on needInputGradient`);
  return { ...r, columnGrads: withInput };
}

/**
 * The whole check: forward vs reference(x, θ, memory), and every gradient vs central differences of
 * Σ dy ⊙ reference. `memory` names a differentiable column whose gradient is checked too.
 */
function checkGradients(
  what: string, r: Run, built: BuiltLayer, x: readonly number[], dy: readonly number[],
  reference: (x: ref.Values, theta: readonly ref.Values[], memory: ref.Values | null) => ref.Values,
  tolerance: Tolerance = { atol: GRAD_ATOL, rtol: GRAD_RTOL },
  memory: { name: string; values: readonly number[] } | null = null,
): void {
  const theta = parameterValues(built.params);
  const mem = memory ? memory.values : null;
  checkForwardAndGradients({ what, run: r, params: built.params, theta, x, dy, reference: (xv, th) => reference(xv, th, mem), grad: tolerance });
  if (memory) {
    const numeric = ref.centralDifferences((v) => ref.weightedSum(dy, reference(x, theta, v)), memory.values, FD_EPS);
    assertClose(r.columnGrads.get(memory.name)!, numeric, tolerance.atol, tolerance.rtol, `${what} dL/d(memory '${memory.name}')`);
  }
}

/** Writes random values into every parameter (initialisers give gain 1 / bias 0, which would hide bugs). */
function randomizeParameters(built: BuiltLayer, seed: number, scale: number): void {
  built.params.forEach((p, i) => p.value.data().set(values(seed + 7919 * (i + 1), p.value.size, scale)));
}

const rowVarianceOk = (x: readonly number[], n: number): boolean => {
  if (n < 2) return true;
  for (let r = 0; r < x.length / n; r++) {
    const row = x.slice(r * n, (r + 1) * n);
    const mean = row.reduce((a, b) => a + b, 0) / n;
    if (row.reduce((a, b) => a + (b - mean) ** 2, 0) / n < MIN_ROW_VARIANCE) return false;
  }
  return true;
};

// ---------------------------------------------------------------- arbitraries

interface AttentionCase {
  batch: number;
  length: number;
  dim: number;
  memoryLength: number;
  memoryDim: number;
  heads: number;
  keyDim: number;
  valueDim: number;
  outputDim: number;
  causal: boolean;
  cross: boolean;
  /** Per example and key position: 1 real, 0 padding; null: no padding mask. */
  mask: number[] | null;
  maskDType: 'int32' | 'float32';
  useBias: boolean;
  dropout: number;
  seed: number;
}

const ATTENTION: Arbitrary<AttentionCase> = fc
  .record({
    batch: fc.integer({ min: 1, max: 3 }),
    length: fc.integer({ min: 1, max: 5 }),
    dim: fc.integer({ min: 1, max: 6 }),
    memoryLength: fc.integer({ min: 1, max: 5 }),
    memoryDim: fc.integer({ min: 1, max: 6 }),
    heads: fc.integer({ min: 1, max: 3 }),
    keyDim: fc.integer({ min: 1, max: 4 }),
    valueDim: fc.integer({ min: 1, max: 4 }),
    outputDim: fc.integer({ min: 1, max: 5 }),
    causal: fc.boolean(),
    cross: fc.boolean(),
    masked: fc.boolean(),
    maskDType: fc.constantFrom('int32' as const, 'float32' as const),
    useBias: fc.boolean(),
    dropout: fc.oneof(fc.constant(0), fc.double({ min: 0.1, max: 0.6, noNaN: true })),
    seed: fc.nat(),
  })
  .chain((c) => {
    const keys = c.cross ? c.memoryLength : c.length;
    // Masks with padding anywhere (left, right, middle, whole example) — fc shrinks them toward all-real.
    const mask = c.masked ? fc.array(fc.constantFrom(1, 1, 0), { minLength: c.batch * keys, maxLength: c.batch * keys }) : fc.constant(null);
    return mask.map((m) => ({ ...c, causal: c.cross ? false : c.causal, mask: m }));
  });

// ---------------------------------------------------------------- properties

for (const { label, engine } of BACKENDS) {
  describe(`sequence operators on the ${label}`, () => {
    it('operators/layer-norm.ts: layerNorm forward and gradients vs the float64 reference (random ε, gain, bias)', async () => {
      const arb = fc.record({
        batch: fc.integer({ min: 1, max: 4 }), mid: fc.integer({ min: 0, max: 3 }), features: fc.integer({ min: 1, max: 9 }),
        epsilon: fc.constantFrom(1e-5, 1e-3, 0.1), seed: fc.nat(),
      });
      await fc.assert(fc.asyncProperty(arb, async ({ batch, mid, features, epsilon, seed }) => {
        const inputShape = mid ? [mid, features] : [features];
        const rows = batch * Math.max(1, mid);
        const x = values(seed, rows * features, 2);
        fc.pre(rowVarianceOk(x, features));
        const dy = values(seed + 1, rows * features, 1);
        const layer = layerNorm({ epsilon });
        const built = buildLayer(engine, layer, inputShape);
        try {
          assert.deepEqual([...built.outShape], inputShape);
          assert.deepEqual(built.params.map((p) => p.name), ['gain', 'bias']);
          randomizeParameters(built, seed, 1.5);
          const r = await run(engine, layer, built, batch, inputShape, x, dy);
          checkGradients(`layerNorm [${batch}, ${inputShape.join(', ')}] ε=${epsilon}`, r, built, x, dy,
            (xv, [g, b]) => refA.layerNorm(xv, rows, features, g!, b!, epsilon));
        } finally {
          built.free();
        }
      }), fcParams(60));
    });

    it('operators/multi-head-attention.ts: multiHeadAttention self/cross, causal on/off, padding masks, dropout — forward and gradients', async () => {
      await fc.assert(fc.asyncProperty(ATTENTION, async (c) => {
        const S = c.cross ? c.memoryLength : c.length;
        const x = values(c.seed, c.batch * c.length * c.dim, 1.5);
        const memory = c.cross ? values(c.seed + 2, c.batch * S * c.memoryDim, 1.5) : null;
        const dy = values(c.seed + 1, c.batch * c.length * c.outputDim, 1);
        const maskColumn: Column | null = c.mask ? { values: c.maskDType === 'int32' ? Int32Array.from(c.mask) : Float32Array.from(c.mask), shape: [S] } : null;
        const layer = multiHeadAttention({
          heads: c.heads, keyDim: c.keyDim, valueDim: c.valueDim, outputDim: c.outputDim, useBias: c.useBias, dropout: c.dropout,
          ...(c.cross ? { cross: { column: 'memory', dim: c.memoryDim, ...(maskColumn ? { mask: 'memoryMask' } : {}) } } : { causal: c.causal, ...(maskColumn ? { mask: 'mask' } : {}) }),
        });
        const expectedSide = c.cross ? ['memory', ...(maskColumn ? ['memoryMask'] : [])] : maskColumn ? ['mask'] : [];
        assert.deepEqual([...(layer.sideInputs ?? [])], expectedSide, 'sideInputs');
        const built = buildLayer(engine, layer, [c.length, c.dim]);
        try {
          assert.deepEqual([...built.outShape], [c.length, c.outputDim], 'shape rule');
          randomizeParameters(built, c.seed, 0.8);
          const columns: Record<string, Column> = {};
          if (memory) columns['memory'] = { values: Float32Array.from(memory), shape: [S, c.memoryDim], differentiable: true };
          if (maskColumn) columns[c.cross ? 'memoryMask' : 'mask'] = maskColumn;
          const dropSeed = c.seed + 3;
          const r = await run(engine, layer, built, c.batch, [c.length, c.dim], x, dy, { columns, training: c.dropout > 0, seed: dropSeed });

          // The dropout mask is drawn from the step's generator, one uniform per weight in [B, H, T, S] order.
          let dropMask: number[] | null = null;
          if (c.dropout > 0) {
            const rng = new Random(dropSeed);
            dropMask = Array.from({ length: c.batch * c.heads * c.length * S }, () => (rng.uniform() < 1 - c.dropout ? 1 / (1 - c.dropout) : 0));
          }
          const dims: refA.AttentionDims = {
            batch: c.batch, length: c.length, dim: c.dim, memoryLength: S, memoryDim: c.memoryDim, heads: c.heads,
            keyDim: c.keyDim, valueDim: c.valueDim, outputDim: c.outputDim, causal: c.causal,
          };
          const what = `multiHeadAttention ${c.cross ? 'cross' : 'self'}${c.causal ? ' causal' : ''}${c.mask ? ` mask(${c.maskDType})` : ''}${c.dropout ? ` dropout ${c.dropout.toFixed(2)}` : ''} B=${c.batch} T=${c.length} S=${S} D=${c.dim} H=${c.heads} dk=${c.keyDim} dv=${c.valueDim}`;
          checkGradients(what, r, built, x, dy,
            (xv, theta, m) => refA.attention(xv, m, refA.attentionWeights(theta, c.useBias), dims, c.mask, dropMask),
            { atol: GRAD_ATOL, rtol: GRAD_RTOL }, memory ? { name: 'memory', values: memory } : null);

          // Masked keys get exactly zero weight (the saved softmax output, index 5 of what forward saved).
          const weights = r.saved![5]!;
          for (let b = 0; b < c.batch; b++) for (let h = 0; h < c.heads; h++) for (let t = 0; t < c.length; t++) for (let s = 0; s < S; s++) {
            const hidden = (c.causal && s > t) || (c.mask !== null && c.mask[b * S + s] === 0);
            if (hidden) assert.equal(weights[((b * c.heads + h) * c.length + t) * S + s], 0, `${what}: masked key ${s} of query ${t} has nonzero weight`);
          }
        } finally {
          built.free();
        }
      }), fcParams(80));
    });

    it('operators/multi-head-attention.ts: multiHeadAttention rejects bad options and shapes, naming the layer', () => {
      assert.throws(() => multiHeadAttention({ heads: 0, keyDim: 4 }), /heads must be a positive integer/);
      assert.throws(() => multiHeadAttention({ heads: 2, keyDim: 4, causal: true, cross: { column: 'm' } }), /causal/);
      assert.throws(() => multiHeadAttention({ heads: 2, keyDim: 4, dropout: 1 }), /dropout/);
      const layer = multiHeadAttention({ heads: 2, keyDim: 4, name: 'attn' });
      assert.throws(() => buildLayer(engine, layer, [8]), /attn \(multiHeadAttention\).*\[8\]/);
      assert.equal(MASKED_SCORE < -1e29, true);
      // encoderDecoder checks each cross-attention's memory width against the encoder's output once both are built.
      const mismatch = encoderDecoder({ source: 'src', sourceShape: [3, 2], encoder: [dense(3)], decoder: [multiHeadAttention({ heads: 1, keyDim: 2, cross: { column: 'memory' } })], name: 'ed' });
      assert.throws(() => buildLayer(engine, mismatch, [5, 4]), /ed \(encoderDecoder\).*expects memory features 4.*\[3, 3\]/);
      // Token-id decoders: the query width comes from the embedding, not from the [T] input shape.
      const tokens = encoderDecoder({ source: 'src', sourceShape: [3, 2], encoder: [dense(4)], decoder: [embedding(10, 4), multiHeadAttention({ heads: 1, keyDim: 2, cross: { column: 'memory' } })] });
      const built = buildLayer(engine, tokens, [5]);
      assert.deepEqual([...built.outShape], [5, 4]);
      assert.equal(tokens.inputDType, 'int32');
      built.free();
    });

    it('operators/positional-encoding.ts: positionalEncoding sinusoidal and learned — forward and gradients', async () => {
      const arb = fc.record({
        batch: fc.integer({ min: 1, max: 3 }), length: fc.integer({ min: 1, max: 6 }), extra: fc.integer({ min: 0, max: 3 }),
        dim: fc.integer({ min: 1, max: 7 }), learned: fc.boolean(), seed: fc.nat(),
      });
      await fc.assert(fc.asyncProperty(arb, async ({ batch, length, extra, dim, learned, seed }) => {
        const maxLength = length + extra;
        const layer = positionalEncoding({ kind: learned ? 'learned' : 'sinusoidal', maxLength });
        const built = buildLayer(engine, layer, [length, dim]);
        try {
          assert.deepEqual([...built.outShape], [length, dim]);
          assert.deepEqual(built.params.map((p) => [...p.shape]), learned ? [[maxLength, dim]] : []);
          randomizeParameters(built, seed, 1);
          const x = values(seed, batch * length * dim, 2);
          const dy = values(seed + 1, batch * length * dim, 1);
          const r = await run(engine, layer, built, batch, [length, dim], x, dy);
          const table = (theta: readonly ref.Values[]) => (learned ? theta[0]! : refA.sinusoidal(maxLength, dim));
          checkGradients(`positionalEncoding ${learned ? 'learned' : 'sinusoidal'} B=${batch} T=${length}/${maxLength} D=${dim}`, r, built, x, dy,
            (xv, theta) => refA.addPositions(xv, batch, length, dim, table(theta)));
        } finally {
          built.free();
        }
      }), fcParams(60));
      // The float32 table against the float64 formula at a long length (large angles).
      assertClose(sinusoidalTable(512, 64), refA.sinusoidal(512, 64), 1e-6, 0, 'sinusoidalTable(512, 64)');
      assert.throws(() => buildLayer(engine, positionalEncoding({ kind: 'learned', maxLength: 4, name: 'pos' }), [5, 2]), /pos \(positionalEncoding\).*maxLength 4/);
    });

    it('operators/transformer.ts: transformerEncoderBlock / transformerDecoderBlock (pre- and post-norm, causal, masks, cross) vs the reference', async () => {
      const arb = fc.record({
        batch: fc.integer({ min: 1, max: 2 }), length: fc.integer({ min: 1, max: 4 }), heads: fc.integer({ min: 1, max: 2 }),
        keyDim: fc.integer({ min: 1, max: 3 }), ffDim: fc.integer({ min: 1, max: 6 }), norm: fc.constantFrom('pre' as const, 'post' as const),
        kind: fc.constantFrom('encoder' as const, 'decoder' as const, 'decoder+cross' as const), causal: fc.boolean(), masked: fc.boolean(),
        memoryLength: fc.integer({ min: 1, max: 3 }), seed: fc.nat(),
      });
      await fc.assert(fc.asyncProperty(arb, async (c) => {
        const dim = c.heads * c.keyDim + (c.heads === 1 ? 1 : 0);
        const cross = c.kind === 'decoder+cross';
        const mask = c.masked ? values(c.seed + 5, c.batch * c.length, 1).map((v) => (v > -0.5 ? 1 : 0)) : null;
        const memory = cross ? values(c.seed + 2, c.batch * c.memoryLength * dim, 1.5) : null;
        const options = { heads: c.heads, dim, ffDim: c.ffDim, keyDim: c.keyDim, causal: c.causal, norm: c.norm, ...(mask ? { mask: 'mask' } : {}) };
        const layer = c.kind === 'encoder' ? transformerEncoderBlock(options)
          : transformerDecoderBlock({ ...options, ...(cross ? { cross: { column: 'memory' } } : {}) });
        const built = buildLayer(engine, layer, [c.length, dim]);
        try {
          assert.deepEqual([...built.outShape], [c.length, dim]);
          randomizeParameters(built, c.seed, 0.6);
          const x = values(c.seed, c.batch * c.length * dim, 1.5);
          const dy = values(c.seed + 1, c.batch * c.length * dim, 1);
          const columns: Record<string, Column> = {};
          if (mask) columns['mask'] = { values: Int32Array.from(mask), shape: [c.length] };
          if (memory) columns['memory'] = { values: Float32Array.from(memory), shape: [c.memoryLength, dim], differentiable: true };
          const r = await run(engine, layer, built, c.batch, [c.length, dim], x, dy, { columns });
          const dims = (m: ref.Values | null): refA.BlockDims => ({
            batch: c.batch, length: c.length, dim, heads: c.heads, keyDim: c.keyDim, ffDim: c.ffDim, causal: c.causal, norm: c.norm, epsilon: 1e-5,
            memory: m ? { values: m, length: c.memoryLength, dim, mask: null } : null,
          });
          checkGradients(`${layer.kind} ${c.norm}-norm${c.causal ? ' causal' : ''}${mask ? ' masked' : ''}${cross ? ' cross' : ''} B=${c.batch} T=${c.length} D=${dim} H=${c.heads}`,
            r, built, x, dy, (xv, theta, m) => refA.transformerBlock(xv, theta, dims(m), mask),
            { atol: BLOCK_GRAD_ATOL, rtol: BLOCK_GRAD_RTOL }, memory ? { name: 'memory', values: memory } : null);
        } finally {
          built.free();
        }
      }), fcParams(25));
    });

    it('operators/transformer.ts: encoderDecoder backpropagates the memory gradient into the encoder', async () => {
      const arb = fc.record({
        batch: fc.integer({ min: 1, max: 2 }), length: fc.integer({ min: 1, max: 4 }), sourceLength: fc.integer({ min: 1, max: 4 }),
        sourceDim: fc.integer({ min: 1, max: 4 }), seed: fc.nat(),
      });
      await fc.assert(fc.asyncProperty(arb, async (c) => {
        const dim = 4;
        const memoryDim = 3;
        const layer = encoderDecoder({
          source: 'source', sourceShape: [c.sourceLength, c.sourceDim],
          encoder: [dense(memoryDim), tanh()],
          decoder: [multiHeadAttention({ heads: 2, keyDim: 2, cross: { column: 'memory', dim: memoryDim } })],
        });
        assert.deepEqual([...(layer.sideInputs ?? [])], ['source'], 'the produced memory column is not asked of the batch');
        const built = buildLayer(engine, layer, [c.length, dim]);
        try {
          randomizeParameters(built, c.seed, 0.8);
          const x = values(c.seed, c.batch * c.length * dim, 1.5);
          const source = values(c.seed + 2, c.batch * c.sourceLength * c.sourceDim, 1.5);
          const dy = values(c.seed + 1, c.batch * c.length * dim, 1);
          const r = await run(engine, layer, built, c.batch, [c.length, dim], x, dy, { columns: { source: { values: Float32Array.from(source), shape: [c.sourceLength, c.sourceDim] } } });
          const dims: refA.AttentionDims = {
            batch: c.batch, length: c.length, dim, memoryLength: c.sourceLength, memoryDim, heads: 2, keyDim: 2, valueDim: 2, outputDim: dim, causal: false,
          };
          checkGradients(`encoderDecoder B=${c.batch} T=${c.length} S=${c.sourceLength}`, r, built, x, dy, (xv, [ew, eb, ...attn]) => {
            const memory = ref.tanh(ref.dense(source, c.batch * c.sourceLength, c.sourceDim, ew!, memoryDim, eb!));
            return refA.attention(xv, memory, refA.attentionWeights(attn, true), dims, null);
          });
        } finally {
          built.free();
        }
      }), fcParams(30));
    });

    it('operators/transformer.ts: a sequential model with encoderDecoder trains from Arrow batches with source and mask columns', async () => {
      const T = 3;
      const S = 4;
      const D = 4;
      const model = sequential([
        encoderDecoder({
          source: 'source', sourceShape: [S, 2], encoder: [dense(D), transformerEncoderBlock({ heads: 2, dim: D, ffDim: 8, mask: 'sourceMask' }), layerNorm()],
          decoder: [transformerDecoderBlock({ heads: 2, dim: D, ffDim: 8, cross: { column: 'memory', mask: 'sourceMask' } }), dense(1)],
        }),
      ], { inputShape: [T, D], seed: 3, engine });
      try {
        const rows = 8;
        const batch = batchFromArrays({
          features: Float32Array.from(values(1, rows * T * D, 1)), shape: [T, D],
          targets: Float32Array.from(values(2, rows * T, 1)), targetShape: [T, 1],
          columns: {
            source: { values: Float32Array.from(values(3, rows * S * 2, 1)), shape: [S, 2] },
            sourceMask: { values: Int32Array.from({ length: rows * S }, (_, i) => (i % S < 3 ? 1 : 0)), shape: [S] },
          },
        });
        const reports = await lastValueFrom(from(Array.from({ length: 30 }, () => batch)).pipe(model.fit({ loss: meanSquaredError(), optimizer: adam({ learningRate: 0.01 }) }), toArray()));
        assert.ok(reports.at(-1)!.loss < reports[0]!.loss * 0.7, `loss ${reports[0]!.loss} → ${reports.at(-1)!.loss} did not fall`);
      } finally {
        model.dispose();
      }
    });
  });
}
