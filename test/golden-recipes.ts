/**
 * The five training runs of the golden tests (test/golden.test.ts: SHA-256 of the weights; test/golden-
 * agreement.test.ts: closeness to weights recorded before a numerical change): fixed seeds, fixed data (the
 * embedded MNIST digits, the bundled English text), 300 steps each, on an engine pinned to one thread and
 * plain SIMD128 (no relaxed FMA), so the results do not depend on the host's features.
 *
 * Usage: `for (const recipe of goldenRecipes(engine)) { const model = await trainGolden(recipe); … }`
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchFromArrays, batchesFromArrays, clipGradientNorm, conv2d, cosineDecay, dense, dropout, embedding, encoderDecoder, flatten,
  l2, layerNorm, lstm, maxPool2d, positionalEncoding, Random, relu, sequential, sgd, softmaxCrossEntropy, spatialDropout2d,
  transformerDecoderBlock, transformerEncoderBlock, Vocabulary, type Batch, type Engine, type Model, type Optimizer,
} from '../src/index.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';

export const STEPS = 300;

/** One golden run: the model, its 300 batches, its optimizer, and whether gradients are clipped to norm 1. */
export interface GoldenRecipe {
  /** Short key (fixtures are keyed by it). */
  readonly key: 'mlp' | 'cnn' | 'lstm' | 'transformer' | 'encoderDecoder';
  readonly title: string;
  make(): { model: Model; batches: Batch[]; optimizer: Optimizer; clip: boolean };
}

/** Trains a recipe's model for its 300 steps (asserting that the loss fell) and returns the model. */
export async function trainGolden(recipe: GoldenRecipe): Promise<Model> {
  const { model, batches, optimizer, clip } = recipe.make();
  assert.equal(batches.length, STEPS);
  const gradientOperators = clip ? [clipGradientNorm(1)] : [];
  const reports = await lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer, gradientOperators }), toArray()));
  assert.equal(model.stepCount, STEPS);
  // The models learn (so the hashes pin real training, not weights stuck at a trivial point).
  const mean = (r: typeof reports) => r.reduce((s, x) => s + x.loss, 0) / r.length;
  assert.ok(mean(reports.slice(-30)) < mean(reports.slice(0, 30)), `loss did not fall: ${mean(reports.slice(0, 30))} → ${mean(reports.slice(-30))}`);
  return model;
}

/** 300 batches of `batchSize` digits (cycling through `rows` digits), downsampled 2×2 to 14×14 when asked. */
function digitBatches(batchSize: number, rows: number, shape: number[], half: boolean): Batch[] {
  const { train } = loadEmbeddedMnist({ train: rows, test: 0 });
  const side = half ? 14 : 28;
  const features = new Float32Array(rows * side * side);
  for (let r = 0; r < rows; r++) {
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const at = (yy: number, xx: number) => train.features[r * 784 + yy * 28 + xx]!;
        features[r * side * side + y * side + x] = half
          ? (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4
          : at(y, x);
      }
    }
  }
  const perPass = Math.floor(rows / batchSize);
  const all = batchesFromArrays({ features, shape, labels: train.labels }, batchSize).slice(0, perPass);
  return Array.from({ length: STEPS }, (_, i) => all[i % perPass]!);
}

/** 300 draws of `batchSize` random windows of `length` + 1 characters of the bundled English text. */
function textWindows(ids: Int32Array, batchSize: number, length: number, seed: number): { features: Int32Array; labels: Int32Array }[] {
  const rng = new Random(seed);
  return Array.from({ length: STEPS }, () => {
    const features = new Int32Array(batchSize * length);
    const labels = new Int32Array(batchSize * length);
    for (let b = 0; b < batchSize; b++) {
      const s = rng.int(ids.length - length - 1);
      features.set(ids.subarray(s, s + length), b * length);
      labels.set(ids.subarray(s + 1, s + length + 1), b * length);
    }
    return { features, labels };
  });
}

