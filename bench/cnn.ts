/**
 * CNN benchmarks: the example CNN (conv 16 3×3 same relu → maxpool 2 → conv 32 3×3 same relu → maxpool 2
 * → flatten → dense 10, Adam 1e-3) on Fashion-MNIST-shaped batches, rxgrad against TF.js.
 *
 * Rows:
 * - `cnn train b64` (examples/s): rxgrad `fit` over pre-made Arrow batches, after WARM_UP_MS of untimed
 *   training (the median rate of its 50-batch segments; the whole run's rate is logged too; measured again, at
 *   most three times, while the host gives less than two cores close together: bench/clean-host.ts), vs TF.js cpu
 *   `trainOnBatch` (only a handful of TF.js batches are timed: it trains ~12 ex/s). No augmentation on either side.
 * - `cnn inference b256` (examples/s): rxgrad `predict` vs TF.js wasm and cpu `predict(...).dataSync()` on
 *   the same pre-made batches of 256; once with the example's 'same' padding and once with 'valid' (Keras's
 *   default: 26→13→11→5, about 0.6× the work, where TF.js wasm is fastest — ~16–18k ex/s here).
 * - `conv2d <layer> <pass>` (GFLOP/s, batch 64): the conv kernels of each layer shape through the engine's
 *   compute backend (split over the pool like in training), plus the 1-thread forward (the path the kernel
 *   takes for that shape: direct for layer 1, Winograd F(2×2, 3×3) for layer 2, asserted by
 *   props/winograd.prop.ts) and the im2col + GEMM forward. GFLOP/s always counts the direct convolution's
 *   2·N·OH·OW·CO·9·C, so a Winograd figure is an effective rate (it does 2.25× fewer multiplications).
 *
 * The lead registers it in bench/run.ts. Usage: `const rows = await cnnBench({ quick: true });`
 */
import os from 'node:os';
import { from, lastValueFrom } from 'rxjs';
import { count, tap } from 'rxjs/operators';
import type { Dataset } from '../src/data/dataset.ts';
import { FASHION_MNIST_DIR, loadFashionMnist } from '../src/data/idx.ts';
import type { Engine } from '../src/engine.ts';
import { fillRandom, median, repeatFor, segmentedThroughput, timeIt, WARM_UP_MS, type Row } from './harness.ts';
import { loadRxgrad, makeEngine } from './rxgrad.ts';
import { closeHostProbes, onCleanHost, startHostProbes } from './clean-host.ts';
import { initTfjs, tf, useBackend } from './tfjs.ts';

const CLASSES = 10;
/**
 * Timed batches per segment of the training row (300 batches: 6 segments of about a quarter second): the row is
 * the median segment's rate, so a second of foreign load on this shared VM moves it less than the whole run's.
 */
const SEGMENT_BATCHES = 50;
const SHAPE = [28, 28, 1] as const;
const PIXELS = 784;

interface HostBatch {
  x: Float32Array;
  labels: Int32Array;
  oneHot: Float32Array;
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Fashion-MNIST when installed, else deterministic random images with random labels (speed only). */
function loadImages(): { data: Dataset; label: string } {
  try {
    return { data: loadFashionMnist(FASHION_MNIST_DIR, { flatten: false }).train, label: 'fashion-mnist' };
  } catch {
    const n = 8192;
    const features = fillRandom(new Float32Array(n * PIXELS), 7).map((v) => (v + 1) / 2);
    const labels = Int32Array.from({ length: n }, (_, i) => (i * 7) % CLASSES);
    return { data: { features, shape: [...SHAPE], labels, classes: CLASSES, length: n, name: 'random' }, label: 'random images' };
  }
}

function hostBatches(data: Dataset, batchSize: number, count_: number): HostBatch[] {
  const out: HostBatch[] = [];
  for (let b = 0; b < count_; b++) {
    const x = new Float32Array(batchSize * PIXELS);
    const labels = new Int32Array(batchSize);
    const oneHot = new Float32Array(batchSize * CLASSES);
    for (let i = 0; i < batchSize; i++) {
      const row = (b * batchSize + i) % data.length;
      x.set(data.features.subarray(row * PIXELS, (row + 1) * PIXELS), i * PIXELS);
      labels[i] = data.labels[row]!;
      oneHot[i * CLASSES + labels[i]!] = 1;
    }
    out.push({ x, labels, oneHot });
  }
  return out;
}

type Padding = 'same' | 'valid';

async function rxgradModel(engine: Engine, padding: Padding = 'same') {
  const rx = await loadRxgrad();
  return rx.sequential(
    [
      rx.conv2d(16, 3, { padding, activation: 'relu' }), rx.maxPool2d(2),
      rx.conv2d(32, 3, { padding, activation: 'relu' }), rx.maxPool2d(2),
      rx.flatten(), rx.dense(CLASSES),
    ],
    { inputShape: [...SHAPE], seed: 1, engine },
  );
}

function tfjsModel(padding: Padding = 'same'): import('@tensorflow/tfjs').Sequential {
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ filters: 16, kernelSize: 3, padding, activation: 'relu', inputShape: [...SHAPE] }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, padding, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: CLASSES, activation: 'softmax' }),
    ],
  });
}

