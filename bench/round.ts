/**
 * Replica-group rounds alone (not CI; `flock /tmp/rxgrad-bench.lock npx tsx bench/round.ts`): N processes,
 * each pinned to a core, exchange a gradient-sized message through a local redis-server every round, with
 * `--work-ms` of busy computation between rounds standing in for a training step. Prints each replica's
 * wall time per round and its sync time (mean, 10th/50th/90th percentile), and the Redis time per call of
 * the round's commands (`INFO commandstats`). docs/DISTRIBUTED.md quotes it.
 *
 * The model is one dense layer of `--inputs` × 10 (+10 bias): 2,048 inputs give the CNN's 20,490 parameters
 * (82 KB messages), 10,176 the MLP's 101,770 (407 KB).
 *
 * Usage: `npx tsx bench/round.ts [--replicas 2] [--inputs 2048] [--rounds 500] [--work-ms 8]`
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import { adam, dense, sequential } from '../src/index.ts';
import { joinGroup } from '../src/distributed/index.ts';
import { freePort, quantile } from '../examples/common.ts';

const o = new Command()
  .option('--replicas <n>', 'replica processes (replica i pinned to core i mod cores)', Number, 2)
  .option('--inputs <n>', 'inputs of the dense layer: parameters = 10·inputs + 10', Number, 2048)
  .option('--rounds <n>', 'rounds timed', Number, 500)
  .option('--work-ms <ms>', 'busy computation between rounds (a training step)', Number, 8)
  .option('--worker <index>', 'run one replica (used by the launcher)')
  .option('--redis <url>', 'Redis of the replicas (used by the launcher)')
  .parse()
  .opts<{ replicas: number; inputs: number; rounds: number; workMs: number; worker?: string; redis?: string }>();

async function replica(index: number, url: string): Promise<void> {
  const redis = new Redis(url);
  const model = sequential([dense(10)], { inputShape: [o.inputs], seed: 1 });
  const group = await joinGroup({ redis, group: 'round-bench', replica: `r${index}`, model, optimizer: adam(), minReplicas: o.replicas });
  const gradient = new Float32Array(10 * o.inputs + 10).map((_, i) => Math.sin(i));
  const sync: number[] = [];
  const started = performance.now();
  for (let r = 0; r < o.rounds; r++) {
    const t = performance.now();
    while (performance.now() - t < o.workMs); // the step's computation, on this core
    sync.push((await group.exchange('gradients', gradient, 64)).syncMs);
  }
  const wall = (performance.now() - started) / o.rounds;
  sync.sort((a, b) => a - b);
  const mean = sync.reduce((a, b) => a + b, 0) / sync.length;
  const f = (x: number) => x.toFixed(2);
  console.log(`replica ${index}: ${f(wall)} ms per round (work ${o.workMs} ms); sync mean ${f(mean)}, p10 ${f(quantile(sync, 0.1))}, p50 ${f(quantile(sync, 0.5))}, p90 ${f(quantile(sync, 0.9))} ms`);
  await group.leave();
  redis.disconnect();
  model.dispose();
}

async function launch(): Promise<void> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rxgrad-round-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const children = new Set([server]);
  const stopAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.once('exit', stopAll);
  try {
    const url = `redis://127.0.0.1:${port}`;
    const admin = new Redis(url, { retryStrategy: (n) => (n < 50 ? 50 : null) });
    admin.on('error', () => {}); // refused until redis-server listens; retried
    await admin.ping();
    const load = loadavg()[0]!.toFixed(1);
    console.log(`${o.replicas} replica(s), ${10 * o.inputs + 10} parameters (${40 * o.inputs + 104} B messages), ${o.rounds} rounds, ${o.workMs} ms of work between rounds; load ${load}`);
    const script = new URL(import.meta.url).pathname;
    await Promise.all(Array.from({ length: o.replicas }, (_, i) => new Promise<void>((resolve, reject) => {
      // As the data-parallel example starts replicas (a larger initial heap: fewer full collections mid-round).
      const args = ['-c', String(i % 2), process.execPath, '--initial-heap-size=128', '--import', 'tsx', script, '--worker', String(i), '--redis', url,
        '--replicas', String(o.replicas), '--inputs', String(o.inputs), '--rounds', String(o.rounds), '--work-ms', String(o.workMs)];
      const child = spawn('taskset', args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, RXGRAD_THREADS: '1' } });
      children.add(child);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`replica ${i} exited with ${code}`))));
    })));
    const stats = String(await admin.info('commandstats'));
    for (const command of ['set', 'evalsha', 'eval', 'mget', 'blpop']) {
      const m = new RegExp(`cmdstat_${command}:calls=(\\d+),usec=\\d+,usec_per_call=([\\d.]+)`).exec(stats);
      if (m) console.log(`  redis ${command.toUpperCase()}: ${m[1]} calls, ${m[2]} µs each`);
    }
    admin.disconnect();
    console.log(`load ${load} → ${loadavg()[0]!.toFixed(1)}`);
  } finally {
    stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (o.worker !== undefined) await replica(Number(o.worker), o.redis!);
else await launch();
