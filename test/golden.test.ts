/**
 * Golden weights: SHA-256 of every parameter after 300 training steps of five small models (an MLP
 * with dropout and L2, a CNN with spatial dropout, an LSTM, a char-level Transformer with attention
 * dropout, and an encoder–decoder with cross-attention), each with a fixed seed and fixed data
 * (test/golden-recipes.ts). The hashes were recorded on the code before the step runner / reverse stream
 * refactor (issue 10); any change to the order of floating-point operations, to a random draw or to a
 * step's sequencing changes them. Kernels are pinned to one thread and plain SIMD128 (no relaxed FMA),
 * so the hashes do not depend on the host's features.
 *
 * A deliberate numerical change (a new kernel, a different reduction order) must re-record them and
 * say why in the commit, after test/golden-agreement.test.ts shows the new weights agree with the old
 * to float32 rounding.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { createEngine, type Model } from '../src/index.ts';
import { goldenRecipes, trainGolden, type GoldenRecipe } from './golden-recipes.ts';

const engine = createEngine({ threads: 1, relaxedSimd: false, backend: 'wasm' });
after(() => engine.close());

/** SHA-256 over the parameters in model order: name, then the float32 bytes. */
function weightsHash(model: Model): string {
  const hash = createHash('sha256');
  for (const [name, values] of model.getWeights()) {
    assert.ok(values.every(Number.isFinite), `${name} has non-finite weights`);
    hash.update(name);
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex');
}

const HASHES: Record<GoldenRecipe['key'], string> = {
  mlp: '74bb2bd66478816651ab60dbb5c91a320c81e954b50adafc1bb95e6f61a7e227',
  cnn: '8019266b48eb91cb2cba485048c79532a52c6d546c1ecc96c5eb70b4d4a8c139',
  lstm: 'd4befa5b187db90dbef4c8bf3057262bd81bb4c06ddc3bb97eff9bff97ad9252',
  transformer: 'b635f557b1ec2a0c7054e3caa7c98ce31560b3d5b4c224d36b95d4af0276efd7',
  encoderDecoder: '6a77c96f8b2c904a7f06bb7facdd45f0071f920a33baf0bd13354aa553f3a701',
};

describe('test/golden.test.ts: weights after 300 steps are bitwise those recorded', () => {
  for (const recipe of goldenRecipes(engine)) {
    it(recipe.title, async () => {
      const model = await trainGolden(recipe);
      assert.equal(weightsHash(model), HASHES[recipe.key]);
      model.dispose();
    });
  }
});
