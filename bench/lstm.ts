/**
 * LSTM training throughput on the Fashion-MNIST rows task: each image as 28 steps of 28 pixels into an
 * LSTM of 128 units, its last state into dense 10 (softmax cross-entropy, Adam 1e-3, batch 64).
 * rxgrad (`lstm` + `dense`) against TF.js `tf.layers.lstm` + `tf.layers.dense` on the `cpu` and `wasm`
 * backends. Every library trains on the same pre-made batches (one fixed shuffle, built before the
 * clock starts) in the same order, after the same untimed warm-up batches (JIT, optimizer slots,
 * first-touch memory), repeated for WARM_UP_MS (a 2-thread engine's first seconds are slower,
 * bench/harness.ts), so the timed region is the training loop in its steady state.
 *
 * TF.js is far slower here, so each library runs until it has trained `batches` batches or spent
 * `budgetSeconds`, whichever comes first (at least `minBatches`), and reports examples per second: the
 * median of its 25-batch segments (the whole run's rate when it has fewer than 3), both logged. rxgrad's timed
 * run is measured again (at most three times) while the host gives less than two cores close together (bench/clean-host.ts).
 *
 * Usage: `const rows = await lstmBench({ quick: true });` or standalone `npx tsx bench/lstm.ts [--quick]`
 */
import { pathToFileURL } from 'node:url';
import { from, lastValueFrom } from 'rxjs';
import { count, tap } from 'rxjs/operators';
import type { Dataset } from '../src/data/dataset.ts';
import { loadEmbeddedMnist } from '../src/data/mnist.ts';
import { FASHION_MNIST_DIR, loadFashionMnist } from '../src/data/idx.ts';
import { fillRandom, repeatFor, segmentedThroughput, WARM_UP_MS, type Throughput } from './harness.ts';
import { closeRxgradEngines, loadRxgrad } from './rxgrad.ts';
import { closeHostProbes, onCleanHost, startHostProbes } from './clean-host.ts';
import { tf, useBackend } from './tfjs.ts';

const STEPS = 28;
const FEATURES = 28;
const UNITS = 128;
const CLASSES = 10;
const BATCH = 64;
const LEARNING_RATE = 1e-3;
/** Untimed batches before the clock starts, for every library. */
const WARMUP_BATCHES = 3;

/** One result row, as bench/harness.ts's `Row`. */
export interface LstmBenchRow {
  benchmark: string;
  unit: string;
  rxgrad: number | null;
  tfjsWasm: number | null;
  tfjsCpu: number | null;
}

interface Budget {
  /** Timed batches wanted. */
  batches: number;
  /** Stop earlier once this much time is spent (after `minBatches`). */
  budgetSeconds: number;
  minBatches: number;
  /** The untimed warm-up: its WARMUP_BATCHES batches, again and again for at least this long (ms). */
  warmUpMs: number;
}

interface HostBatch {
  x: Float32Array;
  labels: Int32Array;
  oneHot: Float32Array;
}

const log = (message: string) => process.stderr.write(`${message}\n`);

function loadData(): { train: Dataset; label: string } {
  try {
    return { train: loadFashionMnist().train, label: 'fashion-mnist' };
  } catch (error) {
    log(`  ! Fashion-MNIST unavailable in ${FASHION_MNIST_DIR} (${(error as Error).message}); using embedded MNIST`);
    return { train: loadEmbeddedMnist().train, label: 'mnist-embedded (fashion-mnist not installed)' };
  }
}

/** `count` batches of 64 rows in a fixed shuffled order (Fisher–Yates over fillRandom's stream). */
function hostBatches(train: Dataset, n: number): HostBatch[] {
  const order = Uint32Array.from({ length: train.length }, (_, i) => i);
  const r = fillRandom(new Float32Array(train.length), 4242);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(((r[i]! + 1) / 2) * (i + 1)));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const width = STEPS * FEATURES;
  const batches: HostBatch[] = [];
  for (let k = 0; k < n; k++) {
    const x = new Float32Array(BATCH * width);
    const labels = new Int32Array(BATCH);
    const oneHot = new Float32Array(BATCH * CLASSES);
    for (let i = 0; i < BATCH; i++) {
      const row = order[(k * BATCH + i) % order.length]!;
      x.set(train.features.subarray(row * width, (row + 1) * width), i * width);
      labels[i] = train.labels[row]!;
      oneHot[i * CLASSES + labels[i]!] = 1;
    }
    batches.push({ x, labels, oneHot });
  }
  return batches;
}

