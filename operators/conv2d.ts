import { glorotUniform, zeros, type Initializer } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import type { Regularizer } from '../src/regularizers.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';
import { FILTER_GRADIENT_CHUNKS } from '../workers/compute-api.ts';

/** Explicit zero padding, in pixels, of each side of the image. */
export interface ExplicitPadding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** 'valid' (no padding), 'same' (TF/Keras: output = ⌈input / stride⌉, the odd pixel at the bottom/right), or explicit. */
export type Padding2d = 'valid' | 'same' | ExplicitPadding;

/** A height/width pair given as one number (both) or [height, width]. */
export type Pair = number | readonly [number, number];

const pair = (what: string, v: Pair, min: number): [number, number] => {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((d) => Number.isInteger(d) && d >= min)) throw new RangeError(`${what} must be integers ≥ ${min}, got ${JSON.stringify(v)}`);
  return p;
};

/** Output size and padding along one axis; null when the window does not fit. */
function axis(size: number, kernel: number, stride: number, dilation: number, padding: Padding2d, first: 'top' | 'left'): { out: number; before: number } | null {
  const span = dilation * (kernel - 1) + 1;
  if (padding === 'same') {
    const out = Math.ceil(size / stride);
    const total = Math.max(0, (out - 1) * stride + span - size);
    return { out, before: Math.floor(total / 2) };
  }
  const before = padding === 'valid' ? 0 : padding[first];
  const after = padding === 'valid' ? 0 : padding[first === 'top' ? 'bottom' : 'right'];
  const padded = size + before + after;
  if (padded < span) return null;
  return { out: Math.floor((padded - span) / stride) + 1, before };
}

/** The resolved 2-D window of a conv or pooling layer for one input shape. */
export interface Window2d {
  inH: number;
  inW: number;
  channels: number;
  outH: number;
  outW: number;
  padTop: number;
  padLeft: number;
}

/**
 * Resolves a window's output size and top/left padding for an [H, W, C] input, or throws a
 * {@link ShapeError} naming the layer and both shapes when the input is not 3-D or too small.
 *
 * Usage (inside an operator's build): `const win = resolveWindow(this, inputShape, [3, 3], [1, 1], [1, 1], 'same');`
 */
export function resolveWindow(
  layer: { name: string; kind: string }, inputShape: Shape, kernel: readonly [number, number], strides: readonly [number, number],
  dilation: readonly [number, number], padding: Padding2d,
): Window2d {
  const who = `${layer.name} (${layer.kind})`;
  if (inputShape.length !== 3) throw new ShapeError(who, `input shape ${formatShape(inputShape)} must be [height, width, channels]`);
  const [inH, inW, channels] = inputShape as [number, number, number];
  const y = axis(inH, kernel[0], strides[0], dilation[0], padding, 'top');
  const x = axis(inW, kernel[1], strides[1], dilation[1], padding, 'left');
  if (!y || !x) {
    const span = [dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1];
    const pads = typeof padding === 'object' ? ` with padding ${JSON.stringify(padding)}` : ` with '${padding}' padding`;
    throw new ShapeError(who, `input shape ${formatShape(inputShape)} is smaller than the window ${formatShape(span)} (kernel ${formatShape(kernel)}, dilation ${formatShape(dilation)})${pads}`);
  }
  return { inH, inW, channels, outH: y.out, outW: x.out, padTop: y.before, padLeft: x.before };
}

