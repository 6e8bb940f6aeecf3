/**
 * What it costs this host, right now, for one thread to write memory another thread has just read: the step of
 * data-parallel training where the optimizer updates weights that every thread read in the forward pass. Plain
 * JavaScript, no engine: a worker thread reads one float per cache line of a 400 KB buffer (the MLP's first
 * weight matrix), then this thread overwrites the buffer; the reading is that write's time over the time of the
 * same write to a buffer no other thread touched. 1.2–1.9 in most stretches; 4–6 in others, most likely when the
 * host has placed the two vCPUs far apart (the guest cannot see where they run).
 *
 * Why (thirteenth session, docs/PERFORMANCE.md): the quiet MLP b256 2-thread engine's "slow mode" (step 1.5 →
 * 2.4 ms for stretches of seconds, both threads running on their own vCPU the whole time, the pair probe reading
 * ~2) was its Adam update: 85 → 420 µs of the caller's chunks a step, because the forward GEMM had left every
 * weight line in both cores' caches. An engine-free copy of that pattern, this probe, switched between the same
 * two states in one run: 52 µs for 53 s, then 182 µs (a write to an unshared buffer 30 µs throughout).
 *
 * Usage: `const probe = await CoherenceProbe.start(); const ratio = probe.measure(); await probe.close();`
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { median } from './harness.ts';

/** Floats in the probed buffer: 784 × 128, the MLP's first weight matrix. */
const FLOATS = 784 * 128;
/** Control words: 0 go (a counter; −1 stops), 1 the worker's last finished read, 2 rest (1: sleep between readings). */
const GO = 0, READ = 1, REST = 2;
/** Writes timed per reading (the median counts): ~5 ms in all. */
const REPEATS = 15;

// The reader spins while a reading lasts (a woken thread may be placed on the writer's core, where no line would
// need to move), and sleeps before the first reading and between readings.
const READER = `
const { workerData, parentPort } = require('node:worker_threads');
const ctl = new Int32Array(workerData.sab, 0, 16);
const data = new Float32Array(workerData.sab, 64, ${FLOATS});
let seen = 0, sink = 0;
parentPort.postMessage('ready');
for (;;) {
  while (Atomics.load(ctl, ${GO}) === seen) if (Atomics.load(ctl, ${REST}) === 1) Atomics.wait(ctl, ${GO}, seen);
  seen = Atomics.load(ctl, ${GO});
  if (seen < 0) break;
  let s = 0;
  for (let i = 0; i < ${FLOATS}; i += 16) s += data[i];
  sink += s;
  Atomics.store(ctl, ${READ}, seen);
}
`;

export class CoherenceProbe {
  private generation = 0;

  private constructor(
    private readonly worker: Worker,
    private readonly control: Int32Array,
    private readonly shared: Float32Array,
    private readonly unshared: Float32Array,
  ) {}

  /** Starts the reader thread (it sleeps between readings). */
  static async start(): Promise<CoherenceProbe> {
    const sab = new SharedArrayBuffer(64 + 8 * FLOATS);
    // Asleep until the first reading: until the fifteenth session the reader spun from its start to the first
    // reading, beside whatever the bench timed in between (the threads suite's quiet PyTorch column).
    new Int32Array(sab, 0, 16)[REST] = 1;
    const worker = new Worker(READER, { eval: true, workerData: { sab } });
    worker.unref();
    const [message] = await once(worker, 'message') as [unknown];
    if (message !== 'ready') throw new Error(`coherence probe: the reader said ${String(message)}`);
    return new CoherenceProbe(worker, new Int32Array(sab, 0, 16), new Float32Array(sab, 64, FLOATS), new Float32Array(sab, 64 + 4 * FLOATS, FLOATS));
  }

  /** One reading (~5 ms, blocking): writing what the other thread just read, over writing an unshared buffer. */
  measure(): number {
    const sharedMs: number[] = [];
    const unsharedMs: number[] = [];
    Atomics.store(this.control, REST, 0);
    try {
      // Repeat 0 wakes the reader and is not counted.
      for (let r = 0; r <= REPEATS; r++) {
        const gen = ++this.generation;
        Atomics.store(this.control, GO, gen);
        Atomics.notify(this.control, GO);
        const deadline = performance.now() + 5000;
        while (Atomics.load(this.control, READ) !== gen) {
          if (performance.now() > deadline) throw new Error('coherence probe: the reader did not answer in 5 s');
        }
        let t = performance.now();
        this.shared.fill(gen);
        const shared = performance.now() - t;
        t = performance.now();
        this.unshared.fill(gen);
        const unshared = performance.now() - t;
        if (r > 0) {
          sharedMs.push(shared);
          unsharedMs.push(unshared);
        }
      }
    } finally {
      Atomics.store(this.control, REST, 1);
    }
    return median(sharedMs) / median(unsharedMs);
  }

  async close(): Promise<void> {
    Atomics.store(this.control, GO, -1);
    Atomics.notify(this.control, GO);
    await this.worker.terminate();
  }
}