/** The five recipes on `engine` (one thread, plain SIMD128 for the recorded figures). */
export function goldenRecipes(engine: Engine): GoldenRecipe[] {
  const text = readFileSync(new URL('./fixtures/english-text.txt', import.meta.url), 'utf8');
  const vocab = Vocabulary.fromCharacters(text);
  const ids = vocab.encode(text);
  return [
    {
      key: 'mlp', title: 'MLP (dense → relu → dropout → dense, L2, Adam, clipped), 784 → 32 → 10, batch 16',
      make: () => ({
        model: sequential([dense(32, { kernelRegularizer: l2(1e-4) }), relu(), dropout(0.2), dense(10)], { inputShape: [784], seed: 11, engine }),
        batches: digitBatches(16, 800, [784], false), optimizer: adam({ learningRate: 1e-3 }), clip: true,
      }),
    },
    {
      key: 'cnn', title: 'CNN (conv → relu → maxPool → spatialDropout → conv → flatten → dense, SGD momentum), 14×14×1, batch 8',
      make: () => ({
        model: sequential(
          [conv2d(4, 3, { padding: 'same' }), relu(), maxPool2d(2), spatialDropout2d(0.25), conv2d(6, 3), relu(), flatten(), dense(10)],
          { inputShape: [14, 14, 1], seed: 12, engine },
        ),
        batches: digitBatches(8, 400, [14, 14, 1], true), optimizer: sgd({ learningRate: 0.05, momentum: 0.9 }), clip: false,
      }),
    },
    {
      key: 'lstm', title: 'LSTM (14 rows of 14 pixels → lstm(12) → dense), Adam, batch 8',
      make: () => ({
        model: sequential([lstm({ units: 12 }), dense(10)], { inputShape: [14, 14], seed: 13, engine }),
        batches: digitBatches(8, 400, [14, 14], true), optimizer: adam({ learningRate: 3e-3 }), clip: false,
      }),
    },
    {
      key: 'transformer', title: 'char Transformer (embedding → learned positions → causal block with dropout → layerNorm → dense), Adam + cosine decay, clipped',
      make: () => {
        const T = 12;
        const model = sequential([
          embedding(vocab.size, 16, { paddingIndex: vocab.padId }),
          positionalEncoding({ kind: 'learned', maxLength: T }),
          transformerDecoderBlock({ heads: 2, dim: 16, ffDim: 32, dropout: 0.1 }),
          layerNorm(),
          dense(vocab.size),
        ], { inputShape: [T], seed: 14, engine });
        const optimizer = adam({ learningRate: cosineDecay({ initialRate: 5e-4, warmupSteps: 30, warmupTarget: 5e-3, decaySteps: 270, alpha: 0.1 }) });
        const batches = textWindows(ids, 8, T, 15).map(({ features, labels }) => batchFromArrays({ features, shape: [T], labels, labelShape: [T] }));
        return { model, batches, optimizer, clip: true };
      },
    },
    {
      key: 'encoderDecoder', title: 'encoder–decoder (cross-attention on a memory produced in the model), Adam',
      make: () => {
        const T = 8;
        // The source column is a window; the decoder predicts the characters of the window that follows it.
        const batches = textWindows(ids, 4, 2 * T, 16).map(({ features, labels }) => {
          const rows = 4;
          const half = (values: Int32Array, second: boolean) => {
            const out = new Int32Array(rows * T);
            for (let r = 0; r < rows; r++) out.set(values.subarray(r * 2 * T + (second ? T : 0), r * 2 * T + (second ? 2 * T : T)), r * T);
            return out;
          };
          return batchFromArrays({
            features: half(features, true), shape: [T], labels: half(labels, true), labelShape: [T], columns: { source: { values: half(features, false), shape: [T] } },
          });
        });
        const model = sequential([
          encoderDecoder({
            source: 'source', sourceShape: [T],
            encoder: [embedding(vocab.size, 8), transformerEncoderBlock({ heads: 2, dim: 8, ffDim: 16 }), layerNorm()],
            decoder: [embedding(vocab.size, 8), transformerDecoderBlock({ heads: 2, dim: 8, ffDim: 16, cross: { column: 'memory' } })],
          }),
          dense(vocab.size),
        ], { inputShape: [T], seed: 17, engine });
        return { model, batches, optimizer: adam({ learningRate: 3e-3 }), clip: false };
      },
    },
  ];
}
