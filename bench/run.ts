/**
 * Benchmark runner: rxgrad against TF.js (wasm and cpu backends) in one process.
 *
 * Usage: `npm run bench -- --quick` · `npm run bench -- --only "gemm 512"` · `npm run bench -- --list`
 *
 * Prints a table on stdout (progress on stderr) and writes bench/results/latest.json:
 * `{ machine, date, libraries, rows: [{ benchmark, unit, rxgrad, tfjsWasm, tfjsCpu }] }`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { gemmCases } from './gemm.ts';
import { attempt, type BenchCase, type BenchContext, type Row } from './harness.ts';
import { mlpCases } from './mlp.ts';
import { lstmBench } from './lstm.ts';
import { cnnBench } from './cnn.ts';
import { attentionBench } from './attention.ts';
import { onlineBench } from './online.ts';
import { recommenderBench } from './recommender.ts';
import { threadsBench } from './threads.ts';
import { placementBench } from './placement.ts';
import { dashboardBench } from './dashboard.ts';
import { serveBench } from './serve.ts';
import { guardBench } from './guard.ts';
import { tuningBench } from './tuning.ts';
import type { SoakResult } from './soak.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { closeRxgradEngines, defaultRxgradEngine } from './rxgrad.ts';
import { hostProbe, twoCoreProbe } from './host-probe.ts';
import { initTfjs } from './tfjs.ts';

const program = new Command()
  .name('bench')
  .description('rxgrad vs TF.js (wasm, cpu) benchmarks')
  .option('--quick', 'a subset that finishes in under 2 minutes', false)
  .option('--only <pattern>', 'run only benchmarks whose name matches (case-insensitive regex or substring)')
  .option('--cpu-all-epochs', 'full run: train the TF.js cpu MLP for all 5 epochs too (adds ~8 min)', false)
  .option('--list', 'list the benchmarks and exit', false)
  .parse();
const options = program.opts<{ quick: boolean; only?: string; list: boolean; cpuAllEpochs: boolean }>();

function matcher(pattern: string | undefined): (name: string) => boolean {
  if (!pattern) return () => true;
  try {
    const re = new RegExp(pattern, 'i');
    return (name) => re.test(name);
  } catch {
    const needle = pattern.toLowerCase();
    return (name) => name.toLowerCase().includes(needle);
  }
}

const log = (message: string) => process.stderr.write(`${message}\n`);
const ctx: BenchContext = { quick: options.quick, cpuAllEpochs: options.cpuAllEpochs, log };
const matches = matcher(options.only);
/** Suites written as one function each (issue suites: sequence models, …), run as cases of this harness. */
const suiteCases: BenchCase[] = [
  { name: 'cnn fashion-mnist', quick: true, run: (c) => cnnBench({ quick: c.quick }) },
  { name: 'lstm fashion-mnist rows', quick: true, run: (c) => lstmBench({ quick: c.quick }) },
  { name: 'attention per sequence length', quick: true, run: (c) => attentionBench({ quick: c.quick }) },
  { name: 'testThenTrain one vs two forwards', quick: true, run: (c) => onlineBench({ quick: c.quick }) },
  { name: 'recommender online MF and top-k', quick: true, run: (c) => recommenderBench({ quick: c.quick }) },
  { name: 'threads and load: training steps on 1 vs 2 threads, quiet and one core busy; mlp inference b256', quick: true, run: (c) => threadsBench({ quick: c.quick }) },
  { name: 'threads placement: one core busy, each way the kernel can stack the main thread, the worker and the busy loop', quick: true, run: (c) => placementBench({ quick: c.quick }) },
  { name: 'dashboard viewers and history', quick: true, run: (c) => dashboardBench({ quick: c.quick }) },
  { name: 'serve http: batching, reloads under load, memory', quick: true, run: (c) => serveBench({ quick: c.quick }) },
  { name: 'non-finite guard on vs off', quick: true, run: (c) => guardBench({ quick: c.quick }) },
  { name: 'pruning and transfer speed', quick: true, run: (c) => tuningBench({ quick: c.quick }) },
  { name: 'soak online steps', quick: false, run: async () => soakRows(await soakInFreshProcess(200_000)) },
];
/**
 * The soak in a process of its own: RSS measured inside this one would include TF.js and every suite
 * run before it, which is not what the soak is about.
 */
