/**
 * Shared-memory worker pool for split kernels.
 *
 * Every worker instantiates the same compiled `WebAssembly.Module` over the same shared memory and
 * serves one slot of the control region `[0, CONTROL_BYTES)` (see src/heap.ts). Dispatch is a store
 * plus `Atomics.notify` (about 0.2–1 µs when the worker is spinning), never postMessage (about 50 µs).
 *
 * Control region layout (bytes):
 * - `[0, 128)`: reserved.
 * - `[SLOT_BASE + w·SLOT_BYTES, +SLOT_BYTES)`: slot of worker w (w < MAX_WORKERS), i32 fields {@link F}:
 *   SEQ (caller bumps to post a task), DONE (worker copies SEQ when finished), STATE (1 while the worker
 *   spins or runs, 0 while it sleeps in Atomics.wait), OP, STATUS (0 ok, 1 error), MSG_LEN, CLAIMED (1 + the
 *   chunk index the worker holds, 0 none), RAN (chunks run so far), ARGS (OP.CHUNKS: job block, generation),
 *   CONTENDED (1 while the worker judges the host oversubscribed, see pool-worker.mjs), and an error message
 *   (UTF-8) from MSG_BYTE.
 * - `[SCRATCH_BASE + t·scratchBytes, …)`: GEMM scratch of thread t (t = 0 is the calling thread,
 *   t = w + 1 worker w): one packed B panel and a temp tile.
 * The larger GEMM packing workspaces (~1.1 MiB per thread) live outside the control region, at addresses
 * the backend gives through {@link PoolOptions.workspace}.
 *
 * Chunked jobs ({@link WorkerPool.runChunks}): a kernel cut into more chunks than threads, written as a
 * table of calls into the pool's job block ({@link JOB_BYTES}, outside the control region). Every thread,
 * the caller included, claims the next chunk through one shared counter (compare-and-swap) until none
 * is left, so a descheduled worker only delays the chunk it holds and the others take the rest. Which
 * thread ran which chunk never changes a result: chunks write disjoint outputs, and reductions across
 * chunks are summed in chunk order by the backend afterwards.
 */
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { SplitJudge, type SplitAccount } from './split-judge.ts';
import { claimChunk, doneCount, finishChunk, GEN_MASK, INDEX_MASK, JOB, JOB_BYTES, MAX_CHUNKS, sleepMs, writeRow } from './pool-jobs.ts';

export { claimChunk, finishChunk, JOB, JOB_BYTES, MAX_CHUNKS } from './pool-jobs.ts';
export { MAX_REST_MS, REST_MS } from './split-judge.ts';

export const SLOT_BASE = 128;
export const SLOT_BYTES = 256;
/** Most workers the control region has slots for. */
export const MAX_WORKERS = 13;
export const SCRATCH_BASE = 4096;
/** Most threads (caller included) that can share a kernel. */
export const MAX_THREADS = MAX_WORKERS + 1;
/** i32 field indices inside a slot; MSG_BYTE is a byte offset. */
export const F = { SEQ: 0, DONE: 1, STATE: 2, OP: 3, STATUS: 4, MSG_LEN: 5, CLAIMED: 6, RAN: 7, ARGS: 8, CONTENDED: 16, MSG_BYTE: 128 } as const;
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

/** One chunk of a job: which export (index into the pool's `callNames`), its arguments, which are f32. */
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
  /** Export names that chunk rows may call, by index (CallTask.kernel). */
  callNames?: readonly string[];
  /** GEMM packing workspace of thread t (1 … workers), passed to the instance's setWorkspace; 0 = none. */
  workspace?: (thread: number) => number;
  /** Passed to every worker instance's setGemmPath (0 = by shape; tests and measurements force a path). */
  gemmPath?: number;
  /** Address of this pool's job block ({@link JOB_BYTES}, 64-byte aligned); without it runChunks runs every chunk on the caller. */
  jobBlock?: number;
  /** Test hooks: slow a thread down and jitter every claim, to exercise chunk claiming (never timing assertions). */
  testHooks?: PoolTestHooks;
  /**
   * Stop splitting a kind of job for a while when the time the caller waits for workers' chunks exceeds the time
   * the workers' chunks saved it (a busy host). Default true; false with test hooks, which slow threads on purpose.
   */
  adaptive?: boolean;
}

