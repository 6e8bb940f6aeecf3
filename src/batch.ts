import {
  DataType, Field, FixedSizeList, Float32, Int32, makeData, Precision, RecordBatch, Schema, Struct, Table,
  type Data, type Float, type Int,
} from 'apache-arrow';
import { formatShape, sizeOf, type Shape } from './tensor.ts';

/** A batch is an Arrow RecordBatch with a `features` column and optionally `labels` or `targets`. */
export type Batch = RecordBatch;

/** Field metadata key holding the per-example shape of a FixedSizeList<Float32> column, as JSON. */
export const SHAPE_METADATA_KEY = 'rxgrad.shape';

/** What {@link batchFromArrays} takes. */
export interface BatchArrays {
  /** rows × prod(shape) values, row-major: Float32 features, or Int32 token ids. */
  features: Float32Array | Int32Array;
  /** Per-example shape, e.g. `[784]` or `[28, 28, 1]`. */
  shape: Shape;
  /** Class indices, one per row (classification), or `labelShape` per row (one per sequence position). */
  labels?: Int32Array;
  /** Per-example label shape, e.g. `[T]` for a language model; default one label per row. */
  labelShape?: Shape;
  /** Float targets, rows × prod(targetShape) (regression). */
  targets?: Float32Array;
  /** Per-example target shape; default `[targets.length / rows]`. */
  targetShape?: Shape;
  /** Further named columns (padding masks, keys), each rows × prod(shape) values. */
  columns?: Record<string, { values: Float32Array | Int32Array; shape: Shape }>;
}

const elementType = (values: Float32Array | Int32Array) => (values instanceof Int32Array ? new Int32() : new Float32());

function fixedSizeListData(values: Float32Array | Int32Array, rows: number, shape: Shape): Data<DataType> {
  const width = sizeOf(shape);
  const child = makeData({ type: elementType(values), length: rows * width, data: values } as Parameters<typeof makeData>[0]);
  return makeData({ type: new FixedSizeList(width, new Field('item', elementType(values), false)), length: rows, nullCount: 0, child } as Parameters<typeof makeData>[0]);
}

function tensorField(name: string, shape: Shape, dtype: 'float32' | 'int32' = 'float32'): Field {
  const element = dtype === 'int32' ? new Int32() : new Float32();
  return new Field(name, new FixedSizeList(sizeOf(shape), new Field('item', element, false)), false, new Map([[SHAPE_METADATA_KEY, JSON.stringify(shape)]]));
}

const dtypeOf = (values: Float32Array | Int32Array): 'float32' | 'int32' => (values instanceof Int32Array ? 'int32' : 'float32');

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
  const fields: Field[] = [tensorField('features', arrays.shape, dtypeOf(arrays.features))];
  const columns: Data<DataType>[] = [fixedSizeListData(arrays.features, rows, arrays.shape)];
  if (arrays.labels) {
    const labelWidth = arrays.labelShape ? sizeOf(arrays.labelShape) : 1;
    if (arrays.labels.length !== rows * labelWidth) throw new RangeError(`batchFromArrays: ${rows} rows of features but ${arrays.labels.length} labels (${labelWidth} per row)`);
    if (arrays.labelShape) {
      fields.push(tensorField('labels', arrays.labelShape, 'int32'));
      columns.push(fixedSizeListData(arrays.labels, rows, arrays.labelShape));
    } else {
      fields.push(new Field('labels', new Int32(), false));
      columns.push(makeData({ type: new Int32(), length: rows, data: arrays.labels }));
    }
  }
  if (arrays.targets) {
    const targetShape = arrays.targetShape ?? [rows === 0 ? 1 : arrays.targets.length / rows];
    if (arrays.targets.length !== rows * sizeOf(targetShape)) {
      throw new RangeError(`batchFromArrays: ${rows} rows of features but ${arrays.targets.length} target values for target shape ${formatShape(targetShape)}`);
    }
    fields.push(tensorField('targets', targetShape));
    columns.push(fixedSizeListData(arrays.targets, rows, targetShape));
  }
  for (const [name, column] of Object.entries(arrays.columns ?? {})) {
    if (column.values.length !== rows * sizeOf(column.shape)) {
      throw new RangeError(`batchFromArrays: column '${name}' has ${column.values.length} values, ${rows} rows of shape ${formatShape(column.shape)} need ${rows * sizeOf(column.shape)}`);
    }
    fields.push(tensorField(name, column.shape, dtypeOf(column.values)));
    columns.push(fixedSizeListData(column.values, rows, column.shape));
  }
  const schema = new Schema(fields);
  return new RecordBatch(schema, makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: columns }));
}