/** Checks a padding option; returns it. */
export function checkPadding(what: string, padding: Padding2d): Padding2d {
  if (padding === 'valid' || padding === 'same') return padding;
  if (typeof padding === 'object' && padding !== null) {
    for (const side of ['top', 'bottom', 'left', 'right'] as const) {
      const v = padding[side];
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`${what}: padding.${side} must be an integer ≥ 0, got ${JSON.stringify(v)}`);
    }
    return { top: padding.top, bottom: padding.bottom, left: padding.left, right: padding.right };
  }
  throw new RangeError(`${what}: padding must be 'valid', 'same' or { top, bottom, left, right }, got ${JSON.stringify(padding)}`);
}

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  /** Default 1. */
  strides?: Pair;
  /** Default 'valid'. */
  padding?: Padding2d;
  /** Dilation (atrous) rate; default 1. */
  dilation?: Pair;
  /** Default true. */
  useBias?: boolean;
  /** Default Glorot uniform with fanIn = kh·kw·cin, fanOut = kh·kw·cout (Keras). */
  kernelInitializer?: Initializer;
  /** Default zeros. */
  biasInitializer?: Initializer;
  kernelRegularizer?: Regularizer;
  biasRegularizer?: Regularizer;
  /**
   * Activation applied to the output: 'linear' (default, none) or 'relu' (Keras' `activation`). 'relu' is
   * computed inside the conv kernel on each output row while it is in cache, instead of a separate pass over
   * the whole feature map (same values as `conv2d(…)` followed by `relu()`).
   */
  activation?: Conv2dActivation;
  name?: string;
}

/** Activations {@link Conv2dOptions.activation} accepts. */
export type Conv2dActivation = 'linear' | 'relu';
const ACTIVATIONS: readonly Conv2dActivation[] = ['linear', 'relu'];

/** im2col chunk of the filter gradient: about this many floats (128 KiB, stays in L2) per thread. */
const COL_CHUNK_FLOATS = 32768;

/**
 * 2-D convolution over NHWC images: y[n, oy, ox, co] = b[co] + Σ x[n, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw, ci]·W[ky, kx, ci, co],
 * W stored [kh, kw, cin, cout] (Keras layout), zero padding.
 * Shape rule: [H, W, cin] → [outH, outW, filters] (see {@link resolveWindow}); a window larger than the
 * padded input is a ShapeError at build time.
 * Kernels (workers/assembly/conv.ts): forward and dx are direct SIMD convolutions, dW is im2col + GEMM,
 * all three split over the batch images across the worker pool; db = Σ_pixels dy (sumRows).
 * `activation: 'relu'` is applied inside the forward kernel (y = max(y, 0) per output row while in cache);
 * backward then starts from dy·[y > 0].
 */
class Conv2d implements Layer {
  readonly kind = 'conv2d';
  name: string;
  readonly kernelSize: [number, number];
  readonly strides: [number, number];
  readonly dilation: [number, number];
  readonly padding: Padding2d;
  readonly activation: Conv2dActivation;
  private kernel!: Parameter;
  private bias: Parameter | null = null;
  private win!: Window2d;

  constructor(readonly filters: number, kernelSize: Pair, private readonly options: Conv2dOptions) {
    if (!Number.isInteger(filters) || filters < 1) throw new RangeError(`conv2d: filters must be a positive integer, got ${filters}`);
    this.kernelSize = pair('conv2d: kernelSize', kernelSize, 1);
    this.strides = pair('conv2d: strides', options.strides ?? 1, 1);
    this.dilation = pair('conv2d: dilation', options.dilation ?? 1, 1);
    this.padding = checkPadding('conv2d', options.padding ?? 'valid');
    this.activation = options.activation ?? 'linear';
    if (!ACTIVATIONS.includes(this.activation)) {
      throw new RangeError(`conv2d: activation must be one of ${ACTIVATIONS.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(options.activation)}`);
    }
    this.name = options.name ?? '';
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    this.win = resolveWindow(this, inputShape, this.kernelSize, this.strides, this.dilation, this.padding);
    const [kh, kw] = this.kernelSize;
    const cin = this.win.channels;
    const fans = { fanIn: kh * kw * cin, fanOut: kh * kw * this.filters };
    this.kernel = ctx.addParameter('kernel', [kh, kw, cin, this.filters], this.options.kernelInitializer ?? glorotUniform(), fans, this.options.kernelRegularizer);
    if (this.options.useBias ?? true) {
      this.bias = ctx.addParameter('bias', [this.filters], this.options.biasInitializer ?? zeros(), fans, this.options.biasRegularizer);
    }
    return [this.win.outH, this.win.outW, this.filters];
  }

