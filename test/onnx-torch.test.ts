/**
 * PyTorch interop: small CNN (conv, batch-norm, ReLU, max/avg pooling, flatten, linear), a ResNet block, LSTM and GRU
 * models exported by `torch.onnx.export` (test/fixtures/make_torch_onnx.py; PyTorch and onnx versions
 * in the .json next to each file) import, predict what PyTorch recorded for the same inputs to
 * 1e-5·max(1, ‖torch‖∞), and then keep learning online: the loss falls on a stream of batches.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import { batchFromArrays, floatColumn } from '../src/batch.ts';
import { closeDefaultEngine } from '../src/engine.ts';
import { softmaxCrossEntropy } from '../src/losses.ts';
import type { Model } from '../src/model.ts';
import { adam } from '../src/optimizers.ts';
import { Random } from '../src/random.ts';
import { importOnnx } from '../src/interop/onnx-import.ts';
import { nchwToNhwc } from '../src/interop/layouts.ts';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

interface TorchRecord {
  torch: string;
  inputShape: number[];
  input: number[];
  outputShape: number[];
  output: number[];
}

async function predict(model: Model, features: Float32Array): Promise<Float32Array> {
  const out = await lastValueFrom(of(batchFromArrays({ features, shape: model.inputShape })).pipe(model.predict()));
  return floatColumn(out, 'output').values.slice();
}

function assertClose(actual: Float32Array, expected: readonly number[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: output size`);
  const scale = Math.max(1, ...expected.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  assert.ok(worst <= 1e-5 * scale, `${what}: differs from PyTorch by ${worst}`);
}

/**
 * Online fine-tuning: a stream of 150 batches cycling through 5 fixed ones (class = argmax of a fixed random
 * projection of the input); returns the mean loss of the first and last 20 steps.
 */
async function fineTune(model: Model, classes: number, seed: number): Promise<{ first: number; last: number }> {
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

describe('PyTorch-exported ONNX models', () => {
  after(() => closeDefaultEngine());

  it('a CNN (conv, batch-norm, pools, flatten, linear) predicts what PyTorch did, then fine-tunes', async () => {
    const record = JSON.parse(await readFile(fixture('torch_cnn.json'), 'utf8')) as TorchRecord;
    const model = await importOnnx(fixture('torch_cnn.onnx'));
    try {
      assert.deepEqual(model.layers.map((l) => l.kind), ['conv2d', 'batchNorm', 'relu', 'maxPool2d', 'conv2d', 'relu', 'avgPool2d', 'flatten', 'dense']);
      assert.deepEqual([...model.inputShape], [8, 8, 1], 'NCHW [1, 8, 8] becomes NHWC');
      const [n, c, h, w] = record.inputShape as [number, number, number, number];
      assertClose(await predict(model, nchwToNhwc(Float32Array.from(record.input), n, c, h, w)), record.output, `CNN (torch ${record.torch})`);
      const { first, last } = await fineTune(model, 5, 7);
      assert.ok(last < 0.8 * first, `fine-tuning: loss ${first} → ${last} should fall`);
    } finally {
      model.dispose();
    }
  });

  it('a ResNet block (conv-BN-ReLU-conv-BN + skip) becomes a residual layer, predicts what PyTorch did, then fine-tunes', async () => {
    const record = JSON.parse(await readFile(fixture('torch_resnet.json'), 'utf8')) as TorchRecord;
    const model = await importOnnx(fixture('torch_resnet.onnx'));
    try {
      assert.deepEqual(model.layers.map((l) => l.kind), ['conv2d', 'batchNorm', 'relu', 'residual', 'relu', 'globalAvgPool2d', 'dense']);
      const block = model.layers[3]!.config()['layers'] as { kind: string }[];
      assert.deepEqual(block.map((l) => l.kind), ['conv2d', 'batchNorm', 'relu', 'conv2d', 'batchNorm']);
      const [n, c, h, w] = record.inputShape as [number, number, number, number];
      assertClose(await predict(model, nchwToNhwc(Float32Array.from(record.input), n, c, h, w)), record.output, `ResNet block (torch ${record.torch})`);
      const { first, last } = await fineTune(model, 3, 5);
      assert.ok(last < 0.8 * first, `fine-tuning: loss ${first} → ${last} should fall`);
    } finally {
      model.dispose();
    }
  });

  for (const [name, kind] of [['torch_lstm', 'lstm'], ['torch_gru', 'gru']] as const) {
    it(`an ${kind.toUpperCase()} (batch_first, last hidden state, linear) predicts what PyTorch did, then fine-tunes`, async () => {
      const record = JSON.parse(await readFile(fixture(`${name}.json`), 'utf8')) as TorchRecord;
      const model = await importOnnx(fixture(`${name}.onnx`));
      try {
        assert.deepEqual(model.layers.map((l) => l.kind), [kind, 'dense']);
        assert.deepEqual([...model.inputShape], record.inputShape.slice(1));
        assertClose(await predict(model, Float32Array.from(record.input)), record.output, `${kind} (torch ${record.torch})`);
        const { first, last } = await fineTune(model, 4, 11);
        assert.ok(last < 0.8 * first, `fine-tuning: loss ${first} → ${last} should fall`);
      } finally {
        model.dispose();
      }
    });
  }
});
