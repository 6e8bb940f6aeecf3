/**
 * The TF.js layers format in both directions, checked against @tensorflow/tfjs itself (cpu backend):
 * models built and saved by TF.js (artifacts written as `model.json` + a weight shard, as tfjs-node's
 * file:// handler writes them) load here and predict what TF.js predicts; rxgrad models saved in the
 * format load in TF.js (`tf.loadLayersModel`) and predict what rxgrad predicts. Tolerance
 * 1e-5·max(1, ‖output‖∞). Weights are random (batch-norm statistics included) so every parameter matters.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { closeDefaultEngine } from '../src/engine.ts';
import type { Layer } from '../src/layer.ts';
import { sequential } from '../src/model.ts';
import { Random } from '../src/random.ts';
import * as op from '../operators/index.ts';
import { loadTfjsLayers, saveTfjsLayers, TfjsFormatError, type TfjsModelJson } from '../src/interop/tfjs-layers.ts';
import { assertCloseTo, fineTune, predict } from './interop-helpers.ts';

const rng = new Random(9);
const noise = (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
let dir = '';

/** Saves a TF.js model into `<dir>/<name>/` as tfjs-node's file:// handler would: model.json + weights.bin. */
async function saveFromTfjs(model: tf.LayersModel, name: string): Promise<string> {
  const folder = join(dir, name);
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'weights.bin'), new Uint8Array(artifacts.weightData as ArrayBuffer));
    const json = { format: 'layers-model', generatedBy: 'TensorFlow.js tfjs-layers v4.22.0', modelTopology: artifacts.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }] };
    await writeFile(join(folder, 'model.json'), JSON.stringify(json));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  return join(folder, 'model.json');
}

/** Loads `<folder>/model.json` into TF.js through an IOHandler reading the files (what file:// does in tfjs-node). */
async function loadIntoTfjs(folder: string): Promise<tf.LayersModel> {
  return tf.loadLayersModel({
    load: async () => {
      const json = JSON.parse(await readFile(join(folder, 'model.json'), 'utf8')) as TfjsModelJson;
      const bytes = await readFile(join(folder, json.weightsManifest[0]!.paths[0]!));
      return {
        modelTopology: json.modelTopology as unknown as tf.io.ModelArtifacts['modelTopology'], format: json.format!, weightSpecs: json.weightsManifest[0]!.weights,
        weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      };
    },
  });
}

function randomiseTfjs(model: tf.LayersModel): void {
  model.setWeights(model.weights.map((w) => {
    const shape = w.shape as number[];
    return tf.tensor(noise(shape.reduce((a, b) => a * b, 1), ...(w.name.includes('moving_variance') ? [0.5, 1.5] as const : [-1, 1] as const)), shape);
  }));
}

