import type { Engine } from './engine.ts';
import type { Arena } from './heap.ts';
import type { Initializer } from './initializers.ts';
import type { Random } from './random.ts';
import type { Regularizer } from './regularizers.ts';
import { formatShape, Tensor, type DType, type Shape } from './tensor.ts';

/**
 * A trainable array: its value and its gradient live in the heap's persistent region. Each
 * backward overwrites `grad`; the optimizer reads it.
 */
export interface Parameter {
  /** Unique in the model: `dense_1/kernel`. */
  readonly name: string;
  readonly shape: Shape;
  readonly value: Tensor;
  readonly grad: Tensor;
  readonly regularizer: Regularizer | null;
  /**
   * False freezes the parameter: the optimizer skips it and layers may skip computing its gradient (dense and
   * conv2d do), so its `grad` is then stale; the reverse stream stops at the first layer that still learns.
   */
  trainable: boolean;
  /** Rows of `[rows, …]` this step's gradient may touch, set by layers such as `idEmbedding` (null/absent: dense); lazy optimizers update only these. */
  sparseRows?: Int32Array | null;
}

/** What a layer gets while it is built: the place to create its parameters. */
export interface BuildContext {
  readonly engine: Engine;
  readonly rng: Random;
  /** Allocates a parameter in the persistent region, initialised by `init` with the given fans. */
  addParameter(
    name: string, shape: Shape, init: Initializer, fans: { fanIn: number; fanOut: number }, regularizer?: Regularizer | null,
  ): Parameter;
}

/** Raised when shapes do not fit; names the operator and both shapes. */
export class ShapeError extends Error {
  constructor(operator: string, message: string) {
    super(`${operator}: ${message}`);
    this.name = 'ShapeError';
  }
}

/**
 * Everything one batch in flight owns: its arena (all activations and gradients of this batch),
 * the tensors each layer's forward saved for its backward, its labels, and the training flag.
 * Released when the batch's backward is done (training) or its output handed out (inference).
 */
export class StepContext {
  private readonly saved = new Map<Layer, Tensor[]>();
  /** Class labels (int32, rows) or float targets (rows × width), in the arena; null for inference. */
  labels: Tensor | null = null;
  targets: Tensor | null = null;
  /** Further batch columns that layers asked for through `sideInputs` (padding masks, …), in the arena. */
  readonly columns = new Map<string, Tensor>();
  /** Set by the loss: mean loss of this batch (regularisation included) and its accuracy, if defined. */
  loss = Number.NaN;
  accuracy: number | null = null;
  /** Set by the loss: how many terms its mean is over (rows, or counted positions); gradient accumulation weights by it. */
  lossCount = 0;
  /** Gradient accumulators of side columns produced inside the model (see {@link openColumnGradient}). */
  private readonly columnGradients = new Map<string, Tensor>();

  constructor(
    readonly engine: Engine,
    readonly arena: Arena,
    /** Rows in this batch. */
    readonly rows: number,
    /** True while training: dropout and augmentation are active. */
    readonly training: boolean,
    /** The generator for this step's random choices (dropout masks). */
    readonly rng: Random,
    /** The model's step number (optimizer iterations before this batch). */
    readonly index: number,
  ) {}

  /** A tensor of the given full shape (batch dimension included) in this batch's arena. */
  alloc(shape: Shape, dtype: DType = 'float32'): Tensor {
    let size = 1;
    for (const d of shape) size *= d;
    return new Tensor(this.engine.heap, this.arena.alloc(size * 4), shape, dtype);
  }

  /** Keeps tensors from a layer's forward for its backward of the same batch. */
  save(layer: Layer, ...tensors: Tensor[]): void {
    this.saved.set(layer, tensors);
  }

  /**
   * Opens a zeroed gradient accumulator for side column `name` of this step (shape: the column's,
   * batch dimension included). Side columns reach layers through `columns` rather than the main
   * stream (cross-attention's memory): the layer producing one opens its accumulator in its forward,
   * every consumer adds its contribution in its backward ({@link columnGradient}), and the producer
   * reads the sum in its own backward, which runs after all consumers because it came before them in
   * the forward. Columns read straight from the batch have none, and consumers skip that work.
   *
   * Usage (a layer producing a column): `step.columns.set('memory', m); step.openColumnGradient('memory', m.shape);`
   */
  openColumnGradient(name: string, shape: Shape): Tensor {
    const grad = this.alloc(shape);
    grad.data().fill(0);
    this.columnGradients.set(name, grad);
    return grad;
  }

