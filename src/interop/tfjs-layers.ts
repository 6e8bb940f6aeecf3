/**
 * The TF.js layers format (`model.json` + binary weight shards; what `tensorflowjs_converter` makes of a
 * Keras model and what `tf.LayersModel.save` writes), in and out, for the layers both sides have:
 * Dense, Conv2D (+ ZeroPadding2D for explicit padding), Max/AveragePooling2D, GlobalAveragePooling2D,
 * Flatten, BatchNormalization, Dropout, SpatialDropout2D, activations, Embedding, LayerNormalization,
 * LSTM and SimpleRNN (sigmoid/tanh), GRU (reset_after = true; in only: TF.js's own GRU lacks it).
 * rxgrad and Keras share weight layouts (HWIO kernels, `[in, out]` dense, gates i f c o), so weights
 * copy as they are. Layouts: docs/INTEROP.md.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Layer } from '../layer.ts';
import { sequential, type Model } from '../model.ts';
import { formatShape, sizeOf, type Shape } from '../tensor.ts';
import { readPadding, type Padding2d } from '../../operators/conv2d.ts';
import { ConfigReader } from '../registry.ts';
import * as op from '../../operators/index.ts';
import { modelWithWeights, rethrowNamed, type ImportModelOptions } from './build.ts';
import { avgPool2d } from '../../operators/avg-pool2d.ts';
import { spatialDropout2d } from '../../operators/spatial-dropout2d.ts';

/** A TF.js/Keras model description rxgrad cannot read or write; names the layer or weight. */
export class TfjsFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TfjsFormatError';
  }
}

/** One weight entry of a `weightsManifest` group. */
export interface TfjsWeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32';
}

/** The content of `model.json` (the parts rxgrad reads and writes). */
export interface TfjsModelJson {
  format?: string;
  generatedBy?: string;
  modelTopology: { class_name: string; config: unknown; keras_version?: string; backend?: string };
  weightsManifest: { paths: string[]; weights: TfjsWeightSpec[] }[];
}

interface KerasLayer {
  class_name: string;
  config: Record<string, unknown>;
}

const ACTIVATIONS: Record<string, (name: string) => Layer> = {
  relu: (name) => op.relu({ name }), sigmoid: (name) => op.sigmoid({ name }), tanh: (name) => op.tanh({ name }),
  softmax: (name) => op.softmax({ name }), gelu_new: (name) => op.gelu({ name }),
};
const ACTIVATION_OF_KIND: Record<string, string> = { relu: 'relu', sigmoid: 'sigmoid', tanh: 'tanh', softmax: 'softmax' };

const pairOf = (v: unknown, fallback: number): [number, number] => (Array.isArray(v) ? [Number(v[0]), Number(v[1])] : typeof v === 'number' ? [v, v] : [fallback, fallback]);

// ---------------------------------------------------------------- in

/** Layer names a Keras `inbound_nodes` entry refers to (Keras 2 `[[name, node, tensor, kwargs]]`, Keras 3 `keras_history`). */
function inboundNames(v: unknown, into: string[] = []): string[] {
  if (Array.isArray(v)) {
    if (typeof v[0] === 'string' && typeof v[1] === 'number') into.push(v[0]);
    else for (const e of v) inboundNames(e, into);
  } else if (v && typeof v === 'object') {
    const history = (v as { keras_history?: unknown[] }).keras_history;
    if (Array.isArray(history) && typeof history[0] === 'string') into.push(history[0]);
    else for (const e of Object.values(v)) inboundNames(e, into);
  }
  return into;
}

/**
 * The Keras layers of a topology, in order: a Sequential (or its older bare-list form), or a functional
 * Model whose layers form one chain (each layer fed by the one before it; anything else is an error
 * naming the layer that branches or merges).
 */
