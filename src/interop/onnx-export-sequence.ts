/**
 * The exporter's sequence layers: recurrent layers as ONNX LSTM / GRU / RNN, and multi-head attention
 * (self or cross, causal, padding masks from side-column graph inputs) as standard ops.
 */
import { onnx, type AttributeValue } from './onnx-proto.ts';
import type { GraphBuilder, Value } from './onnx-graph-builder.ts';
import type { LayerNode } from './layer-tree.ts';
import { GATE_ORDER, gatePermutation, kernelToGateMajor, permuteGates, type RecurrentKind } from './layouts.ts';

const num = (c: Record<string, unknown>, key: string): number => c[key] as number;

/**
 * The optional inputs after B: `['', initial_h(, initial_c)]` (each `[1, batch, U]`) for a learned state
 * (the parameter `[S, U]` expanded over the batch) or a column state (the graph input `[batch, (S,) U]`,
 * state-major); none for zeros. S = 2 for LSTM (h then c, as rxgrad stores it), else 1.
 */
function initialStates(g: GraphBuilder, n: LayerNode, x: Value, S: number, U: number): string[] {
  const mode = n.config['initialState'];
  if (mode === 'zeros') return [];
  let stateMajor: string;
  if (mode === 'learned') {
    const table = g.param(`${n.prefix}initialState`, S === 1 ? [U] : [S, U]);
    const batch = g.op('Slice', [g.op('Shape', [x.name], {}, n.name), g.ints('start', [0]), g.ints('end', [1])], {}, n.name);
    const shape = g.op('Concat', [g.ints('states', [S]), batch, g.ints('units', [U])], { axis: 0 }, n.name);
    stateMajor = g.op('Expand', [g.op('Reshape', [table, g.ints('shape', [S, 1, U])], {}, n.name), shape], {}, n.name);
  } else {
    const column = g.column(n.config['initialStateColumn'] as string, S === 1 ? [U] : [S, U]);
    stateMajor = g.op('Transpose', [g.op('Reshape', [column.name, g.ints('shape', [-1, S, U])], {}, n.name)], { perm: [1, 0, 2] }, n.name);
  }
  if (S === 1) return ['', stateMajor];
  const slice = (i: number) => g.op('Slice', [stateMajor, g.ints('start', [i]), g.ints('end', [i + 1]), g.ints('axes', [0])], {}, n.name);
  return ['', slice(0), slice(1)];
}

/** lstm / gru / simpleRnn as ONNX LSTM / GRU (linear_before_reset) / RNN over a time-major transpose. */
export function recurrent(g: GraphBuilder, n: LayerNode, x: Value): Value {
  const c = n.config;
  const kind = n.kind as RecurrentKind;
  const U = num(c, 'units');
  const [T, F] = x.shape as [number, number];
  const perm = gatePermutation(GATE_ORDER.rxgrad[kind], GATE_ORDER.onnx[kind]);
  const G = perm.length;
  const W = g.floats(`${n.prefix}kernel`, [1, G * U, F], kernelToGateMajor(g.weight(`${n.prefix}kernel`), F, U, perm));
  const R = g.floats(`${n.prefix}recurrentKernel`, [1, G * U, U], kernelToGateMajor(g.weight(`${n.prefix}recurrentKernel`), U, U, perm));
  const b = g.weight(`${n.prefix}bias`);
  const biases = new Float32Array(2 * G * U);
  if (kind === 'gru') {
    biases.set(permuteGates(b.subarray(0, G * U), U, perm), 0);
    biases.set(permuteGates(b.subarray(G * U), U, perm), G * U);
  } else biases.set(permuteGates(b, U, perm), 0);
  const B = g.floats(`${n.prefix}bias`, [1, 2 * G * U], biases);
  const timeMajor = g.op('Transpose', [x.name], { perm: [1, 0, 2] }, n.name);
  const attrs: Record<string, AttributeValue> = { hidden_size: U };
  if (kind === 'gru') attrs['linear_before_reset'] = 1;
  g.op({ lstm: 'LSTM', gru: 'GRU', simpleRnn: 'RNN' }[kind], [timeMajor, W, R, B, ...initialStates(g, n, x, kind === 'lstm' ? 2 : 1, U)], attrs, n.name, kind === 'lstm' ? 3 : 2);
  const [Y, Yh] = g.lastOutputs() as [string, string];
  if (c['returnSequences'] === true) {
    const seq = g.op('Reshape', [Y, g.ints('shape', [T, -1, U])], {}, n.name);
    return { name: g.op('Transpose', [seq], { perm: [1, 0, 2] }, n.name), shape: [T, U], nchw: false };
  }
  return { name: g.op('Reshape', [Yh, g.ints('shape', [-1, U])], {}, n.name), shape: [U], nchw: false };
}

