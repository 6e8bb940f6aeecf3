/**
 * Shared by the interop tests (onnx-*, tfjs-layers, named-weights): rxgrad inference on one batch, the
 * output comparison they all use, and online fine-tuning of an imported model.
 */
import assert from 'node:assert/strict';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import { batchFromArrays, floatColumn } from '../src/batch.ts';
import { softmaxCrossEntropy } from '../src/losses.ts';
import type { Model } from '../src/model.ts';
import { adam } from '../src/optimizers.ts';
import { Random } from '../src/random.ts';

/** The model's `output` column for one batch of features. */
export async function predict(model: Model, features: Float32Array | Int32Array): Promise<Float32Array> {
  const out = await lastValueFrom(of(batchFromArrays({ features, shape: model.inputShape })).pipe(model.predict()));
  return floatColumn(out, 'output').values.slice();
}

/** max|actual − expected| ≤ 1e-5·max(1, ‖expected‖∞): relative to the output's magnitude, absolute below 1. */
export function assertCloseTo(actual: Float32Array, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: output size`);
  let scale = 1;
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  }
  assert.ok(worst <= 1e-5 * scale, `${what}: differs by ${worst} (output scale ${scale})`);
}

/**
 * Online fine-tuning: a stream of 150 batches cycling through 5 fixed ones (class = argmax of a fixed random
 * projection of the input; the model must output `classes` logits); returns the mean loss of the first and
 * last 20 steps.
 */
export async function fineTune(model: Model, classes: number, seed: number): Promise<{ first: number; last: number }> {
  const rng = new Random(seed);
  const width = model.inputShape.reduce((a, b) => a * b, 1);
  const projection = Float32Array.from({ length: width * classes }, () => rng.uniform() * 2 - 1);
  const distinct = Array.from({ length: 5 }, () => {
    const rows = 16;
    const features = Float32Array.from({ length: rows * width }, () => rng.uniform() * 2 - 1);
    const labels = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      let best = -Infinity;
      for (let k = 0; k < classes; k++) {
        let s = 0;
        for (let i = 0; i < width; i++) s += features[r * width + i]! * projection[i * classes + k]!;
        if (s > best) [best, labels[r]] = [s, k];
      }
    }
    return batchFromArrays({ features, shape: model.inputShape, labels });
  });
  const batches = Array.from({ length: 150 }, (_, i) => distinct[i % distinct.length]!);
  const reports = await lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.01 }) }), toArray()));
  const mean = (xs: { loss: number }[]) => xs.reduce((s, r) => s + r.loss, 0) / xs.length;
  return { first: mean(reports.slice(0, 20)), last: mean(reports.slice(-20)) };
}
