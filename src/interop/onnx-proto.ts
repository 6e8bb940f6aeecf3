/**
 * The ONNX protobuf messages (the `onnx-proto` package: protobufjs code generated from onnx.proto) and
 * the few helpers both directions share: tensors in and out of `TensorProto`, attributes, decoding a
 * file with errors that say what is wrong with it.
 */
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.ModelProto;
export type GraphProto = onnxProto.onnx.IGraphProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** Opsets the exporter writes and the importer reads (default domain). */
export const MIN_OPSET = 13;
export const MAX_OPSET = 21;
export const DEFAULT_OPSET = 17;

/** A file that is not an ONNX model rxgrad can read; names the node, tensor or field at fault. */
export class OnnxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxError';
  }
}

const DataType = onnxProto.onnx.TensorProto.DataType;

/** Values of an initializer or Constant as float32 or integer arrays, whatever the storage field. */
export interface TensorValue {
  dims: number[];
  /** FLOAT tensors. */
  floats: Float32Array | null;
  /** INT64 / INT32 tensors (shapes, indices, axes). */
  ints: number[] | null;
}

const toNumber = (v: number | { toNumber(): number }): number => (typeof v === 'number' ? v : v.toNumber());

/** Reads a TensorProto's values; throws {@link OnnxError} naming the tensor for an unsupported type or a size that does not match its dims. */
export function readTensor(t: TensorProto, where: string): TensorValue {
  const dims = (t.dims ?? []).map(toNumber);
  const size = dims.reduce((a, b) => a * b, 1);
  const name = `${where} '${t.name ?? ''}'`;
  if ((t.dataLocation ?? 0) !== 0) throw new OnnxError(`${name}: external data is not supported (save the model with the weights inside the file)`);
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  const check = (n: number) => {
    if (n !== size) throw new OnnxError(`${name}: dims ${JSON.stringify(dims)} need ${size} values, the tensor holds ${n}`);
  };
  switch (t.dataType) {
    case DataType.FLOAT: {
      let floats: Float32Array;
      if (raw) {
        if (raw.length % 4 !== 0) throw new OnnxError(`${name}: raw_data of ${raw.length} bytes is not a whole number of float32 values`);
        floats = new Float32Array(raw.length / 4);
        new Uint8Array(floats.buffer).set(raw);
      } else floats = Float32Array.from(t.floatData ?? []);
      check(floats.length);
      return { dims, floats, ints: null };
    }
    case DataType.INT64:
    case DataType.INT32: {
      let ints: number[];
      if (raw) {
        const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        const width = t.dataType === DataType.INT64 ? 8 : 4;
        if (raw.length % width !== 0) throw new OnnxError(`${name}: raw_data of ${raw.length} bytes is not a whole number of ${width * 8}-bit integers`);
        ints = [];
        for (let i = 0; i < raw.length; i += width) ints.push(width === 8 ? Number(view.getBigInt64(i, true)) : view.getInt32(i, true));
      } else ints = (t.dataType === DataType.INT64 ? (t.int64Data ?? []) : (t.int32Data ?? [])).map(toNumber);
      check(ints.length);
      return { dims, floats: null, ints };
    }
    default:
      throw new OnnxError(`${name}: data type ${DataType[t.dataType ?? 0] ?? t.dataType} is not supported (FLOAT, INT64, INT32)`);
  }
}

/** A FLOAT initializer (raw little-endian data). */
export function floatTensor(name: string, dims: readonly number[], values: Float32Array): TensorProto {
  return { name, dims: [...dims], dataType: DataType.FLOAT, rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) };
}

/** An INT64 initializer (shapes, axes, indices). */
export function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): TensorProto {
  return { name, dims: [...dims], dataType: DataType.INT64, int64Data: [...values] };
}

