import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type DType, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** Options of {@link input}. */
export interface InputOptions {
  /** Per-example shape of the column: `[]` for one value per row (an id), `[200]` for a token sequence. Default `[]`. */
  shape?: Shape;
  /** Element type of the column: 'int32' for ids and tokens (default), 'float32' for numeric features. */
  dtype?: DType;
  name?: string;
}

/**
 * Reads a named batch column instead of its input: the entry of a branch in a model with several
 * inputs. The column travels like any side input (`sideInputs`, copied into the step's arena by the
 * model); the layer's input (the `features` column, or a placeholder when no layer reads it) is
 * ignored, so its gradient is zero. Shape rule: any input → the declared column shape.
 */
class Input implements Layer {
  readonly kind = 'input';
  /** A model whose every path starts with an `input` needs no `features` column. */
  readonly readsFeatures = false;
  readonly sideInputs: readonly string[];
  name: string;

  constructor(readonly column: string, readonly shape: Shape, readonly dtype: DType, name: string) {
    if (typeof column !== 'string' || column === '') throw new RangeError(`input: column must be a non-empty string, got ${JSON.stringify(column)}`);
    if (column === 'features' || column === 'labels' || column === 'targets') throw new RangeError(`input: '${column}' is read by the model itself; name a further column`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`input '${column}': shape ${JSON.stringify(shape)} must be positive integers`);
    if (dtype !== 'int32' && dtype !== 'float32') throw new RangeError(`input '${column}': dtype must be 'int32' or 'float32', got ${JSON.stringify(dtype)}`);
    this.sideInputs = [column];
    this.name = name;
  }

  build(_inputShape: Shape, _ctx: BuildContext): Shape {
    return this.shape;
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    const t = step.columns.get(this.column);
    const operator = `${this.name} (input)`;
    if (!t) throw new TypeError(`${operator}: batch has no '${this.column}' column`);
    const shape = t.shape.slice(1);
    if (shape.length !== this.shape.length || shape.some((d, i) => d !== this.shape[i])) {
      throw new ShapeError(operator, `column '${this.column}' has shape ${formatShape(shape)} per example, expected ${formatShape(this.shape)}`);
    }
    if (t.dtype !== this.dtype) throw new TypeError(`${operator}: column '${this.column}' holds ${t.dtype} values, expected ${this.dtype}`);
    step.save(this, x);
    return t;
  }

  backward(_dy: Tensor | null, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    // The output does not depend on the layer's input: its gradient is zero.
    const [x] = step.restore(this) as [Tensor];
    const dx = step.alloc(x.shape);
    step.engine.kernels.fill(dx.ptr, dx.size, 0);
    return dx;
  }

  config(): Record<string, unknown> {
    return { column: this.column, shape: [...this.shape], dtype: this.dtype };
  }
}

/**
 * A model input read from the batch column `column` (Int32 ids by default): with `parallel`,
 * `dot` and `chain`, models read several columns, e.g. a user and an item id.
 *
 * Usage: `sequential([parallel([[input('user'), embedding(943, 16)], [input('item'), embedding(1682, 16)]], 'concat'), dense(1)], { inputShape: [] })`
 */
export function input(column: string, options: InputOptions = {}): Layer {
  return new Input(column, options.shape ?? [], options.dtype ?? 'int32', options.name ?? '');
}

registerLayer('input', (c, name) => {
  const column = c.string('column');
  const shape = c.shape('shape');
  const dtype = c.string('dtype');
  c.done();
  return constructLayer(c, 'column', () => input(column, { shape, dtype: dtype as DType, name }));
});
