/**
 * Tables to datasets: CSV text, Arrow IPC (stream or file/Feather v2) and Parquet, each column a
 * number per row, become one Float32 feature matrix (with an optional per-example shape) and
 * optional Int32 class labels. Every bad value is named by file, row and column.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import { asyncBufferFromFile, parquetReadObjects, parquetSchema, parquetMetadataAsync } from 'hyparquet';
import { DataType } from 'apache-arrow';
import { floatColumn, labelColumn, type Batch } from '../batch.ts';
import { batchesFromIpc } from '../streams/ipc-decode.ts';
import { formatShape, sizeOf } from '../tensor.ts';

/** A labelled (or unlabelled, for prediction) table of examples. */
export interface TabularDataset {
  /** `length × product(shape)` values, example-major. */
  features: Float32Array;
  /** Shape of one example, e.g. `[4]` or `[28, 28, 1]`. */
  shape: number[];
  /** Class index per example, or null when the table has no label column. */
  labels: Int32Array | null;
  /** 1 + the largest label (0 without labels). */
  classes: number;
  /** Number of examples. */
  length: number;
  /** Where it came from (a file path). */
  name: string;
  /** The feature columns in order (for a tensor column, its one name). */
  featureColumns: string[];
}

/** How a table's columns map to features and labels. */
export interface TabularOptions {
  /**
   * The class-label column (integers ≥ 0). Default `'label'` if the table has it, else `'labels'`,
   * else none; `null`: no labels even if such a column exists. A name that is missing is an error.
   */
  label?: string | null;
  /** Feature columns, in order (default: every other column). */
  features?: readonly string[];
  /** Per-example shape (default `[number of feature values]`); its product must match. */
  shape?: readonly number[];
}

/** A table that cannot be turned into a dataset; the message names the file, row and column. */
export class TabularFormatError extends Error {
  override name = 'TabularFormatError';
}

/** One named column of any JS values (numbers, numeric strings, bigints, booleans). */
export interface RawColumn {
  name: string;
  values: ArrayLike<unknown>;
}

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string' && value.trim() !== '') return Number(value);
  return NaN;
}

function pickLabel(names: readonly string[], option: string | null | undefined, source: string): string | null {
  if (option === null) return null;
  if (option !== undefined) {
    if (!names.includes(option)) throw new TabularFormatError(`${source}: no label column '${option}' (columns: ${names.join(', ')})`);
    return option;
  }
  return names.includes('label') ? 'label' : names.includes('labels') ? 'labels' : null;
}

function checkShape(shape: readonly number[] | undefined, width: number, source: string): number[] {
  if (!shape) return [width];
  if (!shape.every((d) => Number.isInteger(d) && d > 0) || sizeOf([...shape]) !== width) {
    throw new TabularFormatError(`${source}: shape ${formatShape([...shape])} does not hold the ${width} feature values of a row`);
  }
  return [...shape];
}

function readLabels(values: ArrayLike<unknown>, column: string, rows: number, source: string): Int32Array {
  const labels = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const v = toNumber(values[r]);
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
      throw new TabularFormatError(`${source}: row ${r + 1}, column '${column}': label ${JSON.stringify(values[r])} is not an integer ≥ 0`);
    }
    labels[r] = v;
  }
  return labels;
}

const classesOf = (labels: Int32Array | null) => (labels && labels.length ? labels.reduce((m, v) => Math.max(m, v), 0) + 1 : 0);

/**
 * Builds a dataset from named columns of scalars, one value per row each.
 *
 * Usage: `const data = datasetFromColumns([{ name: 'x', values: [1, 2] }, { name: 'label', values: [0, 1] }]);`
 */
export function datasetFromColumns(columns: readonly RawColumn[], options: TabularOptions = {}, source = '<table>'): TabularDataset {
  const names = columns.map((c) => c.name);
  const label = pickLabel(names, options.label, source);
  const featureNames = options.features ? [...options.features] : names.filter((n) => n !== label);
  for (const name of featureNames) {
    if (!names.includes(name)) throw new TabularFormatError(`${source}: no feature column '${name}' (columns: ${names.join(', ')})`);
  }
  if (featureNames.length === 0) throw new TabularFormatError(`${source}: no feature columns (columns: ${names.join(', ') || 'none'})`);
  const rows = columns[0]?.values.length ?? 0;
  if (rows === 0) throw new TabularFormatError(`${source}: the table has no rows`);
  const byName = new Map(columns.map((c) => [c.name, c.values]));
  const width = featureNames.length;
  const features = new Float32Array(rows * width);
  featureNames.forEach((name, c) => {
    const values = byName.get(name)!;
    if (values.length !== rows) throw new TabularFormatError(`${source}: column '${name}' has ${values.length} rows, '${names[0]}' has ${rows}`);
    for (let r = 0; r < rows; r++) {
      const v = toNumber(values[r]);
      if (!Number.isFinite(v)) throw new TabularFormatError(`${source}: row ${r + 1}, column '${name}': ${JSON.stringify(values[r] ?? null)} is not a finite number`);
      features[r * width + c] = v;
    }
  });
  const labels = label === null ? null : readLabels(byName.get(label)!, label, rows, source);
  return { features, shape: checkShape(options.shape, width, source), labels, classes: classesOf(labels), length: rows, name: source, featureColumns: featureNames };
}

