/**
 * What two threads that share nothing get from this host right now, with the work the engine does: a 1-thread
 * engine on this thread and another on a worker thread (each its own memory) run the same GEMMs
 * (256×784·784×128, the MLP's first layer, ~1.2 ms each) at once. The reading is the two threads' summed
 * throughput over one thread at full speed: the fastest this thread ran the loop alone in the probe's life (it is
 * timed alone before every reading). About 2 when the host gives two full cores; less when it slows one vCPU or
 * both. (Against the alone time of the same reading, a slowdown of both vCPUs would not show, and one alone
 * loop caught in a slow stretch read up to 2.48×.)
 *
 * Why beside the threads suite's rounds: the host slows one vCPU or both for stretches of a second or more. In
 * one process (eleventh session), after each of 20 CNN training rounds, two such independent GEMM loops read
 * 1.12–2.05× one (median 1.42; the worker's loop at 55–65% of full speed in 11 rounds), while the 2-thread
 * engine's whole step read 1.28–2.19× the 1-thread engine's. The plain-JS two-core probe (host-probe.ts), one
 * dependency chain per thread, read 1.96–2.02 before and after every suite of a bench run whose quiet CNN row
 * read 1.26×; it does not measure what SIMD work on both cores gets. A row slow while this probe reads ~2 is not
 * the host's doing (docs/PERFORMANCE.md, eleventh session: the MLP b256 slow mode).
 *
 * Usage: `const pair = await SimdPairProbe.start(); const ratio = pair.measure(); await pair.close();`
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { makeEngine } from './rxgrad.ts';
import { gemmLoop, PAIR_GEMMS } from './simd-pair-worker.ts';
import type { Engine } from '../src/engine.ts';

/** Signal words: 0 go (a counter; −1 stops), 1 the worker's last time (µs), 2 readings done (a counter). */
const GO = 0, TIME_US = 1, DONE = 2;

export class SimdPairProbe {
  private constructor(
    private readonly engine: Engine,
    private readonly run: (calls: number) => number,
    private readonly worker: Worker,
    private readonly signal: Int32Array,
  ) {}

  /** The fastest loop this thread has run alone (ms): full speed. */
  private fastestAlone = Infinity;

  /** Starts the worker thread (its engine built and warm) and warms this thread's engine. */
  static async start(): Promise<SimdPairProbe> {
    const engine = await makeEngine(1);
    const run = gemmLoop(engine);
    run(PAIR_GEMMS);
    const signal = new Int32Array(new SharedArrayBuffer(16));
    // The bench runs under tsx; the worker registers it to load the TypeScript engine too.
    const entry = new URL('./simd-pair-worker.ts', import.meta.url).href;
    const source = `import('tsx/esm/api')
      .then(({ register }) => { register(); return import(${JSON.stringify(entry)}); })
      .then((m) => m.serve());`;
    const worker = new Worker(source, { eval: true, workerData: signal.buffer });
    worker.unref();
    const [message] = await once(worker, 'message') as [unknown];
    if (message !== 'ready') throw new Error(`simd pair probe: the worker said ${String(message)}`);
    return new SimdPairProbe(engine, run, worker, signal);
  }

  /** One reading (~80 ms, blocking this thread): the two threads' summed GEMM throughput at once over one at full speed. */
  measure(): number {
    const alone = (this.fastestAlone = Math.min(this.fastestAlone, this.run(PAIR_GEMMS)));
    const done = Atomics.load(this.signal, DONE);
    Atomics.add(this.signal, GO, 1);
    Atomics.notify(this.signal, GO);
    const mine = this.run(PAIR_GEMMS);
    // Blocks until the worker's loop ends (it takes about as long as ours): nothing else runs in the bench meanwhile.
    if (Atomics.wait(this.signal, DONE, done, 5000) === 'timed-out') {
      throw new Error('simd pair probe: the worker did not answer in 5 s');
    }
    const theirs = Atomics.load(this.signal, TIME_US) / 1000;
    return alone / mine + alone / theirs;
  }

  async close(): Promise<void> {
    Atomics.store(this.signal, GO, -1);
    Atomics.notify(this.signal, GO);
    await this.worker.terminate();
    await this.engine.close();
  }
}