// Type checks by type id, not instanceof: IPC readers rebuild types as the generic Float/Int classes.
const isFloat32 = (type: DataType) => DataType.isFloat(type) && (type as Float).precision === Precision.SINGLE;
const isInt32 = (type: DataType) => DataType.isInt(type) && (type as Int).bitWidth === 32 && (type as Int).isSigned;
const numeric = (type: DataType) => isFloat32(type) || isInt32(type);

/** A numeric column read out of a batch: its values (a view, not a copy), rows and per-row shape. */
export interface TensorColumn<T extends Float32Array | Int32Array = Float32Array | Int32Array> {
  values: T;
  rows: number;
  shape: Shape;
  dtype: 'float32' | 'int32';
}
/** A Float32 column read out of a batch. */
export type FloatColumn = TensorColumn<Float32Array>;

/**
 * Reads a numeric column without copying: a plain Float32/Int32 column (shape `[]`) or a
 * `FixedSizeList<Float32 | Int32>` (shape from the field metadata, else `[listSize]`).
 *
 * Usage: `const { values, rows, shape, dtype } = tensorColumn(batch, 'features');`
 */
export function tensorColumn(batch: Batch, name: string): TensorColumn {
  const field = batch.schema.fields.find((f) => f.name === name);
  const vector = batch.getChild(name);
  if (!field || !vector) {
    throw new TypeError(`batch has no '${name}' column (columns: ${batch.schema.fields.map((f) => f.name).join(', ') || 'none'})`);
  }
  if (vector.data.length !== 1) throw new TypeError(`column '${name}' has ${vector.data.length} chunks; a batch column must have one`);
  const data = vector.data[0]!;
  const rows = batch.numRows;
  if (data.nullCount > 0) throw new TypeError(`column '${name}' has ${data.nullCount} null rows; nulls are not supported`);
  if (numeric(field.type)) {
    const dtype = isInt32(field.type) ? 'int32' : 'float32';
    return { values: (data.values as Float32Array | Int32Array).subarray(0, rows), rows, shape: [], dtype };
  }
  const list = DataType.isFixedSizeList(field.type) ? (field.type as FixedSizeList) : null;
  const element = list?.children[0]?.type;
  if (!list || !element || !numeric(element)) {
    throw new TypeError(`column '${name}' is ${String(field.type)}; expected FixedSizeList<Float32 | Int32>, Float32 or Int32`);
  }
  const width = list.listSize;
  const shape = parseShape(field, width);
  const child = data.children[0]!;
  const values = child.values as Float32Array | Int32Array;
  if (values.length < rows * width) {
    throw new RangeError(`column '${name}': ${rows} rows of ${width} need ${rows * width} values, the buffer has ${values.length}`);
  }
  return { values: values.subarray(0, rows * width), rows, shape, dtype: isInt32(element) ? 'int32' : 'float32' };
}

/**
 * Reads a Float32 column (`FixedSizeList<Float32>` or plain Float32) without copying.
 *
 * Usage: `const { values, rows, shape } = floatColumn(batch, 'features');`
 */
export function floatColumn(batch: Batch, name: string): FloatColumn {
  const column = tensorColumn(batch, name);
  if (column.dtype !== 'float32') throw new TypeError(`column '${name}' holds int32 values; expected Float32`);
  return column as FloatColumn;
}

/**
 * Shape metadata already parsed and checked, by its text and width: a stream's batches repeat a few
 * shapes, so a one-row step does not pay a JSON.parse per column. Bounded (cleared when full).
 */
const parsedShapes = new Map<string, Shape>();

function parseShape(field: Field, width: number): Shape {
  const raw = field.metadata.get(SHAPE_METADATA_KEY);
  if (raw === undefined) return [width];
  const key = `${width} ${raw}`;
  let shape = parsedShapes.get(key);
  if (!shape) {
    shape = parseShapeOnce(field, raw, width);
    if (parsedShapes.size >= 256) parsedShapes.clear();
    parsedShapes.set(key, shape);
  }
  return shape;
}

