/**
 * End-to-end training: MLP 784-128-10 (ReLU, softmax cross-entropy, Adam lr 1e-3, Glorot-uniform
 * weights, zero biases) on Fashion-MNIST, batch 64 and 256. Rows: training throughput
 * (examples/s), test accuracy after the same number of epochs, and main-thread event-loop delay
 * (p50, p99) while training.
 *
 * Every library trains on the same pre-made batches (one fixed shuffle, the last partial batch
 * dropped, the same order every epoch), built before the clock starts, so the timed region is the
 * training loop alone: rxgrad's `fit` stream to completion, TF.js's `trainOnBatch` loop. The first
 * step (graph set-up, optimizer slots) is inside the timed region for every library alike.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { from, lastValueFrom } from 'rxjs';
import { count } from 'rxjs/operators';
import type { Dataset } from '../src/data/dataset.ts';
import { loadEmbeddedMnist } from '../src/data/mnist.ts';
import { FASHION_MNIST_DIR, loadFashionMnist } from '../src/data/idx.ts';
import { attempt, fillRandom, type BenchCase, type BenchContext, type Row } from './harness.ts';
import { closeRxgradEngines, loadRxgrad } from './rxgrad.ts';
import { TF_BACKENDS, tf, useBackend } from './tfjs.ts';

const INPUTS = 784;
const HIDDEN = 128;
const CLASSES = 10;
const LEARNING_RATE = 1e-3;
/** Quick runs train on this many examples (one epoch) to stay within the 2-minute budget. */
const QUICK_TRAIN_EXAMPLES = 12_800;
const TEST_BATCH = 1000;

interface Data {
  train: Dataset;
  test: Dataset;
  /** Goes into the row names so a fallback or subset can't be mistaken for the real thing. */
  label: string;
}

let data: Data | undefined;

function loadData(ctx: BenchContext): Data {
  if (data) return data;
  try {
    const { train, test } = loadFashionMnist();
    data = { train, test, label: 'fashion-mnist' };
  } catch (error) {
    ctx.log(`  ! Fashion-MNIST unavailable in ${FASHION_MNIST_DIR} (${(error as Error).message}); using embedded MNIST`);
    const { train, test } = loadEmbeddedMnist();
    data = { train, test, label: 'mnist-embedded (fashion-mnist not installed)' };
  }
  return data;
}

/** One training batch in host memory, shared by all libraries. */
interface HostBatch {
  x: Float32Array;
  labels: Int32Array;
  oneHot: Float32Array;
}

/** A fixed permutation (Fisher–Yates driven by fillRandom's xorshift stream). */
function shuffledOrder(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const r = fillRandom(new Float32Array(n), seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(((r[i]! + 1) / 2) * (i + 1)));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

function hostBatches(train: Dataset, batchSize: number, limit: number): HostBatch[] {
  const order = shuffledOrder(train.length, 12345).subarray(0, Math.min(limit, train.length));
  const batches: HostBatch[] = [];
  for (let start = 0; start + batchSize <= order.length; start += batchSize) {
    const x = new Float32Array(batchSize * INPUTS);
    const labels = new Int32Array(batchSize);
    const oneHot = new Float32Array(batchSize * CLASSES);
    for (let i = 0; i < batchSize; i++) {
      const row = order[start + i]!;
      x.set(train.features.subarray(row * INPUTS, (row + 1) * INPUTS), i * INPUTS);
      labels[i] = train.labels[row]!;
      oneHot[i * CLASSES + labels[i]!] = 1;
    }
    batches.push({ x, labels, oneHot });
  }
  return batches;
}

/** Result of training one library. */
interface TrainResult {
  examplesPerSecond: number;
  accuracy: number;
  delayP50Ms: number;
  delayP99Ms: number;
  /** Timer firings the delay histogram saw (1 ms resolution); a handful means the loop was blocked. */
  delaySamples: number;
  seconds: number;
}

/**
 * Runs `train` with the clock running and the event-loop delay histogram on. The histogram records
 * the interval between firings of a 1 ms timer (so an idle loop reads ≈ 1 ms); its first firing
 * only sets a baseline, so we wait for exactly that firing (our 1 ms timeout is queued behind it
 * in the same timers phase) before starting the clock, leaving no idle samples in the histogram.
 */
async function timed(examples: number, train: () => Promise<void>): Promise<Omit<TrainResult, 'accuracy'>> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  await new Promise((resolve) => setTimeout(resolve, 1));
  const t0 = performance.now();
  await train();
  const seconds = (performance.now() - t0) / 1000;
  // A library that never yields (TF.js's cpu and wasm kernels run synchronously and its awaits
  // resolve as microtasks) blocks the loop for the whole run: no timer fires until it ends, and
  // the histogram gets that one long interval only when the loop turns again, so let it turn.
  await new Promise((resolve) => setTimeout(resolve, 0));
  histogram.disable();
  return {
    examplesPerSecond: examples / seconds,
    delayP50Ms: histogram.percentile(50) / 1e6,
    delayP99Ms: histogram.percentile(99) / 1e6,
    delaySamples: histogram.count,
    seconds,
  };
}

