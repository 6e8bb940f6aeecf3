/**
 * The workers of the compute pool (workers/pool.ts) and their slots in the control region: starting,
 * replacing a dead one, posting an op, reading back a worker's error, and the empty round trip through
 * every worker (`ready()`, latency measurements). The chunked-job protocol lives in pool.ts and pool-jobs.ts.
 *
 * Control region layout (bytes):
 * - `[0, 128)`: reserved.
 * - `[SLOT_BASE + w·SLOT_BYTES, +SLOT_BYTES)`: slot of worker w (w < MAX_WORKERS), i32 fields {@link F}:
 *   SEQ (caller bumps to post a task), DONE (worker copies SEQ when finished), STATE (1 while the worker
 *   spins or runs, 0 while it sleeps in Atomics.wait), OP, STATUS (0 ok, 1 error), MSG_LEN, CLAIMED (1 + the
 *   chunk index the worker holds, 0 none), RAN (chunks run so far), ARGS (OP.CHUNKS: job block, generation),
 *   CONTENDED (1 while the worker judges the host oversubscribed, see pool-worker.mjs), HOST (the caller's
 *   reading of other processes' load: {@link HOST}), and an error message (UTF-8) from MSG_BYTE.
 * - `[SCRATCH_BASE + t·scratchBytes, …)`: GEMM scratch of thread t (t = 0 is the calling thread,
 *   t = w + 1 worker w): one packed B panel and a temp tile.
 * The larger GEMM packing workspaces (~1.1 MiB per thread) live outside the control region, at addresses
 * the backend gives through `PoolOptions.workspace`.
 */
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { JOB } from './pool-jobs.ts';

export const SLOT_BASE = 128;
export const SLOT_BYTES = 256;
/** Most workers the control region has slots for. */
export const MAX_WORKERS = 13;
export const SCRATCH_BASE = 4096;
/** Most threads (caller included) that can share a kernel. */
export const MAX_THREADS = MAX_WORKERS + 1;
/** i32 field indices inside a slot; MSG_BYTE is a byte offset. */
export const F = { SEQ: 0, DONE: 1, STATE: 2, OP: 3, STATUS: 4, MSG_LEN: 5, CLAIMED: 6, RAN: 7, ARGS: 8, CONTENDED: 16, HOST: 17, MSG_BYTE: 128 } as const;
/** Values of a slot's HOST field: what the caller knows of other processes' load (see {@link PoolWorkers.setHost}). */
export const HOST = { UNKNOWN: 0, QUIET: 1, BUSY: 2 } as const;
/** OP.CHUNKS: ARGS[0] = job block address, ARGS[1] = job generation (see {@link JOB}). */
export const OP = { NOP: 0, STOP: 2, CHUNKS: 4 } as const;

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

// Worker indices in use per memory, so that two pools over one memory never share a slot.
const slotsInUse = new WeakMap<WebAssembly.Memory, Set<number>>();

/** One worker and its slot of the control region. */
export interface Slot {
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

/** What every worker is started with (see pool-worker.mjs). */
export interface WorkerConfig {
  readonly scratchBytes: number;
  /** How long (ms) a worker spins for its next task before sleeping. */
  readonly workerSpinMs: number;
  readonly callNames: readonly string[];
  /** GEMM packing workspace of thread t (1 … workers); 0 = none. */
  readonly workspace: (thread: number) => number;
  readonly gemmPath: number;
  /** Test hooks: the thread slowed before each chunk, claim jitter, a worker that reports contention. */
  readonly slowThread?: number;
  readonly slowMs?: number;
  readonly jitterMs?: number;
  readonly contended?: boolean;
  /** Called when a worker dies, after its slot is marked dead (wake whatever waits on it). */
  readonly onExit: () => void;
}

/**
 * The workers of one pool, started on construction, stopped by {@link stop}.
 *
 * Usage: `const workers = new PoolWorkers(mod, memory, 1, config); await workers.roundTrip(() => {}, 0.05); await workers.stop();`
 */
export class PoolWorkers {
  readonly slots: Slot[] = [];
  private refs = 0;
  /** The HOST value last told to the workers (a respawned worker's slot gets it too). */
  private host: number = HOST.UNKNOWN;

