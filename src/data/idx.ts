import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Dataset } from './dataset.ts';

/**
 * IDX element types (third magic byte) → name, item size and typed array. All multi-byte types
 * are big-endian on disk, as in the original MNIST distribution.
 */
const DTYPES = {
  0x08: { name: 'ubyte', size: 1 },
  0x09: { name: 'sbyte', size: 1 },
  0x0b: { name: 'short', size: 2 },
  0x0c: { name: 'int', size: 4 },
  0x0d: { name: 'float', size: 4 },
  0x0e: { name: 'double', size: 8 },
} as const;

/** Name of an IDX element type. */
export type IdxDtype = (typeof DTYPES)[keyof typeof DTYPES]['name'];
/** Typed array holding the decoded IDX payload (native endianness). */
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

/** A decoded IDX tensor. */
export interface IdxTensor {
  dtype: IdxDtype;
  /** Dimensions, outermost first, e.g. `[60000, 28, 28]`. */
  dims: number[];
  /** `product(dims)` elements, row-major. */
  data: IdxData;
}

/** Raised for malformed IDX input; `file` and `field` say where. */
export class IdxFormatError extends Error {
  constructor(readonly file: string, readonly field: string, detail: string) {
    super(`${file}: invalid IDX ${field}: ${detail}`);
    this.name = 'IdxFormatError';
  }
}

const hex = (b: number | undefined) => (b === undefined ? 'EOF' : `0x${b.toString(16).padStart(2, '0')}`);

/**
 * Parses IDX bytes (gunzipping first when they start with the gzip magic 0x1f 0x8b).
 * `file` only labels error messages.
 *
 * Usage: `const { dims, data } = readIdx(readFileSync(path), path); // dims = [60000, 28, 28]`
 */
export function readIdx(bytes: Uint8Array, file = '<bytes>'): IdxTensor {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw new IdxFormatError(file, 'gzip stream', (error as Error).message);
    }
  }
  if (bytes.length < 4) {
    throw new IdxFormatError(file, 'header', `truncated: need 4 magic bytes, got ${bytes.length}`);
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new IdxFormatError(file, 'magic', `first two bytes must be 0x00 0x00, got ${hex(bytes[0])} ${hex(bytes[1])}`);
  }
  const code = bytes[2]!;
  const dtype = (DTYPES as Record<number, (typeof DTYPES)[keyof typeof DTYPES] | undefined>)[code];
  if (!dtype) {
    const known = Object.entries(DTYPES).map(([c, d]) => `${hex(Number(c))} ${d.name}`).join(', ');
    throw new IdxFormatError(file, 'dtype', `unsupported code ${hex(code)} (supported: ${known})`);
  }
  const ndim = bytes[3]!;
  if (ndim === 0) throw new IdxFormatError(file, 'ndim', 'must be at least 1, got 0');
  const headerBytes = 4 + 4 * ndim;
  if (bytes.length < headerBytes) {
    throw new IdxFormatError(
      file, 'header', `truncated: ${ndim} dimensions need ${headerBytes} header bytes, got ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndim; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const payload = bytes.length - headerBytes;
  if (count * dtype.size !== payload) {
    throw new IdxFormatError(
      file, 'payload length',
      `dims [${dims.join(', ')}] × ${dtype.size}-byte ${dtype.name} = ${count * dtype.size} bytes, but ${payload} bytes follow the header`,
    );
  }
  return { dtype: dtype.name, dims, data: decode(dtype.name, view, headerBytes, count) };
}

/** Copies the payload into a fresh, aligned typed array, swapping big-endian items to native. */
function decode(dtype: IdxDtype, view: DataView, offset: number, count: number): IdxData {
  switch (dtype) {
    case 'ubyte':
      return new Uint8Array(view.buffer, view.byteOffset + offset, count).slice();
    case 'sbyte':
      return new Int8Array(view.buffer, view.byteOffset + offset, count).slice();
    case 'short': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(offset + 2 * i, false);
      return out;
    }
    case 'int': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(offset + 4 * i, false);
      return out;
    }
    case 'float': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, false);
      return out;
    }
    case 'double': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(offset + 8 * i, false);
      return out;
    }
  }
}

/**
 * Reads and parses one IDX file (optionally gzipped).
 *
 * Usage: `const labels = readIdxFile('/data/train-labels-idx1-ubyte.gz').data;`
 */
export function readIdxFile(path: string): IdxTensor {
  return readIdx(readFileSync(path), path);
}

/** Default install location of the Debian package `dataset-fashion-mnist`. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** Options for {@link loadFashionMnist}. */
export interface FashionMnistOptions {
  /** Per-example shape `[784]` (default, for dense layers) or `[28, 28, 1]` (`flatten: false`). */
  flatten?: boolean;
}

/**
 * Loads Fashion-MNIST (60,000 train / 10,000 test, 10 classes) from the gzipped IDX files,
 * pixels scaled to [0, 1].
 *
 * Usage: `const { train, test } = loadFashionMnist(); // train.shape = [784]`
 */
export function loadFashionMnist(
  dir: string = FASHION_MNIST_DIR,
  options: FashionMnistOptions = {},
): { train: Dataset; test: Dataset } {
  const hint = 'install it with `apt-get install dataset-fashion-mnist` or pass the directory holding the IDX files';
  if (!existsSync(dir)) throw new Error(`loadFashionMnist: directory ${dir} not found; ${hint}`);
  const shape = options.flatten === false ? [28, 28, 1] : [784];
  const load = (split: 'train' | 't10k', name: string): Dataset => {
    const imagesPath = join(dir, `${split}-images-idx3-ubyte.gz`);
    const labelsPath = join(dir, `${split}-labels-idx1-ubyte.gz`);
    for (const path of [imagesPath, labelsPath]) {
      if (!existsSync(path)) throw new Error(`loadFashionMnist: ${path} not found; ${hint}`);
    }
    const images = readIdxFile(imagesPath);
    const labels = readIdxFile(labelsPath);
    expect(images, imagesPath, 3, [28, 28]);
    expect(labels, labelsPath, 1, []);
    const n = images.dims[0]!;
    if (labels.dims[0] !== n) {
      throw new Error(`loadFashionMnist: ${imagesPath} holds ${n} images but ${labelsPath} holds ${labels.dims[0]} labels`);
    }
    const labelData = Int32Array.from(labels.data as Uint8Array);
    const bad = labelData.findIndex((l) => l > 9);
    if (bad >= 0) throw new Error(`loadFashionMnist: ${labelsPath}: label ${labelData[bad]} at index ${bad} is outside 0..9`);
    return { features: toUnit(images.data as Uint8Array), shape: [...shape], labels: labelData, classes: 10, length: n, name };
  };
  return { train: load('train', 'fashion-mnist/train'), test: load('t10k', 'fashion-mnist/test') };
}

function expect(t: IdxTensor, path: string, ndim: number, inner: number[]): void {
  if (t.dtype !== 'ubyte') throw new IdxFormatError(path, 'dtype', `expected ubyte, got ${t.dtype}`);
  if (t.dims.length !== ndim || inner.some((d, i) => t.dims[i + 1] !== d)) {
    throw new IdxFormatError(path, 'dims', `expected [n${inner.map((d) => `, ${d}`).join('')}], got [${t.dims.join(', ')}]`);
  }
}

/** Bytes → [0, 1] through a 256-entry table (exact v/255, no per-pixel division). */
function toUnit(bytes: Uint8Array): Float32Array {
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = v / 255;
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]!]!;
  return out;
}
