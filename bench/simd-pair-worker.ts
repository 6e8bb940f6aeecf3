/**
 * The worker side of {@link SimdPairProbe} (bench/simd-pair.ts), and the GEMM loop both sides run.
 *
 * Usage (in the probe's worker thread): `await serve();`
 */
import { parentPort, workerData } from 'node:worker_threads';
import { makeEngine } from './rxgrad.ts';
import type { Engine } from '../src/engine.ts';

/** GEMMs per loop: ~25 ms on one thread of this machine. */
export const PAIR_GEMMS = 20;

/** A loop of `calls` GEMMs 256×784·784×128 on `engine`'s calling thread; returns its ms. */
export function gemmLoop(engine: Engine): (calls: number) => number {
  const { heap, kernels } = engine;
  const x = heap.alloc(256 * 784 * 4), w = heap.alloc(784 * 128 * 4), y = heap.alloc(256 * 128 * 4);
  heap.f32.fill(0.5, x >> 2, (x >> 2) + 256 * 784);
  heap.f32.fill(0.01, w >> 2, (w >> 2) + 784 * 128);
  return (calls) => {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) kernels.gemm(0, 0, 256, 128, 784, 1, x, 784, w, 128, 0, y, 128);
    return performance.now() - t0;
  };
}

/** Runs a loop each time the probe says go (signal words: see bench/simd-pair.ts), until it says stop. */
export async function serve(): Promise<void> {
  const signal = new Int32Array(workerData as SharedArrayBuffer);
  const engine = await makeEngine(1);
  const run = gemmLoop(engine);
  run(PAIR_GEMMS);
  parentPort!.postMessage('ready');
  let seen = 0;
  for (;;) {
    Atomics.wait(signal, 0, seen);
    seen = Atomics.load(signal, 0);
    if (seen < 0) break;
    Atomics.store(signal, 1, Math.round(1000 * run(PAIR_GEMMS)));
    Atomics.add(signal, 2, 1);
    Atomics.notify(signal, 2);
  }
  await engine.close();
}