async function trainRxgrad(batches: HostBatch[], epochs: number, test: Dataset): Promise<TrainResult> {
  const { sequential, dense, relu, adam, softmaxCrossEntropy, batchFromArrays } = await loadRxgrad();
  const model = sequential([dense(HIDDEN), relu(), dense(CLASSES)], { inputShape: [INPUTS], seed: 1 });
  const trainBatches = batches.map((b) => batchFromArrays({ features: b.x, shape: [INPUTS], labels: b.labels }));
  const testBatches = [];
  for (let start = 0; start < test.length; start += TEST_BATCH) {
    const end = Math.min(start + TEST_BATCH, test.length);
    testBatches.push(batchFromArrays({
      features: test.features.subarray(start * INPUTS, end * INPUTS), shape: [INPUTS], labels: test.labels.subarray(start, end),
    }));
  }
  // One fit over all epochs: a single optimizer whose Adam moments carry across epochs.
  const stream = Array.from({ length: epochs }, () => trainBatches).flat();
  const examples = stream.length * batches[0]!.labels.length;
  const result = await timed(examples, async () => {
    const steps = await lastValueFrom(from(stream).pipe(
      model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: LEARNING_RATE }) }),
      count(),
    ));
    if (steps !== stream.length) throw new Error(`fit emitted ${steps} steps for ${stream.length} batches`);
  });
  const { accuracy } = await model.evaluate(from(testBatches));
  if (accuracy === undefined) throw new Error('evaluate reported no accuracy');
  return { ...result, accuracy };
}

async function trainTfjs(batches: HostBatch[], epochs: number, test: Dataset): Promise<TrainResult> {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({
        units: HIDDEN, activation: 'relu', inputShape: [INPUTS],
        kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), biasInitializer: 'zeros',
      }),
      tf.layers.dense({
        units: CLASSES, activation: 'softmax',
        kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }), biasInitializer: 'zeros',
      }),
    ],
  });
  // No metrics on either side (rxgrad's fit is called without metrics too): only training is timed.
  model.compile({ optimizer: tf.train.adam(LEARNING_RATE), loss: 'categoricalCrossentropy' });
  const batchSize = batches[0]!.labels.length;
  const xs = batches.map((b) => tf.tensor2d(b.x, [batchSize, INPUTS]));
  const ys = batches.map((b) => tf.tensor2d(b.oneHot, [batchSize, CLASSES]));
  try {
    const result = await timed(epochs * batches.length * batchSize, async () => {
      for (let epoch = 0; epoch < epochs; epoch++) {
        for (let i = 0; i < xs.length; i++) await model.trainOnBatch(xs[i]!, ys[i]!);
      }
    });
    const predicted = tf.tidy(() => {
      const x = tf.tensor2d(test.features, [test.length, INPUTS]);
      return (model.predict(x) as tf.Tensor2D).argMax(1).dataSync();
    });
    let correct = 0;
    for (let i = 0; i < test.length; i++) if (predicted[i] === test.labels[i]) correct++;
    return { ...result, accuracy: correct / test.length };
  } finally {
    tf.dispose([...xs, ...ys]);
    model.dispose();
  }
}

