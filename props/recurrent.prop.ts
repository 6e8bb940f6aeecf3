/**
 * Gradient and forward properties of the sequence operators: operators/embedding.ts (embedding),
 * operators/simple-rnn.ts (simpleRnn), operators/lstm.ts (lstm), operators/gru.ts (gru).
 *
 * For each recurrent operator, over random small shapes (B 1–3, T 1–5, F 1–4, units 1–4), both
 * returnSequences modes, every initial-state mode (zeros, learned parameter, batch column) and an
 * optional truncation window: build the layer, run forward and backward on the engine, and compare
 *  (a) the output with the float64 reference (props/reference-recurrent.ts), and
 *  (b) dL/dx, every parameter gradient and the initial-state gradient with central differences of
 *      L = Σ dy ⊙ f(…) on that reference; with truncation the reference reads a frozen copy of every
 *      input before the window, so the differences are the stop-gradient-at-the-window gradients.
 * Runs on the wasm backend with one thread and on the JS reference kernels.
 * Replay a failure: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/recurrent.prop.ts`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import { from, lastValueFrom, toArray } from 'rxjs';
import type { Engine } from '../src/engine.ts';
import { Random } from '../src/random.ts';
import { sizeOf, type Shape } from '../src/tensor.ts';
import { adam, batchFromArrays, sequential, softmaxCrossEntropy } from '../src/index.ts';
import { dense } from '../operators/dense.ts';
import { embedding } from '../operators/embedding.ts';
import { gru } from '../operators/gru.ts';
import { lstm } from '../operators/lstm.ts';
import { simpleRnn, type InitialStateMode, type RecurrentLayer, type RecurrentOptions } from '../operators/simple-rnn.ts';
import { orthogonal } from '../src/initializers.ts';
import {
  assertClose, buildLayer, f32, FD_EPS, fcParams, fixed, FORWARD_RTOL, GRAD_ATOL, GRAD_RTOL, poisonedStep, testBackends, testEngine,
} from './harness.ts';
import * as ref from './reference.ts';
import * as rref from './reference-recurrent.ts';

// ---------------------------------------------------------------- tolerances

/**
 * Forward: |engine − reference| ≤ FORWARD_ATOL·max(1, ‖reference‖∞) + FORWARD_RTOL·|reference|, the
 * relative part the harness default. The engine is float32 with polynomial sigmoid/tanh (≤ 2e-6
 * relative, props/kernels.prop.ts) and carries its rounding through up to 5 recurrent steps, each a
 * dot product of ≤ 8 terms of size ≤ ~4; 2e-5 is ~10× the worst accumulated float32 error seen, yet
 * 1e4 below the error of a wrong gate, index or bias (order 1e-1).
 * Gradients and the central-difference step: the harness defaults (props/harness.ts).
 */
const FORWARD_ATOL = 2e-5;
/** Runs per property and backend: 40 keeps the file (two backends, three cells) under ~20 s. */
const NUM_RUNS = 40;

const FC_PARAMS = fcParams(NUM_RUNS);

// ---------------------------------------------------------------- harness

/** A training step (generator seed 1) on the engine's NaN-poisoned test arena. */
const freshStep = (e: Engine, rows: number) => poisonedStep(e, rows, { training: true, seed: 1 });

// ---------------------------------------------------------------- recurrent cases

type Cell = 'simpleRnn' | 'lstm' | 'gru';

interface CellSpec {
  file: string;
  cell: Cell;
  gates: number;
  states: number;
  make(options: RecurrentOptions): RecurrentLayer;
  reference(p: rref.RecurrentInputs): Float64Array;
  biasShape(units: number): Shape;
}

const CELLS: CellSpec[] = [
  { file: 'operators/simple-rnn.ts', cell: 'simpleRnn', gates: 1, states: 1, make: simpleRnn, reference: rref.simpleRnn, biasShape: (u) => [u] },
  { file: 'operators/lstm.ts', cell: 'lstm', gates: 4, states: 2, make: lstm, reference: rref.lstm, biasShape: (u) => [4 * u] },
  { file: 'operators/gru.ts', cell: 'gru', gates: 3, states: 1, make: gru, reference: rref.gru, biasShape: (u) => [2, 3 * u] },
];

interface RecurrentCase {
  B: number;
  T: number;
  F: number;
  U: number;
  returnSequences: boolean;
  initialState: InitialStateMode;
  /** null: whole-sequence backprop. */
  truncate: number | null;
  x: number[];
  kernel: number[];
  recurrentKernel: number[];
  bias: number[];
  /** The learned parameter `[S, U]` or the column `[B, S, U]` (unused for zeros). */
  init: number[];
  dy: number[];
}

