/**
 * Reads a foreign ONNX graph (PyTorch's or Keras's exporter) node by node into rxgrad layers.
 *
 * The graph is a chain from one input to one output. Each ONNX value is tracked with its ONNX shape
 * and, per ONNX axis, the rxgrad axis it holds (`axes`; 0 = batch) or 'unit' (a size-1 axis rxgrad
 * does not have, e.g. LSTM's direction axis): Transpose/Squeeze/Unsqueeze/Reshape only rewrite that
 * map, and the ops with layouts check it (Conv wants NCHW = rxgrad axes [0, 3, 1, 2], LSTM time-major
 * [1, 0, 2]). A Flatten of an NCHW value flattens in CHW order where rxgrad flattens HWC, so the
 * permutation is remembered and applied to the rows of the next dense kernel. Layouts: docs/INTEROP.md.
 */
import type { Layer } from '../layer.ts';
import { formatShape } from '../tensor.ts';
import { batchNorm, conv2d, dense, embedding, gelu, globalAvgPool2d, layerNorm, leakyRelu, maxPool2d, relu, sigmoid, softmax, tanh } from '../../operators/index.ts';
import { recurrentNode, residualAdd } from './onnx-graph-blocks.ts';
import { COMPOSITE_OPS, recogniseComposite } from './onnx-graph-patterns.ts';
import { rethrowNamed } from './build.ts';
import { avgPool2d } from '../../operators/avg-pool2d.ts';
import { flattenValue, isIdentity, reshapeValue, rxShape, windowOf, type Axis, type Built, type Value } from './onnx-graph-values.ts';
import { oihwToHwio, transpose2d } from './layouts.ts';
import { Attributes, OnnxError, opsetOf, readTensor, type ModelProto, type NodeProto, type TensorValue } from './onnx-proto.ts';

/** The `value` tensor attribute of a node (ConstantOfShape), if any. */
function readTensorAttribute(node: NodeProto): TensorValue | null {
  const t = (node.attribute ?? []).find((a) => a.name === 'value')?.t;
  return t ? readTensor(t, `node '${node.name ?? ''}' (${node.opType}) attribute value`) : null;
}

/** Operators this reader understands (Constant and the shape-only ones included). */
export const SUPPORTED_OPS = [
  'Gemm', 'MatMul', 'Add', 'Conv', 'Relu', 'Sigmoid', 'Tanh', 'LeakyRelu', 'Gelu', 'Softmax', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'Flatten',
  'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'BatchNormalization', 'LayerNormalization', 'Gather', 'LSTM', 'GRU', 'RNN', 'Dropout', 'Identity', 'Constant',
  'Pad', 'Shape', 'ConstantOfShape', 'Concat', 'Cast', ...COMPOSITE_OPS,
] as const;


