/**
 * Issue 11 fused the LSTM cell into one f32 kernel (the JS loops rounded products through float64), so the
 * LSTM golden hash was re-recorded. (Filter gradients of ≥ 2 MFLOP are now summed over image chunks fixed
 * by the shape; the golden CNN's are smaller and stay one call, so its weights are bitwise unchanged, which
 * this test shows too.) This test keeps the evidence that the change is rounding only: after 300 steps the new
 * weights agree with those of the code before (test/fixtures/golden-weights-before-issue-11.json, made
 * by test/fixtures/golden-weights.ts on main 1ef87d0) to 1e-5 of each parameter's largest magnitude, and
 * the fixture hashes to the golden value recorded before the change (so it is that run's weights).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { createEngine } from '../src/index.ts';
import { goldenRecipes, trainGolden } from './golden-recipes.ts';

const engine = createEngine({ threads: 1, relaxedSimd: false, backend: 'wasm' });
after(() => engine.close());

const fixture = JSON.parse(readFileSync(new URL('./fixtures/golden-weights-before-issue-11.json', import.meta.url), 'utf8')) as {
  recordedOn: string;
  models: Record<string, Record<string, string>>;
};
/** The golden hashes recorded before issue 11 (test/golden.test.ts at 1ef87d0). */
const HASHES_BEFORE: Record<string, string> = {
  cnn: '8019266b48eb91cb2cba485048c79532a52c6d546c1ecc96c5eb70b4d4a8c139',
  lstm: '9a39fa4fd5770cf142bdda35b4d9674540efba5c470a0d151c2a214786d35085',
};
const RELATIVE = 1e-5;

const decode = (base64: string) => {
  const bytes = Buffer.from(base64, 'base64');
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
};

describe('golden runs after issue 11 agree with the weights before it to float32 rounding', () => {
  for (const recipe of goldenRecipes(engine).filter((r) => r.key in fixture.models)) {
    it(`${recipe.key}: every parameter within ${RELATIVE} of its largest magnitude after 300 steps`, async () => {
      const before = fixture.models[recipe.key]!;
      const hash = createHash('sha256');
      for (const [name, values] of Object.entries(before)) hash.update(name).update(decode(values));
      assert.equal(hash.digest('hex'), HASHES_BEFORE[recipe.key], 'the fixture is not the recorded golden run');
      const model = await trainGolden(recipe);
      const now = model.getWeights();
      assert.deepEqual([...now.keys()], Object.keys(before));
      for (const [name, values] of now) {
        const old = decode(before[name]!);
        let scale = 0;
        let worst = 0;
        for (let i = 0; i < old.length; i++) {
          scale = Math.max(scale, Math.abs(old[i]!));
          worst = Math.max(worst, Math.abs(values[i]! - old[i]!));
        }
        process.stderr.write(`  ${recipe.key} ${name}: max |new − old| ${worst.toExponential(2)}, relative ${(worst / scale).toExponential(2)}\n`);
        assert.ok(worst <= RELATIVE * scale, `${name}: max |new − old| = ${worst} > ${RELATIVE} × ${scale}`);
      }
      model.dispose();
    });
  }
});
