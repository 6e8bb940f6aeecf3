/**
 * Serving benchmark on loopback: `rxgrad serve` runs in a child process (as it would in production)
 * and this process is the load generator, a bounded closed loop of N concurrent keep-alive clients,
 * each posting one JSON example and waiting for its answer before the next.
 *
 *   1. throughput and p50/p99 latency at 1, 16 and 64 clients, with and without dynamic batching,
 *      for the 784-128-10 MLP and the Fashion-MNIST CNN (random weights: speed does not depend on them);
 *   2. 20 hot reloads under load (16 clients): this process trains the model a step and commits a
 *      checkpoint, waits until the server reports the new step, 20 times; every request must succeed;
 *   3. memory over 100,000 requests (64 clients, batching): the server's RSS (/proc) and JS heap
 *      (/metrics) after a 10,000-request warm-up and then every 10,000 requests.
 *
 * Usage: `npx tsx bench/serve.ts [--quick] [--max-wait-ms 2] [--throughput-only]` or `npm run bench -- --only serve`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import os from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { from, lastValueFrom } from 'rxjs';
import { adam, batchFromArrays, closeDefaultEngine, conv2d, dense, flatten, maxPool2d, relu, saveModel, sequential, softmaxCrossEntropy, type Model } from '../src/index.ts';
import type { Row } from './harness.ts';
import { quantile } from '../examples/common.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

const MODELS = {
  mlp: { shape: [784], build: () => sequential([dense(128), relu(), dense(10)], { inputShape: [784], seed: 1, name: 'mlp' }) },
  cnn: {
    shape: [28, 28, 1],
    build: () => sequential([conv2d(16, 3, { padding: 'same', activation: 'relu' }), maxPool2d(2), conv2d(32, 3, { padding: 'same', activation: 'relu' }), maxPool2d(2), flatten(), dense(10)], { inputShape: [28, 28, 1], seed: 1, name: 'cnn' }),
  },
} as const;
type ModelName = keyof typeof MODELS;

interface ServerProcess {
  url: string;
  child: ChildProcess;
  close(): Promise<void>;
}

/** Starts `rxgrad serve` on `dir` in a child process and resolves its URL. */
/** The server's --max-wait-ms in this run (`npx tsx bench/serve.ts --max-wait-ms 0`: coalesce only while busy). */
const maxWaitArg = process.argv.indexOf('--max-wait-ms');
const MAX_WAIT_MS = maxWaitArg > 0 ? Number(process.argv[maxWaitArg + 1]) : 2;

