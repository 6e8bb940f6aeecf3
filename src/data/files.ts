/**
 * One entry point for a data file on disk, chosen by its extension: IDX (MNIST-style, optionally
 * gzipped, with a separate labels file), CSV, Arrow IPC / Feather, or Parquet.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { readIdxFile } from './idx.ts';
import { datasetFromArrowFile, datasetFromCsv, datasetFromParquet, TabularFormatError, type TabularDataset, type TabularOptions } from './tabular.ts';
import { formatShape, sizeOf } from '../tensor.ts';

/** The formats {@link loadDataFile} reads. */
export type DataFormat = 'idx' | 'csv' | 'arrow' | 'parquet';

/** Options of {@link loadDataFile}. */
export interface DataFileOptions extends TabularOptions {
  /** Format (default: from the extension). */
  format?: DataFormat;
  /** IDX only: the labels file (an IDX vector with one integer per image). */
  labels?: string;
}

/**
 * The format of a data file from its name: `.csv`, `.arrow`/`.arrows`/`.feather`/`.ipc`,
 * `.parquet`/`.pq`, IDX (`.idx`, `-ubyte`, `.idx1`…`.idx3`, optionally `.gz`), or null.
 *
 * Usage: `dataFormatOf('train-images-idx3-ubyte.gz') // 'idx'`
 */
export function dataFormatOf(path: string): DataFormat | null {
  const name = basename(path).toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.csv')) return 'csv';
  if (/\.(arrow|arrows|feather|ipc)$/.test(name)) return 'arrow';
  if (/\.(parquet|pq)$/.test(name)) return 'parquet';
  if (/(\.idx\d?|-ubyte|idx\d-ubyte)$/.test(name)) return 'idx';
  return null;
}

/**
 * IDX images (any leading count, any element type; unsigned bytes are scaled to [0, 1]) with an
 * optional IDX labels file.
 *
 * Usage: `const data = datasetFromIdx('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz');`
 */
export function datasetFromIdx(imagesPath: string, labelsPath?: string, options: Pick<TabularOptions, 'shape'> = {}): TabularDataset {
  const images = readIdxFile(imagesPath);
  const [length, ...inner] = images.dims;
  if (!length || inner.length === 0) throw new TabularFormatError(`${imagesPath}: IDX dims [${images.dims.join(', ')}] hold no examples (need [n, ...])`);
  const width = sizeOf(inner);
  const shape = options.shape ? [...options.shape] : inner.length === 2 ? [...inner, 1] : inner;
  if (sizeOf(shape) !== width) throw new TabularFormatError(`${imagesPath}: shape ${formatShape(shape)} does not hold the ${width} values of an example`);
  const features = new Float32Array(images.data.length);
  const scale = images.dtype === 'ubyte' ? 1 / 255 : 1;
  for (let i = 0; i < features.length; i++) features[i] = images.data[i]! * scale;
  let labels: Int32Array | null = null;
  if (labelsPath !== undefined) {
    const raw = readIdxFile(labelsPath);
    if (raw.dims.length !== 1 || raw.dims[0] !== length) {
      throw new TabularFormatError(`${labelsPath}: IDX labels dims [${raw.dims.join(', ')}]; expected [${length}] (one per image of ${imagesPath})`);
    }
    labels = new Int32Array(length);
    for (let i = 0; i < length; i++) {
      const v = raw.data[i]!;
      if (!Number.isInteger(v) || v < 0) throw new TabularFormatError(`${labelsPath}: label ${v} at index ${i} is not an integer ≥ 0`);
      labels[i] = v;
    }
  }
  const classes = labels && labels.length ? labels.reduce((m, v) => Math.max(m, v), 0) + 1 : 0;
  return { features, shape, labels, classes, length, name: imagesPath, featureColumns: ['features'] };
}

/**
 * Loads a data file into memory as a dataset, whatever its format.
 *
 * Usage: `const data = await loadDataFile('train.parquet', { label: 'species' });`
 */
export async function loadDataFile(path: string, options: DataFileOptions = {}): Promise<TabularDataset> {
  const format = options.format ?? dataFormatOf(path);
  if (format === null) throw new TabularFormatError(`${path}: unknown data format (use .csv, .arrow/.feather, .parquet or IDX, or say which)`);
  if (format !== 'idx' && options.labels !== undefined) throw new TabularFormatError(`${path}: a separate labels file is for IDX data; ${format} files name a label column`);
  switch (format) {
    case 'idx':
      return datasetFromIdx(path, options.labels, options);
    case 'csv':
      return datasetFromCsv(await readFile(path, 'utf8'), options, path);
    case 'arrow':
      return datasetFromArrowFile(path, options);
    case 'parquet':
      return datasetFromParquet(path, options);
  }
}
