/**
 * Sequence classification: each 28×28 image is read row by row as a 28-step sequence of 28 features
 * into an LSTM (128 units), whose last state feeds a dense layer of 10 logits. Adam 1e-3, batch 64,
 * test accuracy after every epoch.
 *
 * Usage:
 *   npx tsx examples/fashion-mnist-lstm.ts                 # Fashion-MNIST, 5 epochs
 *   npx tsx examples/fashion-mnist-lstm.ts --quick         # 2,000 / 500 examples, 1 epoch (the test's mode)
 *   npx tsx examples/fashion-mnist-lstm.ts --data mnist    # the embedded MNIST digits
 * Without the Debian package dataset-fashion-mnist it says so and uses the embedded MNIST digits.
 */
import { Command } from 'commander';
import { lastValueFrom } from 'rxjs';
import { adam, batchesFromArrays, closeDefaultEngine, defaultEngine, dense, logProgress, lstm, sequential, softmaxCrossEntropy } from '../src/index.ts';
import { FASHION_MNIST_DIR } from '../src/data/index.ts';
import { dashboardOption, firstExamples, keepServing, loadImages, positiveInt, startDashboard, watchWith } from './common.ts';

const program = new Command()
  .name('fashion-mnist-lstm')
  .description('Classify Fashion-MNIST images read as 28 rows of 28 pixels by an LSTM.')
  .option('--data <name>', "'fashion-mnist' (default; falls back to the embedded digits when missing) or 'mnist'", 'fashion-mnist')
  .option('--epochs <n>', 'epochs (default 5; 1 with --quick)', positiveInt('--epochs'))
  .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 64)
  .option('--units <n>', 'LSTM units', positiveInt('--units'), 128)
  .option('--learning-rate <lr>', 'Adam learning rate', Number, 1e-3)
  .option('--seed <n>', 'seed of init and shuffling', Number, 1)
  .option('--train <n>', 'use only the first n training examples', positiveInt('--train'))
  .option('--test <n>', 'use only the first n test examples', positiveInt('--test'))
  .option('--fashion-dir <dir>', 'directory of the Fashion-MNIST IDX files', FASHION_MNIST_DIR)
  .option('--quick', 'a short run: 2,000 training and 500 test examples, 1 epoch', false)
  .option('--no-progress', 'print one line per epoch instead of a progress bar')
  .option(...dashboardOption);
program.parse();
const options = program.opts<{
  data: string; epochs?: number; batchSize: number; units: number; learningRate: number; seed: number;
  train?: number; test?: number; fashionDir: string; quick: boolean; progress: boolean; dashboard?: true | number;
}>();

const data = loadImages(options.data, { fashionDir: options.fashionDir, fallback: true, fail: (m) => program.error(m) });
// The same pixels seen as 28 steps of 28 features.
const train = firstExamples(data.train, options.train ?? (options.quick ? 2000 : undefined), [28, 28]);
const test = firstExamples(data.test, options.test ?? (options.quick ? 500 : undefined), [28, 28]);
const epochs = options.epochs ?? (options.quick ? 1 : 5);

const model = sequential([lstm({ units: options.units }), dense(10)], { inputShape: [28, 28], seed: options.seed, name: 'rows-lstm' });
model.summary();
const engine = defaultEngine();
console.log(`data: ${train.name} ${train.length} examples, ${test.name} ${test.length}; compute: ${engine.compute.name}, ${engine.compute.threads} thread(s)`);

const board = await startDashboard(options.dashboard, { model, validation: test, title: 'rows-LSTM' });
const started = performance.now();

await lastValueFrom(
  model
    .train(train, {
      epochs, batchSize: options.batchSize, loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: options.learningRate }),
      metrics: ['accuracy'], validation: test,
    })
    .pipe(watchWith(board), logProgress({ bar: options.progress ? 'auto' : false, validationName: 'test' })),
);
const final = await model.evaluate(batchesFromArrays(test, 256), { loss: softmaxCrossEntropy() });
console.log(`final test accuracy: ${(final.accuracy! * 100).toFixed(2)}% (${final.examples} examples, loss ${final.loss.toFixed(4)})`);
console.log(`total time: ${((performance.now() - started) / 1000).toFixed(1)} s`);
await keepServing(board);
await closeDefaultEngine();
