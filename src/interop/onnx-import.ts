/**
 * ONNX import: a file becomes a trainable rxgrad model. Two routes:
 * - a file rxgrad exported carries its layer description (`rxgrad.model` metadata): the same layers are
 *   rebuilt from the registry and every parameter is read back from the initializer of the same name,
 *   converted from the ONNX layout — so import(export(m)) is bitwise the same model;
 * - any other file (PyTorch's `torch.onnx.export`, Keras via tf2onnx) is read node by node into layers
 *   (src/interop/onnx-graph.ts), layouts converted (NCHW → NHWC, OIHW → HWIO, gate orders).
 * Every initializer is checked for NaN/Infinity first; errors name the node or tensor.
 */
import { readFile } from 'node:fs/promises';
import type { Model } from '../model.ts';
import { modelWithWeights, type ImportModelOptions } from './build.ts';
import { formatShape, sizeOf, type Shape } from '../tensor.ts';
import { layerFromConfig } from '../registry.ts';
import '../../operators/index.ts';
import { layerTree, type LayerNode } from './layer-tree.ts';
import { GATE_ORDER, gateMajorToKernel, gatePermutation, oihwToHwio, recurrentBiasFromOnnx, type RecurrentKind } from './layouts.ts';
import { decodeModel, OnnxError, readTensor, type ModelProto, type TensorValue } from './onnx-proto.ts';
import { RXGRAD_METADATA_KEY } from './onnx-export.ts';
import { layersFromGraph } from './onnx-graph.ts';

/** Options of {@link importOnnx}. */
export interface OnnxImportOptions extends ImportModelOptions {
  /** Read the graph node by node even when the file carries rxgrad's own layer description. */
  ignoreMetadata?: boolean;
}

/** Every initializer and Constant of the graph by name, values checked finite. */
export function constantsOf(model: ModelProto, source: string): Map<string, TensorValue> {
  const constants = new Map<string, TensorValue>();
  const add = (value: TensorValue, name: string, where: string) => {
    if (value.floats) {
      const bad = value.floats.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new OnnxError(`${source}: ${where} '${name}' holds ${value.floats[bad]} at element ${bad} (shape ${formatShape(value.dims)}): weights must be finite`);
    }
    constants.set(name, value);
  };
  for (const t of model.graph!.initializer ?? []) add(readTensor(t, `${source}: initializer`), t.name ?? '', 'initializer');
  for (const node of model.graph!.node ?? []) {
    if (node.opType !== 'Constant') continue;
    const value = (node.attribute ?? []).find((a) => a.name === 'value')?.t;
    if (!value) throw new OnnxError(`${source}: node '${node.name ?? ''}' (Constant): only the 'value' tensor attribute is supported`);
    add(readTensor(value, `${source}: node '${node.name ?? ''}' (Constant)`), node.output![0]!, `Constant '${node.name ?? ''}' output`);
  }
  return constants;
}

/** rxgrad lstm and simpleRnn keep one bias; ONNX stores input and recurrent biases, so twice as many values. */
const RECURRENT = new Set(['lstm', 'gru', 'simpleRnn']);

interface ModelDescription {
  inputShape: Shape;
  layers: { kind: string; name: string; config: Record<string, unknown> }[];
}

/** Converts one parameter of the imported layer tree from its ONNX initializer back to rxgrad layout. */
function parameterFromOnnx(node: LayerNode, local: string, value: TensorValue, expected: Shape): Float32Array {
  const floats = value.floats!;
  const kind = node.kind as RecurrentKind;
  if (node.kind === 'conv2d' && local === 'kernel') {
    const [kh, kw, cin, cout] = expected as [number, number, number, number];
    return oihwToHwio(floats, cout, cin, kh, kw);
  }
  if (kind === 'lstm' || kind === 'gru' || kind === 'simpleRnn') {
    const perm = gatePermutation(GATE_ORDER.onnx[kind], GATE_ORDER.rxgrad[kind]);
    const U = node.config['units'] as number;
    if (local === 'kernel' || local === 'recurrentKernel') return gateMajorToKernel(floats, expected[0]!, U, perm);
    if (local === 'bias') return recurrentBiasFromOnnx(kind, floats, U);
  }
  return floats.slice();
}