/**
 * Timed batches per segment: the reported rate is the median segment's, so that a few seconds of foreign
 * load on this shared machine (another process, a GC of the runner) move it less than a whole-run mean.
 */
const SEGMENT_BATCHES = 25;

const throughputOf = (t0: number, ends: readonly number[]): Throughput => segmentedThroughput(t0, ends, BATCH, SEGMENT_BATCHES);

/** Runs `trainOne(i)` for warm-up batches, then timed batches within the budget. */
async function measure(budget: Budget, trainOne: (b: number) => Promise<void>): Promise<Throughput> {
  await repeatFor(budget.warmUpMs, async () => {
    for (let i = 0; i < WARMUP_BATCHES; i++) await trainOne(i);
  });
  const t0 = performance.now();
  const ends: number[] = [];
  while (ends.length < budget.batches && (ends.length < budget.minBatches || performance.now() - t0 < budget.budgetSeconds * 1000)) {
    await trainOne(WARMUP_BATCHES + ends.length);
    ends.push(performance.now());
  }
  return throughputOf(t0, ends);
}

async function trainRxgrad(batches: HostBatch[], budget: Budget): Promise<Throughput> {
  const { sequential, lstm, dense, adam, softmaxCrossEntropy, batchFromArrays } = await loadRxgrad();
  const model = sequential([lstm({ units: UNITS }), dense(CLASSES)], { inputShape: [STEPS, FEATURES], seed: 1 });
  const arrow = batches.map((b) => batchFromArrays({ features: b.x, shape: [STEPS, FEATURES], labels: b.labels }));
  // The warm-up batches in a fit of their own, then the timed batches in one fit, as a user trains (and as the
  // MLP and CNN rows time it); each step's end is stamped as the fit emits it. rxgrad's batches take seconds, so
  // the time budget never cuts it short. (Until the seventh session this was one fit per batch, which added a
  // fit's setup to every step.) The one optimizer object carries Adam's moments across both fits.
  const optimizer = adam({ learningRate: LEARNING_RATE });
  const loss = softmaxCrossEntropy();
  try {
    await repeatFor(budget.warmUpMs, () => lastValueFrom(from(arrow.slice(0, WARMUP_BATCHES)).pipe(model.fit({ loss, optimizer }), count())));
    const timed = arrow.slice(WARMUP_BATCHES, WARMUP_BATCHES + budget.batches);
    const timedRun = async () => {
      const ends: number[] = [];
      const t0 = performance.now();
      await lastValueFrom(from(timed).pipe(model.fit({ loss, optimizer }), tap(() => ends.push(performance.now())), count()));
      if (ends.length !== timed.length) throw new Error(`fit emitted ${ends.length} steps for ${timed.length} batches`);
      return { result: throughputOf(t0, ends) };
    };
    // Measured again while the host gives less than two cores close together (bench/clean-host.ts).
    const probes = await startHostProbes();
    try {
      return (await onCleanHost(probes, 'rxgrad', timedRun, (r) => `${Math.round(r.examplesPerSecond)} examples/s`, log)).result;
    } finally {
      await closeHostProbes(probes);
    }
  } finally {
    model.dispose();
  }
}

