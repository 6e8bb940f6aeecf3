/**
 * Whole training steps on 1 and 2 threads, on a quiet host and with one core kept busy by another process.
 *
 * For each model (MLP 784-128-10 at batch 64 and 256, the example CNN at batch 64, LSTM 128 over 28 rows
 * at batch 64; Adam 1e-3, softmax cross-entropy, the embedded MNIST digits) one engine with 1 thread and
 * one with 2 threads train their own copy of the model on the same pre-made batches (three passes a round;
 * first 2 s of training each, untimed), in alternating rounds (median per engine), first quiet, then while
 * a busy-loop child process (`node -e 'for(;;){}'`, started and stopped here, killed on failure too) keeps
 * one core busy. Rows per model and condition: examples/s
 * with 2 threads, with 1 thread, their ratio (the whole step's 2-vs-1 speed-up: the median of the rounds'
 * ratios, each round's two engines having run back to back), the machine's ceiling for
 * that ratio under the same load: two 1-thread child processes at once against one (bench/ceiling.ts), and what two
 * threads sharing nothing got from the host during the rounds: a GEMM loop on each, measured after every round
 * (bench/simd-pair.ts), and what a write to memory the other thread has just read cost then (bench/coherence-probe.ts).
 * A quiet model's rounds count only when those readings say the host gave two cores close together before and
 * after the round (with one core busy: when the coherence probe says the two vCPUs were close); rounds go on until
 * seven counted (at most 21), and every round is logged (bench/clean-host.ts).
 *
 * Also the MLP's inference at batch 256 through `model.predict()`, next to its two GEMMs alone on the same
 * engine (what the kernels allow), so the share of the rest is visible.
 *
 * Usage: `const rows = await threadsBench({ quick: true });` or `npx tsx bench/threads.ts [--quick] [--only mlp] [--condition quiet|busy]`
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { from, lastValueFrom } from 'rxjs';
import { count } from 'rxjs/operators';
import type { Engine } from '../src/engine.ts';
import type { Batch } from '../src/batch.ts';
import { median, repeatFor, rxgradRow as row, timeIt, WARM_UP_MS, type Row } from './harness.ts';
import { loadRxgrad, makeEngine, type Rxgrad } from './rxgrad.ts';
import { torchRates, type TorchRates } from './torch.ts';
import { SUBJECTS, makeBatches, trainRound, type Subject } from './train-subjects.ts';
import { separateProcessCeiling } from './ceiling.ts';
import { BusyCore } from './busy-core.ts';
import { awaitCleanHost, CLEAN_WAIT_MS, closeHostProbes, isCleanBusy, isCleanQuiet, readHost, startHostProbes, type HostProbes, type HostReading } from './clean-host.ts';

const log = (message: string) => process.stderr.write(`${message}\n`);

/**
 * The main thread's time waiting on a run queue while runnable (ms, Linux schedstat), or NaN where the kernel does
 * not say. On a busy host it shows where a 2-thread engine's time goes: not in its kernels but in the main
 * thread waiting for a core (docs/PERFORMANCE.md, seventh session).
 */
function mainRunQueueWaitMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return NaN;
  }
}

/**
 * One engine's training examples/s (median of alternating rounds), its seconds per round (round r of every
 * engine ran back to back), and the share of its timed rounds the main thread waited on a run queue.
 */
interface TrainRate {
  rate: number;
  seconds: number[];
  runQueueShare: number;
  /** The workers' share of the split jobs' chunks over the timed rounds (NaN without a pool). */
  workerChunkShare: number;
}

/** The measurement hooks of an engine's worker pool (workers/pool.ts), or undefined for a 1-thread engine. */
function poolOf(engine: Engine): { restCount: number; stepRestCount: number; chunkCounts(): number[] } | undefined {
  return (engine.compute as { pool?: { restCount: number; stepRestCount: number; chunkCounts(): number[] } }).pool;
}

/** Chunks run so far by the caller and by each worker of `engine`'s pool, or [] without one. */
const chunkCounts = (engine: Engine): number[] => poolOf(engine)?.chunkCounts() ?? [];

/**
 * `engine`'s rate over `baseline`'s per round (the 2-vs-1 ratio; its median is the row's figure): the two engines
 * of a round ran back to back, so a slowdown of the host lasting seconds (other tenants of the hypervisor: the same
 * thread's GEMM took 1.2 then 1.9–2.2 ms for a few seconds, eighth session) hits both sides of a round's ratio
 * instead of landing on one engine's median.
 */
function roundRatios(engine: TrainRate, baseline: TrainRate): number[] {
  return engine.seconds.map((s, r) => baseline.seconds[r]! / s);
}

