import { floatColumn, labelColumn, placeholderColumn, tensorColumn, type Batch } from './batch.ts';
import type { Engine } from './engine.ts';
import type { Arena } from './heap.ts';
import { ShapeError, StepContext, type Layer, type Parameter } from './layer.ts';
import type { Random } from './random.ts';
import { formatShape, sizeOf, type DType, type Shape, type Tensor } from './tensor.ts';

/**
 * The one place where layers are sequenced: forward through a list of layers, backward through it
 * in reverse, each layer's backward fed the gradient of the next. `Model` runs its layers with it
 * and every combinator (`chain`, `residual`, `parallel`'s branches, `encoderDecoder`) runs its
 * children with it, so there is no second sequencing loop. A layer may answer with a Promise (a
 * kernel split across the worker pool); synchronous answers are used at once, so a step whose
 * kernels all ran on the calling thread takes no microtask hop.
 */

const isPromise = <T>(v: T | Promise<T>): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

/**
 * Runs `layers[from…]` forward on `x` for this step; each layer saves what its backward needs on the step.
 *
 * Usage: `const y = await forwardThrough(children, x, step);`
 */
export function forwardThrough(layers: readonly Layer[], x: Tensor, step: StepContext, from = 0): Tensor | Promise<Tensor> {
  let y = x;
  for (let i = from; i < layers.length; i++) {
    const out = layers[i]!.forward(y, step);
    if (isPromise(out)) return out.then((v) => forwardThrough(layers, v, step, i + 1));
    y = out;
  }
  return y;
}

/**
 * Runs `layers` backward in reverse order from dLoss/dOutput `dy`; returns dLoss/dInput, or null when
 * `needInputGradient` is false (the first layer is then told not to compute it).
 *
 * Usage: `const dx = await backwardThrough(children, dy, step, true);`
 */
export function backwardThrough(layers: readonly Layer[], dy: Tensor, step: StepContext, needInputGradient: boolean, from = layers.length - 1): Tensor | null | Promise<Tensor | null> {
  let grad: Tensor | null = dy;
  for (let i = from; i >= 0; i--) {
    if (!grad) {
      // A layer that ends the gradient path (an embedding of ids) may follow only layers with nothing
      // to learn; an `input` column first ignores what it is given, so its input gradient is zero.
      let learns = false;
      for (let j = 0; j <= i && !learns; j++) learns = layers[j]!.parameters().length > 0;
      if (!learns) {
        if (!needInputGradient) return null;
        if (layers[0]!.readsFeatures === false) return layers[0]!.backward(null as unknown as Tensor, step, true);
      }
      throw new Error(`${layers[i]!.name}: no gradient arrived on the reverse stream`);
    }
    const out: Tensor | null | Promise<Tensor | null> = layers[i]!.backward(grad, step, i > 0 || needInputGradient);
    if (isPromise(out)) return out.then((g) => (i === 0 ? g : backwardThrough(layers, g as Tensor, step, needInputGradient, i - 1)));
    grad = out;
  }
  return grad;
}

let lastYield = performance.now();
/** Gives the event loop a turn when steps have run for `sliceMs`, so training never starves a host app. */
async function yieldIfBusy(sliceMs: number): Promise<void> {
  const now = performance.now();
  if (now - lastYield >= sliceMs) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    lastYield = performance.now();
  }
}

/** What {@link StepRunner.begin} needs to know about the model it feeds. */
export interface RunnerOptions {
  readonly engine: Engine;
  readonly rng: Random;
  /** Used in error messages. */
  readonly name: string;
  readonly inputShape: Shape;
  /** Longest run of steps before the event loop gets a turn (ms). */
  readonly timeSliceMs: number;
}

/**
 * Runs steps of one model: turns an Arrow batch into a {@link StepContext} (its arena from a pool,
 * the columns copied in), runs the layers forward and backward with {@link forwardThrough} and
 * {@link backwardThrough}, releases the arena, and serialises the steps of every caller (training,
 * inference, pipeline stages) so that each sees consistent weights.
 *
 * The lower-level API a pipeline stage uses:
 * `const { step, x } = runner.begin(batch, true, 0); const y = await runner.forward(x, step); …;
 *  const dx = await runner.backward(dy, step, true); runner.end(step);`
 */
export class StepRunner {
  /** Element type of the `features` column (the first layer's `inputDType`). */
  readonly inputDType: DType;
  private readonly sideInputs: readonly string[];
  /** False when the first layer reads named columns only (`input`): batches need no `features` column. */
  private readonly readsFeatures: boolean;
  private readonly freeArenas: Arena[] = [];
  private busy = 0;
  private queue: Promise<void> = Promise.resolve();
  private disposed = false;
  private layerParameters: (readonly Parameter[])[] | null = null;

  constructor(readonly layers: readonly Layer[], private readonly options: RunnerOptions) {
    this.inputDType = layers[0]!.inputDType ?? 'float32';
    this.sideInputs = [...new Set(layers.flatMap((l) => l.sideInputs ?? []))];
    this.readsFeatures = layers[0]!.readsFeatures !== false;
  }

