/**
 * Shared-memory worker pool for split GEMMs.
 *
 * Every worker instantiates the same compiled `WebAssembly.Module` over the same shared memory and
 * serves one slot of the control region `[0, CONTROL_BYTES)` (see src/heap.ts). Dispatch is a store
 * plus `Atomics.notify` (about 0.2–1 µs when the worker is spinning), never postMessage (about 50 µs).
 *
 * Control region layout (bytes):
 * - `[0, 128)`: reserved.
 * - `[SLOT_BASE + w·SLOT_BYTES, +SLOT_BYTES)`: slot of worker w (w < MAX_WORKERS), i32 fields {@link F}:
 *   SEQ (caller bumps to post a task), DONE (worker copies SEQ when finished), STATE (1 while the worker
 *   spins or runs, 0 while it sleeps in Atomics.wait), OP, STATUS (0 ok, 1 error), MSG_LEN, ARGS[24]
 *   (OP.GEMM: the 13 gemm arguments, alpha and beta as f32 bits, then the path for gemmWith; OP.CALL: kernel id, argc, float mask and
 *   up to 21 arguments of any export named in `callNames`), and an error message (UTF-8) from MSG_BYTE.
 * - `[SCRATCH_BASE + t·scratchBytes, …)`: GEMM scratch of thread t (t = 0 is the calling thread,
 *   t = w + 1 worker w): one packed B panel and a temp tile.
 * The larger GEMM packing workspaces (~1.1 MiB per thread) live outside the control region, at addresses
 * the backend gives through {@link PoolOptions.workspace}.
 */
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

export const SLOT_BASE = 128;
export const SLOT_BYTES = 256;
/** Most workers the control region has slots for. */
export const MAX_WORKERS = 13;
export const SCRATCH_BASE = 4096;
/** Most threads (caller included) that can share a kernel. */
export const MAX_THREADS = MAX_WORKERS + 1;
/** i32 field indices inside a slot; MSG_BYTE is a byte offset. */
export const F = { SEQ: 0, DONE: 1, STATE: 2, OP: 3, STATUS: 4, MSG_LEN: 5, ARGS: 8, MSG_BYTE: 128 } as const;
export const OP = { NOP: 0, GEMM: 1, STOP: 2, CALL: 3 } as const;
/**
 * OP.CALL argument layout in ARGS: [kernel id, argc, float mask, arg0, …]: the worker calls export
 * `callNames[id]` (a name list given to the pool) with argc arguments, arg i read as f32 when bit i of
 * the mask is set, else as i32. ARGS has 24 fields, so at most {@link MAX_CALL_ARGS} arguments.
 */
export const MAX_CALL_ARGS = 21;

/**
 * Longest the caller spins (ms) for the workers' shares before awaiting: beyond this a worker was
 * descheduled, and blocking the event loop longer would stall other work (timers, I/O).
 */
export const CALLER_SPIN_MAX_MS = 5;

/** Byte address of thread t's GEMM scratch (t = 0: the calling thread). */
export function scratchAddress(thread: number, scratchBytes: number): number {
  const at = SCRATCH_BASE + thread * scratchBytes;
  if (at + scratchBytes > 65536) throw new RangeError(`rxgrad pool: no scratch for thread ${thread}`);
  return at;
}

/**
 * The 13 arguments of Kernels.gemm, in order, then optionally the path (the kernels' gemmWith: 0 = chosen
 * by this part's shape, 1 = direct / panel, 2 = packed); a split passes the path of the whole product so
 * every part computes like one thread would.
 */
export type GemmArgs = [
  transA: number, transB: number, m: number, n: number, k: number, alpha: number,
  a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number, path?: number,
];

/** One OP.CALL task: which export (index into the pool's `callNames`), its arguments, which are f32. */
export interface CallTask {
  readonly kernel: number;
  readonly args: readonly number[];
  /** Bit i set: argument i is an f32 (default 0: all i32). */
  readonly floatMask?: number;
}