/** The rxgrad route: layers from the description, parameters from the initializers of the same names. */
function fromDescription(description: ModelDescription, constants: Map<string, TensorValue>, source: string, options: OnnxImportOptions, graphName: string): Model {
  const layers = description.layers.map((l) => layerFromConfig(l.kind, l.config, l.name));
  return modelWithWeights(layers, description.inputShape, (model) => {
    const shapes = new Map(model.parameters().map((p) => [p.name, p.shape]));
    const weights = new Map<string, Float32Array>();
    // Parameters belong to the leaves (a combinator's are its children's); a leaf's all start with its prefix.
    const visit = (node: LayerNode) => {
      if (node.children.length > 0) return node.children.forEach(visit);
      for (const [name, shape] of shapes) {
        if (!name.startsWith(node.prefix)) continue;
        const value = constants.get(name);
        if (!value || !value.floats) throw new OnnxError(`${source}: the model description needs the float initializer '${name}' (shape ${formatShape(shape)}), which the graph lacks`);
        const onnxSize = sizeOf(shape) * (RECURRENT.has(node.kind) && name.endsWith('/bias') && node.kind !== 'gru' ? 2 : 1);
        if (sizeOf(value.dims) !== onnxSize) throw new OnnxError(`${source}: initializer '${name}' has shape ${formatShape(value.dims)}; layer '${node.name}' (${node.kind}) needs ${onnxSize} values (rxgrad shape ${formatShape(shape)})`);
        weights.set(name, parameterFromOnnx(node, name.slice(node.prefix.length), value, shape));
      }
    };
    layerTree(model).forEach(visit);
    const missing = [...shapes.keys()].filter((n) => !weights.has(n));
    if (missing.length > 0) throw new OnnxError(`${source}: no initializer read for ${missing.join(', ')}`);
    return weights;
  }, options, graphName, (message) => new OnnxError(`${source}: ${message}`));
}

/**
 * A model from ONNX bytes (see {@link importOnnx}); `source` names the bytes in errors.
 *
 * Usage: `const model = fromOnnx(bytes, 'upload.onnx');`
 */
export function fromOnnx(bytes: Uint8Array, source = 'ONNX bytes', options: OnnxImportOptions = {}): Model {
  const proto = decodeModel(bytes, source);
  const constants = constantsOf(proto, source);
  const graphName = proto.graph!.name || 'onnx';
  const meta = (proto.metadataProps ?? []).find((m) => m.key === RXGRAD_METADATA_KEY)?.value;
  if (meta && !options.ignoreMetadata) {
    let description: ModelDescription;
    try {
      description = JSON.parse(meta) as ModelDescription;
    } catch (error) {
      throw new OnnxError(`${source}: metadata '${RXGRAD_METADATA_KEY}' is not JSON: ${(error as Error).message}`);
    }
    return fromDescription(description, constants, source, options, graphName);
  }
  const { layers, inputShape, weights } = layersFromGraph(proto, constants, source);
  return modelWithWeights(layers, inputShape, () => weights, options, graphName, (message) => new OnnxError(`${source}: ${message}`));
}

/**
 * Reads an ONNX file into a trainable model: rxgrad's own exports exactly; PyTorch/Keras exports of
 * dense, conv, pooling, batch-norm, flatten, embedding, layer-norm, LSTM/GRU/RNN and activation chains
 * with their weights, layouts converted. The model takes NHWC images and batch-first sequences (transpose
 * NCHW data once: docs/INTEROP.md). Unsupported operators are one error listing them all.
 *
 * Usage: `const model = await importOnnx('resnet-tiny.onnx'); batches$.pipe(model.fit({ loss, optimizer }))`
 */
export async function importOnnx(path: string, options: OnnxImportOptions = {}): Promise<Model> {
  return fromOnnx(await readFile(path), path, options);
}
