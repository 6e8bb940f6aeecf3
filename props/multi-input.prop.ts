/**
 * Gradient properties of the multi-input and recommender operators: operators/input.ts (input),
 * operators/dot.ts (dot), operators/bias.ts (bias) and operators/id-embedding.ts (idEmbedding):
 * forward against a float64 reference and dL/dx and every parameter gradient against central
 * differences of L = Σ dy ⊙ f(x, θ) (plus idEmbedding's per-lookup L2 penalty, which its backward adds).
 * Random shapes (batch 1–4, widths 1–7, tables 1–9 rows) and values from a drawn seed.
 *
 * Tolerances: the harness defaults of props/harness.ts (forward 1e-5·max(1, ‖ref‖∞) + 1e-4·|ref|,
 * gradients 1e-4·max(1, ‖fd‖∞) + 1e-3·|fd|; float32 engine vs float64 central differences, step 1e-6).
 * Runs on the wasm backend with one thread and on the JS reference backend.
 * Replay: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/multi-input.prop.ts`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { bias } from '../operators/bias.ts';
import { dense } from '../operators/dense.ts';
import { dot } from '../operators/dot.ts';
import { idEmbedding } from '../operators/id-embedding.ts';
import { input } from '../operators/input.ts';
import { tanh } from '../operators/tanh.ts';
import { Random } from '../src/random.ts';
import { Tensor } from '../src/tensor.ts';
import { assertClose, buildLayer, checkGradients, FD_EPS, fcParams, GRAD_ATOL, GRAD_RTOL, parameterValues, poisonedStep, runLayer, testBackends, values } from './harness.ts';
import * as ref from './reference.ts';

const FC_PARAMS = fcParams(40);

const DIMS = fc.record({
  batch: fc.integer({ min: 1, max: 4 }),
  features: fc.integer({ min: 1, max: 7 }),
  units: fc.integer({ min: 1, max: 7 }),
  rows: fc.integer({ min: 1, max: 9 }),
  seed: fc.nat(),
});

/** Σ_k a[r, k]·b[r, k] per row, float64. */
function rowDot(a: ref.Values, b: ref.Values, rows: number, width: number): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) for (let k = 0; k < width; k++) y[r] += a[r * width + k]! * b[r * width + k]!;
  return y;
}