// Worker indices in use per memory, so that two pools over one memory never share a slot.
const slotsInUse = new WeakMap<WebAssembly.Memory, Set<number>>();

interface Slot {
  readonly index: number;
  readonly i32: Int32Array;
  readonly f32: Float32Array;
  worker: Worker | undefined;
  /** Last SEQ posted. */
  seq: number;
  dead: boolean;
  exitCode: number;
  lastError: string;
  /** Kernel running, for error messages. */
  running: string;
  /** Thread number of this worker in its backend (1 … size; 0 is the caller). */
  readonly thread: number;
}

/** Options of {@link WorkerPool}. */
export interface PoolOptions {
  /** Least time (ms) the caller spins for results before awaiting Atomics.waitAsync; default 0.05. */
  spinMs?: number;
  /** How long (ms) a worker spins for its next task before sleeping; default spinMs. */
  workerSpinMs?: number;
  /** Export names that OP.CALL tasks may call, by index (CallTask.kernel). */
  callNames?: readonly string[];
  /** GEMM packing workspace of thread t (1 … workers), passed to the instance's setWorkspace; 0 = none. */
  workspace?: (thread: number) => number;
  /** Passed to every worker instance's setGemmPath (0 = by shape; tests and measurements force a path). */
  gemmPath?: number;
}

/**
 * A fixed set of workers, started on construction, stopped by {@link close}.
 *
 * Usage: `const pool = new WorkerPool(mod, memory, 1, scratchBytes); await pool.run(OP.GEMM, [argsW0]); await pool.close();`
 */
