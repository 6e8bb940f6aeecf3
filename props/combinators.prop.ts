/**
 * Gradient properties of the combinators operators/chain.ts (chain), operators/residual.ts
 * (residual) and operators/parallel.ts (parallel, 'concat' and 'add'), alone and nested: forward vs
 * a float64 composition of props/reference.ts, and dL/dx and every parameter gradient vs central
 * differences of L = Σ dy ⊙ f(x, θ) on that composition. Random shapes (batch 1–4, an optional
 * middle axis 1–3, features and units 1–7) and values from a drawn seed.
 *
 * Tolerances: forward 1e-5·max(1, ‖ref‖∞) + 1e-4·|ref|; gradients 1e-4·max(1, ‖fd‖∞) + 1e-3·|fd|
 * (as props/gradients.prop.ts: float32 engine vs float64 central differences with step 1e-6).
 * Runs on the wasm backend with one thread and on the JS reference backend.
 * Replay: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/combinators.prop.ts`.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { createEngine, type Engine } from '../src/engine.ts';
import { ShapeError, StepContext, type BuildContext, type Layer, type Parameter } from '../src/layer.ts';
import { Random } from '../src/random.ts';
import { sizeOf, Tensor, type Shape } from '../src/tensor.ts';
import { chain } from '../operators/chain.ts';
import { dense } from '../operators/dense.ts';
import { gelu } from '../operators/gelu.ts';
import { parallel } from '../operators/parallel.ts';
import { residual } from '../operators/residual.ts';
import { sigmoid } from '../operators/sigmoid.ts';
import { tanh } from '../operators/tanh.ts';
import * as ref from './reference.ts';
import * as refA from './reference-attention.ts';

const FORWARD_ATOL = 1e-5;
const FORWARD_RTOL = 1e-4;
const GRAD_ATOL = 1e-4;
const GRAD_RTOL = 1e-3;
const FD_EPS = 1e-6;
const FC_PARAMS: fc.Parameters<unknown> = {
  numRuns: 60,
  includeErrorInReport: true,
  ...(process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {}),
  ...(process.env['FC_PATH'] ? { path: process.env['FC_PATH'] } : {}),
};

const engines: Engine[] = [];
after(async () => {
  for (const e of engines) await e.close();
});
const make = (e: Engine) => (engines.push(e), e);
const BACKENDS: { label: string; engine: Engine }[] = [
  { label: 'wasm backend, 1 thread', engine: make(createEngine({ threads: 1, initialBytes: 8 << 20 })) },
  { label: 'js reference backend', engine: make(createEngine({ backend: 'js', initialBytes: 8 << 20 })) },
];

function values(seed: number, n: number, scale: number): number[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => Math.fround((2 * rng.uniform() - 1) * scale));
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
    const tol = atol * scale + rtol * Math.abs(expected[i]!);
    if (!(Math.abs(actual[i]! - expected[i]!) <= tol)) assert.fail(`${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (|diff| ${Math.abs(actual[i]! - expected[i]!)} > ${tol})`);
  }
}

/** Builds, randomises the parameters, runs forward and both backwards, checks against `reference`. */
async function check(
  engine: Engine, what: string, layer: Layer, inputShape: Shape, batch: number, seed: number, outShape: Shape,
  reference: (x: ref.Values, theta: readonly ref.Values[]) => ref.Values,
): Promise<void> {
  const params: Parameter[] = [];
  const rng = new Random(0);
  const ctx: BuildContext = {
    engine, rng,
    addParameter(name, shape, init, fans) {
      const value = new Tensor(engine.heap, engine.heap.alloc(sizeOf(shape) * 4), shape);
      const grad = new Tensor(engine.heap, engine.heap.alloc(sizeOf(shape) * 4), shape);
      init.fill(value.data(), fans, rng);
      const p: Parameter = { name, shape, value, grad, regularizer: null, trainable: true };
      params.push(p);
      return p;
    },
  };
  const arena = engine.heap.arena();
  try {
    assert.deepEqual([...layer.build(inputShape, ctx)], [...outShape], `${what}: shape rule`);
    assert.deepEqual(layer.parameters(), params, `${what}: parameters() lists the built parameters in order`);
    params.forEach((p, i) => p.value.data().set(values(seed + 31 * (i + 1), p.value.size, 1)));
    const theta = params.map((p) => p.value.toFloat32Array());
    const rows = batch * sizeOf(inputShape);
    const x = values(seed, rows, 2);
    const dy = values(seed + 1, batch * sizeOf(outShape), 1);
    const step = new StepContext(engine, arena, batch, false, new Random(1), 0);
    const xt = step.alloc([batch, ...inputShape]);
    xt.data().set(x);
    const y = await layer.forward(xt, step);
    assertClose(y.toFloat32Array(), reference(x, theta), FORWARD_ATOL, FORWARD_RTOL, `${what} forward`);
    const dyt = step.alloc(y.shape);
    dyt.data().set(dy);
    for (const p of params) p.grad.data().fill(Number.NaN);
    assert.equal(await layer.backward(dyt, step, false), null, `${what}: backward(…, false) returns null`);
    const without = params.map((p) => p.grad.toFloat32Array());
    for (const p of params) p.grad.data().fill(Number.NaN);
    const dx = await layer.backward(dyt, step, true);
    assert.ok(dx, `${what}: backward(…, true) returned null`);
    const loss = (xv: ref.Values, th: readonly ref.Values[]) => ref.weightedSum(dy, reference(xv, th));
    assertClose(dx.toFloat32Array(), ref.centralDifferences((v) => loss(v, theta), x, FD_EPS), GRAD_ATOL, GRAD_RTOL, `${what} dL/dx`);
    params.forEach((p, k) => {
      const numeric = ref.centralDifferences((v) => loss(x, theta.map((t, j) => (j === k ? v : t))), theta[k]!, FD_EPS);
      assertClose(p.grad.toFloat32Array(), numeric, GRAD_ATOL, GRAD_RTOL, `${what} dL/d(${p.name})`);
      assert.deepEqual(without[k], p.grad.toFloat32Array(), `${what}: ${p.name} gradient depends on needInputGradient`);
    });
  } finally {
    arena.dispose();
    for (const p of params) {
      engine.heap.free(p.value.ptr);
      engine.heap.free(p.grad.ptr);
    }
  }
}

