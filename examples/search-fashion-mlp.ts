/**
 * Hyper-parameter search on the Fashion-MNIST MLP (learning rate, width, dropout, batch size): ASHA against
 * random search with the same total budget (epochs over a training subset) and the same concurrency, for
 * several seeds. A budget unit is one epoch over the training subset; the metric is the accuracy on a
 * validation split taken from the training set (the test set is not looked at). Prints, per strategy and
 * seed, the best validation accuracy found by a quarter, half, three quarters and all of the search's wall
 * time, the number of configurations tried, and a summary.
 *
 * Usage:
 *   npx tsx examples/search-fashion-mlp.ts                 # 10,000 train / 5,000 validation, budget 60 epochs, 3 seeds
 *   npx tsx examples/search-fashion-mlp.ts --quick         # 2,000 / 1,000, budget 18, 1 seed (the test's mode)
 */
import { Command } from 'commander';
import { filter, finalize, lastValueFrom, map, tap, type Observable } from 'rxjs';
import {
  adam, choice, closeDefaultEngine, defaultEngine, dense, dropout, integer, logUniform, relu, search, sequential, softmaxCrossEntropy, uniform,
  type Config, type SearchDone, type SearchTable, type StrategyName, type TrialContext,
} from '../src/index.ts';
import type { Dataset } from '../src/data/index.ts';
import { loadImages, positiveInt } from './common.ts';

const program = new Command()
  .name('search-fashion-mlp')
  .description('ASHA vs random search on the Fashion-MNIST MLP, same budget and concurrency')
  .option('--train <n>', 'training examples (the first n of the training set)', positiveInt('--train'), 10_000)
  .option('--validation <n>', 'validation examples (the last n of the training set)', positiveInt('--validation'), 5_000)
  .option('--budget <units>', 'total epochs all trials of one search may use', positiveInt('--budget'), 60)
  .option('--max <units>', 'epochs of one trial at most (the top rung)', positiveInt('--max'), 9)
  .option('--concurrency <n>', 'trials at once', positiveInt('--concurrency'), 2)
  .option('--seeds <list>', 'search seeds, comma-separated', '1,2,3')
  .option('--quick', 'a short run: 2,000 / 1,000 examples, budget 18, max 3, seed 1', false)
  .option('--data <name>', "'fashion-mnist' or 'mnist'", 'fashion-mnist');
program.parse();
const o = program.opts<{ train: number; validation: number; budget: number; max: number; concurrency: number; seeds: string; quick: boolean; data: string }>();
if (o.quick) Object.assign(o, { train: 2000, validation: 1000, budget: 18, max: 3, seeds: '1' });
const seeds = o.seeds.split(',').map(Number);
if (seeds.some((s) => !Number.isSafeInteger(s))) program.error(`--seeds must be integers, got '${o.seeds}'`);

const data = loadImages(o.data, { fail: (m) => program.error(m) });
if (o.train + o.validation > data.train.length) program.error(`--train + --validation exceed the ${data.train.length} training examples`);
const rows = (d: Dataset, start: number, n: number): Dataset => ({
  ...d, features: d.features.subarray(start * 784, (start + n) * 784), labels: d.labels.subarray(start, start + n), length: n,
});
const train = rows(data.train, 0, o.train);
const validation = rows(data.train, data.train.length - o.validation, o.validation);

const space = {
  learningRate: logUniform(1e-4, 3e-2),
  width: integer(32, 512, { log: true }),
  dropout: uniform(0, 0.5),
  batchSize: choice([32, 64, 128, 256]),
};

/** One configuration: an MLP trained epoch by epoch; each epoch's validation accuracy is one metric. Unsubscribing stops it. */
function trial(config: Config, context: TrialContext): Observable<number> {
  const model = sequential([dense(Number(config['width'])), relu(), dropout(Number(config['dropout'])), dense(10)], { inputShape: [784], seed: context.seed });
  return model
    .train(train, {
      epochs: context.units, batchSize: Number(config['batchSize']), loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: Number(config['learningRate']) }),
      validation,
    })
    .pipe(
      filter((p) => p.kind === 'epoch'),
      map((p) => (p.kind === 'epoch' ? p.validation!.accuracy! : Number.NaN)),
      finalize(() => model.dispose()),
    );
}

