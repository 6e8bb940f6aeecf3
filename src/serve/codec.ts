/**
 * Request and response bodies of the prediction server: JSON (`{"instances": [[…], …]}` or
 * `{"features": […]}`) and Arrow IPC (a `features` tensor column, stream or file format). Every
 * malformed body becomes a {@link BadRequestError} naming what is wrong.
 */
import { RecordBatch, tableToIPC, Table } from 'apache-arrow';
import { outputBatch, tensorColumn, type Batch } from '../batch.ts';
import { batchesFromIpc } from '../streams/ipc-decode.ts';
import { formatShape, sizeOf, type DType, type Shape } from '../tensor.ts';

/** Media type of Arrow IPC stream bodies. */
export const ARROW_STREAM = 'application/vnd.apache.arrow.stream';
/** Media type of Arrow IPC file bodies (accepted in requests). */
export const ARROW_FILE = 'application/vnd.apache.arrow.file';

/** A request the server cannot use: answered 400 (or `status`) with this message. */
export class BadRequestError extends Error {
  override name = 'BadRequestError';
  constructor(message: string, readonly status = 400) {
    super(message);
  }
}

/** The rows of one request, decoded. */
export interface DecodedRows {
  features: Float32Array | Int32Array;
  rows: number;
  /** `true`: `{"features": […]}` (one example), answered without the outer list. */
  single: boolean;
}

/** What a body must fit: the model's input and the server's limits. */
export interface InputSpec {
  shape: Shape;
  dtype: DType;
  maxRows: number;
}

/** Flattens one JSON instance (nested arrays allowed) into `out` at `at`; returns the count written. */
function flattenInto(value: unknown, out: Float32Array | Int32Array, at: number, path: string, integer: boolean): number {
  if (Array.isArray(value)) {
    let n = 0;
    for (let i = 0; i < value.length; i++) n += flattenInto(value[i], out, at + n, `${path}[${i}]`, integer);
    return n;
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new BadRequestError(`${path} is ${JSON.stringify(value) ?? String(value)}; expected a finite number`);
  if (integer && !Number.isInteger(value)) throw new BadRequestError(`${path} is ${value}; this model takes integer token ids`);
  if (at >= out.length) throw new BadRequestError(`${path}: too many values`);
  out[at] = value;
  return 1;
}

function countLeaves(value: unknown): number {
  return Array.isArray(value) ? value.reduce((n: number, v) => n + countLeaves(v), 0) : 1;
}

/**
 * Decodes a JSON body: `{"instances": [example, …]}` or `{"features": example}`, each example
 * the model's input shape as a flat or nested array of numbers.
 *
 * Usage: `const { features, rows } = decodeJson(body, { shape: [784], dtype: 'float32', maxRows: 64 });`
 */
export function decodeJson(body: Uint8Array, spec: InputSpec): DecodedRows {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (error) {
    throw new BadRequestError(`body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new BadRequestError('body must be a JSON object with "instances" or "features"');
  const record = parsed as Record<string, unknown>;
  const single = !('instances' in record);
  const instances = single ? (record.features === undefined ? undefined : [record.features]) : record.instances;
  if (!Array.isArray(instances)) throw new BadRequestError(single ? 'body must have "instances" (a list of examples) or "features" (one example)' : '"instances" must be a list of examples');
  const rows = instances.length;
  if (rows === 0) throw new BadRequestError('"instances" is empty');
  if (rows > spec.maxRows) throw new BadRequestError(`${rows} instances in one request; the limit is ${spec.maxRows}`, 413);
  const width = sizeOf(spec.shape);
  const features = spec.dtype === 'int32' ? new Int32Array(rows * width) : new Float32Array(rows * width);
  instances.forEach((instance, r) => {
    const path = single ? 'features' : `instances[${r}]`;
    const n = countLeaves(instance);
    if (n !== width) throw new BadRequestError(`${path} has ${n} values; the model takes ${width} (shape ${formatShape(spec.shape)})`);
    flattenInto(instance, features, r * width, path, spec.dtype === 'int32');
  });
  return { features, rows, single };
}

/**
 * Decodes an Arrow IPC body (stream or file) whose batches have a `features` column of the model's
 * width, read through rxgrad's verified IPC framing.
 *
 * Usage: `const { features, rows } = decodeArrow(body, spec);`
 */
export function decodeArrow(body: Uint8Array, spec: InputSpec): DecodedRows {
  let batches: Batch[];
  try {
    batches = batchesFromIpc(body, { maxRows: spec.maxRows, maxMessageBytes: body.length + 64 });
  } catch (error) {
    throw new BadRequestError(`body is not a usable Arrow IPC stream: ${(error as Error).message}`);
  }
  const width = sizeOf(spec.shape);
  const rows = batches.reduce((n, b) => n + b.numRows, 0);
  if (rows === 0) throw new BadRequestError('the Arrow body holds no rows');
  if (rows > spec.maxRows) throw new BadRequestError(`${rows} rows in one request; the limit is ${spec.maxRows}`, 413);
  const features = spec.dtype === 'int32' ? new Int32Array(rows * width) : new Float32Array(rows * width);
  let at = 0;
  for (const batch of batches) {
    let column;
    try {
      column = tensorColumn(batch, 'features');
    } catch (error) {
      throw new BadRequestError(`Arrow body: ${(error as Error).message}`);
    }
    if (sizeOf(column.shape) !== width) throw new BadRequestError(`Arrow body: 'features' has ${sizeOf(column.shape)} values per row; the model takes ${width} (shape ${formatShape(spec.shape)})`);
    if (column.dtype !== spec.dtype) throw new BadRequestError(`Arrow body: 'features' is ${column.dtype}; the model takes ${spec.dtype}`);
    for (let i = 0; i < column.values.length; i++) {
      if (!Number.isFinite(column.values[i]!)) throw new BadRequestError(`Arrow body: row ${(at + i) / width | 0}: feature ${i % width} is ${column.values[i]}; expected a finite number`);
    }
    features.set(column.values, at);
    at += column.values.length;
  }
  return { features, rows, single: false };
}

/** One request's share of a batch's output. */
export interface RowsResult {
  /** rows × prod(outputShape) values. */
  output: Float32Array;
  outputShape: Shape;
  /** argmax per row (classifiers), else null. */
  prediction: Int32Array | null;
  step: number;
  model: string;
}

/** The JSON answer: `{"predictions": [...], "outputs": [[...]], "step", "model"}` (or the single-example form). */
export function encodeJson(result: RowsResult, single: boolean): string {
  const width = sizeOf(result.outputShape);
  const rows = result.output.length / width;
  const outputs: number[][] = [];
  for (let r = 0; r < rows; r++) outputs.push(Array.from(result.output.subarray(r * width, (r + 1) * width)));
  const head = { step: result.step, model: result.model };
  if (single) return JSON.stringify({ ...(result.prediction ? { prediction: result.prediction[0] } : {}), output: outputs[0], ...head });
  return JSON.stringify({ ...(result.prediction ? { predictions: Array.from(result.prediction) } : {}), outputs, ...head });
}

/** The Arrow answer: an IPC stream with `output` (and `prediction` for classifiers). */
export function encodeArrow(result: RowsResult): Uint8Array {
  const batch: RecordBatch = outputBatch(result.output, result.outputShape, { argmax: result.prediction !== null });
  return tableToIPC(new Table(batch), 'stream');
}
