import { concat, concatMap, defer, finalize, from, lastValueFrom, map, Observable, of, range, Subject, tap, type ObservableInput, type OperatorFunction, type Subscription } from 'rxjs';
import { floatColumn, gatherBatch, labelColumn, outputBatch, placeholderColumn, tensorColumn, type Batch, type BatchArrays } from './batch.ts';
import { defaultEngine, type Engine } from './engine.ts';
import type { Arena } from './heap.ts';
import type { Initializer } from './initializers.ts';
import { buildChildren, ShapeError, StepContext, type BuildContext, type Layer, type Parameter } from './layer.ts';
import { softmaxCrossEntropy, meanSquaredError, type Loss } from './losses.ts';
import type { Optimizer } from './optimizers.ts';
import {
  backwardOperator, composeOperators, forwardOperator, lossOperator, type ForwardFlow, type GradientOperator,
  type ParameterGradients, type ReverseFlow,
} from './protocol.ts';
import { Random } from './random.ts';
import type { Regularizer } from './regularizers.ts';
import { formatShape, sizeOf, Tensor, type DType, type Shape } from './tensor.ts';

/** Options of {@link sequential}. */
export interface SequentialOptions {
  /** Per-example input shape of the `features` column, e.g. `[784]`; default `[]` (a model that reads named columns through `input`). */
  inputShape?: Shape;
  /** Seed of every random choice of this model (init, dropout, shuffling). Default 0. */
  seed?: number;
  /** The engine whose heap holds the model; default {@link defaultEngine}. */
  engine?: Engine;
  name?: string;
  /**
   * Longest run of training/inference steps before the event loop gets a turn (default 4 ms). A
   * host that serves requests from the same process may want 0: a turn before every step.
   */
  timeSliceMs?: number;
}

/** Options of {@link Model.fit}. */
export interface FitOptions {
  loss: Loss;
  optimizer: Optimizer;
  /** 'accuracy' adds accuracy to the step reports (for losses that define it). */
  metrics?: readonly 'accuracy'[];
  /** Reverse-stream operators applied to each batch's parameter gradients before the optimizer. */
  gradientOperators?: readonly GradientOperator[];
  /** Check every input batch for NaN/Infinity and fail with the row and column if found. */
  checkNumerics?: boolean;
  /**
   * Attach to each step report a copy of the model's output for the batch, from this step's forward
   * (before the update). It equals the inference output when `model.trainingDiffers` is false.
   */
  outputs?: boolean;
}

/** What {@link Model.fit} emits after each optimizer step. */
export interface StepReport {
  /** The model's step count after this step (1 after the first batch ever). */
  step: number;
  /** Mean loss of this batch (regularisation penalties included). */
  loss: number;
  /** Fraction of this batch classified correctly, when asked for and defined by the loss. */
  accuracy?: number;
  /** Examples trained on by this `fit` subscription so far, this batch included. */
  examples: number;
  /** Rows in this batch. */
  batchSize: number;
  /** With `outputs: true`: the forward's output before the update, rows × the output shape's size (`model.outputShape`). */
  output?: Float32Array;
}

/** Options of {@link Model.predict} and {@link Model.evaluate}. */
export interface InferenceOptions {
  /** Check every input batch for NaN/Infinity and fail with the row and column if found. */
  checkNumerics?: boolean;
  /**
   * 'average': use the moving averages of the weights kept by the optimizer (created with
   * `emaMomentum`) instead of the weights as they are. Default 'current'.
   */
  weights?: 'current' | 'average';
}

/** What {@link Model.evaluate} resolves. */
export interface EvaluationResult {
  loss: number;
  accuracy?: number;
  examples: number;
}

/** Options of {@link Model.train}. */
export interface TrainOptions extends FitOptions {
  epochs: number;
  batchSize: number;
  /** Shuffle the rows each epoch with the model's seeded generator (default true). */
  shuffle?: boolean;
  /** Evaluated after each epoch. */
  validation?: BatchArrays;
  /** Which weights the validation uses ('average': the optimizer's moving averages, see `emaMomentum`). Default 'current'. */
  validationWeights?: 'current' | 'average';
}

