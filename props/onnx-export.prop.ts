/**
 * ONNX export (src/interop/onnx-export.ts) checked by a second implementation: for every exportable
 * layer kind, a model with random shapes, hyper-parameters and weights (biases and batch-norm
 * statistics included) is exported, run by onnxruntime-node (CPU), and its output compared with
 * rxgrad's own inference on the same batch: max|ort − rxgrad| ≤ 1e-5·max(1, ‖rxgrad‖∞) — relative to
 * the output's magnitude, absolute below 1 (as props/harness.ts' FORWARD_ATOL; per-element relative error is
 * meaningless for outputs that cancel to ~0). Measured worst: ~1e-7 relative (float32 rounding in a different order).
 * Then import(export(m)) must give the same layers (kinds, names, configs) and bitwise the same weights.
 * Few runs per kind (fast-check, seeds drawn), so the file runs in seconds.
 * Replay: `FC_SEED=<seed> node --import tsx --test props/onnx-export.prop.ts`.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { lastValueFrom, of } from 'rxjs';
import * as ort from 'onnxruntime-node';
import { batchFromArrays, floatColumn } from '../src/batch.ts';
import { closeDefaultEngine } from '../src/engine.ts';
import { ShapeError, type Layer } from '../src/layer.ts';
import { sequential, type Model } from '../src/model.ts';
import { Random } from '../src/random.ts';
import { sizeOf, type Shape } from '../src/tensor.ts';
import * as op from '../operators/index.ts';
import { fromOnnx } from '../src/interop/onnx-import.ts';
import { EXPORTABLE_KINDS, toOnnx } from '../src/interop/onnx-export.ts';
import { layerTree, type LayerNode } from '../src/interop/layer-tree.ts';

/** Kinds the cases exercised, checked against every kind the exporter writes. */
const exercised = new Set<string>();
const collect = (nodes: readonly LayerNode[]): void => nodes.forEach((n) => (exercised.add(n.kind), collect(n.children)));

const RUNS = Number(process.env['ONNX_PROP_RUNS'] ?? 4);
const seedParam = process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {};

/** Random weights (moving variances positive), so biases and statistics are exercised. */
function randomise(model: Model, seed: number): void {
  const rng = new Random(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, values] of model.getWeights()) {
    weights.set(name, values.map(() => (name.endsWith('movingVariance') ? 0.5 + rng.uniform() : rng.uniform() * 2 - 1)));
  }
  model.setWeights(weights);
}

type Columns = Record<string, { values: Float32Array | Int32Array; shape: Shape }>;

async function rxgradOutput(model: Model, features: Float32Array | Int32Array, columns: Columns): Promise<Float32Array> {
  const out = await lastValueFrom(of(batchFromArrays({ features, shape: model.inputShape, columns })).pipe(model.predict()));
  return floatColumn(out, 'output').values.slice();
}