  parameters(): Parameter[] {
    return this.bias ? [this.kernel, this.bias] : [this.kernel];
  }

  /** The 15 geometry arguments of the conv kernels for a batch. */
  private geometry(batch: number): [number, number, number, number, number, number, number, number, number, number, number, number, number, number, number] {
    const { inH, inW, channels, outH, outW, padTop, padLeft } = this.win;
    return [batch, inH, inW, channels, outH, outW, this.filters, this.kernelSize[0], this.kernelSize[1], this.strides[0], this.strides[1], padTop, padLeft, this.dilation[0], this.dilation[1]];
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const batch = x.shape[0]!;
    const y = step.alloc([batch, this.win.outH, this.win.outW, this.filters]);
    const { compute, kernels } = step.engine;
    const g = this.geometry(batch);
    const bias = this.bias ? this.bias.value.ptr : 0;
    const relu = this.activation === 'relu';
    const act = relu ? 1 : 0;
    if (compute.conv2dForward) await compute.conv2dForward(x.ptr, this.kernel.value.ptr, bias, y.ptr, ...g, act);
    else kernels.conv2dForward(x.ptr, this.kernel.value.ptr, bias, y.ptr, ...g, act);
    // ReLU's backward needs the output's sign: y > 0 exactly where the pre-activation is > 0.
    if (relu) step.save(this, x, y);
    else step.save(this, x);
    return y;
  }

  async backward(dyOut: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const [x, y] = step.restore(this) as [Tensor, Tensor | undefined];
    const batch = x.shape[0]!;
    const { compute, kernels } = step.engine;
    let dy = dyOut;
    if (y) {
      // Fused ReLU: dy·[y > 0] first (reluBackward on the output: same mask as on the pre-activation).
      dy = step.alloc(dyOut.shape);
      const pending = compute.elementwise
        ? compute.elementwise('reluBackward', [y.ptr, dyOut.ptr, dy.ptr], dy.size)
        : kernels.reluBackward(y.ptr, dyOut.ptr, dy.ptr, dy.size);
      if (pending) await pending;
    }
    const g = this.geometry(batch);
    const [kh, kw] = this.kernelSize;
    const taps = kh * kw * this.win.channels;
    const filter = taps * this.filters;
    const pixels = batch * this.win.outH * this.win.outW;
    // A frozen parameter's gradient is never read (the optimizer skips it): its work is skipped too.
    if (this.bias?.trainable) (compute.sumRows ?? kernels.sumRows)(dy.ptr, this.bias.grad.ptr, pixels, this.filters, 0);
    if (this.kernel.trainable) {
      // Filter gradient: per image chunk (a fixed count: the same bits on any number of threads) a partial
      // dW and an im2col chunk of ~128 KiB.
      const shares = FILTER_GRADIENT_CHUNKS;
      const chunk = Math.max(1, Math.min(Math.ceil(pixels / shares), Math.floor(COL_CHUNK_FLOATS / taps)));
      const region = Math.ceil((filter + chunk * taps) / 16) * 16 + 16;
      const workFloats = shares * region;
      const work = step.alloc([workFloats]);
      if (compute.conv2dBackwardFilter) await compute.conv2dBackwardFilter(x.ptr, dy.ptr, this.kernel.grad.ptr, work.ptr, workFloats, ...g);
      else kernels.conv2dBackwardFilter(x.ptr, dy.ptr, this.kernel.grad.ptr, work.ptr, workFloats, ...g);
    }
    if (!needInputGradient) return null;
    const wt = step.alloc([filter]);
    kernels.conv2dTransposeFilter(this.kernel.value.ptr, wt.ptr, kh * kw, this.win.channels, this.filters);
    const dx = step.alloc(x.shape);
    if (compute.conv2dBackwardInput) await compute.conv2dBackwardInput(dy.ptr, wt.ptr, dx.ptr, ...g);
    else kernels.conv2dBackwardInput(dy.ptr, wt.ptr, dx.ptr, ...g);
    return dx;
  }

