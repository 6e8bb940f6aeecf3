/**
 * ONNX export: a model's layers become a graph of standard ONNX operators (opsets 13–21), its weights
 * initializers in ONNX layouts (conv OIHW, recurrent gates in ONNX order), its input `[batch, …]`
 * NHWC/batch-first as rxgrad takes it. The model's own description rides along in `metadata_props`
 * (`rxgrad.model`), so `importOnnx` rebuilds exactly the same layers. Layouts: docs/INTEROP.md.
 */
import { writeFile } from 'node:fs/promises';
import type { Model } from '../model.ts';
import { formatShape, type Shape } from '../tensor.ts';
import { readPadding, resolveWindow, type Padding2d } from '../../operators/conv2d.ts';
import { sinusoidalTable } from '../../operators/positional-encoding.ts';
import { ConfigReader } from '../registry.ts';
import { layerTree, type LayerNode } from './layer-tree.ts';
import { hwioToOihw } from './layouts.ts';
import { attention, recurrent } from './onnx-export-sequence.ts';
import { GraphBuilder, valueInfo, type Value } from './onnx-graph-builder.ts';
import { DEFAULT_OPSET, encodeModel, MAX_OPSET, MIN_OPSET, onnx, OnnxError, type AttributeValue } from './onnx-proto.ts';

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /** ONNX opset of the default domain, 13–21 (default 17). */
  opset?: number;
  /** Graph name (default: the model's name). */
  graphName?: string;
}

/** Key of the model description in `metadata_props`. */
export const RXGRAD_METADATA_KEY = 'rxgrad.model';

/** Layer kinds that compute nothing at inference (training-time noise and augmentation). */
const INFERENCE_IDENTITY = new Set(['dropout', 'spatialDropout2d', 'randomFlip', 'randomRotate', 'randomCrop', 'randomTranslate']);

/** Explicit ONNX pads `[top, left, bottom, right]` of a window, from rxgrad's padding rule. */
function pads(shape: Shape, kernel: [number, number], strides: [number, number], dilation: [number, number], padding: Padding2d, who: LayerNode): { pads: number[]; out: Shape } {
  const win = resolveWindow(who, shape, kernel, strides, dilation, padding);
  const after = (size: number, out: number, k: number, s: number, d: number, before: number) => Math.max(0, (out - 1) * s + d * (k - 1) + 1 - size - before);
  const bottom = typeof padding === 'object' ? padding.bottom : after(win.inH, win.outH, kernel[0], strides[0], dilation[0], win.padTop);
  const right = typeof padding === 'object' ? padding.right : after(win.inW, win.outW, kernel[1], strides[1], dilation[1], win.padLeft);
  return { pads: [win.padTop, win.padLeft, bottom, right], out: [win.outH, win.outW, win.channels] };
}

const num = (c: Record<string, unknown>, key: string): number => c[key] as number;