describe('TF.js layers format', () => {
  before(async () => {
    await tf.setBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'rxgrad-tfjs-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await closeDefaultEngine();
  });

  const tfjsModels: [string, () => tf.LayersModel, number[], boolean][] = [
    ['a CNN (conv same+relu, batch-norm, pools, zero padding, flatten, dense, softmax)', () => tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [9, 8, 2], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }), tf.layers.batchNormalization(),
        tf.layers.maxPooling2d({ poolSize: 2, strides: 1, padding: 'same' }), tf.layers.zeroPadding2d({ padding: [[1, 0], [2, 1]] }),
        tf.layers.conv2d({ filters: 3, kernelSize: [2, 3], strides: 2, dilationRate: 1 }), tf.layers.averagePooling2d({ poolSize: 2, strides: 1 }),
        tf.layers.flatten(), tf.layers.dense({ units: 6, activation: 'tanh' }), tf.layers.dropout({ rate: 0.3 }), tf.layers.leakyReLU({ alpha: 0.2 }),
        tf.layers.dense({ units: 3, activation: 'softmax' }),
      ],
    }), [9, 8, 2], false],
    ['a sequence model (embedding, LSTM, SimpleRNN, layer norm, dense)', () => tf.sequential({
      layers: [
        tf.layers.embedding({ inputShape: [5], inputDim: 7, outputDim: 4 }), tf.layers.lstm({ units: 5, recurrentActivation: 'sigmoid', returnSequences: true }),
        tf.layers.layerNormalization(), tf.layers.simpleRNN({ units: 3 }), tf.layers.dense({ units: 2, activation: 'sigmoid' }),
      ],
    }), [5], true],
    ['a functional chain (tf.model) with dense layers', () => {
      const input = tf.input({ shape: [6] });
      const hidden = tf.layers.dense({ units: 5, activation: 'relu' }).apply(input) as tf.SymbolicTensor;
      return tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2 }).apply(hidden) as tf.SymbolicTensor });
    }, [6], false],
    ['an MLP with global pooling and gelu', () => tf.sequential({
      layers: [tf.layers.conv2d({ inputShape: [4, 4, 3], filters: 5, kernelSize: 1 }), tf.layers.globalAveragePooling2d({}), tf.layers.dense({ units: 4, activation: 'gelu_new' as 'relu' }), tf.layers.reLU(), tf.layers.softmax()],
    }), [4, 4, 3], false],
  ];
  for (const [what, make, shape, ids] of tfjsModels) {
    it(`${what} saved by TF.js loads and predicts what TF.js predicts`, async () => {
      const reference = make();
      randomiseTfjs(reference);
      const path = await saveFromTfjs(reference, what.split(' ')[1]!);
      const model = await loadTfjsLayers(path);
      try {
        const rows = 3;
        const n = rows * shape.reduce((a, b) => a * b, 1);
        const features = ids ? Int32Array.from({ length: n }, () => rng.int(7)) : noise(n);
        const expected = (reference.predict(tf.tensor(Array.from(features), [rows, ...shape])) as tf.Tensor).dataSync() as Float32Array;
        assertCloseTo(await predict(model, features), expected, what);
        if (what.startsWith('a functional chain')) {
          const { first, last } = await fineTune(model, 2, 3);
          assert.ok(last < 0.8 * first, `the loaded model keeps learning: loss ${first} → ${last}`);
        }
      } finally {
        model.dispose();
        reference.dispose();
      }
    });
  }

  const rxModels: [string, () => Layer[], number[], boolean][] = [
    ['a CNN with explicit padding, dilation, batch-norm, pools', () => [
      op.conv2d(4, 3, { padding: { top: 1, bottom: 2, left: 0, right: 1 }, dilation: [1, 2], activation: 'relu' }), op.batchNorm(), op.maxPool2d(2, { padding: 'same' }),
      op.conv2d(3, 2, { strides: 2, padding: 'same' }), op.avgPool2d(2, { strides: 1 }), op.flatten(), op.dense(5), op.relu(), op.dense(3), op.softmax(),
    ], [10, 9, 2], false],
    ['a sequence model (embedding, lstm, layer norm, simpleRnn, leaky relu)', () => [
      op.embedding(6, 4), op.lstm({ units: 5, returnSequences: true }), op.layerNorm({ epsilon: 1e-3 }), op.simpleRnn({ units: 3 }), op.leakyRelu({ slope: 0.1 }), op.dense(2), op.tanh(),
    ], [4], true],
    ['global pooling, sigmoid, dropout', () => [op.conv2d(3, 1), op.globalAvgPool2d(), op.dropout(0.2), op.dense(2), op.sigmoid()], [3, 3, 2], false],
  ];
  for (const [what, layers, shape, ids] of rxModels) {
    it(`${what} saved by rxgrad loads in TF.js and predicts the same; and loads back here bitwise`, async () => {
      const model = sequential(layers(), { inputShape: shape, seed: 4 });
      model.setWeights(new Map([...model.getWeights()].map(([name, v]) => [name, name.endsWith('movingVariance') ? noise(v.length, 0.5, 1.5) : noise(v.length)])));
      const folder = join(dir, `rx-${what.split(' ')[1]}`);
      await saveTfjsLayers(model, folder);
      const loaded = await loadIntoTfjs(folder);
      const back = await loadTfjsLayers(join(folder, 'model.json'));
      try {
        const rows = 3;
        const n = rows * shape.reduce((a, b) => a * b, 1);
        const features = ids ? Int32Array.from({ length: n }, () => rng.int(6)) : noise(n);
        const mine = await predict(model, features);
        assertCloseTo((loaded.predict(tf.tensor(Array.from(features), [rows, ...shape])) as tf.Tensor).dataSync() as Float32Array, mine, `TF.js on ${what}`);
        assert.deepEqual(await predict(back, features), mine, 'rxgrad → TF.js format → rxgrad predicts bitwise the same');
      } finally {
        back.dispose();
        loaded.dispose();
        model.dispose();
      }
    });
  }

  it('layers without a counterpart, and bad files, are errors naming the layer or weight', async () => {
    const gru = sequential([op.gru({ units: 2 })], { inputShape: [3, 2] });
    await assert.rejects(saveTfjsLayers(gru, join(dir, 'gru')), (e: Error) => e instanceof TfjsFormatError && /layer 'gru_1' \(gru\) is the reset-after GRU/.test(e.message));
    gru.dispose();
    const attention = sequential([op.multiHeadAttention({ heads: 1, keyDim: 2 })], { inputShape: [3, 2] });
    await assert.rejects(saveTfjsLayers(attention, join(dir, 'mha')), /layer 'multiHeadAttention_1' \(multiHeadAttention\) has no counterpart/);
    attention.dispose();
    const spatial = sequential([op.spatialDropout2d(0.1)], { inputShape: [2, 2, 1] });
    await assert.rejects(saveTfjsLayers(spatial, join(dir, 'sd')), /layer 'spatialDropout2d_1' \(spatialDropout2d\) has no TF.js counterpart/);
    spatial.dispose();
    const geluModel = sequential([op.gelu()], { inputShape: [2] });
    await assert.rejects(saveTfjsLayers(geluModel, join(dir, 'gelu')), /layer 'gelu_1' \(gelu\) is the tanh-form GELU/);
    geluModel.dispose();

    const hard = tf.sequential({ layers: [tf.layers.lstm({ inputShape: [3, 2], units: 2 })] });
    await assert.rejects(loadTfjsLayers(await saveFromTfjs(hard, 'hard')), /layer 'lstm_LSTM\d+' \(LSTM\): recurrent_activation 'hard_?[sS]igmoid' is not supported/);
    const dense = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2 })] });
    randomiseTfjs(dense);
    const path = await saveFromTfjs(dense, 'nan');
    const weights = new Float32Array(new Uint8Array(await readFile(join(dir, 'nan', 'weights.bin'))).buffer);
    weights[4] = Number.NaN;
    await writeFile(join(dir, 'nan', 'weights.bin'), new Uint8Array(weights.buffer));
    await assert.rejects(loadTfjsLayers(path), /weight 'dense_Dense\d+\/kernel' holds NaN at element 4/);
    await writeFile(join(dir, 'nan', 'weights.bin'), new Uint8Array(weights.buffer).subarray(0, 20));
    await assert.rejects(loadTfjsLayers(path), /weight 'dense_Dense\d+\/kernel' \[3, 2\] ends at byte 24, past the 20 bytes of the weight files/);
    await writeFile(join(dir, 'nan', 'weights.bin'), new Uint8Array(noise(8).buffer));
    const input = tf.input({ shape: [3] });
    const branched = tf.model({ inputs: input, outputs: tf.layers.add().apply([tf.layers.dense({ units: 2, name: 'left' }).apply(input), tf.layers.dense({ units: 2, name: 'right' }).apply(input)] as tf.SymbolicTensor[]) as tf.SymbolicTensor });
    await assert.rejects(loadTfjsLayers(await saveFromTfjs(branched, 'branched')), /layer 'right' \(Dense\) takes \[input\d+\]; rxgrad reads functional models that are one chain/);
    const json = JSON.parse(await readFile(path, 'utf8')) as TfjsModelJson;
    const layer = (json.modelTopology.config as { layers: { class_name: string; config: Record<string, unknown> }[] }).layers[0]!;
    layer.config['units'] = 0;
    await writeFile(path, JSON.stringify(json));
    await assert.rejects(loadTfjsLayers(path), /layer 'dense_Dense\d+' \(Dense\): dense: units must be a positive integer, got 0/);
    layer.class_name = 'Conv3D';
    await writeFile(path, JSON.stringify(json));
    await assert.rejects(loadTfjsLayers(path), /layer 'dense_Dense\d+' \(Conv3D\): this layer class has no rxgrad counterpart/);
  });
});
