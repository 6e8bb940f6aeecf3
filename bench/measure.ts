/**
 * Quick throughput and latency measurement of the wasm compute layer (not a test).
 *
 * Usage: `npx tsx bench/measure.ts [--relaxed=auto|true|false] [--threads=2] [--quick] [--ab] [--only=1024³,…]`
 *
 * `--ab`: single-thread A/B of the GEMM paths in one process, samples interleaved (unpacked = direct /
 * panel, packed, auto), so foreign load hits every variant alike; timed on process CPU time (not counting
 * time descheduled) unless `--wall-clock`. `--cpu-clock` times the normal single-thread table that way too.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { SharedHeap } from '../src/heap.ts';
import { createWasmCompute } from '../workers/wasm-compute.ts';

const arg = (name: string, dflt: string): string =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const relaxedArg = arg('relaxed', 'auto');
const relaxedSimd = relaxedArg === 'auto' ? 'auto' : relaxedArg === 'true';
const threads = Number(arg('threads', '2'));
const quick = process.argv.includes('--quick');
const ab = process.argv.includes('--ab');
const only = arg('only', '').split(',').filter(Boolean);

const heap = new SharedHeap({ initialBytes: 64 << 20 });
const single = createWasmCompute(heap.memory, { threads: 1, relaxedSimd });
const multi = createWasmCompute(heap.memory, { threads, relaxedSimd });

/**
 * This process's CPU milliseconds (all threads): a single-thread kernel's CPU time does not count the
 * time it spent descheduled by foreign load, so it is the robust clock for A/B comparisons on a busy box.
 */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
const cpuClock = process.argv.includes('--cpu-clock') || (ab && !process.argv.includes('--wall-clock'));

/** Median seconds per call of `fn` over `samples` samples of ≥ minMs each, after warming up (warmMs). */
async function time(fn: () => unknown, samples = quick ? 3 : 7, minMs = quick ? 15 : 30, warmMs = samples === 1 ? 0 : quick ? 100 : 300, clock = performance.now.bind(performance)): Promise<number> {
  const warmEnd = performance.now() + warmMs;
  while (performance.now() < warmEnd) await fn();
  const out: number[] = [];
  for (let s = 0; s < samples; s++) {
    let calls = 0;
    const t0 = clock();
    let t = t0;
    do {
      await fn();
      calls++;
      t = clock();
    } while (t - t0 < minMs);
    out.push((t - t0) / 1000 / calls);
  }
  out.sort((a, b) => a - b);
  return out[out.length >> 1]!;
}

function filled(count: number): number {
  const p = heap.alloc(count * 4);
  const f = heap.f32;
  // Write every page: never-written pages run GEMM at half speed.
  for (let i = 0; i < count; i++) f[(p >> 2) + i] = ((i * 7919) % 1000) / 1000 - 0.5;
  return p;
}

const shapesAll: [string, number, number, number, number, number][] = [
  // label, m, k, n, transA, transB
  ['64³', 64, 64, 64, 0, 0],
  ['128³', 128, 128, 128, 0, 0],
  ['256³', 256, 256, 256, 0, 0],
  ['512³', 512, 512, 512, 0, 0],
  ['1024³', 1024, 1024, 1024, 0, 0],
  ['(64×784)·(784×128)', 64, 784, 128, 0, 0],
  ['dW: (784×64)ᵀ… Xᵀ·dY 784,64,128', 784, 64, 128, 1, 0],
  ['dX: dY·Wᵀ 64,128,784', 64, 128, 784, 0, 1],
  ['64,128,10', 64, 128, 10, 0, 0],
  ['256,784,128', 256, 784, 128, 0, 0],
  ['1024,1024,1024 Bᵀ', 1024, 1024, 1024, 0, 1],
  ['(1024)ᵀ,1024,1024 Aᵀ', 1024, 1024, 1024, 1, 0],
  ['2048,256,2048', 2048, 256, 2048, 0, 0],
];
const shapes = shapesAll.filter(([label]) => only.length ? only.includes(label) : !label.includes('ᵀ,') && !label.endsWith('Bᵀ') && !label.startsWith('2048'));

/** CPU seconds used by the whole machine so far (from /proc/stat; 0 where unavailable). */
function machineCpuSeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) / 100;
  } catch {
    return 0;
  }
}
const wall0 = performance.now();
const machine0 = machineCpuSeconds();
const own0 = process.cpuUsage();