function kerasLayers(topology: TfjsModelJson['modelTopology'], source: string): KerasLayer[] {
  const top = (topology as { model_config?: TfjsModelJson['modelTopology'] }).model_config ?? topology;
  const functional = top.class_name === 'Model' || top.class_name === 'Functional';
  if (top.class_name !== 'Sequential' && !functional) throw new TfjsFormatError(`${source}: modelTopology is a '${top.class_name}'; rxgrad reads Sequential models and single-chain functional Models`);
  const config = top.config as { layers?: (KerasLayer & { name?: string; inbound_nodes?: unknown })[] } | KerasLayer[];
  const layers = Array.isArray(config) ? config : config.layers;
  if (!Array.isArray(layers) || layers.length === 0) throw new TfjsFormatError(`${source}: modelTopology.config has no layers`);
  if (functional) {
    layers.forEach((layer, i) => {
      const from = inboundNames((layer as { inbound_nodes?: unknown }).inbound_nodes ?? []);
      const previous = i > 0 ? String(layers[i - 1]!.config['name'] ?? (layers[i - 1] as { name?: string }).name) : null;
      const ok = i === 0 ? from.length === 0 : from.length === 1 && from[0] === previous;
      if (!ok) throw new TfjsFormatError(`${source}: layer '${String(layer.config['name'])}' (${layer.class_name}) takes [${from.join(', ')}]; rxgrad reads functional models that are one chain (each layer fed by the previous)`);
    });
  }
  return layers;
}

/**
 * Layers and weights of a TF.js layers model (see {@link loadTfjsLayers}); `weightData` is the groups'
 * shards concatenated in manifest order.
 *
 * Usage: `const model = fromTfjsLayers(JSON.parse(json), weightBytes);`
 */