function recurrentCase(spec: CellSpec): Arbitrary<RecurrentCase> {
  const dims = fc.record({
    B: fc.integer({ min: 1, max: 3 }), T: fc.integer({ min: 1, max: 5 }), F: fc.integer({ min: 1, max: 4 }), U: fc.integer({ min: 1, max: 4 }),
    returnSequences: fc.boolean(),
    initialState: fc.constantFrom<InitialStateMode>('zeros', 'learned', 'column'),
    truncateDraw: fc.option(fc.integer({ min: 1, max: 6 }), { nil: null }),
  });
  return dims.chain(({ B, T, F, U, returnSequences, initialState, truncateDraw }) => {
    const W = spec.gates * U;
    const initSize = (initialState === 'column' ? B : 1) * spec.states * U;
    return fc.record({
      B: fc.constant(B), T: fc.constant(T), F: fc.constant(F), U: fc.constant(U),
      returnSequences: fc.constant(returnSequences), initialState: fc.constant(initialState),
      truncate: fc.constant(truncateDraw),
      x: fixed(f32(-2, 2), B * T * F),
      kernel: fixed(f32(-1, 1), F * W),
      recurrentKernel: fixed(f32(-1, 1), U * W),
      bias: fixed(f32(-1, 1), sizeOf(spec.biasShape(U))),
      init: fixed(f32(-1, 1), initSize),
      dy: fixed(f32(-1, 1), B * (returnSequences ? T : 1) * U),
    });
  });
}

/** The live inputs of the reference for given values; the initial state broadcast to `[B, S, U]`. */
function referenceInputs(spec: CellSpec, c: RecurrentCase, v: { x: ref.Values; kernel: ref.Values; recurrentKernel: ref.Values; bias: ref.Values; init: ref.Values }): Omit<rref.RecurrentInputs, 'frozen'> {
  let initial: Float64Array | null = null;
  if (c.initialState === 'column') initial = Float64Array.from(v.init);
  else if (c.initialState === 'learned') {
    initial = new Float64Array(c.B * spec.states * c.U);
    for (let b = 0; b < c.B; b++) for (let i = 0; i < spec.states * c.U; i++) initial[b * spec.states * c.U + i] = v.init[i]!;
  }
  return {
    batch: c.B, steps: c.T, features: c.F, units: c.U, x: v.x, kernel: v.kernel, recurrentKernel: v.recurrentKernel, bias: v.bias,
    initial, returnSequences: c.returnSequences,
  };
}

type Field = 'x' | 'kernel' | 'recurrentKernel' | 'bias' | 'init';

