/**
 * PyTorch interop: small CNN (conv, batch-norm, ReLU, max/avg pooling, flatten, linear), a ResNet block, LSTM and GRU
 * models exported by `torch.onnx.export` (test/fixtures/make_torch_onnx.py; PyTorch and onnx versions
 * in the .json next to each file) import, predict what PyTorch recorded for the same inputs to
 * 1e-5·max(1, ‖torch‖∞), and then keep learning online: the loss falls on a stream of batches.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { closeDefaultEngine } from '../src/engine.ts';
import { importOnnx } from '../src/interop/onnx-import.ts';
import { nchwToNhwc } from '../src/interop/layouts.ts';
import { assertCloseTo, fineTune, predict } from './interop-helpers.ts';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

interface TorchRecord {
  torch: string;
  inputShape: number[];
  input: number[];
  outputShape: number[];
  output: number[];
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
      assertCloseTo(await predict(model, nchwToNhwc(Float32Array.from(record.input), n, c, h, w)), record.output, `CNN (torch ${record.torch})`);
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
      assertCloseTo(await predict(model, nchwToNhwc(Float32Array.from(record.input), n, c, h, w)), record.output, `ResNet block (torch ${record.torch})`);
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
        assertCloseTo(await predict(model, Float32Array.from(record.input)), record.output, `${kind} (torch ${record.torch})`);
        const { first, last } = await fineTune(model, 4, 11);
        assert.ok(last < 0.8 * first, `fine-tuning: loss ${first} → ${last} should fall`);
      } finally {
        model.dispose();
      }
    });
  }
});