export function fromTfjsLayers(json: TfjsModelJson, weightData: Uint8Array, source = 'model.json', options: ImportModelOptions = {}): Model {
  const specs = (json.weightsManifest ?? []).flatMap((g) => g.weights);
  const available = new Map<string, Float32Array>();
  let offset = 0;
  for (const spec of specs) {
    if (spec.dtype !== 'float32') throw new TfjsFormatError(`${source}: weight '${spec.name}' is ${spec.dtype}; rxgrad reads float32 weights (no quantisation)`);
    const bytes = sizeOf(spec.shape) * 4;
    if (offset + bytes > weightData.length) throw new TfjsFormatError(`${source}: weight '${spec.name}' ${formatShape(spec.shape)} ends at byte ${offset + bytes}, past the ${weightData.length} bytes of the weight files (truncated shard?)`);
    const values = new Float32Array(weightData.slice(offset, offset + bytes).buffer);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new TfjsFormatError(`${source}: weight '${spec.name}' holds ${values[bad]} at element ${bad}: weights must be finite`);
    available.set(spec.name.replace(/:0$/, ''), values);
    offset += bytes;
  }
  if (offset !== weightData.length) throw new TfjsFormatError(`${source}: the manifest describes ${offset} bytes of weights, the weight files hold ${weightData.length}`);

  const layers: Layer[] = [];
  const weights = new Map<string, Float32Array>();
  let inputShape: Shape | null = null;
  let pendingPadding: Padding2d | null = null;
  for (const k of kerasLayers(json.modelTopology, source)) {
    const c = k.config;
    const name = String(c['name'] ?? `${k.class_name.toLowerCase()}_${layers.length + 1}`);
    const where = `${source}: layer '${name}' (${k.class_name})`;
    const fail = (message: string): never => {
      throw new TfjsFormatError(`${where}: ${message}`);
    };
    const batchShape = (c['batch_input_shape'] ?? c['batch_shape']) as (number | null)[] | undefined;
    if (inputShape === null) {
      if (!batchShape) fail('the first layer needs batch_input_shape (the per-example input shape)');
      inputShape = batchShape!.slice(1).map((d, i) => (typeof d === 'number' && d > 0 ? d : fail(`batch_input_shape axis ${i + 1} is ${d}; rxgrad needs a fixed per-example shape`)));
    }
    if (k.class_name === 'InputLayer') continue;
    // Keras stores weights under `<layer>/<weight>` (Keras 2 cells: `<layer>/<cell>/<weight>`).
    const weight = (w: string): Float32Array => {
      const found = [...available.keys()].find((key) => key === `${name}/${w}` || (key.startsWith(`${name}/`) && key.endsWith(`/${w}`)));
      if (!found) return fail(`weight '${name}/${w}' is not in the weights manifest`);
      const v = available.get(found)!;
      available.delete(found);
      return v;
    };
    const push = (layer: Layer, params: Record<string, Float32Array> = {}) => {
      layers.push(layer);
      for (const [p, v] of Object.entries(params)) weights.set(`${layer.name}/${p}`, v);
    };
    const activation = (field = 'activation') => {
      const a = String(c[field] ?? 'linear');
      if (a === 'linear') return;
      const make = ACTIVATIONS[a] ?? fail(`activation '${a}' has no rxgrad layer (${Object.keys(ACTIVATIONS).join(', ')}, linear)`);
      push(make(`${name}_${a}`));
    };
    const useBias = c['use_bias'] !== false;
    if (pendingPadding && k.class_name !== 'Conv2D') fail('follows a ZeroPadding2D: rxgrad folds zero padding into the next Conv2D only');
    try {
      switch (k.class_name) {
        case 'Dense':
          push(op.dense(Number(c['units']), { useBias, name }), { kernel: weight('kernel'), ...(useBias ? { bias: weight('bias') } : {}) });
          activation();
          break;
        case 'Conv2D': {
          if ((c['data_format'] ?? 'channels_last') !== 'channels_last') fail(`data_format '${String(c['data_format'])}': rxgrad convolves NHWC (channels_last)`);
          if (Number(c['groups'] ?? 1) !== 1) fail('grouped convolutions are not supported');
          const padding: Padding2d = pendingPadding ?? (c['padding'] === 'same' ? 'same' : 'valid');
          if (pendingPadding && c['padding'] !== 'valid') fail("a ZeroPadding2D before a 'same' convolution is not supported");
          pendingPadding = null;
          const relu = c['activation'] === 'relu';
          push(op.conv2d(Number(c['filters']), pairOf(c['kernel_size'], 1), { strides: pairOf(c['strides'], 1), dilation: pairOf(c['dilation_rate'], 1), padding, useBias, activation: relu ? 'relu' : 'linear', name }),
            { kernel: weight('kernel'), ...(useBias ? { bias: weight('bias') } : {}) });
          if (!relu) activation();
          break;
        }
        case 'ZeroPadding2D': {
          // Keras: n (all sides), [h, w] (symmetric per axis) or [[top, bottom], [left, right]].
          const p = c['padding'];
          const axis = (v: unknown): [number, number] => (Array.isArray(v) ? [Number(v[0]), Number(v[1])] : [Number(v), Number(v)]);
          const [[top, bottom], [left, right]] = Array.isArray(p) ? [axis(p[0]), axis(p[1])] : [axis(p ?? 1), axis(p ?? 1)];
          pendingPadding = { top, bottom, left, right };
          break;
        }
        case 'MaxPooling2D':
        case 'AveragePooling2D': {
          const pool = pairOf(c['pool_size'], 2);
          const options = { strides: c['strides'] ? pairOf(c['strides'], 1) : pool, padding: (c['padding'] === 'same' ? 'same' : 'valid') as Padding2d, name };
          push(k.class_name === 'MaxPooling2D' ? op.maxPool2d(pool, options) : avgPool2d(pool, options));
          break;
        }
        case 'GlobalAveragePooling2D':
          if (c['keepdims'] === true) fail('keepdims = true is not supported');
          push(op.globalAvgPool2d({ name }));
          break;
        case 'Flatten':
          push(op.flatten({ name }));
          break;
        case 'Dropout':
          push(op.dropout(Number(c['rate']), { name }));
          break;
        case 'SpatialDropout2D':
          push(spatialDropout2d(Number(c['rate']), { name }));
          break;
        case 'Activation':
          activation();
          break;
        case 'ReLU':
          if (c['max_value'] != null || Number(c['threshold'] ?? 0) !== 0 || Number(c['negative_slope'] ?? 0) !== 0) fail('only the plain ReLU (no max_value, threshold or slope) is supported');
          push(op.relu({ name }));
          break;
        case 'LeakyReLU':
          push(op.leakyRelu({ slope: Number(c['alpha'] ?? c['negative_slope'] ?? 0.3), name }));
          break;
        case 'Softmax':
          if (c['axis'] !== undefined && c['axis'] !== -1 && c['axis'] !== layersRank(layers, inputShape!)) fail(`axis ${JSON.stringify(c['axis'])}: rxgrad's softmax normalises the last axis`);
          push(op.softmax({ name }));
          break;
        case 'BatchNormalization': {
          const axis = Array.isArray(c['axis']) ? c['axis'][0] : c['axis'];
          const rank = layersRank(layers, inputShape!);
          if (axis !== -1 && axis !== rank) fail(`axis ${JSON.stringify(c['axis'])}: rxgrad normalises the last (channel) axis`);
          const center = c['center'] !== false;
          const scale = c['scale'] !== false;
          push(op.batchNorm({ momentum: Number(c['momentum'] ?? 0.99), epsilon: Number(c['epsilon'] ?? 1e-3), center, scale, name }), {
            ...(scale ? { gamma: weight('gamma') } : {}), ...(center ? { beta: weight('beta') } : {}), movingMean: weight('moving_mean'), movingVariance: weight('moving_variance'),
          });
          break;
        }
        case 'LayerNormalization': {
          const axis = Array.isArray(c['axis']) ? (c['axis'].length === 1 ? c['axis'][0] : NaN) : c['axis'];
          if (axis !== -1 && axis !== layersRank(layers, inputShape!)) fail(`axis ${JSON.stringify(c['axis'])}: rxgrad normalises the last axis`);
          if (c['center'] === false || c['scale'] === false) fail('center = false / scale = false are not supported');
          push(op.layerNorm({ epsilon: Number(c['epsilon'] ?? 1e-3), name }), { gain: weight('gamma'), bias: weight('beta') });
          break;
        }
        case 'Embedding':
          if (c['mask_zero'] === true) fail('mask_zero = true is not supported');
          push(op.embedding(Number(c['input_dim']), Number(c['output_dim']), { name }), { embeddings: weight('embeddings') });
          break;
        case 'LSTM':
        case 'GRU':
        case 'SimpleRNN': {
          if (c['activation'] !== undefined && c['activation'] !== 'tanh') fail(`activation '${String(c['activation'])}' is not supported (tanh)`);
          if (k.class_name !== 'SimpleRNN' && c['recurrent_activation'] !== 'sigmoid') fail(`recurrent_activation '${String(c['recurrent_activation'])}' is not supported (sigmoid; TF.js defaults to hardSigmoid: set recurrentActivation: 'sigmoid')`);
          if (!useBias) fail('use_bias = false is not supported');
          for (const f of ['go_backwards', 'stateful', 'return_state']) if (c[f] === true) fail(`${f} = true is not supported`);
          if (k.class_name === 'GRU' && c['reset_after'] !== true) fail('reset_after = false is not supported (rxgrad implements the reset-after GRU, Keras 2+ default)');
          const options = { units: Number(c['units']), returnSequences: c['return_sequences'] === true, name };
          const params = { kernel: weight('kernel'), recurrentKernel: weight('recurrent_kernel'), bias: weight('bias') };
          push(k.class_name === 'LSTM' ? op.lstm({ ...options, unitForgetBias: c['unit_forget_bias'] !== false }) : k.class_name === 'GRU' ? op.gru(options) : op.simpleRnn(options), params);
          break;
        }
        default:
          fail('this layer class has no rxgrad counterpart');
      }
    } catch (error) {
      // A layer constructor refusing a value (units 0, a NaN rate…) is named with the layer too.
      rethrowNamed(error, TfjsFormatError, where);
    }
  }
  if (pendingPadding) throw new TfjsFormatError(`${source}: the model ends with a ZeroPadding2D`);
  const left = [...available.keys()];
  if (left.length > 0) throw new TfjsFormatError(`${source}: weights ${left.join(', ')} belong to no layer rxgrad read`);
  return modelWithWeights(layers, inputShape!, () => weights, options, 'tfjs', (message) => new TfjsFormatError(`${source}: ${message}`));
}

