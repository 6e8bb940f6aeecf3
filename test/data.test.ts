import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  EMBEDDED_MNIST_SIZE, FASHION_MNIST_DIR, IdxFormatError, exampleSize, loadEmbeddedMnist, loadFashionMnist, readIdx,
} from '../src/data/index.ts';
import type { Dataset, IdxDtype } from '../src/data/index.ts';

const CODES: Record<IdxDtype, [number, number]> = {
  ubyte: [0x08, 1], sbyte: [0x09, 1], short: [0x0b, 2], int: [0x0c, 4], float: [0x0d, 4], double: [0x0e, 8],
};

/** Minimal IDX encoder (big-endian), the inverse of readIdx, used to generate fixtures. */
function encodeIdx(dtype: IdxDtype, dims: number[], values: ArrayLike<number>): Uint8Array {
  const [code, size] = CODES[dtype];
  const header = 4 + 4 * dims.length;
  const out = new Uint8Array(header + values.length * size);
  const view = new DataView(out.buffer);
  out.set([0, 0, code, dims.length]);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < values.length; i++) {
    const o = header + i * size;
    const v = values[i]!;
    if (dtype === 'ubyte') view.setUint8(o, v);
    else if (dtype === 'sbyte') view.setInt8(o, v);
    else if (dtype === 'short') view.setInt16(o, v, false);
    else if (dtype === 'int') view.setInt32(o, v, false);
    else if (dtype === 'float') view.setFloat32(o, v, false);
    else view.setFloat64(o, v, false);
  }
  return out;
}

/** Asserts that `fn` throws an IdxFormatError for `field` whose message names the file. */
function throwsIdx(fn: () => unknown, field: string, pattern: RegExp, file = 'fixture.idx'): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof IdxFormatError, `expected IdxFormatError, got ${String(error)}`);
    assert.equal(error.field, field);
    assert.equal(error.file, file);
    assert.match(error.message, new RegExp(file.replace('.', '\\.')));
    assert.match(error.message, pattern);
    return true;
  });
}

