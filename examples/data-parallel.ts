/**
 * Data-parallel training on Fashion-MNIST: N replica processes, each with its own engine and a copy
 * of the model, read disjoint batches of one Redis Stream (a consumer group; each entry is a whole
 * Arrow IPC batch) and synchronise through Redis every step (`allReduceGradients`) or every H steps
 * (`averageWeights`). Without `--redis` it starts a local redis-server on a free loopback port and
 * stops it at the end; with `--redis redis://host:port` the same code runs on several hosts.
 *
 * Usage:
 *   npx tsx examples/data-parallel.ts --replicas 2                    # CNN, batch 64, allReduce, local Redis
 *   npx tsx examples/data-parallel.ts --replicas 2 --sync average --every 8 --model mlp --batch-size 256
 *   npx tsx examples/data-parallel.ts --quick                         # the test's mode: 2 replicas, 2,048 examples
 *   # several hosts: one producer, then N workers (any host) against one Redis:
 *   npx tsx examples/data-parallel.ts --redis redis://10.0.0.5:6379 --run fm1 --produce-only
 *   npx tsx --initial-heap-size=128 examples/data-parallel.ts --redis redis://10.0.0.5:6379 --run fm1 --replicas 4 --worker --index 0   # … --index 3
 *   # (--initial-heap-size: see REPLICA_V8_FLAGS below; the launcher passes it to the replicas it starts)
 *   # a Redis Cluster (any node's URL; each round's message in 3 pieces on 3 hash slots):
 *   npx tsx examples/data-parallel.ts --redis redis://10.0.0.5:7000 --cluster --payload-shards 3 --replicas 4
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { Cluster, Redis } from 'ioredis';
import { from, lastValueFrom, tap, toArray } from 'rxjs';
import {
  adam, batchesFromArrays, closeDefaultEngine, conv2d, dense, flatten, heNormal, maxPool2d, Random, relu, sequential, softmaxCrossEntropy, type Layer,
} from '../src/index.ts';
import { addBatchEntries, allReduceGradients, averageWeights, fitReplica, joinGroup, scaledLearningRate, type ReplicaStepReport } from '../src/distributed/index.ts';
import type { Dataset } from '../src/data/index.ts';
import { firstExamples, freePort, loadImages, positiveInt, quantile, standardize } from './common.ts';

const program = new Command()
  .name('data-parallel')
  .description('Train the Fashion-MNIST CNN (or MLP) on N replica processes synchronised through Redis.')
  .option('--replicas <n>', 'replica processes', positiveInt('--replicas'), 2)
  .option('--redis <url>', 'Redis URL (default: start a local redis-server)')
  .option('--cluster', '--redis names a node of a Redis Cluster: connect to the cluster and cut each round\'s message into --payload-shards pieces on other hash slots', false)
  .option('--payload-shards <n>', 'pieces per round message with --cluster (default 3: one per master of a 3-master cluster)', positiveInt('--payload-shards'), 3)
  .option('--run <name>', 'stream and group name (default: a fresh one per run)')
  .option('--sync <mode>', "'allreduce' (gradients every step), 'average' (weights every --every steps) or 'none' (no synchronisation: each replica trains its own copy on its share; a measurement baseline, the throughput ceiling of any sync)", 'allreduce')
  .option('--every <h>', 'steps between weight averages (--sync average)', positiveInt('--every'), 8)
  .option('--model <kind>', "'cnn' or 'mlp'", 'cnn')
  .option('--batch-size <n>', 'rows per stream entry (one step of one replica)', positiveInt('--batch-size'), 64)
  .option('--examples <n>', 'training examples put on the stream', positiveInt('--examples'))
  .option('--test <n>', 'test examples evaluated at the end', positiveInt('--test'))
  .option('--lr-scaling <rule>', "scale Adam's rate 1e-3 for N replicas: 'none', 'sqrt' (√N, the rule for Adam) or 'linear' (N×), warmed up over --warmup of the steps", 'none')
  .option('--warmup <fraction>', 'fraction of a replica\'s steps the scaled rate warms up over (Goyal et al.: ~5%)', Number, 0.05)
  .option('--pin', 'pin replica i to core i (taskset), one compute thread each', false)
  .option('--data <name>', "'fashion-mnist' or 'mnist' (embedded digits)", 'fashion-mnist')
  .option('--seed <n>', 'initialisation seed; when given, also the seed of the order the training examples go on the stream (default: seed 1, file order)', positiveInt('--seed'))
  .option('--quick', 'a short run: 2 replicas, 2,048 examples, 1,000 test', false)
  .option('--produce-only', 'only put the training data on the stream (multi-host)', false)
  .option('--worker', 'run one replica (started by the launcher, or by hand on each host)', false)
  .option('--index <i>', 'this worker\'s replica index', Number, 0);
program.parse();
const o = program.opts<{
  replicas: number; redis?: string; cluster: boolean; payloadShards: number; run?: string; sync: string; every: number; model: string; batchSize: number; examples?: number; test?: number;
  lrScaling: string; warmup: number; pin: boolean; data: string; seed?: number; quick: boolean; produceOnly: boolean; worker: boolean; index: number;
}>();
if (!['allreduce', 'average', 'none'].includes(o.sync)) program.error(`--sync must be 'allreduce', 'average' or 'none', got '${o.sync}'`);
if (!['none', 'sqrt', 'linear'].includes(o.lrScaling)) program.error(`--lr-scaling must be 'none', 'sqrt' or 'linear', got '${o.lrScaling}'`);
if (!(o.warmup >= 0 && o.warmup <= 1)) program.error(`--warmup must be a fraction in [0, 1], got ${o.warmup}`);
if (o.model !== 'cnn' && o.model !== 'mlp') program.error(`--model must be 'cnn' or 'mlp', got '${o.model}'`);
const trainCount = o.examples ?? (o.quick ? 2048 : 60_000);
const testCount = o.test ?? (o.quick ? 1000 : 10_000);

/** The issue's CNN (conv16-pool-conv32-pool-dense10, 'same' padding) or the 784-128-10 MLP. */
function buildModel() {
  const layers: Layer[] =
    o.model === 'cnn'
      ? [conv2d(16, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2), conv2d(32, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2), flatten(), dense(10)]
      : [flatten(), dense(128), relu(), dense(10)];
  return sequential(layers, { inputShape: [28, 28, 1], seed: o.seed ?? 1 });
}

