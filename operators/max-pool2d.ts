import type { BuildContext, Layer, Parameter, StepContext } from '../src/layer.ts';
import type { Shape, Tensor } from '../src/tensor.ts';
import { checkPadding, paddingConfig, readPadding, resolveWindow, type Padding2d, type Pair, type Window2d } from './conv2d.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link maxPool2d}. */
export interface Pool2dOptions {
  /** Default: the pool size (non-overlapping windows). */
  strides?: Pair;
  /** Default 'valid'; padding taps never win (max) and are not counted (average), as in TF. */
  padding?: Padding2d;
  name?: string;
}

const asPair = (what: string, v: Pair): [number, number] => {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((d) => Number.isInteger(d) && d >= 1)) throw new RangeError(`${what} must be integers ≥ 1, got ${JSON.stringify(v)}`);
  return p;
};

/**
 * Shared shape rule and config of the 2-D pooling layers: [H, W, C] → [outH, outW, C] (a window larger
 * than the padded input is a ShapeError at build time).
 */
export abstract class Pool2d implements Layer {
  abstract readonly kind: string;
  readonly poolSize: [number, number];
  readonly strides: [number, number];
  readonly padding: Padding2d;
  protected win!: Window2d;

  constructor(kind: string, poolSize: Pair, options: Pool2dOptions, public name: string) {
    this.poolSize = asPair(`${kind}: poolSize`, poolSize);
    this.strides = asPair(`${kind}: strides`, options.strides ?? this.poolSize);
    this.padding = checkPadding(kind, options.padding ?? 'valid');
  }

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    this.win = resolveWindow(this, inputShape, this.poolSize, this.strides, [1, 1], this.padding);
    return [this.win.outH, this.win.outW, this.win.channels];
  }

  parameters(): Parameter[] {
    return [];
  }

  /** batch, inH, inW, C, outH, outW, kH, kW, strideH, strideW, padTop, padLeft. */
  protected geometry(batch: number): [number, number, number, number, number, number, number, number, number, number, number, number] {
    const w = this.win;
    return [batch, w.inH, w.inW, w.channels, w.outH, w.outW, this.poolSize[0], this.poolSize[1], this.strides[0], this.strides[1], w.padTop, w.padLeft];
  }

  abstract forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor>;
  abstract backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null | Promise<Tensor | null>;

  config(): Record<string, unknown> {
    return { poolH: this.poolSize[0], poolW: this.poolSize[1], strideH: this.strides[0], strideW: this.strides[1], ...paddingConfig(this.padding) };
  }
}

/** Rebuilds a pooling layer from {@link Pool2d.config}. */
export function registerPool2d(kind: string, make: (poolSize: Pair, options: Pool2dOptions) => Layer): void {
  registerLayer(kind, (c, name) => {
    const poolSize: [number, number] = [c.number('poolH'), c.number('poolW')];
    const strides: [number, number] = [c.number('strideH'), c.number('strideW')];
    const padding = readPadding(c);
    c.done();
    return constructLayer(c, 'poolH', () => make(poolSize, { strides, padding, name }));
  });
}

/**
 * Max pooling: y = the largest input in each window. The winning element's index (int32) is saved
 * for backward, which routes dy there: dx[argmax] += dy (ties go to the first tap in row-major order).
 */
class MaxPool2d extends Pool2d {
  readonly kind = 'maxPool2d';
  constructor(poolSize: Pair, options: Pool2dOptions) {
    super('maxPool2d', poolSize, options, options.name ?? '');
  }

  forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor> {
    const batch = x.shape[0]!;
    const shape = [batch, this.win.outH, this.win.outW, this.win.channels];
    const y = step.alloc(shape);
    // Inference: no backward, so no argmax (the kernel skips the index tracking when it gets 0).
    let argmax = 0;
    if (step.training) {
      const a = step.alloc(shape, 'int32');
      step.save(this, a, x);
      argmax = a.ptr;
    }
    const { compute, kernels } = step.engine;
    // Split over images across the pool when large (compute decides); a Promise only then.
    const pending = compute.maxPool2dForward
      ? compute.maxPool2dForward(x.ptr, y.ptr, argmax, ...this.geometry(batch))
      : kernels.maxPool2dForward(x.ptr, y.ptr, argmax, ...this.geometry(batch));
    return pending ? pending.then(() => y) : y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null | Promise<Tensor | null> {
    if (!needInputGradient) return null;
    const [argmax, x] = step.restore(this) as [Tensor, Tensor];
    const dx = step.alloc(x.shape);
    const { compute, kernels } = step.engine;
    const pending = compute.maxPool2dBackward
      ? compute.maxPool2dBackward(dy.ptr, argmax.ptr, dx.ptr, x.size, dy.size, x.shape[0]!)
      : kernels.maxPool2dBackward(dy.ptr, argmax.ptr, dx.ptr, x.size, dy.size);
    return pending ? pending.then(() => dx) : dx;
  }
}

/**
 * 2-D max pooling over NHWC images (default strides = poolSize).
 *
 * Usage: `sequential([conv2d(16, 3), relu(), maxPool2d(2), flatten(), dense(10)], { inputShape: [28, 28, 1] })`
 */
export function maxPool2d(poolSize: Pair = 2, options: Pool2dOptions = {}): Layer {
  return new MaxPool2d(poolSize, options);
}

registerPool2d('maxPool2d', maxPool2d);
