/**
 * The one place the benchmarks reach into rxgrad's engine. The core is being written alongside the
 * harness, so everything is imported lazily: a missing or unfinished module turns the rxgrad
 * column into `null` (see `attempt`) instead of stopping the TF.js measurements.
 */
import type { Engine } from '../src/engine.ts';
import type { WasmCompute } from '../workers/wasm-compute.ts';

/** rxgrad's public API (importing it also registers the wasm compute backend). */
export type Rxgrad = typeof import('../src/index.ts');

/**
 * Loads rxgrad's public module.
 *
 * Usage: `const { sequential, dense } = await loadRxgrad();`
 */
export async function loadRxgrad(): Promise<Rxgrad> {
  return import('../src/index.ts');
}

/**
 * The process-wide engine (default thread count), after the wasm backend is registered.
 *
 * Usage: `const engine = await defaultRxgradEngine(); const p = engine.heap.alloc(4096);`
 */
export async function defaultRxgradEngine(): Promise<Engine> {
  await loadRxgrad();
  const { defaultEngine } = await import('../src/engine.ts');
  return defaultEngine();
}

// ─── ADJUST HERE ─── the single place that turns a thread count into an engine. ──────────────────
/**
 * A fresh engine with its own heap and worker pool using `threads` threads (caller included).
 * Close it with `engine.close()`.
 *
 * Usage: `const e1 = await makeEngine(1); ...; await e1.close();`
 */
export async function makeEngine(threads: number): Promise<Engine> {
  await loadRxgrad();
  const { createEngine } = await import('../src/engine.ts');
  return createEngine({ threads });
}

// ─── HOOK ─── empty-kernel dispatch round trip. ──────────────────────────────────────────────────
/**
 * A call that posts an empty kernel to every worker of the pool and waits for all of them
 * (the wasm backend's `ping()`), or `null` when the engine's backend has none (e.g. 'js').
 *
 * Usage: `const ping = emptyKernelRoundTrip(engine); if (ping) await ping();`
 */
export function emptyKernelRoundTrip(engine: Engine): (() => Promise<void>) | null {
  // ComputeBackend doesn't declare ping (the 'js' backend has no pool), so narrow by presence.
  const compute = engine.compute;
  if (!('ping' in compute) || typeof compute.ping !== 'function') return null;
  const wasm = compute as WasmCompute;
  return async () => {
    await wasm.ping();
  };
}

/**
 * Stops the default engine's workers (a later use creates a fresh engine). Called between
 * benchmarks so idle rxgrad workers never share the CPU with a TF.js measurement.
 *
 * Usage: `await closeRxgradEngines();`
 */
export async function closeRxgradEngines(): Promise<void> {
  const { closeDefaultEngine } = await import('../src/engine.ts');
  await closeDefaultEngine();
}

/**
 * `count` batches of `rows` uniform random features of `width` with random class labels below
 * `classes` (seeded): the inputs of the MLP step benchmarks that need no real data.
 *
 * Usage: `const batches = randomClassBatches(rx, 100, 64, 784, 10, 7);`
 */
export function randomClassBatches(rx: Rxgrad, count: number, rows: number, width: number, classes: number, seed: number): import('../src/batch.ts').Batch[] {
  const rng = new rx.Random(seed);
  return Array.from({ length: count }, () => {
    const features = new Float32Array(rows * width).map(() => rng.uniform());
    return rx.batchFromArrays({ features, shape: [width], labels: new Int32Array(rows).map(() => rng.int(classes)) });
  });
}