/** Emits one layer; returns its output value. */
function emit(g: GraphBuilder, n: LayerNode, x: Value): Value {
  const c = n.config;
  const p = n.prefix;
  const last = x.shape[x.shape.length - 1]!;
  const same = (name: string): Value => ({ name, shape: x.shape, nchw: x.nchw });
  if (INFERENCE_IDENTITY.has(n.kind)) return x;
  switch (n.kind) {
    case 'chain':
      return n.children.reduce((v, child) => emit(g, child, v), x);
    case 'residual':
    case 'transformerEncoderBlock':
    case 'transformerDecoderBlock': {
      if (n.kind !== 'residual') return n.children.reduce((v, child) => emit(g, child, v), x);
      const inner = g.nhwc(n.children.reduce((v, child) => emit(g, child, v), x));
      const base = g.nhwc(x);
      return { name: g.op('Add', [base.name, inner.name], {}, n.name), shape: x.shape, nchw: false };
    }
    case 'parallel': {
      const outs = n.children.map((b) => g.nhwc(emit(g, b, x)));
      if (c['merge'] === 'add') {
        const [first, ...rest] = outs as [Value, ...Value[]];
        return { name: rest.reduce((sum, b) => g.op('Add', [sum, b.name], {}, n.name), first.name), shape: first.shape, nchw: false };
      }
      const width = outs.reduce((s, o) => s + o.shape[o.shape.length - 1]!, 0);
      return { name: g.op('Concat', outs.map((o) => o.name), { axis: -1 }, n.name), shape: [...outs[0]!.shape.slice(0, -1), width], nchw: false };
    }
    case 'dense': {
      const v = g.nhwc(x);
      const units = num(c, 'units');
      const kernel = g.param(`${p}kernel`, [last, units]);
      const bias = c['useBias'] === false ? null : g.param(`${p}bias`, [units]);
      const shape = [...x.shape.slice(0, -1), units];
      if (x.shape.length === 1) return { name: g.op('Gemm', [v.name, kernel, ...(bias ? [bias] : [])], {}, n.name), shape, nchw: false };
      const product = g.op('MatMul', [v.name, kernel], {}, n.name);
      return { name: bias ? g.op('Add', [product, bias], {}, n.name) : product, shape, nchw: false };
    }
    case 'conv2d': {
      const reader = new ConfigReader(n.name, c);
      const kernel: [number, number] = [num(c, 'kernelH'), num(c, 'kernelW')];
      const strides: [number, number] = [num(c, 'strideH'), num(c, 'strideW')];
      const dilation: [number, number] = [num(c, 'dilationH'), num(c, 'dilationW')];
      const filters = num(c, 'filters');
      const geometry = pads(x.shape, kernel, strides, dilation, readPadding(reader), n);
      const cin = x.shape[2]!;
      const w = g.floats(`${p}kernel`, [filters, cin, ...kernel], hwioToOihw(g.weight(`${p}kernel`), kernel[0], kernel[1], cin, filters));
      const bias = c['useBias'] === false ? [] : [g.param(`${p}bias`, [filters])];
      const v = g.nchw(x);
      let y = g.op('Conv', [v.name, w, ...bias], { kernel_shape: kernel, strides, dilations: dilation, pads: geometry.pads }, n.name);
      if (c['activation'] === 'relu') y = g.op('Relu', [y], {}, n.name);
      return { name: y, shape: [geometry.out[0]!, geometry.out[1]!, filters], nchw: true };
    }
    case 'maxPool2d':
    case 'avgPool2d': {
      const reader = new ConfigReader(n.name, c);
      const kernel: [number, number] = [num(c, 'poolH'), num(c, 'poolW')];
      const strides: [number, number] = [num(c, 'strideH'), num(c, 'strideW')];
      const geometry = pads(x.shape, kernel, strides, [1, 1], readPadding(reader), n);
      const v = g.nchw(x);
      const attrs: Record<string, AttributeValue> = { kernel_shape: kernel, strides, pads: geometry.pads };
      if (n.kind === 'avgPool2d') attrs['count_include_pad'] = 0;
      return { name: g.op(n.kind === 'maxPool2d' ? 'MaxPool' : 'AveragePool', [v.name], attrs, n.name), shape: geometry.out, nchw: true };
    }
    case 'globalAvgPool2d': {
      const pooled = g.op('GlobalAveragePool', [g.nchw(x).name], {}, n.name);
      return { name: g.op('Flatten', [pooled], { axis: 1 }, n.name), shape: [x.shape[2]!], nchw: false };
    }
    case 'flatten': {
      const size = x.shape.reduce((a, b) => a * b, 1);
      return { name: g.op('Flatten', [g.nhwc(x).name], { axis: 1 }, n.name), shape: [size], nchw: false };
    }
    case 'batchNorm': {
      const C = last;
      const ones = new Float32Array(C).fill(1);
      const scale = c['scale'] === false ? g.floats(`${p}gamma`, [C], ones) : g.param(`${p}gamma`, [C]);
      const offset = c['center'] === false ? g.floats(`${p}beta`, [C], new Float32Array(C)) : g.param(`${p}beta`, [C]);
      const stats = [g.param(`${p}movingMean`, [C]), g.param(`${p}movingVariance`, [C])];
      const attrs = { epsilon: { float: num(c, 'epsilon') }, momentum: { float: num(c, 'momentum') } };
      if (x.shape.length === 3) return { name: g.op('BatchNormalization', [g.nchw(x).name, scale, offset, ...stats], attrs, n.name), shape: x.shape, nchw: true };
      if (x.shape.length === 1) return same(g.op('BatchNormalization', [x.name, scale, offset, ...stats], attrs, n.name));
      // [N, T, C]: channels to axis 1 and back.
      const rank = x.shape.length + 1;
      const toFront = [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];
      const back = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];
      const t = g.op('Transpose', [x.name], { perm: toFront }, n.name);
      const y = g.op('BatchNormalization', [t, scale, offset, ...stats], attrs, n.name);
      return same(g.op('Transpose', [y], { perm: back }, n.name));
    }
    case 'relu':
      return same(g.op('Relu', [x.name], {}, n.name));
    case 'sigmoid':
      return same(g.op('Sigmoid', [x.name], {}, n.name));
    case 'tanh':
      return same(g.op('Tanh', [x.name], {}, n.name));
    case 'leakyRelu':
      return same(g.op('LeakyRelu', [x.name], { alpha: { float: num(c, 'slope') } }, n.name));
    case 'gelu':
      return same(gelu(g, x.name, n.name));
    case 'softmax': {
      const v = g.nhwc(x);
      return { name: g.op('Softmax', [v.name], { axis: -1 }, n.name), shape: x.shape, nchw: false };
    }
    case 'embedding': {
      const dim = num(c, 'dim');
      const table = g.param(`${p}embeddings`, [num(c, 'vocabSize'), dim]);
      return { name: g.op('Gather', [table, x.name], { axis: 0 }, n.name), shape: [...x.shape, dim], nchw: false };
    }
    case 'layerNorm':
      return same(layerNorm(g, x.name, g.param(`${p}gain`, [last]), g.param(`${p}bias`, [last]), num(c, 'epsilon'), n.name));
    case 'positionalEncoding': {
      const [T, D] = x.shape as [number, number];
      const maxLength = num(c, 'maxLength');
      const table = c['kind'] === 'learned' ? g.param(`${p}embeddings`, [maxLength, D]) : g.floats(g.fresh(`${n.name}/table`), [maxLength, D], sinusoidalTable(maxLength, D));
      const rows = g.op('Slice', [table, g.ints('start', [0]), g.ints('end', [T]), g.ints('axes', [0])], {}, n.name);
      return same(g.op('Add', [x.name, rows], {}, n.name));
    }
    case 'lstm':
    case 'gru':
    case 'simpleRnn':
      return recurrent(g, n, x);
    case 'encoderDecoder': {
      // The encoder runs on the source column (a graph input); its output is the memory the decoder's cross-attention reads.
      const [encoder, decoder] = n.children as [LayerNode, LayerNode];
      const ids = encoder.children[0]?.kind === 'embedding';
      const source = g.column(c['source'] as string, c['sourceShape'] as number[], ids ? onnx.TensorProto.DataType.INT32 : onnx.TensorProto.DataType.FLOAT);
      g.columns.set(c['memory'] as string, g.nhwc(emit(g, encoder, { ...source, shape: c['sourceShape'] as number[] })));
      return emit(g, decoder, x);
    }
    case 'multiHeadAttention':
      return attention(g, n, x);
    default:
      throw new OnnxError(`exportOnnx: layer '${n.name}' (${n.kind}) has no ONNX form`);
  }
}

