/**
 * An online recommender: ratings arrive as a stream and a biased matrix factorisation (or its
 * neural variant) learns from each batch after predicting it (test-then-train), so the rolling
 * RMSE is measured on ratings the model had not seen. Sources: the synthetic generator (default:
 * rank 10, 2,000 users × 4,000 items, 1M ratings, σ = 0.5, new users and items over time), a
 * MovieLens file (`u.data` or `ratings.csv`, in time order), or a Redis Stream whose entries have
 * `user`, `item` and `rating` fields. Bad records follow `--on-bad-record`.
 *
 * At the end: the rolling RMSE over the last `--window` ratings next to two batch baselines fitted
 * on every earlier rating and scored on the same last ratings (biases only; truncated SVD of the
 * residual matrix), the best possible RMSE when the data is synthetic (σ), ranking metrics on a
 * held-out sample never streamed, and top-k items for a few users.
 *
 * Usage:
 *   npx tsx examples/recommender.ts                                  # synthetic, 1M ratings
 *   npx tsx examples/recommender.ts --file ml-100k/u.data --window 10000
 *   npx tsx examples/recommender.ts --redis redis://127.0.0.1:6379 --stream ratings --max-users 1000 --max-items 2000
 *   npx tsx examples/recommender.ts --quick                          # small synthetic run (tests)
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { positiveInt } from './common.ts';
import { Redis } from 'ioredis';
import { lastValueFrom, tap } from 'rxjs';
import {
  adam, biasedMatrixFactorization, closeDefaultEngine, fitBiases, meanSquaredError, neuralRecommender, pullThrough, rankingMetrics, RatingAccumulator,
  readMovieLens, Recommender, regressionErrors, streamCounters, syntheticRatings, testThenTrain, truncatedSvd, type Batch, type Interactions,
  type ProgressiveReport,
} from '../src/index.ts';
import { Random } from '../src/random.ts';

const options = new Command()
  .name('recommender')
  .description('Online recommendation with test-then-train: rolling RMSE, baselines, ranking metrics, top-k.')
  .option('--quick', 'a small synthetic run (200 users × 400 items, 60,000 ratings)')
  .option('--file <path>', 'a MovieLens ratings file (u.data or ratings.csv)')
  .option('--redis <url>', 'read ratings from a Redis Stream (entries with user, item, rating fields)')
  .option('--stream <key>', 'the Redis Stream key', 'ratings')
  .option('--ratings <n>', 'synthetic ratings', positiveInt('--ratings'), 1_000_000)
  .option('--users <n>', 'synthetic users', positiveInt('--users'), 2000)
  .option('--items <n>', 'synthetic items', positiveInt('--items'), 4000)
  .option('--noise <sigma>', 'synthetic noise σ (the best possible RMSE)', Number, 0.5)
  .option('--max-users <n>', 'user table size (ids must be below; default from the data)', positiveInt('--max-users'))
  .option('--max-items <n>', 'item table size', positiveInt('--max-items'))
  .addOption(new Option('--model <kind>', 'biased MF or the MLP over embeddings').choices(['mf', 'neural']).default('mf'))
  .option('--factors <k>', 'latent factors', positiveInt('--factors'), 10)
  .option('--batch-size <n>', 'ratings per step (1: one at a time)', positiveInt('--batch-size'), 1024)
  .option('--learning-rate <lr>', 'Adam learning rate', Number, 0.01)
  .option('--window <n>', 'rolling window of the RMSE, in ratings', positiveInt('--window'), 100_000)
  .option('--held-out <fraction>', 'share of ratings withheld from the stream for ranking metrics', Number, 0.02)
  .option('--top <k>', 'k of the recommendations and ranking metrics', positiveInt('--top'), 10)
  .addOption(new Option('--on-bad-record <policy>', 'what a malformed rating does').choices(['error', 'skip']).default('error'))
  .option('--seed <n>', 'seed of the data, split and model', Number, 1)
  .parse()
  .opts<{
    quick?: boolean; file?: string; redis?: string; stream: string; ratings: number; users: number; items: number; noise: number; maxUsers?: number; maxItems?: number;
    model: 'mf' | 'neural'; factors: number; batchSize: number; learningRate: number; window: number; heldOut: number; top: number; onBadRecord: 'error' | 'skip'; seed: number;
  }>();

const quick = options.quick ?? false;
if (quick) Object.assign(options, { ratings: 60_000, users: 200, items: 400, window: 10_000, factors: 8 });

/** Reads every entry of a Redis Stream (XRANGE pages) as records, until the end at the time of reading. */
async function* redisRatings(url: string, key: string): AsyncGenerator<unknown> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    let start = '-';
    for (;;) {
      const entries = await redis.xrange(key, start, '+', 'COUNT', 1000);
      for (const [id, fields] of entries) {
        start = `(${id}`;
        const record: Record<string, number> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) record[fields[i]!] = fields[i + 1]!.trim() === '' ? Number.NaN : Number(fields[i + 1]);
        yield Object.keys(record).length === 0 ? null : record;
      }
      if (entries.length < 1000) return;
    }
  } finally {
    redis.disconnect();
  }
}