/** CPU seconds of this process (all threads) per wall second over `fn`: < threads means we were descheduled. */
async function withCpuShare<T>(fn: () => Promise<T>): Promise<{ result: T; cpuShare: number; seconds: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { result, cpuShare: (c.user + c.system) / 1e6 / seconds, seconds };
}

/** Load of other processes: 1-minute load average minus what we use. */
function foreignLoad(): string {
  return `load average ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} cores`;
}

async function trainRows(quick: boolean, data: Dataset, label: string): Promise<Row[]> {
  const batches = hostBatches(data, 64, quick ? 60 : 300);
  let rx: number | null = null;
  let cpuEx: number | null = null;
  try {
    const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
    try {
      const { batchFromArrays, adam, softmaxCrossEntropy } = await loadRxgrad();
      const model = await rxgradModel(engine);
      const arrow = batches.map((b) => batchFromArrays({ features: b.x, shape: [...SHAPE], labels: b.labels }));
      // Untimed training first (WARM_UP_MS, bench/harness.ts): a 2-thread engine's first seconds are slower.
      await repeatFor(quick ? 300 : WARM_UP_MS, () =>
        lastValueFrom(from(arrow.slice(0, 25)).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) }), count())));
      // Each step's end is stamped as the fit emits it; the row is the median segment's rate (as the LSTM row's),
      // measured again while the host gives less than two cores close together (bench/clean-host.ts).
      const timedRun = async () => {
        const ends: number[] = [];
        const t0 = performance.now();
        const stamped = model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) });
        const { cpuShare } = await withCpuShare(() => lastValueFrom(from(arrow).pipe(stamped, tap(() => ends.push(performance.now())), count())));
        if (ends.length !== arrow.length) throw new Error(`fit emitted ${ends.length} steps for ${arrow.length} batches`);
        return { result: { ...segmentedThroughput(t0, ends, 64, SEGMENT_BATCHES), cpuShare } };
      };
      const probes = await startHostProbes();
      try {
        const { result: run } = await onCleanHost(probes, 'rxgrad cnn train', timedRun, (r) => `${Math.round(r.examplesPerSecond)} ex/s`, log);
        rx = run.examplesPerSecond;
        log(`  rxgrad cnn train: ${Math.round(run.overall)} ex/s overall, ${Math.round(rx)} the median ${SEGMENT_BATCHES}-batch segment` +
          ` (reported); ${engine.compute.threads} threads, CPU share ${run.cpuShare.toFixed(2)}; ${foreignLoad()}`);
      } finally {
        await closeHostProbes(probes);
      }
      model.dispose();
    } finally {
      await engine.close();
    }
  } catch (error) {
    log(`  ! rxgrad cnn train: ${(error as Error).message}`);
  }
  try {
    await useBackend('cpu');
    const model = tfjsModel();
    model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
    const n = quick ? 2 : 4;
    const xs = batches.slice(0, n + 1).map((b) => tf.tensor4d(b.x, [64, ...SHAPE]));
    const ys = batches.slice(0, n + 1).map((b) => tf.tensor2d(b.oneHot, [64, CLASSES]));
    await model.trainOnBatch(xs[0]!, ys[0]!);
    const t0 = performance.now();
    for (let i = 1; i <= n; i++) await model.trainOnBatch(xs[i]!, ys[i]!);
    cpuEx = (n * 64) / ((performance.now() - t0) / 1000);
    log(`  tfjs-cpu cnn train: ${cpuEx.toFixed(1)} ex/s (${n} batches timed)`);
    tf.dispose([...xs, ...ys]);
    model.dispose();
  } catch (error) {
    log(`  ! tfjs-cpu cnn train: ${(error as Error).message}`);
  }
  return [{ benchmark: `cnn train b64 (${label})`, unit: 'examples/s', rxgrad: rx, tfjsWasm: null, tfjsCpu: cpuEx }];
}

