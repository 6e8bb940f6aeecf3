/**
 * Causality of a decoder-only Transformer (embedding → learned positions → 2 causal pre-norm blocks
 * → layerNorm → dense vocabulary head): the output at position t must not change when any token
 * after t changes — checked for random token sequences and every t, through `model.predict` on Arrow
 * batches. The equality is exact: masked keys get weight exactly 0 (operators/multi-head-attention.ts),
 * so a changed later token adds 0·v to the same sums in the same order. The test also checks that
 * later positions do change (so it would notice a model that ignores its input).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { lastValueFrom, of } from 'rxjs';
import { batchFromArrays, floatColumn } from '../src/batch.ts';
import { createEngine } from '../src/engine.ts';
import { sequential } from '../src/model.ts';
import { Random } from '../src/random.ts';
import { dense } from '../operators/dense.ts';
import { embedding } from '../operators/embedding.ts';
import { layerNorm } from '../operators/layer-norm.ts';
import { positionalEncoding } from '../operators/positional-encoding.ts';
import { transformerDecoderBlock, transformerEncoderBlock } from '../operators/transformer.ts';

const engine = createEngine({ threads: 1 });
after(() => engine.close());

const VOCAB = 11;
const DIM = 16;

function causalModel(length: number, seed: number, norm: 'pre' | 'post', kind: 'decoder' | 'encoder') {
  const block = () => (kind === 'decoder'
    ? transformerDecoderBlock({ heads: 4, dim: DIM, ffDim: 32, norm })
    : transformerEncoderBlock({ heads: 2, dim: DIM, ffDim: 24, causal: true, norm }));
  return sequential([
    embedding(VOCAB, DIM), positionalEncoding({ kind: 'learned', maxLength: 32 }), block(), block(), layerNorm(), dense(VOCAB),
  ], { inputShape: [length], seed, engine });
}

describe('test/causal.test.ts: a causal Transformer does not look ahead', () => {
  it('output at position t is unchanged when tokens after t change (random tokens, every t)', async () => {
    const arb = fc.record({
      length: fc.integer({ min: 1, max: 20 }), seed: fc.nat(), norm: fc.constantFrom('pre' as const, 'post' as const),
      kind: fc.constantFrom('decoder' as const, 'encoder' as const),
    });
    await fc.assert(fc.asyncProperty(arb, async ({ length: T, seed, norm, kind }) => {
      const model = causalModel(T, seed, norm, kind);
      try {
        const rng = new Random(seed + 1);
        const original = Int32Array.from({ length: T }, () => rng.int(VOCAB));
        // Row 0: the original; row 1 + t: tokens after t replaced by different random tokens.
        const rows = 1 + T;
        const features = new Int32Array(rows * T);
        features.set(original, 0);
        for (let t = 0; t < T; t++) {
          for (let s = 0; s < T; s++) {
            const o = original[s]!;
            features[(1 + t) * T + s] = s <= t ? o : (o + 1 + rng.int(VOCAB - 1)) % VOCAB;
          }
        }
        const out = await lastValueFrom(of(batchFromArrays({ features, shape: [T] })).pipe(model.predict()));
        const y = floatColumn(out, 'output').values;
        const width = T * VOCAB;
        for (let t = 0; t < T; t++) {
          const row = (1 + t) * width;
          for (let s = 0; s <= t; s++) {
            for (let v = 0; v < VOCAB; v++) {
              assert.equal(y[row + s * VOCAB + v], y[s * VOCAB + v], `T=${T}: changing tokens after ${t} changed the output at position ${s} (class ${v})`);
            }
          }
          if (t + 1 < T) {
            let changed = false;
            for (let i = (t + 1) * VOCAB; i < width && !changed; i++) changed = y[row + i] !== y[i];
            assert.ok(changed, `T=${T}: changing the tokens after ${t} changed no later output (the test would not notice a leak)`);
          }
        }
      } finally {
        model.dispose();
      }
    }), { numRuns: 12 });
  });

  it('a non-causal block does look ahead (the property above is not vacuous)', async () => {
    const T = 6;
    const model = sequential([embedding(VOCAB, DIM), transformerEncoderBlock({ heads: 2, dim: DIM, ffDim: 24 }), dense(VOCAB)], { inputShape: [T], seed: 1, engine });
    try {
      const features = Int32Array.from([1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 7]);
      const out = await lastValueFrom(of(batchFromArrays({ features, shape: [T] })).pipe(model.predict()));
      const y = floatColumn(out, 'output').values;
      assert.notEqual(y[0], y[T * VOCAB], 'position 0 should see the last token without a causal mask');
    } finally {
      model.dispose();
    }
  });
});
