/**
 * The wasm compute backend: the SIMD128 kernels (workers/assembly, built by `npm run build:wasm`) on the
 * calling thread, plus a lazily started worker pool that splits large GEMMs.
 */
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import v8 from 'node:v8';
import { FILTER_GRADIENT_CHUNKS, type ComputeBackend, type ElementwiseCall, type ElementwiseKernel } from './compute-api.ts';
import { KERNEL_NAMES, type Kernels } from './kernel-api.ts';

import { WorkerPool, JOB_BYTES, MAX_CHUNKS, MAX_THREADS, OP, scratchAddress, type CallTask, type PoolTestHooks } from './pool.ts';

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
/** Floats of partial sums a backend keeps for its row reductions. */
const REDUCE_FLOATS = 64 << 10;
/** Floats per split unit of the elementwise kernels: 64-byte cache lines, no line shared by two threads. */
const LINE_FLOATS = 16;
/** Rows per register tile: split boundaries are multiples of it so every tile is computed alike. */
const MR = 4;
/** Columns per register tile. */
const NR = 8;

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
  };
  elementwiseMany(calls: readonly ElementwiseCall[]): void;
  lstmCellForward(...args: Parameters<Kernels['lstmCellForward']>): Promise<void> | void;
  lstmCellBackward(...args: Parameters<Kernels['lstmCellBackward']>): Promise<void> | void;
  sumRows(x: number, out: number, rows: number, cols: number, beta: number): void;
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

const modules = new Map<string, WebAssembly.Module>();

function loadModule(file: string): WebAssembly.Module {
  let mod = modules.get(file);
  if (mod) return mod;
  const path = fileURLToPath(new URL(`./generated/${file}`, import.meta.url));
  if (!existsSync(path)) throw new Error(`rxgrad: ${path} is missing: run npm run build:wasm`);
  mod = new WebAssembly.Module(readFileSync(path));
  modules.set(file, mod);
  return mod;
}

let relaxedOk: boolean | undefined;

/** True if this V8 compiles relaxed SIMD, turning on Node 20's experimental flag if needed. */
function relaxedSupported(): boolean {
  if (relaxedOk !== undefined) return relaxedOk;
  const path = fileURLToPath(new URL('./generated/kernels-relaxed.wasm', import.meta.url));
  if (!existsSync(path)) return (relaxedOk = false);
  const bytes = readFileSync(path);
  if (!WebAssembly.validate(bytes)) {
    // Node 20 (V8 11.3) has relaxed SIMD behind a flag; V8 ≥ 11.4 ships it. The flag is process-wide
    // and also covers workers created afterwards.
    try {
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // Unknown flag on a future V8: validation below decides.
    }
  }
  return (relaxedOk = WebAssembly.validate(bytes));
}

function defaultThreads(): number {
  const env = process.env['RXGRAD_THREADS'];
  if (env !== undefined && env !== '') {
    const t = Number(env);
    if (!Number.isInteger(t) || t < 1) throw new RangeError(`RXGRAD_THREADS must be a positive integer, got ${env}`);
    return t;
  }
  return Math.min(Math.max(1, os.availableParallelism()), 2);
}

/**
 * Chunks of a split GEMM: contiguous ranges of rows (multiples of `rowTile`) or of columns (multiples of 8)
 * of C, along the longer side (so the operand packed or re-read per chunk is the smaller one). Every C
 * element is computed by the same instruction sequence whatever the range it falls in, so any chunking
 * equals one thread bitwise. `chunks` is the most wanted; each chunk keeps at least one tile.
 */
export function partitionGemm(m: number, n: number, chunks: number, rowTile = MR): { rows: boolean; ranges: [number, number][] } {
  const rows = m >= 2 * MR && (m >= n || n < 2 * NR);
  const len = rows ? m : n;
  const tile = rows ? rowTile : NR;
  const chunk = Math.max(tile, Math.ceil(len / Math.max(1, chunks) / tile) * tile);
  return { rows, ranges: ranges(len, chunk) };
}

/** Contiguous [start, end) ranges of `chunk` elements covering [0, len). */
function ranges(len: number, chunk: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0; s < len; s += chunk) out.push([s, Math.min(len, s + chunk)]);
  return out.length ? out : [[0, len]];
}