async function startServer(dir: string, batching: boolean, pollMs = 50): Promise<ServerProcess> {
  const args = ['--import', 'tsx', join(repo, 'src/cli/main.ts'), 'serve', dir, '--port', '0', '--max-batch', '64', '--max-wait-ms', String(MAX_WAIT_MS), '--max-queue', '1024', '--poll-ms', String(pollMs)];
  if (!batching) args.push('--no-batching');
  const child = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (c: Buffer) => {
      text += c.toString();
      const m = text.match(/on (http:\/\/[\d.]+:\d+)/);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`rxgrad serve exited ${code}: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { url, child, close: async () => { child.kill('SIGTERM'); await exited; } };
}

interface LoadResult {
  requests: number;
  failed: number;
  seconds: number;
  latenciesMs: Float64Array;
  firstFailure: string | null;
}

/** `clients` closed-loop clients sharing `total` requests (each posts `body`, awaits the answer). */
async function load(url: string, body: string, clients: number, total: number, stop?: () => boolean): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const latencies = new Float64Array(total);
  let next = 0;
  let failed = 0;
  let firstFailure: string | null = null;
  const post = () =>
    new Promise<number>((resolve) => {
      const req = request(`${url}/predict`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', (e) => {
        firstFailure ??= e.message;
        resolve(0);
      });
      req.end(body);
    });
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < total && !(stop?.() ?? false)) {
      const i = next++;
      const s = performance.now();
      const status = await post();
      latencies[i] = performance.now() - s;
      if (status !== 200) {
        failed++;
        firstFailure ??= `HTTP ${status}`;
      }
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  const done = Math.min(next, total);
  return { requests: done, failed, seconds, latenciesMs: latencies.subarray(0, done), firstFailure };
}

function exampleBody(shape: readonly number[]): string {
  const n = shape.reduce((a, b) => a * b, 1);
  return JSON.stringify({ instances: [Array.from({ length: n }, (_, i) => Math.round(((i * 37) % 256) / 2.55) / 100)] });
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

const rssMB = (pid: number) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)![1]) / 1024;

async function throughputRows(dir: string, name: ModelName, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const body = exampleBody(MODELS[name].shape);
  const row = (benchmark: string, unit: string, value: number): Row => ({ benchmark: `serve ${name} ${benchmark}`, unit, rxgrad: value, tfjsWasm: null, tfjsCpu: null });
  for (const batching of [false, true]) {
    const server = await startServer(dir, batching);
    try {
      await load(server.url, body, 16, 300); // warm-up: JIT, arenas, sockets
      for (const clients of [1, 16, 64]) {
        const total = (quick ? 400 : 2000) * (clients === 1 ? 1 : 2);
        const r = await load(server.url, body, clients, total);
        const sorted = Float64Array.from(r.latenciesMs).sort();
        const tag = `${clients} client${clients > 1 ? 's' : ''} ${batching ? `batching (wait ${MAX_WAIT_MS} ms)` : 'no batching'}`;
        log(`  ${name} ${tag}: ${(r.requests / r.seconds).toFixed(0)} req/s, p50 ${quantile(sorted, 0.5).toFixed(2)} ms, p99 ${quantile(sorted, 0.99).toFixed(2)} ms, ${r.failed} failed`);
        if (r.failed) throw new Error(`${name} ${tag}: ${r.failed} failed requests (${r.firstFailure})`);
        rows.push(row(`${tag}: throughput`, 'req/s', r.requests / r.seconds), row(`${tag}: p50`, 'ms', quantile(sorted, 0.5)), row(`${tag}: p99`, 'ms', quantile(sorted, 0.99)));
      }
      if (batching) {
        const rowsPerBatch = (await metric(server.url, 'rxgrad_batch_rows_sum')) / (await metric(server.url, 'rxgrad_batch_rows_count'));
        rows.push(row('batching: mean rows per model batch (all runs)', 'rows', rowsPerBatch));
      }
    } finally {
      await server.close();
    }
  }
  const value = (benchmark: string) => rows.find((r) => r.benchmark === `serve ${name} ${benchmark}`)!.rxgrad!;
  for (const clients of [1, 16, 64]) {
    const tag = `${clients} client${clients > 1 ? 's' : ''}`;
    rows.push(row(`${tag}: throughput batching / no batching`, 'x', value(`${tag} batching (wait ${MAX_WAIT_MS} ms): throughput`) / value(`${tag} no batching: throughput`)));
  }
  return rows;
}

/** 20 commits by a trainer (this process) while 16 clients load the server; every request must succeed. */
async function reloadRows(dir: string, model: Model, quick: boolean): Promise<Row[]> {
  const server = await startServer(dir, true);
  const body = exampleBody(MODELS.mlp.shape);
  const features = new Float32Array(64 * 784).map((_, i) => ((i * 13) % 256) / 255);
  const labels = Int32Array.from({ length: 64 }, (_, i) => i % 10);
  const optimizer = adam();
  let stop = false;
  try {
    const running = load(server.url, body, 16, 1_000_000, () => stop);
    const reloads = 20;
    const t0 = performance.now();
    for (let i = 0; i < reloads; i++) {
      await lastValueFrom(from([batchFromArrays({ features, shape: [784], labels })]).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer })));
      await saveModel(model, dir);
      const step = model.stepCount;
      // Bounded wait: the server's health reports the committed step.
      for (let w = 0; ((await (await fetch(`${server.url}/health`)).json()) as { step: number }).step !== step; w++) {
        if (w > 2000) throw new Error(`reload ${i + 1}: the server never served step ${step}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const reloadSeconds = (performance.now() - t0) / 1000;
    stop = true;
    const r = await running;
    const loaded = await metric(server.url, 'rxgrad_reloads_total{result="loaded"}');
    const failedReloads = await metric(server.url, 'rxgrad_reloads_total{result="failed"}');
    log(`  reloads under load: ${loaded} loaded, ${Number.isNaN(failedReloads) ? 0 : failedReloads} failed; ${r.requests} requests in ${r.seconds.toFixed(1)} s, ${r.failed} failed${r.firstFailure ? ` (${r.firstFailure})` : ''}`);
    void quick;
    const row = (benchmark: string, unit: string, value: number): Row => ({ benchmark: `serve mlp 20 hot reloads under 16 clients: ${benchmark}`, unit, rxgrad: value, tfjsWasm: null, tfjsCpu: null });
    return [
      row('reloads seen by the server', 'reloads', loaded), row('requests answered meanwhile', 'requests', r.requests), row('failed requests', 'requests', r.failed),
      row('mean seconds per commit → served', 's', reloadSeconds / reloads),
    ];
  } finally {
    stop = true;
    await server.close();
  }
}