for (const { label, engine } of testBackends()) {
  describe(`multi-input operators on the ${label}`, () => {
    it('operators/dot.ts: dot([dense, tanh], [dense]) equals the row-wise dot product; gradients vs central differences', async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, features: f, units: u, seed }) => {
        const layer = dot([dense(u), tanh()], [dense(u)]);
        const built = buildLayer(engine, layer, [f]);
        try {
          assert.deepEqual([...built.outShape], [1]);
          built.params.forEach((p, i) => p.value.data().set(values(seed + 7 * (i + 1), p.value.size, 1)));
          const theta = parameterValues(built.params);
          const x = values(seed, batch * f, 2);
          const dy = values(seed + 1, batch, 1);
          const run = await runLayer(engine, layer, built.params, batch, [f], x, dy, { training: false, seed: 1 });
          checkGradients({
            what: `dot B${batch} F${f} U${u}`, run, params: built.params, theta, x, dy,
            reference: (xv, [w1, b1, w2, b2]) => rowDot(ref.tanh(ref.dense(xv, batch, f, w1!, u, b1!)), ref.dense(xv, batch, f, w2!, u, b2!), batch, u),
          });
        } finally {
          built.free();
        }
      }), FC_PARAMS);
    });

    it('operators/bias.ts: y = x + b along the last axis; gradients vs central differences', async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, features: f, units: mid, seed }) => {
        const layer = bias({ initial: 0.5 });
        const built = buildLayer(engine, layer, [mid, f]);
        try {
          assert.deepEqual(built.params[0]!.value.toFloat32Array(), new Float32Array(f).fill(0.5), 'initial value');
          built.params[0]!.value.data().set(values(seed + 3, f, 1));
          const theta = parameterValues(built.params);
          const x = values(seed, batch * mid * f, 2);
          const dy = values(seed + 1, batch * mid * f, 1);
          const run = await runLayer(engine, layer, built.params, batch, [mid, f], x, dy, { training: false, seed: 1 });
          checkGradients({
            what: `bias B${batch} [${mid}, ${f}]`, run, params: built.params, theta, x, dy,
            reference: (xv, [b]) => Float64Array.from(xv, (v, i) => v + b![i % f]!),
          });
        } finally {
          built.free();
        }
      }), FC_PARAMS);
    });

    it('operators/input.ts: the output is the named column, the input gradient is zero; inside dot with idEmbedding tables the gradients match', async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, units: k, rows: n, seed }) => {
        const rng = new Random(seed);
        const users = Int32Array.from({ length: batch }, () => Math.floor(rng.uniform() * n));
        const items = Int32Array.from({ length: batch }, () => Math.floor(rng.uniform() * n));
        const layer = dot([input('user'), idEmbedding(n, k)], [input('item'), idEmbedding(n, k)]);
        const built = buildLayer(engine, layer, [2]);
        try {
          assert.deepEqual([...built.outShape], [1]);
          // Parameters: user table, user seen counts, item table, item seen counts.
          built.params.forEach((p, i) => p.value.data().set(i % 2 === 0 ? values(seed + 11 * (i + 1), p.value.size, 1) : new Float32Array(p.value.size).fill(1)));
          const theta = parameterValues(built.params);
          const x = values(seed, batch * 2, 2);
          const dy = values(seed + 1, batch, 1);
          const put = (step: import('../src/layer.ts').StepContext) => {
            for (const [name, ids] of [['user', users], ['item', items]] as const) {
              const t = step.alloc([batch], 'int32');
              t.int32().set(ids);
              step.columns.set(name, t);
            }
          };
          const run = await runLayer(engine, layer, built.params, batch, [2], x, dy, { training: false, seed: 1, beforeForward: put });
          const gather = (table: ref.Values, ids: Int32Array) => Float64Array.from({ length: batch * k }, (_, j) => table[ids[Math.floor(j / k)]! * k + (j % k)]!);
          checkGradients({
            what: `dot(input, idEmbedding) B${batch} K${k} N${n}`, run, params: built.params, theta, x, dy,
            reference: (_x, [pu, , qi]) => rowDot(gather(pu!, users), gather(qi!, items), batch, k),
          });
        } finally {
          built.free();
        }
      }), FC_PARAMS);
    });

    it('operators/id-embedding.ts: rows of the ids; dE = scatter-add of dy + 2λ/B·E per lookup; the loss gains λ/B·Σ‖E[id]‖²; unseen rows start at a seeded draw on first training', async () => {
      await fc.assert(fc.asyncProperty(DIMS, fc.integer({ min: 0, max: 3 }), async ({ batch, units: dim, rows: n, seed }, l2i) => {
        const l2 = [0, 0.01, 0.1, 1][l2i]!;
        const rng = new Random(seed);
        const ids = Int32Array.from({ length: batch * 2 }, () => Math.floor(rng.uniform() * n));
        const layer = idEmbedding(n, dim, { l2 });
        const built = buildLayer(engine, layer, [2]);
        try {
          const [table, seen] = built.params as [import('../src/layer.ts').Parameter, import('../src/layer.ts').Parameter];
          table.value.data().set(values(seed + 5, n * dim, 1));
          seen.value.data().fill(1);
          const theta = table.value.toFloat32Array();
          const dy = values(seed + 1, batch * 2 * dim, 1);
          const step = poisonedStep(engine, batch, { training: false, seed: 1 });
          const x = step.alloc([batch, 2], 'int32');
          x.int32().set(ids);
          const y = layer.forward(x, step) as Tensor;
          const gather = (t: ref.Values) => Float64Array.from({ length: batch * 2 * dim }, (_, j) => t[ids[Math.floor(j / dim)]! * dim + (j % dim)]!);
          assertClose(y.toFloat32Array(), gather(theta), 0, 0, 'idEmbedding forward (exact copy)');
          const dyt = step.alloc(y.shape);
          dyt.data().set(dy);
          table.grad.data().fill(Number.NaN);
          step.loss = 0;
          assert.equal(layer.backward(dyt, step, false), null);
          const penalty = (t: ref.Values) => {
            let s = 0;
            for (const id of ids) for (let d = 0; d < dim; d++) s += t[id * dim + d]! ** 2;
            return (l2 * s) / batch;
          };
          assert.ok(Math.abs(step.loss - penalty(theta)) <= 1e-5 * Math.max(1, penalty(theta)), `loss gains the penalty: ${step.loss} vs ${penalty(theta)}`);
          const numeric = ref.centralDifferences((t) => ref.weightedSum(dy, gather(t)) + penalty(t), theta, FD_EPS);
          assertClose(table.grad.toFloat32Array(), numeric, GRAD_ATOL, GRAD_RTOL, `idEmbedding l2=${l2} dL/dE`);
          assert.deepEqual(seen.grad.toFloat32Array(), new Float32Array(n), 'the counts have no gradient');
          assert.deepEqual(seen.value.toFloat32Array(), new Float32Array(n).fill(1), 'inference does not count');
        } finally {
          built.free();
        }
      }), FC_PARAMS);
    });

    it('operators/id-embedding.ts sparse: each backward leaves the whole gradient equal to the dense one (rows of the previous step cleared) and lists its distinct rows', async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, units: dim, rows: n, seed }) => {
        const rng = new Random(seed);
        const dense = idEmbedding(n, dim, { l2: 0.1 });
        const sparse = idEmbedding(n, dim, { l2: 0.1, sparse: true });
        const built = [buildLayer(engine, dense, []), buildLayer(engine, sparse, [])];
        try {
          const tables = built.map((b) => b.params[0]!);
          const start = values(seed + 5, n * dim, 1);
          for (const t of tables) t.value.data().set(start);
          for (const b of built) for (const p of b.params) p.grad.data().fill(0);
          for (let round = 0; round < 3; round++) {
            const ids = Int32Array.from({ length: batch }, () => Math.floor(rng.uniform() * n));
            const dy = values(seed + 10 + round, batch * dim, 1);
            for (const [k, layer] of [dense, sparse].entries()) {
              const step = poisonedStep(engine, batch, { training: false, seed: 1 });
              const x = step.alloc([batch], 'int32');
              x.int32().set(ids);
              const y = layer.forward(x, step) as Tensor;
              const dyt = step.alloc(y.shape);
              dyt.data().set(dy);
              layer.backward(dyt, step, false);
              if (k === 1) assert.deepEqual([...tables[1]!.sparseRows!], [...new Set(ids)], 'sparseRows: the distinct rows in first-seen order');
            }
            assert.deepEqual(tables[1]!.grad.toFloat32Array(), tables[0]!.grad.toFloat32Array(), `round ${round}: sparse gradient equals the dense one`);
          }
        } finally {
          for (const b of built) b.free();
        }
      }), FC_PARAMS);
    });

    it('operators/id-embedding.ts: first sight in training starts the row and counts it; ids past maxIds fail or hash', () => {
      const layer = idEmbedding(5, 3, { initStd: 0.5 });
      const built = buildLayer(engine, layer, []);
      try {
        const [table, seen] = built.params as [import('../src/layer.ts').Parameter, import('../src/layer.ts').Parameter];
        assert.deepEqual(table.value.toFloat32Array(), new Float32Array(15), 'rows start at zero');
        const step = poisonedStep(engine, 2, { training: true, seed: 9 });
        const x = step.alloc([2], 'int32');
        x.int32().set([3, 3]);
        const y = layer.forward(x, step) as Tensor;
        assert.deepEqual(y.toFloat32Array(), new Float32Array(6), 'an unseen id reads zeros');
        const dy = step.alloc([2, 3]);
        dy.data().fill(0);
        layer.backward(dy, step, false);
        const row = table.value.toFloat32Array().subarray(9, 12);
        assert.ok(row.every((v) => v !== 0), `row 3 started from a draw: ${row}`);
        const expected = new Random(9);
        assert.deepEqual([...row], [0.5 * expected.normal(), 0.5 * expected.normal(), 0.5 * expected.normal()].map(Math.fround));
        assert.deepEqual([...seen.value.toFloat32Array()], [0, 0, 0, 2, 0]);
        x.int32().set([1, 7]);
        assert.throws(() => layer.forward(x, step), /id 7 is past the configured maximum \(maxIds 5.*row 1 of the batch/);
        assert.throws(() => { x.int32().set([-1, 0]); layer.forward(x, step); }, /id -1 is not a non-negative integer/);
      } finally {
        built.free();
      }
      const hashed = idEmbedding(5, 2, { onOverflow: 'hash' });
      const b2 = buildLayer(engine, hashed, []);
      try {
        const step = poisonedStep(engine, 2, { training: false, seed: 1 });
        b2.params[0]!.value.data().set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        const x = step.alloc([2], 'int32');
        x.int32().set([1_000_003, 1_000_003]);
        const y = (hashed.forward(x, step) as Tensor).toFloat32Array();
        assert.equal(y[0], y[2], 'the same big id maps to the same row');
        assert.ok(y[0]! >= 0 && y[0]! <= 8 && y[0]! % 2 === 0);
      } finally {
        b2.free();
      }
    });
  });
}
