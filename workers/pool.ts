/**
 * Shared-memory worker pool for split kernels.
 *
 * Every worker instantiates the same compiled `WebAssembly.Module` over the same shared memory and
 * serves one slot of the control region `[0, CONTROL_BYTES)` (see src/heap.ts). Dispatch is a store
 * plus `Atomics.notify` (about 0.2–1 µs when the worker is spinning), never postMessage (about 50 µs).
 *
 * The workers, their slots in the control region (layout in pool-workers.ts) and the empty round trip live
 * in pool-workers.ts; this file is the chunked-job protocol and the queueing of jobs.
 *
 * Chunked jobs ({@link WorkerPool.runChunks}): a kernel cut into more chunks than threads, written as a
 * table of calls into the pool's job block ({@link JOB_BYTES}, outside the control region). Every thread,
 * the caller included, claims the next chunk through one shared counter (compare-and-swap) until none
 * is left, so a descheduled worker only delays the chunk it holds and the others take the rest. Which
 * thread ran which chunk never changes a result: chunks write disjoint outputs, and reductions across
 * chunks are summed in chunk order by the backend afterwards.
 */
import { performance } from 'node:perf_hooks';
import { SplitJudge, type SplitAccount } from './split-judge.ts';
import { StepJudge } from './step-judge.ts';
import { HostLoad } from './host-load.ts';
import { claimChunk, doneCount, finishChunk, GEN_MASK, INDEX_MASK, JOB, JOB_BYTES, MAX_CHUNKS, sleepMs, writeRow } from './pool-jobs.ts';
import { OP, PoolWorkers } from './pool-workers.ts';

export { claimChunk, finishChunk, JOB, JOB_BYTES, MAX_CHUNKS } from './pool-jobs.ts';
export { EXPLORE_MS, MAX_EXPLORE_MS } from './split-judge.ts';
export { CALLER_SPIN_MAX_MS, F, MAX_THREADS, MAX_WORKERS, OP, SCRATCH_BASE, scratchAddress, SLOT_BASE, SLOT_BYTES } from './pool-workers.ts';

/** How a job may run besides its chunks, and how much work it is: see {@link WorkerPool.runChunks}. */
export interface JobOptions {
  /** Work of the whole job (flops or bytes; default its chunk count): the judge compares time per unit of work. */
  work?: number;
  /** The whole job as one call on the calling thread (same results as its chunks), used when it runs alone. */
  whole?: () => void;
}