async function checkRecurrent(e: Engine, spec: CellSpec, c: RecurrentCase): Promise<void> {
  const { B, T, F, U } = c;
  const what = `${spec.cell} B${B} T${T} F${F} U${U} returnSequences=${c.returnSequences} initialState=${c.initialState} truncate=${c.truncate}`;
  const layer = spec.make({ units: U, returnSequences: c.returnSequences, initialState: c.initialState, ...(c.truncate !== null ? { truncate: c.truncate } : {}) });
  const built = buildLayer(e, layer, [T, F], { qualifiedNames: true });
  try {
    assert.deepEqual([...built.outShape], c.returnSequences ? [T, U] : [U], `${what}: shape rule`);
    const stateShape = spec.states === 1 ? [U] : [spec.states, U];
    const expectedShapes = [[F, spec.gates * U], [U, spec.gates * U], [...spec.biasShape(U)], ...(c.initialState === 'learned' ? [stateShape] : [])];
    assert.deepEqual(built.params.map((p) => [...p.shape]), expectedShapes, `${what}: parameter shapes`);
    assert.deepEqual(layer.sideInputs ?? [], c.initialState === 'column' ? ['initialState'] : [], `${what}: sideInputs`);
    const values: Record<Field, Float32Array> = {
      x: Float32Array.from(c.x), kernel: Float32Array.from(c.kernel), recurrentKernel: Float32Array.from(c.recurrentKernel),
      bias: Float32Array.from(c.bias), init: Float32Array.from(c.init),
    };
    built.params[0]!.value.data().set(values.kernel);
    built.params[1]!.value.data().set(values.recurrentKernel);
    built.params[2]!.value.data().set(values.bias);
    if (c.initialState === 'learned') built.params[3]!.value.data().set(values.init);

    const run = async (needInputGradient: boolean) => {
      const step = freshStep(e, B);
      const x = step.alloc([B, T, F]);
      x.data().set(values.x);
      if (c.initialState === 'column') {
        const column = step.alloc([B, ...stateShape]);
        column.data().set(values.init);
        step.columns.set('initialState', column);
      }
      const y = await layer.forward(x, step);
      const yValues = y.toFloat32Array();
      const dy = step.alloc(y.shape);
      dy.data().set(c.dy);
      for (const p of built.params) p.grad.data().fill(Number.NaN);
      const dx = await layer.backward(dy, step, needInputGradient);
      return {
        yShape: [...y.shape], y: yValues, dx: dx?.toFloat32Array() ?? null, xAfter: x.toFloat32Array(),
        grads: built.params.map((p) => p.grad.toFloat32Array()),
        initGrad: layer.initialStateGradient(step)?.toFloat32Array() ?? null,
      };
    };
    const without = await run(false);
    assert.equal(without.dx, null, `${what}: backward(…, needInputGradient = false) must return null`);
    const r = await run(true);
    assert.deepEqual(r.yShape, c.returnSequences ? [B, T, U] : [B, U], `${what}: output shape`);
    assert.deepEqual(r.xAfter, values.x, `${what}: the input was modified`);
    without.grads.forEach((g, k) => assert.deepEqual(g, r.grads[k], `${what}: ${built.params[k]!.name} gradient depends on needInputGradient`));

    // (a) forward vs the float64 reference (on the float32 values the engine saw).
    const base = referenceInputs(spec, c, values);
    assertClose(r.y, spec.reference(base), FORWARD_ATOL, FORWARD_RTOL, `${spec.file} ${what} forward`);

    // (b) gradients vs central differences, the prefix before the window frozen at the base values.
    const windowStart = c.truncate === null ? 0 : Math.max(0, T - c.truncate);
    const loss = (field: Field, v: ref.Values): number => {
      const live = referenceInputs(spec, c, { ...values, [field]: v });
      return ref.weightedSum(c.dy, spec.reference({ ...live, frozen: { windowStart, inputs: base } }));
    };
    const numeric = (field: Field) => ref.centralDifferences((v) => loss(field, v), values[field], FD_EPS);
    assertClose(r.dx!, numeric('x'), GRAD_ATOL, GRAD_RTOL, `${spec.file} ${what} dL/dx`);
    (['kernel', 'recurrentKernel', 'bias'] as const).forEach((field, k) => {
      assertClose(r.grads[k]!, numeric(field), GRAD_ATOL, GRAD_RTOL, `${spec.file} ${what} dL/d(${field})`);
    });
    if (c.initialState === 'learned') assertClose(r.grads[3]!, numeric('init'), GRAD_ATOL, GRAD_RTOL, `${spec.file} ${what} dL/d(learned initial state)`);
    if (c.initialState === 'column') {
      assert.ok(r.initGrad, `${what}: initialStateGradient(step) is null after backward`);
      assertClose(r.initGrad, numeric('init'), GRAD_ATOL, GRAD_RTOL, `${spec.file} ${what} dL/d(initial state column)`);
    } else assert.equal(r.initGrad, null, `${what}: initialStateGradient must be null unless initialState is 'column'`);
  } finally {
    built.free();
  }
}

// ---------------------------------------------------------------- embedding cases

interface EmbeddingCase {
  B: number;
  T: number;
  V: number;
  dim: number;
  padding: number | null;
  ids: number[];
  table: number[];
  dy: number[];
}

const EMBEDDING_CASE: Arbitrary<EmbeddingCase> = fc
  .record({ B: fc.integer({ min: 1, max: 3 }), T: fc.integer({ min: 1, max: 5 }), V: fc.integer({ min: 1, max: 6 }), dim: fc.integer({ min: 1, max: 4 }), pad: fc.boolean() })
  .chain(({ B, T, V, dim, pad }) => fc.record({
    B: fc.constant(B), T: fc.constant(T), V: fc.constant(V), dim: fc.constant(dim),
    padding: pad ? fc.integer({ min: 0, max: V - 1 }) : fc.constant(null),
    ids: fixed(fc.integer({ min: 0, max: V - 1 }), B * T),
    table: fixed(f32(-1, 1), V * dim),
    dy: fixed(f32(-1, 1), B * T * dim),
  }));