/** Server memory over `total` requests at 64 clients with batching. */
async function memoryRows(dir: string, total: number): Promise<Row[]> {
  const server = await startServer(dir, true, 500);
  const body = exampleBody(MODELS.mlp.shape);
  const samples: { requests: number; rss: number; heap: number }[] = [];
  try {
    const warm = await load(server.url, body, 64, 10_000);
    if (warm.failed) throw new Error(`memory warm-up: ${warm.failed} failed (${warm.firstFailure})`);
    const sample = async (requests: number) => samples.push({ requests, rss: rssMB(server.child.pid!), heap: (await metric(server.url, 'nodejs_heap_size_used_bytes')) / 2 ** 20 });
    await sample(0);
    let failed = 0;
    const t0 = performance.now();
    for (let done = 0; done < total; done += 10_000) {
      const r = await load(server.url, body, 64, 10_000);
      failed += r.failed;
      await sample(done + 10_000);
    }
    const seconds = (performance.now() - t0) / 1000;
    log(`  memory over ${total} requests (${(total / seconds).toFixed(0)} req/s, ${failed} failed): ` + samples.map((s) => `${s.requests / 1000}k: RSS ${s.rss.toFixed(0)} MB, heap ${s.heap.toFixed(1)} MB`).join('; '));
    const row = (benchmark: string, unit: string, value: number): Row => ({ benchmark: `serve mlp ${total / 1000}k requests, 64 clients: ${benchmark}`, unit, rxgrad: value, tfjsWasm: null, tfjsCpu: null });
    const first = samples[0]!;
    const last = samples.at(-1)!;
    return [
      row('server RSS after 10k warm-up', 'MB', first.rss), row('server RSS at the end', 'MB', last.rss), row('server RSS max', 'MB', Math.max(...samples.map((s) => s.rss))),
      row('server JS heap after warm-up', 'MB', first.heap), row('server JS heap at the end', 'MB', last.heap), row('failed requests', 'requests', failed),
    ];
  } finally {
    await server.close();
  }
}

/**
 * Every serving measurement, as bench rows (rxgrad only: the comparison is batching against none).
 *
 * Usage: `const rows = await serveBench({ quick: false });`
 */
export async function serveBench(options: { quick: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const loadStart = os.loadavg()[0]!;
  for (const name of ['mlp', 'cnn'] as const) {
    const dir = mkdtempSync(join(tmpdir(), `rxgrad-serve-bench-${name}-`));
    const model = MODELS[name].build();
    try {
      await saveModel(model, dir);
      rows.push(...(await throughputRows(dir, name, options.quick)));
      if (name === 'mlp' && !process.argv.includes('--throughput-only')) {
        rows.push(...(await reloadRows(dir, model, options.quick)));
        rows.push(...(await memoryRows(dir, options.quick ? 20_000 : 100_000)));
      }
    } finally {
      model.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  log(`  load average ${loadStart.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)} (${os.availableParallelism()} threads)`);
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await serveBench({ quick: process.argv.includes('--quick') });
  for (const r of rows) console.log(`${r.benchmark.padEnd(70)} ${String(r.unit).padEnd(9)} ${r.rxgrad! >= 100 ? Math.round(r.rxgrad!) : r.rxgrad!.toPrecision(3)}`);
  await closeDefaultEngine();
}