/** Rank of the per-example shape after the layers so far (built on a throwaway model: shape rules stay in one place). */
function layersRank(layers: readonly Layer[], inputShape: Shape): number {
  if (layers.length === 0) return inputShape.length;
  const probe = sequential(layers.map((l) => op.layerFromConfig(l.kind, l.config(), l.name)), { inputShape });
  const rank = probe.outputShape.length;
  probe.dispose();
  return rank;
}

/**
 * Loads a TF.js layers model (`model.json` and the weight shards it lists, from the same folder) as a
 * trainable rxgrad model.
 *
 * Usage: `const model = await loadTfjsLayers('exported/model.json');`
 */
export async function loadTfjsLayers(path: string, options: ImportModelOptions = {}): Promise<Model> {
  let json: TfjsModelJson;
  try {
    json = JSON.parse(await readFile(path, 'utf8')) as TfjsModelJson;
  } catch (error) {
    throw new TfjsFormatError(`${path}: not a readable model.json: ${(error as Error).message}`);
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) throw new TfjsFormatError(`${path}: needs modelTopology and weightsManifest (a TF.js layers model; graph models are not supported)`);
  const shards = await Promise.all(json.weightsManifest.flatMap((g) => g.paths).map((p) => readFile(join(dirname(path), p))));
  const data = new Uint8Array(shards.reduce((s, b) => s + b.length, 0));
  let at = 0;
  for (const s of shards) {
    data.set(s, at);
    at += s.length;
  }
  return fromTfjsLayers(json, data, path, options);
}