async function checkEmbedding(e: Engine, c: EmbeddingCase): Promise<void> {
  const { B, T, V, dim, padding } = c;
  const what = `embedding B${B} T${T} V${V} dim${dim} paddingIndex=${padding}`;
  const layer = embedding(V, dim, padding === null ? {} : { paddingIndex: padding });
  assert.equal(layer.inputDType, 'int32');
  const built = buildLayer(e, layer, [T]);
  try {
    assert.deepEqual([...built.outShape], [T, dim], `${what}: shape rule`);
    const table = built.params[0]!;
    assert.deepEqual([...table.shape], [V, dim]);
    const init = table.value.toFloat32Array();
    assert.ok(init.every((v) => Math.abs(v) <= 0.05), `${what}: default init is U(±0.05)`);
    if (padding !== null) assert.ok(init.subarray(padding * dim, (padding + 1) * dim).every((v) => v === 0), `${what}: the padding row starts at zero`);
    const values = Float32Array.from(c.table);
    table.value.data().set(values);
    const step = freshStep(e, B);
    const x = step.alloc([B, T], 'int32');
    x.int32().set(c.ids);
    const y = await layer.forward(x, step);
    assert.deepEqual([...y.shape], [B, T, dim]);
    assertClose(y.toFloat32Array(), rref.embedding(c.ids, values, dim), 0, 0, `operators/embedding.ts ${what} forward (exact copy)`);
    const dy = step.alloc(y.shape);
    dy.data().set(c.dy);
    table.grad.data().fill(Number.NaN);
    assert.equal(await layer.backward(dy, step, true), null, `${what}: token ids have no gradient`);
    const grad = table.grad.toFloat32Array();
    // Central differences of L = Σ dy ⊙ E[ids]; the padding row's gradient is defined as 0 instead.
    const numeric = ref.centralDifferences((v) => ref.weightedSum(c.dy, rref.embedding(c.ids, v, dim)), values, FD_EPS);
    if (padding !== null) numeric.fill(0, padding * dim, (padding + 1) * dim);
    assertClose(grad, numeric, GRAD_ATOL, GRAD_RTOL, `operators/embedding.ts ${what} dL/d(embeddings)`);
  } finally {
    built.free();
  }
}

// ---------------------------------------------------------------- the properties

for (const { label, engine: e } of testBackends()) {
  describe(`sequence operators on the ${label}`, () => {
    for (const spec of CELLS) {
      it(`${spec.file}: ${spec.cell} forward = float64 reference, backward (inputs, weights, initial state, truncation) = central differences`, async () => {
        await fc.assert(fc.asyncProperty(recurrentCase(spec), (c) => checkRecurrent(e, spec, c)), FC_PARAMS);
      });
    }

    it('operators/embedding.ts: embedding forward = lookup, backward = central differences, padding row gradient 0', async () => {
      await fc.assert(fc.asyncProperty(EMBEDDING_CASE, (c) => checkEmbedding(e, c)), FC_PARAMS);
    });
  });
}