/**
 * Per engine: its {@link TrainRate} over the counted rounds; after each round, the host's readings (what two threads
 * that share nothing got then, and what a write to memory the other thread had just read cost); which rounds
 * counted, and a one-line log of every round.
 */
async function trainRates(
  rx: Rxgrad, subject: Subject, batches: Batch[], engines: Engine[], rounds: number, passes: number, warmUpMs: number, probes: HostProbes,
  isClean: (r: HostReading) => boolean,
): Promise<{ rates: TrainRate[]; pairs: number[]; coherences: number[]; counted: boolean[]; clean: number; roundLog: string }> {
  const models = engines.map((engine) => subject.build(rx, engine));
  try {
    const fits = models.map((model) => trainRound(rx, model, batches, passes));
    // Warm-up (optimizer slots, arenas, JIT, the pool's workers): warmUpMs of training per engine (WARM_UP_MS).
    for (const fit of fits) await repeatFor(warmUpMs, fit);
    const seconds: number[][] = engines.map(() => []);
    const waited = engines.map(() => 0);
    const chunksBefore = engines.map(chunkCounts);
    const pairs: number[] = [];
    const coherences: number[] = [];
    // A round counts when the host read clean (`isClean`) before and after it (the previous round's reading is this
    // one's before: bench/clean-host.ts), and rounds go on until `rounds` counted, at most MAX_ROUNDS_FACTOR times as
    // many; before a round on a contaminated host it waits for a clean reading (at most CLEAN_WAIT_MS per row in all).
    const counted: boolean[] = [];
    let before = readHost(probes);
    let waitedMs = 0;
    for (let r = 0; counted.filter(Boolean).length < rounds && r < MAX_ROUNDS_FACTOR * rounds; r++) {
      if (!isClean(before) && waitedMs < CLEAN_WAIT_MS) {
        // A contaminated host: wait (within one budget per row) for a clean reading before the round.
        const waited = await awaitCleanHost(probes, CLEAN_WAIT_MS - waitedMs, isClean);
        before = waited.reading;
        waitedMs += waited.waitedMs;
      }
      // Alternate which engine goes first, so a drift in the load hits both alike.
      const order = r % 2 ? [...fits.keys()].reverse() : [...fits.keys()];
      for (const i of order) {
        const w0 = mainRunQueueWaitMs();
        const t0 = performance.now();
        await fits[i]!();
        seconds[i]!.push((performance.now() - t0) / 1000);
        waited[i]! += mainRunQueueWaitMs() - w0;
      }
      const after = readHost(probes);
      pairs.push(after.pair);
      coherences.push(after.coherence);
      counted.push(isClean(before) && isClean(after));
      before = after;
    }
    // Every round: the 2-vs-1 ratio (first engine over the last), the host's readings after it, * when not counted.
    const roundLog = counted.map((c, r) => `${(seconds.at(-1)![r]! / seconds[0]![r]!).toFixed(2)}/${pairs[r]!.toFixed(2)}/${coherences[r]!.toFixed(1)}${c ? '' : '*'}`).join(' ');
    // A host never clean for MIN_COUNTED rounds: every round counts (the log says so).
    const clean = counted.filter(Boolean).length;
    if (clean < MIN_COUNTED) counted.fill(true);
    const rates = seconds.map((all, i) => {
      // Counted rounds only (every round when the host was never clean).
      const s = all.filter((_, r) => counted[r]);
      const ran = chunkCounts(engines[i]!).map((n, t) => n - (chunksBefore[i]![t] ?? 0));
      const total = ran.reduce((a, b) => a + b, 0);
      return {
        rate: (passes * batches.length * subject.batch) / median(s),
        seconds: s,
        runQueueShare: waited[i]! / (1000 * all.reduce((a, b) => a + b, 0)),
        workerChunkShare: total > 0 ? (total - ran[0]!) / total : NaN,
      };
    });
    if (waitedMs > 1000) log(`    waited ${(waitedMs / 1000).toFixed(1)} s in all for the host to read clean before rounds`);
    return { rates, pairs, coherences, counted, clean, roundLog };
  } finally {
    for (const model of models) model.dispose();
  }
}

/** Rounds run until the wanted number counted, at most this many times that number (bench/clean-host.ts). */
const MAX_ROUNDS_FACTOR = 3;
/** Fewest counted rounds a row is reported on; with fewer, every round counts. */
const MIN_COUNTED = 3;

const loadNote = () => `load average ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} cores`;

