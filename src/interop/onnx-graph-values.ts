/**
 * How the ONNX reader tracks a value's layout (see src/interop/onnx-graph.ts): its ONNX shape, which
 * rxgrad axis each ONNX axis holds, and the flatten reordering a following dense layer must absorb;
 * plus the layout-changing steps (Flatten, Reshape) and Conv/Pool window arithmetic.
 */
import type { Layer } from '../layer.ts';
import { formatShape, type Shape } from '../tensor.ts';
import { flatten } from '../../operators/index.ts';
import type { Padding2d } from '../../operators/conv2d.ts';
import type { Attributes } from './onnx-proto.ts';

/** What an ONNX axis holds: an rxgrad axis (0 = batch) or a size-1 axis rxgrad does not have. */
export type Axis = number | 'unit';

/** A tracked ONNX value. */
export interface Value {
  /** ONNX shape, batch as -1. */
  shape: number[];
  /** Per ONNX axis: the rxgrad axis (0 = batch) or 'unit'. */
  axes: Axis[];
  /** After a Flatten of a permuted value: ONNX flat index → rxgrad flat index, for the next dense. */
  flatPerm: Int32Array | null;
}

/** What the reader returns: layers in order, the per-example input shape, weights by parameter name. */
export interface Built {
  layers: Layer[];
  inputShape: Shape;
  weights: Map<string, Float32Array>;
}

/** The rxgrad shape (per example) a value stands for. */
export function rxShape(v: Value): number[] {
  const rank = Math.max(0, ...v.axes.filter((a): a is number => a !== 'unit'));
  const shape = new Array<number>(rank).fill(0);
  v.axes.forEach((a, i) => {
    if (a !== 'unit' && a > 0) shape[a - 1] = v.shape[i]!;
  });
  return shape;
}

export const isIdentity = (axes: readonly Axis[]): boolean => axes.filter((a) => a !== 'unit').every((a, i) => a === i);

export type AddLayer = (kind: string, make: (name: string) => Layer, params?: Record<string, Float32Array>) => void;

/** Padding and output size of a Conv/Pool from its pads/auto_pad attributes, as rxgrad's padding. */
export function windowOf(a: Attributes, x: Value, kernel: [number, number], strides: [number, number], dilation: [number, number], fail: (m: string) => never): { padding: Padding2d; outH: number; outW: number } {
  const [inH, inW] = [x.shape[2]!, x.shape[3]!];
  const span = (k: number, d: number) => d * (k - 1) + 1;
  const autoPad = a.string('auto_pad', 'NOTSET');
  if (a.int('ceil_mode', 0) !== 0) fail('ceil_mode = 1 is not supported');
  if (autoPad === 'SAME_UPPER') return { padding: 'same', outH: Math.ceil(inH / strides[0]), outW: Math.ceil(inW / strides[1]) };
  let [top, left, bottom, right] = autoPad === 'VALID' ? [0, 0, 0, 0] : a.ints('pads', [0, 0, 0, 0]);
  if (autoPad === 'SAME_LOWER') {
    const total = (size: number, k: number, s: number, d: number) => Math.max(0, (Math.ceil(size / s) - 1) * s + span(k, d) - size);
    const th = total(inH, kernel[0], strides[0], dilation[0]);
    const tw = total(inW, kernel[1], strides[1], dilation[1]);
    [top, bottom, left, right] = [Math.ceil(th / 2), Math.floor(th / 2), Math.ceil(tw / 2), Math.floor(tw / 2)];
  }
  const outH = Math.floor((inH + top! + bottom! - span(kernel[0], dilation[0])) / strides[0]) + 1;
  const outW = Math.floor((inW + left! + right! - span(kernel[1], dilation[1])) / strides[1]) + 1;
  if (!(outH > 0 && outW > 0)) fail(`shapes do not chain: the window ${formatShape(kernel)} does not fit the input ${formatShape(x.shape)} with pads [${[top, left, bottom, right].join(', ')}]`);
  const padding: Padding2d = top || left || bottom || right ? { top: top!, bottom: bottom!, left: left!, right: right! } : 'valid';
  return { padding, outH, outW };
}

/** Flatten to [N, features]: rxgrad flatten (unless already flat), remembering a CHW → HWC order change. */
export function flattenValue(x: Value, add: AddLayer): Value {
  const data = x.axes.map((a, i) => ({ a, i })).filter((e): e is { a: number; i: number } => e.a !== 'unit' && e.a !== 0);
  const size = data.reduce((p, e) => p * x.shape[e.i]!, 1);
  if (data.length > 1) add('flatten', (name) => flatten({ name }));
  let flatPerm: Int32Array | null = null;
  if (data.length > 1 && !data.every((e, k) => e.a === k + 1)) {
    // ONNX flat index (its own axis order) → rxgrad flat index (axes 1..k in order).
    const sizes = data.map((e) => x.shape[e.i]!);
    const rxSizes = [...data].sort((p, q) => p.a - q.a).map((e) => x.shape[e.i]!);
    flatPerm = new Int32Array(size);
    const index = new Array<number>(data.length).fill(0);
    for (let flat = 0; flat < size; flat++) {
      let rxFlat = 0;
      const byRx = new Array<number>(data.length);
      data.forEach((e, k) => (byRx[e.a - 1] = index[k]!));
      for (let k = 0; k < data.length; k++) rxFlat = rxFlat * rxSizes[k]! + byRx[k]!;
      flatPerm[flat] = rxFlat;
      for (let k = data.length - 1; k >= 0; k--) {
        if (++index[k]! < sizes[k]!) break;
        index[k] = 0;
      }
    }
  }
  return { shape: [-1, size], axes: [0, 1], flatPerm };
}

/** A Reshape that only adds/removes size-1 axes keeps the data axes; one to [N, features] flattens. */
export function reshapeValue(x: Value, shape: number[], add: AddLayer, fail: (m: string) => never): Value {
  const dataDims = x.shape.filter((d, i) => x.axes[i] !== 'unit' && !(d === 1 && x.axes[i] !== 0));
  const targetDims = shape.filter((d) => d !== 1);
  if (dataDims.join() === targetDims.join()) {
    // Only unit axes change: map the kept axes across in order.
    const kept = x.axes.filter((a, i) => !(a === 'unit' || (x.shape[i] === 1 && a !== 0)));
    let k = 0;
    return { shape, axes: shape.map((d) => (d === 1 ? 'unit' : kept[k++]!)), flatPerm: x.flatPerm };
  }
  if (shape.length === 2 && shape[0] === -1) return flattenValue(x, add);
  return fail(`reshaping ONNX ${formatShape(x.shape)} to ${formatShape(shape)} is not supported (flatten to [batch, features] or add/remove size-1 axes)`);
}