/** Progress events of {@link Model.train}. */
export type TrainProgress =
  | ({ kind: 'step'; epoch: number; epochs: number; batch: number; batches: number; meanLoss: number; meanAccuracy?: number } & StepReport)
  | { kind: 'epoch'; epoch: number; epochs: number; loss: number; accuracy?: number; validation?: EvaluationResult; seconds: number; examplesPerSecond: number };

/** What {@link Model.gradients$} emits for each training step. */
export interface GradientReport {
  /** The model's step count after this step. */
  step: number;
  /** L2 norm of all parameter gradients together (after gradient operators such as clipping). */
  globalNorm: number;
  /** L2 norm of each parameter's gradient, by parameter name. */
  norms: Record<string, number>;
}

/** What {@link Model.updates$} emits for each training step. */
export interface UpdateReport {
  step: number;
  /** L2 norm of each parameter's change in this step, by name. */
  norms: Record<string, number>;
  /** L2 norm of each parameter after the step, by name (update/weight ratios are a health check). */
  weightNorms: Record<string, number>;
}

/** A parameter as users see it: name, shape and a copy of its values. */
export interface ParameterInfo {
  name: string;
  shape: Shape;
  size: number;
  trainable: boolean;
  /** A copy of the current values. */
  values(): Float32Array;
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

/**
 * A model: layers built for an input shape, their parameters in the shared heap, and the
 * operators that run batches through them. Training, evaluation and prediction are Observables;
 * steps of concurrent subscriptions are serialised, so every step sees consistent weights.
 */
export class Model {
  readonly outputShape: Shape;
  readonly rng: Random;
  /** Element type of the `features` column the model takes (the first layer's `inputDType`). */
  readonly inputDType: DType;
  private readonly sideInputs: readonly string[];
  /** False when the first layer reads named columns only (`input`): batches need no `features` column. */
  private readonly readsFeatures: boolean;
  private readonly params: Parameter[] = [];
  private readonly layerShapes: Shape[];
  private readonly freeArenas: Arena[] = [];
  private readonly forwardPipe: OperatorFunction<ForwardFlow, ForwardFlow>;
  private readonly backwardPipe: OperatorFunction<ReverseFlow, ReverseFlow>;
  private queue: Promise<void> = Promise.resolve();
  private readonly gradientReports = new Subject<GradientReport>();
  private readonly updateReports = new Subject<UpdateReport>();
  /**
   * Per-step gradient norms, for dashboards and alerts (a hot Observable: subscribe any time; the
   * norms are computed only while someone listens).
   *
   * Usage: `model.gradients$.subscribe(({ step, globalNorm }) => metrics.gauge('grad_norm', globalNorm))`
   */
  readonly gradients$: Observable<GradientReport> = this.gradientReports.asObservable();
  /**
   * Per-step weight-update norms (hot; computed only while someone listens: it copies the weights before each update).
   *
   * Usage: `model.updates$.subscribe(({ norms }) => console.log(norms))`
   */
  readonly updates$: Observable<UpdateReport> = this.updateReports.asObservable();
  private steps = 0;
  private lastLoss: Loss | null = null;
  private currentOptimizer: Optimizer | null = null;
  /** Every optimizer that trained this model: their state is freed with the model. */
  private readonly optimizers = new Set<Optimizer>();
  private disposed = false;

  constructor(
    readonly layers: readonly Layer[], readonly inputShape: Shape, readonly seed: number, readonly engine: Engine, readonly name: string,
    /** See {@link SequentialOptions.timeSliceMs}. */
    readonly timeSliceMs = 4,
  ) {
    if (!(timeSliceMs >= 0)) throw new RangeError(`sequential: timeSliceMs must be ≥ 0, got ${timeSliceMs}`);
    if (layers.length === 0) throw new RangeError('sequential: a model needs at least one layer');
    if (!inputShape.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`sequential: inputShape ${formatShape(inputShape)} must be positive integers`);
    this.rng = new Random(seed);
    this.layerShapes = buildChildren(layers, inputShape, this.buildContext());
    this.outputShape = this.layerShapes.at(-1)!;
    this.inputDType = layers[0]!.inputDType ?? 'float32';
    this.sideInputs = [...new Set(layers.flatMap((l) => l.sideInputs ?? []))];
    this.readsFeatures = layers[0]!.readsFeatures !== false;
    this.forwardPipe = composeOperators(layers.map((layer) => forwardOperator(layer)));
    // The reverse stream stops at the first layer with parameters: layers before it (augmentation,
    // input reshaping) have nothing to learn and nothing upstream to pass a gradient to.
    const firstLearning = layers.findIndex((l) => l.parameters().length > 0);
    const learning = firstLearning < 0 ? [] : layers.slice(firstLearning);
    this.backwardPipe = composeOperators([...learning].reverse().map((layer, i) => backwardOperator(layer, i < learning.length - 1)));
  }

