/**
 * loadWeights: PyTorch state dicts (safetensors written by test/fixtures/make_torch_onnx.py from the
 * same models as the ONNX fixtures) into rxgrad models built in code, names mapped by a table or a
 * function. The LSTM and GRU (gate orders, [out, in] transposes, bias pairs) then predict PyTorch's
 * recorded outputs to 1e-5, as does PyTorch's TransformerEncoderLayer (its packed in_proj split in three); the CNN's conv kernels (OIHW → HWIO) equal those the ONNX importer reads
 * from the same model; the report lists loaded, missing and left-over names; bad maps and values are
 * errors naming the tensor and leave the model unchanged.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { closeDefaultEngine } from '../src/engine.ts';
import { sequential, type Model } from '../src/model.ts';
import { decodeSafetensors, encodeSafetensors } from '../src/safetensors.ts';
import * as op from '../operators/index.ts';
import { loadWeights, loadWeightsFrom, WeightLoadError } from '../src/interop/named-weights.ts';
import { importOnnx } from '../src/interop/onnx-import.ts';
import { assertCloseTo, predict } from './interop-helpers.ts';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

async function assertPredictsTorch(model: Model, name: string): Promise<void> {
  const record = JSON.parse(await readFile(fixture(`${name}.json`), 'utf8')) as { input: number[]; output: number[] };
  assertCloseTo(await predict(model, Float32Array.from(record.input)), record.output, `${name} vs PyTorch`);
}

describe('loadWeights (PyTorch state dicts in safetensors)', () => {
  after(() => closeDefaultEngine());

  it('an LSTM by a table: gates, transposes and bias_ih + bias_hh; predicts what PyTorch did', async () => {
    const model = sequential([op.lstm({ units: 6 }), op.dense(4)], { inputShape: [7, 3] });
    const report = await loadWeights(model, fixture('torch_lstm.safetensors'), {
      map: {
        'rnn.weight_ih_l0': 'lstm_1/kernel', 'rnn.weight_hh_l0': 'lstm_1/recurrentKernel', 'rnn.bias_ih_l0': 'lstm_1/bias', 'rnn.bias_hh_l0': 'lstm_1/bias',
        'head.weight': 'dense_1/kernel', 'head.bias': 'dense_1/bias',
      },
    });
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.unused, []);
    assert.deepEqual(report.loaded.map((l) => [l.target, l.sources.length]).sort(), [['dense_1/bias', 1], ['dense_1/kernel', 1], ['lstm_1/bias', 2], ['lstm_1/kernel', 1], ['lstm_1/recurrentKernel', 1]]);
    await assertPredictsTorch(model, 'torch_lstm');
    model.dispose();
  });

  it('a GRU by a function: gate order r z n → z r h, bias rows; predicts what PyTorch did', async () => {
    const model = sequential([op.gru({ units: 6 }), op.dense(4)], { inputShape: [7, 3] });
    const names: Record<string, string> = { weight_ih_l0: 'kernel', weight_hh_l0: 'recurrentKernel', bias_ih_l0: 'bias', bias_hh_l0: 'bias' };
    const report = await loadWeights(model, fixture('torch_gru.safetensors'), {
      map: (n) => (n.startsWith('rnn.') ? `gru_1/${names[n.slice(4)]}` : n.replace('head.weight', 'dense_1/kernel').replace('head.bias', 'dense_1/bias')),
    });
    assert.deepEqual([report.missing, report.unused], [[], []]);
    await assertPredictsTorch(model, 'torch_gru');
    model.dispose();
  });

  it("a CNN's conv kernels (OIHW → HWIO) and batch-norm equal what the ONNX importer reads; the report lists missing and left-over names", async () => {
    const model = sequential([
      op.conv2d(4, 3, { padding: 'same' }), op.batchNorm({ epsilon: 1e-5 }), op.relu(), op.maxPool2d(2),
      op.conv2d(6, 3, { padding: { top: 1, bottom: 1, left: 0, right: 0 } }), op.relu(), op.avgPool2d(2), op.flatten(), op.dense(5),
    ], { inputShape: [8, 8, 1] });
    const bn: Record<string, string> = { weight: 'gamma', bias: 'beta', running_mean: 'movingMean', running_var: 'movingVariance' };
    const report = await loadWeights(model, fixture('torch_cnn.safetensors'), {
      map: (n) => {
        const [, index, field] = /^features\.(\d+)\.(\w+)$/.exec(n) ?? [];
        if (index === '0') return `conv2d_1/${field === 'weight' ? 'kernel' : 'bias'}`;
        if (index === '1') return `batchNorm_1/${bn[field!]}`;
        if (index === '4') return `conv2d_2/${field === 'weight' ? 'kernel' : 'bias'}`;
        return null; // the linear layer reads a CHW-ordered flatten: left to the ONNX importer, which reorders it.
      },
    });
    assert.deepEqual(report.missing, ['dense_1/kernel', 'dense_1/bias']);
    assert.deepEqual(report.unused, ['features.8.weight', 'features.8.bias']);
    assert.equal(report.loaded.find((l) => l.target === 'conv2d_1/kernel')!.conversion, 'OIHW → HWIO');
    const viaOnnx = await importOnnx(fixture('torch_cnn.onnx'));
    const onnxWeights = viaOnnx.getWeights();
    const mine = model.getWeights();
    for (const name of ['conv2d_1/kernel', 'conv2d_1/bias', 'batchNorm_1/gamma', 'batchNorm_1/movingVariance', 'conv2d_2/kernel']) assert.deepEqual(mine.get(name), onnxWeights.get(name), name);
    viaOnnx.dispose();
    model.dispose();
  });

  it("PyTorch's TransformerEncoderLayer (packed in_proj split into query/key/value) predicts what PyTorch did", async () => {
    const model = sequential([op.transformerEncoderBlock({ heads: 2, dim: 8, ffDim: 16, norm: 'post', activation: 'relu', epsilon: 1e-5 })], { inputShape: [5, 8] });
    const block = 'transformerEncoderBlock_1';
    const attention = `${block}/self_attention/multiHeadAttention_1`;
    const report = await loadWeights(model, fixture('torch_transformer.safetensors'), {
      map: {
        'self_attn.in_proj_weight': ['query', 'key', 'value'].map((p) => `${attention}/${p}/kernel`),
        'self_attn.in_proj_bias': ['query', 'key', 'value'].map((p) => `${attention}/${p}/bias`),
        'self_attn.out_proj.weight': `${attention}/output/kernel`, 'self_attn.out_proj.bias': `${attention}/output/bias`,
        'linear1.weight': `${block}/feed_forward/dense_1/kernel`, 'linear1.bias': `${block}/feed_forward/dense_1/bias`,
        'linear2.weight': `${block}/feed_forward/dense_2/kernel`, 'linear2.bias': `${block}/feed_forward/dense_2/bias`,
        'norm1.weight': `${block}/self_attention_norm/gain`, 'norm1.bias': `${block}/self_attention_norm/bias`,
        'norm2.weight': `${block}/feed_forward_norm/gain`, 'norm2.bias': `${block}/feed_forward_norm/bias`,
      },
    });
    assert.deepEqual([report.missing, report.unused], [[], []]);
    assert.deepEqual(report.loaded.find((l) => l.target === `${attention}/key/kernel`), { target: `${attention}/key/kernel`, sources: ['self_attn.in_proj_weight[1/3]'], conversion: 'transposed [out, in] → [in, out]' });
    await assertPredictsTorch(model, 'torch_transformer');
    model.dispose();
  });

  it('bad maps, shapes and values are errors naming the tensor, and the model is unchanged', async () => {
    const model = sequential([op.dense(3)], { inputShape: [4] });
    const before = model.getWeights();
    const t = (shape: number[], fill = 0.5) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill) });
    const file = (entries: Record<string, ReturnType<typeof t>>) => decodeSafetensors(encodeSafetensors(new Map(Object.entries(entries)))).tensors;
    assert.throws(() => loadWeightsFrom(model, file({ 'fc.weight': t([3, 4]) }), { map: { 'fc.weight': 'dense_9/kernel' } }, 'a.safetensors'),
      (e: Error) => e instanceof WeightLoadError && /a\.safetensors: 'fc\.weight' maps to 'dense_9\/kernel', which the model does not have \(its parameters: dense_1\/kernel, dense_1\/bias\)/.test(e.message));
    assert.throws(() => loadWeightsFrom(model, file({ 'fc.weight': t([3, 4]), 'fc.bias': t([4]) }), { map: { 'fc.weight': 'dense_1/kernel', 'fc.bias': 'dense_1/bias' } }, 'b.safetensors'),
      /b\.safetensors: 'fc\.bias' \[4\] → 'dense_1\/bias' \[3\]: 4 values for 3/);
    assert.throws(() => loadWeightsFrom(model, file({ 'fc.weight': t([4, 3]) }), { map: { 'fc.weight': 'dense_1/kernel' } }), /'fc\.weight' \[4, 3\] → 'dense_1\/kernel' \[4, 3\]: expected PyTorch's \[3, 4\] \(\[out, in\]\)/);
    assert.throws(() => loadWeightsFrom(model, file({ 'fc.weight': t([3, 4], Number.NaN) }), { map: { 'fc.weight': 'dense_1/kernel' } }), /'fc\.weight' holds NaN at element 0/);
    assert.throws(() => loadWeightsFrom(model, file({ 'fc.weight': t([3, 4]) }), { map: { 'fc.weight': 'dense_1/kernel' }, strict: true }), /no tensor for dense_1\/bias \(strict\)/);
    assert.throws(() => loadWeightsFrom(model, file({ 'fc.weight': t([3, 4]) }), { map: { 'fc.weight': ['dense_1/kernel', 'dense_1/bias'] } }), /'fc\.weight' \[3, 4\] cannot be split into 2 equal parts/);
    assert.deepEqual(model.getWeights(), before, 'no parameter changed');
    const report = loadWeightsFrom(model, file({ 'dense_1/kernel': t([4, 3], 0.25) }), { layout: 'rxgrad' });
    assert.deepEqual(report.loaded, [{ target: 'dense_1/kernel', sources: ['dense_1/kernel'], conversion: 'copied' }]);
    assert.deepEqual(report.missing, ['dense_1/bias']);
    model.dispose();
  });
});
