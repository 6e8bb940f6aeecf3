/**
 * PyTorch interop: models exported by `torch.onnx.export` (test/fixtures/make_torch_onnx.py; PyTorch and
 * onnx versions in the .json next to each file) — a CNN (conv, batch-norm, ReLU, max/avg pooling, flatten,
 * linear), a ResNet block, an MLP whose LayerNorm and tanh-GELU are strings of elementwise ops (opset 13),
 * an LSTM and a GRU — import, predict what PyTorch recorded for the same inputs to 1e-5·max(1, ‖torch‖∞),
 * and then keep learning online: the loss falls on a stream of batches.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { closeDefaultEngine } from '../src/engine.ts';
import type { Model } from '../src/model.ts';
import { importOnnx } from '../src/interop/onnx-import.ts';
import { nchwToNhwc } from '../src/interop/layouts.ts';
import { assertCloseTo, fineTune, predict } from './interop-helpers.ts';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

interface TorchRecord {
  torch: string;
  opset: number;
  inputShape: number[];
  input: number[];
  output: number[];
}

/** PyTorch's images are NCHW; the imported model takes NHWC. Sequences and vectors pass as they are. */
const rxgradInput = (r: TorchRecord): Float32Array => {
  const values = Float32Array.from(r.input);
  if (r.inputShape.length !== 4) return values;
  const [n, c, h, w] = r.inputShape as [number, number, number, number];
  return nchwToNhwc(values, n, c, h, w);
};

const cases: { name: string; what: string; kinds: string[]; classes: number; check?: (model: Model) => void }[] = [
  {
    name: 'torch_cnn', what: 'a CNN (conv, batch-norm, pools, flatten, linear)', classes: 5,
    kinds: ['conv2d', 'batchNorm', 'relu', 'maxPool2d', 'conv2d', 'relu', 'avgPool2d', 'flatten', 'dense'],
    check: (m) => assert.deepEqual([...m.inputShape], [8, 8, 1], 'NCHW [1, 8, 8] becomes NHWC'),
  },
  {
    name: 'torch_resnet', what: 'a ResNet block (conv-BN-ReLU-conv-BN + skip) as a residual layer', classes: 3,
    kinds: ['conv2d', 'batchNorm', 'relu', 'residual', 'relu', 'globalAvgPool2d', 'dense'],
    check: (m) => assert.deepEqual((m.layers[3]!.config()['layers'] as { kind: string }[]).map((l) => l.kind), ['conv2d', 'batchNorm', 'relu', 'conv2d', 'batchNorm']),
  },
  {
    name: 'torch_mlp_ln', what: 'an MLP whose LayerNorm and tanh-GELU are elementwise ops (opset 13)', classes: 3,
    kinds: ['dense', 'layerNorm', 'gelu', 'dense'], check: (m) => assert.equal(m.layers[1]!.config()['epsilon'], 1e-5),
  },
  { name: 'torch_lstm', what: 'an LSTM (batch_first, h_n[-1], linear)', classes: 4, kinds: ['lstm', 'dense'] },
  { name: 'torch_gru', what: 'a GRU (batch_first, h_n[-1], linear)', classes: 4, kinds: ['gru', 'dense'] },
];

describe('PyTorch-exported ONNX models', () => {
  after(() => closeDefaultEngine());

  for (const [i, c] of cases.entries()) {
    it(`${c.what} predicts what PyTorch did, then fine-tunes`, async () => {
      const record = JSON.parse(await readFile(fixture(`${c.name}.json`), 'utf8')) as TorchRecord;
      const model = await importOnnx(fixture(`${c.name}.onnx`));
      try {
        assert.deepEqual(model.layers.map((l) => l.kind), c.kinds);
        c.check?.(model);
        assertCloseTo(await predict(model, rxgradInput(record)), record.output, `${c.name} (torch ${record.torch}, opset ${record.opset})`);
        const { first, last } = await fineTune(model, c.classes, 7 + i);
        assert.ok(last < 0.8 * first, `fine-tuning: loss ${first} → ${last} should fall`);
      } finally {
        model.dispose();
      }
    });
  }
});