/** GELU, tanh form: ONNX `Gelu(approximate='tanh')` from opset 20, else composed of standard ops. */
function gelu(g: GraphBuilder, x: string, hint: string): string {
  if (g.opset >= 20) return g.op('Gelu', [x], { approximate: 'tanh' }, hint);
  const k = (v: number) => g.floats(g.fresh(`${hint}/c`), [], new Float32Array([v]));
  const cube = g.op('Mul', [g.op('Mul', [x, x], {}, hint), x], {}, hint);
  const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, k(0.044715)], {}, hint)], {}, hint), k(Math.sqrt(2 / Math.PI))], {}, hint);
  const gate = g.op('Add', [g.op('Tanh', [inner], {}, hint), k(1)], {}, hint);
  return g.op('Mul', [g.op('Mul', [x, gate], {}, hint), k(0.5)], {}, hint);
}

/**
 * Layer normalisation over the last axis, as the two-pass graph rxgrad computes (mean, then the mean
 * of squared deviations). Not ONNX `LayerNormalization`: onnxruntime's CPU kernel takes the variance
 * as E[x²] − E[x]² in one float32 pass, which loses digits when a row's spread is small (measured up
 * to 1.3e-4 on unit-scale outputs against rxgrad, where this graph agrees to ~1e-7).
 */