/** MLP inference at batch 256: predict() against its two GEMMs alone, on a 2-thread engine. */
async function inferenceRows(rx: Rxgrad, quick: boolean): Promise<Row[]> {
  const engine = await makeEngine(2);
  try {
    const subject = SUBJECTS[1]!;
    const batches = makeBatches(rx, subject, quick ? 20 : 60);
    const model = subject.build(rx, engine);
    const timing = { minSampleMs: 100, samples: quick ? 5 : 9, maxTotalMs: quick ? 2000 : 5000 };
    const predict = await timeIt(() => lastValueFrom(from(batches).pipe(model.predict(), count())), timing);
    const predictRate = (batches.length * 256) / (predict.ms / 1000);
    // The same two products on the same engine (weights and inputs in the heap): the kernels' floor.
    const { heap, compute } = engine;
    const x = heap.alloc(256 * 784 * 4), w1 = heap.alloc(784 * 128 * 4), h = heap.alloc(256 * 128 * 4);
    const w2 = heap.alloc(128 * 10 * 4), y = heap.alloc(256 * 10 * 4);
    heap.f32.fill(0.5, x >> 2, (x >> 2) + 256 * 784);
    heap.f32.fill(0.01, w1 >> 2, (w1 >> 2) + 784 * 128);
    heap.f32.fill(0.01, w2 >> 2, (w2 >> 2) + 1280);
    const gemms = await timeIt(async () => {
      await compute.gemm(0, 0, 256, 128, 784, 1, x, 784, w1, 128, 0, h, 128);
      await compute.gemm(0, 0, 256, 10, 128, 1, h, 128, w2, 10, 0, y, 10);
    }, timing);
    for (const p of [x, w1, h, w2, y]) heap.free(p);
    model.dispose();
    const gemmRate = 256 / (gemms.ms / 1000);
    log(`  mlp inference b256: predict ${Math.round(predictRate)} ex/s, GEMMs alone ${Math.round(gemmRate)} ex/s (${loadNote()})`);
    return [
      row('mlp 784-128-10 inference b256 through predict (2 threads)', 'examples/s', predictRate),
      row('mlp 784-128-10 inference b256, its two GEMMs alone (2 threads)', 'examples/s', gemmRate),
      row('mlp 784-128-10 inference b256, predict vs GEMMs alone', '×', predictRate / gemmRate),
    ];
  } finally {
    await engine.close();
  }
}

/**
 * The suite: training rows per model (quiet and one core busy; 2 threads, 1 thread, ratio) and the MLP
 * inference rows. `only` filters models by substring.
 *
 * Usage: `rows.push(...await threadsBench({ quick: ctx.quick }));`
 */
