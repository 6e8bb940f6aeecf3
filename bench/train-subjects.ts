/**
 * The models of the threads suite (bench/threads.ts) and their batches, shared with the separate-process
 * ceiling (bench/ceiling.ts), which trains them in child processes.
 *
 * Usage: `const subject = SUBJECTS.find((s) => s.name.startsWith('cnn'))!; const batches = makeBatches(rx, subject, 25);`
 */
import type { Batch } from '../src/batch.ts';
import type { Engine } from '../src/engine.ts';
import type { Model } from '../src/model.ts';
import { loadEmbeddedMnist } from '../src/data/mnist.ts';
import { from, lastValueFrom } from 'rxjs';
import { count, repeat } from 'rxjs/operators';
import type { Rxgrad } from './rxgrad.ts';

/** One model of the suite: how to build it and its batches. */
export interface Subject {
  name: string;
  batch: number;
  /** Steps per timed round. */
  steps: number;
  build(rx: Rxgrad, engine: Engine): Model;
  /** Per-example feature shape. */
  shape: number[];
}

export const SUBJECTS: Subject[] = [
  {
    name: 'mlp 784-128-10 b64', batch: 64, steps: 120, shape: [784],
    build: (rx, engine) => rx.sequential([rx.dense(128), rx.relu(), rx.dense(10)], { inputShape: [784], seed: 1, engine }),
  },
  {
    name: 'mlp 784-128-10 b256', batch: 256, steps: 40, shape: [784],
    build: (rx, engine) => rx.sequential([rx.dense(128), rx.relu(), rx.dense(10)], { inputShape: [784], seed: 1, engine }),
  },
  {
    name: 'cnn 28x28 conv16-pool-conv32-pool-dense10 b64', batch: 64, steps: 25, shape: [28, 28, 1],
    build: (rx, engine) => rx.sequential([
      rx.conv2d(16, 3, { padding: 'same', activation: 'relu' }), rx.maxPool2d(2),
      rx.conv2d(32, 3, { padding: 'same', activation: 'relu' }), rx.maxPool2d(2),
      rx.flatten(), rx.dense(10),
    ], { inputShape: [28, 28, 1], seed: 1, engine }),
  },
  {
    name: 'lstm 28x28 rows->128->10 b64', batch: 64, steps: 8, shape: [28, 28],
    build: (rx, engine) => rx.sequential([rx.lstm({ units: 128 }), rx.dense(10)], { inputShape: [28, 28], seed: 1, engine }),
  },
];

/** `steps` batches of the embedded MNIST digits in the subject's shape. */
export function makeBatches(rx: Rxgrad, subject: Subject, steps: number): Batch[] {
  const { train } = loadEmbeddedMnist();
  const width = 784;
  const out: Batch[] = [];
  for (let s = 0; s < steps; s++) {
    const features = new Float32Array(subject.batch * width);
    const labels = new Int32Array(subject.batch);
    for (let i = 0; i < subject.batch; i++) {
      const row = (s * subject.batch + i) % train.length;
      features.set(train.features.subarray(row * width, (row + 1) * width), i * width);
      labels[i] = train.labels[row]!;
    }
    out.push(rx.batchFromArrays({ features, shape: subject.shape, labels }));
  }
  return out;
}

/**
 * One round of the suites' training: `passes` over `batches` through `model.fit` (Adam 1e-3, softmax
 * cross-entropy, the optimizer's state kept across rounds); resolves to the steps run.
 *
 * Usage: `const round = trainRound(rx, model, batches, 3); await round();`
 */
export function trainRound(rx: Rxgrad, model: Model, batches: Batch[], passes: number): () => Promise<number> {
  const optimizer = rx.adam({ learningRate: 1e-3 });
  const loss = rx.softmaxCrossEntropy();
  return () => lastValueFrom(from(batches).pipe(repeat(passes), model.fit({ loss, optimizer }), count()));
}