export function layersFromGraph(model: ModelProto, constants: Map<string, TensorValue>, source: string): Built {
  const graph = model.graph!;
  const nodes = graph.node ?? [];
  const opset = opsetOf(model)!;
  const unsupported = nodes.filter((n) => !(SUPPORTED_OPS as readonly string[]).includes(n.opType ?? '') || (n.domain && n.domain !== 'ai.onnx'));
  if (unsupported.length > 0) {
    const list = unsupported.map((n) => `${n.domain ? `${n.domain}.` : ''}${n.opType} (node '${n.name ?? ''}')`);
    throw new OnnxError(`${source}: ${unsupported.length} unsupported operator${unsupported.length > 1 ? 's' : ''}: ${list.join(', ')} (supported: ${SUPPORTED_OPS.join(', ')})`);
  }
  const inputs = (graph.input ?? []).filter((i) => !constants.has(i.name ?? ''));
  if (inputs.length !== 1) throw new OnnxError(`${source}: the graph has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); rxgrad imports single-input chains`);
  if ((graph.output ?? []).length !== 1) throw new OnnxError(`${source}: the graph has ${(graph.output ?? []).length} outputs; rxgrad imports single-output chains`);
  const input = inputs[0]!;
  const tensorType = input.type?.tensorType;
  const dims = (tensorType?.shape?.dim ?? []).map((d, i) => {
    if (i === 0) return -1;
    const size = typeof d.dimValue === 'number' ? d.dimValue : Number(d.dimValue ?? 0);
    if (!(size > 0)) throw new OnnxError(`${source}: input '${input.name}' axis ${i} has no fixed size (${d.dimParam ?? '?'}); rxgrad needs the per-example shape (export with a fixed shape but the batch axis)`);
    return size;
  });
  if (dims.length < 2) throw new OnnxError(`${source}: input '${input.name}' has rank ${dims.length}; expected [batch, …]`);
  const isInt = tensorType?.elemType === 6 || tensorType?.elemType === 7;

  const consumers = new Map<string, NodeProto[]>();
  for (const n of nodes) for (const i of n.input ?? []) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const firstUse = consumers.get(input.name!)?.[0];
  // Images: NCHW (PyTorch) unless the graph first transposes NHWC → NCHW (Keras/tf2onnx). Sequences: time-major
  // when fed straight to a recurrent op in its default layout (PyTorch batch_first=False).
  let axes: Axis[] = dims.map((_, i) => i);
  if (dims.length === 4 && !(firstUse?.opType === 'Transpose' && new Attributes(firstUse).ints('perm').join() === '0,3,1,2')) axes = [0, 3, 1, 2];
  if (dims.length === 3 && ['LSTM', 'GRU', 'RNN'].includes(firstUse?.opType ?? '') && new Attributes(firstUse!).int('layout', 0) === 0) axes = [1, 0, 2];
  const values = new Map<string, Value>([[input.name!, { shape: dims, axes, flatPerm: null }]]);
  const start = values.get(input.name!)!;
  const inputShape = rxShape(start);

  const layers: Layer[] = [];
  // Parameters per layer, and the blocks of residuals made here: full names are known once nesting is.
  const paramsOf = new Map<Layer, Record<string, Float32Array>>();
  const blocks = new Map<Layer, Layer[]>();
  /** How many layers existed when each value was produced: a residual Add wraps the layers since its skip input. */
  const producedAt = new Map<string, number>([[input.name!, 0]]);
  // The chain: each node reads the value the node before produced (`current`); a residual Add also reads
  // one the chain passed through earlier. Anything else is a branch, refused rather than misread.
  let current = input.name!;
  const passed = new Set<string>([current]);
  const counts = new Map<string, number>();
  const add = (kind: string, make: (name: string) => Layer, params: Record<string, Float32Array> = {}) => {
    const n = (counts.get(kind) ?? 0) + 1;
    counts.set(kind, n);
    const layer = make(`${kind}_${n}`);
    layers.push(layer);
    paramsOf.set(layer, params);
  };
  const skip = new Set<NodeProto>();

  // Values computed from shapes only (PyTorch builds zero initial states from Shape(input)): not data.
  const meta = new Map<string, 'zeros' | 'shape'>();
  for (const [index, node] of nodes.entries()) {
    if (skip.has(node) || node.opType === 'Constant') continue;
    const where = `${source}: node '${node.name ?? ''}' (${node.opType})`;
    const computed = (node.input ?? []).filter((i) => i && !constants.has(i));
    if (node.opType === 'Shape' || (computed.length > 0 && computed.every((i) => meta.has(i)))) {
      const zero = node.opType === 'ConstantOfShape' && [...(readTensorAttribute(node)?.floats ?? [0])].every((v) => v === 0);
      for (const o of node.output ?? []) meta.set(o, zero ? 'zeros' : 'shape');
      continue;
    }
    const fail = (message: string): never => {
      throw new OnnxError(`${where}: ${message}`);
    };
    const a = new Attributes(node);
    const ins = node.input ?? [];
    const outs = node.output ?? [];
    const constant = (i: number, what: string): TensorValue => {
      const c = constants.get(ins[i] ?? '');
      if (!c) return fail(`input ${i} (${what}) '${ins[i] ?? ''}' must be an initializer or Constant`);
      return c;
    };
    const floats = (i: number, what: string) => constant(i, what).floats ?? fail(`${what} '${ins[i]}' must be float`);
    const optional = (i: number) => (ins[i] ? constants.get(ins[i]!) : undefined);
    // The one non-constant input this node reads (two for a residual Add).
    const flowing = [...new Set(ins.filter((n) => values.has(n)))];
    if (node.opType === 'Add' && flowing.length === 2) {
      const skip = flowing.find((n) => n !== current);
      if (!flowing.includes(current) || !skip || !passed.has(skip)) fail(`adds '${flowing.join("' and '")}': a residual Add needs the chain's latest value and one it passed through`);
      residualAdd(node, [skip!, current], values, producedAt, layers, blocks, add, fail);
      producedAt.set(outs[0]!, layers.length);
      passed.add((current = outs[0]!));
      continue;
    }
    if (flowing.length === 1 && flowing[0] !== current) fail(`reads '${flowing[0]}' while the chain is at '${current}': parallel branches are not supported (a residual Add is)`);
    if (flowing.length !== 1) fail(`reads ${flowing.length} tensors computed by the graph (${flowing.join(', ') || 'none'}); rxgrad imports chains (one computed input per node)`);
    const x = values.get(flowing[0]!)!;
    const rx = rxShape(x);
    const set = (v: Value, i = 0) => values.set(outs[i]!, v);
    const same = () => set({ ...x });
    const needPlain = (what: string) => {
      if (x.flatPerm) fail(`${what} after a Flatten of NCHW data: rxgrad flattens in HWC order, and only a following dense (Gemm/MatMul) layer can absorb the reordering`);
    };
    const lastIsFeatures = () => {
      const onnxLast = x.axes.length - 1;
      if (x.axes[onnxLast] !== rx.length || !isIdentity(x.axes)) fail(`its input's axes (ONNX ${formatShape(x.shape)}) are not in rxgrad's order with features last`);
    };

    // Elementwise/mean nodes (Mul, Sub, ReduceMean, …) are read as the activation their region computes.
    if (node.opType !== 'Add' && (COMPOSITE_OPS as readonly string[]).includes(node.opType ?? '')) {
      const found = recogniseComposite(nodes, index, current, x.shape.at(-1)!, x.shape.length - 1, constants, consumers, graph.output![0]!.name!);
      if (found) {
        if (found.kind === 'layerNorm') lastIsFeatures();
        for (const n of found.nodes) skip.add(n);
        if (found.kind === 'gelu') add('gelu', (name) => gelu({ name }));
        else add('layerNorm', (name) => layerNorm({ epsilon: found.epsilon, name }), { gain: found.gain, bias: found.bias });
        values.set(found.output, { ...x });
        producedAt.set(found.output, layers.length);
        passed.add((current = found.output));
        continue;
      }
      if (node.opType !== 'Tanh') fail('is not part of a region rxgrad recognises (layer normalisation, tanh-form GELU) and has no layer of its own');
    }

    try {
      switch (node.opType) {
        case 'Identity':
        case 'Dropout':
          same();
          break;
        case 'Pad': {
          const pads = ins[1] ? (constant(1, 'pads').ints ?? []) : a.ints('pads', []);
          if (pads.some((p) => p !== 0)) fail(`non-zero pads [${pads.join(', ')}]: give the padding to the Conv/Pool that follows`);
          same();
          break;
        }
        case 'Relu': same(); add('relu', (name) => relu({ name })); break;
        case 'Sigmoid': same(); add('sigmoid', (name) => sigmoid({ name })); break;
        case 'Tanh': same(); add('tanh', (name) => tanh({ name })); break;
        case 'LeakyRelu': same(); add('leakyRelu', (name) => leakyRelu({ slope: a.float('alpha', 0.01), name })); break;
        case 'Gelu':
          if (a.string('approximate', 'none') !== 'tanh') fail("approximate='none' (exact erf GELU) differs from rxgrad's tanh-form gelu by up to ~1e-3; export with approximate='tanh'");
          same();
          add('gelu', (name) => gelu({ name }));
          break;
        case 'Softmax': {
          needPlain('Softmax');
          const axis = a.int('axis', -1);
          const onnxAxis = axis < 0 ? axis + x.shape.length : axis;
          if (x.axes[onnxAxis] !== rx.length) fail(`axis ${axis} is not the features axis (rxgrad's softmax normalises the last axis)`);
          same();
          add('softmax', (name) => softmax({ name }));
          break;
        }
        case 'Gemm':
        case 'MatMul': {
          if (node.opType === 'MatMul' && !constants.has(ins[1] ?? '')) fail('the right operand must be a weight initializer');
          const W = constant(1, 'weight');
          const [r, cols] = W.dims as [number, number];
          if (W.dims.length !== 2) fail(`weight '${ins[1]}' has shape ${formatShape(W.dims)}; expected 2-D`);
          if (node.opType === 'Gemm' && a.int('transA', 0) !== 0) fail('transA = 1 is not supported');
          lastIsFeatures();
          const transB = node.opType === 'Gemm' && a.int('transB', 0) === 1;
          const inputs = transB ? cols : r;
          const units = transB ? r : cols;
          if (rx.at(-1) !== inputs) fail(`shapes do not chain: the input has ${rx.at(-1)} features (ONNX ${formatShape(x.shape)}), weight '${ins[1]}' ${formatShape(W.dims)} takes ${inputs}`);
          let kernel = transB ? transpose2d(W.floats!, r, cols) : W.floats!.slice();
          const alpha = node.opType === 'Gemm' ? a.float('alpha', 1) : 1;
          if (alpha !== 1) kernel = kernel.map((v) => v * alpha);
          if (x.flatPerm) {
            const permuted = new Float32Array(kernel.length);
            x.flatPerm.forEach((rxRow, onnxRow) => permuted.set(kernel.subarray(onnxRow * units, (onnxRow + 1) * units), rxRow * units));
            kernel = permuted;
          }
          let bias: Float32Array | null = null;
          let out = outs[0]!;
          if (node.opType === 'Gemm' && ins[2]) {
            const C = constant(2, 'bias');
            if (C.floats!.length !== units) fail(`bias '${ins[2]}' has shape ${formatShape(C.dims)}; expected ${units} values`);
            bias = C.floats!.map((v) => v * a.float('beta', 1));
          } else if (node.opType === 'MatMul') {
            const next = consumers.get(out) ?? [];
            const biasNode = next.length === 1 && next[0]!.opType === 'Add' ? next[0]! : null;
            const biasName = biasNode?.input?.find((n) => n !== out);
            const c = biasName ? constants.get(biasName) : undefined;
            if (biasNode && c?.floats && c.floats.length === units) {
              bias = c.floats.slice();
              skip.add(biasNode);
              out = biasNode.output![0]!;
            }
          }
          values.set(out, { shape: [...x.shape.slice(0, -1), units], axes: x.axes, flatPerm: null });
          add('dense', (name) => dense(units, { useBias: bias !== null, name }), bias ? { kernel, bias } : { kernel });
          break;
        }
        case 'Add':
          fail('an Add of a constant that is not the bias of a MatMul is not supported');
          break;
        case 'Conv': {
          needPlain('Conv');
          if (x.axes.join() !== '0,3,1,2') fail(`expects NCHW input; its input holds rxgrad axes [${x.axes.join(', ')}]`);
          if (a.int('group', 1) !== 1) fail(`group = ${a.int('group', 1)}: grouped/depthwise convolutions are not supported`);
          const W = constant(1, 'weight');
          const [cout, cin, kh, kw] = W.dims as [number, number, number, number];
          if (W.dims.length !== 4) fail(`weight '${ins[1]}' has shape ${formatShape(W.dims)}; expected [out, in, kh, kw]`);
          if (cin !== x.shape[1]) fail(`shapes do not chain: the input has ${x.shape[1]} channels (ONNX ${formatShape(x.shape)}), weight '${ins[1]}' ${formatShape(W.dims)} takes ${cin}`);
          const strides = a.ints('strides', [1, 1]) as [number, number];
          const dilation = a.ints('dilations', [1, 1]) as [number, number];
          const win = windowOf(a, x, [kh, kw], strides, dilation, fail);
          const bias = optional(2)?.floats ?? null;
          set({ shape: [-1, cout, win.outH, win.outW], axes: [0, 3, 1, 2], flatPerm: null });
          const kernel = oihwToHwio(W.floats!, cout, cin, kh, kw);
          add('conv2d', (name) => conv2d(cout, [kh, kw], { strides, dilation, padding: win.padding, useBias: bias !== null, name }), bias ? { kernel, bias: bias.slice() } : { kernel });
          break;
        }
        case 'MaxPool':
        case 'AveragePool': {
          needPlain(node.opType);
          if (x.axes.join() !== '0,3,1,2') fail(`expects NCHW input; its input holds rxgrad axes [${x.axes.join(', ')}]`);
          if (outs.length > 1 && outs[1]) fail('the Indices output is not supported');
          if (a.ints('dilations', [1, 1]).some((d) => d !== 1)) fail('dilated pooling is not supported');
          const kernel = a.ints('kernel_shape') as [number, number];
          const strides = a.ints('strides', [1, 1]) as [number, number];
          const win = windowOf(a, x, kernel, strides, [1, 1], fail);
          const padded = win.padding !== 'valid';
          if (node.opType === 'AveragePool' && padded && a.int('count_include_pad', 0) !== 0) fail("count_include_pad = 1 with padding: rxgrad's average pooling does not count padding taps");
          set({ shape: [-1, x.shape[1]!, win.outH, win.outW], axes: [0, 3, 1, 2], flatPerm: null });
          const make = node.opType === 'MaxPool' ? maxPool2d : avgPool2d;
          add(node.opType === 'MaxPool' ? 'maxPool2d' : 'avgPool2d', (name) => make(kernel, { strides, padding: win.padding, name }));
          break;
        }
        case 'GlobalAveragePool':
          if (x.axes.join() !== '0,3,1,2') fail(`expects NCHW input; its input holds rxgrad axes [${x.axes.join(', ')}]`);
          set({ shape: [-1, x.shape[1]!, 1, 1], axes: [0, 1, 'unit', 'unit'], flatPerm: null });
          add('globalAvgPool2d', (name) => globalAvgPool2d({ name }));
          break;
        case 'Flatten': {
          if (a.int('axis', 1) !== 1) fail(`axis ${a.int('axis', 1)}: only axis 1 (keep the batch) is supported`);
          set(flattenValue(x, add));
          break;
        }
        case 'Reshape': {
          const target = constant(1, 'shape').ints ?? fail('shape must be integers');
          if (a.int('allowzero', 0) !== 0) fail('allowzero = 1 is not supported');
          // The batch is symbolic here (-1 in x.shape): find which target entry stands for it.
          const known = x.shape.reduce((p, d) => (d === -1 ? p : p * d), 1);
          const t = target.map((d, i) => (d === 0 ? x.shape[i]! : d));
          const minus = t.filter((d) => d === -1).length;
          const others = t.reduce((p, d) => (d === -1 ? p : p * d), 1);
          let shape: number[] | null = null;
          if (minus === 1 && others === known) shape = t;
          else if (minus === 1 && t[0]! > 0 && known % (others / t[0]!) === 0) shape = [-1, ...t.slice(1).map((d) => (d === -1 ? known / (others / t[0]!) : d))];
          else if (minus === 0 && t[0]! > 0 && others / t[0]! === known) shape = [-1, ...t.slice(1)];
          if (!shape) return fail(`shapes do not chain: cannot reshape ONNX ${formatShape(x.shape)} (${known} values per example) to ${formatShape(target)}`);
          set(reshapeValue(x, shape, add, fail));
          break;
        }
        case 'Transpose': {
          const perm = a.ints('perm', x.shape.map((_, i) => x.shape.length - 1 - i));
          needPlain('Transpose');
          set({ shape: perm.map((p) => x.shape[p]!), axes: perm.map((p) => x.axes[p]!), flatPerm: null });
          break;
        }
        case 'Squeeze':
        case 'Unsqueeze': {
          const list = opset >= 13 ? (ins[1] ? (constant(1, 'axes').ints ?? []) : null) : a.ints('axes', []);
          const rank = node.opType === 'Squeeze' ? x.shape.length : x.shape.length + (list?.length ?? 0);
          const norm = (list ?? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((i) => (i < 0 ? i + rank : i));
          if (node.opType === 'Squeeze') {
            for (const i of norm) if (x.axes[i] !== 'unit') fail(`squeezes axis ${i}, which holds data (rxgrad axis ${String(x.axes[i])})`);
            set({ shape: x.shape.filter((_, i) => !norm.includes(i)), axes: x.axes.filter((_, i) => !norm.includes(i)), flatPerm: x.flatPerm });
          } else {
            const shape = [...x.shape];
            const ax = [...x.axes];
            for (const i of [...norm].sort((p, q) => p - q)) {
              shape.splice(i, 0, 1);
              ax.splice(i, 0, 'unit');
            }
            set({ shape, axes: ax, flatPerm: x.flatPerm });
          }
          break;
        }
        case 'Gather': {
          const axis = a.int('axis', 0);
          if (ins[0] && constants.has(ins[0]) && values.has(ins[1] ?? '')) {
            // Embedding: Gather(table, ids).
            if (!isInt || layers.length > 0 || axis !== 0) fail('an embedding lookup must be the first op, on integer ids, along axis 0');
            const table = constant(0, 'table');
            const [vocab, dim] = table.dims as [number, number];
            set({ shape: [...x.shape, dim], axes: [...x.axes, x.axes.length], flatPerm: null });
            add('embedding', (name) => embedding(vocab, dim, { name }), { embeddings: table.floats!.slice() });
            break;
          }
          const index = constant(1, 'indices').ints ?? [];
          const onnxAxis = axis < 0 ? axis + x.shape.length : axis;
          if (x.axes[onnxAxis] !== 'unit' || index.length !== 1 || !(index[0] === 0 || index[0] === -1)) fail('only picking the one entry of a size-1 axis (e.g. h_n[-1] of a one-layer LSTM) is supported');
          set({ shape: x.shape.filter((_, i) => i !== onnxAxis), axes: x.axes.filter((_, i) => i !== onnxAxis), flatPerm: x.flatPerm });
          break;
        }
        case 'BatchNormalization': {
          needPlain('BatchNormalization');
          if (a.int('training_mode', 0) !== 0) fail('training_mode = 1 is not supported (export in eval mode)');
          if (x.axes[1] !== rx.length) fail(`its channel axis (ONNX axis 1) is not rxgrad's last axis (axes [${x.axes.join(', ')}])`);
          const C = x.shape[1]!;
          const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => floats(i, ['', 'scale', 'B', 'mean', 'var'][i]!));
          for (const [i, t] of [gamma, beta, mean, variance].entries()) if (t!.length !== C) fail(`shapes do not chain: '${ins[i + 1]}' has ${t!.length} values for ${C} channels`);
          same();
          add('batchNorm', (name) => batchNorm({ epsilon: a.float('epsilon', 1e-5), momentum: a.float('momentum', 0.9), name }), {
            gamma: gamma!.slice(), beta: beta!.slice(), movingMean: mean!.slice(), movingVariance: variance!.slice(),
          });
          break;
        }
        case 'LayerNormalization': {
          needPlain('LayerNormalization');
          const axis = a.int('axis', -1);
          if (axis !== -1 && axis !== x.shape.length - 1) fail(`axis ${axis}: only the last axis is supported`);
          lastIsFeatures();
          const D = x.shape.at(-1)!;
          const gain = floats(1, 'scale');
          const bias = optional(2)?.floats ?? new Float32Array(D);
          if (gain.length !== D || bias.length !== D) fail(`shapes do not chain: scale/bias have ${gain.length}/${bias.length} values for ${D} features`);
          same();
          add('layerNorm', (name) => layerNorm({ epsilon: a.float('epsilon', 1e-5), name }), { gain: gain.slice(), bias: bias.slice() });
          break;
        }
        case 'LSTM':
        case 'GRU':
        case 'RNN':
          recurrentNode(node, a, x, rx, constants, meta, consumers, graph.output![0]!.name!, values, add, fail);
          break;
        default:
          fail('not supported');
      }
    } catch (error) {
      // A layer constructor refusing a value (units 0, a NaN rate…) is named with the node too.
      rethrowNamed(error, OnnxError, where);
    }
    // A MatMul whose bias Add was folded in produces the Add's output.
    const fused = [...skip].filter((n) => n.input?.includes(outs[0] ?? '')).flatMap((n) => n.output ?? []);
    for (const o of [...outs, ...fused]) {
      if (!o || !values.has(o)) continue;
      producedAt.set(o, layers.length);
      passed.add((current = o));
    }
  }
  const output = values.get(graph.output![0]!.name!);
  if (!output) throw new OnnxError(`${source}: the graph output '${graph.output![0]!.name}' is not computed by the chain from input '${input.name}'`);
  if (output.flatPerm || !isIdentity(output.axes)) throw new OnnxError(`${source}: the output '${graph.output![0]!.name}' (ONNX ${formatShape(output.shape)}) is not in rxgrad's axis order (rxgrad axes [${output.axes.join(', ')}])`);
  if (layers.length === 0) throw new OnnxError(`${source}: the graph computes nothing rxgrad has a layer for`);
  const weights = new Map<string, Float32Array>();
  const collect = (list: readonly Layer[], prefix: string) => {
    for (const layer of list) {
      for (const [k, v] of Object.entries(paramsOf.get(layer) ?? {})) weights.set(`${prefix}${layer.name}/${k}`, v);
      collect(blocks.get(layer) ?? [], `${prefix}${layer.name}/`);
    }
  };
  collect(layers, '');
  return { layers, inputShape, weights };
}
