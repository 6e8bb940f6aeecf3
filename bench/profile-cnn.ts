/**
 * Profile of the example CNN's training step and inference (a measurement, not a test):
 * per-layer forward/backward times (wall and process CPU), per-step overhead, ex/s.
 *
 * Usage: `npx tsx bench/profile-cnn.ts [--threads 2] [--padding same|valid] [--augment] [--fuse-relu] [--steps 200] [--no-layers] [--no-infer]`
 * `--fuse-relu`: `conv2d(…, { activation: 'relu' })` instead of separate relu() layers.
 */
import os from 'node:os';
import { from, lastValueFrom } from 'rxjs';
import { count } from 'rxjs/operators';
import {
  adam, batchFromArrays, conv2d, createEngine, dense, flatten, maxPool2d, randomFlip, randomTranslate, relu, sequential,
  softmaxCrossEntropy, type Layer,
} from '../src/index.ts';
import { cpuNow, formatLayerTimes, timeLayers, type LayerTime } from './layer-timing.ts';

const arg = (name: string, d: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : d;
};
const threads = Number(arg('threads', '2'));
const padding = arg('padding', 'same') as 'same' | 'valid';
const augment = process.argv.includes('--augment');
const steps = Number(arg('steps', '200'));
const perLayer = !process.argv.includes('--no-layers');
const fuse = process.argv.includes('--fuse-relu');

const engine = createEngine({ threads });
const aug: Layer[] = augment ? [randomFlip({ horizontal: true }), randomTranslate({ height: 1 / 28, width: 1 / 28 })] : [];
const layers: Layer[] = [
  ...aug,
  ...(fuse ? [conv2d(16, 3, { padding, activation: 'relu' })] : [conv2d(16, 3, { padding }), relu()]), maxPool2d(2),
  ...(fuse ? [conv2d(32, 3, { padding, activation: 'relu' })] : [conv2d(32, 3, { padding }), relu()]), maxPool2d(2),
  flatten(), dense(10),
];
const model = sequential(layers, { inputShape: [28, 28, 1], seed: 1, engine });

// Per-layer timing: wrap forward/backward (awaited, so split kernels count in full).
const timing = perLayer ? timeLayers(layers, (layer, m, a) => `${layer.name} ${m}${m === 'forward' && !(a[1] as { training: boolean }).training ? ' (infer)' : ''}`) : null;
const stats = timing?.stats ?? new Map<string, LayerTime>();

function makeBatches(n: number, size: number) {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, () => {
    const features = new Float32Array(size * 784).map(() => rnd());
    const labels = Int32Array.from({ length: size }, () => Math.floor(rnd() * 10));
    return batchFromArrays({ features, shape: [28, 28, 1], labels });
  });
}

const train = makeBatches(steps, 64);
const fit = (b: typeof train) => lastValueFrom(from(b).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) }), count()));
await fit(train.slice(0, 20));
stats.clear();
const load0 = os.loadavg()[0]!;
let t0 = performance.now(), c0 = cpuNow();
await fit(train);
const wall = performance.now() - t0, cpu = cpuNow() - c0;
console.log(`train ${padding}${augment ? ' +aug' : ''}, ${threads} thread(s), batch 64, ${steps} steps: ${(wall / steps).toFixed(3)} ms/step wall, ${(cpu / steps).toFixed(3)} ms/step CPU, ${Math.round(64 * steps / wall * 1000)} ex/s (CPU/wall ${(cpu / wall).toFixed(2)}, load ${load0.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)})`);
const lines = [formatLayerTimes(stats)];
let layerWall = 0;
for (const s of stats.values()) layerWall += s.wall / s.n;
console.log(lines.join('\n'));
console.log(`  layers total ${layerWall.toFixed(3)} ms; rest (copy-in, loss, Adam, rx overhead) ${(wall / steps - layerWall).toFixed(3)} ms`);

// Inference on pre-made batches of 256.
if (process.argv.includes('--no-infer')) {
  model.dispose();
  await engine.close();
  process.exit(0);
}
stats.clear();
const inf = makeBatches(20, 256);
const predict = () => lastValueFrom(from(inf).pipe(model.predict(), count()));
await predict();
stats.clear();
const reps = 5;
t0 = performance.now(); c0 = cpuNow();
for (let r = 0; r < reps; r++) await predict();
const iw = performance.now() - t0, ic = cpuNow() - c0;
const nb = reps * inf.length;
console.log(`inference b256: ${(iw / nb).toFixed(3)} ms/batch wall, ${(ic / nb).toFixed(3)} CPU, ${Math.round(256 * nb / iw * 1000)} ex/s`);
console.log(formatLayerTimes(stats));
model.dispose();
await engine.close();
