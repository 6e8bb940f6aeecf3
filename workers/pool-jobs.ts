/**
 * The chunked-job protocol of the worker pool (workers/pool.ts): the job block's layout, writing chunk rows,
 * and claiming / finishing chunks. pool-worker.mjs runs the same claim algorithm (it gets JOB through
 * workerData).
 */
import type { CallTask } from './pool.ts';

/**
 * Job block layout (i32 words from the block's base, 64-byte aligned): NEXT = generation << 10 | next
 * chunk index (claimed by compare-and-swap, so a thread that wakes after its job ended finds a newer
 * generation and claims nothing), COUNT = chunks in the job, DONE = generation << 10 | chunks finished
 * (on its own cache line), then one row of ROW_WORDS per chunk: [export id, argc, float mask, args…].
 */
export const JOB = { NEXT: 0, COUNT: 1, DONE: 16, ROWS: 32, ROW_WORDS: 32, INDEX_BITS: 10 } as const;
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

/**
 * Claims the next chunk of the job tagged `tag` (generation << INDEX_BITS): its index, or −1 when none is
 * left or the job is no longer current. The same algorithm runs in pool-worker.mjs.
 */
export function claimChunk(job: Int32Array, tag: number): number {
  for (;;) {
    const v = Atomics.load(job, JOB.NEXT);
    if ((v & ~INDEX_MASK) !== tag) return -1;
    const index = v & INDEX_MASK;
    if (index >= Atomics.load(job, JOB.COUNT)) return -1;
    if (Atomics.compareExchange(job, JOB.NEXT, v, v + 1) === v) return index;
  }
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