  /** The root BuildContext: parameters arrive fully named (`dense_1/kernel`) and live in the persistent region. */
  private buildContext(): BuildContext {
    const engine = this.engine;
    return {
      engine,
      rng: this.rng,
      addParameter: (name: string, shape: Shape, init: Initializer, fans: { fanIn: number; fanOut: number }, regularizer?: Regularizer | null) => {
        const bytes = sizeOf(shape) * 4;
        const value = new Tensor(engine.heap, engine.heap.alloc(bytes), shape);
        const grad = new Tensor(engine.heap, engine.heap.alloc(bytes), shape);
        init.fill(value.data(), fans, this.rng);
        grad.data().fill(0);
        const p: Parameter = { name, shape, value, grad, regularizer: regularizer ?? null, trainable: true };
        this.params.push(p);
        return p;
      },
    };
  }

  /** Optimizer steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  /**
   * The named parameters with shapes; `values()` copies.
   *
   * Usage: `for (const p of model.parameters()) console.log(p.name, p.shape);`
   */
  parameters(): ParameterInfo[] {
    return this.params.map((p) => ({
      name: p.name,
      shape: p.shape,
      size: p.value.size,
      get trainable() {
        return p.trainable;
      },
      values: () => p.value.toFloat32Array(),
    }));
  }

  /**
   * Copies of all parameter values by name.
   *
   * Usage: `const before = model.getWeights();`
   */
  getWeights(): Map<string, Float32Array> {
    return new Map(this.params.map((p) => [p.name, p.value.toFloat32Array()]));
  }

  /**
   * Overwrites parameter values by name; every name must exist and every size must match.
   *
   * Usage: `model.setWeights(other.getWeights());`
   */
  setWeights(weights: ReadonlyMap<string, Float32Array>): void {
    for (const [name, values] of weights) {
      const p = this.params.find((q) => q.name === name);
      if (!p) throw new RangeError(`setWeights: the model has no parameter '${name}'`);
      if (values.length !== p.value.size) throw new RangeError(`setWeights: '${name}' has ${p.value.size} values (shape ${formatShape(p.shape)}), got ${values.length}`);
    }
    for (const [name, values] of weights) this.params.find((q) => q.name === name)!.value.data().set(values);
  }

