import { constant } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link bias}. */
export interface BiasOptions {
  /** Starting value of every element (e.g. the mean rating of a recommender). Default 0. */
  initial?: number;
  name?: string;
}

/**
 * A learnt offset added along the last axis: y[..., c] = x[..., c] + b[c], b of the last axis' size.
 * Backward: db = Σ over rows of dy; dx = dy.
 */
class Bias implements Layer {
  readonly kind = 'bias';
  name: string;
  private b!: Parameter;
  private width = 0;

  constructor(readonly initial: number, name: string) {
    if (!Number.isFinite(initial)) throw new RangeError(`bias: initial must be a finite number, got ${initial}`);
    this.name = name;
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.length === 0) throw new ShapeError(`${this.name} (bias)`, `input shape ${formatShape(inputShape)} has no last axis to add a bias along`);
    this.width = inputShape[inputShape.length - 1]!;
    this.b = ctx.addParameter('bias', [this.width], constant(this.initial), { fanIn: this.width, fanOut: this.width });
    return inputShape;
  }

  parameters(): Parameter[] {
    return [this.b];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const y = step.alloc(x.shape);
    const k = step.engine.kernels;
    k.copy(x.ptr, y.ptr, x.size);
    k.addBias(y.ptr, this.b.value.ptr, x.size / this.width, this.width);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    const k = step.engine.kernels;
    k.sumRows(dy.ptr, this.b.grad.ptr, dy.size / this.width, this.width, 0);
    if (!needInputGradient) return null;
    const dx = step.alloc(dy.shape);
    k.copy(dy.ptr, dx.ptr, dy.size);
    return dx;
  }

  config(): Record<string, unknown> {
    return { initial: this.initial };
  }
}

/**
 * A learnt offset per output (a bias without a kernel), e.g. the global mean of a recommender.
 *
 * Usage: `sequential([parallel([...], 'add'), bias({ initial: 3.5 })])`
 */
export function bias(options: BiasOptions = {}): Layer {
  return new Bias(options.initial ?? 0, options.name ?? '');
}

registerLayer('bias', (c, name) => {
  const initial = c.number('initial', 0);
  c.done();
  return constructLayer(c, 'initial', () => bias({ initial, name }));
});
