/**
 * Profile of the LSTM bench model's training step (a measurement, not a test): Fashion-MNIST-shaped rows
 * (28 steps of 28 pixels) into lstm(128) / gru(128), dense(10), softmax cross-entropy, Adam 1e-3, batch 64.
 * Prints ms per step (wall and process CPU), ex/s, and the per-layer forward/backward split.
 *
 * Usage: `npx tsx bench/profile-lstm.ts [--threads 2] [--steps 200] [--cell lstm|gru] [--no-layers]`
 */
import os from 'node:os';
import { from, lastValueFrom } from 'rxjs';
import { count } from 'rxjs/operators';
import { adam, batchFromArrays, createEngine, dense, gru, lstm, sequential, softmaxCrossEntropy, type Layer } from '../src/index.ts';
import { cpuNow, timeLayers } from './layer-timing.ts';

const arg = (name: string, d: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : d;
};
const threads = Number(arg('threads', '2'));
const steps = Number(arg('steps', '200'));
const cell = arg('cell', 'lstm');
const perLayer = !process.argv.includes('--no-layers');

const engine = createEngine({ threads });
const layers: Layer[] = [cell === 'gru' ? gru({ units: 128 }) : lstm({ units: 128 }), dense(10)];
const model = sequential(layers, { inputShape: [28, 28], seed: 1, engine });

const timing = perLayer ? timeLayers(layers) : null;

let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const train = Array.from({ length: steps }, () => batchFromArrays({
  features: new Float32Array(64 * 784).map(() => rnd()), shape: [28, 28],
  labels: Int32Array.from({ length: 64 }, () => Math.floor(rnd() * 10)),
}));
const optimizer = adam({ learningRate: 1e-3 });
const fit = (b: typeof train) => lastValueFrom(from(b).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer }), count()));
await fit(train.slice(0, 10));
timing?.stats.clear();
const load0 = os.loadavg()[0]!;
const t0 = performance.now(), c0 = cpuNow();
await fit(train);
const wall = performance.now() - t0, cpu = cpuNow() - c0;
console.log(`${cell} train, ${threads} thread(s), batch 64, ${steps} steps: ${(wall / steps).toFixed(3)} ms/step wall, ${(cpu / steps).toFixed(3)} ms/step CPU, ${Math.round(64 * steps / wall * 1000)} ex/s (CPU/wall ${(cpu / wall).toFixed(2)}, load ${load0.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)})`);
if (timing) {
  console.log(timing.report());
  console.log(`  layers total ${timing.totalWall().toFixed(3)} ms; rest (copy-in, loss, Adam, rx overhead) ${(wall / steps - timing.totalWall()).toFixed(3)} ms`);
}
model.dispose();
await engine.close();
