// Worker of the compute pool (workers/pool.ts). Plain .mjs so that it loads the same under
// `node --import tsx`, `npx tsx` and plain node, with no TypeScript loader in the worker.
//
// It instantiates the posted WebAssembly.Module over the shared memory, then serves its slot of the
// control region: wait for SEQ to change (spin up to spinMs, then Atomics.wait), run OP with ARGS,
// write STATUS (and an error message), publish DONE = SEQ and notify.
import { workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

const { module, memory, slotByte, slotInts, scratch, workspace, gemmPath, startSeq, spinMs, callNames, F, OP } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory } });
const k = instance.exports;
k.setScratch(scratch);
// This thread's own GEMM packing buffers (never shared: no false sharing, no locking).
k.setWorkspace(workspace);
k.setGemmPath(gemmPath);

// The control region never moves, so views made now stay valid after the memory grows.
const i32 = new Int32Array(memory.buffer, slotByte, slotInts);
const f32 = new Float32Array(memory.buffer, slotByte, slotInts);
const u8 = new Uint8Array(memory.buffer, slotByte, slotInts * 4);

/** Waits until SEQ differs from `seen`: spins (STATE = 1, "hot") up to spinMs, then sleeps (STATE = 0). */
function waitForTask(seen) {
  Atomics.store(i32, F.STATE, 1);
  const t0 = performance.now();
  do {
    for (let j = 0; j < 128; j++) if (Atomics.load(i32, F.SEQ) !== seen) return;
  } while (performance.now() - t0 < spinMs);
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

let seen = startSeq;
for (;;) {
  waitForTask(seen);
  seen = Atomics.load(i32, F.SEQ);
  const op = i32[F.OP];
  if (op === OP.STOP) break;
  i32[F.STATUS] = 0;
  try {
    if (op === OP.GEMM) {
      const a = F.ARGS;
      // ARGS[13]: the path of the whole product (pool.ts GemmArgs), so every part computes alike.
      k.gemmWith(i32[a + 13], i32[a], i32[a + 1], i32[a + 2], i32[a + 3], i32[a + 4], f32[a + 5], i32[a + 6],
        i32[a + 7], i32[a + 8], i32[a + 9], f32[a + 10], i32[a + 11], i32[a + 12]);
    } else if (op === OP.CALL) {
      // Generic kernel call (pool.ts writeCall): [id, argc, float mask, args…].
      const a = F.ARGS;
      const fn = k[callNames[i32[a]]];
      if (typeof fn !== 'function') throw new Error(`no kernel #${i32[a]}`);
      const argc = i32[a + 1];
      const mask = i32[a + 2];
      const args = new Array(argc);
      for (let j = 0; j < argc; j++) args[j] = mask & (1 << j) ? f32[a + 3 + j] : i32[a + 3 + j];
      fn(...args);
    } else if (op === OP.NOP) {
      k.nop();
    } else {
      throw new Error(`unknown op ${op}`);
    }
  } catch (err) {
    writeError(err);
  }
  Atomics.store(i32, F.DONE, seen);
  Atomics.notify(i32, F.DONE);
}
Atomics.store(i32, F.STATE, 0);
