/**
 * How fast this host runs one thread right now: a 1-thread GEMM 256×256×256 (in L2, compute-bound), GFLOP/s,
 * the median of 40 calls (about 30 ms). The runner probes before and after every suite and logs both.
 *
 * Why: the hypervisor under this VM changes its speed from minute to minute. The same 1-thread CNN trained
 * at 4,700–8,200 ex/s within one hour (eighth and ninth sessions) while the load average said nothing, so a
 * row's figure needs the host's speed beside it to be read: a probe well below the run's best marks a suite
 * measured on a slow host (rerun it, and report the quiet run).
 *
 * The 1-thread probe cannot see a second vCPU that the hypervisor does not give (sixth run of the ninth session: the
 * probe read 51.7–54.8 while two 1-thread processes at once reached only 1.66× one), so {@link twoCoreProbe}
 * runs next to it.
 *
 * Usage: `const gflops = await hostProbe();`
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { median } from './harness.ts';
import { makeEngine } from './rxgrad.ts';

const N = 256;
const CALLS = 40;
const WARM_CALLS = 20;

export async function hostProbe(): Promise<number> {
  const engine = await makeEngine(1);
  const { heap, compute } = engine;
  const bytes = N * N * 4;
  const a = heap.alloc(bytes), b = heap.alloc(bytes), c = heap.alloc(bytes);
  try {
    heap.f32.fill(0.5, a >> 2, (a + bytes) >> 2);
    heap.f32.fill(0.25, b >> 2, (b + bytes) >> 2);
    const ms: number[] = [];
    for (let i = 0; i < CALLS + WARM_CALLS; i++) {
      const t0 = performance.now();
      await compute.gemm(0, 0, N, N, N, 1, a, N, b, N, 0, c, N);
      if (i >= WARM_CALLS) ms.push(performance.now() - t0); // the first calls warm the caches and the code
    }
    return (2 * N ** 3) / (median(ms) * 1e6);
  } finally {
    for (const p of [a, b, c]) heap.free(p);
    await engine.close();
  }
}

/** A floating-point loop for `ms` (one dependency chain: compute-bound, no memory); iterations of 10⁴ per ms. */
const SPIN_SOURCE = `function spin(ms) {
  let x = 1, n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 1e4; i++) x = x * 0.9999999 + 1e-7;
    n++;
  }
  return x > 1e300 ? -1 : n / ms;
}`;
const spin = new Function(`${SPIN_SOURCE}; return spin;`)() as (ms: number) => number;
const SPAN_MS = 100;
const PAIRS = 3;

/**
 * How much two threads of this process get done at once against one alone, right now: about 2 on a quiet
 * 2-vCPU host, less when the hypervisor withholds a vCPU or another process keeps a core busy. Plain JS loops on
 * the main thread and a worker thread, SPAN_MS each, alone then together, the median of PAIRS such pairs (~0.7 s).
 *
 * Usage: `const ratio = await twoCoreProbe(); // 1.98`
 */
export async function twoCoreProbe(): Promise<number> {
  const worker = new Worker(`${SPIN_SOURCE}\nrequire('node:worker_threads').parentPort.on('message', (ms) => require('node:worker_threads').parentPort.postMessage(spin(ms)));`, { eval: true });
  try {
    await once(worker, 'online');
    const together = async (): Promise<number> => {
      const other = once(worker, 'message') as Promise<[number]>;
      worker.postMessage(SPAN_MS);
      const mine = spin(SPAN_MS);
      const [theirs] = await other;
      return mine + theirs;
    };
    await together(); // warm both threads' code
    const ratios: number[] = [];
    for (let i = 0; i < PAIRS; i++) {
      const alone = spin(SPAN_MS);
      ratios.push((await together()) / alone);
    }
    return median(ratios);
  } finally {
    await worker.terminate();
  }
}
