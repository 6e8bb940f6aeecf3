/**
 * Gradient property of pruneLowMagnitude (operators/prune-low-magnitude.ts): a dense layer wrapped with a
 * random 0/1 mask computes dense(x; W ⊙ M) — the wrapper keeps W masked — and its kernel gradient is that
 * of W in this function (masked); the mask gets a zero gradient. Checked against central differences of
 * the float64 reference on both backends.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { dense } from '../operators/dense.ts';
import { pruneLayer } from '../operators/prune-low-magnitude.ts';
import { constantSparsity } from '../src/pruning/schedules.ts';
import { buildLayer, checkGradients, fcParams, parameterValues, runLayer, testBackends, values } from './harness.ts';
import * as ref from './reference.ts';

describe('pruneLowMagnitude (dense) gradient', () => {
  for (const { label, engine } of testBackends()) {
    it(`matches central differences of dense(x; W ⊙ M) (${label})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 1e6 }), async (rows, inputs, units, seed) => {
          const layer = pruneLayer(dense(units), constantSparsity({ targetSparsity: 0.5 }));
          const built = buildLayer(engine, layer, [inputs]);
          try {
            const [kernel, bias, mask] = built.params as [typeof built.params[0], typeof built.params[0], typeof built.params[0]];
            const m = mask.value.data();
            const bits = values(seed, m.length, 1);
            for (let i = 0; i < m.length; i++) m[i] = bits[i]! > 0 ? 1 : 0;
            bias.value.data().set(values(seed + 1, units, 1));
            layer.applyMask();
            const x = values(seed + 2, rows * inputs, 2);
            const dy = values(seed + 3, rows * units, 1);
            const run = await runLayer(engine, layer, built.params, rows, [inputs], x, dy, { training: false, seed });
            const params = [kernel, bias];
            const reference = (xv: ref.Values, [w, b]: readonly ref.Values[]) =>
              ref.dense(xv, rows, inputs, Float64Array.from(w!, (v, i) => v * m[i]!), units, b!);
            checkGradients({ what: `pruned dense ${rows}×${inputs}→${units}`, run: { ...run, grads: run.grads.slice(0, 2), gradsWithoutInput: run.gradsWithoutInput.slice(0, 2) }, params, theta: parameterValues(params), x, dy, reference });
            assert.ok(run.grads[2]!.every((g) => g === 0), 'the mask gets a zero gradient');
          } finally {
            built.free();
          }
        }),
        fcParams(40),
      );
    });
  }
});
