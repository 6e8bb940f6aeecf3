/**
 * The wasm compute backend: the SIMD128 kernels (workers/assembly, built by `npm run build:wasm`) on the
 * calling thread, plus a lazily started worker pool that splits large GEMMs.
 */
import { FILTER_GRADIENT_CHUNKS, type ComputeBackend, type GemmPath, type ElementwiseCall, type ElementwiseKernel } from './compute-api.ts';
import { KERNEL_NAMES, type Kernels } from './kernel-api.ts';

import { defaultThreads, loadModule, provideWorkspace, relaxedSupported, warmUp } from './wasm-setup.ts';
import { MR, partitionBatch, partitionElements, partitionGemm, partitionGuided } from './partition.ts';
import { SEQUENCE_KERNEL_NAMES, type SequenceKernels } from './sequence-api.ts';
import { WorkerPool, JOB_BYTES, MAX_CHUNKS, MAX_THREADS, OP, scratchAddress, type CallTask, type JobOptions, type PoolTestHooks } from './pool.ts';

/** Options of {@link createWasmCompute}. */
export interface WasmComputeOptions {
  /**
   * Threads that share a split GEMM, the calling thread included; 1 = no workers at all.
   * Default: env RXGRAD_THREADS, else min(os.availableParallelism(), 2).
   */
  threads?: number;
  /** 'auto' (default): the relaxed-SIMD (FMA) build if V8 accepts it, else plain SIMD128. */
  relaxedSimd?: 'auto' | boolean;
  /**
   * Split a GEMM across the pool when 2·m·n·k ≥ this many flops. Default: {@link HOT_SPLIT_FLOPS} while
   * the workers are still spinning from their last task, {@link COLD_SPLIT_FLOPS} once they sleep.
   */
  splitThresholdFlops?: number;
  /**
   * Allocates `bytes` (64-byte aligned, never freed while the backend lives) on the memory, e.g.
   * `(b) => heap.alloc(b)`: the per-thread GEMM packing workspaces ({@link WasmCompute.workspaceBytes} each,
   * ~1.1 MiB), taken once at creation for every thread. Default: the backend grows the memory by the pages
   * it needs and keeps them (a SharedHeap only hands out pages it grew itself, so the two never overlap).
   */
  alloc?: (bytes: number) => number;
  /** Whether other processes keep the host busy (PoolOptions.hostBusy; default: their CPU time from /proc/stat). */
  hostBusy?: () => boolean | undefined;
  /** Measurement / test hook: 'auto' (default) picks the GEMM path by shape; 'packed' / 'unpacked' force it. */
  gemmPath?: 'auto' | 'packed' | 'unpacked';
  /**
   * Split a memory-bound kernel (elementwise activations, max pooling) when it touches at least this many
   * bytes. Default: {@link HOT_SPLIT_BYTES} while the workers spin, {@link COLD_SPLIT_BYTES} once they sleep.
   */
  splitThresholdBytes?: number;
  /** How long (ms) a worker spins for its next task before sleeping in Atomics.wait; default {@link WORKER_SPIN_MS}. */
  workerSpinMs?: number;
  /** Determinism tests: slow one thread down and jitter every chunk claim (see PoolTestHooks). */
  testHooks?: PoolTestHooks;
  /** Stop splitting for a while when waiting for workers costs more than they save (PoolOptions.adaptive; default true without test hooks). */
  adaptive?: boolean;
}

/** Split threshold while workers spin (no wake-up cost): ~10 µs of single-thread work. */
export const HOT_SPLIT_FLOPS = 0.5e6;
/**
 * Split threshold once workers sleep (~40 µs of work). With chunks claimed dynamically the caller never
 * waits for a wake-up (~50 µs here): it starts on the chunks at once and a worker that arrives late takes
 * fewer, so the cost of a cold split is the caller's futex wake call, not the wake-up latency.
 */
export const COLD_SPLIT_FLOPS = 2e6;
/**
 * Memory-bound split threshold (bytes read + written) while workers spin. Measured with reluForward, quiet
 * box, median of 60: 1 MiB 11 µs one thread vs 12 split, 2 MiB 29 vs 24, 4 MiB 52 vs 36 (workers/README.md).
 */
export const HOT_SPLIT_BYTES = 1 << 20;
/**
 * Once workers sleep. The old fixed partition measured 4 MiB 94 µs vs 140 split, 8 MiB 197 vs 188, 16 MiB
 * 441 vs 298, because the caller waited for the woken worker's half; with dynamic claiming it does not.
 */
