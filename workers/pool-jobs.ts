/**
 * The chunked-job protocol of the worker pool (workers/pool.ts): the job block's layout, writing chunk rows,
 * and claiming / finishing chunks. pool-worker.mjs runs the same claim algorithm (it gets JOB through
 * workerData).
 */
import type { CallTask } from './pool.ts';

/**
 * Job block layout (i32 words from the block's base, 64-byte aligned): COUNT = chunks in the job, THREADS =
 * threads that claim them (the caller and every worker), DONE = generation << 10 | chunks finished (on its
 * own cache line), then one HOME line per thread: [generation << 10 | next chunk index, end, start], then one
 * row of ROW_WORDS per chunk: [export id, argc, float mask, args…].
 *
 * Thread t's home chunks are [start, end) of HOME t, about a 1 / THREADS share in chunk order (the caller the
 * first): it claims those first, by compare-and-swap on its own line, then the rest of the others' (stealing).
 * A split kernel cut the same way step after step then runs the same rows on the same thread, and so do the
 * kernels after it that touch the same memory in the same order (a weight gradient's rows, then the optimizer's
 * update of those weights): the cache lines stay on one core instead of crossing to the other at every step,
 * which on this host's far-vCPU stretches costs 4–6× a local access (docs/PERFORMANCE.md, sixteenth session).
 * The generation tag means a thread that wakes after its job ended finds a newer one and claims nothing.
 */
export const JOB = { COUNT: 0, THREADS: 1, DONE: 16, HOME: 32, HOME_WORDS: 16, HOMES: 16, ROWS: 32 + 16 * 16, ROW_WORDS: 32, INDEX_BITS: 10 } as const;
/** Most chunks in one job. */
export const MAX_CHUNKS = 256;
/** Bytes of a pool's job block. */
export const JOB_BYTES = 4 * (JOB.ROWS + MAX_CHUNKS * JOB.ROW_WORDS);
export const GEN_MASK = (1 << (32 - JOB.INDEX_BITS)) - 1;
export const INDEX_MASK = (1 << JOB.INDEX_BITS) - 1;
/** Sleeps the calling thread (a worker, or Node's main thread, where Atomics.wait is allowed). */
export function sleepMs(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Writes one chunk row (see {@link JOB}) at word `at` of the job block. */
export function writeRow(job: Int32Array, jobF32: Float32Array, at: number, task: CallTask, callNames: readonly string[]): void {
  const { kernel, args } = task;
  if (!Number.isInteger(kernel) || kernel < 0 || kernel >= callNames.length) {
    throw new RangeError(`rxgrad pool: no callable kernel #${kernel} (the pool knows ${callNames.length})`);
  }
  if (args.length > JOB.ROW_WORDS - 3) throw new RangeError(`rxgrad pool: ${callNames[kernel]} takes ${args.length} arguments, at most ${JOB.ROW_WORDS - 3} fit a chunk row`);
  const mask = task.floatMask ?? 0;
  job[at] = kernel;
  job[at + 1] = args.length;
  job[at + 2] = mask;
  for (let j = 0; j < args.length; j++) {
    if (mask & (1 << j)) jobF32[at + 3 + j] = args[j]!;
    else job[at + 3 + j] = args[j]!;
  }
}

/** Word of thread t's HOME line: [tag | next, end, start]. */
function home(thread: number): number {
  return JOB.HOME + thread * JOB.HOME_WORDS;
}

/**
 * Thread t's share of `count` chunks: [starts[t], starts[t + 1]) (the last to `count`); default about 1 / threads
 * of them each, in chunk order. Usage: `shareBounds(8, 2) // [[0, 4], [4, 8]]`
 */
export function shareBounds(count: number, threads: number, starts?: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (let t = 0; t < threads; t++) {
    const s = starts ? Math.min(count, starts[t] ?? count) : Math.floor((t * count) / threads);
    const e = starts ? Math.min(count, starts[t + 1] ?? count) : Math.floor(((t + 1) * count) / threads);
    out.push([s, Math.max(s, e)]);
  }
  return out;
}

/**
 * Opens the job tagged `tag` of `count` chunks with one share per thread (see {@link shareBounds}): first every
 * HOME is closed (this tag, an index past any end), so that a thread still claiming from the previous job,
 * between its read and its compare-and-swap, cannot claim chunks of this one under the old tag (it did, rarely,
 * before the tag: the chunk ran twice, once untracked); `write()` then writes the rows; last each HOME opens at
 * its start, which publishes the rows, COUNT and the ends to whoever reads it.
 */
export function openJob(job: Int32Array, tag: number, shares: readonly [number, number][], write: () => void, beforePublish?: () => void): void {
  for (let t = 0; t < shares.length; t++) Atomics.store(job, home(t), tag | INDEX_MASK);
  write();
  Atomics.store(job, JOB.COUNT, shares.length ? shares[shares.length - 1]![1] : 0);
  Atomics.store(job, JOB.THREADS, shares.length);
  Atomics.store(job, JOB.DONE, tag);
  shares.forEach(([s, e], t) => {
    Atomics.store(job, home(t) + 1, e);
    Atomics.store(job, home(t) + 2, s);
  });
  beforePublish?.();
  shares.forEach(([s], t) => Atomics.store(job, home(t), tag | s));
}

/**
 * Claims the next chunk of the job tagged `tag` (generation << INDEX_BITS) for thread `thread` (0 the caller):
 * from its own HOME first, then from the others' in turn. Its index, or −1 when none is left or the job is no
 * longer current. The same algorithm runs in pool-worker.mjs.
 */
export function claimChunk(job: Int32Array, tag: number, thread: number): number {
  const threads = Atomics.load(job, JOB.THREADS);
  for (let i = 0; i < threads; i++) {
    const at = home((thread + i) % threads);
    for (;;) {
      const v = Atomics.load(job, at);
      if ((v & ~INDEX_MASK) !== tag) return -1;
      const index = v & INDEX_MASK;
      if (index >= Atomics.load(job, at + 1)) break;
      if (Atomics.compareExchange(job, at, v, v + 1) === v) return index;
    }
  }
  return -1;
}

/** Chunks of the job tagged `tag` claimed so far, Infinity once it is no longer current (test hook `workersFirst`). */
export function claimedCount(job: Int32Array, tag: number): number {
  const threads = Atomics.load(job, JOB.THREADS);
  let claimed = 0;
  for (let t = 0; t < threads; t++) {
    const v = Atomics.load(job, home(t));
    if ((v & ~INDEX_MASK) !== tag) return Infinity;
    claimed += Math.max(0, (v & INDEX_MASK) - Atomics.load(job, home(t) + 2));
  }
  return claimed;
}

/** Counts one finished chunk of the job tagged `tag` (nothing if a newer job replaced it) and wakes a sleeping caller. */
export function finishChunk(job: Int32Array, tag: number): void {
  for (;;) {
    const v = Atomics.load(job, JOB.DONE);
    if ((v & ~INDEX_MASK) !== tag) return;
    if (Atomics.compareExchange(job, JOB.DONE, v, v + 1) === v) break;
  }
  Atomics.notify(job, JOB.DONE);
}

export function doneCount(job: Int32Array, tag: number): number {
  const v = Atomics.load(job, JOB.DONE);
  return (v & ~INDEX_MASK) === tag ? v & INDEX_MASK : Infinity;
}