async function trainTfjs(batches: HostBatch[], budget: Budget): Promise<Throughput> {
  const model = tf.sequential({
    layers: [
      tf.layers.lstm({
        units: UNITS, inputShape: [STEPS, FEATURES],
        kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), recurrentInitializer: tf.initializers.orthogonal({ seed: 2 }),
        unitForgetBias: true,
      }),
      tf.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(LEARNING_RATE), loss: 'categoricalCrossentropy' });
  const xs = batches.map((b) => tf.tensor3d(b.x, [BATCH, STEPS, FEATURES]));
  const ys = batches.map((b) => tf.tensor2d(b.oneHot, [BATCH, CLASSES]));
  try {
    return await measure(budget, async (i) => {
      await model.trainOnBatch(xs[i]!, ys[i]!);
    });
  } finally {
    tf.dispose([...xs, ...ys]);
    model.dispose();
  }
}

/**
 * LSTM 128 training throughput (examples/s) for rxgrad, TF.js wasm and TF.js cpu on the same batches;
 * a library that cannot train the model reports null (the reason goes to stderr).
 *
 * Usage: `rows.push(...await lstmBench({ quick: ctx.quick }));`
 */
export async function lstmBench(options: { quick: boolean }): Promise<LstmBenchRow[]> {
  const { train, label } = loadData();
  const warmUpMs = options.quick ? 300 : WARM_UP_MS;
  const rx: Budget = options.quick ? { batches: 30, budgetSeconds: 10, minBatches: 10, warmUpMs } : { batches: 200, budgetSeconds: 60, minBatches: 30, warmUpMs };
  const tfBudget: Budget = options.quick ? { batches: 30, budgetSeconds: 10, minBatches: 2, warmUpMs } : { batches: 200, budgetSeconds: 60, minBatches: 5, warmUpMs };
  const batches = hostBatches(train, WARMUP_BATCHES + Math.max(rx.batches, tfBudget.batches));
  const prefix = `lstm 28×28→${UNITS}→${CLASSES} ${label} rows b${BATCH}`;
  log(`  ${prefix}: warm-up ${WARMUP_BATCHES} batches repeated for ${warmUpMs} ms, then up to ${rx.batches} (rxgrad) / ${tfBudget.batches} (TF.js) batches or ${rx.budgetSeconds} s`);
  const results: Record<'rxgrad' | 'tfjsWasm' | 'tfjsCpu', Throughput | null> = { rxgrad: null, tfjsWasm: null, tfjsCpu: null };
  const attempt = async (name: string, run: () => Promise<Throughput>): Promise<Throughput | null> => {
    try {
      const r = await run();
      log(`    ${name}: ${r.batches} batches in ${r.seconds.toFixed(1)} s = ${r.overall.toFixed(0)} examples/s overall, ${r.examplesPerSecond.toFixed(0)} the median ${SEGMENT_BATCHES}-batch segment (reported)`);
      return r;
    } catch (error) {
      log(`  ! ${name} ${prefix}: cannot train (${error instanceof Error ? error.message.split('\n')[0] : String(error)})`);
      return null;
    }
  };
  results.rxgrad = await attempt('rxgrad', async () => {
    try {
      return await trainRxgrad(batches, rx);
    } finally {
      // Idle workers must not share the CPU with the TF.js runs that follow.
      await closeRxgradEngines();
    }
  });
  for (const [backend, key] of [['wasm', 'tfjsWasm'], ['cpu', 'tfjsCpu']] as const) {
    results[key] = await attempt(`tfjs-${backend}`, async () => {
      await useBackend(backend);
      return trainTfjs(batches, tfBudget);
    });
  }
  const pick = (r: Throughput | null) => (r ? r.examplesPerSecond : null);
  const rows: LstmBenchRow[] = [
    { benchmark: `${prefix} train`, unit: 'examples/s', rxgrad: pick(results.rxgrad), tfjsWasm: pick(results.tfjsWasm), tfjsCpu: pick(results.tfjsCpu) },
  ];
  if (results.rxgrad && results.tfjsCpu) {
    log(`    rxgrad / tfjs-cpu: ${(results.rxgrad.examplesPerSecond / results.tfjsCpu.examplesPerSecond).toFixed(1)}×`);
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await lstmBench({ quick: process.argv.includes('--quick') });
  console.table(rows);
}