// ---------------------------------------------------------------- out

/**
 * A model as TF.js layers artifacts: `model.json` content and one weight buffer (see {@link saveTfjsLayers}).
 *
 * Usage: `const { modelJson, weightData } = toTfjsLayers(model);`
 */
export function toTfjsLayers(model: Model, shardName = 'group1-shard1of1.bin'): { modelJson: TfjsModelJson; weightData: Uint8Array } {
  const all = model.getWeights();
  const keras: KerasLayer[] = [];
  const specs: TfjsWeightSpec[] = [];
  const chunks: Float32Array[] = [];
  const emit = (class_name: string, config: Record<string, unknown>, params: [string, string][] = []) => {
    // dtype float32 even for token ids: a TF.js layer's dtype is its weights' too (embeddings cast their input).
    if (keras.length === 0) Object.assign(config, { batch_input_shape: [null, ...model.inputShape], dtype: 'float32' });
    keras.push({ class_name, config });
    for (const [kerasName, rxName] of params) {
      const values = all.get(rxName)!;
      const p = model.parameters().find((q) => q.name === rxName)!;
      specs.push({ name: `${String(config['name'])}/${kerasName}`, shape: [...p.shape], dtype: 'float32' });
      chunks.push(values);
    }
  };
  for (const layer of model.layers) {
    const c = layer.config();
    const name = layer.name;
    const n = (k: string) => c[k] as number;
    const fail = (why: string): never => {
      throw new TfjsFormatError(`saveTfjsLayers: layer '${name}' (${layer.kind}) ${why}`);
    };
    const p = (k: string): [string, string] => [k, `${name}/${k}`];
    switch (layer.kind) {
      case 'dense':
        emit('Dense', { name, units: n('units'), activation: 'linear', use_bias: c['useBias'] }, c['useBias'] ? [p('kernel'), p('bias')] : [p('kernel')]);
        break;
      case 'conv2d': {
        let padding = readPadding(new ConfigReader(name, c));
        if (typeof padding === 'object') {
          emit('ZeroPadding2D', { name: `${name}_padding`, padding: [[padding.top, padding.bottom], [padding.left, padding.right]], data_format: 'channels_last' });
          padding = 'valid';
        }
        emit('Conv2D', {
          name, filters: n('filters'), kernel_size: [n('kernelH'), n('kernelW')], strides: [n('strideH'), n('strideW')], dilation_rate: [n('dilationH'), n('dilationW')],
          padding, data_format: 'channels_last', activation: c['activation'] === 'relu' ? 'relu' : 'linear', use_bias: c['useBias'],
        }, c['useBias'] ? [p('kernel'), p('bias')] : [p('kernel')]);
        break;
      }
      case 'maxPool2d':
      case 'avgPool2d': {
        const padding = readPadding(new ConfigReader(name, c));
        if (typeof padding === 'object') fail("has explicit padding; Keras pooling has only 'valid' and 'same'");
        emit(layer.kind === 'maxPool2d' ? 'MaxPooling2D' : 'AveragePooling2D', { name, pool_size: [n('poolH'), n('poolW')], strides: [n('strideH'), n('strideW')], padding, data_format: 'channels_last' });
        break;
      }
      case 'globalAvgPool2d':
        emit('GlobalAveragePooling2D', { name, data_format: 'channels_last' });
        break;
      case 'flatten':
        emit('Flatten', { name });
        break;
      case 'dropout':
        emit('Dropout', { name, rate: n('rate') });
        break;
      case 'spatialDropout2d':
        return fail('has no TF.js counterpart (TF.js has SpatialDropout1D only; Keras models with SpatialDropout2D load here, but TF.js could not read one)');
      case 'gelu':
        return fail("is the tanh-form GELU: TF.js calls it 'gelu_new' but cannot load that name from JSON (tfjs-layers 4.22 looks up 'geluNew'), and its 'gelu' is the exact erf form");
      case 'relu': case 'sigmoid': case 'tanh': case 'softmax':
        emit('Activation', { name, activation: ACTIVATION_OF_KIND[layer.kind] });
        break;
      case 'leakyRelu':
        emit('LeakyReLU', { name, alpha: n('slope') });
        break;
      case 'batchNorm':
        emit('BatchNormalization', { name, axis: -1, momentum: n('momentum'), epsilon: n('epsilon'), center: c['center'], scale: c['scale'] }, [
          ...(c['scale'] ? [p('gamma')] : []), ...(c['center'] ? [p('beta')] : []), ['moving_mean', `${name}/movingMean`], ['moving_variance', `${name}/movingVariance`],
        ] as [string, string][]);
        break;
      case 'layerNorm':
        emit('LayerNormalization', { name, axis: -1, epsilon: n('epsilon'), center: true, scale: true }, [['gamma', `${name}/gain`], ['beta', `${name}/bias`]]);
        break;
      case 'embedding':
        if (c['paddingIndex'] !== null) fail('has a paddingIndex, which Keras embeddings do not have');
        emit('Embedding', { name, input_dim: n('vocabSize'), output_dim: n('dim') }, [p('embeddings')]);
        break;
      case 'lstm':
      case 'simpleRnn': {
        if (c['initialState'] !== 'zeros') fail(`has initialState '${String(c['initialState'])}'; Keras layers start from zeros`);
        const common = { name, units: n('units'), activation: 'tanh', use_bias: true, return_sequences: c['returnSequences'] };
        const params: [string, string][] = [p('kernel'), ['recurrent_kernel', `${name}/recurrentKernel`], p('bias')];
        if (layer.kind === 'lstm') emit('LSTM', { ...common, recurrent_activation: 'sigmoid', unit_forget_bias: true }, params);
        else emit('SimpleRNN', common, params);
        break;
      }
      case 'gru':
        return fail("is the reset-after GRU, which TF.js's GRU does not implement (it refuses reset_after = true)");
      default:
        return fail('has no counterpart in the TF.js layers format (Sequential of standard Keras layers)');
    }
  }
  const size = chunks.reduce((s, v) => s + v.length, 0);
  const data = new Float32Array(size);
  let at = 0;
  for (const v of chunks) {
    data.set(v, at);
    at += v.length;
  }
  return {
    modelJson: {
      format: 'layers-model', generatedBy: 'rxgrad 0.1.0',
      modelTopology: { class_name: 'Sequential', config: { name: model.name, layers: keras }, keras_version: 'tfjs-layers 4.22.0', backend: 'tensor_flow.js' },
      weightsManifest: [{ paths: [shardName], weights: specs }],
    },
    weightData: new Uint8Array(data.buffer),
  };
}

/**
 * Saves a model as `<dir>/model.json` + `<dir>/group1-shard1of1.bin`, which `tf.loadLayersModel` reads.
 * A layer without a Keras counterpart (attention, residual, the reset-after GRU, …) is an error naming it.
 *
 * Usage: `await saveTfjsLayers(model, 'web/model'); // then in a browser: await tf.loadLayersModel('model/model.json')`
 */
export async function saveTfjsLayers(model: Model, dir: string): Promise<void> {
  const { modelJson, weightData } = toTfjsLayers(model);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'group1-shard1of1.bin'), weightData);
  await writeFile(join(dir, 'model.json'), JSON.stringify(modelJson));
}