/**
 * Multi-head attention as MatMul/Reshape/Transpose/Softmax. Keys and values come from x (self) or from
 * the memory column (cross: a graph input named after the column, or an encoder's output). Masking as
 * rxgrad: masked scores replaced by −1e30 (padding: `Where` on the mask column, a graph input `[batch, S]`
 * where 0 = padding; causal: adding −1e30, which gives the same float), and the weights multiplied by the
 * visibility so that a query with no visible key gets zero weights, as rxgrad gives it.
 */
export function attention(g: GraphBuilder, n: LayerNode, x: Value): Value {
  const c = n.config;
  const [T, D] = x.shape as [number, number];
  const cross = c['cross'] as { column: string; dim: number | null; mask: string | null } | null;
  const memory = cross ? g.column(cross.column, ['memory_length', cross.dim ?? D]) : x;
  const memoryDim = cross ? (cross.dim ?? D) : D;
  const maskColumn = cross ? cross.mask : (c['mask'] as string | null);
  const H = num(c, 'heads');
  const dk = num(c, 'keyDim');
  const dv = num(c, 'valueDim');
  const out = (c['outputDim'] as number | null) ?? D;
  const bias = c['useBias'] !== false;
  const project = (what: string, from: Value, width: number, inDim: number) => {
    const y = g.op('MatMul', [from.name, g.param(`${n.prefix}${what}/kernel`, [inDim, width])], {}, `${n.name}/${what}`);
    return bias ? g.op('Add', [y, g.param(`${n.prefix}${what}/bias`, [width])], {}, `${n.name}/${what}`) : y;
  };
  const heads = (v: string, size: number, perm: number[]) => g.op('Transpose', [g.op('Reshape', [v, g.ints('shape', [0, 0, H, size])], {}, n.name)], { perm }, n.name);
  const scalar = (hint: string, v: number) => g.floats(g.fresh(`${n.name}/${hint}`), [], new Float32Array([v]));
  const q = heads(project('query', x, H * dk, D), dk, [0, 2, 1, 3]);
  const k = heads(project('key', memory, H * dk, memoryDim), dk, [0, 2, 3, 1]);
  const v = heads(project('value', memory, H * dv, memoryDim), dv, [0, 2, 1, 3]);
  let scores = g.op('Mul', [g.op('MatMul', [q, k], {}, n.name), scalar('scale', 1 / Math.sqrt(dk))], {}, n.name);
  const visibility: string[] = [];
  if (maskColumn) {
    const mask = g.column(maskColumn, [cross ? 'memory_length' : T]);
    const padded = g.op('Reshape', [g.op('Equal', [mask.name, scalar('zero', 0)], {}, n.name), g.ints('shape', [0, 1, 1, -1])], {}, n.name);
    scores = g.op('Where', [padded, scalar('masked', -1e30), scores], {}, n.name);
    visibility.push(g.op('Cast', [g.op('Not', [padded], {}, n.name)], { to: onnx.TensorProto.DataType.FLOAT }, n.name));
  }
  if (c['causal'] === true) {
    const add = new Float32Array(T * T);
    const visible = new Float32Array(T * T);
    for (let t = 0; t < T; t++) {
      add.fill(-1e30, t * T + t + 1, (t + 1) * T);
      visible.fill(1, t * T, t * T + t + 1);
    }
    scores = g.op('Add', [scores, g.floats(g.fresh(`${n.name}/causal`), [T, T], add)], {}, n.name);
    // Causal alone always leaves the diagonal visible; the product matters only with a padding mask.
    if (maskColumn) visibility.push(g.floats(g.fresh(`${n.name}/causal_visible`), [T, T], visible));
  }
  let weights = g.op('Softmax', [scores], { axis: -1 }, n.name);
  for (const m of visibility) weights = g.op('Mul', [weights, m], {}, n.name);
  const mixed = g.op('Transpose', [g.op('MatMul', [weights, v], {}, n.name)], { perm: [0, 2, 1, 3] }, n.name);
  const joined = g.op('Reshape', [mixed, g.ints('shape', [0, 0, H * dv])], {}, n.name);
  let y = g.op('MatMul', [joined, g.param(`${n.prefix}output/kernel`, [H * dv, out])], {}, `${n.name}/output`);
  if (bias) y = g.op('Add', [y, g.param(`${n.prefix}output/bias`, [out])], {}, `${n.name}/output`);
  return { name: y, shape: [T, out], nchw: false };
}
