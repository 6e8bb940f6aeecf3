// Worker of the compute pool (workers/pool.ts). Plain .mjs so that it loads the same under
// `node --import tsx`, `npx tsx` and plain node, with no TypeScript loader in the worker.
//
// It instantiates the posted WebAssembly.Module over the shared memory, then serves its slot of the
// control region: wait for SEQ to change (spin, then Atomics.wait), run OP with ARGS, write STATUS (and an
// error message), publish DONE = SEQ and notify. OP.CHUNKS: claim chunks of the pool's job block until
// none is left (the claim protocol is claimChunk / finishChunk in pool.ts).
import { workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { openSync, readSync } from 'node:fs';

const {
  module, memory, slotByte, slotInts, scratch, workspace, gemmPath, startSeq, spinMs, callNames, F, OP, JOB, HOST_QUIET, slowMs, jitterMs, contendedForTest,
} = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory } });
const k = instance.exports;
k.setScratch(scratch);
// This thread's own GEMM packing buffers (never shared: no false sharing, no locking).
k.setWorkspace(workspace);
k.setGemmPath(gemmPath);
const kernels = callNames.map((name) => k[name]);

// The control region never moves, so views made now stay valid after the memory grows.
const i32 = new Int32Array(memory.buffer, slotByte, slotInts);
const u8 = new Uint8Array(memory.buffer, slotByte, slotInts * 4);
const INDEX_MASK = (1 << JOB.INDEX_BITS) - 1;
let jobBase = -1;
let job;
let jobF32;
const pause = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => {
  if (ms > 0) Atomics.wait(pause, 0, 0, ms);
};

// Spinning for the next task is only free when a core would otherwise idle. On a busy host a spinning worker
// takes CPU from the thread that has the work (the caller, or the other process), and uses up this thread's
// fair share, so the OS deschedules it later in the middle of a chunk. The sign of a busy host is this thread
// or the caller waiting on a run queue while runnable: their run delays (Linux schedstat, ~2 µs a read, so
// read at most every CHECK_MS; they also see delays inside chunks), or elsewhere a gap in the spin loop. One such event alone can be a V8 helper thread (GC, compiler) taking a core for a moment; two within
// EVENT_WINDOW_MS mean the host is oversubscribed, and the worker then does not spin for CONTENDED_MS.
// (The process-wide count of involuntary context switches was used before; it also counts the caller's and
// V8's threads and fired on a quiet host: every task then paid a futex wake-up, 0.9 → 14–19 µs per empty
// dispatch, and 2-thread GEMM scaling fell from 1.9× to 1.0–1.7×.)
const DESCHEDULED_MS = 0.25;
const RUN_DELAY_EVENT_MS = 0.1;
const CONTENDED_MS = 50;
const CHECK_MS = 0.5;
const EVENT_WINDOW_MS = 20;
let contendedUntil = 0;
let lastEvent = -Infinity;

// This thread's and the main thread's schedstat (the caller, unless the engine lives in a worker thread): a
// spinning worker that never waits itself can still be what keeps the caller waiting on its core's run
// queue, so the caller's delays count too.
const schedstats = [openSchedstat('/proc/thread-self/schedstat'), openSchedstat(`/proc/self/task/${process.pid}/schedstat`)];
const schedBytes = new Uint8Array(96);
const runDelays = schedstats.map(readRunDelayMs);
let checkedAt = 0;

function openSchedstat(path) {
  try {
    return openSync(path, 'r');
  } catch {
    return -1;
  }
}

/** A thread's total time waiting on a run queue (ms), or 0 where the kernel does not say. */
function readRunDelayMs(fd) {
  if (fd < 0) return 0;
  const n = readSync(fd, schedBytes, 0, schedBytes.length, 0);
  // "<on-cpu ns> <run-queue wait ns> <timeslices>\n"
  let i = 0;
  while (i < n && schedBytes[i] !== 32) i++;
  let waitNs = 0;
  for (i++; i < n && schedBytes[i] !== 32; i++) waitNs = waitNs * 10 + (schedBytes[i] - 48);
  return waitNs / 1e6;
}

/** Busy-host events since the last look: threads (this one, the caller) that waited on a run queue (looked at most every CHECK_MS). */
function runQueueEvents(now) {
  if (now - checkedAt < CHECK_MS) return 0;
  checkedAt = now;
  let events = 0;
  for (let t = 0; t < schedstats.length; t++) {
    if (schedstats[t] < 0) continue;
    const delay = readRunDelayMs(schedstats[t]);
    if (delay - runDelays[t] > RUN_DELAY_EVENT_MS) events++;
    runDelays[t] = delay;
  }
  return events;
}

/** Records `count` busy-host events at `now`; true (and no spinning for CONTENDED_MS) once they come close together. */
function busyHost(now, count) {
  if (count === 0) return false;
  const busy = count > 1 || now - lastEvent < EVENT_WINDOW_MS;
  lastEvent = now;
  if (busy) {
    contendedUntil = now + CONTENDED_MS;
    Atomics.store(i32, F.CONTENDED, 1);
  }
  return busy;
}

