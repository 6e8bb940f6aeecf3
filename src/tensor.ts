import type { SharedHeap } from './heap.ts';

/** Per-example shape, without the batch dimension, e.g. `[784]` or `[28, 28, 1]`. */
export type Shape = readonly number[];

/** Element type of a tensor in the shared heap. */
export type DType = 'float32' | 'int32';

/** Number of elements of a shape (1 for a scalar `[]`). */
export const sizeOf = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

/** `[2, 3]` → `"[2, 3]"`, for messages. */
export const formatShape = (shape: Shape): string => `[${shape.join(', ')}]`;

/**
 * A row-major array of 4-byte elements at a fixed place in the shared heap. A tensor is a
 * descriptor only: it owns nothing, and its bytes belong to whoever allocated them (the
 * persistent region for parameters, a batch arena for activations).
 *
 * Usage: `const t = new Tensor(heap, heap.alloc(24), [2, 3]); t.data().fill(1);`
 */
export class Tensor {
  readonly size: number;
  constructor(
    readonly heap: SharedHeap,
    /** Byte offset into the heap's memory. */
    readonly ptr: number,
    readonly shape: Shape,
    readonly dtype: DType = 'float32',
  ) {
    this.size = sizeOf(shape);
  }

  /** A live Float32Array view of the elements (valid until the heap grows; do not keep it). */
  data(): Float32Array {
    if (this.dtype !== 'float32') throw new TypeError(`Tensor.data(): tensor is ${this.dtype}, not float32`);
    return this.heap.f32.subarray(this.ptr >> 2, (this.ptr >> 2) + this.size);
  }

  /** A live Int32Array view of the elements (valid until the heap grows; do not keep it). */
  int32(): Int32Array {
    if (this.dtype !== 'int32') throw new TypeError(`Tensor.int32(): tensor is ${this.dtype}, not int32`);
    return this.heap.i32.subarray(this.ptr >> 2, (this.ptr >> 2) + this.size);
  }

  /** A copy of the elements, safe to keep. */
  toFloat32Array(): Float32Array {
    return this.data().slice();
  }

  /** The same bytes seen with another shape of the same size. */
  reshape(shape: Shape): Tensor {
    if (sizeOf(shape) !== this.size) {
      throw new RangeError(`Tensor.reshape: cannot view ${formatShape(this.shape)} as ${formatShape(shape)}`);
    }
    return new Tensor(this.heap, this.ptr, shape, this.dtype);
  }
}