/** `chunks` contiguous image ranges of ⌈batch / chunks⌉ images (fewer when the batch is small). */
export function partitionBatch(batch: number, chunks: number): [number, number][] {
  return ranges(batch, Math.ceil(batch / Math.max(1, Math.min(chunks, batch))));
}

/**
 * Element ranges of an elementwise split: about `chunks` contiguous ranges in multiples of 16 floats (64-byte
 * lines, no line shared by two threads). Elementwise results do not depend on the split.
 */
export function partitionElements(n: number, chunks: number): [number, number][] {
  return ranges(n, Math.max(LINE_FLOATS, Math.ceil(n / Math.max(1, chunks) / LINE_FLOATS) * LINE_FLOATS));
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
 * Exports the pool may call (OP.CALL and chunk rows index this list): the contract's kernels, then the
 * entry points of the splits that are not part of the Kernels contract.
 */
export const CALL_NAMES = [...KERNEL_NAMES, 'maxPool2dForwardPart', 'maxPool2dBackwardPart', 'gemmWith'] as const;
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
  // Then the pool's job block and the partial sums of chunked reductions, on lines of their own.
  const workspaceBase = provideWorkspace(memory, threads * workspaceBytes + JOB_BYTES + 4 * REDUCE_FLOATS, options.alloc);
  const workspaceOf = (t: number) => workspaceBase + t * workspaceBytes;
  const jobBlock = workspaceOf(threads);
  const reduceBase = jobBlock + JOB_BYTES;
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
    }));
  };
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
  function runJob(name: CallName, rows: readonly (readonly number[])[], parallel: boolean, sync = false, floatMask = 0): Promise<void> | void {
    if (!parallel || rows.length < 2 || threads === 1) {
      const fn = exportOf(name);
      for (const args of rows) fn(...args);
      return;
    }
    const kernel = kernelIds.get(name)!;
    return getPool().runChunks(name, rows.map((args) => ({ kernel, args, floatMask })), runRow, sync);
  }

  /** Pointers advanced to element `s` (a 0 pointer, an absent operand, stays 0). */
  const advance = (pointers: readonly number[], s: number) => pointers.map((p) => (p === 0 ? 0 : p + 4 * s));

  function elementwise(name: ElementwiseKernel, pointers: readonly number[], n: number, floats: readonly number[] = []): Promise<void> | void {
    const bytes = 4 * n * pointers.length;
    const parallel = threads > 1 && bytes >= byteThreshold();
    if (!parallel) return exportOf(name)(...pointers, n, ...floats);
    // Floats come after the pointers and the count (leakyRelu's slope): mark them f32 for the worker.
    const floatMask = ((1 << floats.length) - 1) << (pointers.length + 1);
    const parts = partitionElements(n, chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold())));
    return runJob(name, parts.map(([s, e]) => [...advance(pointers, s), e - s, ...floats]), true, false, floatMask);
  }

  function elementwiseMany(calls: readonly ElementwiseCall[]): void {
    let bytes = 0;
    for (const c of calls) bytes += 4 * c.n * c.pointers.filter((p) => p !== 0).length;
    if (threads === 1 || bytes < byteThreshold()) {
      for (const c of calls) exportOf(c.name)(...c.pointers, c.n, ...(c.tail ?? []));
      return;
    }
    // One job for every call: each cut into line-aligned ranges of about the same number of bytes.
    const per = Math.max(1, bytes / chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold())));
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
    getPool().runChunks('optimizer update', rows, runRow, true);
  }

  /**
   * Row ranges of an LSTM cell kernel when there is enough work: ~25 flops per unit (five transcendentals),
   * counted against the GEMM thresholds.
   */
  const cellParts = (rows: number, U: number): [number, number][] | null => {
    const flops = 25 * rows * U;
    return threads > 1 && rows > 1 && flops >= threshold() ? partitionBatch(rows, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold()))) : null;
  };

  function lstmCellForward(z: number, cPrev: number, c: number, tanhC: number, h: number, rows: number, U: number): Promise<void> | void {
    const parts = cellParts(rows, U);
    if (!parts) return kernels.lstmCellForward(z, cPrev, c, tanhC, h, rows, U);
    const at = (p: number, r: number, width: number) => p + 4 * r * width;
    return runJob('lstmCellForward', parts.map(([r0, r1]) => [
      at(z, r0, 4 * U), at(cPrev, r0, U), at(c, r0, U), at(tanhC, r0, U), at(h, r0, U), r1 - r0, U,
    ]), true);
  }

  function lstmCellBackward(
    z: number, cPrev: number, tanhC: number, dh: number, dy: number, dc: number, dz: number, rows: number, U: number,
  ): Promise<void> | void {
    const parts = cellParts(rows, U);
    if (!parts) return kernels.lstmCellBackward(z, cPrev, tanhC, dh, dy, dc, dz, rows, U);
    const at = (p: number, r: number, width: number) => (p === 0 ? 0 : p + 4 * r * width);
    return runJob('lstmCellBackward', parts.map(([r0, r1]) => [
      at(z, r0, 4 * U), at(cPrev, r0, U), at(tanhC, r0, U), at(dh, r0, U), at(dy, r0, U), at(dc, r0, U), at(dz, r0, 4 * U), r1 - r0, U,
    ]), true);
  }

  function sumRows(x: number, out: number, rows: number, cols: number, beta: number): void {
    // Row chunks fixed by the shape: chunk 0 into out (with beta), chunk c ≥ 1 into partial sums, added
    // in chunk order, so the bits never depend on the thread count.
    const chunks = Math.min(REDUCTION_CHUNKS, Math.floor((rows * cols) / MIN_REDUCTION_FLOATS), Math.floor(REDUCE_FLOATS / cols) + 1);
    if (chunks < 2) return kernels.sumRows(x, out, rows, cols, beta);
    const parts = partitionBatch(rows, chunks);
    const partial = (c: number) => reduceBase + 4 * (c - 1) * cols;
    runJob('sumRows', parts.map(([r0, r1], c) => [x + 4 * r0 * cols, c === 0 ? out : partial(c), r1 - r0, cols, c === 0 ? beta : 0]),
      threads > 1 && 4 * rows * cols >= byteThreshold(), true, 1 << 4);
    for (let c = 1; c < parts.length; c++) kernels.axpy(cols, 1, partial(c), out);
  }

  function maxPool2dForward(x: number, y: number, argmax: number, ...g: PoolGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW] = g;
    const xImg = H * W * C, yImg = OH * OW * C;
    const bytes = 4 * batch * (xImg + (argmax ? 2 : 1) * yImg);
    if (!(threads > 1 && bytes >= byteThreshold() && batch > 1)) return kernels.maxPool2dForward(x, y, argmax, ...g);
    return runJob('maxPool2dForwardPart', partitionBatch(batch, chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold()))).map(([n0, n1]) => [
      x + 4 * n0 * xImg, y + 4 * n0 * yImg, argmax ? argmax + 4 * n0 * yImg : 0, n0 * xImg, n1 - n0, ...g.slice(1),
    ]), true);
  }

  function maxPool2dBackward(dy: number, argmax: number, dx: number, xCount: number, yCount: number, batch = 1): Promise<void> | void {
    const bytes = 4 * (xCount + 2 * yCount);
    const ok = threads > 1 && batch > 1 && xCount % batch === 0 && yCount % batch === 0 && bytes >= byteThreshold();
    if (!ok) return kernels.maxPool2dBackward(dy, argmax, dx, xCount, yCount);
    // Per image slice: its dx range zeroed and its outputs scattered (indices never leave their image).
    const xImg = xCount / batch, yImg = yCount / batch;
    return runJob('maxPool2dBackwardPart', partitionBatch(batch, chunksFor(bytes, Math.min(MIN_CHUNK_BYTES, byteThreshold()))).map(([n0, n1]) => [
      dy + 4 * n0 * yImg, argmax + 4 * n0 * yImg, dx, n0 * xImg, (n1 - n0) * xImg, (n1 - n0) * yImg,
    ]), true);
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
    const parallel = threads > 1 && flops >= threshold();
    const parts = parallel ? partitionBatch(batch, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold()))) : [[0, batch] as [number, number]];
    return runJob('conv2dForward', parts.map(([n0, n1]) => [x + n0 * xImg, w, bias, y + n0 * yImg, n1 - n0, ...g.slice(1), activation]), parallel);
  }

  function conv2dBackwardInput(dy: number, wt: number, dx: number, ...g: ConvGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW, CO] = g;
    const flops = convFlops(g);
    const dxImg = 4 * H * W * C;
    const dyImg = 4 * OH * OW * CO;
    const parallel = threads > 1 && flops >= threshold();
    const parts = parallel ? partitionBatch(batch, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold()))) : [[0, batch] as [number, number]];
    return runJob('conv2dBackwardInput', parts.map(([n0, n1]) => [dy + n0 * dyImg, wt, dx + n0 * dxImg, n1 - n0, ...g.slice(1)]), parallel);
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
    const pending = runJob('conv2dBackwardFilter', rows, threads > 1 && convFlops(g) >= threshold());
    if (!pending) return sum();
    return pending.then(sum);
  }

  function gemm(
    transA: number, transB: number, m: number, n: number, k: number, alpha: number,
    a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number,
  ): Promise<void> | void {
    const flops = 2 * m * n * k;
    if (threads === 1 || flops < threshold()) {
      kernels.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    // The path of the whole product, for every chunk: chunks compute exactly as one thread would.
    const path = exports.gemmChoosePath(transB, m, n, k, ldb);
    const { rows, ranges: parts } = partitionGemm(m, n, chunksFor(flops, Math.min(MIN_CHUNK_FLOPS, threshold())), path === 2 ? PACKED_ROW_TILE : MR);
    if (parts.length < 2) {
      kernels.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    const part = ([s, e]: [number, number]): number[] =>
      rows
        ? [path, transA, transB, e - s, n, k, alpha, transA ? a + 4 * s : a + 4 * s * lda, lda, b, ldb, beta, c + 4 * s * ldc, ldc]
        : [path, transA, transB, m, e - s, k, alpha, a, lda, transB ? b + 4 * s * ldb : b + 4 * s, ldb, beta, c + 4 * s, ldc];
    // alpha (argument 6) and beta (11) are f32.
    return runJob('gemmWith', parts.map(part), true, false, (1 << 6) | (1 << 11));
  }

  return {
    kernels,
    exports,
    threads,
    name,
    workspaceBytes,
    gemm,
    conv2dForward,
    conv2dBackwardInput,
    conv2dBackwardFilter,
    elementwise,
    elementwiseMany,
    sumRows,
    lstmCellForward,
    lstmCellBackward,
    maxPool2dForward,
    maxPool2dBackward,
    get pool() {
      return pool;
    },
    ping() {
      if (threads === 1) return exports.nop();
      const p = getPool();
      return p.run(OP.NOP, 'nop', p.size, () => exports.nop());
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

/**
 * Base of `bytes` of memory for the packing workspaces: from `alloc` when given, else pages grown at the
 * top of the memory (owned by this backend from then on). Written once: never-written pages run GEMM at
 * about half speed (KERNELS.md §1, first touch).
 */
function provideWorkspace(memory: WebAssembly.Memory, bytes: number, alloc?: (bytes: number) => number): number {
  let base: number;
  if (alloc) {
    base = alloc(bytes);
    if (base % 64 !== 0 || base < 65536) throw new RangeError(`rxgrad: alloc returned ${base}: need a 64-byte aligned address above the control region`);
  } else {
    const pages = Math.ceil(bytes / 65536);
    try {
      base = memory.grow(pages) * 65536;
    } catch (err) {
      throw new RangeError(`rxgrad: cannot grow the memory by ${pages} pages for the GEMM workspaces: ${String(err)}`);
    }
  }
  new Uint8Array(memory.buffer, base, bytes).fill(0);
  return base;
}

/**
 * Calls every kernel a few times on this thread's scratch so V8 has tiered them up (Liftoff runs GEMM at a
 * fraction of TurboFan speed and wasm has no on-stack replacement). Touches only the scratch area.
 */
function warmUp(k: Kernels, scratch: number, bytes: number): void {
  k.fill(scratch, bytes >> 2, 0.5);
  const f = 4; // bytes per float
  const x = scratch;
  const y = scratch + 64 * f;
  const z = scratch + 128 * f;
  const w = scratch + 192 * f;
  // Small GEMMs: all row-edge variants (m = 5, 6, 7, 8), both A layouts, direct and panel paths.
  const a = scratch + 256 * f; // 8×8
  const b = scratch + 320 * f; // 8×9
  const c = scratch + 400 * f; // 8×9
  const e = k as Kernels & { setGemmPath(mode: number): void };
  for (let rep = 0; rep < 8; rep++) {
    // Paths 1 (direct / panel) and 2 (packed, full and edge tiles) so V8 tiers up both.
    for (const path of [1, 2]) {
      e.setGemmPath(path);
      for (let m = 5; m <= 8; m++) {
        for (let t = 0; t < 4; t++) k.gemm(t & 1, t >> 1, m, 9, 8, 1, a, 8, b, 9, rep & 1, c, 9);
      }
    }
    e.setGemmPath(0);
    k.addBias(x, y, 4, 16);
    k.sumRows(x, y, 4, 16, 0);
    k.reluForward(x, y, 63);
    k.reluBackward(x, y, z, 63);
    k.leakyReluForward(x, y, 63, 0.01);
    k.leakyReluBackward(x, y, z, 63, 0.01);
    k.sigmoidForward(x, y, 63);
    k.sigmoidBackward(x, y, z, 63);
    k.tanhForward(x, y, 63);
    k.tanhBackward(x, y, z, 63);
    k.geluForward(x, y, 63);
    k.geluBackward(x, y, z, 63);
    k.softmaxForward(x, y, 4, 15);
    k.softmaxBackward(x, y, z, 4, 15);
    k.fill(w, 4, 0);
    k.softmaxCrossEntropy(x, w, 4, 15, y, z, 0.25);
    k.adamUpdate(x, y, z, w, 63, 0, 0.9, 0.999, 1e-8, 0, rep & 1, 0.1, 0.001);
    k.sgdUpdate(x, y, z, 63, 0, 0.9, rep & 1, 0);
    k.copy(x, y, 63);
    k.scale(y, 63, 1);
    k.axpy(63, 0, x, y);
    k.emaUpdate(y, x, 63, 0.5, 0.5);
    k.lstmCellForward(x, y, z, w, x + 32 * f, 1, 7);
    k.lstmCellBackward(x, y, z, w, rep & 1 ? y : 0, z + 16 * f, x + 32 * f, 1, 7);
    k.fill(x, 64, 0.5);
  }
  // Conv and pooling kernels on tiny shapes (all channel tiles: 20 = 16 + 4; a 3-channel edge). The GEMM
  // inside the filter gradient packs its panel over this scratch too: values are garbage, bounds are not.
  const at = (floats: number) => scratch + 4 * floats;
  for (let rep = 0; rep < 6; rep++) {
    k.fill(scratch, bytes >> 2, 0.25);
    const X = at(0), Wf = at(32), Bs = at(392), Y = at(412), Wt = at(492), DX = at(852), WORK = at(884);
    const g = [1, 4, 4, 2, 2, 2, 20, 3, 3, 1, 1, 0, 0, 1, 1] as const;
    k.conv2dForward(X, Wf, Bs, Y, ...g);
    k.conv2dForward(X, Wf, 0, Y, 1, 4, 4, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1);
    k.conv2dTransposeFilter(Wf, Wt, 9, 2, 20);
    k.conv2dBackwardInput(Y, Wt, DX, ...g);
    k.conv2dBackwardFilter(X, Y, Wt, WORK, 162, ...g);
    k.conv2dForwardIm2col(X, Wf, Bs, Y, WORK, 162, ...g);
    k.fill(scratch, bytes >> 2, 0.25);
    k.maxPool2dForward(X, Y, Wt, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 0, 0);
    // C = 4 and 5: the 2×2 row kernels (with and without argmax, with a scalar tail channel).
    k.maxPool2dForward(X, Y, Wt, 1, 4, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dForward(X, Y, 0, 1, 4, 4, 5, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dForward(X, Y, Wt, 1, 4, 4, 5, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dForward(X, Y, 0, 1, 4, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dBackward(Y, Wt, DX, 32, 8);
    k.avgPool2dForward(X, Y, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 0, 0);
    k.avgPool2dBackward(Y, DX, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 0, 0);
    k.globalAvgPool2dForward(X, Y, 2, 4, 5);
    k.globalAvgPool2dBackward(Y, DX, 2, 4, 5);
    k.batchNormStats(X, Y, Wt, 6, 5);
    k.batchNormForward(X, DX, Y, Wt, Bs, Bs, 6, 5);
    k.batchNormBackward(X, X, DX, Y, Wt, Bs, Wf, WORK, 6, 5);
  }
  k.fill(scratch, bytes >> 2, 0);
}