  constructor(
    private readonly module: WebAssembly.Module,
    private readonly memory: WebAssembly.Memory,
    count: number,
    private readonly config: WorkerConfig,
  ) {
    let used = slotsInUse.get(memory);
    if (!used) slotsInUse.set(memory, (used = new Set()));
    const buffer = memory.buffer;
    for (let index = 0; this.slots.length < count; index++) {
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
    for (const slot of this.slots) this.spawn(slot);
  }

  /** Posts `op` (with ARGS = arg0, arg1) to a slot, first replacing its worker if it died; wakes it only if asleep unless `wake`. */
  post(slot: Slot, op: number, running: string, wake = false, arg0 = 0, arg1 = 0): void {
    if (slot.dead || !slot.worker) this.spawn(slot);
    slot.i32[F.OP] = op;
    slot.i32[F.ARGS] = arg0;
    slot.i32[F.ARGS + 1] = arg1;
    slot.running = running;
    slot.seq = (slot.seq + 1) | 0;
    Atomics.store(slot.i32, F.SEQ, slot.seq);
    // A spinning worker sees SEQ by itself; only a sleeping one needs the (syscall) wake-up. Sequentially
    // consistent atomics: a worker that stores STATE = 0 after this load re-checks SEQ before it sleeps.
    if (wake || Atomics.load(slot.i32, F.STATE) === 0) Atomics.notify(slot.i32, F.SEQ);
  }

  private spawn(slot: Slot): void {
    slot.i32.fill(0);
    slot.i32[F.HOST] = this.host;
    slot.seq = 0;
    slot.dead = false;
    slot.exitCode = 0;
    slot.lastError = '';
    const { config } = this;
    const worker = new Worker(new URL('./pool-worker.mjs', import.meta.url), {
      workerData: {
        module: this.module,
        memory: this.memory,
        slotByte: SLOT_BASE + slot.index * SLOT_BYTES,
        slotInts: SLOT_BYTES / 4,
        scratch: scratchAddress(slot.index + 1, config.scratchBytes),
        workspace: config.workspace(slot.thread),
        gemmPath: config.gemmPath,
        startSeq: 0,
        spinMs: config.workerSpinMs,
        callNames: [...config.callNames],
        F,
        OP,
        JOB,
        HOST_QUIET: HOST.QUIET,
        slowMs: config.slowThread === slot.thread ? config.slowMs ?? 0 : 0,
        jitterMs: config.jitterMs ?? 0,
        contendedForTest: config.slowThread === slot.thread && config.contended === true,
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
      // Wake a caller waiting on this slot (or, through onExit, on a chunked job) so it sees the death.
      Atomics.notify(slot.i32, F.DONE);
      config.onExit();
    });
    if (this.refs === 0) worker.unref();
  }

  /** True if every worker is spinning (a task within the last spinMs): a split then pays no wake-up. */
  get hot(): boolean {
    for (const slot of this.slots) if (Atomics.load(slot.i32, F.STATE) !== 1) return false;
    return true;
  }

  /**
   * Tells every worker what the caller knows of other processes' load (workers/host-load.ts): on a host known
   * to be quiet a worker spins for its next task whatever its own run-queue signal says (that signal also fires
   * when V8's helper threads take a core for a moment); busy or unknown, the signal decides.
   */
  setHost(busy: boolean | undefined): void {
    const value = busy === undefined ? HOST.UNKNOWN : busy ? HOST.BUSY : HOST.QUIET;
    if (value === this.host) return;
    this.host = value;
    for (const slot of this.slots) Atomics.store(slot.i32, F.HOST, value);
  }

  /** True if some worker says the host is oversubscribed (slot field CONTENDED). */
  contended(): boolean {
    return this.slots.some((slot) => Atomics.load(slot.i32, F.CONTENDED) !== 0);
  }

  /** A worker died holding a chunk of the current job: that chunk will never finish. */
  lostChunk(): boolean {
    for (const slot of this.slots) if (slot.dead && Atomics.load(slot.i32, F.CLAIMED) !== 0) return true;
    return false;
  }

  /** The error for a worker that died holding a chunk (and clears its claim), or undefined. */
  takeLostChunk(slot: Slot): Error | undefined {
    if (!slot.dead || Atomics.load(slot.i32, F.CLAIMED) === 0) return undefined;
    slot.i32[F.CLAIMED] = 0;
    return this.deathError(slot);
  }

  private deathError(slot: Slot): Error {
    const why = slot.lastError ? `: ${slot.lastError}` : '';
    return new Error(`rxgrad pool: worker ${slot.index} exited with code ${slot.exitCode} while running ${slot.running}${why}; it will be replaced`);
  }

  /** Throws (and clears) the error a worker wrote into its slot, if any. */
  takeError(slot: Slot): void {
    if (slot.i32[F.STATUS] === 0) return;
    const len = slot.i32[F.MSG_LEN]!;
    const bytes = new Uint8Array(slot.i32.buffer, slot.i32.byteOffset + F.MSG_BYTE, len).slice();
    slot.i32[F.STATUS] = 0;
    throw new Error(`rxgrad pool: worker ${slot.index} failed in ${slot.running}: ${new TextDecoder().decode(bytes)}`);
  }

  /** Chunks each worker has run so far. */
  ranCounts(): number[] {
    return this.slots.map((s) => Atomics.load(s.i32, F.RAN));
  }

  /** Keeps the process alive (workers ref'd) while something awaits them; balanced by {@link unref}. */
  ref(): void {
    if (this.refs++ === 0) for (const slot of this.slots) slot.worker?.ref();
  }

  unref(): void {
    if (--this.refs === 0) for (const slot of this.slots) slot.worker?.unref();
  }

  /**
   * An empty task through every worker (booting any that is not running) while `local` runs on the calling
   * thread: settles when every worker has answered. The caller spins at least `spinMs` first.
   */
  roundTrip(local: () => void, spinMs: number): Promise<void> {
    for (const slot of this.slots) this.post(slot, OP.NOP, 'nop', true);
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
    const budget = Math.max(spinMs, Math.min(CALLER_SPIN_MAX_MS, 2 * (t0 - tLocal) + 0.1));
    let pending = this.slots.length;
    while (pending > 0) {
      pending = 0;
      for (const slot of this.slots) if (Atomics.load(slot.i32, F.DONE) !== slot.seq && !slot.dead) pending++;
      if (pending === 0 || performance.now() - t0 > budget) break;
    }
    if (pending === 0) {
      try {
        this.check(localError);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.waitAsync(localError);
  }

  private async waitAsync(localError: unknown): Promise<void> {
    this.ref();
    try {
      for (const slot of this.slots) {
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
    this.check(localError);
  }

  /** Throws the first failure of this round: a dead worker, a worker error, or the caller's own. */
  private check(localError: unknown): void {
    for (const slot of this.slots) {
      if (slot.dead && Atomics.load(slot.i32, F.DONE) !== slot.seq) throw this.deathError(slot);
      this.takeError(slot);
    }
    if (localError !== undefined) throw localError;
  }

  /** Test hook: terminates worker i (as if it crashed); resolves with its exit code. */
  async terminateForTest(i: number): Promise<number> {
    const worker = this.slots[i]?.worker;
    if (!worker) throw new RangeError(`rxgrad pool: no live worker ${i}`);
    return worker.terminate();
  }

  /** Stops and terminates every worker and frees their slots for another pool. */
  async stop(): Promise<void> {
    const exits: Promise<number>[] = [];
    for (const slot of this.slots) {
      const worker = slot.worker;
      if (!worker) continue;
      this.post(slot, OP.STOP, 'stop', true);
      exits.push(worker.terminate());
    }
    await Promise.all(exits);
    const used = slotsInUse.get(this.memory);
    for (const slot of this.slots) used?.delete(slot.index);
  }
}
