/**
 * The ONNX reader's (src/interop/onnx-graph.ts) multi-part nodes: LSTM / GRU / RNN with their weight
 * layouts and output choice, and residual Adds that turn the layers of a branch into a residual block.
 */
import type { Layer } from '../layer.ts';
import { formatShape } from '../tensor.ts';
import { gru, lstm, residual, simpleRnn } from '../../operators/index.ts';
import type { AddLayer, Value } from './onnx-graph-values.ts';
import { GATE_ORDER, gateMajorToKernel, gatePermutation, recurrentBiasFromOnnx, type RecurrentKind } from './layouts.ts';
import type { Attributes, NodeProto, TensorValue } from './onnx-proto.ts';

/** LSTM / GRU / RNN → rxgrad lstm / gru / simpleRnn: gate order, W·R·B layouts, which output is used. */
export function recurrentNode(
  node: NodeProto, a: Attributes, x: Value, rx: number[], constants: Map<string, TensorValue>, meta: ReadonlyMap<string, 'zeros' | 'shape'>, consumers: Map<string, NodeProto[]>, graphOutput: string,
  values: Map<string, Value>, add: AddLayer, fail: (m: string) => never,
): void {
  const kind: RecurrentKind = node.opType === 'LSTM' ? 'lstm' : node.opType === 'GRU' ? 'gru' : 'simpleRnn';
  const ins = node.input ?? [];
  const outs = node.output ?? [];
  const layout = a.int('layout', 0);
  const expected = layout === 0 ? '1,0,2' : '0,1,2';
  if (x.axes.join() !== expected) fail(`expects ${layout === 0 ? 'time-major [T, N, F]' : 'batch-first [N, T, F]'} input; its input holds rxgrad axes [${x.axes.join(', ')}]`);
  if (a.string('direction', 'forward') !== 'forward') fail(`direction '${a.string('direction')}' is not supported (forward only)`);
  if (a.has('clip')) fail('clip is not supported');
  if (a.int('input_forget', 0) !== 0) fail('input_forget = 1 is not supported');
  const defaults = { lstm: ['Sigmoid', 'Tanh', 'Tanh'], gru: ['Sigmoid', 'Tanh'], simpleRnn: ['Tanh'] }[kind];
  const acts = a.strings('activations');
  if (acts.length > 0 && acts.join() !== defaults.join()) fail(`activations [${acts.join(', ')}] are not supported (the defaults ${defaults.join(', ')} are)`);
  if (kind === 'gru' && a.int('linear_before_reset', 0) !== 1) fail("linear_before_reset = 0 is not supported (rxgrad's GRU is the reset-after form: PyTorch and Keras reset_after=True export 1)");
  if (ins[4]) fail('sequence_lens is not supported');
  for (const i of [5, 6, 7]) {
    if (!ins[i] || meta.get(ins[i]!) === 'zeros') continue;
    const c = constants.get(ins[i]!);
    if (i === 7 || !c?.floats || c.floats.some((v) => v !== 0)) fail(`input ${i} ('${ins[i]}'): only absent or all-zero initial states are supported`);
  }
  const U = a.int('hidden_size');
  const W = constants.get(ins[1] ?? '');
  const R = constants.get(ins[2] ?? '');
  if (!W?.floats || !R?.floats) return fail('W and R must be initializers');
  const perm = gatePermutation(GATE_ORDER.onnx[kind], GATE_ORDER.rxgrad[kind]);
  const G = perm.length;
  const F = rx[1]!;
  if (W.dims.join() !== [1, G * U, F].join()) fail(`shapes do not chain: W '${ins[1]}' is ${formatShape(W.dims)}, expected [1, ${G * U}, ${F}] for ${F} input features`);
  if (R.dims.join() !== [1, G * U, U].join()) fail(`R '${ins[2]}' is ${formatShape(R.dims)}, expected [1, ${G * U}, ${U}]`);
  const B = ins[3] ? constants.get(ins[3]) : undefined;
  const b = B?.floats ?? new Float32Array(2 * G * U);
  if (b.length !== 2 * G * U) fail(`B '${ins[3]}' has ${b.length} values, expected ${2 * G * U}`);
  const bias = recurrentBiasFromOnnx(kind, b, U);
  const used = (name: string | undefined) => !!name && ((consumers.get(name) ?? []).length > 0 || name === graphOutput);
  if (used(outs[2])) fail('the final cell state Y_c is not supported as an output');
  const sequences = used(outs[0]);
  if (sequences && used(outs[1])) fail('both Y and Y_h are used; rxgrad outputs either every step (returnSequences) or the last');
  const T = rx[0]!;
  if (sequences) values.set(outs[0]!, layout === 0 ? { shape: [T, 1, -1, U], axes: [1, 'unit', 0, 2], flatPerm: null } : { shape: [-1, T, 1, U], axes: [0, 1, 'unit', 2], flatPerm: null });
  else if (outs[1]) values.set(outs[1], layout === 0 ? { shape: [1, -1, U], axes: ['unit', 0, 1], flatPerm: null } : { shape: [-1, 1, U], axes: [0, 'unit', 1], flatPerm: null });
  const params = { kernel: gateMajorToKernel(W.floats, F, U, perm), recurrentKernel: gateMajorToKernel(R.floats, U, U, perm), bias };
  const options = { units: U, returnSequences: sequences };
  if (kind === 'lstm') add('lstm', (name) => lstm({ ...options, unitForgetBias: false, name }), params);
  else if (kind === 'gru') add('gru', (name) => gru({ ...options, name }), params);
  else add('simpleRnn', (name) => simpleRnn({ ...options, name }), params);
}

/**
 * Add(skip, branch): `skip` is a value the chain passed through earlier, `branch` its latest; the layers
 * made since `skip` are the residual block (a ResNet block: conv → BN → ReLU → conv → BN, + x).
 */
export function residualAdd(
  node: NodeProto, inputs: [string, string], values: Map<string, Value>, producedAt: ReadonlyMap<string, number>, layers: Layer[],
  blocks: Map<Layer, Layer[]>, add: AddLayer, fail: (m: string) => never,
): void {
  const [skip, branch] = inputs.map((n) => ({ name: n, value: values.get(n)!, at: producedAt.get(n)! })) as [{ name: string; value: Value; at: number }, { name: string; value: Value; at: number }];
  if (skip.at === branch.at) fail(`adds '${skip.name}' and '${branch.name}' with no layer between them: not a residual block`);
  if (skip.value.axes.join() !== branch.value.axes.join() || skip.value.flatPerm || branch.value.flatPerm) fail(`adds '${skip.name}' and '${branch.name}', held in different layouts`);
  if (skip.value.shape.join() !== branch.value.shape.join()) fail(`shapes do not chain: adds ONNX ${formatShape(skip.value.shape)} and ${formatShape(branch.value.shape)}`);
  const block = layers.splice(skip.at);
  add('residual', (name) => {
    const layer = residual(block, { name });
    blocks.set(layer, block);
    return layer;
  });
  values.set(node.output![0]!, { ...branch.value });
}