// ---- the data: all of it in memory, in stream order (Redis entries are checked by the bad-record policy as they are read).
let data: Interactions;
let sigma: number | null = null;
const counters = streamCounters();
if (options.redis) {
  if (!options.maxUsers || !options.maxItems) throw new InvalidArgumentError('--redis needs --max-users and --max-items (the table sizes ids are checked against)');
  const accumulator = new RatingAccumulator({ maxUsers: options.maxUsers, maxItems: options.maxItems, onBadRecord: options.onBadRecord, counters, where: `redis stream '${options.stream}'` });
  for await (const record of redisRatings(options.redis, options.stream)) accumulator.add(record);
  const batch = accumulator.take();
  if (!batch) throw new RangeError(`redis stream '${options.stream}' holds no valid rating`);
  data = {
    users: batch.getChild('user')!.toArray() as Int32Array, items: batch.getChild('item')!.toArray() as Int32Array,
    ratings: Float32Array.from(batch.getChild('targets')!.toArray() as Iterable<{ get(i: number): number }>, (v) => v.get(0)),
  };
  console.log(`# redis stream '${options.stream}': ${data.ratings.length} ratings, ${counters.skipped} bad records skipped`);
} else if (options.file) {
  data = await readMovieLens(options.file);
  console.log(`# ${options.file}: ${data.ratings.length} ratings`);
} else {
  const t0 = performance.now();
  const synthetic = syntheticRatings({ users: options.users, items: options.items, ratings: options.ratings, rank: 10, noise: options.noise, seed: options.seed });
  data = synthetic;
  sigma = synthetic.noise;
  console.log(`# synthetic: ${options.users} users × ${options.items} items, ${options.ratings} ratings, rank 10, σ = ${sigma} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
let maxUsers = options.maxUsers ?? 0;
let maxItems = options.maxItems ?? 0;
for (let r = 0; r < data.ratings.length; r++) {
  if (!options.maxUsers) maxUsers = Math.max(maxUsers, data.users[r]! + 1);
  if (!options.maxItems) maxItems = Math.max(maxItems, data.items[r]! + 1);
}

// ---- held-out sample (never streamed) for the ranking metrics.
const rng = new Random(options.seed ^ 0x5eed);
const held = new Uint8Array(data.ratings.length).map(() => (rng.uniform() < options.heldOut ? 1 : 0));
const pick = (keep: (r: number) => boolean): Interactions => {
  const rows = [...Array(data.ratings.length).keys()].filter(keep);
  return { users: Int32Array.from(rows, (r) => data.users[r]!), items: Int32Array.from(rows, (r) => data.items[r]!), ratings: Float32Array.from(rows, (r) => data.ratings[r]!) };
};
const stream = pick((r) => held[r] === 0);
const heldOut = pick((r) => held[r] === 1);
const n = stream.ratings.length;
const window = Math.min(options.window, n);

// ---- the model and the online pass.
let mean = 0;
for (let r = 0; r < Math.min(n, 1000); r++) mean += stream.ratings[r]! / Math.min(n, 1000);
const config = { maxUsers, maxItems, factors: options.factors, globalMean: mean, seed: options.seed };
const model = options.model === 'mf' ? biasedMatrixFactorization(config) : neuralRecommender(config);
model.summary();
function* batches(): Generator<Batch> {
  const accumulator = new RatingAccumulator({ maxUsers, maxItems, onBadRecord: options.onBadRecord, counters });
  for (let r = 0; r < n; r++) {
    accumulator.add({ user: stream.users[r]!, item: stream.items[r]!, rating: stream.ratings[r]! });
    if (accumulator.count === options.batchSize) yield accumulator.take()!;
  }
  const rest = accumulator.take();
  if (rest) yield rest;
}
const started = performance.now();
let last: ProgressiveReport | null = null;
let nextLog = 0;
const logEvery = Math.max(options.batchSize, Math.floor(n / 10));
await lastValueFrom(pullThrough(batches(), testThenTrain(model, { loss: meanSquaredError(), optimizer: adam({ learningRate: options.learningRate, lazy: true }), window, counters })).pipe(
  tap((report) => {
    last = report;
    if (report.examples >= nextLog || report.examples === n) {
      nextLog += logEvery;
      const seconds = (performance.now() - started) / 1000;
      console.log(`progress ${report.examples}/${n} rolling_rmse=${report.rolling.rmse!.toFixed(4)} rolling_mae=${report.rolling.mae!.toFixed(4)} ratings_per_s=${Math.round(report.examples / seconds)}`);
    }
  }),
));
const seconds = (performance.now() - started) / 1000;
const final = last! as ProgressiveReport;

// ---- baselines fitted on everything before the window, scored on the window's ratings.
const before = { users: stream.users.subarray(0, n - window), items: stream.items.subarray(0, n - window), ratings: stream.ratings.subarray(0, n - window) };
const inWindow = { users: stream.users.subarray(n - window), items: stream.items.subarray(n - window), ratings: stream.ratings.subarray(n - window) };
const biases = fitBiases(before, { users: maxUsers, items: maxItems });
const svd = await truncatedSvd(before, { users: maxUsers, items: maxItems, rank: options.factors, seed: options.seed });
const biasesRmse = regressionErrors(inWindow, biases.predict).rmse;
const svdRmse = regressionErrors(inWindow, svd.predict).rmse;

console.log(`\n| model (last ${window} ratings of the stream) | RMSE |`);
console.log('| --- | --- |');
console.log(`| ${options.model === 'mf' ? 'biased MF' : 'neural MF'} online, one pass, test-then-train (b${options.batchSize}, ${Math.round(n / seconds)} ratings/s) | ${final.rolling.rmse!.toFixed(4)} |`);
console.log(`| biases only (μ + b_u + b_i), batch fit on the earlier ratings | ${biasesRmse.toFixed(4)} |`);
console.log(`| truncated SVD rank ${options.factors} of the residual (randomised), batch | ${svdRmse.toFixed(4)} |`);
if (sigma !== null) console.log(`| best possible (noise σ) | ${sigma.toFixed(4)} |`);
console.log(`# result rolling_rmse=${final.rolling.rmse!.toFixed(4)} rolling_mae=${final.rolling.mae!.toFixed(4)} biases_rmse=${biasesRmse.toFixed(4)} svd_rmse=${svdRmse.toFixed(4)} sigma=${sigma ?? 'NaN'} ratings_per_s=${Math.round(n / seconds)} skipped=${counters.skipped}`);

// ---- ranking on the held-out sample, and top-k for a few users.
const recommender = new Recommender(model);
if (heldOut.ratings.length > 0) {
  try {
    const ranking = await rankingMetrics(recommender, heldOut, { k: options.top, threshold: 4, train: stream, maxUsers: 500 });
    console.log(`# ranking on ${heldOut.ratings.length} held-out ratings (relevant: ≥ 4), ${ranking.users} users: precision@${ranking.k}=${ranking.precision.toFixed(4)} recall@${ranking.k}=${ranking.recall.toFixed(4)} ndcg@${ranking.k}=${ranking.ndcg.toFixed(4)}`);
  } catch (error) {
    console.log(`# ranking: ${(error as Error).message}`);
  }
}
const rated = new Map<number, number[]>();
for (let r = 0; r < n; r++) (rated.get(stream.users[r]!) ?? rated.set(stream.users[r]!, []).get(stream.users[r]!)!).push(stream.items[r]!);
for (const user of [...rated.keys()].slice(0, 3)) {
  const { items, scores } = await recommender.recommend(user, 5, { exclude: rated.get(user)! });
  console.log(`top-5 user ${user} (rated ${rated.get(user)!.length}): ${[...items].map((item, j) => `${item} (${scores[j]!.toFixed(2)})`).join(', ')}`);
}
recommender.dispose();
model.dispose();
await closeDefaultEngine();
