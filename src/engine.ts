import { SharedHeap, type HeapOptions } from './heap.ts';
import type { ComputeBackend } from '../workers/compute-api.ts';
import type { Kernels } from '../workers/kernel-api.ts';
import { referenceKernels } from '../workers/reference-kernels.ts';
import { createWasmCompute } from '../workers/wasm-compute.ts';

/** Options for {@link createEngine}. */
export interface EngineOptions extends HeapOptions {
  /** Threads that share a split kernel, the calling thread included. Default: env RXGRAD_THREADS, else the cores (max 2 workers' worth). */
  threads?: number;
  /** 'wasm' (default, or env RXGRAD_BACKEND): SIMD128 kernels on the worker pool; 'js': the float64 JS reference kernels (slow; an oracle). */
  backend?: 'wasm' | 'js';
  /** 'auto' (default) uses relaxed SIMD (fused multiply-add) when the runtime supports it. */
  relaxedSimd?: 'auto' | boolean;
  /**
   * How long (ms) a worker spins for its next task before sleeping. Default: env RXGRAD_WORKER_SPIN_MS,
   * else 2 (covers the gaps between a training step's kernels; an idle process burns up to that much
   * of a core after each kernel). Lower it on a host whose cores are busy with other work.
   */
  workerSpinMs?: number;
}

/**
 * The shared heap plus the compute backend that works on it. Models, tensors and kernels of one
 * engine share one memory; most programs use the single {@link defaultEngine}.
 *
 * Usage: `const engine = createEngine({ threads: 1 }); const p = engine.heap.alloc(64); await engine.close();`
 */
export class Engine {
  readonly kernels: Kernels;
  constructor(
    readonly heap: SharedHeap,
    readonly compute: ComputeBackend,
  ) {
    this.kernels = compute.kernels;
  }

  /** Stops the worker pool. The engine must not be used afterwards. */
  async close(): Promise<void> {
    await this.compute.close();
  }
}

function jsCompute(heap: SharedHeap): ComputeBackend {
  const kernels = referenceKernels(() => heap.f32, () => heap.i32);
  return {
    kernels,
    threads: 1,
    name: 'js-reference',
    gemm: kernels.gemm,
    close: async () => {},
  };
}

/**
 * Creates an engine with its own shared memory and compute backend.
 *
 * Usage: `const engine = createEngine({ threads: 2 });`
 */
export function createEngine(options: EngineOptions = {}): Engine {
  const heap = new SharedHeap(options);
  const backend = options.backend ?? envBackend();
  if (backend === 'js') return new Engine(heap, jsCompute(heap));
  const threads = options.threads ?? envThreads();
  const workerSpinMs = options.workerSpinMs ?? envWorkerSpinMs();
  if (workerSpinMs !== undefined && !(Number.isFinite(workerSpinMs) && workerSpinMs >= 0)) {
    throw new RangeError(`createEngine: workerSpinMs must be a finite number ≥ 0, got ${workerSpinMs}`);
  }
  // alloc: the per-thread GEMM packing workspaces come from the heap (one block, kept for the engine's life).
  return new Engine(heap, createWasmCompute(heap.memory, {
    ...(threads ? { threads } : {}),
    ...(workerSpinMs !== undefined ? { workerSpinMs } : {}),
    relaxedSimd: options.relaxedSimd ?? 'auto',
    alloc: (bytes) => heap.alloc(bytes),
  }));
}

function envBackend(): 'wasm' | 'js' {
  const raw = process.env['RXGRAD_BACKEND'] ?? 'wasm';
  if (raw !== 'wasm' && raw !== 'js') throw new RangeError(`RXGRAD_BACKEND must be 'wasm' or 'js', got '${raw}'`);
  return raw;
}

function envThreads(): number | undefined {
  const raw = process.env['RXGRAD_THREADS'];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`RXGRAD_THREADS must be a positive integer, got '${raw}'`);
  return n;
}

function envWorkerSpinMs(): number | undefined {
  const raw = process.env['RXGRAD_WORKER_SPIN_MS'];
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!(Number.isFinite(ms) && ms >= 0)) throw new RangeError(`RXGRAD_WORKER_SPIN_MS must be a number ≥ 0, got '${raw}'`);
  return ms;
}

let defaultInstance: Engine | null = null;

/**
 * The process-wide engine, created on first use (wasm backend, threads from RXGRAD_THREADS or the cores).
 *
 * Usage: `const { heap, kernels } = defaultEngine();`
 */
export function defaultEngine(): Engine {
  defaultInstance ??= createEngine();
  return defaultInstance;
}

/**
 * Replaces the default engine (before any model is built), e.g. to choose the thread count.
 *
 * Usage: `setDefaultEngine(createEngine({ threads: 1 }));`
 */
export function setDefaultEngine(engine: Engine): void {
  defaultInstance = engine;
}

/**
 * Stops the default engine's workers so the process can exit; a later call to
 * {@link defaultEngine} creates a fresh one.
 *
 * Usage: `await closeDefaultEngine();`
 */
export async function closeDefaultEngine(): Promise<void> {
  const engine = defaultInstance;
  defaultInstance = null;
  if (engine) await engine.close();
}