/** Standardised with the training set's mean and deviation (every process computes the same). */
function loadData(): { train: Dataset; test: Dataset } {
  const data = loadImages(o.data, { fail: (m) => program.error(m) });
  const train = firstExamples(data.train, Math.min(trainCount, data.train.length), [28, 28, 1]);
  const test = firstExamples(data.test, Math.min(testCount, data.test.length), [28, 28, 1]);
  const [trainSet, testSet] = standardize(train, [train, test]).sets as [Dataset, Dataset];
  return { train: trainSet, test: testSet };
}

/** A connection to the Redis at `url`, or to the cluster it is a node of (`--cluster`). */
function connect(url: string): Redis | Cluster {
  if (!o.cluster) return new Redis(url);
  const node = new URL(url);
  return new Cluster([{ host: node.hostname, port: Number(node.port || 6379) }]);
}

const names = (run: string) => ({ stream: `${run}:train`, group: run });

async function produce(url: string, run: string, train: Dataset): Promise<number> {
  const redis = connect(url);
  try {
    // --seed: a seeded order, so that runs with different seeds also see the data in different orders.
    const order = o.seed === undefined ? undefined : new Random(o.seed).shuffle(Uint32Array.from({ length: train.length }, (_, i) => i));
    const batches = batchesFromArrays(train, o.batchSize, order);
    await addBatchEntries(redis, names(run).stream, batches);
    return batches.length;
  } finally {
    redis.disconnect();
  }
}

async function worker(url: string, run: string): Promise<void> {
  const { test } = loadData();
  const redis = connect(url);
  const model = buildModel();
  // Each replica takes about 1/N of the stream's entries: the warm-up is a fraction of those steps.
  const replicaSteps = Math.ceil(Math.ceil(Math.min(trainCount, 60_000) / o.batchSize) / o.replicas);
  const optimizer = adam({
    learningRate: o.lrScaling === 'none' ? 1e-3 : scaledLearningRate(1e-3, { replicas: o.replicas, rule: o.lrScaling as 'sqrt' | 'linear', warmupSteps: Math.round(o.warmup * replicaSteps) }),
  });
  const { stream, group: groupName } = names(run);
  const group = await joinGroup({ redis, group: groupName, replica: `replica-${o.index}`, model, optimizer, minReplicas: o.replicas, roundTimeoutMs: 30_000, ...(o.cluster ? { payloadShards: o.payloadShards } : {}) });
  const sync = o.sync === 'none' ? [] : [o.sync === 'average' ? averageWeights(group, { every: o.every }) : allReduceGradients(group)];
  // First and last step report (epoch ms): training time, without the wait to see the stream drained after it.
  let start = 0;
  let end = 0;
  // Wall time between consecutive step reports (ms): the step with its sync, as the group experiences it.
  const stepTimes: number[] = [];
  let last = 0;
  const reports: ReplicaStepReport[] = await lastValueFrom(
    fitReplica(model, group, redis, { stream, shape: [28, 28, 1], classes: 10, blockMs: 100, claimIdleMs: 60_000, fit: { loss: softmaxCrossEntropy(), optimizer, gradientOperators: sync } }).pipe(
      tap(() => {
        const now = performance.now();
        if (last) stepTimes.push(Math.round((now - last) * 100) / 100);
        last = now;
        start ||= Date.now();
        end = Date.now();
      }),
      toArray(),
    ),
    { defaultValue: [] },
  );
  const drained = Date.now();
  const evaluation = o.index === 0 ? await model.evaluate(from(batchesFromArrays(test, 500))) : null;
  const rows = reports.reduce((n, r) => n + r.batchSize, 0);
  const mean = (f: (r: ReplicaStepReport) => number) => reports.reduce((s, r) => s + f(r), 0) / Math.max(1, reports.length);
  console.log(`RESULT ${JSON.stringify({
    index: o.index, steps: reports.length, rows, start, end, drained, syncMs: mean((r) => r.syncMs), bytesSent: mean((r) => r.bytesSent), bytesReceived: mean((r) => r.bytesReceived),
    missingRounds: reports.filter((r) => r.missing.length > 0).length, accuracy: evaluation?.accuracy ?? null, stepTimes,
  })}`);
  await group.leave(); // fitReplica started leaving as it ended: let that finish before the connection closes
  redis.disconnect();
  await closeDefaultEngine();
}