export const COLD_SPLIT_BYTES = 2 << 20;
/** Weight of a byte of a fused optimizer update against the byte thresholds (see elementwiseMany). */
export const UPDATE_COST_PER_BYTE = 4;
/**
 * Worker spin after a task before sleeping. Inference and training alternate pool kernels with short
 * single-threaded stretches (dense, loss, the rx pipeline: 0.1–1 ms); with the old 50 µs the worker was
 * asleep at almost every conv and each dispatch paid a futex wake (~70 µs median, ms-long tails on this
 * VM). 2 ms covers those gaps; an idle process burns at most 2 ms of one core per task. Threads never
 * exceed cores (defaultThreads), so a spinning worker never starves the caller.
 */
export const WORKER_SPIN_MS = 2;
/** Chunks per thread a split aims for: enough that a thread the OS deschedules holds up only a small share. */
const CHUNKS_PER_THREAD = 4;
/** Least work per chunk of a compute-bound split (~5 µs): below it the claim and call overhead shows. */
const MIN_CHUNK_FLOPS = 0.25e6;
/** Least bytes per chunk of a memory-bound split (~5 µs at ~15 GB/s). */
const MIN_CHUNK_BYTES = 64 << 10;
/** Most chunks of a row reduction (sumRows): partial sums added in chunk order. */
const REDUCTION_CHUNKS = 8;
/** Least elements per chunk of a row reduction. */
const MIN_REDUCTION_FLOATS = 16 << 10;
/** The sequence kernels' `path` for the recurrent kernel packed once per row range (workers/assembly/recurrent-sequence.ts). */
const SEQUENCE_PACK_ONCE = 3;
/** Floats of partial sums a backend keeps for its row reductions. */
const REDUCE_FLOATS = 64 << 10;
/** The wasm backend, with test and measurement hooks beyond {@link ComputeBackend}. */
export interface WasmCompute extends ComputeBackend {
  /** Every export of the instance on the calling thread (the kernels plus setScratch, nop, …). */
  readonly exports: Kernels & {
    nop(): void;
    setScratch(ptr: number): void;
    scratchBytes(): number;
    setWorkspace(ptr: number): void;
    workspaceBytes(): number;
    setGemmPath(mode: number): void;
    gemmWith(path: number, ...args: Parameters<Kernels['gemm']>): void;
    gemmChoosePath(transB: number, m: number, n: number, k: number, ldb: number): number;
    packBWhole(transB: number, k: number, n: number, b: number, ldb: number, dst: number): void;
    packedBFits(k: number, n: number): number;
    packedBCapacity(): number;
    gemmPrepacked(transA: number, m: number, n: number, k: number, alpha: number, a: number, lda: number, pb: number, beta: number, c: number, ldc: number): void;
  };
  elementwiseMany(calls: readonly ElementwiseCall[]): void;
  lstmCellForward(...args: Parameters<Kernels['lstmCellForward']>): Promise<void> | void;
  lstmCellBackward(...args: Parameters<Kernels['lstmCellBackward']>): Promise<void> | void;
  gruCellForward(...args: Parameters<Kernels['gruCellForward']>): Promise<void> | void;
  gruCellBackward(...args: Parameters<Kernels['gruCellBackward']>): Promise<void> | void;
  sumRows(x: number, out: number, rows: number, cols: number, beta: number): void;
  lstmForwardSequence: SequenceKernels['lstmForwardSequence'];
  lstmBackwardSequence: SequenceKernels['lstmBackwardSequence'];
  gruForwardSequence: SequenceKernels['gruForwardSequence'];
  gruBackwardSequence: SequenceKernels['gruBackwardSequence'];
  /** Bytes of GEMM packing workspace per thread. */
  readonly workspaceBytes: number;
  /** Round trip of an empty task through every worker (starts the pool); for latency measurements. */
  ping(): Promise<void> | void;
  /** Test hook: terminates worker i of the pool (starting the pool if needed); resolves with its exit code. */
  terminateWorkerForTest(i: number): Promise<number>;
  /** The pool, once started. */
  readonly pool: WorkerPool | undefined;
  /** Split over batch images when 2·N·OH·OW·CO·KH·KW·C reaches the split threshold (as GEMM). */
  conv2dForward(...args: Parameters<Kernels['conv2dForward']>): Promise<void> | void;
  conv2dBackwardInput(...args: Parameters<Kernels['conv2dBackwardInput']>): Promise<void> | void;
  conv2dBackwardFilter(...args: Parameters<Kernels['conv2dBackwardFilter']>): Promise<void> | void;
  elementwise(name: ElementwiseKernel, pointers: readonly number[], n: number, floats?: readonly number[]): Promise<void> | void;
  maxPool2dForward(...args: Parameters<Kernels['maxPool2dForward']>): Promise<void> | void;
  maxPool2dBackward(dy: number, argmax: number, dx: number, xCount: number, yCount: number, batch?: number): Promise<void> | void;
}

