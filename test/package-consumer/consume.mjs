// Run by test/package.test.ts inside an empty project where only the packed tarball is installed:
// plain Node ESM, no TypeScript, no tsx. Trains, saves, loads, predicts; prints one JSON line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchFromArrays, batchesFromArrays, closeDefaultEngine, connectRedis, dense, loadEmbeddedMnist, loadModel, relu, saveModel, sequential, softmaxCrossEntropy,
} from 'rxgrad';

// Two Gaussian blobs: class = sign of x0 + x1.
const rows = 512;
const features = new Float32Array(rows * 2);
const labels = new Int32Array(rows);
let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
for (let r = 0; r < rows; r++) {
  features[2 * r] = random();
  features[2 * r + 1] = random();
  labels[r] = features[2 * r] + features[2 * r + 1] > 0 ? 1 : 0;
}
const model = sequential([dense(16), relu(), dense(2)], { inputShape: [2], seed: 1 });
await lastValueFrom(model.train({ features, shape: [2], labels }, { epochs: 8, batchSize: 32, loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.01 }) }));
const dir = mkdtempSync(join(tmpdir(), 'rxgrad-consumer-'));
await saveModel(model, join(dir, 'model'));
const { model: loaded } = await loadModel(join(dir, 'model'));
const outputs = await lastValueFrom(from(batchesFromArrays({ features, shape: [2], labels }, 128)).pipe(loaded.predict(), toArray()));
let correct = 0;
let row = 0;
for (const out of outputs) {
  const prediction = out.getChild('prediction').toArray();
  for (const p of prediction) correct += p === labels[row++] ? 1 : 0;
}
const single = await lastValueFrom(from([batchFromArrays({ features: new Float32Array([0.9, 0.8]), shape: [2] })]).pipe(loaded.predict()));
let mnistError = null;
try {
  loadEmbeddedMnist();
} catch (error) {
  mnistError = error.message;
}
let redisError = null;
try {
  await connectRedis('redis://127.0.0.1:1');
} catch (error) {
  redisError = error.message;
}
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ step: loaded.stepCount, accuracy: correct / rows, positive: single.getChild('prediction').get(0), mnistError, redisError }));
model.dispose();
loaded.dispose();
await closeDefaultEngine();