function mlpCase(batchSize: number): BenchCase {
  return {
    name: `mlp 784-128-10 b${batchSize}`,
    quick: true,
    async run(ctx) {
      const { train, test, label } = loadData(ctx);
      const epochs = ctx.quick ? 1 : 5;
      const limit = ctx.quick ? QUICK_TRAIN_EXAMPLES : train.length;
      const subset = limit < train.length ? ` ${limit / 1000}k-subset` : '';
      const batches = hostBatches(train, batchSize, limit);
      const prefix = `mlp 784-128-10 ${label}${subset} b${batchSize}`;
      const results: Record<'rxgrad' | 'tfjsWasm' | 'tfjsCpu', TrainResult | null> = { rxgrad: null, tfjsWasm: null, tfjsCpu: null };
      ctx.log(`  ${prefix}: ${batches.length} batches × ${epochs} epoch(s)`);
      results.rxgrad = await attempt(ctx, `rxgrad ${prefix}`, async () => {
        try {
          return await trainRxgrad(batches, epochs, test);
        } finally {
          // Idle workers must not share the CPU with the TF.js runs that follow.
          await closeRxgradEngines();
        }
      });
      // TF.js's cpu backend needs ~6 minutes for 5 epochs at batch 64, which alone would break the
      // full run's 10-minute budget: unless asked, it trains one epoch, enough for its throughput
      // and event-loop rows, and its accuracy cell stays empty (epoch counts must match in a row).
      const cpuEpochs = ctx.cpuAllEpochs ? epochs : 1;
      for (const { backend, key } of TF_BACKENDS) {
        const backendEpochs = backend === 'cpu' ? cpuEpochs : epochs;
        results[key] = await attempt(ctx, `tfjs-${backend} ${prefix}`, async () => {
          await useBackend(backend);
          return trainTfjs(batches, backendEpochs, test);
        });
      }
      if (cpuEpochs !== epochs) ctx.log(`    tfjs-cpu trained ${cpuEpochs} epoch (throughput only; --cpu-all-epochs for accuracy)`);
      for (const [library, r] of Object.entries(results)) {
        if (r) ctx.log(`    ${library}: ${r.seconds.toFixed(1)} s, ${(100 * r.accuracy).toFixed(2)} %, event-loop samples ${r.delaySamples}`);
      }
      const row = (suffix: string, unit: string, pick: (r: TrainResult) => number): Row => ({
        benchmark: `${prefix} ${suffix}`, unit,
        rxgrad: results.rxgrad && pick(results.rxgrad),
        tfjsWasm: results.tfjsWasm && pick(results.tfjsWasm),
        tfjsCpu: results.tfjsCpu && pick(results.tfjsCpu),
      });
      return [
        row('train', 'examples/s', (r) => r.examplesPerSecond),
        {
          ...row(`test accuracy after ${epochs} epoch${epochs > 1 ? 's' : ''}`, '%', (r) => 100 * r.accuracy),
          ...(cpuEpochs !== epochs ? { tfjsCpu: null } : {}),
        },
        row('event-loop delay p50 while training', 'ms', (r) => r.delayP50Ms),
        row('event-loop delay p99 while training', 'ms', (r) => r.delayP99Ms),
      ];
    },
  };
}

/**
 * The MLP training suite (batch 64 and 256). Quick: 1 epoch on a 12.8k-example subset; full: 5 epochs
 * (TF.js cpu: 1 epoch, throughput only, unless `ctx.cpuAllEpochs`).
 *
 * Usage: `for (const c of mlpCases()) rows.push(...await c.run(ctx));`
 */
export function mlpCases(): BenchCase[] {
  return [mlpCase(64), mlpCase(256)];
}
