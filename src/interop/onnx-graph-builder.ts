/**
 * The ONNX graph under construction by the exporter: nodes, initializers, unique names, the model's
 * weights, graph inputs for side columns, and the NHWC ↔ NCHW transposes around image operators.
 */
import type { Shape } from '../tensor.ts';
import { attribute, floatTensor, int64Tensor, onnx, OnnxError, type AttributeValue, type NodeProto, type TensorProto, type ValueInfoProto } from './onnx-proto.ts';

/** A value in the graph under construction: its name, per-example rxgrad shape, and whether it is held NCHW. */
export interface Value {
  name: string;
  shape: Shape;
  /** True when the ONNX tensor is `[N, C, H, W]` for the rxgrad `[H, W, C]` (between conv/pool ops). */
  nchw: boolean;
}

/** A graph input or output description: name, element type, `[batch, …shape]` (a string dim is symbolic). */
export function valueInfo(name: string, elemType: number, shape: readonly (number | string)[]): ValueInfoProto {
  const dims = ['batch', ...shape].map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return { name, type: { tensorType: { elemType, shape: { dim: dims } } } };
}

/** Builds one graph; see the file comment. */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  /** Graph inputs beyond `input`: the batch columns layers read (padding masks, memories, sources), by column name. */
  readonly sideInputs: ValueInfoProto[] = [];
  /** Side columns as graph values: batch columns (graph inputs) and memories computed in the graph (encoderDecoder). */
  readonly columns = new Map<string, Value>();
  private count = 0;
  constructor(readonly opset: number, private readonly weights: ReadonlyMap<string, Float32Array>) {}

  /**
   * The graph value of side column `name`: one computed in the graph (an encoder's memory) or a graph input
   * named after the column, `[batch, …shape]` (string dims symbolic), created on first use.
   */
  column(name: string, shape: readonly (number | string)[], elemType: number = onnx.TensorProto.DataType.FLOAT): Value {
    const known = this.columns.get(name);
    if (known) return known;
    this.sideInputs.push(valueInfo(name, elemType, shape));
    const value: Value = { name, shape: shape.map((d) => (typeof d === 'number' ? d : 0)), nchw: false };
    this.columns.set(name, value);
    return value;
  }

  fresh(hint: string): string {
    return `${hint}:${++this.count}`;
  }

  /** Adds a node; returns its first output. */
  op(opType: string, inputs: string[], attrs: Record<string, AttributeValue> = {}, hint = opType, outputs = 1): string {
    const names = Array.from({ length: outputs }, (_, i) => this.fresh(`${hint}${outputs > 1 ? `.${i}` : ''}`));
    this.nodes.push({
      opType, name: this.fresh(`${hint}/${opType}`), input: inputs, output: names,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return names[0]!;
  }

  /** The outputs of the last node added. */
  lastOutputs(): string[] {
    return this.nodes.at(-1)!.output ?? [];
  }

  floats(name: string, dims: readonly number[], values: Float32Array): string {
    this.initializers.push(floatTensor(name, dims, values));
    return name;
  }

  ints(hint: string, values: readonly number[]): string {
    const name = this.fresh(hint);
    this.initializers.push(int64Tensor(name, [values.length], values));
    return name;
  }

  /** A model parameter by full name; a missing one is a bug in the layer tree, named. */
  weight(name: string): Float32Array {
    const w = this.weights.get(name);
    if (!w) throw new OnnxError(`exportOnnx: parameter '${name}' not found in the model (known: ${[...this.weights.keys()].join(', ')})`);
    return w;
  }

  /** A parameter as an initializer of the same name in its rxgrad layout. */
  param(name: string, dims: readonly number[]): string {
    return this.floats(name, dims, this.weight(name));
  }

  nhwc(v: Value): Value {
    return v.nchw ? { name: this.op('Transpose', [v.name], { perm: [0, 2, 3, 1] }, 'to_nhwc'), shape: v.shape, nchw: false } : v;
  }

  nchw(v: Value): Value {
    return v.nchw ? v : { name: this.op('Transpose', [v.name], { perm: [0, 3, 1, 2] }, 'to_nchw'), shape: v.shape, nchw: true };
  }
}

