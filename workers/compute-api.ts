import type { Kernels } from './kernel-api.ts';
import type { SequenceKernels } from './sequence-api.ts';

/**
 * A compute backend: the kernels on the calling thread, plus the kernels that may be split across
 * a worker pool (asynchronous, because the calling thread waits for the workers without blocking
 * its event loop).
 */
export interface ComputeBackend extends Partial<SequenceKernels> {
  /** Runs on the calling thread, synchronously. */
  readonly kernels: Kernels;
  /** Number of threads that share a split kernel (the calling thread included). */
  readonly threads: number;
  /** Human-readable name: 'wasm-simd128', 'wasm-relaxed-simd', 'js-reference'. */
  readonly name: string;
  /**
   * GEMM as in {@link Kernels.gemm}, split across the pool when large enough. `path`: 'auto' (default,
   * chosen by shape) or 'packed', a hint for products the shape rule misjudges (long k with a transposed
   * A, tiny k) that a backend without paths ignores.
   */
  gemm(
    transA: number, transB: number, m: number, n: number, k: number, alpha: number,
    a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number, path?: GemmPath,
  ): Promise<void> | void;
  /**
   * Conv kernels split over batch images across the pool (same arguments as the Kernels members).
   * Optional: a backend without them (the JS reference) is called through `kernels` instead.
   * The filter gradient gives each thread a share of `work`: thread 0 writes dw, the others partial sums
   * that are added to dw in thread order, so results are bitwise reproducible for a given thread count.
   */
  conv2dForward?(...args: Parameters<Kernels['conv2dForward']>): Promise<void> | void;
  conv2dBackwardInput?(...args: Parameters<Kernels['conv2dBackwardInput']>): Promise<void> | void;
  conv2dBackwardFilter?(...args: Parameters<Kernels['conv2dBackwardFilter']>): Promise<void> | void;
  /**
   * An elementwise kernel split into contiguous element ranges across the pool when large enough:
   * `kernel(...pointers, n, ...floats)`, every pointer advanced to the range start. Optional (as the conv
   * members): without it, call `kernels` directly. Results are the same as one call (elementwise).
   */
  elementwise?(name: ElementwiseKernel, pointers: readonly number[], n: number, floats?: readonly number[]): Promise<void> | void;
  /** Max pooling split over batch images (same arguments and results as the Kernels member). */
  maxPool2dForward?(...args: Parameters<Kernels['maxPool2dForward']>): Promise<void> | void;
  /**
   * As Kernels.maxPool2dBackward, split over batch images when `batch` (the number of images xCount and
   * yCount cover) is given.
   */
  maxPool2dBackward?(dy: number, argmax: number, dx: number, xCount: number, yCount: number, batch?: number): Promise<void> | void;
  /**
   * Several elementwise calls (the optimizer's per-parameter updates) as one split across the pool when
   * large enough, synchronously: `name(...pointers, n, ...tail)` each, pointers advanced per range (a 0
   * pointer, an absent operand, stays 0). The calls run in any order and at once, so none may read what
   * another writes. Results equal the calls made one by one.
   */
  elementwiseMany?(calls: readonly ElementwiseCall[]): void;
  /**
   * As Kernels.sumRows (the bias gradient), synchronously, split into row chunks fixed by the shape whose
   * partial sums are added in chunk order: the same bits for any thread count.
   */
  sumRows?(x: number, out: number, rows: number, cols: number, beta: number): void;
  /** The LSTM cell kernels split into row ranges across the pool when large enough (the same results). */
  lstmCellForward?(...args: Parameters<Kernels['lstmCellForward']>): Promise<void> | void;
  lstmCellBackward?(...args: Parameters<Kernels['lstmCellBackward']>): Promise<void> | void;
  /** The GRU cell kernels, split likewise. */
  gruCellForward?(...args: Parameters<Kernels['gruCellForward']>): Promise<void> | void;
  gruCellBackward?(...args: Parameters<Kernels['gruCellBackward']>): Promise<void> | void;
  // The whole-sequence recurrent kernels (SequenceKernels members, optional): one job per sequence, split
  // into row ranges. Without them a recurrent layer loops over the steps with the cell kernels.
  /**
   * A step (a batch through a model) begins. A backend with a worker pool weighs whole steps with and without
   * its workers on a busy host (workers/step-judge.ts). Optional; cheap.
   */
  markStep?(): void;
  /** Stops the workers; the backend must not be used afterwards. */
  close(): Promise<void>;
}

/** See {@link ComputeBackend.gemm}. */
export type GemmPath = 'auto' | 'packed';

/**
 * Image chunks of a split filter gradient (conv2dBackwardFilter): fixed, never the thread count, so the
 * chunk-order sum of their partial filters is the same bits on any number of threads. The caller's `work`
 * holds this many shares (a partial filter plus an im2col area each).
 */
export const FILTER_GRADIENT_CHUNKS = 8;

/** One call of {@link ComputeBackend.elementwiseMany}. */
export interface ElementwiseCall {
  readonly name: ElementwiseKernel | 'adamUpdate' | 'sgdUpdate' | 'emaUpdate';
  /** Operands (0: absent, e.g. sgd's velocity without momentum). */
  readonly pointers: readonly number[];
  readonly n: number;
  /** Arguments after n. */
  readonly tail?: readonly number[];
  /** Bit i set: tail[i] is an f32 (default: every tail argument). */
  readonly tailFloatMask?: number;
}

/** The elementwise kernels a backend may split: `(…pointers, n, …floats)`, one element's output per element. */
export type ElementwiseKernel =
  | 'reluForward' | 'reluBackward' | 'leakyReluForward' | 'leakyReluBackward' | 'sigmoidForward' | 'sigmoidBackward'
  | 'tanhForward' | 'tanhBackward' | 'geluForward' | 'geluBackward';
