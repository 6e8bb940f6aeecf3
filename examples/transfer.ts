/**
 * Transfer learning on Fashion-MNIST. A CNN (conv 16 → pool → conv 32 → pool → dense 128 → dense 5) is
 * pre-trained on classes 0–4 (T-shirt, trouser, pullover, dress, coat) and saved; then classes 5–9
 * (sandal, shirt, sneaker, bag, ankle boot) are learnt from only 50 labelled examples per class, three ways:
 *   - frozen base + new head: the loaded model without its head, frozen, under a new dense(5);
 *   - fine-tuned base: the same, all trainable, the base at 0.1× the head's learning rate (parameter groups);
 *   - from scratch: the same architecture freshly initialised.
 * Prints test accuracy on the 5,000 test images of classes 5–9 and the training time of each.
 *
 * Usage:
 *   npx tsx examples/transfer.ts            # pre-train 2 epochs on the 30,000 images of classes 0–4
 *   npx tsx examples/transfer.ts --quick    # pre-train 1 epoch on 3,000 images, test on 1,000 (the test's mode)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { lastValueFrom } from 'rxjs';
import {
  adam, batchesFromArrays, closeDefaultEngine, conv2d, defaultEngine, dense, flatten, heNormal, loadModel, logProgress, maxPool2d, relu, saveModel, sequential,
  softmaxCrossEntropy, transferModel, type Layer, type Model, type Optimizer,
} from '../src/index.ts';
import type { Dataset } from '../src/data/index.ts';
import { dataOption, loadImages, positiveInt, standardize } from './common.ts';

const program = new Command()
  .name('transfer')
  .description('Pre-train a CNN on Fashion-MNIST classes 0-4, then learn classes 5-9 from 50 examples each: frozen base vs fine-tuned vs scratch.')
  .option('--pretrain-epochs <n>', 'epochs on classes 0-4', positiveInt('--pretrain-epochs'), 2)
  .option('--shots <n>', 'labelled training examples per new class', positiveInt('--shots'), 50)
  .option('--epochs <n>', 'epochs on the few-shot set', positiveInt('--epochs'), 40)
  .option('--seed <n>', 'seed of init and shuffling', Number, 1)
  .option('--quick', 'a short run: pre-train 1 epoch on 3,000 images, test on 1,000', false)
  .option(...dataOption)
  .option('--no-progress', 'no progress bar while pre-training');
program.parse();
const options = program.opts<{ pretrainEpochs: number; shots: number; epochs: number; seed: number; quick: boolean; data: string; progress: boolean }>();

/** The examples whose class is in [from, from + 5), labels shifted to [0, 5); at most `limit` (first ones), or `perClass` of each class. */
function classes(d: Dataset, from: number, limit = Infinity, perClass = Infinity): Dataset {
  const width = d.features.length / d.length;
  const rows: number[] = [];
  const counts = new Array<number>(5).fill(0);
  for (let i = 0; i < d.length && rows.length < limit; i++) {
    const c = d.labels[i]! - from;
    if (c >= 0 && c < 5 && counts[c]! < perClass) {
      counts[c]!++;
      rows.push(i);
    }
  }
  const features = new Float32Array(rows.length * width);
  rows.forEach((r, j) => features.set(d.features.subarray(r * width, (r + 1) * width), j * width));
  return { ...d, features, labels: Int32Array.from(rows, (r) => d.labels[r]! - from), length: rows.length, classes: 5, shape: [28, 28, 1] };
}

const data = loadImages(options.data, { fail: (m) => program.error(m) });
// Standardised with the pre-training pixels' mean and deviation (what the base was trained on).
const pretrainRaw = classes(data.train, 0, options.quick ? 3000 : Infinity);
const [pretrain, fewShot, test] = standardize(pretrainRaw, [
  pretrainRaw, classes(data.train, 5, Infinity, options.shots), classes(data.test, 5, options.quick ? 1000 : Infinity),
]).sets as [Dataset, Dataset, Dataset];