/** Determinism test hooks of a pool: which thread claims which chunk becomes random and uneven. */
export interface PoolTestHooks {
  /** Thread (0 = the caller, w + 1 = worker w) that sleeps {@link slowMs} before each chunk it runs. */
  slowThread?: number;
  slowMs?: number;
  /** Every thread sleeps a random time in [0, jitterMs) before each claim. */
  jitterMs?: number;
  /** The caller claims nothing until a worker has claimed a chunk: every job runs on several threads. */
  workersFirst?: boolean;
  /** The slowed thread's worker also reports the host as oversubscribed, as a descheduled thread's would. */
  contended?: boolean;
  /**
   * The caller sleeps this long (ms) between posting a job's chunk count and opening the job, as if descheduled
   * there: a thread still claiming from the previous job then meets a half-published one.
   */
  publishDelayMs?: number;
}

/**
 * A fixed set of workers, started on construction, stopped by {@link close}.
 *
 * Usage: `const pool = new WorkerPool(mod, memory, 1, scratchBytes, { callNames, jobBlock }); await pool.runChunks('gemm', rows, local, false); await pool.close();`
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
  private readonly job: Int32Array | undefined;
  private readonly jobF32: Float32Array | undefined;
  private readonly jobBlock: number;
  private gen = 0;
  private readonly hooks: PoolTestHooks;
  private callerChunks = 0;
  /** Weighs splitting per kind of job (see {@link SplitJudge}); undefined when not adaptive. */
  private readonly judge: SplitJudge | undefined;

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
    this.hooks = options.testHooks ?? {};
    this.jobBlock = options.jobBlock ?? 0;
    this.judge = options.adaptive ?? options.testHooks === undefined
      ? new SplitJudge(() => this.slots.some((slot) => Atomics.load(slot.i32, F.CONTENDED) !== 0))
      : undefined;
    if (this.jobBlock) {
      if (this.jobBlock % 64 !== 0) throw new RangeError(`rxgrad pool: job block ${this.jobBlock} is not 64-byte aligned`);
      this.job = new Int32Array(memory.buffer, this.jobBlock, JOB_BYTES / 4);
      this.jobF32 = new Float32Array(memory.buffer, this.jobBlock, JOB_BYTES / 4);
    }
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
        JOB,
        slowMs: this.hooks.slowThread === slot.thread ? this.hooks.slowMs ?? 0 : 0,
        jitterMs: this.hooks.jitterMs ?? 0,
        contendedForTest: this.hooks.slowThread === slot.thread && this.hooks.contended === true,
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
      // Wake a caller waiting on this slot or on a chunked job so it sees the death.
      Atomics.notify(slot.i32, F.DONE);
      if (this.job) Atomics.notify(this.job, JOB.DONE);
    });
    if (this.refs === 0) worker.unref();
  }

  /** True if every worker is spinning (a task within the last spinMs): a split then pays no wake-up. */
  get hot(): boolean {
    for (const slot of this.slots) if (Atomics.load(slot.i32, F.STATE) !== 1) return false;
    return true;
  }

  /**
   * An empty task through every worker (booting any that is not running) while `local` runs on the calling
   * thread: settles when every worker has answered (a latency measurement, and `ready()`). Queued behind a
   * pending job.
   */
  roundTrip(local: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error('rxgrad pool: used after close()'));
    if (this.tail) return this.afterTail(() => this.start(local));
    const p = this.start(local);
    this.track(p);
    return p;
  }

  /** Runs `next` once the pending call settles (whatever its outcome); the result becomes the new tail. */
  private afterTail(next: () => Promise<void> | void): Promise<void> {
    const p: Promise<void> = this.tail!.then(next, next);
    this.track(p);
    return p;
  }

  /**
   * Runs a chunked job: row c is one call of export `callNames[rows[c].kernel]`; the caller and every worker
   * claim rows through the job's shared counter until none is left (`local(row)` runs a row on the calling
   * thread). Returns undefined when every chunk finished while the caller took its share or spun briefly,
   * else (`sync` false) a Promise, or (`sync` true) blocks in Atomics.wait: the caller sleeps as soon as the
   * chunks it waits for stop progressing, leaving its core to the worker that holds them. A job started
   * while an asynchronous one is still pending runs after it (`sync`: on the calling thread alone, which
   * gives the same result: a chunk computes the same whoever runs it).
   *
   * Usage: `await pool.runChunks('gemm', rows, (row) => call(row), false);`
   */
  runChunks(name: string, rows: readonly CallTask[], local: (row: CallTask) => void, sync: boolean): Promise<void> | void {
    if (this.closed) {
      const err = new Error('rxgrad pool: used after close()');
      if (sync) throw err;
      return Promise.reject(err);
    }
    if (rows.length > MAX_CHUNKS) throw new RangeError(`rxgrad pool: ${name} has ${rows.length} chunks, at most ${MAX_CHUNKS} fit a job`);
    if (!this.job || this.size === 0) {
      for (const row of rows) local(row);
      return;
    }
    if (this.tail) {
      if (sync) {
        for (const row of rows) local(row);
        return;
      }
      return this.afterTail(() => this.startChunks(name, rows, local, false, undefined));
    }
    const account = this.judge?.account(name, rows.length);
    if (account && this.judge!.resting(account)) {
      for (const row of rows) local(row);
      this.callerChunks += rows.length;
      return;
    }
    const result = this.startChunks(name, rows, local, sync, account);
    if (result) this.track(result);
    return result;
  }

  /**
   * True while jobs of kernel `name` cut into `chunks` run on the caller alone (splitting them stopped paying on
   * a busy host): a backend whose chunks are row ranges of one call can then make that one call instead, which
   * computes the same and streams shared operands once instead of once per chunk.
   */
  resting(name: string, chunks: number): boolean {
    return this.judge !== undefined && this.judge.resting(this.judge.account(name, chunks));
  }

  /** Chunks run so far by each thread (index 0 the caller, w + 1 worker w): test and measurement hook. */
  chunkCounts(): number[] {
    return [this.callerChunks, ...this.slots.map((s) => Atomics.load(s.i32, F.RAN))];
  }

  /** Times the pool stopped splitting because waiting for workers cost more than they saved (measurement hook). */
  get restCount(): number {
    return this.judge?.rests ?? 0;
  }

  private startChunks(
    name: string, rows: readonly CallTask[], local: (row: CallTask) => void, sync: boolean, account: SplitAccount | undefined,
  ): Promise<void> | void {
    if (this.closed) return Promise.reject(new Error('rxgrad pool: used after close()'));
    const job = this.job!;
    const count = rows.length;
    this.gen = (this.gen + 1) & GEN_MASK;
    const tag = this.gen << JOB.INDEX_BITS;
    // Close the block first: a thread still claiming from the previous job (it arrived late, found it finished,
    // and is between reading NEXT and its compare-and-swap) would otherwise claim chunks of this job under the
    // old tag once COUNT grows, and run them untracked while the caller moves on (they would run twice).
    Atomics.store(job, JOB.NEXT, tag | INDEX_MASK);
    for (let c = 0; c < count; c++) writeRow(job, this.jobF32!, JOB.ROWS + c * JOB.ROW_WORDS, rows[c]!, this.callNames);
    Atomics.store(job, JOB.COUNT, count);
    Atomics.store(job, JOB.DONE, tag);
    if (this.hooks.publishDelayMs) sleepMs(this.hooks.publishDelayMs);
    Atomics.store(job, JOB.NEXT, tag); // publishes the job: rows and COUNT are visible to whoever reads this
    const tPublish = performance.now();
    for (const slot of this.slots) {
      if (slot.dead || !slot.worker) this.spawn(slot);
      slot.i32[F.OP] = OP.CHUNKS;
      slot.i32[F.ARGS] = this.jobBlock;
      slot.i32[F.ARGS + 1] = this.gen;
      slot.running = name;
      slot.seq = (slot.seq + 1) | 0;
      Atomics.store(slot.i32, F.SEQ, slot.seq);
      // A spinning worker sees SEQ by itself; only a sleeping one needs the (syscall) wake-up. Sequentially
      // consistent atomics: a worker that stores STATE = 0 after this load re-checks SEQ before it sleeps.
      if (Atomics.load(slot.i32, F.STATE) === 0) Atomics.notify(slot.i32, F.SEQ);
    }
    let localError: unknown;
    const { slowThread, slowMs = 0, jitterMs = 0, workersFirst = false } = this.hooks;
    if (workersFirst && count > 1) {
      while (Atomics.load(job, JOB.NEXT) === tag && !this.slots.some((s) => s.dead)) sleepMs(0.05);
    }
    const t0 = performance.now();
    let ran = 0;
    for (;;) {
      if (jitterMs > 0) sleepMs(Math.random() * jitterMs);
      const index = claimChunk(job, tag);
      if (index < 0) break;
      if (slowThread === 0) sleepMs(slowMs);
      try {
        local(rows[index]!);
      } catch (err) {
        localError ??= err;
      }
      finishChunk(job, tag);
      ran++;
    }
    this.callerChunks += ran;
    const tLocalEnd = performance.now();
    const meanMs = ran > 0 ? (tLocalEnd - t0) / ran : 0;
    const weigh = () => account && this.judge!.weigh(account, count - ran, meanMs, performance.now() - tLocalEnd + (t0 - tPublish));
    // Spin while the chunks still out keep finishing at about the pace of ours; a worker that makes no
    // progress for twice our mean chunk time was descheduled, and spinning would only keep its core busy.
    const stallMs = Math.min(0.5, Math.max(0.02, ran > 0 ? (2 * (performance.now() - t0)) / ran : 0.05));
    let done = doneCount(job, tag);
    let last = done;
    let since = performance.now();
    while (done < count && !this.lostChunk()) {
      const now = performance.now();
      if (done !== last) {
        last = done;
        since = now;
      } else if (now - since > stallMs) {
        break;
      }
      done = doneCount(job, tag);
    }
    if (done >= count || this.lostChunk()) {
      weigh();
      return this.finishJob(localError, sync);
    }
    if (sync) {
      for (;;) {
        const word = Atomics.load(job, JOB.DONE);
        if ((word & INDEX_MASK) >= count || this.lostChunk()) break;
        Atomics.wait(job, JOB.DONE, word, 10);
      }
      weigh();
      return this.finishJob(localError, true);
    }
    return this.waitChunks(count, tag, localError, weigh);
  }

  private async waitChunks(count: number, tag: number, localError: unknown, weigh: () => void): Promise<void> {
    const job = this.job!;
    this.ref();
    try {
      for (;;) {
        const word = Atomics.load(job, JOB.DONE);
        if ((word & INDEX_MASK) >= count || (word & ~INDEX_MASK) !== tag || this.lostChunk()) break;
        const r = Atomics.waitAsync(job, JOB.DONE, word, 50);
        if (r.async) await r.value;
      }
    } finally {
      this.unref();
    }
    weigh();
    return this.finishJob(localError, false);
  }

  /** A worker died holding a chunk of the current job: that chunk will never finish. */
  private lostChunk(): boolean {
    for (const slot of this.slots) if (slot.dead && Atomics.load(slot.i32, F.CLAIMED) !== 0) return true;
    return false;
  }

  /**
   * Throws (sync) or rejects the first failure of the finished job: a lost chunk, the caller's own error, a
   * worker's error. Every worker's error of this job is cleared either way.
   */
  private finishJob(localError: unknown, sync: boolean): Promise<void> | void {
    let failure: unknown;
    for (const slot of this.slots) {
      if (slot.dead && Atomics.load(slot.i32, F.CLAIMED) !== 0) {
        slot.i32[F.CLAIMED] = 0;
        const why = slot.lastError ? `: ${slot.lastError}` : '';
        failure ??= new Error(`rxgrad pool: worker ${slot.index} exited with code ${slot.exitCode} while running ${slot.running}${why}; it will be replaced`);
      }
    }
    failure ??= localError;
    for (const slot of this.slots) {
      try {
        this.takeError(slot);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure === undefined) return;
    if (sync) throw failure;
    return Promise.reject(failure);
  }

  private track(p: Promise<void>): void {
    this.tail = p;
    const clear = () => {
      if (this.tail === p) this.tail = undefined;
    };
    p.then(clear, clear);
  }

  private start(local: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error('rxgrad pool: used after close()'));
    const used = this.slots;
    for (const slot of used) {
      if (slot.dead || !slot.worker) this.spawn(slot);
      slot.i32[F.OP] = OP.NOP;
      slot.running = 'nop';
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
    let pending = used.length;
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
      this.takeError(slot);
    }
    if (localError !== undefined) throw localError;
  }

  /** Throws (and clears) the error a worker wrote into its slot, if any. */
  private takeError(slot: Slot): void {
    if (slot.i32[F.STATUS] === 0) return;
    const len = slot.i32[F.MSG_LEN]!;
    const bytes = new Uint8Array(slot.i32.buffer, slot.i32.byteOffset + F.MSG_BYTE, len).slice();
    slot.i32[F.STATUS] = 0;
    throw new Error(`rxgrad pool: worker ${slot.index} failed in ${slot.running}: ${new TextDecoder().decode(bytes)}`);
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
    return this.roundTrip(() => {});
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
