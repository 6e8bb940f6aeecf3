/**
 * ONNX import read node by node (the route foreign files take), checked on rxgrad's own exports with
 * the layer description ignored, and bad files: truncated protobuf, an unsupported opset, shapes that do
 * not chain, NaN weights, unsupported operators (one error listing them all), and layers that cannot be
 * exported. Each error must name the node, tensor or layer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { closeDefaultEngine } from '../src/engine.ts';
import type { Layer } from '../src/layer.ts';
import { sequential } from '../src/model.ts';
import { Random } from '../src/random.ts';
import * as op from '../operators/index.ts';
import { exportOnnx, toOnnx } from '../src/interop/onnx-export.ts';
import { fromOnnx, importOnnx } from '../src/interop/onnx-import.ts';
import { encodeModel, floatTensor, onnx, OnnxError, type NodeProto, type TensorProto } from '../src/interop/onnx-proto.ts';
import { predict } from './interop-helpers.ts';

const rng = new Random(5);
const noise = (n: number) => Float32Array.from({ length: n }, () => rng.uniform() * 2 - 1);

/** A one-input float graph from nodes and initializers (opset 17 unless given). */
function graph(inputShape: number[], nodes: NodeProto[], initializers: TensorProto[], opset = 17, output = 'y'): Uint8Array {
  const io = (name: string, shape: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'batch' }, ...shape.map((d) => ({ dimValue: d }))] } } } });
  return encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: opset }], graph: { name: 'g', node: nodes, initializer: initializers, input: [io('x', inputShape)], output: [io(output, [])] } });
}

describe('ONNX import, node by node', () => {
  after(() => closeDefaultEngine());

  const chains: [string, () => Layer[], number[]][] = [
    ['conv (same, stride 2, dilation), batchNorm, pools, flatten, dense, softmax', () => [
      op.conv2d(4, 3, { padding: 'same', strides: 2 }), op.batchNorm(), op.relu(), op.conv2d(3, [2, 3], { dilation: [2, 1], padding: { top: 1, bottom: 0, left: 2, right: 1 } }),
      op.maxPool2d(2, { strides: 1, padding: 'same' }), op.avgPool2d(2), op.flatten(), op.dense(5), op.leakyRelu({ slope: 0.2 }), op.dense(3), op.softmax(),
    ], [9, 8, 2]],
    ['globalAvgPool2d, dense, tanh, sigmoid', () => [op.conv2d(3, 1), op.globalAvgPool2d(), op.dense(4), op.tanh(), op.sigmoid()], [4, 4, 2]],
    ['lstm (sequences), gru (sequences), simpleRnn (last), dense', () => [op.lstm({ units: 4, returnSequences: true }), op.gru({ units: 3, returnSequences: true }), op.simpleRnn({ units: 5 }), op.dense(2)], [6, 3]],
    ['dense over sequences, batchNorm on sequences', () => [op.dense(4), op.batchNorm(), op.gelu()], [3, 5]],
    ['layerNorm and gelu (composed of elementwise ops: read by what they compute)', () => [op.dense(6), op.layerNorm(), op.gelu(), op.dense(5), op.layerNorm({ epsilon: 1e-3 }), op.dense(3)], [4]],
  ];
  for (const [what, layers, inputShape] of chains) for (const opset of [13, 21]) {
    it(`reads back rxgrad's export of ${what} at opset ${opset}: same layers, bitwise weights and outputs`, async () => {
      const model = sequential(layers(), { inputShape, seed: 2 });
      model.setWeights(new Map([...model.getWeights()].map(([name, v]) => [name, name.endsWith('movingVariance') ? v.map(() => 0.5 + rng.uniform()) : noise(v.length)])));
      const imported = fromOnnx(toOnnx(model, { opset }), 'export', { ignoreMetadata: true });
      try {
        assert.deepEqual(imported.layers.map((l) => l.kind), model.layers.map((l) => l.kind));
        for (const [i, l] of imported.layers.entries()) if (['layerNorm', 'batchNorm', 'leakyRelu'].includes(l.kind)) assert.deepEqual(l.config(), model.layers[i]!.config(), `${l.name} config`);
        const a = model.getWeights();
        const b = imported.getWeights();
        for (const [name, values] of a) assert.deepEqual(b.get(name), values, `weight ${name}`);
        const features = noise(3 * inputShape.reduce((p, d) => p * d, 1));
        assert.deepEqual(await predict(imported, features), await predict(model, features));
      } finally {
        imported.dispose();
        model.dispose();
      }
    });
  }

  it('importOnnx(exportOnnx(m)) through a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rxgrad-onnx-'));
    const model = sequential([op.dense(3), op.relu()], { inputShape: [2], seed: 1 });
    try {
      await exportOnnx(model, join(dir, 'm.onnx'));
      const back = await importOnnx(join(dir, 'm.onnx'));
      assert.deepEqual(back.getWeights(), model.getWeights());
      back.dispose();
    } finally {
      model.dispose();
      await rm(dir, { recursive: true });
    }
  });
});