async function inferenceRows(quick: boolean, data: Dataset, label: string, padding: Padding): Promise<Row[]> {
  const batches = hostBatches(data, 256, quick ? 8 : 20);
  let rx: number | null = null;
  const tfRate: Record<'wasm' | 'cpu', number | null> = { wasm: null, cpu: null };
  try {
    const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
    try {
      const { batchFromArrays } = await loadRxgrad();
      const model = await rxgradModel(engine, padding);
      const arrow = batches.map((b) => batchFromArrays({ features: b.x, shape: [...SHAPE], labels: b.labels }));
      const { ms } = await timeIt(() => lastValueFrom(from(arrow).pipe(model.predict(), count())), { minSampleMs: 100, samples: 5, maxTotalMs: quick ? 2000 : 5000 });
      rx = (arrow.length * 256) / (ms / 1000);
      log(`  rxgrad cnn inference ('${padding}'): ${Math.round(rx)} ex/s (${foreignLoad()})`);
      model.dispose();
    } finally {
      await engine.close();
    }
  } catch (error) {
    log(`  ! rxgrad cnn inference ('${padding}'): ${(error as Error).message}`);
  }
  for (const backend of ['wasm', 'cpu'] as const) {
    try {
      await useBackend(backend);
      const model = tfjsModel(padding);
      const xs = batches.map((b) => tf.tensor4d(b.x, [256, ...SHAPE]));
      const once = (n: number) => {
        for (let i = 0; i < n; i++) tf.tidy(() => (model.predict(xs[i]!) as import('@tensorflow/tfjs').Tensor).dataSync());
      };
      once(1);
      const n = backend === 'cpu' ? (quick ? 1 : 2) : xs.length;
      const times: number[] = [];
      for (let s = 0; s < (backend === 'cpu' ? 1 : 3); s++) {
        const t0 = performance.now();
        once(n);
        times.push((performance.now() - t0) / n);
      }
      tfRate[backend] = 256 / (median(times) / 1000);
      log(`  tfjs-${backend} cnn inference ('${padding}'): ${Math.round(tfRate[backend]!)} ex/s`);
      tf.dispose(xs);
      model.dispose();
    } catch (error) {
      log(`  ! tfjs-${backend} cnn inference ('${padding}'): ${(error as Error).message}`);
    }
  }
  const name = padding === 'same' ? `cnn inference b256 (${label})` : `cnn inference b256, 'valid' padding (${label})`;
  return [{ benchmark: name, unit: 'examples/s', rxgrad: rx, tfjsWasm: tfRate.wasm, tfjsCpu: tfRate.cpu }];
}

/**
 * The two conv layers of the example CNN at batch 64 ('same' padding), with the path conv2dForward takes
 * for each (workers/assembly/conv-winograd.ts winogradFits: 3×3, stride 1, inC ≥ 8, outC % 16 = 0).
 */
const LAYERS = [
  { name: '28x28x1->16', H: 28, W: 28, C: 1, CO: 16, path: 'direct' },
  { name: '14x14x16->32', H: 14, W: 14, C: 16, CO: 32, path: 'Winograd' },
] as const;