describe('readIdx', () => {
  it('round-trips every dtype through the encoder', () => {
    const cases: [IdxDtype, number[], number[]][] = [
      ['ubyte', [2, 3], [0, 1, 127, 128, 254, 255]],
      ['sbyte', [4], [-128, -1, 0, 127]],
      ['short', [2, 2], [-32768, -1, 258, 32767]],
      ['int', [3], [-2147483648, 16909060, 2147483647]],
      ['float', [1, 1, 3], [0.5, -1.25, 2 ** 100]],
      ['double', [2], [Math.PI, -1e-300]],
    ];
    for (const [dtype, dims, values] of cases) {
      const t = readIdx(encodeIdx(dtype, dims, values), 'fixture.idx');
      assert.equal(t.dtype, dtype);
      assert.deepEqual(t.dims, dims);
      assert.deepEqual(Array.from(t.data), values, dtype);
    }
  });

  it('parses a 3-d ubyte image tensor from an unaligned view', () => {
    const images = Array.from({ length: 2 * 28 * 28 }, (_, i) => (i * 7) % 256);
    const encoded = encodeIdx('ubyte', [2, 28, 28], images);
    // Offset by one byte inside a larger buffer: the parser must honour byteOffset.
    const padded = new Uint8Array(encoded.length + 1);
    padded.set(encoded, 1);
    const t = readIdx(padded.subarray(1));
    assert.deepEqual(t.dims, [2, 28, 28]);
    assert.ok(t.data instanceof Uint8Array);
    assert.deepEqual(Array.from(t.data), images);
  });

  it('gunzips input starting with 0x1f 0x8b', () => {
    const raw = encodeIdx('short', [3], [1, -2, 300]);
    const t = readIdx(gzipSync(raw), 'fixture.idx.gz');
    assert.deepEqual(t.dims, [3]);
    assert.deepEqual(Array.from(t.data), [1, -2, 300]);
  });

  it('reports a corrupt gzip stream', () => {
    const gz = gzipSync(encodeIdx('ubyte', [100], new Array(100).fill(3)));
    throwsIdx(() => readIdx(gz.subarray(0, gz.length - 12), 'fixture.idx'), 'gzip stream', /./);
  });

  it('reports a header shorter than the magic', () => {
    throwsIdx(() => readIdx(new Uint8Array([0, 0, 8]), 'fixture.idx'), 'header', /need 4 magic bytes, got 3/);
    throwsIdx(() => readIdx(new Uint8Array(0), 'fixture.idx'), 'header', /got 0/);
  });

  it('reports bad magic', () => {
    throwsIdx(() => readIdx(new Uint8Array([0, 1, 8, 1, 0, 0, 0, 0]), 'fixture.idx'), 'magic', /0x00 0x01/);
    throwsIdx(() => readIdx(new Uint8Array([0x50, 0x4b, 3, 4]), 'fixture.idx'), 'magic', /0x50 0x4b/);
  });

  it('reports an unsupported dtype', () => {
    throwsIdx(() => readIdx(new Uint8Array([0, 0, 0x0a, 1, 0, 0, 0, 0]), 'fixture.idx'), 'dtype', /unsupported code 0x0a/);
  });

  it('reports zero dimensions', () => {
    throwsIdx(() => readIdx(new Uint8Array([0, 0, 8, 0]), 'fixture.idx'), 'ndim', /at least 1/);
  });

  it('reports a header truncated inside the dimensions', () => {
    const full = encodeIdx('ubyte', [1, 2, 2], [1, 2, 3, 4]);
    throwsIdx(() => readIdx(full.subarray(0, 10), 'fixture.idx'), 'header', /3 dimensions need 16 header bytes, got 10/);
  });

  it('reports a payload that does not match dims × item size', () => {
    const full = encodeIdx('int', [2, 2], [1, 2, 3, 4]);
    throwsIdx(() => readIdx(full.subarray(0, full.length - 1), 'fixture.idx'), 'payload length', /\[2, 2\].*16 bytes.*15 bytes/);
    const extra = new Uint8Array(full.length + 4);
    extra.set(full);
    throwsIdx(() => readIdx(extra, 'fixture.idx'), 'payload length', /20 bytes follow/);
  });
});

describe('loadFashionMnist on generated files', () => {
  const writeSet = (dir: string, split: string, n: number, labelCount = n) => {
    const images = Array.from({ length: n * 784 }, (_, i) => i % 256);
    writeFileSync(join(dir, `${split}-images-idx3-ubyte.gz`), gzipSync(encodeIdx('ubyte', [n, 28, 28], images)));
    const labels = Array.from({ length: labelCount }, (_, i) => i % 10);
    writeFileSync(join(dir, `${split}-labels-idx1-ubyte.gz`), gzipSync(encodeIdx('ubyte', [labelCount], labels)));
  };

  it('loads and scales a small fixture, flat or image-shaped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rxgrad-idx-'));
    try {
      writeSet(dir, 'train', 3);
      writeSet(dir, 't10k', 2);
      const { train, test } = loadFashionMnist(dir);
      assert.equal(train.length, 3);
      assert.equal(test.length, 2);
      assert.deepEqual(train.shape, [784]);
      assert.equal(train.features[255], 1);
      assert.equal(train.features[256], 0);
      assert.ok(Math.abs(train.features[51]! - 0.2) < 1e-7);
      assert.deepEqual(Array.from(train.labels), [0, 1, 2]);
      assert.deepEqual(loadFashionMnist(dir, { flatten: false }).test.shape, [28, 28, 1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects images and labels whose counts differ', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rxgrad-idx-'));
    try {
      writeSet(dir, 'train', 3, 4);
      writeSet(dir, 't10k', 2);
      assert.throws(() => loadFashionMnist(dir), /holds 3 images but .*train-labels-idx1-ubyte\.gz holds 4 labels/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells the user how to install the dataset when the directory is missing', () => {
    assert.throws(() => loadFashionMnist('/nonexistent/fashion'), /\/nonexistent\/fashion not found.*apt-get install dataset-fashion-mnist/);
  });
});

