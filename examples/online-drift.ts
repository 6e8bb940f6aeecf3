/**
 * Concept drift, learnt online: a stream of labelled MNIST digits (the embedded set, cycled)
 * whose class mapping is permuted after `--switch` steps — digit d is then labelled p(d), a
 * permutation without fixed points. The model learns by test-then-train (each batch is predicted
 * and scored before the model learns from it), so the rolling accuracy shows the drop when the
 * mapping changes and the recovery as the model relearns.
 *
 * Prints plot-ready CSV on stdout (`step,rolling_accuracy,batch_accuracy`), comment lines start
 * with `#`; the last one summarises: rolling accuracy just before the switch, one window after
 * it (the trough: the window then holds only post-switch predictions), and at the end.
 *
 * Usage:
 *   npx tsx examples/online-drift.ts > drift.csv        # 1,500 steps of 32, switch at 600
 *   npx tsx examples/online-drift.ts --quick             # 500 steps, switch at 250 (a few seconds)
 */
import { Command, InvalidArgumentError } from 'commander';
import { lastValueFrom, tap } from 'rxjs';
import { adam, batchFromArrays, closeDefaultEngine, dense, relu, sequential, softmaxCrossEntropy, type Batch } from '../src/index.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';
import { pullThrough } from '../src/streams/sources.ts';
import { testThenTrain } from '../src/streams/test-then-train.ts';
import { dashboardOption, keepServing, startDashboard, watchWith } from './common.ts';

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
const options = new Command()
  .name('online-drift')
  .description('Test-then-train on a digit stream whose labels are permuted mid-stream; prints rolling accuracy as CSV.')
  .option('--quick', 'a short run (500 steps, switch at 250)')
  .option('--steps <n>', 'batches in the stream', positiveInt('--steps'))
  .option('--switch <n>', 'steps before the class mapping is permuted', positiveInt('--switch'))
  .option('--batch-size <n>', 'examples per batch', positiveInt('--batch-size'), 32)
  .option('--window <n>', 'rolling window, in examples', positiveInt('--window'), 640)
  .option('--learning-rate <lr>', 'Adam learning rate', Number, 2e-3)
  .option('--seed <n>', 'model seed', Number, 1)
  .option(...dashboardOption)
  .parse()
  .opts<{ quick?: boolean; steps?: number; switch?: number; batchSize: number; window: number; learningRate: number; seed: number; dashboard?: true | number }>();

const steps = options.steps ?? (options.quick ? 500 : 1500);
const switchAt = options.switch ?? (options.quick ? 250 : 600);
if (switchAt >= steps) throw new RangeError(`--switch (${switchAt}) must be below --steps (${steps})`);
const { train } = loadEmbeddedMnist({ train: 8000, test: 0 });
const width = train.features.length / train.length;
/** After the switch, digit d is labelled PERMUTATION[d]: a fixed permutation with no fixed points. */
const PERMUTATION = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4];

/** The stream: batch k holds the next `batchSize` digits (cycling through the set), labels mapped after the switch. */
function* stream(): Generator<Batch> {
  let cursor = 0;
  for (let k = 0; k < steps; k++) {
    const n = options.batchSize;
    const features = new Float32Array(n * width);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const row = cursor++ % train.length;
      features.set(train.features.subarray(row * width, (row + 1) * width), i * width);
      const digit = train.labels[row]!;
      labels[i] = k < switchAt ? digit : PERMUTATION[digit]!;
    }
    yield batchFromArrays({ features, shape: train.shape, labels });
  }
}

const model = sequential([dense(64), relu(), dense(10)], { inputShape: train.shape, seed: options.seed, name: 'drift-mlp' });
const windowSteps = Math.ceil(options.window / options.batchSize);
console.log(`# online-drift: ${steps} steps of ${options.batchSize}, class mapping permuted after step ${switchAt}, rolling window ${options.window} examples`);
console.log('step,rolling_accuracy,batch_accuracy');
const rolling: number[] = [];
const board = await startDashboard(options.dashboard, { model, title: 'online drift (test-then-train)' });
const started = performance.now();
await lastValueFrom(
  // Pulled at the model's pace: the generator makes the next batch only when the last step is done.
  pullThrough(stream(), testThenTrain(model, { loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: options.learningRate }), window: options.window })).pipe(
    watchWith(board),
    tap((r) => {
      rolling.push(r.rolling.accuracy!);
      console.log(`${r.step},${r.rolling.accuracy!.toFixed(4)},${r.accuracy!.toFixed(4)}`);
    }),
  ),
);
const before = rolling[switchAt - 1]!;
const after = rolling[Math.min(steps, switchAt + windowSteps) - 1]!;
const end = rolling[steps - 1]!;
const seconds = (performance.now() - started) / 1000;
console.log(`# ${(steps / seconds).toFixed(0)} steps/s`);
console.log(`# summary before=${before.toFixed(4)} after=${after.toFixed(4)} end=${end.toFixed(4)} switch=${switchAt} window_steps=${windowSteps}`);
await keepServing(board);
model.dispose();
await closeDefaultEngine();
