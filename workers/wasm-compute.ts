/**
 * The wasm compute backend: the SIMD128 kernels (workers/assembly, built by `npm run build:wasm`) on the
 * calling thread, plus a lazily started worker pool that splits large GEMMs.
 */
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import v8 from 'node:v8';
import type { ComputeBackend, ElementwiseKernel } from './compute-api.ts';
import { KERNEL_NAMES, type Kernels } from './kernel-api.ts';

import { WorkerPool, MAX_THREADS, OP, scratchAddress, type CallTask, type GemmArgs } from './pool.ts';

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
}

/** Split threshold while workers spin (no wake-up cost): ~10 µs of single-thread work. */
export const HOT_SPLIT_FLOPS = 0.5e6;
/** Split threshold once workers sleep: a futex wake costs ~50 µs on this VM, so ~200 µs of work. */
export const COLD_SPLIT_FLOPS = 10e6;
/**
 * Memory-bound split threshold (bytes read + written) while workers spin. Measured with reluForward, quiet
 * box, median of 60: 1 MiB 11 µs one thread vs 12 split, 2 MiB 29 vs 24, 4 MiB 52 vs 36 (workers/README.md).
 */
export const HOT_SPLIT_BYTES = 2 << 20;
/** Once workers sleep (futex wake ~70 µs): 4 MiB 94 µs vs 140 split, 8 MiB 197 vs 188, 16 MiB 441 vs 298. */
export const COLD_SPLIT_BYTES = 16 << 20;
/**
 * Worker spin after a task before sleeping. Inference and training alternate pool kernels with short
 * single-threaded stretches (dense, loss, the rx pipeline: 0.1–1 ms); with the old 50 µs the worker was
 * asleep at almost every conv and each dispatch paid a futex wake (~70 µs median, ms-long tails on this
 * VM). 2 ms covers those gaps; an idle process burns at most 2 ms of one core per task. Threads never
 * exceed cores (defaultThreads), so a spinning worker never starves the caller.
 */
export const WORKER_SPIN_MS = 2;
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

/** Row (or, for short C, column) ranges of a split: multiples of the tile size, fixed by shape and parts. */
export function partitionGemm(m: number, n: number, parts: number): { rows: boolean; ranges: [number, number][] } {
  const split = (len: number, tile: number): [number, number][] => {
    const chunk = Math.ceil(len / parts / tile) * tile;
    const ranges: [number, number][] = [];
    for (let s = 0; s < len; s += chunk) ranges.push([s, Math.min(len, s + chunk)]);
    return ranges;
  };
  if (m >= 2 * MR || n < 2 * NR) return { rows: true, ranges: split(m, MR) };
  return { rows: false, ranges: split(n, NR) };
}

/**
 * Image ranges of a conv split over the batch: `min(parts, batch)` contiguous ranges of ⌈batch / parts⌉
 * images (the caller takes the first), fixed by batch and thread count.
 */
export function partitionBatch(batch: number, parts: number): [number, number][] {
  const chunk = Math.ceil(batch / Math.max(1, Math.min(parts, batch)));
  const ranges: [number, number][] = [];
  for (let s = 0; s < batch; s += chunk) ranges.push([s, Math.min(batch, s + chunk)]);
  return ranges;
}

/**
 * Element ranges of an elementwise split: `parts` contiguous ranges in multiples of 16 floats (64-byte lines;
 * the caller takes the first), fixed by n and thread count. Elementwise results do not depend on the split.
 */
export function partitionElements(n: number, parts: number): [number, number][] {
  const chunk = Math.max(LINE_FLOATS, Math.ceil(n / parts / LINE_FLOATS) * LINE_FLOATS);
  const ranges: [number, number][] = [];
  for (let s = 0; s < n; s += chunk) ranges.push([s, Math.min(n, s + chunk)]);
  return ranges.length ? ranges : [[0, n]];
}

/**
 * Exports the pool may call (OP.CALL kernel ids index this list): the contract's kernels, then the batch-slice
 * entry points of max pooling (not part of the Kernels contract).
 */
