/**
 * Golden weights: SHA-256 of every parameter after 300 training steps of five small models (an MLP
 * with dropout and L2, a CNN with spatial dropout, an LSTM, a char-level Transformer with attention
 * dropout, and an encoder–decoder with cross-attention), each with a fixed seed and fixed data
 * (the embedded MNIST digits, the bundled English text). The hashes were recorded on the code before
 * the step runner / reverse stream refactor (issue 10); any change to the order of floating-point
 * operations, to a random draw or to a step's sequencing changes them. Kernels are pinned to one
 * thread and plain SIMD128 (no relaxed FMA), so the hashes do not depend on the host's features.
 *
 * A deliberate numerical change (a new kernel, a different reduction order) must re-record them and
 * say why in the commit.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchFromArrays, batchesFromArrays, clipGradientNorm, conv2d, cosineDecay, createEngine, dense, dropout, embedding, encoderDecoder, flatten,
  l2, layerNorm, lstm, maxPool2d, positionalEncoding, Random, relu, sequential, sgd, softmaxCrossEntropy, spatialDropout2d,
  transformerDecoderBlock, transformerEncoderBlock, Vocabulary, type Batch, type Model, type Optimizer,
} from '../src/index.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';

const engine = createEngine({ threads: 1, relaxedSimd: false, backend: 'wasm' });
after(() => engine.close());

const STEPS = 300;

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

async function trainSteps(model: Model, batches: Batch[], optimizer: Optimizer, clip = false): Promise<void> {
  assert.equal(batches.length, STEPS);
  const gradientOperators = clip ? [clipGradientNorm(1)] : [];
  const reports = await lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer, gradientOperators }), toArray()));
  assert.equal(model.stepCount, STEPS);
  // The models learn (so the hashes pin real training, not weights stuck at a trivial point).
  const mean = (r: typeof reports) => r.reduce((s, x) => s + x.loss, 0) / r.length;
  assert.ok(mean(reports.slice(-30)) < mean(reports.slice(0, 30)), `loss did not fall: ${mean(reports.slice(0, 30))} → ${mean(reports.slice(-30))}`);
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

const text = readFileSync(new URL('./fixtures/english-text.txt', import.meta.url), 'utf8');
const vocab = Vocabulary.fromCharacters(text);
const ids = vocab.encode(text);

describe('test/golden.test.ts: weights after 300 steps are bitwise those recorded before the refactor', () => {
  it('MLP (dense → relu → dropout → dense, L2, Adam, clipped), 784 → 32 → 10, batch 16', async () => {
    const model = sequential([dense(32, { kernelRegularizer: l2(1e-4) }), relu(), dropout(0.2), dense(10)], { inputShape: [784], seed: 11, engine });
    await trainSteps(model, digitBatches(16, 800, [784], false), adam({ learningRate: 1e-3 }), true);
    assert.equal(weightsHash(model), '74bb2bd66478816651ab60dbb5c91a320c81e954b50adafc1bb95e6f61a7e227');
    model.dispose();
  });

  it('CNN (conv → relu → maxPool → spatialDropout → conv → flatten → dense, SGD momentum), 14×14×1, batch 8', async () => {
    const model = sequential(
      [conv2d(4, 3, { padding: 'same' }), relu(), maxPool2d(2), spatialDropout2d(0.25), conv2d(6, 3), relu(), flatten(), dense(10)],
      { inputShape: [14, 14, 1], seed: 12, engine },
    );
    await trainSteps(model, digitBatches(8, 400, [14, 14, 1], true), sgd({ learningRate: 0.05, momentum: 0.9 }));
    assert.equal(weightsHash(model), '8019266b48eb91cb2cba485048c79532a52c6d546c1ecc96c5eb70b4d4a8c139');
    model.dispose();
  });

  it('LSTM (14 rows of 14 pixels → lstm(12) → dense), Adam, batch 8', async () => {
    const model = sequential([lstm({ units: 12 }), dense(10)], { inputShape: [14, 14], seed: 13, engine });
    await trainSteps(model, digitBatches(8, 400, [14, 14], true), adam({ learningRate: 3e-3 }));
    assert.equal(weightsHash(model), '9a39fa4fd5770cf142bdda35b4d9674540efba5c470a0d151c2a214786d35085');
    model.dispose();
  });

  it('char Transformer (embedding → learned positions → causal block with dropout → layerNorm → dense), Adam + cosine decay, clipped', async () => {
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
    await trainSteps(model, batches, optimizer, true);
    assert.equal(weightsHash(model), 'b635f557b1ec2a0c7054e3caa7c98ce31560b3d5b4c224d36b95d4af0276efd7');
    model.dispose();
  });

  it('encoder–decoder (cross-attention on a memory produced in the model), Adam', async () => {
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
    await trainSteps(model, batches, adam({ learningRate: 3e-3 }));
    assert.equal(weightsHash(model), '6a77c96f8b2c904a7f06bb7facdd45f0071f920a33baf0bd13354aa553f3a701');
    model.dispose();
  });
});
