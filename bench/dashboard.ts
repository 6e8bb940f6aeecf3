/**
 * Dashboard benchmark (rxgrad only):
 * - training throughput of the 784-128-10 MLP at batch 64 (`fit` over the same pre-made batches)
 *   with no dashboard, with a dashboard watching it (model sampling on) and no viewer, and with 5
 *   viewers connected (real SSE clients in another process, reading everything). Alternating
 *   rounds, median per variant.
 * - the history's memory: JS heap (after a full GC) held by a dashboard after 100,000 and after
 *   1,000,000 step reports (synthetic reports, recorded as `watch` records them: training a
 *   million real steps here would take a quarter of an hour and measure the model, not the
 *   history), the page's snapshot size then, and the cost of recording one report.
 *
 * Usage: `const rows = await dashboardBench({ quick: true });` · `npx tsx bench/dashboard.ts [--quick]`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { from, lastValueFrom, toArray } from 'rxjs';
import { median, type Row } from './harness.ts';
import { loadRxgrad, makeEngine } from './rxgrad.ts';

const WIDTH = 784;
const CLASSES = 10;
const BATCH = 64;
const VIEWERS = 5;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapAfterGc = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

/**
 * SSE viewers in a child process (a browser is another process too), opened and closed on command
 * so rounds with and without viewers can alternate.
 */
class Viewers {
  private readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  constructor(url: string, count: number) {
    const script = `
      import { createInterface } from 'node:readline';
      let controllers = [];
      for await (const line of createInterface({ input: process.stdin })) {
        if (line === 'open') {
          let ready = 0;
          controllers = Array.from({ length: ${count} }, () => new AbortController());
          for (const controller of controllers) {
            const response = await fetch(${JSON.stringify(`${url}events`)}, { signal: controller.signal });
            const reader = response.body.getReader();
            (async () => {
              let first = true;
              for (;;) {
                const { done } = await reader.read().catch(() => ({ done: true }));
                if (done) break;
                if (first && (first = false, ++ready === ${count})) console.log('ready');
              }
            })();
          }
        } else if (line === 'close') {
          for (const controller of controllers) controller.abort();
          console.log('closed');
        }
      }`;
    this.child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();
  }

  private async command(line: string, reply: string): Promise<void> {
    this.child.stdin!.write(`${line}\n`);
    const answer = await this.lines.next();
    if (answer.value !== reply) throw new Error(`dashboard bench: viewers answered ${String(answer.value)} to ${line}`);
  }

  open = () => this.command('open', 'ready');
  close = () => this.command('close', 'closed');

  async stop(): Promise<void> {
    this.child.stdin!.end();
    if (this.child.exitCode === null) await once(this.child, 'exit');
  }
}