  /**
   * The gradient accumulator of side column `name`, or null when nobody opened one (a batch column).
   *
   * Usage (a layer consuming a column, in backward): `const g = step.columnGradient('memory'); if (g) …accumulate…`
   */
  columnGradient(name: string): Tensor | null {
    return this.columnGradients.get(name) ?? null;
  }

  /** What `layer` saved in this batch's forward. */
  restore(layer: Layer): Tensor[] {
    const tensors = this.saved.get(layer);
    if (!tensors) throw new Error(`${layer.name}: backward called without a forward for step ${this.index}`);
    return tensors;
  }
}

/**
 * An operator of the model: its shape rule (`build`), its forward and its backward, side by side
 * in one file under `operators/`. Tensors carry the batch dimension first.
 *
 * Usage (inside an operator file): `class Relu implements Layer { build(s) { return s; } forward(x, step) {…} backward(dy, step) {…} }`
 */
export interface Layer {
  /** Operator kind: 'dense', 'relu', … */
  readonly kind: string;
  /** Unique in the model; assigned by the model when not given (`dense_1`). */
  name: string;
  /** The shape rule: per-example output shape for a per-example input shape; creates the parameters. Throws {@link ShapeError}. */
  build(inputShape: Shape, ctx: BuildContext): Shape;
  /** Parameters created by `build`, in a fixed order. */
  parameters(): Parameter[];
  /** Computes the output for a batch; saves what backward needs with `step.save`. */
  forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor>;
  /**
   * Given dLoss/dOutput, writes the parameter gradients and returns dLoss/dInput
   * (or null when `needInputGradient` is false: the first layer's input needs none).
   */
  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null | Promise<Tensor | null>;
  /** The layer's constructor arguments, for summaries and checkpoints. */
  config(): Record<string, unknown>;
  /** Element type the layer takes as model input: 'int32' for token ids (embeddings); default 'float32'. */
  readonly inputDType?: DType;
  /** Names of further batch columns the layer reads from `step.columns` (e.g. `['mask']`). */
  readonly sideInputs?: readonly string[];
  /** False when the layer ignores its input (`input(column)` reads a named column): a model whose first layer says so needs no `features` column. */
  readonly readsFeatures?: boolean;
  /**
   * True when the forward's output in training differs from inference (dropout, augmentation, batch
   * statistics); a layer that reads `step.training` to change its output must say so. Combinators
   * report their children's. When no layer of a model does, a training step's forward is an
   * inference forward, and test-then-train scores it instead of running a second one.
   */
  readonly trainingDiffers?: boolean;
}

/** Checks that a tensor's per-example shape equals `expected`, else throws a {@link ShapeError} for `layer`. */
export function expectShape(layer: Layer, role: string, actual: Shape, expected: Shape): void {
  if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) {
    throw new ShapeError(`${layer.name} (${layer.kind})`, `${role} shape ${formatShape(actual)} does not match the expected ${formatShape(expected)}`);
  }
}

/**
 * Builds layers in order under a parent's BuildContext (a model, a chain, a branch): names each
 * unnamed layer by kind (`dense_1`), prefixes its parameter names with its name, threads the shape
 * through, and returns each layer's output shape.
 *
 * Usage: `const shapes = buildChildren(layers, inputShape, ctx); const output = shapes.at(-1);`
 */
export function buildChildren(children: readonly Layer[], inputShape: Shape, ctx: BuildContext): Shape[] {
  const counts = new Map<string, number>();
  const names = new Set<string>();
  const shapes: Shape[] = [];
  let shape = inputShape;
  for (const child of children) {
    if (!child.name) {
      const n = (counts.get(child.kind) ?? 0) + 1;
      counts.set(child.kind, n);
      child.name = `${child.kind}_${n}`;
    }
    if (names.has(child.name)) throw new RangeError(`two layers in one block are named '${child.name}'`);
    names.add(child.name);
    shape = child.build(shape, childContext(child, ctx));
    shapes.push(shape);
  }
  return shapes;
}

/** A BuildContext for a child layer: its parameters are named `<child>/<parameter>` under the parent's. */
export function childContext(child: Layer, ctx: BuildContext): BuildContext {
  return {
    engine: ctx.engine,
    rng: ctx.rng,
    addParameter: (name, shape, init, fans, regularizer) => ctx.addParameter(`${child.name}/${name}`, shape, init, fans, regularizer),
  };
}