export async function threadsBench(options: { quick: boolean; only?: string; condition?: 'quiet' | 'one core busy' }): Promise<Row[]> {
  const rx = await loadRxgrad();
  const rows: Row[] = [];
  const subjects = SUBJECTS.filter((s) => !options.only || s.name.includes(options.only));
  const rounds = options.quick ? 3 : 7;
  // Each round goes through its batches this many times (0.3–0.9 s a round): long enough that a pool's judgement
  // of a busy host is measured in its steady state, as in a real training run, not mostly its first decisions.
  const passes = options.quick ? 1 : 3;
  const busy = new BusyCore();
  const probes = await startHostProbes();
  try {
    for (const condition of (['quiet', 'one core busy'] as const).filter((c) => !options.condition || c === options.condition)) {
      try {
        if (condition === 'one core busy') await busy.start();
        const torch = await torchRates(options.quick, log);
        for (const subject of subjects) {
          const steps = options.quick ? Math.ceil(subject.steps / 2) : subject.steps;
          const batches = makeBatches(rx, subject, steps);
          const engines = [await makeEngine(2), await makeEngine(1)];
          try {
            // Quiet rows count only the rounds the host gave two threads two cores close together; with one core busy,
            // the rounds the host kept the two vCPUs close (the load itself is the point: bench/clean-host.ts).
            const { rates, pairs, coherences, counted, clean, roundLog } = await trainRates(
              rx, subject, batches, engines, rounds, passes, options.quick ? 300 : WARM_UP_MS, probes, condition === 'quiet' ? isCleanQuiet : isCleanBusy);
            const [twoThreads, oneThread] = rates as [TrainRate, TrainRate];
            const two = twoThreads.rate, one = oneThread.rate;
            const perRound = roundRatios(twoThreads, oneThread);
            const ratio = median(perRound);
            const note = loadNote();
            // How often the 2-thread pool found running a kind of job, or whole steps, on the caller alone faster than with its workers.
            const pool = poolOf(engines[0]!);
            const rests = `${pool?.restCount ?? 0} (jobs), ${pool?.stepRestCount ?? 0} (steps)`;
            const waits = `main thread waited on a run queue ${(100 * twoThreads.runQueueShare).toFixed(0)}% / ${(100 * oneThread.runQueueShare).toFixed(0)}% of the time`;
            // The rounds' spread, and who ran the split chunks: a slow round with the chunks shared evenly and the main
            // thread never waiting for a core is both threads running slower, not the pool sharing work badly; the
            // pair probe below tells whether the host was the cause then (docs/PERFORMANCE.md, eleventh session).
            const spread = `rounds ${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}×` + (clean < MIN_COUNTED
              ? `, the host clean around only ${clean} of ${counted.length} rounds: all counted`
              : `, ${clean} of ${counted.length} rounds counted (the host clean before and after)`);
            const shared = `workers ran ${(100 * twoThreads.workerChunkShare).toFixed(0)}% of the chunks`;
            log(`  ${subject.name} ${condition}: 2 threads ${Math.round(two)} ex/s, 1 thread ${Math.round(one)} ex/s, ${ratio.toFixed(2)}× (median of the rounds' ratios, ${spread}; ratio of the medians ${(two / one).toFixed(2)}×; ${note}; pool rests ${rests}; ${waits}; ${shared})`);
            log(`    rounds (2-vs-1 / pair probe / coherence probe after it; * not counted): ${roundLog}`);
            const pairRatio = median(pairs);
            log(`    two threads sharing nothing, a GEMM loop each after every round: ${pairRatio.toFixed(2)}× one (${Math.min(...pairs).toFixed(2)}–${Math.max(...pairs).toFixed(2)}×)`);
            const coherence = median(coherences);
            log(`    a write to 400 KB the other thread just read, after every round: ${coherence.toFixed(1)}× an unshared one (${Math.min(...coherences).toFixed(1)}–${Math.max(...coherences).toFixed(1)}×)`);
            // What two processes sharing nothing but the machine reach under the same load: no 2-thread engine can beat it.
            const ceiling = await separateProcessCeiling(subject.name, steps, passes, options.quick ? 1500 : 3000);
            log(`    ceiling: one 1-thread process ${Math.round(ceiling.solo)} ex/s, two at once ${Math.round(ceiling.pair)} ex/s, ${ceiling.ratio.toFixed(2)}×;` +
              ` the whole step's 2-vs-1 is ${(100 * ratio / ceiling.ratio).toFixed(0)}% of it (${loadNote()})`);
            const pt = torch?.[torchKey(subject.name)] ?? null;
            const prefix = `train ${subject.name}, ${condition}`;
            rows.push(
              row(`${prefix}, 2 threads`, 'examples/s', two, pt?.two ?? null),
              row(`${prefix}, 1 thread`, 'examples/s', one, pt?.one ?? null),
              row(`${prefix}, whole step 2-vs-1 threads`, '×', ratio, pt && pt.one ? pt.two / pt.one : null),
              row(`${prefix}, ceiling: two 1-thread processes at once vs one`, '×', ceiling.ratio),
              row(`${prefix}, two threads sharing nothing (GEMM loops) vs one, during the rounds`, '×', pairRatio),
              row(`${prefix}, a write to what the other thread just read vs an unshared one, during the rounds`, '×', coherence),
            );
          } finally {
            for (const engine of engines) await engine.close();
          }
        }
      } finally {
        await busy.stop();
      }
    }
  } finally {
    await closeHostProbes(probes);
  }
  if (!options.only || 'mlp 784-128-10 b256'.includes(options.only)) rows.push(...await inferenceRows(rx, options.quick));
  return rows;
}

function torchKey(name: string): keyof TorchRates {
  if (name.startsWith('mlp') && name.endsWith('b64')) return 'mlp64';
  if (name.startsWith('mlp')) return 'mlp256';
  if (name.startsWith('cnn')) return 'cnn64';
  return 'lstm64';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (flag: string) => (process.argv.includes(flag) ? process.argv[process.argv.indexOf(flag) + 1] : undefined);
  const only = arg('--only');
  const condition = arg('--condition');
  if (condition !== undefined && condition !== 'quiet' && condition !== 'busy') throw new Error(`--condition must be quiet or busy, got ${condition}`);
  const rows = await threadsBench({
    quick: process.argv.includes('--quick'), ...(only ? { only } : {}),
    ...(condition ? { condition: condition === 'quiet' ? 'quiet' as const : 'one core busy' as const } : {}),
  });
  console.table(rows.map((r) => ({ benchmark: r.benchmark, unit: r.unit, rxgrad: r.rxgrad && Number(r.rxgrad.toPrecision(4)), pytorch: r.pytorch })));
}
