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
 * Tolerances (stated, same reasoning as props/gradients.prop.ts):
 *   forward   |engine − ref| ≤ 1e-5·max(1, ‖ref‖∞) + 1e-4·|ref|
 *   gradients |engine − fd|  ≤ 1e-4·max(1, ‖fd‖∞)  + 1e-3·|fd|    (single operators)
 *             |engine − fd|  ≤ 3e-4·max(1, ‖fd‖∞)  + 3e-3·|fd|    (whole Transformer blocks: ~12 float32
 *             operators deep, layerNorm's 1/σ amplifies each rounding; still 100× below any wrong term)
 *   central differences in float64 with step 1e-6 (error ≈ 1e-10).
 * Runs on the JS reference backend and on the wasm backend with one thread.
 * Replay a failure: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/attention.prop.ts`.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import { lastValueFrom, from, toArray } from 'rxjs';
import { batchFromArrays } from '../src/batch.ts';
import { createEngine, type Engine } from '../src/engine.ts';
import type { Arena } from '../src/heap.ts';
import { StepContext, type BuildContext, type Layer, type Parameter } from '../src/layer.ts';
import { sequential } from '../src/model.ts';
import { adam } from '../src/optimizers.ts';
import { meanSquaredError } from '../src/losses.ts';
import { Random } from '../src/random.ts';
import { sizeOf, Tensor, type Shape } from '../src/tensor.ts';
import { dense } from '../operators/dense.ts';
import { embedding } from '../operators/embedding.ts';
import { tanh } from '../operators/tanh.ts';
import { layerNorm } from '../operators/layer-norm.ts';
import { columnGradient, MASKED_SCORE, multiHeadAttention, openColumnGradient } from '../operators/multi-head-attention.ts';
import { positionalEncoding, sinusoidalTable } from '../operators/positional-encoding.ts';
import { encoderDecoder, transformerDecoderBlock, transformerEncoderBlock } from '../operators/transformer.ts';
import * as ref from './reference.ts';
import * as refA from './reference-attention.ts';

const FORWARD_ATOL = 1e-5;
const FORWARD_RTOL = 1e-4;
const GRAD_ATOL = 1e-4;
const GRAD_RTOL = 1e-3;
const BLOCK_GRAD_ATOL = 3e-4;
const BLOCK_GRAD_RTOL = 3e-3;
const FD_EPS = 1e-6;
/** Rows of a layerNorm input must have at least this variance: below it 1/σ makes float32 x̂ too coarse to compare. */
const MIN_ROW_VARIANCE = 1e-2;

const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns,
  includeErrorInReport: true,
  ...(process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {}),
  ...(process.env['FC_PATH'] ? { path: process.env['FC_PATH'] } : {}),
});

// ---------------------------------------------------------------- harness

const engines: Engine[] = [];
after(async () => {
  for (const e of engines) await e.close();
});

function backend(label: string, make: () => Engine): { label: string; engine: Engine } {
  const engine = make();
  engines.push(engine);
  return { label, engine };
}
const BACKENDS = [
  backend('wasm backend, 1 thread', () => createEngine({ threads: 1, initialBytes: 16 << 20 })),
  backend('js reference backend', () => createEngine({ backend: 'js', initialBytes: 16 << 20 })),
];

/** Random values in [−scale, scale) from a seed (fast-check draws the seed and the shapes). */
function values(seed: number, n: number, scale: number): number[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => Math.fround((2 * rng.uniform() - 1) * scale));
}

interface Built {
  outShape: Shape;
  params: Parameter[];
  free(): void;
}

function build(engine: Engine, layer: Layer, inputShape: Shape): Built {
  const list: Parameter[] = [];
  const rng = new Random(0);
  const ctx: BuildContext = {
    engine,
    rng,
    addParameter(name, shape, init, fans, regularizer) {
      const value = new Tensor(engine.heap, engine.heap.alloc(sizeOf(shape) * 4), shape);
      const grad = new Tensor(engine.heap, engine.heap.alloc(sizeOf(shape) * 4), shape);
      init.fill(value.data(), fans, rng);
      const p: Parameter = { name, shape, value, grad, regularizer: regularizer ?? null, trainable: true };
      list.push(p);
      return p;
    },
  };
  const outShape = layer.build(inputShape, ctx);
  return {
    outShape, params: list,
    free() {
      for (const p of list) {
        engine.heap.free(p.value.ptr);
        engine.heap.free(p.grad.ptr);
      }
    },
  };
}

interface Column {
  values: Float32Array | Int32Array;
  shape: Shape;
  /** Open a gradient accumulator for it (a memory produced inside the model). */
  differentiable?: boolean;
}

interface Run {
  y: Float32Array;
  dx: Float32Array;
  grads: Float32Array[];
  gradsWithoutInput: Float32Array[];
  columnGrads: Map<string, Float32Array>;
  /** Tensors the layer saved in forward. */
  saved: Float32Array[];
}

const arenas = new Map<Engine, Arena>();

/** Forward, then backward without and with the input gradient, on one step whose arena is NaN-poisoned. */
async function run(
  engine: Engine, layer: Layer, built: Built, batch: number, inputShape: Shape, x: readonly number[], dy: readonly number[],
  options: { columns?: Record<string, Column>; training?: boolean; seed?: number } = {},
): Promise<Run> {
  let arena = arenas.get(engine);
  if (!arena) arenas.set(engine, (arena = engine.heap.arena()));
  arena.reset();
  const poison = arena.alloc(256 << 10);
  engine.heap.f32.fill(Number.NaN, poison >> 2, (poison + (256 << 10)) >> 2);
  arena.reset();
  const step = new StepContext(engine, arena, batch, options.training ?? false, new Random(options.seed ?? 1), 0);
  const xt = step.alloc([batch, ...inputShape]);
  xt.data().set(x);
  const columns = Object.entries(options.columns ?? {});
  for (const [name, c] of columns) {
    const t = step.alloc([batch, ...c.shape], c.values instanceof Int32Array ? 'int32' : 'float32');
    if (c.values instanceof Int32Array) t.int32().set(c.values);
    else t.data().set(c.values);
    step.columns.set(name, t);
  }
  const openGradients = () => {
    for (const [name, c] of columns) if (c.differentiable) openColumnGradient(step, name, [batch, ...c.shape]);
  };
  openGradients();
  const y = await layer.forward(xt, step);
  const yCopy = y.toFloat32Array();
  assert.equal(y.size, dy.length, `${layer.kind}: output has ${y.size} values, expected ${dy.length}`);
  const saved = layer.kind === 'multiHeadAttention' ? step.restore(layer).map((t) => t.toFloat32Array()) : [];
  const dyt = step.alloc(y.shape);
  dyt.data().set(dy);
  for (const p of built.params) p.grad.data().fill(Number.NaN);
  assert.equal(await layer.backward(dyt, step, false), null, `${layer.kind}: backward(…, false) must return null`);
  const gradsWithoutInput = built.params.map((p) => p.grad.toFloat32Array());
  const columnGradsWithout = new Map(columns.filter(([, c]) => c.differentiable).map(([n]) => [n, columnGradient(step, n)!.toFloat32Array()]));
  openGradients();
  for (const p of built.params) p.grad.data().fill(Number.NaN);
  const dxt = await layer.backward(dyt, step, true);
  assert.ok(dxt, `${layer.kind}: backward(…, true) returned null`);
  assert.deepEqual([...dxt.shape], [...xt.shape], `${layer.kind}: dx shape`);
  assert.deepEqual(xt.toFloat32Array(), Float32Array.from(x), `${layer.kind}: the input was modified`);
  const columnGrads = new Map(columns.filter(([, c]) => c.differentiable).map(([n]) => [n, columnGradient(step, n)!.toFloat32Array()]));
  for (const [n, g] of columnGrads) assert.deepEqual(g, columnGradsWithout.get(n), `${layer.kind}: gradient of column '${n}' depends on needInputGradient`);
  return { y: yCopy, dx: dxt.toFloat32Array(), grads: built.params.map((p) => p.grad.toFloat32Array()), gradsWithoutInput, columnGrads, saved };
}

function maxAbs(v: ref.Values): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]!));
  return m;
}

function assertClose(actual: ref.Values, expected: ref.Values, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const scale = Math.max(1, maxAbs(expected));
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = atol * scale + rtol * Math.abs(e);
    if (!(Math.abs(a - e) <= tol)) assert.fail(`${what}[${i}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > ${tol})`);
  }
}

/**
 * The whole check: forward vs reference(x, θ, memory), and every gradient vs central differences of
 * Σ dy ⊙ reference. `memory` names a differentiable column whose gradient is checked too.
 */
function checkGradients(
  what: string, r: Run, built: Built, x: readonly number[], dy: readonly number[],
  reference: (x: ref.Values, theta: readonly ref.Values[], memory: ref.Values | null) => ref.Values,
  tolerance: { atol: number; rtol: number } = { atol: GRAD_ATOL, rtol: GRAD_RTOL },
  memory: { name: string; values: readonly number[] } | null = null,
): void {
  const theta = built.params.map((p) => p.value.toFloat32Array());
  const mem = memory ? memory.values : null;
  assertClose(r.y, reference(x, theta, mem), FORWARD_ATOL, FORWARD_RTOL, `${what} forward`);
  const loss = (xv: ref.Values, th: readonly ref.Values[], m: ref.Values | null) => ref.weightedSum(dy, reference(xv, th, m));
  assertClose(r.dx, ref.centralDifferences((v) => loss(v, theta, mem), x, FD_EPS), tolerance.atol, tolerance.rtol, `${what} dL/dx`);
  built.params.forEach((p, k) => {
    const numeric = ref.centralDifferences((v) => loss(x, theta.map((t, j) => (j === k ? v : t)), mem), theta[k]!, FD_EPS);
    assertClose(r.grads[k]!, numeric, tolerance.atol, tolerance.rtol, `${what} dL/d(${p.name})`);
    assert.deepEqual(r.gradsWithoutInput[k], r.grads[k], `${what}: ${p.name} gradient depends on needInputGradient`);
  });
  if (memory) {
    const numeric = ref.centralDifferences((v) => loss(x, theta, v), memory.values, FD_EPS);
    assertClose(r.columnGrads.get(memory.name)!, numeric, tolerance.atol, tolerance.rtol, `${what} dL/d(memory '${memory.name}')`);
  }
}

/** Writes random values into every parameter (initialisers give gain 1 / bias 0, which would hide bugs). */
function randomizeParameters(built: Built, seed: number, scale: number): void {
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
        const built = build(engine, layer, inputShape);
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
      }), params(60));
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
        const built = build(engine, layer, [c.length, c.dim]);
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
          const weights = r.saved[5]!;
          for (let b = 0; b < c.batch; b++) for (let h = 0; h < c.heads; h++) for (let t = 0; t < c.length; t++) for (let s = 0; s < S; s++) {
            const hidden = (c.causal && s > t) || (c.mask !== null && c.mask[b * S + s] === 0);
            if (hidden) assert.equal(weights[((b * c.heads + h) * c.length + t) * S + s], 0, `${what}: masked key ${s} of query ${t} has nonzero weight`);
          }
        } finally {
          built.free();
        }
      }), params(80));
    });

    it('operators/multi-head-attention.ts: multiHeadAttention rejects bad options and shapes, naming the layer', () => {
      assert.throws(() => multiHeadAttention({ heads: 0, keyDim: 4 }), /heads must be a positive integer/);
      assert.throws(() => multiHeadAttention({ heads: 2, keyDim: 4, causal: true, cross: { column: 'm' } }), /causal/);
      assert.throws(() => multiHeadAttention({ heads: 2, keyDim: 4, dropout: 1 }), /dropout/);
      const layer = multiHeadAttention({ heads: 2, keyDim: 4, name: 'attn' });
      assert.throws(() => build(engine, layer, [8]), /attn \(multiHeadAttention\).*\[8\]/);
      assert.equal(MASKED_SCORE < -1e29, true);
      // encoderDecoder checks each cross-attention's memory width against the encoder's output once both are built.
      const mismatch = encoderDecoder({ source: 'src', sourceShape: [3, 2], encoder: [dense(3)], decoder: [multiHeadAttention({ heads: 1, keyDim: 2, cross: { column: 'memory' } })], name: 'ed' });
      assert.throws(() => build(engine, mismatch, [5, 4]), /ed \(encoderDecoder\).*expects memory features 4.*\[3, 3\]/);
      // Token-id decoders: the query width comes from the embedding, not from the [T] input shape.
      const tokens = encoderDecoder({ source: 'src', sourceShape: [3, 2], encoder: [dense(4)], decoder: [embedding(10, 4), multiHeadAttention({ heads: 1, keyDim: 2, cross: { column: 'memory' } })] });
      const built = build(engine, tokens, [5]);
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
        const built = build(engine, layer, [length, dim]);
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
      }), params(60));
      // The float32 table against the float64 formula at a long length (large angles).
      assertClose(sinusoidalTable(512, 64), refA.sinusoidal(512, 64), 1e-6, 0, 'sinusoidalTable(512, 64)');
      assert.throws(() => build(engine, positionalEncoding({ kind: 'learned', maxLength: 4, name: 'pos' }), [5, 2]), /pos \(positionalEncoding\).*maxLength 4/);
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
        const built = build(engine, layer, [c.length, dim]);
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
      }), params(25));
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
        const built = build(engine, layer, [c.length, dim]);
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
      }), params(30));
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