/** Waits until the board has `n` viewers (connections close asynchronously). */
async function viewersAre(board: { viewers: number }, n: number): Promise<void> {
  for (let i = 0; i < 1000 && board.viewers !== n; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (board.viewers !== n) throw new Error(`dashboard bench: ${board.viewers} viewers connected, expected ${n}`);
}

export async function dashboardBench(options: { quick: boolean }): Promise<Row[]> {
  const rx = await loadRxgrad();
  const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
  const row = (benchmark: string, unit: string, rxgrad: number): Row => ({ benchmark: `dashboard: ${benchmark}`, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
  const rows: Row[] = [];
  let viewers: Viewers | null = null;
  const model = rx.sequential([rx.dense(128), rx.relu(), rx.dense(CLASSES)], { inputShape: [WIDTH], seed: 1, engine });
  const board = await rx.createDashboard({ port: 0, model, title: 'bench' });
  try {
    // ---- throughput: none / watched without viewers / watched by 5 viewers
    const rng = new rx.Random(11);
    const count = options.quick ? 150 : 400;
    const batches = Array.from({ length: count }, () =>
      rx.batchFromArrays({ features: new Float32Array(BATCH * WIDTH).map(() => rng.uniform()), shape: [WIDTH], labels: new Int32Array(BATCH).map(() => rng.int(CLASSES)) }),
    );
    const fit = { loss: rx.softmaxCrossEntropy(), optimizer: rx.adam({ learningRate: 1e-4 }), metrics: ['accuracy'] as const };
    const plain = () => lastValueFrom(from(batches).pipe(model.fit(fit), toArray()));
    const watched = () => lastValueFrom(from(batches).pipe(model.fit(fit), board.watch(), toArray()));
    const seconds = { none: [] as number[], zero: [] as number[], five: [] as number[] };
    const time = async (run: () => Promise<unknown>, into: number[]) => {
      const t0 = performance.now();
      await run();
      into.push((performance.now() - t0) / 1000);
    };
    viewers = new Viewers(board.url, VIEWERS);
    await plain(); // warm-up: optimizer slots, arenas, JIT
    await watched();
    // Alternating rounds, median per variant: drift (GC, JIT, other load) hits all three alike.
    for (let round = 0; round < (options.quick ? 3 : 7); round++) {
      await time(plain, seconds.none);
      await time(watched, seconds.zero);
      await viewers.open();
      await viewersAre(board, VIEWERS);
      await time(watched, seconds.five);
      await viewers.close();
      await viewersAre(board, 0);
    }
    const diagnostics = await board.diagnostics();
    const fiveSeconds = seconds.five.reduce((a, b) => a + b, 0);
    const rate = (s: number[]) => (count * BATCH) / median(s);
    const [none, zero, five] = [rate(seconds.none), rate(seconds.zero), rate(seconds.five)];
    process.stderr.write(`  fit: no dashboard ${Math.round(none)} ex/s, 0 viewers ${Math.round(zero)}, ${VIEWERS} viewers ${Math.round(five)} (${diagnostics.flushes} flushes, ${diagnostics.bytesSent} bytes sent, ${diagnostics.busyMs.toFixed(1)} ms serving them)\n`);
    rows.push(
      row('fit mlp 784-128-10 b64, no dashboard', 'examples/s', none),
      row('fit mlp 784-128-10 b64, watched, 0 viewers', 'examples/s', zero),
      row(`fit mlp 784-128-10 b64, watched, ${VIEWERS} viewers`, 'examples/s', five),
      row(`${VIEWERS} viewers vs no dashboard`, '×', five / none),
      row(`${VIEWERS} viewers vs 0 viewers`, '×', five / zero),
      // Independent of other load: the time the server itself spent on viewers, per second of watched training.
      row(`server time serving ${VIEWERS} viewers per second of training`, 'ms/s', diagnostics.busyMs / fiveSeconds),
    );
  } finally {
    await viewers?.stop();
    await board.close();
    model.dispose();
    await engine.close();
  }

  // ---- history memory, in a fresh process: this one's heap holds the model, batches and TF.js.
  const script = fileURLToPath(import.meta.url);
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, '--history'], { timeout: 300_000 });
  const h = JSON.parse(stdout.trim().split('\n').at(-1)!) as HistoryResult;
  process.stderr.write(`  history: JS heap +${h.heapAt1k} bytes after 1k steps, +${h.heapAt100k} after 100k, +${h.heapAt1M} after 1M; snapshot ${h.snapshotBytes} bytes; ${h.recordNs.toFixed(0)} ns per report\n`);
  rows.push(
    row('history JS heap after 1,000 steps', 'bytes', h.heapAt1k),
    row('history JS heap after 100,000 steps', 'bytes', h.heapAt100k),
    row('history JS heap after 1,000,000 steps', 'bytes', h.heapAt1M),
    row('RSS growth from 1,000 to 1,000,000 steps', 'bytes', h.rssGrowth),
    row('page snapshot after 1,000,000 steps', 'bytes', h.snapshotBytes),
    row('recording one step report', 'ns', h.recordNs),
  );
  return rows;
}

/** What the history measurement reports (JS heap after a full GC, above the heap before the dashboard existed). */
interface HistoryResult {
  heapAt1k: number;
  heapAt100k: number;
  heapAt1M: number;
  rssGrowth: number;
  snapshotBytes: number;
  recordNs: number;
}

/** A dashboard fed a million step reports as `watch` records them (see the module comment). */
async function historyMemory(): Promise<HistoryResult> {
  const { createDashboard } = await import('../src/dashboard/index.ts');
  const base = heapAfterGc();
  const board = await createDashboard({ port: 0, title: 'history bench', warn: () => {} });
  const result: HistoryResult = { heapAt1k: 0, heapAt100k: 0, heapAt1M: 0, rssGrowth: 0, snapshotBytes: 0, recordNs: 0 };
  try {
    let rssAt1k = 0;
    let t0 = 0;
    for (let step = 1; step <= 1_000_000; step++) {
      board.record({
        step, loss: 2 / Math.sqrt(step) + (step % 7) * 0.01, accuracy: 1 - 1 / Math.sqrt(step), examples: step * 64, batchSize: 64,
        learningRate: 1e-3 * 0.99999 ** step, update: 'applied', nonFiniteSkipped: 0,
      });
      if (step === 1000) {
        result.heapAt1k = heapAfterGc() - base;
        rssAt1k = process.memoryUsage().rss;
        t0 = performance.now();
      }
      if (step === 100_000) {
        result.recordNs = ((performance.now() - t0) * 1e6) / (step - 1000);
        result.heapAt100k = heapAfterGc() - base;
      }
    }
    result.heapAt1M = heapAfterGc() - base;
    result.rssGrowth = process.memoryUsage().rss - rssAt1k;
    result.snapshotBytes = Buffer.byteLength(await (await fetch(`${board.url}state`)).text());
  } finally {
    await board.close();
  }
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href && process.argv.includes('--history')) {
  console.log(JSON.stringify(await historyMemory()));
} else if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const rows = await dashboardBench({ quick: process.argv.includes('--quick') });
  for (const r of rows) console.log(`${r.benchmark.padEnd(60)} ${String(Math.round(r.rxgrad! * 1000) / 1000).padStart(12)} ${r.unit}`);
}