/**
 * Chunks of a filter gradient over `batch` images of `flops` work: fixed by the shape alone, never by the
 * thread count or the load, so the partial sums and their chunk-order sum are the same bits on 1, 2 or 3
 * threads.
 */
export function reductionChunks(batch: number, flops: number): number {
  // A small gradient stays one call: splitting it could not pay for the extra calls and partial sums.
  return flops < COLD_SPLIT_FLOPS ? 1 : Math.min(batch, FILTER_GRADIENT_CHUNKS);
}

/**
 * Exports the pool may call (chunk rows index this list): the contract's kernels, then the
 * entry points of the splits that are not part of the Kernels contract.
 */
export const CALL_NAMES = [
  ...KERNEL_NAMES, 'maxPool2dForwardPart', 'maxPool2dBackwardPart', 'gemmWith', 'gemmPrepacked',
  ...SEQUENCE_KERNEL_NAMES,
] as const;
type CallName = (typeof CALL_NAMES)[number];

/** The 12 geometry arguments of the pooling kernels (batch … padLeft). */
type PoolGeometry = [
  batch: number, inH: number, inW: number, C: number, outH: number, outW: number, kH: number, kW: number,
  strideH: number, strideW: number, padTop: number, padLeft: number,
];

/** The 15 geometry arguments shared by the conv kernels (batch … dilationW). */
type ConvGeometry = [
  batch: number, inH: number, inW: number, inC: number, outH: number, outW: number, outC: number, kH: number, kW: number,
  strideH: number, strideW: number, padTop: number, padLeft: number, dilationH: number, dilationW: number,
];

/**
 * Creates the wasm backend over the shared memory (synchronously: compiles, instantiates, warms up).
 * One backend per memory is the usual set-up; several may share a memory (each pool takes its own slots).
 *
 * Usage: `const compute = createWasmCompute(heap.memory, { threads: 2 }); compute.kernels.reluForward(x, y, n); await compute.gemm(0, 0, m, n, k, 1, a, k, b, n, 0, c, n); await compute.close();`
 */