async function soakInFreshProcess(steps: number): Promise<SoakResult> {
  const script = fileURLToPath(new URL('./soak.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, '--steps', String(steps)], { timeout: 600_000 });
  const last = stdout.trim().split('\n').at(-1)!;
  return JSON.parse(last) as SoakResult;
}

/** The soak run as rows (rxgrad only: TF.js has no online-stream path to compare). */
function soakRows(r: SoakResult): Row[] {
  const row = (benchmark: string, unit: string, rxgrad: number): Row => ({ benchmark: `soak 200k online steps: ${benchmark}`, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
  return [
    row('steps per second', 'steps/s', r.stepsPerSecond),
    row('RSS after warm-up', 'MB', r.rssStartMB), row('RSS at the end', 'MB', r.rssEndMB),
    row('JS heap after warm-up', 'bytes', r.heapStartBytes), row('JS heap at the end', 'bytes', r.heapEndBytes),
    row('shared heap after warm-up', 'bytes', r.sharedStartBytes), row('shared heap at the end', 'bytes', r.sharedEndBytes),
  ];
}

const allCases = (): BenchCase[] => [...gemmCases(), ...mlpCases(), ...suiteCases];
const cases: BenchCase[] = allCases().filter((c) => (!options.quick || c.quick) && matches(c.name));

if (options.list) {
  for (const c of allCases()) console.log(`${c.quick ? 'quick' : '     '}  ${c.name}`);
  process.exit(0);
}
if (cases.length === 0) {
  log(`no benchmark matches ${JSON.stringify(options.only)}${options.quick ? ' in --quick' : ''}; see --list`);
  process.exit(1);
}

const started = performance.now();
// Other processes skew every number here (TF.js single-threaded, rxgrad on all cores): keep the load.
const loadAtStart = os.loadavg()[0]!;
const tfjs = await initTfjs();
const rxEngine = await attempt(ctx, 'rxgrad engine', async () => {
  const engine = await defaultRxgradEngine();
  return { backend: engine.compute.name, threads: engine.compute.threads };
});
await attempt(ctx, 'rxgrad engine close', closeRxgradEngines);
log(`tfjs ${tfjs.version}: wasm binary ${tfjs.wasmBinary} (simd ${tfjs.wasmSimd}, ${tfjs.wasmThreads} thread); ` +
  `rxgrad: ${rxEngine ? `${rxEngine.backend}, ${rxEngine.threads} threads` : 'unavailable'}`);

const rows: Row[] = [];
/**
 * Per suite: the host's 1-thread speed before and after it, GFLOP/s, and what two threads get done at once against
 * one (bench/host-probe.ts).
 */
const hostSpeed: { suite: string; before: number | null; after: number | null; twoCoresBefore: number | null; twoCoresAfter: number | null }[] = [];
const probe = async () => ({ gflops: await attempt(ctx, 'host probe', hostProbe), twoCores: await attempt(ctx, 'two-core probe', twoCoreProbe) });
const probeNote = (p: { gflops: number | null; twoCores: number | null }) => `1-thread GEMM 256³ at ${fmt(p.gflops)} GFLOP/s, two threads at once ${fmt(p.twoCores)}× one`;
for (const c of cases) {
  const t0 = performance.now();
  const before = await probe();
  log(`▶ ${c.name} (host probe: ${probeNote(before)})`);
  try {
    rows.push(...await c.run(ctx));
  } catch (error) {
    log(`  ! ${c.name} failed: ${(error as Error).stack ?? String(error)}`);
  }
  // A fresh engine per case: idle rxgrad workers must not overlap TF.js measurements.
  await attempt(ctx, 'rxgrad engine close', closeRxgradEngines);
  const after = await probe();
  hostSpeed.push({ suite: c.name, before: before.gflops, after: after.gflops, twoCoresBefore: before.twoCores, twoCoresAfter: after.twoCores });
  log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s (host probe after: ${probeNote(after)})`);
}
const probes = hostSpeed.flatMap((h) => [h.before, h.after]).filter((v): v is number => v !== null);

const cpus = os.cpus();
const result = {
  machine: {
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    threads: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage1m: { start: loadAtStart, end: os.loadavg()[0]! },
    hostSpeedGflops: hostSpeed,
  },
  date: new Date().toISOString(),
  mode: options.quick ? 'quick' : 'full',
  libraries: {
    tfjs: { version: tfjs.version, wasmBinary: tfjs.wasmBinary, wasmSimd: tfjs.wasmSimd, wasmThreads: tfjs.wasmThreads },
    rxgrad: rxEngine,
  },
  rows,
};
const outDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);

/** 3 significant digits, no exponent for the magnitudes we print. */
function fmt(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '—';
  const abs = Math.abs(v);
  if (abs >= 1000) return Math.round(v).toString();
  return v.toPrecision(3);
}
const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b);
const header = ['benchmark', 'unit', 'rxgrad', 'tfjs-wasm', 'tfjs-cpu', 'rxgrad/wasm', 'rxgrad/cpu', 'pytorch', 'rxgrad/pytorch'];
const table = rows.map((r) => [
  r.benchmark, r.unit, fmt(r.rxgrad), fmt(r.tfjsWasm), fmt(r.tfjsCpu),
  fmt(ratio(r.rxgrad, r.tfjsWasm)), fmt(ratio(r.rxgrad, r.tfjsCpu)), fmt(r.pytorch ?? null), fmt(ratio(r.rxgrad, r.pytorch ?? null)),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((cells) => cells[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
console.log(`\n${result.machine.cpu}, ${result.machine.threads} threads, Node ${result.machine.node}; ${result.mode} run; ` +
  `load average ${loadAtStart.toFixed(1)} → ${result.machine.loadAverage1m.end.toFixed(1)}`);
if (probes.length) {
  console.log(`host probe (1-thread GEMM 256³, before and after each suite): ${fmt(Math.min(...probes))}–${fmt(Math.max(...probes))} GFLOP/s; ` +
    'a suite whose probes sit well below the run\'s best ran on a slow host (bench/host-probe.ts)');
}
const twoCores = hostSpeed.flatMap((h) => [h.twoCoresBefore, h.twoCoresAfter]).filter((v): v is number => v !== null);
if (twoCores.length) {
  console.log(`two-core probe (two threads at once against one, before and after each suite): ${Math.min(...twoCores).toFixed(2)}–${Math.max(...twoCores).toFixed(2)}×; ` +
    'a suite whose probes sit well below 2 ran while the host withheld a core: its 2-thread figures are contaminated');
}
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const cells of table) console.log(line(cells));
console.log('\nRatios are rxgrad ÷ TF.js in the row\'s unit: > 1 is better for rates (GFLOP/s, examples/s, %),');
console.log('worse for times (µs, ms). TF.js wasm is single-threaded in Node (no threaded binary), rxgrad uses its pool.');
log(`wrote ${join(outDir, 'latest.json')} in ${((performance.now() - started) / 1000).toFixed(0)} s total`);
