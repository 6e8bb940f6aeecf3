/**
 * How fast this host runs one thread right now: a 1-thread GEMM 256×256×256 (in L2, compute-bound), GFLOP/s,
 * the median of 40 calls (about 30 ms). The runner probes before and after every suite and logs both.
 *
 * Why: the hypervisor under this VM changes its speed from minute to minute. The same 1-thread CNN trained
 * at 4,700–8,200 ex/s within one hour (eighth and ninth sessions) while the load average said nothing, so a
 * row's figure needs the host's speed beside it to be read: a probe well below the run's best marks a suite
 * measured on a slow host (rerun it, and report the quiet run).
 *
 * Usage: `const gflops = await hostProbe();`
 */
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