/** Attribute lookup of one node, with defaults; errors name the node and attribute. */
export class Attributes {
  private readonly byName = new Map<string, AttributeProto>();
  constructor(private readonly node: NodeProto) {
    for (const a of node.attribute ?? []) this.byName.set(a.name ?? '', a);
  }

  private fail(name: string, message: string): never {
    throw new OnnxError(`node '${this.node.name ?? ''}' (${this.node.opType}): attribute ${name}: ${message}`);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  int(name: string, fallback?: number): number {
    const a = this.byName.get(name);
    if (!a) return fallback ?? this.fail(name, 'is required');
    return toNumber(a.i ?? 0);
  }

  /** A FLOAT attribute as the shortest decimal with the same float32 value (0.2, not 0.20000000298…). */
  float(name: string, fallback?: number): number {
    const a = this.byName.get(name);
    if (!a) return fallback ?? this.fail(name, 'is required');
    return shortestFloat32(a.f ?? 0);
  }

  ints(name: string, fallback?: number[]): number[] {
    const a = this.byName.get(name);
    if (!a) return fallback ?? this.fail(name, 'is required');
    return (a.ints ?? []).map(toNumber);
  }

  string(name: string, fallback?: string): string {
    const a = this.byName.get(name);
    if (!a) return fallback ?? this.fail(name, 'is required');
    return new TextDecoder().decode(a.s ?? new Uint8Array());
  }

  strings(name: string): string[] {
    return (this.byName.get(name)?.strings ?? []).map((s) => new TextDecoder().decode(s));
  }

  names(): string[] {
    return [...this.byName.keys()];
  }
}

/**
 * The shortest decimal that rounds to the same float32 as `v`: ONNX stores float attributes and constants
 * in float32, so an epsilon written as 1e-5 reads back as 9.99999974e-6; this gives 1e-5 again.
 *
 * Usage: `shortestFloat32(Math.fround(0.1)) === 0.1`
 */
export function shortestFloat32(v: number): number {
  for (let digits = 1; digits <= 9; digits++) {
    const candidate = Number(v.toPrecision(digits));
    if (Math.fround(candidate) === Math.fround(v)) return candidate;
  }
  return v;
}

/** An attribute of a node under construction. */
export type AttributeValue = number | number[] | string | { float: number };

/** Builds an AttributeProto: integers as INT/INTS, `{ float }` as FLOAT, strings as STRING. */
export function attribute(name: string, value: AttributeValue): AttributeProto {
  const T = onnxProto.onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if (typeof value === 'number') return { name, type: T.INT, i: value };
  return { name, type: T.FLOAT, f: value.float };
}

/** Encodes a model to bytes. */
export function encodeModel(model: onnxProto.onnx.IModelProto): Uint8Array {
  const problem = onnx.ModelProto.verify(model);
  if (problem) throw new OnnxError(`the exported model is malformed: ${problem}`);
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Decodes ONNX bytes; a truncated or corrupt file is an {@link OnnxError} saying so (protobuf's own
 * message included), and the model's opset must be one this library reads.
 */
export function decodeModel(bytes: Uint8Array, source: string): ModelProto {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw new OnnxError(`${source}: not a readable ONNX protobuf (truncated or corrupt?): ${(error as Error).message}`);
  }
  if (!model.graph || (model.graph.node ?? []).length === 0) throw new OnnxError(`${source}: the file has no graph nodes (is it an ONNX model?)`);
  const opset = opsetOf(model);
  if (opset === null) throw new OnnxError(`${source}: opset_import has no entry for the default ONNX domain`);
  if (opset < MIN_OPSET || opset > MAX_OPSET) throw new OnnxError(`${source}: opset ${opset} is not supported (this library reads opsets ${MIN_OPSET}–${MAX_OPSET}; re-export with e.g. opset_version=${DEFAULT_OPSET})`);
  return model;
}

/** The model's default-domain opset version, or null. */
export function opsetOf(model: ModelProto): number | null {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version ?? 0) : null;
}