export class WorkerPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly spinMs: number;
  private readonly workerSpinMs: number;
  private readonly callNames: readonly string[];
  private readonly workspace: (thread: number) => number;
  private readonly gemmPath: number;
  private closed = false;
  private tail: Promise<void> | undefined;
  private refs = 0;

  constructor(
    private readonly module: WebAssembly.Module,
    private readonly memory: WebAssembly.Memory,
    workers: number,
    private readonly scratchBytes: number,
    options: PoolOptions = {},
  ) {
    this.spinMs = options.spinMs ?? 0.05;
    this.workerSpinMs = options.workerSpinMs ?? this.spinMs;
    this.callNames = options.callNames ?? [];
    this.workspace = options.workspace ?? (() => 0);
    this.gemmPath = options.gemmPath ?? 0;
    let used = slotsInUse.get(memory);
    if (!used) slotsInUse.set(memory, (used = new Set()));
    const buffer = memory.buffer;
    for (let index = 0; this.slots.length < workers; index++) {
      if (index >= MAX_WORKERS) {
        throw new RangeError(`rxgrad pool: the control region has ${MAX_WORKERS} worker slots; ${used.size} are in use`);
      }
      if (used.has(index)) continue;
      used.add(index);
      const byte = SLOT_BASE + index * SLOT_BYTES;
      this.slots.push({
        index,
        i32: new Int32Array(buffer, byte, SLOT_BYTES / 4),
        f32: new Float32Array(buffer, byte, SLOT_BYTES / 4),
        worker: undefined,
        seq: 0,
        dead: false,
        exitCode: 0,
        lastError: '',
        running: '',
        thread: this.slots.length + 1,
      });
    }
    this.size = this.slots.length;
    for (const slot of this.slots) this.spawn(slot);
  }

  private spawn(slot: Slot): void {
    slot.i32.fill(0);
    slot.seq = 0;
    slot.dead = false;
    slot.exitCode = 0;
    slot.lastError = '';
    const worker = new Worker(new URL('./pool-worker.mjs', import.meta.url), {
      workerData: {
        module: this.module,
        memory: this.memory,
        slotByte: SLOT_BASE + slot.index * SLOT_BYTES,
        slotInts: SLOT_BYTES / 4,
        scratch: scratchAddress(slot.index + 1, this.scratchBytes),
        workspace: this.workspace(slot.thread),
        gemmPath: this.gemmPath,
        startSeq: 0,
        spinMs: this.workerSpinMs,
        callNames: [...this.callNames],
        F,
        OP,
      },
      // The worker is plain .mjs: no need to load tsx (or any other loader) into it.
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    slot.worker = worker;
    worker.on('error', (err) => {
      slot.lastError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    });
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return;
      slot.dead = true;
      slot.exitCode = code;
      slot.worker = undefined;
      // Wake a caller waiting on this slot so it sees the death.
      Atomics.notify(slot.i32, F.DONE);
    });
    if (this.refs === 0) worker.unref();
  }

  /** True if every worker is spinning (a task within the last spinMs): a split then pays no wake-up. */
  get hot(): boolean {
    for (const slot of this.slots) if (Atomics.load(slot.i32, F.STATE) !== 1) return false;
    return true;
  }

  /**
   * Runs `op` on workers 0..tasks.length−1 (task i → worker i) while `local` runs on the calling thread.
   * Returns a Promise that settles when every worker is done; rejects if one fails or dies.
   * Calls are serialised: a call made while another is pending starts after it.
   */
  run(op: number, kernel: string, tasks: readonly GemmArgs[] | readonly CallTask[] | number, local: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error('rxgrad pool: used after close()'));
    if (this.tail) {
      const next: Promise<void> = this.tail.then(
        () => this.start(op, kernel, tasks, local),
        () => this.start(op, kernel, tasks, local),
      );
      this.track(next);
      return next;
    }
    const p = this.start(op, kernel, tasks, local);
    this.track(p);
    return p;
  }

  private track(p: Promise<void>): void {
    this.tail = p;
    const clear = () => {
      if (this.tail === p) this.tail = undefined;
    };
    p.then(clear, clear);
  }

  private start(op: number, kernel: string, tasks: readonly GemmArgs[] | readonly CallTask[] | number, local: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error('rxgrad pool: used after close()'));
    const count = typeof tasks === 'number' ? tasks : tasks.length;
    const used = this.slots.slice(0, count);
    for (let i = 0; i < count; i++) {
      const slot = used[i]!;
      if (slot.dead || !slot.worker) this.spawn(slot);
      const task = typeof tasks === 'number' ? undefined : tasks[i]!;
      if (task && op === OP.CALL) {
        writeCall(slot, task as CallTask, this.callNames);
      } else if (task) {
        const args = task as GemmArgs;
        const { i32, f32 } = slot;
        for (let j = 0; j < 13; j++) {
          if (j === 5 || j === 10) f32[F.ARGS + j] = args[j]!;
          else i32[F.ARGS + j] = args[j]!;
        }
        i32[F.ARGS + 13] = args[13] ?? 0;
      }
      slot.i32[F.OP] = op;
      slot.running = kernel;
      slot.seq = (slot.seq + 1) | 0;
      Atomics.store(slot.i32, F.SEQ, slot.seq);
      Atomics.notify(slot.i32, F.SEQ);
    }
    let localError: unknown;
    const tLocal = performance.now();
    try {
      local();
    } catch (err) {
      localError = err;
    }
    // Spin for the workers' shares: they are about as long as ours and started at most a wake-up later,
    // so spin up to twice our own time (at least spinMs, at most CALLER_SPIN_MAX_MS). Falling back to
    // Atomics.waitAsync resumes through the event loop, measured at ~0.1 ms median with multi-ms tails here.
    const t0 = performance.now();
    const budget = Math.max(this.spinMs, Math.min(CALLER_SPIN_MAX_MS, 2 * (t0 - tLocal) + 0.1));
    let pending = count;
    while (pending > 0) {
      pending = 0;
      for (const slot of used) if (Atomics.load(slot.i32, F.DONE) !== slot.seq && !slot.dead) pending++;
      if (pending === 0 || performance.now() - t0 > budget) break;
    }
    if (pending === 0) {
      try {
        this.check(used, localError);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.waitAsync(used, localError);
  }

  private async waitAsync(used: Slot[], localError: unknown): Promise<void> {
    this.ref();
    try {
      for (const slot of used) {
        for (;;) {
          const done = Atomics.load(slot.i32, F.DONE);
          if (done === slot.seq || slot.dead) break;
          const r = Atomics.waitAsync(slot.i32, F.DONE, done);
          if (r.async) await r.value;
        }
      }
    } finally {
      this.unref();
    }
    this.check(used, localError);
  }

  /** Throws the first failure of this round: a dead worker, a worker error, or the caller's own. */
  private check(used: Slot[], localError: unknown): void {
    for (const slot of used) {
      if (slot.dead && Atomics.load(slot.i32, F.DONE) !== slot.seq) {
        const why = slot.lastError ? `: ${slot.lastError}` : '';
        throw new Error(
          `rxgrad pool: worker ${slot.index} exited with code ${slot.exitCode} while running ${slot.running}${why}; it will be replaced`,
        );
      }
      if (slot.i32[F.STATUS] !== 0) {
        const len = slot.i32[F.MSG_LEN]!;
        const bytes = new Uint8Array(slot.i32.buffer, slot.i32.byteOffset + F.MSG_BYTE, len).slice();
        slot.i32[F.STATUS] = 0;
        throw new Error(`rxgrad pool: worker ${slot.index} failed in ${slot.running}: ${new TextDecoder().decode(bytes)}`);
      }
    }
    if (localError !== undefined) throw localError;
  }

  private ref(): void {
    if (this.refs++ === 0) for (const slot of this.slots) slot.worker?.ref();
  }

  private unref(): void {
    if (--this.refs === 0) for (const slot of this.slots) slot.worker?.unref();
  }

  /** Test hook: terminates worker i (as if it crashed); resolves with its exit code. */
  async terminateWorkerForTest(i: number): Promise<number> {
    const worker = this.slots[i]?.worker;
    if (!worker) throw new RangeError(`rxgrad pool: no live worker ${i}`);
    return worker.terminate();
  }

  /** Resolves once every worker has booted and answered a no-op. */
  ready(): Promise<void> {
    return this.run(OP.NOP, 'nop', this.size, () => {});
  }

  /** Stops and terminates every worker; the pool must not be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    const pending = this.tail;
    if (pending) await pending.catch(() => {});
    this.closed = true;
    const exits: Promise<number>[] = [];
    for (const slot of this.slots) {
      const worker = slot.worker;
      if (!worker) continue;
      slot.i32[F.OP] = OP.STOP;
      slot.seq = (slot.seq + 1) | 0;
      Atomics.store(slot.i32, F.SEQ, slot.seq);
      Atomics.notify(slot.i32, F.SEQ);
      exits.push(worker.terminate());
    }
    await Promise.all(exits);
    const used = slotsInUse.get(this.memory);
    for (const slot of this.slots) used?.delete(slot.index);
  }
}

/** Writes an OP.CALL task into a slot's ARGS (see {@link MAX_CALL_ARGS}); throws on a bad task. */
function writeCall(slot: Slot, task: CallTask, callNames: readonly string[]): void {
  const { kernel, args } = task;
  if (!Number.isInteger(kernel) || kernel < 0 || kernel >= callNames.length) {
    throw new RangeError(`rxgrad pool: no callable kernel #${kernel} (the pool knows ${callNames.length})`);
  }
  if (args.length > MAX_CALL_ARGS) throw new RangeError(`rxgrad pool: ${callNames[kernel]} takes ${args.length} arguments, at most ${MAX_CALL_ARGS} fit a slot`);
  const mask = task.floatMask ?? 0;
  const { i32, f32 } = slot;
  i32[F.ARGS] = kernel;
  i32[F.ARGS + 1] = args.length;
  i32[F.ARGS + 2] = mask;
  for (let j = 0; j < args.length; j++) {
    if (mask & (1 << j)) f32[F.ARGS + 3 + j] = args[j]!;
    else i32[F.ARGS + 3 + j] = args[j]!;
  }
}