async function convRows(quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
  const timing = { minSampleMs: 30, samples: quick ? 5 : 7, maxTotalMs: quick ? 600 : 1500 };
  try {
    const { heap, compute, kernels } = engine;
    const N = 64;
    for (const L of LAYERS) {
      const g = [N, L.H, L.W, L.C, L.H, L.W, L.CO, 3, 3, 1, 1, 1, 1, 1, 1] as const;
      const flops = 2 * N * L.H * L.W * L.CO * 9 * L.C;
      const fill = (n: number, seed: number) => {
        const p = heap.alloc(n * 4);
        heap.f32.set(fillRandom(new Float32Array(n), seed), p >> 2);
        return p;
      };
      const x = fill(N * L.H * L.W * L.C, 1), w = fill(9 * L.C * L.CO, 2), b = fill(L.CO, 3), y = fill(N * L.H * L.W * L.CO, 4);
      const wt = fill(9 * L.C * L.CO, 5), dx = fill(N * L.H * L.W * L.C, 6), dw = fill(9 * L.C * L.CO, 7);
      const taps = 9 * L.C;
      const region = Math.ceil((taps * L.CO + taps * Math.min(N * L.H * L.W, Math.floor(32768 / taps))) / 16) * 16 + 16;
      const workFloats = compute.threads * region;
      const work = fill(workFloats, 8);
      const gf = (ms: number) => flops / ms / 1e6;
      const fwd = await timeIt(() => (compute.conv2dForward ? compute.conv2dForward(x, w, b, y, ...g) : kernels.conv2dForward(x, w, b, y, ...g)), timing);
      const im2col = await timeIt(() => kernels.conv2dForwardIm2col(x, w, b, y, work, workFloats, ...g), timing);
      const fwd1 = await timeIt(() => kernels.conv2dForward(x, w, b, y, ...g), timing);
      const bin = await timeIt(() => (compute.conv2dBackwardInput ? compute.conv2dBackwardInput(y, wt, dx, ...g) : kernels.conv2dBackwardInput(y, wt, dx, ...g)), timing);
      const bfi = await timeIt(() => (compute.conv2dBackwardFilter ? compute.conv2dBackwardFilter(x, y, dw, work, workFloats, ...g) : kernels.conv2dBackwardFilter(x, y, dw, work, workFloats, ...g)), timing);
      // No TF.js column: tf.conv2d alone measured 0.2 GFLOP/s on wasm (600 ms for layer 2), far below its
      // own whole-model inference (~8 GFLOP/s), so the per-op figure would misrepresent TF.js. Its model rows compare.
      rows.push(
        { benchmark: `conv2d ${L.name} b64 forward (${compute.threads} threads)`, unit: 'GFLOP/s', rxgrad: gf(fwd.ms), tfjsWasm: null, tfjsCpu: null },
        { benchmark: `conv2d ${L.name} b64 forward ${L.path}, 1 thread`, unit: 'GFLOP/s', rxgrad: gf(fwd1.ms), tfjsWasm: null, tfjsCpu: null },
        { benchmark: `conv2d ${L.name} b64 forward im2col+GEMM, 1 thread`, unit: 'GFLOP/s', rxgrad: gf(im2col.ms), tfjsWasm: null, tfjsCpu: null },
        { benchmark: `conv2d ${L.name} b64 backward input (${compute.threads} threads)`, unit: 'GFLOP/s', rxgrad: gf(bin.ms), tfjsWasm: null, tfjsCpu: null },
        { benchmark: `conv2d ${L.name} b64 backward filter (${compute.threads} threads)`, unit: 'GFLOP/s', rxgrad: gf(bfi.ms), tfjsWasm: null, tfjsCpu: null },
      );
      log(`  conv2d ${L.name}: fwd ${gf(fwd.ms).toFixed(1)} (1 thread ${L.path} ${gf(fwd1.ms).toFixed(1)}, im2col ${gf(im2col.ms).toFixed(1)}), bwd input ${gf(bin.ms).toFixed(1)}, bwd filter ${gf(bfi.ms).toFixed(1)} GFLOP/s (${foreignLoad()})`);
    }
  } finally {
    await engine.close();
  }
  return rows;
}

/**
 * Runs every CNN benchmark; rows where a library cannot run hold null.
 *
 * Usage: `const rows = await cnnBench({ quick: true });`
 */
export async function cnnBench(options: { quick: boolean }): Promise<Array<{ benchmark: string; unit: string; rxgrad: number | null; tfjsWasm: number | null; tfjsCpu: number | null }>> {
  await initTfjs();
  const { data, label } = loadImages();
  return [
    ...(await trainRows(options.quick, data, label)),
    ...(await inferenceRows(options.quick, data, label, 'same')),
    ...(await inferenceRows(options.quick, data, label, 'valid')),
    ...(await convRows(options.quick)),
  ];
}

// Direct run: `npx tsx bench/cnn.ts [--quick]` prints the rows as a table.
if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await cnnBench({ quick: process.argv.includes('--quick') });
  const fmt = (v: number | null) => (v === null ? '—' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1));
  for (const r of rows) console.log(`${r.benchmark.padEnd(58)} ${r.unit.padEnd(11)} rxgrad ${fmt(r.rxgrad).padStart(8)}  tfjs-wasm ${fmt(r.tfjsWasm).padStart(8)}  tfjs-cpu ${fmt(r.tfjsCpu).padStart(8)}`);
}