/** Interleaved single-thread A/B of the GEMM paths; prints GFLOP/s per path and packed / unpacked. */
async function abRun(): Promise<void> {
  const variants = (['unpacked', 'packed', 'auto'] as const).map((gemmPath) => createWasmCompute(heap.memory, { threads: 1, relaxedSimd, gemmPath }));
  console.log(`A/B backend ${variants[0]!.name}, load average ${os.loadavg()[0]!.toFixed(2)}, clock: ${cpuClock ? 'process CPU time' : 'wall'}`);
  console.log('GFLOP/s, median (best) of interleaved samples');
  console.log('| shape (m,k,n) | unpacked | packed | auto | packed/unpacked |');
  console.log('|---|---|---|---|---|');
  for (const [label, m, k, n, tA, tB] of shapes) {
    const a = filled(m * k);
    const b = filled(k * n);
    const c = filled(m * n);
    const lda = tA ? m : k;
    const ldb = tB ? k : n;
    const flops = 2 * m * n * k;
    const per = variants.map(() => [] as number[]);
    for (const v of variants) await time(() => v.kernels.gemm(tA, tB, m, n, k, 1, a, lda, b, ldb, 0, c, n), 1, 10);
    const rounds = quick ? 5 : 11;
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < variants.length; i++) {
        const v = variants[i]!;
        per[i]!.push(await time(() => v.kernels.gemm(tA, tB, m, n, k, 1, a, lda, b, ldb, 0, c, n), 1, quick ? 15 : 25, 0, cpuClock ? cpuMs : undefined));
      }
    }
    // Median and best sample: under heavy foreign load the best one is the least disturbed estimate.
    const med = per.map((xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!);
    const best = per.map((xs) => Math.min(...xs));
    const g = med.map((t, i) => `${(flops / t / 1e9).toFixed(1)} (${(flops / best[i]! / 1e9).toFixed(1)})`);
    console.log(`| ${label} | ${g[0]} | ${g[1]} | ${g[2]} | ${(med[0]! / med[1]!).toFixed(3)} (${(best[0]! / best[1]!).toFixed(3)}) |`);
    heap.free(a);
    heap.free(b);
    heap.free(c);
  }
  for (const v of variants) await v.close();
}

if (ab) {
  const wall0 = performance.now();
  const machine0 = machineCpuSeconds();
  const own0 = process.cpuUsage();
  await abRun();
  const own = process.cpuUsage(own0);
  const foreign = machineCpuSeconds() - machine0 - (own.user + own.system) / 1e6;
  console.log(`foreign CPU load during the run: ${((100 * foreign) / ((performance.now() - wall0) / 1000)).toFixed(0)}% of a core`);
  await single.close();
  await multi.close();
  process.exit(0);
}

console.log(`backend ${single.name}; threads for split: ${multi.threads}; load average ${os.loadavg()[0]!.toFixed(2)}`);
console.log('| shape (m,k,n) | 1 thread GFLOP/s | µs | split GFLOP/s | µs |');
console.log('|---|---|---|---|---|');
for (const [label, m, k, n, tA, tB] of shapes) {
  if (quick && m * n * k > 300e6) continue;
  const a = filled(m * k);
  const b = filled(k * n);
  const c = filled(m * n);
  const lda = tA ? m : k;
  const ldb = tB ? k : n;
  const flops = 2 * m * n * k;
  const t1 = await time(() => single.kernels.gemm(tA, tB, m, n, k, 1, a, lda, b, ldb, 0, c, n), undefined, undefined, undefined, cpuClock ? cpuMs : undefined);
  const t2 = await time(() => multi.gemm(tA, tB, m, n, k, 1, a, lda, b, ldb, 0, c, n));
  const g = (t: number) => (flops / t / 1e9).toFixed(1);
  const us = (t: number) => (t * 1e6).toFixed(1);
  console.log(`| ${label} | ${g(t1)} | ${us(t1)} | ${g(t2)} | ${us(t2)} |`);
  heap.free(a);
  heap.free(b);
  heap.free(c);
}

if (multi.threads > 1) {
  // Dispatch latency: empty task through every worker, back to back (workers hot), and after 2 ms of idling (asleep).
  await multi.ping();
  const hot: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    await multi.ping();
    hot.push(performance.now() - t0);
  }
  const cold: number[] = [];
  for (let i = 0; i < (quick ? 20 : 100); i++) {
    await new Promise((r) => setTimeout(r, 2));
    const t0 = performance.now();
    await multi.ping();
    cold.push(performance.now() - t0);
  }
  const pct = (xs: number[], q: number) => [...xs].sort((x, y) => x - y)[Math.floor(q * (xs.length - 1))]! * 1000;
  const fmt = (xs: number[]) => `median ${pct(xs, 0.5).toFixed(1)} µs, p10 ${pct(xs, 0.1).toFixed(1)}, p90 ${pct(xs, 0.9).toFixed(1)}`;
  console.log(`dispatch round trip (await ping), workers hot: ${fmt(hot)}`);
  console.log(`dispatch round trip (await ping), workers asleep: ${fmt(cold)}`);
}

const wall = (performance.now() - wall0) / 1000;
const own = process.cpuUsage(own0);
const foreign = machineCpuSeconds() - machine0 - (own.user + own.system) / 1e6;
console.log(`foreign CPU load during the run: ${((100 * foreign) / wall).toFixed(0)}% of a core (figures are unreliable above ~5%)`);

await single.close();
await multi.close();