/** One chunk of a job: which export (index into the pool's `callNames`), its arguments, which are f32. */
export interface CallTask {
  readonly kernel: number;
  readonly args: readonly number[];
  /** Bit i set: argument i is an f32 (default 0: all i32). */
  readonly floatMask?: number;
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
  /**
   * Whether other processes keep the host busy (default: {@link HostLoad}, their CPU time from /proc/stat);
   * undefined where unknown. The judges weigh running alone only on a busy host, and workers spin for their
   * next task on a quiet one whatever their own run-queue signal says; unknown, that signal decides both.
   */
  hostBusy?: () => boolean | undefined;
  /** Address of this pool's job block ({@link JOB_BYTES}, 64-byte aligned); without it runChunks runs every chunk on the caller. */
  jobBlock?: number;
  /** Test hooks: slow a thread down and jitter every claim, to exercise chunk claiming (never timing assertions). */
  testHooks?: PoolTestHooks;
  /**
   * On a busy host (other processes' CPU time, workers/host-load.ts), time whole steps (workers/step-judge.ts)
   * or, outside marked steps, each kind of job (workers/split-judge.ts) with the workers and on the caller
   * alone, and run the faster way. Default true; false with test hooks, which slow threads on purpose.
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
  private readonly workers: PoolWorkers;
  private readonly spinMs: number;
  private readonly callNames: readonly string[];
  private closed = false;
  private tail: Promise<void> | undefined;
  private readonly job: Int32Array | undefined;
  private readonly jobF32: Float32Array | undefined;
  private readonly jobBlock: number;
  private gen = 0;
  private readonly hooks: PoolTestHooks;
  private callerChunks = 0;
  /** Weighs splitting per kind of job (see {@link SplitJudge}); undefined when not adaptive. */
  private readonly judge: SplitJudge | undefined;
  /** Weighs whole steps on a busy host: pool or every job alone (see {@link StepJudge}); undefined when not adaptive. */
  private readonly steps: StepJudge | undefined;
  /** Whether other processes keep the host busy; undefined where unknown (see PoolOptions.hostBusy). */
  private readonly hostBusy: () => boolean | undefined;

  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, workers: number, scratchBytes: number, options: PoolOptions = {}) {
    this.spinMs = options.spinMs ?? 0.05;
    this.callNames = options.callNames ?? [];
    this.hooks = options.testHooks ?? {};
    this.jobBlock = options.jobBlock ?? 0;
    const adaptive = options.adaptive ?? options.testHooks === undefined;
    // Busy host for the judges (and the workers' spinning): other processes' CPU time (workers/host-load.ts), or
    // the workers' run-queue signal where the host does not say, and in tests whose slowed worker plays a
    // descheduled one (hooks.contended: the host is left unknown).
    const load = new HostLoad();
    const hostBusy = options.hostBusy ?? (() => load.busy());
    this.hostBusy = () => (this.hooks.contended ? undefined : hostBusy());
    const busyHost = () => this.hostBusy() ?? this.workers.contended();
    this.judge = adaptive ? new SplitJudge(busyHost) : undefined;
    this.steps = adaptive ? new StepJudge(busyHost) : undefined;
    if (this.jobBlock) {
      if (this.jobBlock % 64 !== 0) throw new RangeError(`rxgrad pool: job block ${this.jobBlock} is not 64-byte aligned`);
      this.job = new Int32Array(memory.buffer, this.jobBlock, JOB_BYTES / 4);
      this.jobF32 = new Float32Array(memory.buffer, this.jobBlock, JOB_BYTES / 4);
    }
    const { slowThread, slowMs, jitterMs, contended } = this.hooks;
    this.workers = new PoolWorkers(module, memory, workers, {
      scratchBytes, workerSpinMs: options.workerSpinMs ?? this.spinMs, callNames: this.callNames, workspace: options.workspace ?? (() => 0),
      gemmPath: options.gemmPath ?? 0, slowThread, slowMs, jitterMs, contended,
      onExit: () => {
        if (this.job) Atomics.notify(this.job, JOB.DONE);
      },
    });
    this.size = this.workers.slots.length;
  }

  /** True if every worker is spinning (a task within the last spinMs): a split then pays no wake-up. */
  get hot(): boolean {
    return this.workers.hot;
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
   * gives the same result: a chunk computes the same whoever runs it). `options`: the job's work and its
   * one-call form, used when the judges run it on the caller alone (a busy host).
   *
   * Usage: `await pool.runChunks('gemm', rows, (row) => call(row), false);`
   */
  runChunks(name: string, rows: readonly CallTask[], local: (row: CallTask) => void, sync: boolean, options: JobOptions = {}): Promise<void> | void {
    if (this.closed) {
      const err = new Error('rxgrad pool: used after close()');
      if (sync) throw err;
      return Promise.reject(err);
    }
    if (rows.length > MAX_CHUNKS) throw new RangeError(`rxgrad pool: ${name} has ${rows.length} chunks, at most ${MAX_CHUNKS} fit a job`);
    const alone = () => {
      if (options.whole) options.whole();
      else for (const row of rows) local(row);
    };
    if (!this.job || this.size === 0) return alone();
    // A job started while an asynchronous one is pending: behind it, or (sync) on the calling thread alone,
    // which gives the same result (a chunk computes the same whoever runs it).
    if (this.tail) return sync ? alone() : this.afterTail(() => this.startChunks(name, rows, local, false, undefined, 0));
    // Inside a stream of steps the step judge decides (every job split, or every job alone); outside, the split
    // judge, per kind of job.
    const steps = this.steps?.active() ? this.steps : undefined;
    if (steps?.alone) {
      alone();
      if (!options.whole) this.callerChunks += rows.length;
      return;
    }
    const work = options.work ?? rows.length;
    const account = steps ? undefined : this.judge?.account(name, rows.length);
    if (account && this.judge!.mode(account) === 'alone') {
      const t0 = performance.now();
      alone();
      if (!options.whole) this.callerChunks += rows.length;
      this.judge!.record(account, 'alone', performance.now() - t0, work);
      return;
    }
    const result = this.startChunks(name, rows, local, sync, account, work);
    if (result) this.track(result);
    return result;
  }

  /** True while a job is pending (an asynchronous one not yet settled): a new job would queue behind it. */
  get pending(): boolean {
    return this.tail !== undefined;
  }

  /** Chunks run so far by each thread (index 0 the caller, w + 1 worker w): test and measurement hook. */
  chunkCounts(): number[] {
    return [this.callerChunks, ...this.workers.ranCounts()];
  }

  /** Times a kind of job went from split to alone on a busy host because alone was faster (measurement hook). */
  get restCount(): number {
    return this.judge?.rests ?? 0;
  }

  /**
   * True while the step judge runs every job on the caller alone (a busy host where whole steps ran faster so):
   * the backend then calls each kernel as a 1-thread engine does, uncut, instead of handing the pool chunks to
   * run one by one (those cost the CNN 5% against a 1-thread engine on the same busy host, ninth session).
   * Not while an asynchronous job is pending: a job started then must queue behind it (see {@link runChunks}).
   */
  get stepsAlone(): boolean {
    return this.steps !== undefined && this.steps.alone && !this.tail && this.steps.active();
  }

  /**
   * True while steps are marked on a host that counts as busy: the whole-sequence recurrent jobs then run on the
   * caller alone, whichever way the step judge runs the rest. Their chunks are long (an LSTM range is every step
   * of up to 18 rows, about 1 ms), and a worker descheduled while it holds one stalls the caller for a scheduler slice.
   * With one core busy, split sequences trained the LSTM at 0.92–0.97× a 1-thread engine in four runs, alone at
   * 0.99–1.00× (ninth session).
   */
  get sequencesAlone(): boolean {
    return this.steps !== undefined && this.steps.busy && !this.tail && this.steps.active();
  }

  /** Times whole steps went to every job alone on a busy host because that was faster (measurement hook). */
  get stepRestCount(): number {
    return this.steps?.choice.switches ?? 0;
  }

  /**
   * A step (a batch through a model) begins: on a busy host the pool weighs whole steps with and without its
   * workers (see {@link StepJudge}). Cheap: a clock read.
   */
  markStep(): void {
    this.steps?.mark();
  }

  private startChunks(
    name: string, rows: readonly CallTask[], local: (row: CallTask) => void, sync: boolean, account: SplitAccount | undefined, work: number,
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
    this.workers.setHost(this.hostBusy());
    for (const slot of this.workers.slots) this.workers.post(slot, OP.CHUNKS, name, false, this.jobBlock, this.gen);
    let localError: unknown;
    const { slowThread, slowMs = 0, jitterMs = 0, workersFirst = false } = this.hooks;
    if (workersFirst && count > 1) {
      while (Atomics.load(job, JOB.NEXT) === tag && !this.workers.slots.some((s) => s.dead)) sleepMs(0.05);
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
    const weigh = () => account && this.judge!.record(account, 'split', performance.now() - tPublish, work);
    // Spin while the chunks still out keep finishing at about the pace of ours; a worker that makes no
    // progress for twice our mean chunk time was descheduled, and spinning would only keep its core busy.
    const stallMs = Math.min(0.5, Math.max(0.02, ran > 0 ? (2 * (performance.now() - t0)) / ran : 0.05));
    let done = doneCount(job, tag);
    let last = done;
    let since = performance.now();
    while (done < count && !this.workers.lostChunk()) {
      const now = performance.now();
      if (done !== last) {
        last = done;
        since = now;
      } else if (now - since > stallMs) {
        break;
      }
      done = doneCount(job, tag);
    }
    if (done >= count || this.workers.lostChunk()) {
      weigh();
      return this.finishJob(localError, sync);
    }
    if (sync) {
      for (;;) {
        const word = Atomics.load(job, JOB.DONE);
        if ((word & INDEX_MASK) >= count || this.workers.lostChunk()) break;
        Atomics.wait(job, JOB.DONE, word, 10);
      }
      weigh();
      return this.finishJob(localError, true);
    }
    return this.waitChunks(count, tag, localError, weigh);
  }

  private async waitChunks(count: number, tag: number, localError: unknown, weigh: () => void): Promise<void> {
    const job = this.job!;
    this.workers.ref();
    try {
      for (;;) {
        const word = Atomics.load(job, JOB.DONE);
        if ((word & INDEX_MASK) >= count || (word & ~INDEX_MASK) !== tag || this.workers.lostChunk()) break;
        const r = Atomics.waitAsync(job, JOB.DONE, word, 50);
        if (r.async) await r.value;
      }
    } finally {
      this.workers.unref();
    }
    weigh();
    return this.finishJob(localError, false);
  }

  /**
   * Throws (sync) or rejects the first failure of the finished job: a lost chunk, the caller's own error, a
   * worker's error. Every worker's error of this job is cleared either way.
   */
  private finishJob(localError: unknown, sync: boolean): Promise<void> | void {
    let failure: unknown;
    for (const slot of this.workers.slots) failure ??= this.workers.takeLostChunk(slot);
    failure ??= localError;
    for (const slot of this.workers.slots) {
      try {
        this.workers.takeError(slot);
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
    return this.workers.roundTrip(local, this.spinMs);
  }

  /** Test hook: terminates worker i (as if it crashed); resolves with its exit code. */
  terminateWorkerForTest(i: number): Promise<number> {
    return this.workers.terminateForTest(i);
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
    await this.workers.stop();
  }
}