export function createWasmCompute(memory: WebAssembly.Memory, options: WasmComputeOptions = {}): WasmCompute {
  const relaxed = options.relaxedSimd ?? 'auto';
  let useRelaxed = false;
  if (relaxed !== false) {
    useRelaxed = relaxedSupported();
    if (relaxed === true && !useRelaxed) throw new Error('rxgrad: relaxed SIMD is not supported by this V8');
  }
  const module = loadModule(useRelaxed ? 'kernels-relaxed.wasm' : 'kernels-simd.wasm');
  const name = useRelaxed ? 'wasm-relaxed-simd' : 'wasm-simd128';
  const threads = options.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new RangeError(`rxgrad: threads must be an integer in [1, ${MAX_THREADS}], got ${threads}`);
  }
  if (memory.buffer.byteLength < 65536) throw new RangeError('rxgrad: the memory must hold the 64 KiB control region');

  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(module, { env: { memory } });
  } catch (err) {
    throw new Error(
      `rxgrad: cannot instantiate the kernels over this memory (it must be shared, maximum ≤ 65536 pages): ${String(err)}`,
    );
  }
  const exports = instance.exports as unknown as WasmCompute['exports'];
  for (const k of KERNEL_NAMES) if (typeof exports[k] !== 'function') throw new Error(`rxgrad: kernel ${k} missing from ${name}`);
  const scratchBytes = exports.scratchBytes();
  const scratch = scratchAddress(0, scratchBytes);
  exports.setScratch(scratch);
  // One packing workspace per thread, each on its own cache lines (64-byte multiples), taken up front so
  // that wasm never allocates and a worker never waits for memory.
  const workspaceBytes = Math.ceil(exports.workspaceBytes() / 64) * 64;
  // Then the pool's job block, the partial sums of chunked reductions and (with a pool) the op(B) that the
  // chunks of a split GEMM share, on lines of their own.
  const sharedPackBytes = threads > 1 ? Math.ceil(exports.packedBCapacity() / 64) * 64 : 0;
  const reduceBytes = Math.ceil((4 * REDUCE_FLOATS) / 64) * 64;
  const workspaceBase = provideWorkspace(memory, threads * workspaceBytes + JOB_BYTES + reduceBytes + sharedPackBytes, options.alloc);
  const workspaceOf = (t: number) => workspaceBase + t * workspaceBytes;
  const jobBlock = workspaceOf(threads);
  const reduceBase = jobBlock + JOB_BYTES;
  const sharedPackB = reduceBase + reduceBytes;
  const gemmPath = { auto: 0, unpacked: 1, packed: 2 }[options.gemmPath ?? 'auto'];
  exports.setWorkspace(workspaceOf(0));
  warmUp(exports, scratch, scratchBytes);
  exports.setGemmPath(gemmPath);

  const kernels: Kernels = exports;
  let pool: WorkerPool | undefined;
  let closed = false;
  const getPool = (): WorkerPool => {
    if (closed) throw new Error('rxgrad: compute backend used after close()');
    return (pool ??= new WorkerPool(module, memory, threads - 1, scratchBytes, {
      callNames: CALL_NAMES, workspace: workspaceOf, gemmPath, workerSpinMs: options.workerSpinMs ?? WORKER_SPIN_MS, jobBlock,
      ...(options.testHooks ? { testHooks: options.testHooks } : {}),
      ...(options.adaptive !== undefined ? { adaptive: options.adaptive } : {}),
      ...(options.hostBusy ? { hostBusy: options.hostBusy } : {}),
    }));
  };
  /**
   * Whether kernels are cut for the pool now: more than one thread, and the step judge has not put whole steps on
   * the caller alone. When not, every kernel runs as on a 1-thread engine: the same bits (a chunk computes what
   * the whole call computes for its rows; reductions keep their fixed chunks), none of the chunks' per-call costs.
   */
  const splitting = () => threads > 1 && !pool?.stepsAlone;
  const threshold = () => options.splitThresholdFlops ?? (pool?.hot ? HOT_SPLIT_FLOPS : COLD_SPLIT_FLOPS);
  const byteThreshold = () => options.splitThresholdBytes ?? (pool?.hot ? HOT_SPLIT_BYTES : COLD_SPLIT_BYTES);
  // Row chunks of a packed GEMM in whole micro-kernel tiles (6×8 with FMA, 5×8 without).
  const PACKED_ROW_TILE = useRelaxed ? 6 : 5;
  const exportOf = (name: CallName) => exports[name as keyof typeof exports] as unknown as (...a: readonly number[]) => void;
  const kernelIds = new Map<CallName, number>(CALL_NAMES.map((name, i) => [name, i]));
  const runRow = (row: CallTask) => exportOf(CALL_NAMES[row.kernel]!)(...row.args);
  /** Most chunks wanted for a job with this much work: a few per thread, none below ~5 µs of work. */
  const chunksFor = (work: number, minWork: number) => Math.max(1, Math.min(CHUNKS_PER_THREAD * threads, Math.floor(work / minWork)));

  /**
   * Runs `rows` (calls of export `name`): as one chunked job across the pool when `parallel`, else on the
   * calling thread in chunk order (the same results: a chunk computes alike wherever it runs).
   */
  function runJob(name: CallName, rows: readonly (readonly number[])[], parallel: boolean, sync = false, floatMask = 0, options: JobOptions = {}): Promise<void> | void {
    if (!parallel || rows.length < 2 || threads === 1) {
      if (options.whole) return options.whole();
      const fn = exportOf(name);
      for (const args of rows) fn(...args);
      return;
    }
    const kernel = kernelIds.get(name)!;
    return getPool().runChunks(name, rows.map((args) => ({ kernel, args, floatMask })), runRow, sync, options);
  }

  /** Pointers advanced to element `s` (a 0 pointer, an absent operand, stays 0). */
  const advance = (pointers: readonly number[], s: number) => pointers.map((p) => (p === 0 ? 0 : p + 4 * s));

  function elementwise(name: ElementwiseKernel, pointers: readonly number[], n: number, floats: readonly number[] = []): Promise<void> | void {
    const bytes = 4 * n * pointers.length;
    const parallel = splitting() && bytes >= byteThreshold();
    if (!parallel) return exportOf(name)(...pointers, n, ...floats);
    // Floats come after the pointers and the count (leakyRelu's slope): mark them f32 for the worker.
    const floatMask = ((1 << floats.length) - 1) << (pointers.length + 1);
    const parts = partitionElements(n, chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold())));
    return runJob(name, parts.map(([s, e]) => [...advance(pointers, s), e - s, ...floats]), true, false, floatMask, { work: bytes });
  }

  function elementwiseMany(calls: readonly ElementwiseCall[]): void {
    let bytes = 0;
    for (const c of calls) bytes += 4 * c.n * c.pointers.filter((p) => p !== 0).length;
    // The fused optimizer updates do far more arithmetic per byte than an elementwise pass (Adam: ~110 µs
    // for 1.6 MB on one thread, reluForward ~11 µs for 1 MB), so they pay for a split at a quarter of the bytes.
    if (!splitting() || bytes * UPDATE_COST_PER_BYTE < byteThreshold()) {
      for (const c of calls) exportOf(c.name)(...c.pointers, c.n, ...(c.tail ?? []));
      return;
    }
    // One job for every call: each cut into line-aligned ranges of about the same number of bytes.
    const per = Math.max(1, bytes / chunksFor(bytes * UPDATE_COST_PER_BYTE, Math.min(MIN_CHUNK_BYTES, byteThreshold())));
    const rows: CallTask[] = [];
    for (const c of calls) {
      const tail = c.tail ?? [];
      const floatMask = (c.tailFloatMask ?? (1 << tail.length) - 1) << (c.pointers.length + 1);
      const callBytes = 4 * c.n * c.pointers.filter((p) => p !== 0).length;
      const kernel = kernelIds.get(c.name)!;
      for (const [s, e] of partitionElements(c.n, Math.max(1, Math.round(callBytes / per)))) {
        rows.push({ kernel, args: [...advance(c.pointers, s), e - s, ...tail], floatMask });
      }
    }
    if (rows.length > MAX_CHUNKS) {
      for (const c of calls) exportOf(c.name)(...c.pointers, c.n, ...(c.tail ?? []));
      return;
    }
    getPool().runChunks('optimizer update', rows, runRow, true, { work: bytes });
  }

  /**
   * A recurrent cell kernel split into row ranges when there is enough work (~25 flops per unit: five
   * transcendentals), counted against the GEMM thresholds. `operands`: each pointer with its row width in
   * units of U (4 for LSTM gates, 3 for GRU gates, 1 for states; a 0 pointer stays 0); `rows, U` follow them.
   */
  function cellJob(name: 'lstmCellForward' | 'lstmCellBackward' | 'gruCellForward' | 'gruCellBackward', operands: readonly [number, number][], rows: number, U: number): Promise<void> | void {
    const flops = 25 * rows * U;
    const parallel = splitting() && rows > 1 && flops >= threshold();
    const parts = parallel ? partitionBatch(rows, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold()))) : [[0, rows] as [number, number]];
    return runJob(name, parts.map(([r0, r1]) => [...operands.map(([p, width]) => (p === 0 ? 0 : p + 4 * r0 * width * U)), r1 - r0, U]), parallel, false, 0, { work: flops });
  }

  const lstmCellForward = (z: number, cPrev: number, c: number, tanhC: number, h: number, rows: number, U: number) =>
    cellJob('lstmCellForward', [[z, 4], [cPrev, 1], [c, 1], [tanhC, 1], [h, 1]], rows, U);
  const lstmCellBackward = (z: number, cPrev: number, tanhC: number, dh: number, dy: number, dc: number, dz: number, rows: number, U: number) =>
    cellJob('lstmCellBackward', [[z, 4], [cPrev, 1], [tanhC, 1], [dh, 1], [dy, 1], [dc, 1], [dz, 4]], rows, U);
  const gruCellForward = (a: number, q: number, hPrev: number, h: number, rows: number, U: number) =>
    cellJob('gruCellForward', [[a, 3], [q, 3], [hPrev, 1], [h, 1]], rows, U);
  const gruCellBackward = (a: number, q: number, hPrev: number, dh: number, dy: number, da: number, dq: number, rows: number, U: number) =>
    cellJob('gruCellBackward', [[a, 3], [q, 3], [hPrev, 1], [dh, 1], [dy, 1], [da, 3], [dq, 3]], rows, U);

  /**
   * A whole-sequence recurrent kernel (workers/sequence-api.ts) as one job of row ranges (multiples of the
   * packed GEMM's row tile, in guided sizes): rows never interact, so the ranges run on any threads in any order with the
   * results of one call. `operands`: each pointer with its row width in units of U (0: passed as is, a weight
   * matrix or a flag; a 0 pointer stays 0); then `rows`, `batch` and `tail`. Every range packs the recurrent
   * kernel once into its thread's workspace and runs the packed micro-kernel at every step (path 3; the direct
   * path when the kernel does not fit, decided by U alone, so alike on every thread): +10% on the LSTM bench
   * model over the direct path that read it in place (docs/PERFORMANCE.md, eighth session).
   */
  function sequenceJob(name: (typeof SEQUENCE_KERNEL_NAMES)[number], operands: readonly [number, number][], batch: number, U: number, flops: number, tail: readonly number[]): Promise<void> | void {
    const parallel = splitting() && !pool?.sequencesAlone && batch >= 2 * MR && flops >= threshold();
    // Guided sizes (workers/partition.ts): the chunks are few and long, and equal ones left one thread idle at the end.
    const parts = parallel ? partitionGuided(batch, threads, PACKED_ROW_TILE) : [[0, batch] as [number, number]];
    const range = ([r0, r1]: [number, number]) => [...operands.map(([p, width]) => (p === 0 ? 0 : p + 4 * r0 * width * U)), r1 - r0, batch, ...tail, SEQUENCE_PACK_ONCE];
    // Alone (one thread, or a busy host: see WorkerPool.sequencesAlone): one call over every row, packing the recurrent
    // kernel once; the ranges one after another would each pack it and stream it through the cache at every step.
    return runJob(name, parts.map(range), parallel, false, 0, { work: flops, whole: () => exportOf(name)(...range([0, batch])) });
  }
  // Work of a sequence: the recurrent GEMM (2·B·U·G·U per step) plus the cell (~25 flops per unit and gate block).
  const sequenceFlops = (B: number, T: number, U: number, G: number) => T * B * G * U * (2 * U + 25);

  const lstmForwardSequence: SequenceKernels['lstmForwardSequence'] = (z, rk, bias, h, c, tanhC, batch, T, U, skipFirst) =>
    sequenceJob('lstmForwardSequence', [[z, 4], [rk, 0], [bias, 0], [h, 1], [c, 1], [tanhC, 1]], batch, U, sequenceFlops(batch, T, U, 4), [T, U, skipFirst]);
  const lstmBackwardSequence: SequenceKernels['lstmBackwardSequence'] = (z, c, tanhC, dh, dy, dyEvery, dc, dz, rkT, batch, T, t0, U, carry) =>
    sequenceJob('lstmBackwardSequence', [[z, 4], [c, 1], [tanhC, 1], [dh, 1], [dy, 1], [dyEvery, 0], [dc, 1], [dz, 4], [rkT, 0]], batch, U,
      sequenceFlops(batch, T - t0, U, 4), [T, t0, U, carry]);
  const gruForwardSequence: SequenceKernels['gruForwardSequence'] = (a, q, rk, inputBias, recurrentBias, h, batch, T, U, skipFirst) =>
    sequenceJob('gruForwardSequence', [[a, 3], [q, 3], [rk, 0], [inputBias, 0], [recurrentBias, 0], [h, 1]], batch, U, sequenceFlops(batch, T, U, 3), [T, U, skipFirst]);
  const gruBackwardSequence: SequenceKernels['gruBackwardSequence'] = (a, q, h, dh, dy, dyEvery, da, dq, rkT, batch, T, t0, U, carry) =>
    sequenceJob('gruBackwardSequence', [[a, 3], [q, 3], [h, 1], [dh, 1], [dy, 1], [dyEvery, 0], [da, 3], [dq, 3], [rkT, 0]], batch, U,
      sequenceFlops(batch, T - t0, U, 3), [T, t0, U, carry]);

  function sumRows(x: number, out: number, rows: number, cols: number, beta: number): void {
    // Row chunks fixed by the shape: chunk 0 into out (with beta), chunk c ≥ 1 into partial sums, added
    // in chunk order, so the bits never depend on the thread count.
    const chunks = Math.min(REDUCTION_CHUNKS, Math.floor((rows * cols) / MIN_REDUCTION_FLOATS), Math.floor(REDUCE_FLOATS / cols) + 1);
    if (chunks < 2) return kernels.sumRows(x, out, rows, cols, beta);
    const parts = partitionBatch(rows, chunks);
    const partial = (c: number) => reduceBase + 4 * (c - 1) * cols;
    runJob('sumRows', parts.map(([r0, r1], c) => [x + 4 * r0 * cols, c === 0 ? out : partial(c), r1 - r0, cols, c === 0 ? beta : 0]),
      splitting() && 4 * rows * cols >= byteThreshold(), true, 1 << 4, { work: 4 * rows * cols });
    for (let c = 1; c < parts.length; c++) kernels.axpy(cols, 1, partial(c), out);
  }

  function maxPool2dForward(x: number, y: number, argmax: number, ...g: PoolGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW] = g;
    const xImg = H * W * C, yImg = OH * OW * C;
    const bytes = 4 * batch * (xImg + (argmax ? 2 : 1) * yImg);
    if (!(splitting() && bytes >= byteThreshold() && batch > 1)) return kernels.maxPool2dForward(x, y, argmax, ...g);
    return runJob('maxPool2dForwardPart', partitionBatch(batch, chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold()))).map(([n0, n1]) => [
      x + 4 * n0 * xImg, y + 4 * n0 * yImg, argmax ? argmax + 4 * n0 * yImg : 0, n0 * xImg, n1 - n0, ...g.slice(1),
    ]), true, false, 0, { work: bytes });
  }

  function maxPool2dBackward(dy: number, argmax: number, dx: number, xCount: number, yCount: number, batch = 1): Promise<void> | void {
    const bytes = 4 * (xCount + 2 * yCount);
    const ok = splitting() && batch > 1 && xCount % batch === 0 && yCount % batch === 0 && bytes >= byteThreshold();
    if (!ok) return kernels.maxPool2dBackward(dy, argmax, dx, xCount, yCount);
    // Per image slice: its dx range zeroed and its outputs scattered (indices never leave their image).
    const xImg = xCount / batch, yImg = yCount / batch;
    return runJob('maxPool2dBackwardPart', partitionBatch(batch, chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold()))).map(([n0, n1]) => [
      dy + 4 * n0 * yImg, argmax + 4 * n0 * yImg, dx, n0 * xImg, (n1 - n0) * xImg, (n1 - n0) * yImg,
    ]), true, false, 0, { work: bytes });
  }

  const convFlops = (g: ConvGeometry) => {
    const [batch, , , inC, outH, outW, outC, kH, kW] = g;
    return 2 * batch * outH * outW * outC * kH * kW * inC;
  };

  function conv2dForward(x: number, w: number, bias: number, y: number, ...rest: [...ConvGeometry, activation?: number]): Promise<void> | void {
    const g = rest.slice(0, 15) as ConvGeometry;
    const activation = rest[15] ?? 0;
    const [batch, H, W, C, OH, OW, CO] = g;
    const flops = convFlops(g);
    const xImg = 4 * H * W * C;
    const yImg = 4 * OH * OW * CO;
    const parallel = splitting() && flops >= threshold();
    const parts = parallel ? partitionBatch(batch, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold()))) : [[0, batch] as [number, number]];
    return runJob('conv2dForward', parts.map(([n0, n1]) => [x + n0 * xImg, w, bias, y + n0 * yImg, n1 - n0, ...g.slice(1), activation]), parallel, false, 0, { work: flops });
  }

  function conv2dBackwardInput(dy: number, wt: number, dx: number, ...g: ConvGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW, CO] = g;
    const flops = convFlops(g);
    const dxImg = 4 * H * W * C;
    const dyImg = 4 * OH * OW * CO;
    const parallel = splitting() && flops >= threshold();
    const parts = parallel ? partitionBatch(batch, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold()))) : [[0, batch] as [number, number]];
    return runJob('conv2dBackwardInput', parts.map(([n0, n1]) => [dy + n0 * dyImg, wt, dx + n0 * dxImg, n1 - n0, ...g.slice(1)]), parallel, false, 0, { work: flops });
  }

  function conv2dBackwardFilter(x: number, dy: number, dw: number, work: number, workFloats: number, ...g: ConvGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW, CO, KH, KW] = g;
    const xImg = 4 * H * W * C;
    const dyImg = 4 * OH * OW * CO;
    const filter = KH * KW * C * CO;
    const taps = KH * KW * C;
    // Image chunks fixed by the batch (reductionChunks), each with a share of work: chunk 0 writes dw,
    // chunk c ≥ 1 a partial dw at the start of its share; the partials are added in chunk order.
    const chunks = reductionChunks(batch, convFlops(g));
    const region = Math.floor(workFloats / chunks / 16) * 16;
    if (chunks < 2 || region - filter < taps) return kernels.conv2dBackwardFilter(x, dy, dw, work, workFloats, ...g);
    const parts = partitionBatch(batch, chunks);
    const partial = (c: number) => work + 4 * c * region;
    const rows = parts.map(([n0, n1], c) => c === 0
      ? [x, dy, dw, work, region, n1 - n0, ...g.slice(1)]
      : [x + n0 * xImg, dy + n0 * dyImg, partial(c), partial(c) + 4 * filter, region - filter, n1 - n0, ...g.slice(1)]);
    const sum = () => {
      for (let c = 1; c < parts.length; c++) kernels.axpy(filter, 1, partial(c), dw);
    };
    const pending = runJob('conv2dBackwardFilter', rows, splitting() && convFlops(g) >= threshold(), false, 0, { work: convFlops(g) });
    if (!pending) return sum();
    return pending.then(sum);
  }

  function gemm(
    transA: number, transB: number, m: number, n: number, k: number, alpha: number,
    a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number, hint: GemmPath = 'auto',
  ): Promise<void> | void {
    const flops = 2 * m * n * k;
    if (!splitting() || flops < threshold()) {
      if (hint === 'packed') exports.gemmWith(2, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      else kernels.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    // The path of the whole product, for every chunk: chunks compute exactly as one thread would.
    const path = hint === 'packed' ? 2 : exports.gemmChoosePath(transB, m, n, k, ldb);
    const { rows, ranges: parts } = partitionGemm(m, n, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold())), path === 2 ? PACKED_ROW_TILE : MR);
    // Fewer than 2 chunks, or alone (a busy host where that is faster): the whole product in one call on the
    // given path, the same bits as the chunks (each computes its rows exactly as one thread would) with B packed
    // once, not per chunk.
    const whole = () => exports.gemmWith(path, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (parts.length < 2) return whole();
    // A row split on the packed path: op(B) packed once here and shared by the chunks, instead of packed again
    // by each of them (up to 8 times): 4–10% off the split 512³, 256×512×512 (A transposed) and 384×256×1024
    // products (thirteenth session, docs/PERFORMANCE.md). Only with no job pending: the shared area is then
    // free (a job queued behind another would run later, after this one may have packed over it).
    if (rows && path === 2 && sharedPackBytes > 0 && !getPool().pending && exports.packedBFits(k, n)) {
      exports.packBWhole(transB, k, n, b, ldb, sharedPackB);
      const prepacked = ([s, e]: [number, number]): number[] =>
        [transA, e - s, n, k, alpha, transA ? a + 4 * s : a + 4 * s * lda, lda, sharedPackB, beta, c + 4 * s * ldc, ldc];
      // alpha (argument 4) and beta (8) are f32.
      return runJob('gemmPrepacked', parts.map(prepacked), true, false, (1 << 4) | (1 << 8), { work: flops, whole });
    }
    const part = ([s, e]: [number, number]): number[] =>
      rows
        ? [path, transA, transB, e - s, n, k, alpha, transA ? a + 4 * s : a + 4 * s * lda, lda, b, ldb, beta, c + 4 * s * ldc, ldc]
        : [path, transA, transB, m, e - s, k, alpha, a, lda, transB ? b + 4 * s * ldb : b + 4 * s, ldb, beta, c + 4 * s, ldc];
    // alpha (argument 6) and beta (11) are f32.
    return runJob('gemmWith', parts.map(part), true, false, (1 << 6) | (1 << 11), { work: flops, whole });
  }

  return {
    kernels,
    exports,
    threads,
    name,
    workspaceBytes,
    markStep: () => pool?.markStep(),
    gemm,
    conv2dForward,
    conv2dBackwardInput,
    conv2dBackwardFilter,
    elementwise,
    elementwiseMany,
    sumRows,
    lstmCellForward,
    lstmCellBackward,
    gruCellForward,
    gruCellBackward,
    lstmForwardSequence,
    lstmBackwardSequence,
    gruForwardSequence,
    gruBackwardSequence,
    maxPool2dForward,
    maxPool2dBackward,
    get pool() {
      return pool;
    },
    ping() {
      if (threads === 1) return exports.nop();
      const p = getPool();
      return p.roundTrip(() => exports.nop());
    },
    terminateWorkerForTest(i: number) {
      return getPool().terminateWorkerForTest(i);
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool?.close();
    },
  };
}

export { partitionBatch, partitionElements, partitionGemm, partitionGuided } from './partition.ts';
