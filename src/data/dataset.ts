/**
 * An in-memory labelled dataset: examples stored row-major in one contiguous Float32Array so a
 * batch is a zero-copy `subarray` and can be handed straight to Arrow or the shared heap.
 */
export interface Dataset {
  /** `length × product(shape)` values, example-major, pixels scaled to [0, 1]. */
  features: Float32Array;
  /** Shape of one example, e.g. `[784]` or `[28, 28, 1]`. */
  shape: number[];
  /** Class index per example, in `[0, classes)`. */
  labels: Int32Array;
  /** Number of classes. */
  classes: number;
  /** Number of examples. */
  length: number;
  /** Human-readable name, e.g. `'fashion-mnist/train'`. */
  name: string;
}

/**
 * Number of values in one example of `dataset` (the product of its shape).
 *
 * Usage: `const d = exampleSize(train); const x0 = train.features.subarray(0, d);`
 */
export function exampleSize(dataset: Pick<Dataset, 'shape'>): number {
  return dataset.shape.reduce((a, b) => a * b, 1);
}
