import {
  Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table, tableFromIPC, type Data,
  type DataType,
} from 'apache-arrow';
import { formatShape, sizeOf, type Shape } from './tensor.ts';

/** A batch is an Arrow RecordBatch with a `features` column and optionally `labels` or `targets`. */
export type Batch = RecordBatch;

/** Field metadata key holding the per-example shape of a FixedSizeList<Float32> column, as JSON. */
export const SHAPE_METADATA_KEY = 'rxgrad.shape';

/** What {@link batchFromArrays} takes. */
export interface BatchArrays {
  /** rows × prod(shape) values, row-major. */
  features: Float32Array;
  /** Per-example shape, e.g. `[784]` or `[28, 28, 1]`. */
  shape: Shape;
  /** Class indices, one per row (classification). */
  labels?: Int32Array;
  /** Float targets, rows × prod(targetShape) (regression). */
  targets?: Float32Array;
  /** Per-example target shape; default `[targets.length / rows]`. */
  targetShape?: Shape;
}

function fixedSizeListData(values: Float32Array, rows: number, shape: Shape): Data<FixedSizeList<Float32>> {
  const width = sizeOf(shape);
  const child = makeData({ type: new Float32(), length: rows * width, data: values });
  return makeData({ type: new FixedSizeList(width, new Field('item', new Float32(), false)), length: rows, nullCount: 0, child });
}

function tensorField(name: string, shape: Shape): Field {
  return new Field(name, new FixedSizeList(sizeOf(shape), new Field('item', new Float32(), false)), false, new Map([[SHAPE_METADATA_KEY, JSON.stringify(shape)]]));
}

/**
 * Builds a batch from typed arrays. The arrays are wrapped, not copied: do not modify them while
 * the batch is in use.
 *
 * Usage: `const batch = batchFromArrays({ features, shape: [784], labels });`
 */
export function batchFromArrays(arrays: BatchArrays): Batch {
  const width = sizeOf(arrays.shape);
  if (width <= 0 || !arrays.shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new RangeError(`batchFromArrays: shape ${formatShape(arrays.shape)} must be positive integers`);
  }
  if (arrays.features.length % width !== 0) {
    throw new RangeError(`batchFromArrays: features has ${arrays.features.length} values, not a multiple of shape ${formatShape(arrays.shape)} (${width} per row)`);
  }
  const rows = arrays.features.length / width;
  const fields: Field[] = [tensorField('features', arrays.shape)];
  const columns: Data<DataType>[] = [fixedSizeListData(arrays.features, rows, arrays.shape)];
  if (arrays.labels) {
    if (arrays.labels.length !== rows) throw new RangeError(`batchFromArrays: ${rows} rows of features but ${arrays.labels.length} labels`);
    fields.push(new Field('labels', new Int32(), false));
    columns.push(makeData({ type: new Int32(), length: rows, data: arrays.labels }));
  }
  if (arrays.targets) {
    const targetShape = arrays.targetShape ?? [rows === 0 ? 1 : arrays.targets.length / rows];
    if (arrays.targets.length !== rows * sizeOf(targetShape)) {
      throw new RangeError(`batchFromArrays: ${rows} rows of features but ${arrays.targets.length} target values for target shape ${formatShape(targetShape)}`);
    }
    fields.push(tensorField('targets', targetShape));
    columns.push(fixedSizeListData(arrays.targets, rows, targetShape));
  }
  const schema = new Schema(fields);
  return new RecordBatch(schema, makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: columns }));
}

/** A float column read out of a batch: its values (a view, not a copy), rows and per-row shape. */
export interface FloatColumn {
  values: Float32Array;
  rows: number;
  shape: Shape;
}

/**
 * Reads a `FixedSizeList<Float32>` column (or a plain Float32 column, shape `[]`) without copying.
 * The shape comes from the field metadata, else `[listSize]`.
 *
 * Usage: `const { values, rows, shape } = floatColumn(batch, 'features');`
 */
export function floatColumn(batch: Batch, name: string): FloatColumn {
  const field = batch.schema.fields.find((f) => f.name === name);
  const vector = batch.getChild(name);
  if (!field || !vector) {
    throw new TypeError(`batch has no '${name}' column (columns: ${batch.schema.fields.map((f) => f.name).join(', ') || 'none'})`);
  }
  if (vector.data.length !== 1) throw new TypeError(`column '${name}' has ${vector.data.length} chunks; a batch column must have one`);
  const data = vector.data[0]!;
  const rows = batch.numRows;
  if (field.type instanceof Float32) {
    return { values: (data.values as Float32Array).subarray(0, rows), rows, shape: [] };
  }
  if (!(field.type instanceof FixedSizeList) || !(field.type.children[0]?.type instanceof Float32)) {
    throw new TypeError(`column '${name}' is ${String(field.type)}; expected FixedSizeList<Float32> or Float32`);
  }
  if (data.nullCount > 0) throw new TypeError(`column '${name}' has ${data.nullCount} null rows; nulls are not supported`);
  const width = field.type.listSize;
  const shape = parseShape(field, width);
  const child = data.children[0]!;
  const values = child.values as Float32Array;
  if (values.length < rows * width) {
    throw new RangeError(`column '${name}': ${rows} rows of ${width} need ${rows * width} values, the buffer has ${values.length}`);
  }
  return { values: values.subarray(0, rows * width), rows, shape };
}