export const CALL_NAMES = [...KERNEL_NAMES, 'maxPool2dForwardPart', 'maxPool2dBackwardPart'] as const;
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
  const workspaceBase = provideWorkspace(memory, threads * workspaceBytes, options.alloc);
  const workspaceOf = (t: number) => workspaceBase + t * workspaceBytes;
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
      callNames: CALL_NAMES, workspace: workspaceOf, gemmPath, workerSpinMs: options.workerSpinMs ?? WORKER_SPIN_MS,
    }));
  };
  const threshold = () => options.splitThresholdFlops ?? (pool?.hot ? HOT_SPLIT_FLOPS : COLD_SPLIT_FLOPS);
  const byteThreshold = () => options.splitThresholdBytes ?? (pool?.hot ? HOT_SPLIT_BYTES : COLD_SPLIT_BYTES);
  const call = (name: CallName, args: readonly number[]) =>
    (exports[name as keyof typeof exports] as unknown as (...a: readonly number[]) => void)(...args);

  /**
   * Runs export `name` once per entry of `parts` (part 0 on the calling thread, part i on worker i − 1),
   * in parallel when there are several. `floatMask`: which arguments are f32 (see CallTask).
   */
  function runParts(name: CallName, parts: readonly (readonly number[])[], floatMask = 0): Promise<void> | void {
    if (parts.length < 2) {
      call(name, parts[0]!);
      return;
    }
    const kernel = CALL_NAMES.indexOf(name);
    const tasks: CallTask[] = parts.slice(1).map((args) => ({ kernel, args, floatMask }));
    return getPool().run(OP.CALL, name, tasks, () => call(name, parts[0]!));
  }

  function elementwise(name: ElementwiseKernel, pointers: readonly number[], n: number, floats: readonly number[] = []): Promise<void> | void {
    const bytes = 4 * n * pointers.length;
    const ranges = threads > 1 && bytes >= byteThreshold() ? partitionElements(n, threads) : [[0, n] as [number, number]];
    // Floats come after the pointers and the count (leakyRelu's slope): mark them f32 for the worker.
    const floatMask = ((1 << floats.length) - 1) << (pointers.length + 1);
    return runParts(name, ranges.map(([s, e]) => [...pointers.map((p) => p + 4 * s), e - s, ...floats]), floatMask);
  }

  function maxPool2dForward(x: number, y: number, argmax: number, ...g: PoolGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW] = g;
    const xImg = H * W * C, yImg = OH * OW * C;
    const bytes = 4 * batch * (xImg + (argmax ? 2 : 1) * yImg);
    const ranges = threads > 1 && bytes >= byteThreshold() ? partitionBatch(batch, threads) : [[0, batch] as [number, number]];
    if (ranges.length < 2) return kernels.maxPool2dForward(x, y, argmax, ...g);
    return runParts('maxPool2dForwardPart', ranges.map(([n0, n1]) => [
      x + 4 * n0 * xImg, y + 4 * n0 * yImg, argmax ? argmax + 4 * n0 * yImg : 0, n0 * xImg, n1 - n0, ...g.slice(1),
    ]));
  }

  function maxPool2dBackward(dy: number, argmax: number, dx: number, xCount: number, yCount: number, batch = 1): Promise<void> | void {
    const bytes = 4 * (xCount + 2 * yCount);
    const ok = threads > 1 && batch > 1 && xCount % batch === 0 && yCount % batch === 0 && bytes >= byteThreshold();
    if (!ok) return kernels.maxPool2dBackward(dy, argmax, dx, xCount, yCount);
    // Per image slice: its dx range zeroed and its outputs scattered (indices never leave their image).
    const xImg = xCount / batch, yImg = yCount / batch;
    return runParts('maxPool2dBackwardPart', partitionBatch(batch, threads).map(([n0, n1]) => [
      dy + 4 * n0 * yImg, argmax + 4 * n0 * yImg, dx, n0 * xImg, (n1 - n0) * xImg, (n1 - n0) * yImg,
    ]));
  }

  /**
   * Runs a conv kernel split over batch images when large enough: `task(n0, n1, t)` gives the arguments of
   * thread t for images [n0, n1). Returns the ranges used (length 1: ran inline, nothing pending).
   */
  function splitConv(
    name: 'conv2dForward' | 'conv2dBackwardInput' | 'conv2dBackwardFilter', g: ConvGeometry,
    task: (n0: number, n1: number, t: number) => number[], minWorkPerThread = true,
  ): { ranges: [number, number][]; pending: Promise<void> | undefined } {
    const [batch, , , inC, outH, outW, outC, kH, kW] = g;
    const flops = 2 * batch * outH * outW * outC * kH * kW * inC;
    const ranges = threads > 1 && minWorkPerThread && flops >= threshold() ? partitionBatch(batch, threads) : [[0, batch] as [number, number]];
    if (ranges.length < 2) {
      call(name, task(0, batch, 0));
      return { ranges: [[0, batch]], pending: undefined };
    }
    const kernel = CALL_NAMES.indexOf(name);
    const tasks: CallTask[] = ranges.slice(1).map(([n0, n1], i) => ({ kernel, args: task(n0, n1, i + 1) }));
    const mine = task(ranges[0]![0], ranges[0]![1], 0);
    return { ranges, pending: getPool().run(OP.CALL, name, tasks, () => call(name, mine)) };
  }

  function conv2dForward(x: number, w: number, bias: number, y: number, ...rest: [...ConvGeometry, activation?: number]): Promise<void> | void {
    const g = rest.slice(0, 15) as ConvGeometry;
    const activation = rest[15] ?? 0;
    const [, H, W, C, OH, OW, CO] = g;
    const xImg = 4 * H * W * C;
    const yImg = 4 * OH * OW * CO;
    return splitConv('conv2dForward', g, (n0, n1) => [x + n0 * xImg, w, bias, y + n0 * yImg, n1 - n0, ...g.slice(1), activation]).pending;
  }

  function conv2dBackwardInput(dy: number, wt: number, dx: number, ...g: ConvGeometry): Promise<void> | void {
    const [, H, W, C, OH, OW, CO] = g;
    const dxImg = 4 * H * W * C;
    const dyImg = 4 * OH * OW * CO;
    return splitConv('conv2dBackwardInput', g, (n0, n1) => [dy + n0 * dyImg, wt, dx + n0 * dxImg, n1 - n0, ...g.slice(1)]).pending;
  }

  function conv2dBackwardFilter(x: number, dy: number, dw: number, work: number, workFloats: number, ...g: ConvGeometry): Promise<void> | void {
    const [batch, H, W, C, OH, OW, CO, KH, KW] = g;
    const xImg = 4 * H * W * C;
    const dyImg = 4 * OH * OW * CO;
    const filter = KH * KW * C * CO;
    const taps = KH * KW * C;
    // Each thread's share of work, 64-byte aligned; threads t ≥ 1 keep their partial dw at its start.
    const parts = Math.min(threads, batch);
    const region = Math.floor(workFloats / parts / 16) * 16;
    const fits = region - filter >= taps;
    const { ranges, pending } = splitConv('conv2dBackwardFilter', g, (n0, n1, t) => {
      if (t === 0 && n1 - n0 === batch) return [x, dy, dw, work, workFloats, ...g];
      const base = work + 4 * t * region;
      return t === 0
        ? [x, dy, dw, work, region, n1 - n0, ...g.slice(1)]
        : [x + n0 * xImg, dy + n0 * dyImg, base, base + 4 * filter, region - filter, n1 - n0, ...g.slice(1)];
    }, fits);
    if (!pending) return;
    // Partial sums added in thread order: bitwise reproducible for a given thread count.
    return pending.then(() => {
      for (let t = 1; t < ranges.length; t++) kernels.axpy(filter, 1, work + 4 * t * region, dw);
    });
  }

  function gemm(
    transA: number, transB: number, m: number, n: number, k: number, alpha: number,
    a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number,
  ): Promise<void> | void {
    const flops = 2 * m * n * k;
    if (threads === 1 || flops < (options.splitThresholdFlops ?? (pool?.hot ? HOT_SPLIT_FLOPS : COLD_SPLIT_FLOPS))) {
      kernels.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    const { rows, ranges } = partitionGemm(m, n, threads);
    if (ranges.length < 2) {
      kernels.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    // The path of the whole product, for every part: parts compute exactly as one thread would.
    const path = exports.gemmChoosePath(transB, m, n, k, ldb);
    const part = ([s, e]: [number, number]): GemmArgs =>
      rows
        ? [transA, transB, e - s, n, k, alpha, transA ? a + 4 * s : a + 4 * s * lda, lda, b, ldb, beta, c + 4 * s * ldc, ldc, path]
        : [transA, transB, m, e - s, k, alpha, a, lda, transB ? b + 4 * s * ldb : b + 4 * s, ldb, beta, c + 4 * s, ldc, path];
    const tasks = ranges.slice(1).map(part);
    const [tA, tB, mm, nn, kk, al, aa, la, bb, lb, be, cc, lc] = part(ranges[0]!);
    return getPool().run(OP.GEMM, 'gemm', tasks, () => exports.gemmWith(path, tA, tB, mm, nn, kk, al, aa, la, bb, lb, be, cc, lc));
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