function parseShapeOnce(field: Field, raw: string, width: number): Shape {
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
 * Reads the Int32 `labels` column (one label per row, or a `FixedSizeList<Int32>` of per-position
 * labels) without copying, or `null` if the batch has none.
 *
 * Usage: `const labels = labelColumn(batch);`
 */
export function labelColumn(batch: Batch, name = 'labels'): TensorColumn<Int32Array> | null {
  if (!batch.schema.fields.some((f) => f.name === name)) return null;
  const column = tensorColumn(batch, name);
  if (column.dtype !== 'int32') throw new TypeError(`column '${name}' holds float32 values; class labels must be Int32`);
  return column as TensorColumn<Int32Array>;
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
 * Copies rows `order[start … start+n)` (or `start … start+n` without an order) of a dataset held in
 * typed arrays into a new batch that owns its data.
 *
 * Usage: `const batch = gatherBatch({ features, shape: [784], labels }, order, 0, 64);`
 */
export function gatherBatch(data: BatchArrays, order: ArrayLike<number> | null, start: number, n: number): Batch {
  const width = sizeOf(data.shape);
  const rows = data.features.length / width;
  const targetWidth = data.targets ? data.targets.length / rows : 0;
  const labelWidth = data.labelShape ? sizeOf(data.labelShape) : 1;
  const gather = <T extends Float32Array | Int32Array>(values: T, w: number): T => {
    const out = new (values.constructor as new (length: number) => T)(n * w);
    for (let i = 0; i < n; i++) {
      const row = order ? order[start + i]! : start + i;
      out.set(values.subarray(row * w, (row + 1) * w), i * w);
    }
    return out;
  };
  const columns = data.columns
    ? Object.fromEntries(Object.entries(data.columns).map(([name, c]) => [name, { values: gather(c.values, sizeOf(c.shape)), shape: c.shape }]))
    : undefined;
  return batchFromArrays({
    features: gather(data.features, width), shape: data.shape,
    ...(data.labels ? { labels: gather(data.labels, labelWidth), ...(data.labelShape ? { labelShape: data.labelShape } : {}) } : {}),
    ...(data.targets ? { targets: gather(data.targets, targetWidth), targetShape: data.targetShape ?? [targetWidth] } : {}),
    ...(columns ? { columns } : {}),
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

/** What {@link batchFromColumns} takes: named columns (no `features`), and labels or targets. */
export interface ColumnArrays {
  /** Each column: rows × prod(shape) values; shape `[]` (one value per row) gives a plain Int32/Float32 column. */
  columns: Record<string, { values: Float32Array | Int32Array; shape?: Shape }>;
  /** One class index per row. */
  labels?: Int32Array;
  /** rows × prod(targetShape) float targets (default one per row). */
  targets?: Float32Array;
  targetShape?: Shape;
}

/**
 * A batch of named columns for a model that reads them through `input(column)` (several inputs,
 * no `features` column). The arrays are wrapped, not copied.
 *
 * Usage: `batchFromColumns({ columns: { user: { values: users }, item: { values: items } }, targets: ratings })`
 */
export function batchFromColumns(arrays: ColumnArrays): Batch {
  const entries = Object.entries(arrays.columns);
  if (entries.length === 0) throw new RangeError('batchFromColumns: give at least one column');
  const [firstName, first] = entries[0]!;
  const rows = first.values.length / sizeOf(first.shape ?? []);
  if (!Number.isInteger(rows)) throw new RangeError(`batchFromColumns: column '${firstName}' has ${first.values.length} values, not whole rows of shape ${formatShape(first.shape ?? [])}`);
  const fields: Field[] = [];
  const columns: Data<DataType>[] = [];
  const add = (name: string, values: Float32Array | Int32Array, shape: Shape) => {
    if (values.length !== rows * sizeOf(shape)) {
      throw new RangeError(`batchFromColumns: column '${name}' has ${values.length} values, ${rows} rows of shape ${formatShape(shape)} need ${rows * sizeOf(shape)}`);
    }
    if (shape.length === 0) {
      fields.push(new Field(name, elementType(values), false));
      columns.push(makeData({ type: elementType(values), length: rows, data: values } as Parameters<typeof makeData>[0]));
    } else {
      fields.push(tensorField(name, shape, dtypeOf(values)));
      columns.push(fixedSizeListData(values, rows, shape));
    }
  };
  for (const [name, column] of entries) {
    if (name === 'features' || name === 'labels' || name === 'targets') throw new RangeError(`batchFromColumns: '${name}' is not a free column name; pass labels or targets as such`);
    add(name, column.values, column.shape ?? []);
  }
  if (arrays.labels) add('labels', arrays.labels, []);
  if (arrays.targets) {
    const shape = arrays.targetShape ?? [1];
    if (arrays.targets.length !== rows * sizeOf(shape)) throw new RangeError(`batchFromColumns: ${rows} rows but ${arrays.targets.length} target values for target shape ${formatShape(shape)}`);
    fields.push(tensorField('targets', shape));
    columns.push(fixedSizeListData(arrays.targets, rows, shape));
  }
  return new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: columns }));
}

/**
 * The stand-in `features` of a model that reads only named columns: zeros of the model's input
 * shape (its layers ignore them).
 */
export function placeholderColumn(rows: number, shape: Shape, dtype: 'float32' | 'int32'): TensorColumn {
  const size = rows * sizeOf(shape);
  return { values: dtype === 'int32' ? new Int32Array(size) : new Float32Array(size), rows, shape, dtype };
}
