/**
 * Magnitude pruning on Fashion-MNIST, as TF Model Optimization's guide does it: train a dense model, then
 * fine-tune copies of it while pruning to 50, 80 and 90% sparsity (polynomial decay from 0 over the first
 * two thirds of the fine-tuning, masks recomputed every tenth of it), strip the wrappers and save. Also
 * structured pruning: half the units / filters removed by norm, then fine-tuned. Prints per variant the
 * test accuracy, the kernels' sparsity and the size of the saved weights (no optimizer state) as written and
 * gzip-compressed; the dense model
 * fine-tuned as long without pruning is the equal-epochs reference.
 *
 * Usage:
 *   npx tsx examples/pruning.ts --model mlp     # 784-300-100-10, 5 epochs + 2 of pruning
 *   npx tsx examples/pruning.ts --model cnn     # conv16-conv32 CNN, 3 epochs + 1 of pruning
 *   npx tsx examples/pruning.ts --quick         # MLP on 3,000 / 1,000 examples (the test's mode)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { lastValueFrom } from 'rxjs';
import {
  adam, batchesFromArrays, closeDefaultEngine, compressedSize, conv2d, defaultEngine, dense, flatten, heNormal, maxPool2d, polynomialDecay,
  pruneLowMagnitude, pruneStructured, relu, saveModel, sequential, softmaxCrossEntropy, sparsityReport, stripPruning, transferModel, updatePruning,
  type GradientOperator, type Layer, type Model,
} from '../src/index.ts';
import type { Dataset } from '../src/data/index.ts';
import { firstExamples, loadImages, positiveInt } from './common.ts';

const program = new Command()
  .name('pruning')
  .description('Unstructured (50/80/90%) and structured (50%) pruning of a Fashion-MNIST MLP or CNN: accuracy, sparsity, gzip size')
  .option('--model <kind>', "'mlp' (784-300-100-10) or 'cnn'", 'mlp')
  .option('--epochs <n>', 'epochs of the dense model (default mlp 5, cnn 3)', positiveInt('--epochs'))
  .option('--fine-tune <n>', 'epochs of fine-tuning with pruning (default mlp 2, cnn 1)', positiveInt('--fine-tune'))
  .option('--seed <n>', 'seed', Number, 1)
  .option('--quick', 'a short run: MLP, 3,000 / 1,000 examples, 2 + 1 epochs', false)
  .option('--data <name>', "'fashion-mnist' or 'mnist'", 'fashion-mnist');
program.parse();
const o = program.opts<{ model: string; epochs?: number; fineTune?: number; seed: number; quick: boolean; data: string }>();
if (o.model !== 'mlp' && o.model !== 'cnn') program.error(`--model must be 'mlp' or 'cnn', got '${o.model}'`);
const cnn = o.model === 'cnn';
const epochs = o.quick ? 2 : (o.epochs ?? (cnn ? 3 : 5));
const fineTune = o.quick ? 1 : (o.fineTune ?? (cnn ? 1 : 2));
const BATCH = 64;

const shape = cnn ? [28, 28, 1] : [784];
const data = loadImages(o.data, { fail: (m) => program.error(m) });
const train = firstExamples(data.train, o.quick ? 3000 : undefined, shape);
const test = firstExamples(data.test, o.quick ? 1000 : undefined, shape);
const layers = (): Layer[] =>
  cnn
    ? [conv2d(16, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2), conv2d(32, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2), flatten(), dense(10)]
    : [dense(300), relu(), dense(100), relu(), dense(10)];

async function fit(model: Model, n: number, gradientOperators: GradientOperator[] = []): Promise<void> {
  await lastValueFrom(model.train(train, { epochs: n, batchSize: BATCH, loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }), gradientOperators }));
}
const accuracy = async (model: Model, d: Dataset = test) => (await model.evaluate(batchesFromArrays(d, 256))).accuracy!;
const dir = mkdtempSync(join(tmpdir(), 'rxgrad-pruning-'));
let saves = 0;
/** A copy without optimizer state: what one would ship. */
const exported = (model: Model) => transferModel(model, { layers: () => true, head: [], weights: 'copy', name: model.name });
async function describe(name: string, model: Model, started: number): Promise<void> {
  const copy = exported(model);
  const { bytes, gzipBytes } = await compressedSize(await saveModel(copy, join(dir, `m${saves++}`)));
  copy.dispose();
  const kernels = sparsityReport(model);
  const total = kernels.reduce((n, k) => n + k.size, 0);
  const zeros = kernels.reduce((n, k) => n + k.zeros, 0);
  const params = model.parameters().reduce((n, p) => n + p.size, 0);
  console.log(
    `${name.padEnd(30)}${`${((await accuracy(model)) * 100).toFixed(2)}%`.padStart(9)}${`${((zeros / total) * 100).toFixed(1)}%`.padStart(9)}` +
      `${String(params).padStart(9)}${(bytes / 1024).toFixed(1).padStart(10)}${(gzipBytes / 1024).toFixed(1).padStart(10)}${((performance.now() - started) / 1000).toFixed(1).padStart(8)}` +
      `  ${kernels.map((k) => `${k.layer} ${(k.sparsity * 100).toFixed(1)}%`).join(', ')}`,
  );
}

const engine = defaultEngine();
console.log(`${o.model} on ${train.name} (${train.length} / ${test.length}); dense ${epochs} epochs, then ${fineTune} epoch(s) of fine-tuning; compute ${engine.compute.name}, ${engine.compute.threads} thread(s)`);
let started = performance.now();
const base = sequential(layers(), { inputShape: shape, seed: o.seed, name: `fashion-${o.model}` });
await fit(base, epochs);
const fineSteps = fineTune * Math.ceil(train.length / BATCH);
console.log(`${'variant'.padEnd(30)}${'test acc'.padStart(9)}${'sparsity'.padStart(9)}${'params'.padStart(9)}${'KiB'.padStart(10)}${'gzip KiB'.padStart(10)}${'s'.padStart(8)}  kernels`);
await describe(`dense (${epochs} epochs)`, base, started);

started = performance.now();
const plain = exported(base);
await fit(plain, fineTune);
await describe(`dense (+${fineTune} epochs, no pruning)`, plain, started);
plain.dispose();

for (const sparsity of [0.5, 0.8, 0.9]) {
  started = performance.now();
  // TF-MOT's recipe: from the trained model, sparsity rising from 0 over the first 2/3 of fine-tuning.
  const schedule = polynomialDecay({
    initialSparsity: 0, finalSparsity: sparsity, beginStep: base.stepCount, endStep: base.stepCount + Math.floor((2 * fineSteps) / 3),
    frequency: Math.max(1, Math.floor(fineSteps / 10)),
  });
  const pruned = pruneLowMagnitude(base, { schedule });
  await fit(pruned, fineTune, [updatePruning(pruned)]);
  const stripped = stripPruning(pruned);
  await describe(`unstructured ${sparsity * 100}%`, stripped, started);
  pruned.dispose();
  stripped.dispose();
}

started = performance.now();
const { model: small, layers: removed } = pruneStructured(base, { fraction: 0.5 });
console.log(`structured 50%: ${removed.map((r) => `${r.layer} ${r.before}→${r.after}`).join(', ')}; before fine-tuning ${((await accuracy(small)) * 100).toFixed(2)}%`);
await fit(small, fineTune);
await describe(`structured 50% (+${fineTune} epochs)`, small, started);
small.dispose();
base.dispose();
rmSync(dir, { recursive: true, force: true });
await closeDefaultEngine();
