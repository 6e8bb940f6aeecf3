import { glorotUniform, zeros, type Initializer } from '../src/initializers.ts';
import { registerLayer } from '../src/registry.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import type { Regularizer } from '../src/regularizers.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';

/** Options of {@link dense}. */
export interface DenseOptions {
  /** Adds a bias vector (default true). */
  useBias?: boolean;
  /** Default Glorot uniform, as in Keras. */
  kernelInitializer?: Initializer;
  /** Default zeros. */
  biasInitializer?: Initializer;
  kernelRegularizer?: Regularizer;
  biasRegularizer?: Regularizer;
  name?: string;
}

/**
 * Fully connected layer: y = x·W + b over the last axis. W is [in, units] (Keras layout).
 * Shape rule: [..., in] → [..., units].
 * Backward: dW = xᵀ·dy, db = Σ_rows dy, dx = dy·Wᵀ — three GEMMs with the transposes done by the kernel;
 * dW and db are not computed for a frozen (non-trainable) parameter.
 */
class Dense implements Layer {
  readonly kind = 'dense';
  name: string;
  private kernel!: Parameter;
  private bias: Parameter | null = null;
  private inputs = 0;

  constructor(readonly units: number, private readonly options: DenseOptions) {
    if (!Number.isInteger(units) || units < 1) throw new RangeError(`dense: units must be a positive integer, got ${units}`);
    this.name = options.name ?? '';
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.length === 0) throw new ShapeError(`${this.name} (dense)`, `input shape ${formatShape(inputShape)} has no feature axis`);
    this.inputs = inputShape[inputShape.length - 1]!;
    const fans = { fanIn: this.inputs, fanOut: this.units };
    this.kernel = ctx.addParameter('kernel', [this.inputs, this.units], this.options.kernelInitializer ?? glorotUniform(), fans, this.options.kernelRegularizer);
    if (this.options.useBias ?? true) {
      this.bias = ctx.addParameter('bias', [this.units], this.options.biasInitializer ?? zeros(), fans, this.options.biasRegularizer);
    }
    return [...inputShape.slice(0, -1), this.units];
  }

  parameters(): Parameter[] {
    return this.bias ? [this.kernel, this.bias] : [this.kernel];
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const rows = x.size / this.inputs;
    const y = step.alloc([...x.shape.slice(0, -1), this.units]);
    await step.engine.compute.gemm(0, 0, rows, this.units, this.inputs, 1, x.ptr, this.inputs, this.kernel.value.ptr, this.units, 0, y.ptr, this.units);
    if (this.bias) step.engine.kernels.addBias(y.ptr, this.bias.value.ptr, rows, this.units);
    step.save(this, x);
    return y;
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const [x] = step.restore(this) as [Tensor];
    const rows = x.size / this.inputs;
    const { compute, kernels } = step.engine;
    // A frozen parameter's gradient is never read (the optimizer skips it): its work is skipped too.
    if (this.kernel.trainable) await compute.gemm(1, 0, this.inputs, this.units, rows, 1, x.ptr, this.inputs, dy.ptr, this.units, 0, this.kernel.grad.ptr, this.units);
    if (this.bias?.trainable) kernels.sumRows(dy.ptr, this.bias.grad.ptr, rows, this.units, 0);
    if (!needInputGradient) return null;
    const dx = step.alloc(x.shape);
    await compute.gemm(0, 1, rows, this.inputs, this.units, 1, dy.ptr, this.units, this.kernel.value.ptr, this.units, 0, dx.ptr, this.inputs);
    return dx;
  }

  config(): Record<string, unknown> {
    return {
      units: this.units,
      useBias: this.options.useBias ?? true,
      kernelInitializer: (this.options.kernelInitializer ?? glorotUniform()).name,
      biasInitializer: (this.options.biasInitializer ?? zeros()).name,
      // Coefficients, not the display name: `layerFromConfig` rebuilds the regularizer from them.
      kernelRegularizer: this.options.kernelRegularizer?.config() ?? null,
      biasRegularizer: this.options.biasRegularizer?.config() ?? null,
    };
  }
}

/**
 * A fully connected layer with `units` outputs.
 *
 * Usage: `sequential([dense(128), relu(), dense(10)], { inputShape: [784] })`
 */
export function dense(units: number, options: DenseOptions = {}): Layer {
  return new Dense(units, options);
}

registerLayer('dense', (c, name) => {
  const units = c.positiveInteger('units');
  const useBias = c.boolean('useBias', true);
  const kernelInitializer = c.initializer('kernelInitializer', glorotUniform());
  const biasInitializer = c.initializer('biasInitializer', zeros());
  const kernelRegularizer = c.regularizer('kernelRegularizer');
  const biasRegularizer = c.regularizer('biasRegularizer');
  c.done();
  return dense(units, {
    name, useBias, kernelInitializer, biasInitializer,
    ...(kernelRegularizer ? { kernelRegularizer } : {}), ...(biasRegularizer ? { biasRegularizer } : {}),
  });
});