describe('bad ONNX files and unexportable layers: clear errors', () => {
  const W = floatTensor('W', [4, 3], noise(12));
  const b = floatTensor('b', [3], noise(3));
  const gemm: NodeProto = { opType: 'Gemm', name: 'fc1', input: ['x', 'W', 'b'], output: ['y'] };

  it('a well-formed Gemm graph imports (the baseline the broken ones change)', () => {
    const model = fromOnnx(graph([4], [gemm], [W, b]));
    assert.deepEqual(model.layers.map((l) => l.kind), ['dense']);
    model.dispose();
  });

  it('truncated protobuf', async () => {
    const bytes = toOnnx(sequential([op.dense(3)], { inputShape: [2] }));
    assert.throws(() => fromOnnx(bytes.subarray(0, Math.floor(bytes.length * 0.6)), 'cut.onnx'), (e: Error) => e instanceof OnnxError && /cut\.onnx: not a readable ONNX protobuf \(truncated or corrupt\?\)/.test(e.message));
    assert.throws(() => fromOnnx(new TextEncoder().encode('{"not": "onnx"}'), 'x.json'), /x\.json: /);
  });

  it('an opset outside 13–21', () => {
    assert.throws(() => fromOnnx(graph([4], [gemm], [W, b], 9), 'old.onnx'), /old\.onnx: opset 9 is not supported \(this library reads opsets 13–21/);
    assert.throws(() => toOnnx(sequential([op.dense(3)], { inputShape: [2] }), { opset: 7 }), /opset must be an integer in 13–21, got 7/);
  });

  it('shapes that do not chain name the node and both shapes', () => {
    assert.throws(() => fromOnnx(graph([5], [gemm], [W, b]), 'm.onnx'), /node 'fc1' \(Gemm\): shapes do not chain: the input has 5 features .* weight 'W' \[4, 3\] takes 4/);
    const conv: NodeProto = { opType: 'Conv', name: 'conv1', input: ['x', 'K'], output: ['y'], attribute: [{ name: 'kernel_shape', type: 7, ints: [3, 3] }] };
    assert.throws(() => fromOnnx(graph([2, 6, 6], [conv], [floatTensor('K', [4, 3, 3, 3], noise(108))])), /node 'conv1' \(Conv\): shapes do not chain: the input has 2 channels .* weight 'K' \[4, 3, 3, 3\] takes 3/);
    const reshape: NodeProto = { opType: 'Reshape', name: 'r', input: ['x', 's'], output: ['y'] };
    assert.throws(() => fromOnnx(graph([6], [reshape], [{ name: 's', dims: [2], dataType: 7, int64Data: [-1, 4] }])), /node 'r' \(Reshape\): shapes do not chain: cannot reshape/);
  });

  it('NaN and infinite weights name the tensor and element', () => {
    const bad = noise(12);
    bad[7] = Number.NaN;
    assert.throws(() => fromOnnx(graph([4], [gemm], [floatTensor('W', [4, 3], bad), b]), 'nan.onnx'), /nan\.onnx: initializer 'W' holds NaN at element 7/);
    const model = sequential([op.dense(3)], { inputShape: [2] });
    const proto = onnx.ModelProto.decode(toOnnx(model));
    const kernel = proto.graph!.initializer!.find((t) => t.name === 'dense_1/kernel')!;
    const values = new Float32Array(new Uint8Array(kernel.rawData!).buffer);
    values[2] = Number.POSITIVE_INFINITY;
    kernel.rawData = new Uint8Array(values.buffer);
    assert.throws(() => fromOnnx(onnx.ModelProto.encode(proto).finish(), 'inf.onnx'), /inf\.onnx: initializer 'dense_1\/kernel' holds Infinity at element 2/);
    model.dispose();
  });

  it('parallel branches are refused naming the node; a residual Add is read as a residual block', () => {
    const branches: NodeProto[] = [
      { opType: 'Relu', name: 'left', input: ['x'], output: ['a'] }, { opType: 'Sigmoid', name: 'right', input: ['x'], output: ['b'] },
      { opType: 'Add', name: 'merge', input: ['a', 'b'], output: ['y'] },
    ];
    assert.throws(() => fromOnnx(graph([4], branches, []), 'm.onnx'), /m\.onnx: node 'right' \(Sigmoid\): reads 'x' while the chain is at 'a': parallel branches are not supported/);
    const skip: NodeProto[] = [
      { opType: 'Gemm', name: 'fc1', input: ['x', 'W', 'b'], output: ['h'] }, { opType: 'Relu', name: 'r', input: ['h'], output: ['a'] },
      { opType: 'Gemm', name: 'fc2', input: ['a', 'W2'], output: ['c'] }, { opType: 'Add', name: 'sum', input: ['a', 'c'], output: ['y'] },
    ];
    const w2 = noise(9);
    const model = fromOnnx(graph([4], skip, [W, b, floatTensor('W2', [3, 3], w2)]));
    assert.deepEqual(model.layers.map((l) => l.kind), ['dense', 'relu', 'residual']);
    assert.deepEqual(model.getWeights().get('residual_1/dense_2/kernel'), w2, "the block's weights are named under the residual");
    model.dispose();
  });

  it('unsupported operators: one error listing them all', () => {
    const nodes: NodeProto[] = [
      { opType: 'Erf', name: 'e1', input: ['x'], output: ['a'] }, { opType: 'Relu', name: 'r', input: ['a'], output: ['b'] },
      { opType: 'Cos', name: 'c1', input: ['b'], output: ['y'] },
    ];
    assert.throws(() => fromOnnx(graph([4], nodes, []), 'm.onnx'), /m\.onnx: 2 unsupported operators: Erf \(node 'e1'\), Cos \(node 'c1'\)/);
  });

  it('a weight the description needs but the graph lacks is named', () => {
    const model = sequential([op.dense(3)], { inputShape: [2] });
    const proto = onnx.ModelProto.decode(toOnnx(model));
    proto.graph!.initializer = proto.graph!.initializer!.filter((t) => t.name !== 'dense_1/bias');
    assert.throws(() => fromOnnx(onnx.ModelProto.encode(proto).finish(), 'm.onnx'), /needs the float initializer 'dense_1\/bias' \(shape \[3\]\)/);
    model.dispose();
  });

  it('exporting layers without an ONNX form names each one, and the model stays usable', async () => {
    // A custom kind: relu's behaviour under another name (as a user's registerLayer kind would be).
    const customKind = (kind: string, name: string): Layer => Object.assign(Object.create(Object.getPrototypeOf(op.relu())) as Layer, op.relu(), { kind, name });
    const custom = customKind('myScale', 'scaler');
    const cross = op.multiHeadAttention({ heads: 1, keyDim: 2, cross: { column: 'memory' } });
    const withMemory = sequential([op.embedding(5, 2), cross], { inputShape: [3] });
    const inputs = onnx.ModelProto.decode(toOnnx(withMemory)).graph!.input!.map((i) => i.name);
    assert.deepEqual(inputs, ['input', 'memory'], 'a side column becomes a graph input named after it');
    withMemory.dispose();
    const withCustom = sequential([op.dense(2), custom, op.residual([op.dense(2), customKind('mystery', 'm')])], { inputShape: [2] });
    assert.throws(() => toOnnx(withCustom), /exportOnnx: layers 'scaler' \(myScale\), 'm' \(mystery\) have no ONNX form/);
    assert.equal((await predict(withCustom, noise(4))).length, 4, 'the model still predicts after the failed export');
    withCustom.dispose();
  });

  it('reads the fixture files from disk with their paths in errors', async () => {
    const bytes = await readFile(new URL('./fixtures/torch_cnn.onnx', import.meta.url));
    assert.throws(() => fromOnnx(bytes.subarray(0, 100), 'torch_cnn.onnx'), /torch_cnn\.onnx: /);
  });
});