/** Exports, runs in onnxruntime, compares; then checks import(export(m)). */
async function roundTrip(layers: Layer[], inputShape: Shape, seed: number, opset: number, vocab = 0, sides: SideColumn[] = []): Promise<void> {
  let model: Model;
  try {
    model = sequential(layers, { inputShape, seed });
  } catch (error) {
    // Drawn sizes whose windows do not fit are not a case (the shape rule's own tests cover the error).
    if (error instanceof ShapeError) return fc.pre(false);
    throw error;
  }
  try {
    collect(layerTree(model));
    randomise(model, seed + 1);
    const rng = new Random(seed + 2);
    const batch = 1 + rng.int(3);
    const n = batch * sizeOf(inputShape);
    const features = vocab > 0 ? Int32Array.from({ length: n }, () => rng.int(vocab)) : Float32Array.from({ length: n }, () => rng.uniform() * 4 - 2);
    const columns: Columns = Object.fromEntries(sides.map((c) => [c.name, { values: c.values(batch, rng), shape: c.shape }]));
    const expected = await rxgradOutput(model, features, columns);
    const bytes = toOnnx(model, { opset });
    const session = await ort.InferenceSession.create(bytes);
    const feeds: Record<string, ort.Tensor> = { input: new ort.Tensor(vocab > 0 ? 'int32' : 'float32', features, [batch, ...inputShape]) };
    for (const [name, c] of Object.entries(columns)) feeds[name] = new ort.Tensor(c.values instanceof Int32Array ? 'int32' : 'float32', c.values, [batch, ...c.shape]);
    assert.deepEqual([...session.inputNames].sort(), Object.keys(feeds).sort(), 'graph inputs: the features and each side column');
    const result = await session.run(feeds);
    const actual = result['output']!.data as Float32Array;
    assert.equal(actual.length, expected.length, 'output size');
    const scale = Math.max(1, ...expected.map(Math.abs));
    let worst = 0;
    for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
    assert.ok(worst <= 1e-5 * scale, `onnxruntime differs from rxgrad by ${worst} (output scale ${scale}, opset ${opset})`);
    await session.release();
    const imported = fromOnnx(bytes, 'export');
    try {
      assert.deepEqual(imported.layers.map((l) => [l.kind, l.name, l.config()]), model.layers.map((l) => [l.kind, l.name, l.config()]));
      assert.deepEqual([...imported.inputShape], [...model.inputShape]);
      const a = model.getWeights();
      const b = imported.getWeights();
      assert.deepEqual([...b.keys()], [...a.keys()]);
      for (const [name, values] of a) assert.ok(Buffer.from(values.buffer).equals(Buffer.from(b.get(name)!.buffer)), `weight ${name} differs after import(export(m))`);
    } finally {
      imported.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** A side column the model reads (padding mask, memory, encoder source), drawn per batch. */
interface SideColumn {
  name: string;
  shape: Shape;
  values: (rows: number, rng: Random) => Float32Array | Int32Array;
}
/** A padding mask: 1 = real, 0 = padding, about one position in three padded (whole rows padded sometimes). */
const maskColumn = (name: string, length: number): SideColumn => ({ name, shape: [length], values: (rows, rng) => Float32Array.from({ length: rows * length }, () => (rng.uniform() < 0.35 ? 0 : 1)) });

const opsets = fc.constantFrom(13, 17, 21);
const dim = (max: number) => fc.integer({ min: 1, max });
const padding = fc.oneof(
  fc.constantFrom<'valid' | 'same'>('valid', 'same'),
  fc.record({ top: fc.integer({ min: 0, max: 2 }), bottom: fc.integer({ min: 0, max: 2 }), left: fc.integer({ min: 0, max: 2 }), right: fc.integer({ min: 0, max: 2 }) }),
);

/** Each case: a model built from drawn sizes; every exportable kind appears in at least one. */
const cases: Record<string, fc.Arbitrary<{ layers: () => Layer[]; inputShape: Shape; vocab?: number; sides?: SideColumn[] }>> = {
  'dense, activations, softmax': fc.record({ f: dim(6), u: dim(6), slope: fc.double({ min: 0.01, max: 0.5, noNaN: true }), bias: fc.boolean() }).map(({ f, u, slope, bias }) => ({
    inputShape: [f],
    layers: () => [op.dense(u, { useBias: bias }), op.leakyRelu({ slope }), op.dense(u + 1), op.tanh(), op.dense(u), op.sigmoid(), op.dense(3), op.gelu(), op.relu(), op.dropout(0.3), op.softmax()],
  })),
  'dense over sequences': fc.record({ t: dim(4), f: dim(5), u: dim(5) }).map(({ t, f, u }) => ({ inputShape: [t, f], layers: () => [op.dense(u), op.softmax()] })),
  'conv2d (padding, stride, dilation), pools, flatten': fc.record({
    h: fc.integer({ min: 5, max: 9 }), w: fc.integer({ min: 5, max: 9 }), c: dim(3), filters: dim(4), kh: dim(3), kw: dim(3), stride: fc.tuple(dim(2), dim(2)),
    dilation: fc.tuple(dim(2), dim(2)), pad: padding, pool: dim(2), poolPad: fc.constantFrom<'valid' | 'same'>('valid', 'same'), relu: fc.boolean(), bias: fc.boolean(),
  }).map((d) => ({
    inputShape: [d.h, d.w, d.c],
    layers: () => [
      op.conv2d(d.filters, [d.kh, d.kw], { strides: d.stride, dilation: d.dilation, padding: d.pad, activation: d.relu ? 'relu' : 'linear', useBias: d.bias }),
      op.maxPool2d(d.pool, { strides: 1, padding: d.poolPad }), op.spatialDropout2d(0.2), op.avgPool2d(d.pool, { strides: 1, padding: d.poolPad }), op.flatten(), op.dense(3),
    ],
  })),
  'batchNorm (images, vectors, sequences), globalAvgPool2d, augmentation (identity at inference)': fc.record({ h: fc.integer({ min: 2, max: 5 }), c: dim(3), center: fc.boolean(), scale: fc.boolean(), epsilon: fc.constantFrom(1e-3, 1e-5) }).map((d) => ({
    inputShape: [d.h, d.h, d.c],
    layers: () => [
      op.randomFlip({ horizontal: true }), op.randomRotate({ degrees: 10 }), op.randomCrop({ padding: 1 }), op.randomTranslate({ height: 0.2, width: 0.2 }),
      op.batchNorm({ center: d.center, scale: d.scale, epsilon: d.epsilon }), op.conv2d(3, 1), op.globalAvgPool2d(), op.batchNorm(), op.dense(4), op.batchNorm()],
  })),
  'embedding, positionalEncoding, layerNorm': fc.record({ vocab: fc.integer({ min: 2, max: 12 }), t: dim(5), d: dim(6), learned: fc.boolean() }).map((d) => ({
    inputShape: [d.t], vocab: d.vocab,
    layers: () => [op.embedding(d.vocab, d.d), op.positionalEncoding({ kind: d.learned ? 'learned' : 'sinusoidal', maxLength: d.t + 2 }), op.layerNorm({ epsilon: 1e-5 }), op.dense(d.vocab)],
  })),
  'lstm, gru, simpleRnn': fc.record({ t: dim(5), f: dim(4), u: dim(5), seq: fc.boolean() }).map((d) => ({
    inputShape: [d.t, d.f],
    layers: () => [op.lstm({ units: d.u, returnSequences: true }), op.gru({ units: d.u + 1, returnSequences: true }), op.simpleRnn({ units: d.u, returnSequences: d.seq }), op.dense(2)],
  })),
  'recurrent initial states (learned, column)': fc.record({ t: dim(4), f: dim(3), u: dim(4) }).map((d) => ({
    inputShape: [d.t, d.f],
    sides: [
      { name: 'h0', shape: [d.u], values: (rows, rng) => Float32Array.from({ length: rows * d.u }, () => rng.uniform() * 2 - 1) },
      { name: 'hc0', shape: [2, d.u], values: (rows, rng) => Float32Array.from({ length: rows * 2 * d.u }, () => rng.uniform() * 2 - 1) },
    ],
    layers: () => [
      op.lstm({ units: d.u, returnSequences: true, initialState: 'learned' }), op.gru({ units: d.u, returnSequences: true, initialState: 'column', initialStateColumn: 'h0' }),
      op.lstm({ units: d.u, returnSequences: true, initialState: 'column', initialStateColumn: 'hc0' }), op.simpleRnn({ units: d.u, returnSequences: true, initialState: 'learned' }),
      op.gru({ units: 2, initialState: 'learned' }),
    ],
  })),
  'multiHeadAttention, Transformer blocks': fc.record({ t: dim(5), heads: dim(3), keyDim: dim(3), causal: fc.boolean(), post: fc.boolean(), relu: fc.boolean() }).map((d) => ({
    inputShape: [d.t, d.heads * d.keyDim],
    layers: () => [
      op.multiHeadAttention({ heads: d.heads, keyDim: d.keyDim, causal: d.causal, outputDim: d.heads * d.keyDim }),
      op.transformerEncoderBlock({ heads: d.heads, dim: d.heads * d.keyDim, ffDim: 5, norm: d.post ? 'post' : 'pre', activation: d.relu ? 'relu' : 'gelu' }),
      op.transformerDecoderBlock({ heads: d.heads, dim: d.heads * d.keyDim, ffDim: 4, dropout: 0.1 }),
    ],
  })),
  'attention with padding masks (self, causal, cross to a memory column)': fc.record({ t: dim(5), s: dim(4), heads: dim(2), keyDim: dim(3), causal: fc.boolean(), memoryDim: dim(4) }).map((d) => ({
    inputShape: [d.t, d.heads * d.keyDim],
    sides: [maskColumn('mask', d.t), maskColumn('memoryMask', d.s), { name: 'memory', shape: [d.s, d.memoryDim], values: (rows, rng) => Float32Array.from({ length: rows * d.s * d.memoryDim }, () => rng.uniform() * 2 - 1) }],
    layers: () => [
      op.multiHeadAttention({ heads: d.heads, keyDim: d.keyDim, causal: d.causal, mask: 'mask' }),
      op.transformerEncoderBlock({ heads: d.heads, dim: d.heads * d.keyDim, ffDim: 4, mask: 'mask', causal: d.causal }),
      op.multiHeadAttention({ heads: d.heads, keyDim: d.keyDim, cross: { column: 'memory', dim: d.memoryDim, mask: 'memoryMask' } }),
    ],
  })),
  'encoderDecoder (token source, cross-attention with source mask)': fc.record({ t: dim(4), s: dim(5), vocab: fc.integer({ min: 2, max: 9 }), heads: dim(2) }).map((d) => ({
    inputShape: [d.t], vocab: d.vocab,
    sides: [maskColumn('sourceMask', d.s), { name: 'source', shape: [d.s], values: (rows, rng) => Int32Array.from({ length: rows * d.s }, () => rng.int(d.vocab)) }],
    layers: () => [op.encoderDecoder({
      source: 'source', sourceShape: [d.s],
      encoder: [op.embedding(d.vocab, 2 * d.heads), op.transformerEncoderBlock({ heads: d.heads, dim: 2 * d.heads, ffDim: 5, mask: 'sourceMask' }), op.layerNorm()],
      decoder: [op.embedding(d.vocab, 2 * d.heads), op.transformerDecoderBlock({ heads: d.heads, dim: 2 * d.heads, ffDim: 3, cross: { column: 'memory', mask: 'sourceMask' } }), op.dense(d.vocab)],
    })],
  })),
  'residual, parallel, chain': fc.record({ f: dim(5), a: dim(4), b: dim(4) }).map((d) => ({
    inputShape: [d.f],
    layers: () => [
      op.residual([op.dense(d.f), op.relu()]), op.parallel([[op.dense(d.a)], [op.dense(d.b), op.tanh()]], 'concat'),
      op.parallel([[op.dense(3)], [op.chain([op.dense(3), op.sigmoid()])], [op.dense(3)]], 'add'),
    ],
  })),
};

describe('ONNX export: onnxruntime-node agrees with rxgrad; import(export(m)) is the same model', () => {
  after(() => closeDefaultEngine());
  for (const [name, arbitrary] of Object.entries(cases)) {
    it(name, async () => {
      await fc.assert(fc.asyncProperty(arbitrary, fc.integer({ min: 1, max: 1e6 }), opsets, async (c, seed, opset) => {
        try {
          await roundTrip(c.layers(), c.inputShape, seed, opset, c.vocab ?? 0, c.sides ?? []);
        } catch (error) {
          // fast-check keeps the cause out of the report; print it with the counterexample.
          if (!fc.PreconditionFailure.isFailure(error)) console.error(`${name}: seed ${seed}, opset ${opset}, input ${JSON.stringify(c.inputShape)}: ${(error as Error).message}`);
          throw error;
        }
      }), { numRuns: RUNS, ...seedParam });
    });
  }
  it('the cases above exercised every kind the exporter writes', () => {
    assert.deepEqual([...EXPORTABLE_KINDS].filter((k) => !exercised.has(k)), []);
  });
});