  /**
   * A Keras-style table of layers, output shapes and parameter counts; returned and, unless
   * `print` is false, printed.
   *
   * Usage: `model.summary();`
   */
  summary(print: boolean | ((line: string) => void) = true): string {
    const rows = this.layers.map((layer, i) => [
      `${layer.name} (${layer.kind})`,
      formatShape([null as unknown as number, ...this.layerShapes[i]!]).replace('[, ', '[None, ').replace('[]', '[None]'),
      String(layer.parameters().reduce((s, p) => s + p.value.size, 0)),
    ]);
    const header = ['Layer (type)', 'Output shape', 'Param #'];
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)) + 2);
    const line = (cells: string[]) => cells.map((cell, c) => cell.padEnd(widths[c]!)).join('').trimEnd();
    const total = this.params.reduce((s, p) => s + p.value.size, 0);
    const trainable = this.params.filter((p) => p.trainable).reduce((s, p) => s + p.value.size, 0);
    const rule = '─'.repeat(widths.reduce((a, b) => a + b, 0));
    const text = [
      `Model: "${this.name}"`, rule, line(header), rule, ...rows.map(line), rule,
      `Total params: ${total.toLocaleString('en-US')}`,
      `Trainable params: ${trainable.toLocaleString('en-US')}`,
      `Non-trainable params: ${(total - trainable).toLocaleString('en-US')}`,
      `Input shape: ${formatShape(this.inputShape)}`, rule,
    ].join('\n');
    if (print === true) console.log(text);
    else if (typeof print === 'function') for (const l of text.split('\n')) print(l);
    return text;
  }

  /** Runs `work` after every earlier step of this model has finished (steps never interleave). */
  private exclusive<T>(work: () => Observable<T>): Observable<T> {
    return new Observable<T>((subscriber) => {
      let release!: () => void;
      const previous = this.queue;
      this.queue = new Promise<void>((resolve) => (release = resolve));
      let inner: Subscription | null = null;
      let cancelled = false;
      previous
        .then(() => yieldIfBusy(this.timeSliceMs))
        .then(() => {
          if (cancelled) return release();
          inner = defer(work).pipe(finalize(release)).subscribe(subscriber);
        })
        .catch((error: unknown) => {
          release();
          subscriber.error(error);
        });
      return () => {
        cancelled = true;
        inner?.unsubscribe();
      };
    });
  }

  private beginStep(batch: Batch, training: boolean, checkNumerics: boolean): { step: StepContext; x: Tensor } {
    if (this.disposed) throw new Error(`${this.name}: the model was disposed`);
    const first = this.layers[0]!;
    const features = this.readsFeatures ? tensorColumn(batch, 'features') : placeholderColumn(batch.numRows, this.inputShape, this.inputDType);
    if (features.shape.length !== this.inputShape.length || features.shape.some((d, i) => d !== this.inputShape[i])) {
      throw new ShapeError(`${first.name} (${first.kind})`, `batch features have shape ${formatShape(features.shape)} per example, but the model was built for input shape ${formatShape(this.inputShape)}`);
    }
    if (features.dtype !== this.inputDType) {
      throw new TypeError(`${first.name} (${first.kind}): batch features are ${features.dtype}, the model takes ${this.inputDType}`);
    }
    if (features.rows === 0) throw new RangeError(`${this.name}: empty batch (0 rows)`);
    if (checkNumerics && features.values instanceof Float32Array) assertFinite(features.values, sizeOf(this.inputShape), "batch column 'features'");
    const arena = this.freeArenas.pop() ?? this.engine.heap.arena();
    const step = new StepContext(this.engine, arena, features.rows, training, this.rng, this.steps);
    const copyIn = (values: Float32Array | Int32Array, shape: Shape): Tensor => {
      const t = step.alloc([features.rows, ...shape], values instanceof Int32Array ? 'int32' : 'float32');
      if (values instanceof Int32Array) this.engine.heap.i32.set(values, t.ptr >> 2);
      else this.engine.heap.f32.set(values, t.ptr >> 2);
      return t;
    };
    try {
      const x = copyIn(features.values, this.inputShape);
      const labels = labelColumn(batch);
      if (labels) step.labels = copyIn(labels.values, labels.shape);
      if (batch.schema.fields.some((f) => f.name === 'targets')) {
        const targets = floatColumn(batch, 'targets');
        if (checkNumerics) assertFinite(targets.values, sizeOf(targets.shape), "batch column 'targets'");
        step.targets = copyIn(targets.values, targets.shape);
      }
      for (const name of this.sideInputs) {
        const column = tensorColumn(batch, name);
        step.columns.set(name, copyIn(column.values, column.shape));
      }
      return { step, x };
    } catch (error) {
      this.endStep(step);
      throw error;
    }
  }

  private endStep(step: StepContext): void {
    step.arena.reset();
    this.freeArenas.push(step.arena);
  }

  /** Regularisation: adds each penalty to the batch loss and its gradient to the parameter's. */
  private regularize(step: StepContext): void {
    for (const p of this.params) {
      if (!p.regularizer) continue;
      const values = p.value.data();
      step.loss += p.regularizer.penalty(values);
      p.regularizer.addGradient(values, p.grad.data());
    }
  }

  private trainStep(batch: Batch, fit: Required<Pick<FitOptions, 'loss' | 'optimizer'>> & FitOptions, afterStep: (step: StepContext) => StepReport): Observable<StepReport> {
    const { step, x } = this.beginStep(batch, true, fit.checkNumerics ?? false);
    const gradients: OperatorFunction<ParameterGradients, ParameterGradients> = composeOperators(fit.gradientOperators ?? []);
    let output: Float32Array | null = null;
    return of<ForwardFlow>({ step, x }).pipe(
      this.forwardPipe,
      tap((flow) => {
        if (fit.outputs) output = flow.x.toFloat32Array();
      }),
      lossOperator(fit.loss),
      this.backwardPipe,
      map((): ParameterGradients => {
        this.regularize(step);
        return { step, parameters: this.params };
      }),
      gradients,
      map((g) => {
        const watchGradients = this.gradientReports.observed;
        const previous = this.updateReports.observed ? this.params.map((p) => p.value.toFloat32Array()) : null;
        const gradientNorms = watchGradients ? this.params.map((p) => l2(p.grad.data())) : null;
        fit.optimizer.apply(g.parameters, this.engine);
        this.steps++;
        if (gradientNorms) {
          this.gradientReports.next({
            step: this.steps, globalNorm: Math.hypot(...gradientNorms),
            norms: Object.fromEntries(this.params.map((p, i) => [p.name, gradientNorms[i]!])),
          });
        }
        if (previous) {
          this.updateReports.next({
            step: this.steps,
            norms: Object.fromEntries(this.params.map((p, i) => [p.name, l2(p.value.data(), previous[i]!)])),
            weightNorms: Object.fromEntries(this.params.map((p) => [p.name, l2(p.value.data())])),
          });
        }
        const report = afterStep(step);
        if (output) report.output = output;
        return report;
      }),
      finalize(() => this.endStep(step)),
    );
  }

  /**
   * Online training as an operator: one optimizer step per incoming batch, one {@link StepReport}
   * out per step. Batches are processed strictly one after another, so the weights after N
   * batches equal those of a plain loop over the same batches. A push source that outruns the
   * model is buffered by `concatMap`; give it a backpressure policy (src/streams) or use
   * {@link fitFrom} for pull sources.
   *
   * Usage: `batches$.pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam(), metrics: ['accuracy'] })).subscribe(console.log)`
   */
  fit(options: FitOptions): OperatorFunction<Batch, StepReport> {
    return (source) =>
      defer(() => {
        const report = this.startFit(options);
        return source.pipe(concatMap((batch) => this.exclusive(() => this.trainStep(batch, options, report))));
      });
  }

  /**
   * Online training from a pull source (async iterable: an Arrow IPC reader, a Node readable
   * stream in object mode, a generator): the next batch is pulled only after the previous step is
   * applied, so the source is read at the engine's pace and nothing queues up. Unsubscribing stops
   * pulling and calls the iterator's `return()`.
   *
   * Usage: `model.fitFrom(RecordBatchReader.from(stream), { loss, optimizer }).subscribe(console.log)`
   */
  fitFrom(source: AsyncIterable<Batch> | Iterable<Batch>, options: FitOptions): Observable<StepReport> {
    return new Observable<StepReport>((subscriber) => {
      const report = this.startFit(options);
      const iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
      let current: Subscription | null = null;
      let stopped = false;
      const pull = async (): Promise<void> => {
        let next: IteratorResult<Batch>;
        try {
          next = await iterator.next();
        } catch (error) {
          return subscriber.error(error);
        }
        if (stopped) return;
        if (next.done) return subscriber.complete();
        current = this.exclusive(() => this.trainStep(next.value, options, report)).subscribe({
          next: (r) => subscriber.next(r),
          error: (e: unknown) => subscriber.error(e),
          complete: () => void pull(),
        });
      };
      void pull();
      return () => {
        stopped = true;
        current?.unsubscribe();
        void Promise.resolve(iterator.return?.()).catch(() => {});
      };
    });
  }

  /**
   * True when some layer's forward differs between training and inference (dropout, augmentation,
   * batch statistics): then a training step's output is not a prediction.
   */
  get trainingDiffers(): boolean {
    return this.layers.some((l) => l.trainingDiffers === true);
  }

  /** The optimizer given to the latest `fit`/`fitFrom`/`train` (null before any): its state is part of a checkpoint. */
  get optimizer(): Optimizer | null {
    return this.currentOptimizer;
  }

  /** The loss given to the latest `fit`/`fitFrom`/`train`, or null. */
  get loss(): Loss | null {
    return this.lastLoss;
  }

  /** Restores the step counter (checkpoint loading). */
  restoreStepCount(steps: number): void {
    if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`restoreStepCount: steps must be a non-negative integer, got ${steps}`);
    this.steps = steps;
  }

  /**
   * Makes a restored optimizer this model's current one (checkpoint loading): a save before any fit
   * keeps its slots, and `dispose` frees them even if it never trains.
   */
  adoptOptimizer(optimizer: Optimizer): void {
    this.currentOptimizer = optimizer;
    this.optimizers.add(optimizer);
  }

  private startFit(options: FitOptions): (step: StepContext) => StepReport {
    this.lastLoss = options.loss;
    this.currentOptimizer = options.optimizer;
    this.optimizers.add(options.optimizer);
    const wantAccuracy = options.metrics?.includes('accuracy') ?? false;
    let examples = 0;
    return (step: StepContext): StepReport => {
      examples += step.rows;
      const r: StepReport = { step: this.steps, loss: step.loss, examples, batchSize: step.rows };
      if (wantAccuracy && step.accuracy !== null) r.accuracy = step.accuracy;
      return r;
    };
  }

  private inferenceStep<T>(batch: Batch, checkNumerics: boolean, finish: (output: Tensor, step: StepContext) => T): Observable<T> {
    const { step, x } = this.beginStep(batch, false, checkNumerics);
    return of<ForwardFlow>({ step, x }).pipe(
      this.forwardPipe,
      map((flow) => finish(flow.x, step)),
      finalize(() => this.endStep(step)),
    );
  }

  /**
   * Inference as an operator: each input batch becomes an Arrow batch with an `output` column
   * (a copy, safe to keep), a `prediction` column (argmax) for vector outputs, and the input's
   * other columns (labels, keys) passed through.
   *
   * Usage: `batches$.pipe(model.predict()).subscribe((out) => out.getChild('prediction'))`
   */
  predict(options: InferenceOptions = {}): OperatorFunction<Batch, Batch> {
    const argmax = this.outputShape.length === 1 && this.outputShape[0]! > 1;
    const onWeights = this.onWeights<Batch>(options.weights, 'predict');
    return concatMap((batch) =>
      this.exclusive(
        onWeights(() =>
          this.inferenceStep(batch, options.checkNumerics ?? false, (output) => {
            const passThrough = batch.schema.fields.filter((f) => f.name !== 'features').map((f) => ({ field: f, data: batch.getChild(f.name)!.data[0]! }));
            return outputBatch(output.toFloat32Array(), this.outputShape, { argmax, passThrough });
          }),
        ),
      ),
    );
  }

  /**
   * Runs `work` on the weights asked for: as they are, or with the optimizer's moving averages
   * swapped in for its duration (inside the model's exclusive section, so a training step never
   * sees them, and swapped back even if the work fails).
   */
  private onWeights<T>(weights: 'current' | 'average' | undefined, caller: string): (work: () => Observable<T>) => () => Observable<T> {
    if (weights === undefined || weights === 'current') return (work) => work;
    if (weights !== 'average') throw new RangeError(`${this.name}.${caller}: weights must be 'current' or 'average', got ${JSON.stringify(weights)}`);
    const optimizer = this.averagingOptimizer(caller);
    return (work) => () =>
      defer(() => {
        optimizer.swapAverages!(this.params);
        return work().pipe(finalize(() => optimizer.swapAverages!(this.params)));
      });
  }

  private averagingOptimizer(caller: string): Optimizer {
    const optimizer = this.currentOptimizer;
    if (!optimizer || !((optimizer.emaMomentum ?? 0) > 0) || !optimizer.swapAverages) {
      const why = optimizer ? `its optimizer '${optimizer.name}' keeps none` : 'it has not trained yet';
      throw new Error(`${this.name}.${caller}: the averaged weights need an optimizer created with emaMomentum (e.g. adam({ emaMomentum: 0.99 })); ${why}`);
    }
    return optimizer;
  }

  /**
   * Replaces the weights with the optimizer's moving averages (Keras's finalisation of `use_ema`),
   * e.g. before saving a model for serving. Waits for any step in flight.
   *
   * Usage: `await model.applyAverageWeights(); await model.save('runs/serving');`
   */
  async applyAverageWeights(): Promise<void> {
    const optimizer = this.averagingOptimizer('applyAverageWeights');
    await lastValueFrom(
      this.exclusive(() =>
        defer(() => {
          optimizer.swapAverages!(this.params);
          // The average stays the average: copy the (now current) averaged values back into it.
          const state = optimizer.state();
          for (const p of this.params) state.get(p.name)?.['ema']?.data().set(p.value.data());
          return of(undefined);
        }),
      ),
    );
  }

  /**
   * Mean loss (and accuracy) over batches, weighted by rows, without training. The loss defaults
   * to the last one given to `fit`, else softmax cross-entropy for Int32 labels or MSE for targets.
   *
   * Usage: `const { loss, accuracy } = await model.evaluate(from(testBatches));`
   */
  evaluate(batches: ObservableInput<Batch>, options: InferenceOptions & { loss?: Loss } = {}): Promise<EvaluationResult> {
    return new Promise<EvaluationResult>((resolve, reject) => {
      const onWeights = this.onWeights<void>(options.weights, 'evaluate');
      // Means over batches are weighted by each loss's own count (rows, or positions of a sequence).
      let lossSum = 0;
      let correctSum = 0;
      let count = 0;
      let examples = 0;
      let hasAccuracy = true;
      from(batches)
        .pipe(
          concatMap((batch) =>
            this.exclusive(
              onWeights(() =>
                this.inferenceStep(batch, options.checkNumerics ?? false, (output, step) => {
                  const loss = options.loss ?? this.lastLoss ?? (step.targets ? meanSquaredError() : softmaxCrossEntropy());
                  const result = loss.compute(output, step, false);
                  lossSum += result.loss * result.count;
                  count += result.count;
                  examples += step.rows;
                  if (result.accuracy === null) hasAccuracy = false;
                  else correctSum += result.accuracy * result.count;
                }),
              ),
            ),
          ),
        )
        .subscribe({
          error: reject,
          complete: () => {
            if (examples === 0) return reject(new RangeError(`${this.name}.evaluate: no batches`));
            resolve({ loss: count > 0 ? lossSum / count : 0, ...(hasAccuracy ? { accuracy: count > 0 ? correctSum / count : 0 } : {}), examples });
          },
        });
    });
  }

  /**
   * Keras-style epochs over a finite dataset held in typed arrays: shuffles (seeded), streams it
   * as Arrow batches through {@link fit}, and evaluates the validation set after each epoch.
   * Emits a progress event per step and one per epoch.
   *
   * Usage: `model.train(data, { epochs: 5, batchSize: 64, loss: softmaxCrossEntropy(), optimizer: adam(), validation: test }).subscribe(log)`
   */
  train(data: BatchArrays, options: TrainOptions): Observable<TrainProgress> {
    const { epochs, batchSize } = options;
    if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError(`train: epochs must be a positive integer, got ${epochs}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`train: batchSize must be a positive integer, got ${batchSize}`);
    const width = sizeOf(data.shape);
    const rows = data.features.length / width;
    if (!Number.isInteger(rows) || rows === 0) throw new RangeError(`train: ${data.features.length} feature values do not make whole rows of shape ${formatShape(data.shape)}`);
    const batches = Math.ceil(rows / batchSize);
    const wantAccuracy = options.metrics?.includes('accuracy') ?? false;
    return defer(() => {
      // Seeded by the model's seed and the steps it has trained: a second call shuffles anew (as Keras's
      // fit does) while the same seed still repeats the whole sequence; the first call is unchanged (steps 0).
      const shuffler = new Random((this.seed ^ 0x5eed ^ Math.imul(this.steps, 0x9e3779b9)) >>> 0);
      const order = new Int32Array(rows).map((_, i) => i);
      return range(0, epochs).pipe(
        concatMap((epoch) => {
          if (options.shuffle ?? true) shuffler.shuffle(order);
          const started = performance.now();
          let lossSum = 0;
          let correct = 0;
          let seen = 0;
          let stepsInEpoch = 0;
          // Indices go into the stream, batches are made lazily: one epoch is never copied whole.
          const steps = range(0, batches).pipe(
            concatMap((b) => defer(() => of(gatherBatch(data, order, b * batchSize, Math.min(batchSize, rows - b * batchSize)))).pipe(this.fit(options))),
            map((report): TrainProgress => {
              lossSum += report.loss * report.batchSize;
              seen += report.batchSize;
              stepsInEpoch++;
              if (report.accuracy !== undefined) correct += report.accuracy * report.batchSize;
              return {
                kind: 'step', ...report, examples: seen, epoch: epoch + 1, epochs, batch: stepsInEpoch, batches,
                meanLoss: lossSum / seen, ...(wantAccuracy && report.accuracy !== undefined ? { meanAccuracy: correct / seen } : {}),
              };
            }),
          );
          const summary = defer(async (): Promise<TrainProgress> => {
            const seconds = (performance.now() - started) / 1000;
            const validation = options.validation
              ? await this.evaluate(batchesFromArraysLazy(options.validation, 256), { loss: options.loss, ...(options.validationWeights ? { weights: options.validationWeights } : {}) })
              : undefined;
            return {
              kind: 'epoch', epoch: epoch + 1, epochs, loss: lossSum / seen, seconds, examplesPerSecond: seen / seconds,
              ...(wantAccuracy && seen > 0 ? { accuracy: correct / seen } : {}),
              ...(validation ? { validation } : {}),
            };
          });
          return concat(steps, summary);
        }),
      );
    });
  }

  /**
   * Frees the model's parameters, gradients, arenas and its optimizers' state in the heap. The model cannot be used afterwards.
   *
   * Usage: `model.dispose();`
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.params) {
      this.engine.heap.free(p.value.ptr);
      this.engine.heap.free(p.grad.ptr);
    }
    for (const a of this.freeArenas) a.dispose();
    this.freeArenas.length = 0;
    for (const optimizer of this.optimizers) optimizer.release(this.params, this.engine);
    this.optimizers.clear();
    this.gradientReports.complete();
    this.updateReports.complete();
  }

  /**
   * Saves a checkpoint (weights, optimizer state, step count, RNG, stream offsets); see `saveModel` in src/checkpoint.ts.
   *
   * Usage: `await model.save('runs/mnist', { streamOffsets: { partition0: 1234 } });`
   */
  async save(path: string, extra?: import('./checkpoint.ts').SaveExtra): Promise<import('./checkpoint.ts').SavedCheckpoint> {
    // Imported on use: checkpoint.ts imports this module, and a lazy import keeps the cycle out of module initialisation.
    return (await import('./checkpoint.ts')).saveModel(this, path, extra);
  }

  /** Trainable parameters (internal: for optimizers and checkpoints). */
  get parameterTensors(): readonly Parameter[] {
    return this.params;
  }
}

function* batchesFromArraysLazy(data: BatchArrays, batchSize: number): Generator<Batch> {
  const rows = data.features.length / sizeOf(data.shape);
  for (let start = 0; start < rows; start += batchSize) yield gatherBatch(data, null, start, Math.min(batchSize, rows - start));
}

/** ‖a − b‖₂ (‖a‖₂ without b), summed in float64. */
function l2(a: Float32Array, b?: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = b ? a[i]! - b[i]! : a[i]!;
    sum += d * d;
  }
  return Math.sqrt(sum);
}

function assertFinite(values: Float32Array, width: number, where: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new RangeError(`checkNumerics: ${where} has ${values[i]} at row ${Math.floor(i / width)}, element ${i % width}`);
    }
  }
}

/**
 * Builds a model from layers applied in order, for a known per-example input shape; shape errors
 * surface here, naming the layer and both shapes.
 *
 * Usage: `const model = sequential([dense(128), relu(), dense(10)], { inputShape: [784], seed: 1 });`
 */
export function sequential(layers: readonly Layer[], options: SequentialOptions): Model {
  return new Model(layers, options.inputShape ?? [], options.seed ?? 0, options.engine ?? defaultEngine(), options.name ?? 'sequential', options.timeSliceMs);
}

