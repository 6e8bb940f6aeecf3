import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { from, lastValueFrom, toArray } from 'rxjs';
import { adam, batchFromArrays, createEngine, dense, Random, relu, sequential, sgd, softmaxCrossEntropy, type Batch } from '../src/index.ts';
import { addBatchEntries } from '../src/distributed/index.ts';
import { hasRedis, TestRedis } from './redis-server.ts';

const skip = hasRedis ? false : 'redis-server is not on PATH (apt-get install redis-server)';
const engine = createEngine({ threads: 1 });
after(() => engine.close());

const IN = 4;
/** n batches of `rows` labelled rows, deterministic in `seed`. */
function makeBatches(n: number, rows: number, seed: number): { features: Float32Array; labels: Int32Array }[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => {
    const features = new Float32Array(rows * IN).map(() => rng.normal());
    const labels = new Int32Array(rows).map((_, r) => {
      const s = features[r * IN]! - features[r * IN + 1]!;
      return s > 0.7 ? 2 : s > -0.7 ? 1 : 0;
    });
    return { features, labels };
  });
}

interface ReplicaRun {
  child: ChildProcess;
  reports: { step: number; round: number | null; entries: string[]; included: boolean; missing: string[]; contributors: string[]; acked: number; syncMs: number; bytesSent: number; bytesReceived: number; redisRetries: number }[];
  done: Promise<{ weights: Record<string, number[]>; steps: number } | null>;
  output: () => string;
}
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function startReplica(config: Record<string, unknown>, timeoutMs = 60_000): ReplicaRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/dp-replica.ts', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const run: ReplicaRun = { child, reports: [], done: null as never, output: () => out + err };
  let out = '';
  let err = '';
  let buffered = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  run.done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`replica ${String(config['replica'])} timed out:\n${out}${err}`));
    }, timeoutMs);
    let result: { weights: Record<string, number[]>; steps: number } | null = null;
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('REPORT ')) run.reports.push(JSON.parse(line.slice(7)));
        else if (line.startsWith('DONE ')) result = JSON.parse(line.slice(5));
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve(result);
    });
  });
  return run;
}

const relativeError = (a: readonly number[], b: readonly number[]) => {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return Math.sqrt(d / n);
};

describe('data parallel through Redis (allReduceGradients, averageWeights)', { skip, timeout: 240_000 }, () => {
  let server: TestRedis;
  let redis: Redis;
  before(async () => {
    server = await TestRedis.start();
    redis = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  });
  after(async () => {
    redis?.disconnect();
    await server?.close();
  });

  /** Trains one process on the union of each round's batches, in round order. */
  async function reference(optimizer: 'sgd' | 'adam', rounds: Map<number, string[]>, data: Map<string, { features: Float32Array; labels: Int32Array }>) {
    const model = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 7, engine });
    const batches: Batch[] = [...rounds.keys()].sort((a, b) => a - b).map((round) => {
      const parts = rounds.get(round)!.map((id) => data.get(id)!);
      const features = new Float32Array(parts.reduce((n, p) => n + p.features.length, 0));
      const labels = new Int32Array(parts.reduce((n, p) => n + p.labels.length, 0));
      let f = 0;
      let l = 0;
      for (const p of parts) {
        features.set(p.features, f);
        labels.set(p.labels, l);
        f += p.features.length;
        l += p.labels.length;
      }
      return batchFromArrays({ features, shape: [IN], labels });
    });
    await lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: optimizer === 'adam' ? adam({ learningRate: 0.01 }) : sgd({ learningRate: 0.1 }) }), toArray()));
    const weights = Object.fromEntries([...model.getWeights()].map(([n, v]) => [n, [...v]]));
    model.dispose();
    return weights;
  }

  for (const optimizer of ['sgd', 'adam'] as const) {
    it(`3 replicas on batches of 16 equal one process on the 48 rows of each round (${optimizer}, 1e-5 relative)`, async () => {
      const stream = `exact-${optimizer}`;
      const raw = makeBatches(30, 16, optimizer === 'sgd' ? 11 : 12);
      const ids = await addBatchEntries(redis, stream, raw.map((b) => batchFromArrays({ ...b, shape: [IN] })));
      const data = new Map(ids.map((id, i) => [id, raw[i]!]));
      const runs = ['a', 'b', 'c'].map((replica) => startReplica({ port: server.port, group: stream, stream, replica, optimizer, seed: 7, minReplicas: 3 }));
      const results = await Promise.all(runs.map((r) => r.done));
      results.forEach((r, i) => assert.ok(r, `replica ${i} failed:\n${runs[i]!.output()}`));
      // Which entries each round averaged: the union over replicas.
      const rounds = new Map<number, string[]>();
      for (const run of runs) {
        for (const report of run.reports) {
          assert.equal(report.included, true);
          rounds.set(report.round!, [...(rounds.get(report.round!) ?? []), ...report.entries]);
        }
      }
      const trained = [...rounds.values()].flat().sort();
      assert.deepEqual(trained, [...ids].sort(), 'every entry trained exactly once');
      assert.equal((await redis.xpending(stream, stream) as unknown[])[0], 0, 'nothing pending');
      for (const r of results.slice(1)) assert.deepEqual(r!.weights, results[0]!.weights, 'replicas hold bitwise-equal weights');
      const expected = await reference(optimizer, rounds, data);
      for (const [name, values] of Object.entries(expected)) {
        const error = relativeError(results[0]!.weights[name]!, values);
        assert.ok(error < 1e-5, `${name}: relative error ${error}`);
      }
      const sync = runs.flatMap((r) => r.reports.map((x) => x.syncMs));
      console.log(`${optimizer}: ${rounds.size} rounds, sync ${(sync.reduce((a, b) => a + b, 0) / sync.length).toFixed(1)} ms/step, ${runs[0]!.reports[0]!.bytesSent} bytes sent per step`);
    });
  }
});
