/**
 * Gradient properties of the combinators operators/chain.ts (chain), operators/residual.ts
 * (residual) and operators/parallel.ts (parallel, 'concat' and 'add'), alone and nested: forward vs
 * a float64 composition of props/reference.ts, and dL/dx and every parameter gradient vs central
 * differences of L = Σ dy ⊙ f(x, θ) on that composition. Random shapes (batch 1–4, an optional
 * middle axis 1–3, features and units 1–7) and values from a drawn seed.
 *
 * Tolerances: forward 1e-5·max(1, ‖ref‖∞) + 1e-4·|ref|; gradients 1e-4·max(1, ‖fd‖∞) + 1e-3·|fd|
 * (the harness defaults of props/harness.ts: float32 engine vs float64 central differences with step 1e-6).
 * Runs on the wasm backend with one thread and on the JS reference backend.
 * Replay: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/combinators.prop.ts`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Engine } from '../src/engine.ts';
import { ShapeError, type BuildContext, type Layer } from '../src/layer.ts';
import { Random } from '../src/random.ts';
import { sizeOf, Tensor, type Shape } from '../src/tensor.ts';
import { chain } from '../operators/chain.ts';
import { dense } from '../operators/dense.ts';
import { gelu } from '../operators/gelu.ts';
import { parallel } from '../operators/parallel.ts';
import { residual } from '../operators/residual.ts';
import { sigmoid } from '../operators/sigmoid.ts';
import { tanh } from '../operators/tanh.ts';
import { buildLayer, checkGradients, fcParams, parameterValues, runLayer, testBackends, values } from './harness.ts';
import * as ref from './reference.ts';
import * as refA from './reference-attention.ts';

// Tolerances and the central-difference step: the harness defaults (props/harness.ts).
const FC_PARAMS = fcParams(60);

/** Builds, randomises the parameters, runs forward and both backwards, checks against `reference`. */
async function check(
  engine: Engine, what: string, layer: Layer, inputShape: Shape, batch: number, seed: number, outShape: Shape,
  reference: (x: ref.Values, theta: readonly ref.Values[]) => ref.Values,
): Promise<void> {
  const built = buildLayer(engine, layer, inputShape);
  try {
    assert.deepEqual([...built.outShape], [...outShape], `${what}: shape rule`);
    assert.deepEqual(layer.parameters(), built.params, `${what}: parameters() lists the built parameters in order`);
    built.params.forEach((p, i) => p.value.data().set(values(seed + 31 * (i + 1), p.value.size, 1)));
    const theta = parameterValues(built.params);
    const x = values(seed, batch * sizeOf(inputShape), 2);
    const dy = values(seed + 1, batch * sizeOf(outShape), 1);
    const run = await runLayer(engine, layer, built.params, batch, inputShape, x, dy, { training: false, seed: 1 });
    checkGradients({ what, run, params: built.params, theta, x, dy, reference });
  } finally {
    built.free();
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

for (const { label, engine } of testBackends()) {
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
