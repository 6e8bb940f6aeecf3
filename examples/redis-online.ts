/**
 * Online training from a Redis Stream, at-least-once: a producer appends MNIST digits to a stream
 * (XADD, `features` as JSON, `label`), and a trainer reads them through a consumer group
 * (XREADGROUP, 64 entries per step), acknowledging each step's entries (XACK) only after the step
 * is applied. A failure is injected at step `--fail-at`: the trainer stops, the failed step's
 * entries stay pending, and the restarted trainer receives them again before any new entry.
 *
 * Needs a Redis server (`apt-get install redis-server`; `redis-server --port 6379 --save ''`).
 *
 * Usage:
 *   npx tsx examples/redis-online.ts                       # 127.0.0.1:6379, 12,800 digits (200 steps)
 *   npx tsx examples/redis-online.ts --quick --port 6390   # 3,840 digits (60 steps)
 */
import { Command, InvalidArgumentError } from 'commander';
import { Redis } from 'ioredis';
import { lastValueFrom, map, tap } from 'rxjs';
import { adam, closeDefaultEngine, dense, relu, sequential, softmaxCrossEntropy, type GradientOperator } from '../src/index.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';
import { fitFromRedis, type RedisStepReport } from '../src/streams/redis.ts';

const int = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};
const options = new Command()
  .name('redis-online')
  .description('Train online from a Redis Stream consumer group; XACK after each applied step; redelivery after a failure.')
  .option('--host <host>', 'Redis host', '127.0.0.1')
  .option('--port <n>', 'Redis port', int('--port'), 6379)
  .option('--quick', 'a short run (3,840 digits)')
  .option('--entries <n>', 'digits to produce', int('--entries'))
  .option('--batch-size <n>', 'entries per step', int('--batch-size'), 64)
  .option('--fail-at <n>', 'inject a failure at this step (0: none)', int('--fail-at'), 5)
  .parse()
  .opts<{ host: string; port: number; quick?: boolean; entries?: number; batchSize: number; failAt: number }>();
const entries = options.entries ?? (options.quick ? 3840 : 12_800);

const redis = new Redis({ host: options.host, port: options.port, maxRetriesPerRequest: 1 });
const stream = `rxgrad:digits:${process.pid}:${Date.now()}`;
const group = 'trainers';
const consumer = 'trainer-1';

// Producer: digits as JSON (3 decimals, as stored in the dataset), in pipelined chunks.
const { train } = loadEmbeddedMnist({ train: 8000, test: 0 });
for (let start = 0; start < entries; start += 500) {
  const pipeline = redis.pipeline();
  for (let i = start; i < Math.min(entries, start + 500); i++) {
    const row = i % train.length;
    const pixels = Array.from(train.features.subarray(row * 784, (row + 1) * 784), (v) => Math.round(v * 1000) / 1000);
    pipeline.xadd(stream, '*', 'features', JSON.stringify(pixels), 'label', String(train.labels[row]), 'key', `digit-${i}`);
  }
  await pipeline.exec();
}
console.log(`produced ${entries} entries on ${stream}`);

const model = sequential([dense(64), relu(), dense(10)], { inputShape: [784], seed: 1, name: 'redis-mlp' });
let gradientsSeen = 0;
/** Fails the --fail-at-th step once, after its gradients exist and before the optimizer applies them. */
const injectFailure: GradientOperator = map((g) => {
  if (++gradientsSeen === options.failAt) throw new Error(`injected failure at step ${options.failAt}`);
  return g;
});
const fit = { loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 3e-3 }), metrics: ['accuracy'] as const, gradientOperators: [injectFailure] };
const reports: RedisStepReport[] = [];
const train$ = () =>
  fitFromRedis(model, redis, { stream, group, consumer, count: options.batchSize, blockMs: 200, stopWhenIdle: true, shape: [784], classes: 10, fit }).pipe(
    tap((r) => {
      reports.push(r);
      if (r.step % 10 === 0 || r.redelivered > 0) {
        console.log(`step ${r.step}: loss ${r.loss.toFixed(4)} accuracy ${(r.accuracy ?? 0).toFixed(3)} acked ${r.acked}${r.redelivered ? ` (${r.redelivered} redelivered)` : ''}`);
      }
    }),
  );

try {
  await lastValueFrom(train$(), { defaultValue: null });
} catch (error) {
  const [count] = (await redis.xpending(stream, group)) as [number, ...unknown[]];
  console.log(`${(error as Error).message}: ${count} entries pending, redelivering`);
  // The same consumer restarts: it reads its pending entries (XREADGROUP … 0) before new ones.
  await lastValueFrom(train$(), { defaultValue: null });
}

const [pendingAfter] = (await redis.xpending(stream, group)) as [number, ...unknown[]];
const acked = reports.reduce((n, r) => n + r.acked, 0);
const redelivered = reports.reduce((n, r) => n + r.redelivered, 0);
const last = reports.slice(-20);
console.log(`done: ${reports.length} steps, ${acked} entries acknowledged, ${redelivered} redelivered, pending ${pendingAfter}`);
console.log(`accuracy over the last 20 steps: ${(last.reduce((s, r) => s + (r.accuracy ?? 0), 0) / last.length).toFixed(3)}`);
await redis.del(stream);
await redis.quit();
model.dispose();
await closeDefaultEngine();
