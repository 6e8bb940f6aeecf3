import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { lastValueFrom, map, toArray } from 'rxjs';
import { adam, createEngine, dense, Random, relu, sequential, softmaxCrossEntropy, type FitOptions, type GradientOperator } from '../src/index.ts';
import { fitFromRedis, type RedisStepReport } from '../src/streams/redis.ts';
import { hasRedis, TestRedis } from './redis-server.ts';

const skip = hasRedis ? false : 'redis-server is not on PATH (apt-get install redis-server)';

const engine = createEngine({ threads: 1 });
after(() => engine.close());

const IN = 4;
const model = () => sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 1, engine });
const fitOptions = (gradientOperators: GradientOperator[] = []): FitOptions => ({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.05 }), gradientOperators });
/** A gradient operator that fails the n-th step it sees (before the optimizer applies it). */
const failAt = (n: number): GradientOperator => {
  let calls = 0;
  return map((g) => {
    if (++calls === n) throw new Error(`injected failure at step ${n}`);
    return g;
  });
};

describe('Redis Streams consumer group (at-least-once)', { skip }, () => {
  let server: TestRedis;
  let redis: Redis;
  let port: number;

  before(async () => {
    server = await TestRedis.start();
    port = server.port;
    redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  });

  after(async () => {
    await redis?.quit();
    await server?.close();
  });

  /** Adds n labelled entries; returns their ids in order. */
  async function produce(stream: string, n: number, seed: number, bad: Record<number, Record<string, string>> = {}): Promise<string[]> {
    const rng = new Random(seed);
    const pipeline = redis.pipeline();
    for (let i = 0; i < n; i++) {
      const x = Array.from({ length: IN }, () => rng.normal());
      const score = x[0]! - x[1]!;
      const fields = bad[i] ?? { features: JSON.stringify(x), label: String(score > 0.7 ? 2 : score > -0.7 ? 1 : 0), key: `e${i}` };
      pipeline.xadd(stream, '*', ...Object.entries(fields).flat());
    }
    const results = (await pipeline.exec())!;
    return results.map(([error, id]) => {
      assert.equal(error, null);
      return id as string;
    });
  }

  const pending = async (stream: string, group: string) => {
    const rows = (await redis.xpending(stream, group, '-', '+', 1000)) as [string, string, number, number][];
    return rows.map(([id, consumer, , deliveries]) => ({ id, consumer, deliveries }));
  };
  const run = (source: ReturnType<typeof fitFromRedis>) => lastValueFrom(source.pipe(toArray()));

  it("acknowledges a step's entries only after it is applied; a failed step's entries stay pending and are redelivered (XREADGROUP 0)", async () => {
    const ids = await produce('s1', 96, 1);
    const m = model();
    const options = { stream: 's1', group: 'trainers', consumer: 'c1', count: 16, blockMs: 50, stopWhenIdle: true, shape: [IN], classes: 3 };
    const reports: RedisStepReport[] = [];
    await assert.rejects(
      new Promise((resolve, reject) => fitFromRedis(m, redis, { ...options, fit: fitOptions([failAt(3)]) }).subscribe({ next: (r) => reports.push(r), error: reject, complete: () => resolve(null) })),
      /injected failure at step 3/,
    );
    assert.deepEqual(reports.map((r) => r.acked), [16, 16], 'the two applied steps were acknowledged');
    assert.equal(m.stepCount, 2, 'the failed step was not applied');
    const left = await pending('s1', 'trainers');
    assert.deepEqual(left.map((p) => p.id), ids.slice(32, 48), 'exactly the failed step’s entries are pending');
    assert.ok(left.every((p) => p.consumer === 'c1' && p.deliveries === 1));

    // The same consumer restarts: its pending entries come first, then the new ones.
    const again = await run(fitFromRedis(m, redis, { ...options, fit: fitOptions() }));
    assert.deepEqual(again.map((r) => [r.acked, r.redelivered]), [[16, 16], [16, 0], [16, 0], [16, 0]]);
    assert.equal(m.stepCount, 6);
    assert.deepEqual(await pending('s1', 'trainers'), [], 'everything acknowledged');
    m.dispose();
  });

  it('another consumer takes over what a dead consumer left pending (XAUTOCLAIM), then reads new entries', async () => {
    const ids = await produce('s2', 48, 2);
    const options = { stream: 's2', group: 'trainers', count: 16, blockMs: 50, stopWhenIdle: true, shape: [IN], classes: 3 };
    const dead = model();
    await assert.rejects(run(fitFromRedis(dead, redis, { ...options, consumer: 'dead', fit: fitOptions([failAt(1)]) })), /injected failure at step 1/);
    assert.deepEqual((await pending('s2', 'trainers')).map((p) => [p.id, p.consumer]), ids.slice(0, 16).map((id) => [id, 'dead']));
    const live = model();
    const reports = await run(fitFromRedis(live, redis, { ...options, consumer: 'live', claimIdleMs: 0, fit: fitOptions() }));
    assert.deepEqual(reports.map((r) => [r.acked, r.redelivered]), [[16, 16], [16, 0], [16, 0]]);
    assert.deepEqual(await pending('s2', 'trainers'), []);
    dead.dispose();
    live.dispose();
  });

  it("bad entries: 'skip' trains on the rest and acknowledges them too; 'error' names the entry and leaves its read pending", async () => {
    await produce('s3', 32, 3, { 3: { features: '[1,2]', label: '0' }, 20: { features: 'not json', label: '1' }, 21: { features: '[0,0,0,0]', label: '9' } });
    const m = model();
    const base = { stream: 's3', count: 16, blockMs: 50, stopWhenIdle: true, shape: [IN], classes: 3 };
    await assert.rejects(run(fitFromRedis(m, redis, { ...base, group: 'strict', consumer: 'c', fit: fitOptions() })), /redis stream 's3': record 3 features has 2 values, expected 4/);
    assert.equal((await pending('s3', 'strict')).length, 16, 'the read with the bad entry was not acknowledged');
    const reports = await run(fitFromRedis(m, redis, { ...base, group: 'lenient', consumer: 'c', onBadRecord: 'skip', fit: fitOptions() }));
    assert.deepEqual(reports.map((r) => [r.batchSize, r.acked]), [[15, 16], [14, 16]]);
    assert.equal(reports.at(-1)!.skipped, 3);
    assert.deepEqual(await pending('s3', 'lenient'), []);
    m.dispose();
  });

  it('examples/redis-online.ts --quick trains from the stream, survives an injected failure and ends with nothing pending', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/redis-online.ts', '--quick', '--port', String(port)], { timeout: 60_000 });
    assert.match(stdout, /injected failure at step \d+: \d+ entries pending, redelivering/);
    const done = /done: (\d+) steps, (\d+) entries acknowledged, (\d+) redelivered, pending (\d+)/.exec(stdout);
    assert.ok(done, stdout.slice(-800));
    assert.equal(Number(done[4]), 0);
    assert.ok(Number(done[3]) > 0);
    const accuracy = Number(/accuracy over the last 20 steps: ([\d.]+)/.exec(stdout)?.[1]);
    console.log(`redis-online --quick: ${done[1]} steps, ${done[2]} acked, ${done[3]} redelivered, last-20-steps accuracy ${accuracy}`);
    assert.ok(accuracy > 0.8, `accuracy ${accuracy}`);
  });
});