function layerNorm(g: GraphBuilder, x: string, gain: string, bias: string, epsilon: number, hint: string): string {
  // ReduceMean takes its axes as an attribute before opset 18, as an input from 18.
  const reduceMean = (v: string) => (g.opset >= 18 ? g.op('ReduceMean', [v, g.ints('axes', [-1])], { keepdims: 1 }, hint) : g.op('ReduceMean', [v], { axes: [-1], keepdims: 1 }, hint));
  const mean = reduceMean(x);
  const d = g.op('Sub', [x, mean], {}, hint);
  const variance = reduceMean(g.op('Mul', [d, d], {}, hint));
  const eps = g.floats(g.fresh(`${hint}/epsilon`), [], new Float32Array([epsilon]));
  const normed = g.op('Div', [d, g.op('Sqrt', [g.op('Add', [variance, eps], {}, hint)], {}, hint)], {}, hint);
  return g.op('Add', [g.op('Mul', [normed, gain], {}, hint), bias], {}, hint);
}

/** Layer kinds the exporter writes (the property test checks that it covers each). */
export const EXPORTABLE_KINDS: ReadonlySet<string> = new Set(['chain', 'residual', 'parallel', 'transformerEncoderBlock', 'transformerDecoderBlock', 'encoderDecoder',
  'dense', 'conv2d', 'maxPool2d', 'avgPool2d', 'globalAvgPool2d', 'flatten', 'batchNorm', 'relu', 'sigmoid', 'tanh', 'leakyRelu', 'gelu', 'softmax', 'embedding',
  'layerNorm', 'positionalEncoding', 'lstm', 'gru', 'simpleRnn', 'multiHeadAttention', ...INFERENCE_IDENTITY]);

/** Every layer (at any depth) that has no ONNX form, as `name (kind)`. */
function unexportable(nodes: readonly LayerNode[]): string[] {
  return nodes.flatMap((n) => [...(EXPORTABLE_KINDS.has(n.kind) ? [] : [`'${n.name}' (${n.kind})`]), ...unexportable(n.children)]);
}

/**
 * The ONNX bytes of a model (see {@link exportOnnx}).
 *
 * Usage: `const bytes = toOnnx(model, { opset: 17 });`
 */
export function toOnnx(model: Model, options: OnnxExportOptions = {}): Uint8Array {
  const opset = options.opset ?? DEFAULT_OPSET;
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) throw new RangeError(`exportOnnx: opset must be an integer in ${MIN_OPSET}–${MAX_OPSET}, got ${opset}`);
  const tree = layerTree(model);
  const missing = unexportable(tree);
  if (missing.length > 0) throw new OnnxError(`exportOnnx: ${missing.length === 1 ? 'layer' : 'layers'} ${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no ONNX form`);
  const g = new GraphBuilder(opset, model.getWeights());
  let v: Value = { name: 'input', shape: model.inputShape, nchw: false };
  for (const n of tree) v = emit(g, n, v);
  v = g.nhwc(v);
  g.nodes.push({ opType: 'Identity', name: 'output/Identity', input: [v.name], output: ['output'] });
  const E = onnx.TensorProto.DataType;
  const modelDescription = { inputShape: model.inputShape, layers: model.layers.map((l) => ({ kind: l.kind, name: l.name, config: l.config() })) };
  const bytes = encodeModel({
    // The IR version each opset came with (opset 19 → IR 9, opset 21 → IR 10), for strict checkers.
    irVersion: opset >= 21 ? 10 : opset >= 19 ? 9 : 8,
    producerName: 'rxgrad',
    producerVersion: '0.1.0',
    opsetImport: [{ domain: '', version: opset }],
    metadataProps: [{ key: RXGRAD_METADATA_KEY, value: JSON.stringify(modelDescription) }],
    graph: {
      name: options.graphName ?? model.name,
      node: g.nodes,
      initializer: g.initializers,
      input: [valueInfo('input', model.inputDType === 'int32' ? E.INT32 : E.FLOAT, model.inputShape), ...g.sideInputs],
      output: [valueInfo('output', E.FLOAT, v.shape)],
    },
  });
  if (formatShape(v.shape) !== formatShape(model.outputShape)) throw new OnnxError(`exportOnnx: the graph's output shape ${formatShape(v.shape)} differs from the model's ${formatShape(model.outputShape)} (a bug: please report)`);
  return bytes;
}

/**
 * Writes a model as an ONNX file that onnxruntime (and any ONNX consumer) runs: input `input`
 * (`[batch, …inputShape]`, NHWC images, batch-first sequences), output `output`. A layer without an
 * ONNX form (custom kinds, attention over side columns, column initial states) is an error naming it.
 *
 * Usage: `await exportOnnx(model, 'model.onnx', { opset: 17 });`
 */
export async function exportOnnx(model: Model, path: string, options: OnnxExportOptions = {}): Promise<void> {
  await writeFile(path, toOnnx(model, options));
}