/**
 * Waits until SEQ differs from `seen`: spins (STATE = 1, "hot") up to spinMs on a quiet host, then sleeps
 * (STATE = 0). On a host the caller knows to be quiet (HOST: other processes use no CPU) it spins whatever the
 * run-queue signal says: on 2 cores that signal fired on a quiet host too (V8's helper threads), and a worker
 * asleep at half the posts of a step cost each a futex wake and the worker's wake-up (eighth session).
 */
function waitForTask(seen) {
  Atomics.store(i32, F.STATE, 1);
  const t0 = performance.now();
  const quiet = Atomics.load(i32, F.HOST) === HOST_QUIET;
  busyHost(t0, runQueueEvents(t0));
  const contended = !quiet && t0 < contendedUntil;
  if (!contended && !contendedForTest && i32[F.CONTENDED] !== 0) Atomics.store(i32, F.CONTENDED, 0);
  const budget = contended ? 0 : spinMs;
  let last = t0;
  let now = t0;
  while (now - t0 < budget) {
    for (let j = 0; j < 128; j++) if (Atomics.load(i32, F.SEQ) !== seen) return;
    now = performance.now();
    if (busyHost(now, (now - last > DESCHEDULED_MS ? 1 : 0) + runQueueEvents(now)) && !quiet) break;
    last = now;
  }
  Atomics.store(i32, F.STATE, 0);
  while (Atomics.load(i32, F.SEQ) === seen) Atomics.wait(i32, F.SEQ, seen);
  Atomics.store(i32, F.STATE, 1);
}

function writeError(err) {
  const text = new TextEncoder().encode(String(err && err.stack ? `${err.name}: ${err.message}` : err));
  const max = slotInts * 4 - F.MSG_BYTE;
  const n = Math.min(text.length, max);
  u8.set(text.subarray(0, n), F.MSG_BYTE);
  i32[F.MSG_LEN] = n;
  i32[F.STATUS] = 1;
}

/** Calls the chunk row at word `at` of (ints, floats): [export id, argc, float mask, args…]. */
function callAt(ints, floats, at) {
  const fn = kernels[ints[at]];
  if (typeof fn !== 'function') throw new Error(`no kernel #${ints[at]}`);
  const argc = ints[at + 1];
  const mask = ints[at + 2];
  const args = new Array(argc);
  for (let j = 0; j < argc; j++) args[j] = mask & (1 << j) ? floats[at + 3 + j] : ints[at + 3 + j];
  fn(...args);
}

/** Claims and runs chunks of the job of generation `gen` until none is left (pool.ts claimChunk / finishChunk). */
function runChunks(base, gen) {
  if (base !== jobBase) {
    jobBase = base;
    job = new Int32Array(memory.buffer, base, JOB.ROWS + 256 * JOB.ROW_WORDS);
    jobF32 = new Float32Array(memory.buffer, base, JOB.ROWS + 256 * JOB.ROW_WORDS);
  }
  const tag = gen << JOB.INDEX_BITS;
  for (;;) {
    if (jitterMs > 0) sleep(Math.random() * jitterMs);
    const v = Atomics.load(job, JOB.NEXT);
    if ((v & ~INDEX_MASK) !== tag) return;
    const index = v & INDEX_MASK;
    if (index >= Atomics.load(job, JOB.COUNT)) return;
    // CLAIMED before the claim: a worker that dies while it is set fails the job instead of hanging it.
    Atomics.store(i32, F.CLAIMED, index + 1);
    if (Atomics.compareExchange(job, JOB.NEXT, v, v + 1) !== v) {
      Atomics.store(i32, F.CLAIMED, 0);
      continue;
    }
    sleep(slowMs);
    try {
      callAt(job, jobF32, JOB.ROWS + index * JOB.ROW_WORDS);
    } catch (err) {
      writeError(err);
    }
    Atomics.store(i32, F.CLAIMED, 0);
    i32[F.RAN]++;
    for (;;) {
      const d = Atomics.load(job, JOB.DONE);
      if ((d & ~INDEX_MASK) !== tag) break;
      if (Atomics.compareExchange(job, JOB.DONE, d, d + 1) === d) break;
    }
    Atomics.notify(job, JOB.DONE);
  }
}

if (contendedForTest) Atomics.store(i32, F.CONTENDED, 1);
let seen = startSeq;
for (;;) {
  waitForTask(seen);
  seen = Atomics.load(i32, F.SEQ);
  const op = i32[F.OP];
  if (op === OP.STOP) break;
  if (op === OP.CHUNKS) {
    // Errors are per chunk (STATUS, read by the caller once the job is done); DONE is not waited for.
    runChunks(i32[F.ARGS], i32[F.ARGS + 1]);
    Atomics.store(i32, F.DONE, seen);
    continue;
  }
  i32[F.STATUS] = 0;
  try {
    if (op === OP.NOP) k.nop();
    else throw new Error(`unknown op ${op}`);
  } catch (err) {
    writeError(err);
  }
  Atomics.store(i32, F.DONE, seen);
  Atomics.notify(i32, F.DONE);
}
Atomics.store(i32, F.STATE, 0);