  config(): Record<string, unknown> {
    const p = this.padding;
    return {
      filters: this.filters,
      kernelH: this.kernelSize[0], kernelW: this.kernelSize[1],
      strideH: this.strides[0], strideW: this.strides[1],
      dilationH: this.dilation[0], dilationW: this.dilation[1],
      ...paddingConfig(p),
      useBias: this.options.useBias ?? true,
      kernelInitializer: (this.options.kernelInitializer ?? glorotUniform()).name,
      biasInitializer: (this.options.biasInitializer ?? zeros()).name,
      kernelRegularizer: this.options.kernelRegularizer?.config() ?? null,
      biasRegularizer: this.options.biasRegularizer?.config() ?? null,
      activation: this.activation,
    };
  }
}

/**
 * Padding as flat config fields (the layer registry's ConfigReader reads numbers and booleans only):
 * `paddingSame` true for 'same', else the four explicit sides ('valid' = all 0).
 */
export function paddingConfig(p: Padding2d): Record<string, number | boolean> {
  if (p === 'same') return { paddingSame: true, padTop: 0, padBottom: 0, padLeft: 0, padRight: 0 };
  const e = p === 'valid' ? { top: 0, bottom: 0, left: 0, right: 0 } : p;
  return { paddingSame: false, padTop: e.top, padBottom: e.bottom, padLeft: e.left, padRight: e.right };
}

/** Reads the fields written by {@link paddingConfig}. */
export function readPadding(c: { boolean(f: string, d?: boolean): boolean; number(f: string, d?: number): number }): Padding2d {
  const same = c.boolean('paddingSame', false);
  const top = c.number('padTop', 0), bottom = c.number('padBottom', 0), left = c.number('padLeft', 0), right = c.number('padRight', 0);
  if (same) return 'same';
  return top === 0 && bottom === 0 && left === 0 && right === 0 ? 'valid' : { top, bottom, left, right };
}

/**
 * A 2-D convolution layer with `filters` output channels over NHWC images.
 *
 * Usage: `sequential([conv2d(16, 3, { padding: 'same' }), relu(), maxPool2d(2), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 * or with the ReLU fused: `conv2d(16, 3, { padding: 'same', activation: 'relu' })`
 */
export function conv2d(filters: number, kernelSize: Pair, options: Conv2dOptions = {}): Layer {
  return new Conv2d(filters, kernelSize, options);
}

registerLayer('conv2d', (c, name) => {
  const filters = c.number('filters');
  const kernel: [number, number] = [c.number('kernelH'), c.number('kernelW')];
  const strides: [number, number] = [c.number('strideH', 1), c.number('strideW', 1)];
  const dilation: [number, number] = [c.number('dilationH', 1), c.number('dilationW', 1)];
  const padding = readPadding(c);
  const useBias = c.boolean('useBias', true);
  const kernelInitializer = c.initializer('kernelInitializer', glorotUniform());
  const biasInitializer = c.initializer('biasInitializer', zeros());
  const kernelRegularizer = c.regularizer('kernelRegularizer');
  const biasRegularizer = c.regularizer('biasRegularizer');
  // Absent in checkpoints written before the option existed: 'linear'.
  const activation = c.choice('activation', ACTIVATIONS, 'linear');
  c.done();
  return constructLayer(c, 'filters', () => conv2d(filters, kernel, {
      name, strides, dilation, padding, useBias, kernelInitializer, biasInitializer, activation,
      ...(kernelRegularizer ? { kernelRegularizer } : {}), ...(biasRegularizer ? { biasRegularizer } : {}),
    }));
});
