import type { Kernels } from './kernel-api.ts';

/**
 * A compute backend: the kernels on the calling thread, plus the kernels that may be split across
 * a worker pool (asynchronous, because the calling thread waits for the workers without blocking
 * its event loop).
 */
export interface ComputeBackend {
  /** Runs on the calling thread, synchronously. */
  readonly kernels: Kernels;
  /** Number of threads that share a split kernel (the calling thread included). */
  readonly threads: number;
  /** Human-readable name: 'wasm-simd128', 'wasm-relaxed-simd', 'js-reference'. */
  readonly name: string;
  /** GEMM as in {@link Kernels.gemm}, split across the pool when large enough. */
  gemm(
    transA: number, transB: number, m: number, n: number, k: number, alpha: number,
    a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number,
  ): Promise<void> | void;
  /** Stops the workers; the backend must not be used afterwards. */
  close(): Promise<void>;
}