/**
 * Parses CSV text with a header row (csv-parse) into a dataset.
 *
 * Usage: `const data = datasetFromCsv(await readFile('iris.csv', 'utf8'), { label: 'species' }, 'iris.csv');`
 */
export function datasetFromCsv(text: string, options: TabularOptions = {}, source = '<csv>'): TabularDataset {
  let records: string[][];
  try {
    records = parse(text, { skip_empty_lines: true, trim: true, relax_column_count: false }) as string[][];
  } catch (error) {
    throw new TabularFormatError(`${source}: invalid CSV: ${(error as Error).message}`);
  }
  const header = records[0];
  if (!header) throw new TabularFormatError(`${source}: empty CSV (a header row is required)`);
  if (new Set(header).size !== header.length) throw new TabularFormatError(`${source}: duplicate column names in the header: ${header.join(', ')}`);
  const body = records.slice(1);
  const columns = header.map((name, c) => ({ name, values: body.map((row) => row[c]) }));
  return datasetFromColumns(columns, options, source);
}

/**
 * Arrow record batches to a dataset: either rxgrad's own layout (a `features` tensor column, Int32
 * `labels`) or plain numeric columns, one feature each.
 *
 * Usage: `const data = datasetFromBatches(batchesFromIpc(bytes, { validate: false }), {}, 'train.arrow');`
 */
export function datasetFromBatches(batches: readonly Batch[], options: TabularOptions = {}, source = '<arrow>'): TabularDataset {
  const first = batches[0];
  if (!first || batches.every((b) => b.numRows === 0)) throw new TabularFormatError(`${source}: the table has no rows`);
  const fields = first.schema.fields;
  const tensorLayout = fields.some((f) => f.name === 'features' && DataType.isFixedSizeList(f.type)) && options.features === undefined;
  if (!tensorLayout) {
    const columns = fields.map((f) => ({ name: f.name, values: batches.flatMap((b) => Array.from(b.getChild(f.name)!.toArray() as ArrayLike<unknown>)) }));
    return datasetFromColumns(columns, options, source);
  }
  const label = pickLabel(fields.map((f) => f.name), options.label, source);
  try {
    const parts = batches.map((b) => floatColumn(b, 'features'));
    const shape = checkShape(options.shape ?? parts[0]!.shape, sizeOf(parts[0]!.shape), source);
    const features = new Float32Array(parts.reduce((n, p) => n + p.values.length, 0));
    let at = 0;
    for (const p of parts) {
      features.set(p.values, at);
      at += p.values.length;
    }
    const length = parts.reduce((n, p) => n + p.rows, 0);
    let labels: Int32Array | null = null;
    if (label !== null) {
      labels = new Int32Array(length);
      let row = 0;
      for (const b of batches) {
        const column = label === 'labels' ? labelColumn(b) : null;
        const values = column ? column.values : (b.getChild(label)!.toArray() as ArrayLike<unknown>);
        labels.set(readLabels(values, label, b.numRows, source), row);
        row += b.numRows;
      }
    }
    return { features, shape, labels, classes: classesOf(labels), length, name: source, featureColumns: ['features'] };
  } catch (error) {
    if (error instanceof TabularFormatError) throw error;
    throw new TabularFormatError(`${source}: ${(error as Error).message}`);
  }
}

/**
 * Reads a Parquet file (hyparquet, pure JS) into a dataset.
 *
 * Usage: `const data = await datasetFromParquet('train.parquet', { label: 'label' });`
 */
export async function datasetFromParquet(path: string, options: TabularOptions = {}): Promise<TabularDataset> {
  let columns: RawColumn[];
  try {
    const file = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(file);
    const names = parquetSchema(metadata).children.map((c) => c.element.name);
    const rows = (await parquetReadObjects({ file, metadata })) as Record<string, unknown>[];
    columns = names.map((name) => ({ name, values: rows.map((row) => row[name]) }));
  } catch (error) {
    throw new TabularFormatError(`${path}: invalid Parquet: ${(error as Error).message}`);
  }
  return datasetFromColumns(columns, options, path);
}

/**
 * Reads an Arrow IPC file (Feather v2) or stream into a dataset, through the verified IPC framing.
 *
 * Usage: `const data = await datasetFromArrowFile('train.arrow');`
 */
export async function datasetFromArrowFile(path: string, options: TabularOptions = {}): Promise<TabularDataset> {
  const bytes = await readFile(path);
  let batches: Batch[];
  try {
    batches = batchesFromIpc(bytes, { validate: false });
  } catch (error) {
    throw new TabularFormatError(`${path}: invalid Arrow IPC: ${(error as Error).message}`);
  }
  return datasetFromBatches(batches, options, path);
}
