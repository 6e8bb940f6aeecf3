import { glorotUniform, type Initializer } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link positionalEncoding}. */
export interface PositionalEncodingOptions {
  /** 'sinusoidal' (fixed, Vaswani et al. 2017) or 'learned' (a trained `[maxLength, D]` table, GPT-2). */
  kind: 'sinusoidal' | 'learned';
  /** Longest sequence the layer accepts; the table's rows. */
  maxLength: number;
  /** Initial values of the learned table (default Glorot uniform, Keras-hub's PositionEmbedding default). */
  initializer?: Initializer;
  name?: string;
}

/**
 * The sinusoidal table: PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(t / 10000^(2i/D)).
 * With an odd D the last column is a sine. Exported for the reference and for inspection.
 *
 * Usage: `const pe = sinusoidalTable(128, 64); pe[t * 64 + j]`
 */
export function sinusoidalTable(length: number, dim: number): Float32Array {
  const table = new Float32Array(length * dim);
  for (let t = 0; t < length; t++) {
    for (let j = 0; j < dim; j++) {
      const i2 = j - (j % 2);
      const angle = t / Math.pow(10000, i2 / dim);
      table[t * dim + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return table;
}

/**
 * Adds a position code to each row of a `[T, D]` sequence: y[t] = x[t] + PE[t].
 * Shape rule: identity; the input must be `[T, D]` with T ≤ maxLength.
 * Backward: dx = dy (the identity; returned as is); for 'learned', dPE[t] = Σ_batch dy[t] for
 * t < T and 0 for the rows the model's length never reaches.
 * The sinusoidal table is computed once at build time and kept in JS memory (it is not a parameter,
 * so it needs no slot in the heap's persistent region and nothing to free); each step copies its
 * first T rows into the arena so that the addition is one `addBias` kernel over the batch.
 */
class PositionalEncoding implements Layer {
  readonly kind = 'positionalEncoding';
  private table: Parameter | null = null;
  private fixed: Float32Array | null = null;
  private length = 0;
  private dim = 0;

  constructor(readonly encoding: 'sinusoidal' | 'learned', readonly maxLength: number, public name: string, private readonly initializer: Initializer = glorotUniform()) {
    if (encoding !== 'sinusoidal' && encoding !== 'learned') throw new RangeError(`positionalEncoding: kind must be 'sinusoidal' or 'learned', got '${String(encoding)}'`);
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`positionalEncoding: maxLength must be a positive integer, got ${maxLength}`);
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    const operator = `${this.name} (positionalEncoding)`;
    if (inputShape.length !== 2) throw new ShapeError(operator, `input shape ${formatShape(inputShape)} must be [length, features]`);
    this.length = inputShape[0]!;
    this.dim = inputShape[1]!;
    if (this.length > this.maxLength) throw new ShapeError(operator, `input shape ${formatShape(inputShape)} is longer than maxLength ${this.maxLength}`);
    if (this.encoding === 'learned') {
      this.table = ctx.addParameter('embeddings', [this.maxLength, this.dim], this.initializer, { fanIn: this.maxLength, fanOut: this.dim });
    } else {
      this.fixed = sinusoidalTable(this.maxLength, this.dim);
    }
    return inputShape;
  }

  parameters(): Parameter[] {
    return this.table ? [this.table] : [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const width = this.length * this.dim;
    const rows = x.size / width;
    const y = step.alloc(x.shape);
    let pe = this.table?.value.ptr ?? 0;
    if (this.fixed) {
      const t = step.alloc([this.length, this.dim]);
      t.data().set(this.fixed.subarray(0, width));
      pe = t.ptr;
    }
    const k = step.engine.kernels;
    k.copy(x.ptr, y.ptr, x.size);
    k.addBias(y.ptr, pe, rows, width);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (this.table) {
      const width = this.length * this.dim;
      step.engine.kernels.sumRows(dy.ptr, this.table.grad.ptr, dy.size / width, width, 0);
      const g = this.table.grad.data();
      g.fill(0, width);
    }
    return needInputGradient ? dy : null;
  }

  config(): Record<string, unknown> {
    return { kind: this.encoding, maxLength: this.maxLength, ...(this.encoding === 'learned' ? { initializer: this.initializer.name } : {}) };
  }
}

/**
 * Adds sinusoidal or learned position codes to a `[T, D]` sequence.
 *
 * Usage: `sequential([embedding(vocab, 64), positionalEncoding({ kind: 'learned', maxLength: 128 }), …], { inputShape: [128] })`
 */
export function positionalEncoding(options: PositionalEncodingOptions): Layer {
  if (options.initializer && options.kind !== 'learned') throw new RangeError("positionalEncoding: an initializer applies to kind 'learned' only");
  return new PositionalEncoding(options.kind, options.maxLength, options.name ?? '', options.initializer);
}

registerLayer('positionalEncoding', (c, name) => {
  const kind = c.choice('kind', ['sinusoidal', 'learned'] as const);
  const maxLength = c.positiveInteger('maxLength');
  const initializer = kind === 'learned' ? c.initializer('initializer', glorotUniform()) : undefined;
  c.done();
  return constructLayer(c, 'kind', () => positionalEncoding({ kind, maxLength, name, ...(initializer ? { initializer } : {}) }));
});
