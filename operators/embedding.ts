import { randomUniform, type Initializer } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import type { Regularizer } from '../src/regularizers.ts';
import { formatShape, type DType, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link embedding}. */
export interface EmbeddingOptions {
  /**
   * Token id whose vector is fixed at zero (PyTorch `padding_idx`): its row is initialised to 0 and its
   * gradient stays 0, so padding positions never move any weight.
   */
  paddingIndex?: number;
  /** Default uniform(±0.05), as Keras. */
  embeddingsInitializer?: Initializer;
  embeddingsRegularizer?: Regularizer;
  name?: string;
}

/** Keras' default for embeddings: U(−0.05, 0.05). */
const uniform005 = randomUniform(0.05);

/**
 * Token embedding: y[..., :] = E[id, :] for int32 ids. E is `[vocabSize, dim]`.
 * Shape rule: `[...]` ids → `[..., dim]` (e.g. `[T]` → `[T, dim]`). Takes int32 features (`inputDType`).
 * Backward: dE = scatter-add of dy rows into the rows of their ids (a dense gradient, zeroed first);
 * the padding row's gradient stays 0. Token ids have no gradient: backward returns null.
 */
class Embedding implements Layer {
  readonly kind = 'embedding';
  readonly inputDType: DType = 'int32';
  name: string;
  private table!: Parameter;
  private inputShape: Shape = [];

  constructor(readonly vocabSize: number, readonly dim: number, private readonly options: EmbeddingOptions) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new RangeError(`embedding: vocabSize must be a positive integer, got ${vocabSize}`);
    if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`embedding: dim must be a positive integer, got ${dim}`);
    const p = options.paddingIndex;
    if (p !== undefined && !(Number.isInteger(p) && p >= 0 && p < vocabSize)) {
      throw new RangeError(`embedding: paddingIndex must be an integer id in [0, ${vocabSize}), got ${p}`);
    }
    this.name = options.name ?? '';
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.some((d) => !Number.isInteger(d) || d < 1)) throw new ShapeError(`${this.name} (embedding)`, `input shape ${formatShape(inputShape)} must be positive integers`);
    this.inputShape = inputShape;
    const base = this.options.embeddingsInitializer ?? uniform005;
    const padding = this.options.paddingIndex;
    const dim = this.dim;
    const init: Initializer = padding === undefined ? base : {
      name: base.name,
      fill(values, fans, rng) {
        base.fill(values, fans, rng);
        values.fill(0, padding * dim, (padding + 1) * dim);
      },
    };
    this.table = ctx.addParameter('embeddings', [this.vocabSize, dim], init, { fanIn: this.vocabSize, fanOut: dim }, this.options.embeddingsRegularizer);
    return [...inputShape, dim];
  }

  parameters(): Parameter[] {
    return [this.table];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    if (x.dtype !== 'int32') throw new TypeError(`${this.name} (embedding): input is ${x.dtype}; an embedding takes int32 token ids (batch features as an Int32Array)`);
    const y = step.alloc([...x.shape, this.dim]);
    const { f32, i32 } = step.engine.heap;
    const ids = x.ptr >> 2;
    const table = this.table.value.ptr >> 2;
    const out = y.ptr >> 2;
    const perRow = x.size / x.shape[0]!;
    const dim = this.dim;
    for (let i = 0; i < x.size; i++) {
      const id = i32[ids + i]!;
      if (!(id >= 0 && id < this.vocabSize)) {
        throw new RangeError(`${this.name} (embedding): token id ${id} at row ${Math.floor(i / perRow)}, position ${this.position(i % perRow)} is out of range for vocabulary size ${this.vocabSize}`);
      }
      f32.copyWithin(out + i * dim, table + id * dim, table + (id + 1) * dim);
    }
    step.save(this, x);
    return y;
  }

  /** A flat per-example index as `t` (rank 1) or `[i, j, …]`. */
  private position(flat: number): string {
    if (this.inputShape.length <= 1) return String(flat);
    const index: number[] = [];
    for (let a = this.inputShape.length - 1; a >= 0; a--) {
      index.unshift(flat % this.inputShape[a]!);
      flat = Math.floor(flat / this.inputShape[a]!);
    }
    return formatShape(index);
  }

  backward(dy: Tensor, step: StepContext): null {
    const [x] = step.restore(this) as [Tensor];
    const { f32, i32 } = step.engine.heap;
    const grad = this.table.grad.ptr >> 2;
    const dim = this.dim;
    f32.fill(0, grad, grad + this.vocabSize * dim);
    const ids = x.ptr >> 2;
    const g = dy.ptr >> 2;
    const padding = this.options.paddingIndex ?? -1;
    for (let i = 0; i < x.size; i++) {
      const id = i32[ids + i]!;
      if (id === padding) continue;
      const dst = grad + id * dim;
      const src = g + i * dim;
      for (let d = 0; d < dim; d++) f32[dst + d] = f32[dst + d]! + f32[src + d]!;
    }
    return null;
  }

  config(): Record<string, unknown> {
    return {
      vocabSize: this.vocabSize,
      dim: this.dim,
      paddingIndex: this.options.paddingIndex ?? null,
      embeddingsInitializer: (this.options.embeddingsInitializer ?? uniform005).name,
      embeddingsRegularizer: this.options.embeddingsRegularizer?.config() ?? null,
    };
  }
}

/**
 * A lookup table from int32 token ids to `dim`-vectors; the first layer of a sequence model.
 * An id outside `[0, vocabSize)` fails the batch with a RangeError naming the layer, row, position and id.
 *
 * Usage: `sequential([embedding(10000, 64, { paddingIndex: 0 }), lstm({ units: 64 }), dense(2)], { inputShape: [80] })`
 */
export function embedding(vocabSize: number, dim: number, options: EmbeddingOptions = {}): Layer {
  return new Embedding(vocabSize, dim, options);
}

registerLayer('embedding', (c, name) => {
  const vocabSize = c.positiveInteger('vocabSize');
  const dim = c.positiveInteger('dim');
  const paddingIndex = c.numberOrNull('paddingIndex');
  const embeddingsInitializer = c.initializer('embeddingsInitializer', uniform005);
  const embeddingsRegularizer = c.regularizer('embeddingsRegularizer');
  c.done();
  return constructLayer(c, 'paddingIndex', () =>
    embedding(vocabSize, dim, { name, embeddingsInitializer, ...(paddingIndex !== null ? { paddingIndex } : {}), ...(embeddingsRegularizer ? { embeddingsRegularizer } : {}) }));
});
