/**
 * A second implementation of examples/spam.ts's recipe in TensorFlow.js (wasm backend): the same
 * corpus loader, split, vocabulary and front-padded ids, the same `embedding(10000, 128) → lstm(64)
 * → dense(2)` with Adam (2e-3; TF.js has no norm clipping, and its initial weights are not seeded), batches of 32, the epoch chosen on the same 10%
 * validation share. It answers whether the LSTM's gap to the bag-of-words baseline is the recipe's
 * or this engine's.
 *
 * Usage: `npx tsx bench/reference/spam-tfjs.ts --length 100 --epochs 6`
 */
import { Command } from 'commander';
import { positiveInt } from '../../examples/common.ts';
import { encodeTexts, loadSpamAssassin, splitMessages, vocabularyOf } from '../../src/data/spam-assassin.ts';
import { initTfjs, tf } from '../tfjs.ts';

const options = new Command()
  .option('--length <n>', 'tokens per message', positiveInt('--length'), 200)
  .option('--epochs <n>', 'epochs', positiveInt('--epochs'), 6)
  .option('--seed <n>', 'split seed', Number, 1)
  .parse()
  .opts<{ length: number; epochs: number; seed: number }>();

await initTfjs();
const { train, test } = splitMessages(loadSpamAssassin(), 0.2, options.seed);
const L = options.length;
const vocab = vocabularyOf(train.map((m) => m.body), { maxSize: 10_000, length: L });
const validationCount = Math.round(train.length * 0.1);
const tensors = (messages: typeof train) => ({
  x: tf.tensor2d(encodeTexts(vocab, messages.map((m) => m.body), L), [messages.length, L], 'int32'),
  y: tf.oneHot(tf.tensor1d(Int32Array.from(messages, (m) => m.label), 'int32'), 2),
});
const fitSet = tensors(train.slice(validationCount));
const validation = tensors(train.slice(0, validationCount));
const testSet = tensors(test);
const model = tf.sequential({
  layers: [
    tf.layers.embedding({ inputDim: vocab.size, outputDim: 128, inputLength: L }),
    tf.layers.lstm({ units: 64 }),
    tf.layers.dense({ units: 2 }),
  ],
});
model.compile({ optimizer: tf.train.adam(2e-3), loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred) });
const accuracy = (set: { x: tf.Tensor; y: tf.Tensor }) => tf.tidy(() => {
  const predicted = (model.predict(set.x, { batchSize: 256 }) as tf.Tensor).argMax(-1);
  return predicted.equal(set.y.argMax(-1)).mean().dataSync()[0]!;
});
let best = { validation: -1, test: 0, epoch: 0 };
for (let epoch = 1; epoch <= options.epochs; epoch++) {
  const t0 = performance.now();
  const h = await model.fit(fitSet.x, fitSet.y, { batchSize: 32, epochs: 1, shuffle: true, verbose: 0 });
  const v = accuracy(validation);
  // Scored every epoch for the record; only the validation accuracy chooses.
  const t = accuracy(testSet);
  console.log(`# tfjs epoch ${epoch}: train loss ${Number(h.history['loss']![0]).toFixed(4)}, validation ${(100 * v).toFixed(2)}%, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (v > best.validation) best = { validation: v, test: t, epoch };
}
console.log(`# tfjs result length=${L} epoch=${best.epoch} validation=${best.validation.toFixed(4)} test=${best.test.toFixed(4)}`);