/** A local redis-server on a free loopback port, in a temporary directory. */
async function startRedis(): Promise<{ url: string; cpuSeconds: () => number; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rxgrad-dp-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    server.on('error', (e) => reject(new Error(`cannot start redis-server (apt-get install redis-server): ${e.message}`)));
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    server.on('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    // What Redis costs: its CPU time (user + system) so far, from /proc (Linux; NaN elsewhere).
    cpuSeconds: () => {
      const stat = existsSync(`/proc/${server.pid}/stat`) ? readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1]!.split(' ') : null;
      return stat ? (Number(stat[11]) + Number(stat[12])) / 100 : Number.NaN;
    },
    stop: async () => {
      if (server.exitCode === null) {
        const exited = new Promise((resolve) => server.on('exit', resolve));
        server.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * V8 flags of the replica processes. A replica's JS heap is small (~20 MB live) and every step promotes the
 * entry it read ahead, so V8's heap sizing ran a full mark-compact every 10–20 steps (31 in 300 CNN steps, ~7 ms
 * each: the slow steps a synchronous round waits for); a larger initial heap leaves 5–6 (measured with
 * --trace-gc, one pinned replica, docs/DISTRIBUTED.md). Start replicas you launch by hand the same way.
 */
const REPLICA_V8_FLAGS = ['--initial-heap-size=128'];

/** What a replica process reports on its RESULT line. */
interface ReplicaResult {
  index: number; steps: number; rows: number; start: number; end: number; drained: number; syncMs: number; bytesSent: number; bytesReceived: number;
  missingRounds: number; accuracy: number | null; stepTimes: number[];
}

/** Mean, median and 10th / 90th percentile of a replica's step times (ms). */
function stepTimeSummary(times: number[]): string {
  const sorted = [...times].sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / Math.max(1, times.length);
  return `step ${mean.toFixed(2)} ms mean, ${quantile(sorted, 0.5).toFixed(2)} median, ${quantile(sorted, 0.1).toFixed(2)}–${quantile(sorted, 0.9).toFixed(2)} (10th–90th percentile)`;
}

/**
 * What waiting for the slowest replica every `every` steps would cost (ms per step), from the replicas' own
 * step times paired by step index: per block of `every` steps, the slowest replica's block time minus the
 * mean block time, averaged over the steps. With no synchronisation (--sync none) it prices the barrier of a
 * synchronous round from step-time jitter alone (every 1: allReduce; every H: averageWeights every H).
 */
function barrierCost(perReplica: number[][], every = 1): number {
  const blocks = Math.floor(Math.min(...perReplica.map((t) => t.length)) / every);
  if (!(blocks > 0)) return Number.NaN;
  let slowest = 0;
  let all = 0;
  for (let b = 0; b < blocks; b++) {
    const sums = perReplica.map((t) => t.slice(b * every, (b + 1) * every).reduce((x, y) => x + y, 0));
    slowest += Math.max(...sums);
    all += sums.reduce((x, y) => x + y, 0);
  }
  return (slowest - all / perReplica.length) / (blocks * every);
}

async function launch(): Promise<void> {
  const replicas = o.quick && o.replicas === 2 ? 2 : o.replicas;
  if (o.cluster && !o.redis) program.error('--cluster needs --redis redis://<a node of the cluster>');
  const local = o.redis ? null : await startRedis();
  const url = o.redis ?? local!.url;
  const run = o.run ?? `dp-${Date.now().toString(36)}`;
  const children: ChildProcess[] = [];
  const stopAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.once('SIGINT', () => {
    stopAll();
    void local?.stop().then(() => process.exit(130));
  });
  try {
    const { train } = loadData();
    const entries = await produce(url, run, train);
    console.log(`${train.length} examples on stream '${names(run).stream}' as ${entries} Arrow entries of ${o.batchSize}; ${replicas} replicas, ${o.model}, ${{ average: `averageWeights every ${o.every}`, allreduce: 'allReduceGradients', none: 'no synchronisation' }[o.sync]}${o.lrScaling === 'none' ? '' : `, rate 1e-3 scaled by the ${o.lrScaling} rule`}${o.pin ? ', pinned one core each' : ''}`);
    const started = Date.now();
    const redisCpuBefore = local?.cpuSeconds() ?? Number.NaN;
    const args = (i: number) => [...REPLICA_V8_FLAGS, '--import', 'tsx', 'examples/data-parallel.ts', '--worker', '--index', String(i), '--redis', url, '--run', run, '--replicas', String(replicas), '--sync', o.sync, '--every', String(o.every), '--model', o.model, '--batch-size', String(o.batchSize), '--lr-scaling', o.lrScaling, '--warmup', String(o.warmup), '--examples', String(trainCount), '--test', String(testCount), '--data', o.data, ...(o.seed === undefined ? [] : ['--seed', String(o.seed)]), ...(o.cluster ? ['--cluster', '--payload-shards', String(o.payloadShards)] : [])];
    const results = await Promise.all(
      Array.from({ length: replicas }, (_, i) => {
        const command = o.pin ? 'taskset' : process.execPath;
        const argv = o.pin ? ['-c', String(i % cpus().length), process.execPath, ...args(i)] : args(i);
        const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RXGRAD_THREADS: '1' } });
        children.push(child);
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        return new Promise<ReplicaResult>((resolve, reject) =>
          child.on('exit', (code) => {
            const line = out.split('\n').find((l) => l.startsWith('RESULT '));
            if (code === 0 && line) resolve(JSON.parse(line.slice(7)) as ReplicaResult);
            else reject(new Error(`replica ${i} exited with ${code}:\n${out}`));
          }),
        );
      }),
    );
    const seconds = (Math.max(...results.map((r) => r.drained)) - started) / 1000;
    const tail = (Math.max(...results.map((r) => r.drained)) - Math.max(...results.map((r) => r.end))) / 1000;
    // Training time: first step report of any replica to the last of any (process start, data loading and the
    // wait to see the stream drained at the end excluded: an unbounded stream never drains).
    const trainingSeconds = (Math.max(...results.map((r) => r.end)) - Math.min(...results.map((r) => r.start))) / 1000;
    const rows = results.reduce((n, r) => n + r.rows, 0);
    for (const r of results) console.log(`replica ${r.index}: ${r.steps} steps, ${r.rows} rows, sync ${r.syncMs.toFixed(2)} ms/step, ${Math.round(r.bytesSent)} B sent and ${Math.round(r.bytesReceived)} B received per step${r.missingRounds ? `, ${r.missingRounds} rounds with a replica missing` : ''}; ${stepTimeSummary(r.stepTimes)}`);
    if (results.length > 1) {
      const times = results.map((r) => r.stepTimes);
      console.log(`a barrier every step over these step times would cost ${barrierCost(times).toFixed(2)} ms per step (mean over steps of the slowest replica's time minus the mean time)`);
      if (o.every > 1) console.log(`a barrier every ${o.every} steps would cost ${barrierCost(times, o.every).toFixed(2)} ms per step`);
    }
    if (local) console.log(`redis-server CPU ${(local.cpuSeconds() - redisCpuBefore).toFixed(2)} s while the replicas ran`);
    console.log(`done: ${rows} rows trained in ${trainingSeconds.toFixed(2)} s (${(rows / trainingSeconds).toFixed(0)} examples/s; ${seconds.toFixed(1)} s with process start and ${tail.toFixed(2)} s to see the stream drained), test accuracy ${((results[0]!.accuracy ?? 0) * 100).toFixed(2)}%`);
  } finally {
    stopAll();
    await local?.stop();
  }
}

if (o.worker || o.produceOnly) {
  if (!o.redis || !o.run) throw new Error('--worker and --produce-only need --redis and --run');
  const url: string = o.redis;
  const run: string = o.run;
  if (o.worker) await worker(url, run);
  else console.log(`${await produce(url, run, loadData().train)} entries on '${names(run).stream}'`);
} else {
  await launch();
}