const architecture = (): Layer[] => [
  conv2d(16, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2),
  conv2d(32, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2),
  flatten(), dense(128, { kernelInitializer: heNormal() }), relu(), dense(5),
];
const engine = defaultEngine();
console.log(`data: pre-training ${pretrain.length} images of classes 0-4; few-shot ${fewShot.length} images of classes 5-9 (${options.shots} per class); test ${test.length} images of classes 5-9`);
console.log(`compute: ${engine.compute.name}, ${engine.compute.threads} thread(s)`);

// 1. Pre-train on classes 0-4 and save, as a model one would later load.
const base = sequential(architecture(), { inputShape: [28, 28, 1], seed: options.seed, name: 'fashion-0-4' });
await lastValueFrom(
  base.train(pretrain, { epochs: options.quick ? 1 : options.pretrainEpochs, batchSize: 64, loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }), metrics: ['accuracy'] })
    .pipe(logProgress({ bar: options.progress ? 'auto' : false })),
);
const dir = mkdtempSync(join(tmpdir(), 'rxgrad-transfer-'));
await saveModel(base, join(dir, 'base'));
base.dispose();
const { model: loaded } = await loadModel(join(dir, 'base'));
rmSync(dir, { recursive: true, force: true });

// 2. Three ways to learn classes 5-9 from the few-shot set.
interface Result {
  name: string;
  accuracy: number;
  seconds: number;
  trainable: number;
  note: string;
}
async function learn(name: string, model: Model, optimizer: Optimizer, note: (model: Model) => string): Promise<Result> {
  const started = performance.now();
  await lastValueFrom(model.train(fewShot, { epochs: options.epochs, batchSize: 25, loss: softmaxCrossEntropy(), optimizer }));
  const seconds = (performance.now() - started) / 1000;
  const { accuracy } = await model.evaluate(batches(test));
  const trainable = model.parameters().filter((p) => p.trainable).reduce((n, p) => n + p.size, 0);
  return { name, accuracy: accuracy!, seconds, trainable, note: note(model) };
}
const batches = (d: Dataset) => batchesFromArrays(d, 256);

const baseWeights = loaded.getWeights();
const unchangedBase = (model: Model): string => {
  const w = model.getWeights();
  const same = [...baseWeights].filter(([n]) => w.has(n) && !n.startsWith(model.layers.at(-1)!.name)).every(([n, v]) => w.get(n)!.every((x, i) => Object.is(x, v[i])));
  return same ? 'base weights bitwise unchanged' : 'base weights changed';
};
const results: Result[] = [];
const frozen = transferModel(loaded, { head: [dense(5)], weights: 'copy', freeze: true, seed: options.seed + 1 });
frozen.summary();
results.push(await learn('frozen base + new head', frozen, adam({ learningRate: 1e-3 }), unchangedBase));
const tuned = transferModel(loaded, { head: [dense(5)], weights: 'copy', seed: options.seed + 1 });
results.push(await learn('fine-tuned base (0.1× lr) + new head', tuned, adam({ learningRate: 1e-3, parameterGroups: [{ parameters: 'conv*', learningRateScale: 0.1 }, { parameters: 'dense_1/*', learningRateScale: 0.1 }] }), unchangedBase));
const scratch = sequential(architecture(), { inputShape: [28, 28, 1], seed: options.seed + 1, name: 'scratch' });
results.push(await learn('from scratch', scratch, adam({ learningRate: 1e-3 }), () => ''));

console.log(`\nclasses 5-9 from ${fewShot.length} examples, ${options.epochs} epochs of batch 25; test accuracy on ${test.length} images:`);
console.log(`${'model'.padEnd(38)}${'test acc'.padStart(9)}${'train s'.padStart(9)}${'trainable'.padStart(11)}  note`);
for (const r of results) {
  console.log(`${r.name.padEnd(38)}${`${(r.accuracy * 100).toFixed(2)}%`.padStart(9)}${r.seconds.toFixed(2).padStart(9)}${String(r.trainable).padStart(11)}  ${r.note}`);
}
console.log(`frozen-base training speed-up over the fine-tuned base: ${(results[1]!.seconds / results[0]!.seconds).toFixed(2)}x`);
for (const m of [loaded, frozen, tuned, scratch]) m.dispose();
await closeDefaultEngine();