  /** Steps begun and not yet ended (each holds an arena). */
  get stepsInFlight(): number {
    return this.busy;
  }

  /**
   * Starts a step: validates the batch's features against the model's input, takes an arena and
   * copies the features, labels or targets and the side columns the layers read into it.
   * Throws (releasing the arena) on a bad batch; nothing else changes.
   */
  begin(batch: Batch, training: boolean, index: number, checkNumerics = false): { step: StepContext; x: Tensor } {
    const { engine, inputShape, name } = this.options;
    if (this.disposed) throw new Error(`${name}: the model was disposed`);
    const first = this.layers[0]!;
    const features = this.readsFeatures ? tensorColumn(batch, 'features') : placeholderColumn(batch.numRows, inputShape, this.inputDType);
    if (features.shape.length !== inputShape.length || features.shape.some((d, i) => d !== inputShape[i])) {
      throw new ShapeError(`${first.name} (${first.kind})`, `batch features have shape ${formatShape(features.shape)} per example, but the model was built for input shape ${formatShape(inputShape)}`);
    }
    if (features.dtype !== this.inputDType) {
      throw new TypeError(`${first.name} (${first.kind}): batch features are ${features.dtype}, the model takes ${this.inputDType}`);
    }
    if (features.rows === 0) throw new RangeError(`${name}: empty batch (0 rows)`);
    if (checkNumerics && features.values instanceof Float32Array) assertFinite(features.values, sizeOf(inputShape), "batch column 'features'");
    engine.compute.markStep?.();
    const arena = this.freeArenas.pop() ?? engine.heap.arena();
    this.busy++;
    const step = new StepContext(engine, arena, features.rows, training, this.options.rng, index);
    const copyIn = (values: Float32Array | Int32Array, shape: Shape): Tensor => {
      const t = step.alloc([features.rows, ...shape], values instanceof Int32Array ? 'int32' : 'float32');
      if (values instanceof Int32Array) engine.heap.i32.set(values, t.ptr >> 2);
      else engine.heap.f32.set(values, t.ptr >> 2);
      return t;
    };
    try {
      const x = copyIn(features.values, inputShape);
      const labels = labelColumn(batch);
      if (labels) step.labels = copyIn(labels.values, labels.shape);
      if (batch.schema.fields.some((f) => f.name === 'targets')) {
        const targets = floatColumn(batch, 'targets');
        if (checkNumerics) assertFinite(targets.values, sizeOf(targets.shape), "batch column 'targets'");
        step.targets = copyIn(targets.values, targets.shape);
      }
      for (const column of this.sideInputs) {
        const values = tensorColumn(batch, column);
        step.columns.set(column, copyIn(values.values, values.shape));
      }
      return { step, x };
    } catch (error) {
      this.end(step);
      throw error;
    }
  }

  /** The layers' forward on this step's input. */
  forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor> {
    return forwardThrough(this.layers, x, step);
  }

  /**
   * The layers' backward from dLoss/dOutput. Without `needInputGradient` the reverse stream stops at
   * the first layer with a trainable parameter (layers before it have nothing to learn: augmentation,
   * or a frozen base in transfer learning, whose backward is skipped entirely) and returns null; with
   * it, every layer runs and dLoss/dInput is returned (a pipeline stage sends it upstream).
   */
  backward(dy: Tensor, step: StepContext, needInputGradient = false): Tensor | null | Promise<Tensor | null> {
    if (needInputGradient) return backwardThrough(this.layers, dy, step, true);
    // Asked per step (freezing and unfreezing change it between steps) of each layer's parameter
    // list, listed once: the lists are fixed once the layers are built.
    this.layerParameters ??= this.layers.map((l) => l.parameters());
    const first = this.layerParameters.findIndex((list) => list.some((p) => p.trainable));
    if (first < 0) return null;
    return backwardThrough(first === 0 ? this.layers : this.layers.slice(first), dy, step, false);
  }

  /** Ends a step: its arena goes back to the pool, reset. */
  end(step: StepContext): void {
    step.arena.reset();
    this.busy--;
    if (this.disposed) step.arena.dispose();
    else this.freeArenas.push(step.arena);
  }

  /**
   * Runs `work` after every earlier piece of work of this model has settled (steps never
   * interleave), giving the event loop a turn when steps have run for `timeSliceMs`. `cancelled`
   * is asked just before `work` would start: a cancelled caller's work is skipped (resolves undefined).
   */
  exclusive<T>(work: () => T | Promise<T>, cancelled: () => boolean = () => false): Promise<T | undefined> {
    const previous = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((resolve) => (release = resolve));
    return previous
      .then(() => yieldIfBusy(this.options.timeSliceMs))
      .then(() => (cancelled() ? undefined : work()))
      .finally(release);
  }

  /** Frees the pooled arenas; arenas of steps still in flight are freed when they end. */
  dispose(): void {
    this.disposed = true;
    for (const a of this.freeArenas) a.dispose();
    this.freeArenas.length = 0;
  }
}

function assertFinite(values: Float32Array, width: number, where: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new RangeError(`checkNumerics: ${where} has ${values[i]} at row ${Math.floor(i / width)}, element ${i % width}`);
    }
  }
}