function checkDataset(d: Dataset, length: number): void {
  assert.equal(d.length, length);
  assert.equal(d.labels.length, length);
  assert.equal(d.features.length, length * exampleSize(d));
  assert.equal(d.classes, 10);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of d.features) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  assert.ok(lo >= 0 && hi <= 1, `pixels in [${lo}, ${hi}]`);
  assert.ok(hi > 0.9, 'pixels use the whole range');
  const seen = new Set<number>();
  for (const l of d.labels) {
    assert.ok(Number.isInteger(l) && l >= 0 && l < 10, `label ${l}`);
    seen.add(l);
  }
  if (length >= 100) assert.equal(seen.size, 10, 'all classes present');
}

describe('loadEmbeddedMnist', () => {
  it('gives 8,000 + 2,000 examples of shape [784] with valid labels and pixels', () => {
    const { train, test } = loadEmbeddedMnist();
    assert.deepEqual(train.shape, [784]);
    checkDataset(train, 8000);
    checkDataset(test, 2000);
    assert.equal(EMBEDDED_MNIST_SIZE, 10_000);
  });

  it('splits deterministically, without overlap, and mixes the classes', () => {
    const a = loadEmbeddedMnist();
    const b = loadEmbeddedMnist();
    assert.deepEqual(a.train.labels, b.train.labels);
    assert.deepEqual(a.test.features, b.test.features);
    // A smaller request is a prefix of the same permutation.
    const small = loadEmbeddedMnist({ train: 100, test: 50 });
    assert.deepEqual(small.train.labels, a.train.labels.subarray(0, 100));
    assert.deepEqual(small.test.labels, a.train.labels.subarray(100, 150));
    // Class-ordered source data must come out mixed.
    assert.notDeepEqual(Array.from(a.train.labels.subarray(0, 50)), new Array(50).fill(a.train.labels[0]));
    // No example appears in both splits (compare image fingerprints).
    const key = (d: Dataset, i: number) => d.features.subarray(i * 784, (i + 1) * 784).join(',');
    const trainKeys = new Set(Array.from({ length: a.train.length }, (_, i) => key(a.train, i)));
    let shared = 0;
    for (let i = 0; i < a.test.length; i++) if (trainKeys.has(key(a.test, i))) shared++;
    // MNIST has a handful of pixel-identical duplicates; the split itself is disjoint by index.
    assert.ok(shared <= 5, `${shared} test images also in train`);
  });

  it('uses all 10,000 digits and rejects impossible sizes', () => {
    const { train, test } = loadEmbeddedMnist({ train: 9000, test: 1000 });
    checkDataset(train, 9000);
    checkDataset(test, 1000);
    assert.throws(() => loadEmbeddedMnist({ train: 9000, test: 1001 }), /exceeds the 10000 embedded digits/);
    assert.throws(() => loadEmbeddedMnist({ train: -1 }), /options\.train must be a non-negative integer/);
  });
});

describe('loadFashionMnist on the installed dataset', () => {
  const installed = existsSync(FASHION_MNIST_DIR);
  it('loads 60,000 + 10,000 examples', { skip: installed ? false : `${FASHION_MNIST_DIR} missing (apt-get install dataset-fashion-mnist)` }, () => {
    const { train, test } = loadFashionMnist();
    checkDataset(train, 60_000);
    checkDataset(test, 10_000);
    assert.equal(train.name, 'fashion-mnist/train');
    // Known first labels of the official test set: ankle boot, pullover, trouser, trouser.
    assert.deepEqual(Array.from(test.labels.subarray(0, 4)), [9, 2, 1, 1]);
    let perClass: number[] = new Array(10).fill(0);
    for (const l of train.labels) perClass[l]++;
    assert.deepEqual(perClass, new Array(10).fill(6000));
    perClass = new Array(10).fill(0);
    for (const l of test.labels) perClass[l]++;
    assert.deepEqual(perClass, new Array(10).fill(1000));
  });
});