const DIMS = fc.record({
  batch: fc.integer({ min: 1, max: 4 }),
  mid: fc.integer({ min: 0, max: 3 }),
  features: fc.integer({ min: 1, max: 7 }),
  u1: fc.integer({ min: 1, max: 7 }),
  u2: fc.integer({ min: 1, max: 7 }),
  seed: fc.nat(),
});

for (const { label, engine } of BACKENDS) {
  describe(`combinators on the ${label}`, () => {
    it('operators/chain.ts: chain([dense, gelu, dense]) equals the composition, gradients vs central differences', async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, mid, features: f, u1, u2, seed }) => {
        const shape = mid ? [mid, f] : [f];
        const rows = batch * Math.max(1, mid);
        await check(engine, `chain [${shape}]`, chain([dense(u1), gelu(), dense(u2)]), shape, batch, seed, [...shape.slice(0, -1), u2],
          (x, [w1, b1, w2, b2]) => ref.dense(ref.gelu(ref.dense(x, rows, f, w1!, u1, b1!)), rows, u1, w2!, u2, b2!));
      }), FC_PARAMS);
    });

    it('operators/residual.ts: residual([dense, tanh]) is x + block(x); nested residual(chain, residual) too', async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, mid, features: f, u1, seed }) => {
        const shape = mid ? [mid, f] : [f];
        const rows = batch * Math.max(1, mid);
        await check(engine, `residual [${shape}]`, residual([dense(f), tanh()]), shape, batch, seed, shape,
          (x, [w, b]) => refA.residual(x, (v) => ref.tanh(ref.dense(v, rows, f, w!, f, b!))));
        await check(engine, `nested residual [${shape}]`, residual([chain([dense(u1), sigmoid()]), dense(f), residual([dense(f, { useBias: false })])]), shape, batch, seed + 5, shape,
          (x, [w1, b1, w2, b2, w3]) => refA.residual(x, (v) => {
            const h = ref.dense(ref.sigmoid(ref.dense(v, rows, f, w1!, u1, b1!)), rows, u1, w2!, f, b2!);
            return refA.residual(h, (g) => ref.dense(g, rows, f, w3!, f, null));
          }));
      }), FC_PARAMS);
    });

    it("operators/parallel.ts: parallel(…, 'concat') with three branches (one without parameters)", async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, mid, features: f, u1, u2, seed }) => {
        const shape = mid ? [mid, f] : [f];
        const rows = batch * Math.max(1, mid);
        await check(engine, `parallel concat [${shape}]`, parallel([[dense(u1), tanh()], [dense(u2)], [sigmoid()]], 'concat'), shape, batch, seed,
          [...shape.slice(0, -1), u1 + u2 + f],
          (x, [w1, b1, w2, b2]) => refA.concat([ref.tanh(ref.dense(x, rows, f, w1!, u1, b1!)), ref.dense(x, rows, f, w2!, u2, b2!), ref.sigmoid(x)], rows, [u1, u2, f]));
      }), FC_PARAMS);
    });

    it("operators/parallel.ts: parallel(…, 'add'), and inside a residual block", async () => {
      await fc.assert(fc.asyncProperty(DIMS, async ({ batch, mid, features: f, u1, seed }) => {
        const shape = mid ? [mid, f] : [f];
        const rows = batch * Math.max(1, mid);
        await check(engine, `parallel add [${shape}]`, parallel([[dense(u1), tanh()], [dense(u1, { useBias: false })]], 'add'), shape, batch, seed,
          [...shape.slice(0, -1), u1],
          (x, [w1, b1, w2]) => refA.sum([ref.tanh(ref.dense(x, rows, f, w1!, u1, b1!)), ref.dense(x, rows, f, w2!, u1, null)]));
        await check(engine, `residual(parallel add) [${shape}]`, residual([parallel([[dense(f), gelu()], [tanh()]], 'add')]), shape, batch, seed + 9, shape,
          (x, [w, b]) => refA.residual(x, (v) => refA.sum([ref.gelu(ref.dense(v, rows, f, w!, f, b!)), ref.tanh(v)])));
      }), FC_PARAMS);
    });

    it('combinators reject shape-changing residual blocks and unequal add branches with ShapeErrors', () => {
      const ctx: BuildContext = {
        engine, rng: new Random(0),
        addParameter: (name, shape) => ({ name, shape, value: new Tensor(engine.heap, 0, shape), grad: new Tensor(engine.heap, 0, shape), regularizer: null, trainable: true }),
      };
      const r = residual([dense(3)], { name: 'res' });
      assert.throws(() => r.build([4], ctx), (e: unknown) => e instanceof ShapeError && /res \(residual\)/.test(e.message) && /\[4\]/.test(e.message));
      const p = parallel([[dense(3)], [dense(4)]], 'add', { name: 'par' });
      assert.throws(() => p.build([2], ctx), (e: unknown) => e instanceof ShapeError && /par \(parallel\)/.test(e.message));
    });
  });
}
