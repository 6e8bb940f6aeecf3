/**
 * Soak: hundreds of thousands of online steps on a small model (16-32-4 MLP, batch 16, Adam) fed
 * by a push source (a Subject emitting bursts of batches every event-loop turn) through
 * `trainWithBackpressure` (buffer 16, dropOldest). Measures steps per second and the process RSS,
 * the JS heap (after a full GC) and the engine's shared heap, once after warm-up and once at the
 * end: a leak anywhere on the streaming path (reports, arenas, subscriptions, buffers) shows as
 * growth between the two.
 *
 * Usage:
 *   npx tsx bench/soak.ts --steps 200000
 *   import { soak } from './soak.ts'; const r = await soak({ steps: 200_000 });
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pathToFileURL } from 'node:url';
import { Subject } from 'rxjs';
import { adam, batchFromArrays, createEngine, dense, Random, relu, sequential, softmaxCrossEntropy, type Batch } from '../src/index.ts';
import { streamCounters, trainWithBackpressure } from '../src/streams/sources.ts';

/** What {@link soak} measures. */
export interface SoakResult {
  stepsPerSecond: number;
  rssStartMB: number;
  rssEndMB: number;
  heapStartBytes: number;
  heapEndBytes: number;
  sharedStartBytes: number;
  sharedEndBytes: number;
  /** Trained steps (after warm-up: the rate's denominator is the time they took). */
  steps: number;
  /** Batches the backpressure policy dropped (the source outran the model). */
  dropped: number;
  seconds: number;
}

const IN = 16;
const CLASSES = 4;
const BATCH = 16;
const BURST = 16;

/** A full GC (so the JS heap figure is live data, not garbage not yet collected). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

const snapshot = (sharedBytes: number) => {
  collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss / (1 << 20), heap: m.heapUsed, shared: sharedBytes };
};

/**
 * Runs `steps` online steps (plus a warm-up of 10%, at least 50,000) from a generated push stream
 * through the backpressure path and reports throughput and memory after warm-up and at the end.
 *
 * Usage: `const { stepsPerSecond, rssStartMB, rssEndMB } = await soak({ steps: 200_000 });`
 */
export async function soak(options: { steps: number }): Promise<SoakResult> {
  const { steps } = options;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`soak: steps must be a positive integer, got ${steps}`);
  // Warm-up: measured RSS (after a full GC every 20k steps) rises from 138 to 145 MB over the first
  // ~40k steps while V8 sizes its heaps and compiles, then stays flat to 400k+; the comparison starts after that.
  const warmup = Math.max(50_000, Math.round(steps * 0.1));
  const engine = createEngine({ threads: 1 });
  try {
    const model = sequential([dense(32), relu(), dense(CLASSES)], { inputShape: [IN], seed: 1, engine });
    // A pool of generated batches, cycled: the producer's own allocations are not what we measure.
    const rng = new Random(7);
    const pool: Batch[] = Array.from({ length: 64 }, () => {
      const features = new Float32Array(BATCH * IN).map(() => rng.normal());
      const labels = new Int32Array(BATCH).map((_, r) => (features[r * IN]! > 0 ? 1 : 0) + (features[r * IN + 1]! > 0 ? 2 : 0));
      return batchFromArrays({ features, shape: [IN], labels });
    });
    const source = new Subject<Batch>();
    const counters = streamCounters();
    let trained = 0;
    let start: ReturnType<typeof snapshot> | null = null;
    let startedAt = 0;
    let droppedAtStart = 0;
    const total = warmup + steps;
    const finished = new Promise<void>((resolve, reject) => {
      const subscription = source.pipe(trainWithBackpressure(model, { loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) }, { buffer: 16, onOverflow: 'dropOldest' }, { counters })).subscribe({
        next: () => {
          trained++;
          // A full GC every 20k steps keeps RSS samples at the same collector phase: without it V8 lets up to
          // ~40 MB of old-space garbage build up between major GCs, and a sample lands anywhere in that sawtooth.
          // Garbage only: anything still referenced (a leak) survives the collection and shows.
          if (trained % 20_000 === 0) collectGarbage();
          if (trained === warmup) {
            start = snapshot(engine.heap.allocatedBytes);
            droppedAtStart = counters.dropped;
            startedAt = performance.now();
          }
          if (trained === total) {
            subscription.unsubscribe();
            resolve();
          }
        },
        error: reject,
      });
    });
    // The producer: a burst of batches every event-loop turn, whether or not the model keeps up.
    let cursor = 0;
    let producing = true;
    const produce = (): void => {
      if (!producing) return;
      for (let i = 0; i < BURST; i++) source.next(pool[cursor++ % pool.length]!);
      setImmediate(produce);
    };
    setImmediate(produce);
    await finished;
    producing = false;
    const seconds = (performance.now() - startedAt) / 1000;
    const end = snapshot(engine.heap.allocatedBytes);
    model.dispose();
    const s = start as ReturnType<typeof snapshot> | null;
    return {
      stepsPerSecond: steps / seconds,
      rssStartMB: s!.rss, rssEndMB: end.rss,
      heapStartBytes: s!.heap, heapEndBytes: end.heap,
      sharedStartBytes: s!.shared, sharedEndBytes: end.shared,
      steps, dropped: counters.dropped - droppedAtStart, seconds,
    };
  } finally {
    await engine.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const at = process.argv.indexOf('--steps');
  const steps = at >= 0 ? Number(process.argv[at + 1]) : 200_000;
  const r = await soak({ steps });
  const mb = (bytes: number) => (bytes / (1 << 20)).toFixed(2);
  console.log(`soak: ${r.steps} steps in ${r.seconds.toFixed(1)} s = ${r.stepsPerSecond.toFixed(0)} steps/s (${r.dropped} batches dropped by backpressure)`);
  console.log(`  RSS        ${r.rssStartMB.toFixed(1)} → ${r.rssEndMB.toFixed(1)} MB`);
  console.log(`  JS heap    ${mb(r.heapStartBytes)} → ${mb(r.heapEndBytes)} MB`);
  console.log(`  shared heap ${mb(r.sharedStartBytes)} → ${mb(r.sharedEndBytes)} MB (${r.sharedStartBytes} → ${r.sharedEndBytes} bytes)`);
  console.log(JSON.stringify(r));
}