describe('sequence operators: errors, initialisers, model integration (wasm, 1 thread)', () => {
  const e = testEngine('wasm');

  it('operators/embedding.ts: an id out of range is a RangeError naming the layer, row, position, id and vocabulary size', async () => {
    await fc.assert(fc.asyncProperty(
      fc.record({ B: fc.integer({ min: 1, max: 3 }), T: fc.integer({ min: 1, max: 5 }), V: fc.integer({ min: 1, max: 6 }) }).chain(({ B, T, V }) => fc.record({
        B: fc.constant(B), T: fc.constant(T), V: fc.constant(V), at: fc.integer({ min: 0, max: B * T - 1 }),
        bad: fc.oneof(fc.integer({ min: V, max: 1 << 30 }), fc.integer({ min: -(1 << 30), max: -1 })),
      })),
      async ({ B, T, V, at, bad }) => {
        const layer = embedding(V, 2, { name: 'tokens' });
        const built = buildLayer(e, layer, [T]);
        try {
          const step = freshStep(e, B);
          const x = step.alloc([B, T], 'int32');
          x.int32().fill(0);
          x.int32()[at] = bad;
          await assert.rejects(async () => layer.forward(x, step), (error: unknown) => {
            assert.ok(error instanceof RangeError, String(error));
            for (const part of ['tokens (embedding)', `token id ${bad}`, `row ${Math.floor(at / T)}`, `position ${at % T}`, `vocabulary size ${V}`]) {
              assert.ok(error.message.includes(part), `"${error.message}" does not name "${part}"`);
            }
            return true;
          });
        } finally {
          built.free();
        }
      }), FC_PARAMS);
  });

  it('operators/embedding.ts: float features and bad options are rejected clearly', async () => {
    assert.throws(() => embedding(0, 4), /vocabSize must be a positive integer/);
    assert.throws(() => embedding(5, 4, { paddingIndex: 5 }), /paddingIndex must be an integer id in \[0, 5\)/);
    const layer = embedding(5, 2, { name: 'tok' });
    const built = buildLayer(e, layer, [3]);
    const step = freshStep(e, 1);
    await assert.rejects(async () => layer.forward(step.alloc([1, 3]), step), /tok \(embedding\): input is float32/);
    built.free();
  });

  it('operators/simple-rnn.ts, lstm.ts, gru.ts: bad options and input shapes name the layer', () => {
    for (const make of [simpleRnn, lstm, gru]) {
      assert.throws(() => make({ units: 0 }), /units must be a positive integer/);
      assert.throws(() => make({ units: 2, truncate: 0 }), /truncate must be a positive integer/);
      assert.throws(() => make({ units: 2, initialState: 'random' as InitialStateMode }), /initialState must be/);
      const layer = make({ units: 2, name: 'rec' });
      assert.throws(() => buildLayer(e, layer, [4]), /rec \(\w+\): input shape \[4\] must be \[steps, features\]/);
    }
  });

  it('operators/lstm.ts: unit forget bias; operators/simple-rnn.ts: orthogonal recurrent kernels have orthonormal rows', () => {
    const built = buildLayer(e, lstm({ units: 3 }), [2, 2]);
    assert.deepEqual([...built.params[2]!.value.toFloat32Array()], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
    built.free();
    for (const [rows, cols] of [[3, 12], [4, 4], [5, 15], [6, 2]] as const) {
      const m = new Float32Array(rows * cols);
      orthogonal().fill(m, { fanIn: rows, fanOut: cols }, new Random(7));
      // rows ≤ cols: M·Mᵀ = I; rows > cols: Mᵀ·M = I.
      const [n, len, at] = rows <= cols ? [rows, cols, (i: number, k: number) => m[i * cols + k]!] : [cols, rows, (i: number, k: number) => m[k * cols + i]!];
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let dot = 0;
          for (let k = 0; k < len; k++) dot += at(i, k) * at(j, k);
          assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-5, `orthogonal [${rows}, ${cols}]: row product (${i}, ${j}) = ${dot}`);
        }
      }
    }
  });

  it('models: embedding → lstm (column initial state) → gru → dense trains through fit with int32 features and a side column', async () => {
    const B = 8;
    const T = 6;
    const V = 7;
    const rng = new Random(3);
    const ids = Int32Array.from({ length: 4 * B * T }, () => rng.int(V));
    // Label: is token 1 present in the sequence (needs memory across steps).
    const labels = Int32Array.from({ length: 4 * B }, (_, r) => (ids.subarray(r * T, (r + 1) * T).includes(1) ? 1 : 0));
    const init = Float32Array.from({ length: 4 * B * 2 * 5 }, () => 0.1 * (rng.uniform() - 0.5));
    const model = sequential([
      embedding(V, 4, { paddingIndex: 0 }), lstm({ units: 5, returnSequences: true, initialState: 'column' }), gru({ units: 3, truncate: 4 }), dense(2),
    ], { inputShape: [T], seed: 1, engine: e });
    assert.equal(model.inputDType, 'int32');
    const batches = Array.from({ length: 4 }, (_, k) => batchFromArrays({
      features: ids.subarray(k * B * T, (k + 1) * B * T), shape: [T], labels: labels.subarray(k * B, (k + 1) * B),
      columns: { initialState: { values: init.subarray(k * B * 10, (k + 1) * B * 10), shape: [2, 5] } },
    }));
    const epochs = 30;
    const reports = await lastValueFrom(from(Array.from({ length: epochs }, () => batches).flat()).pipe(
      model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.02 }) }), toArray(),
    ));
    assert.equal(reports.length, 4 * epochs);
    const first = reports.slice(0, 4).reduce((s, r) => s + r.loss, 0) / 4;
    const last = reports.slice(-4).reduce((s, r) => s + r.loss, 0) / 4;
    assert.ok(Number.isFinite(last) && last < 0.7 * first, `loss did not fall: first epoch ${first}, last ${last}`);
    const padding = model.getWeights().get('embedding_1/embeddings')!.subarray(0, 4);
    assert.deepEqual([...padding], [0, 0, 0, 0], 'the padding row moved');
    model.dispose();
  });
});