function parseShape(field: Field, width: number): Shape {
  const raw = field.metadata.get(SHAPE_METADATA_KEY);
  if (raw === undefined) return [width];
  let shape: unknown;
  try {
    shape = JSON.parse(raw);
  } catch {
    throw new TypeError(`column '${field.name}': metadata '${SHAPE_METADATA_KEY}' is not JSON: ${raw}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d > 0) || sizeOf(shape) !== width) {
    throw new TypeError(`column '${field.name}': metadata '${SHAPE_METADATA_KEY}' = ${raw} does not describe ${width} values per row`);
  }
  return shape as number[];
}

/**
 * Reads the Int32 `labels` column without copying, or `null` if the batch has none.
 *
 * Usage: `const labels = labelColumn(batch);`
 */
export function labelColumn(batch: Batch, name = 'labels'): Int32Array | null {
  const field = batch.schema.fields.find((f) => f.name === name);
  if (!field) return null;
  if (!(field.type instanceof Int32)) throw new TypeError(`column '${name}' is ${String(field.type)}; class labels must be Int32`);
  const data = batch.getChild(name)!.data;
  if (data.length !== 1) throw new TypeError(`column '${name}' has ${data.length} chunks; a batch column must have one`);
  if (data[0]!.nullCount > 0) throw new TypeError(`column '${name}' has ${data[0]!.nullCount} null rows; nulls are not supported`);
  return (data[0]!.values as Int32Array).subarray(0, batch.numRows);
}

/**
 * Every record batch of an Arrow table (e.g. from DuckDB, Parquet readers or `tableFromArrays`).
 *
 * Usage: `from(batchesFromTable(table)).pipe(model.fit(...))`
 */
export function batchesFromTable(table: Table): Batch[] {
  return table.batches;
}

/**
 * Decodes Arrow IPC bytes (stream or file format) into batches. Malformed bytes throw.
 *
 * Usage: `const batches = batchesFromIpc(await readFile('train.arrow'));`
 */
export function batchesFromIpc(bytes: Uint8Array): Batch[] {
  return tableFromIPC(bytes).batches;
}

/**
 * Copies rows `order[start … start+n)` (or `start … start+n` without an order) of a dataset held in
 * typed arrays into a new batch that owns its data.
 *
 * Usage: `const batch = gatherBatch({ features, shape: [784], labels }, order, 0, 64);`
 */
export function gatherBatch(data: BatchArrays, order: ArrayLike<number> | null, start: number, n: number): Batch {
  const width = sizeOf(data.shape);
  const rows = data.features.length / width;
  const targetWidth = data.targets ? data.targets.length / rows : 0;
  const features = new Float32Array(n * width);
  const labels = data.labels ? new Int32Array(n) : undefined;
  const targets = data.targets ? new Float32Array(n * targetWidth) : undefined;
  for (let i = 0; i < n; i++) {
    const row = order ? order[start + i]! : start + i;
    features.set(data.features.subarray(row * width, (row + 1) * width), i * width);
    if (labels) labels[i] = data.labels![row]!;
    if (targets) targets.set(data.targets!.subarray(row * targetWidth, (row + 1) * targetWidth), i * targetWidth);
  }
  return batchFromArrays({
    features, shape: data.shape,
    ...(labels ? { labels } : {}),
    ...(targets ? { targets, targetShape: data.targetShape ?? [targetWidth] } : {}),
  });
}

/**
 * Splits a dataset held in typed arrays into batches of `batchSize` rows, in the given row order,
 * each batch owning a copy of its rows.
 *
 * Usage: `const batches = batchesFromArrays({ features, shape: [784], labels }, 64);`
 */
export function batchesFromArrays(data: BatchArrays, batchSize: number, order?: ArrayLike<number>): Batch[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchesFromArrays: batchSize must be a positive integer, got ${batchSize}`);
  const rows = data.features.length / sizeOf(data.shape);
  const batches: Batch[] = [];
  for (let start = 0; start < rows; start += batchSize) batches.push(gatherBatch(data, order ?? null, start, Math.min(batchSize, rows - start)));
  return batches;
}

/**
 * Turns model outputs (rows × prod(shape), copied) into an Arrow batch with an `output` column and,
 * for classifiers, a `prediction` column (argmax, Int32), plus any pass-through columns.
 *
 * Usage: `const out = outputBatch(values, [10], { argmax: true });`
 */
export function outputBatch(
  values: Float32Array, shape: Shape, options: { argmax?: boolean; passThrough?: readonly { field: Field; data: Data<DataType> }[] } = {},
): Batch {
  const width = sizeOf(shape);
  const rows = values.length / width;
  const fields: Field[] = [tensorField('output', shape)];
  const columns: Data<DataType>[] = [fixedSizeListData(values, rows, shape)];
  if (options.argmax) {
    const prediction = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let c = 1; c < width; c++) if (values[r * width + c]! > values[r * width + best]!) best = c;
      prediction[r] = best;
    }
    fields.push(new Field('prediction', new Int32(), false));
    columns.push(makeData({ type: new Int32(), length: rows, data: prediction }));
  }
  for (const { field, data } of options.passThrough ?? []) {
    fields.push(field);
    columns.push(data);
  }
  return new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: columns }));
}