interface Run {
  strategy: StrategyName;
  seed: number;
  seconds: number;
  /** Best validation accuracy so far, at each reported metric's time. */
  curve: { t: number; best: number }[];
  table: SearchTable;
}
async function runSearch(strategy: StrategyName, seed: number): Promise<Run> {
  const started = performance.now();
  const curve: Run['curve'] = [];
  let best = 0;
  const done = await lastValueFrom(
    search({ space, trial, strategy: strategy === 'asha' ? { name: 'asha', eta: 3 } : 'random', budget: { min: 1, max: o.max, total: o.budget }, concurrency: o.concurrency, seed }).pipe(
      tap((e) => {
        if (e.kind !== 'trial' || e.status !== 'reported') return;
        best = Math.max(best, e.metric!);
        curve.push({ t: (performance.now() - started) / 1000, best });
      }),
      filter((e): e is SearchDone => e.kind === 'done'),
    ),
  );
  return { strategy, seed, seconds: (performance.now() - started) / 1000, curve, table: done.table };
}

const bestBy = (run: Run, t: number) => run.curve.filter((c) => c.t <= t).at(-1)?.best ?? 0;
const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
const engine = defaultEngine();
console.log(`data: ${o.train} training / ${o.validation} validation examples of ${data.train.name}; compute: ${engine.compute.name}, ${engine.compute.threads} thread(s)`);
console.log(`budget per search: ${o.budget} epochs in all, at most ${o.max} per trial; concurrency ${o.concurrency}; space: learningRate log[1e-4, 3e-2], width log-int[32, 512], dropout [0, 0.5], batchSize {32, 64, 128, 256}`);
const runs: Run[] = [];
for (const seed of seeds) {
  // Alternate the order between seeds so neither strategy always runs on a warmer (or busier) machine.
  const order: StrategyName[] = seed % 2 === 0 ? ['random', 'asha'] : ['asha', 'random'];
  for (const strategy of order) {
    const run = await runSearch(strategy, seed);
    runs.push(run);
    const best = run.table.best!;
    console.log(`${strategy.padEnd(6)} seed ${seed}: best ${pct(best.metric!)} after ${best.budget} epochs (${JSON.stringify(best.config)}), ${run.table.rows.length} configurations, ${run.seconds.toFixed(1)} s`);
  }
}
console.log('\nbest validation accuracy found by a fraction of the wall time (each search its own time; the last column is its duration):');
console.log(`${'strategy'.padEnd(8)}${'seed'.padStart(5)}${'25%'.padStart(9)}${'50%'.padStart(9)}${'75%'.padStart(9)}${'100%'.padStart(9)}${'configs'.padStart(9)}${'seconds'.padStart(9)}`);
for (const r of runs) {
  const cells = [0.25, 0.5, 0.75, 1].map((f) => pct(bestBy(r, f * r.seconds)).padStart(9)).join('');
  console.log(`${r.strategy.padEnd(8)}${String(r.seed).padStart(5)}${cells}${String(r.table.rows.length).padStart(9)}${r.seconds.toFixed(1).padStart(9)}`);
}
for (const strategy of ['asha', 'random'] as const) {
  const mine = runs.filter((r) => r.strategy === strategy);
  const mean = mine.reduce((a, r) => a + r.table.best!.metric!, 0) / mine.length;
  const seconds = mine.reduce((a, r) => a + r.seconds, 0) / mine.length;
  console.log(`${strategy}: mean best ${pct(mean)} over ${mine.length} seed(s), mean ${seconds.toFixed(1)} s per search`);
}
await closeDefaultEngine();
