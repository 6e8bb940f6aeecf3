import { Observable, Subject, type ObservableInput, type OperatorFunction } from 'rxjs';
import type { Batch, BatchArrays } from './batch.ts';
import { defaultEngine, type Engine } from './engine.ts';
import { evaluateBatches, averagingOptimizer, predictOperator, type EvaluationResult, type InferenceHost, type InferenceOptions } from './inference.ts';
import type { Initializer } from './initializers.ts';
import { setTrainable, trainableState } from './freezing.ts';
import { buildChildren, type BuildContext, type Layer, type Parameter } from './layer.ts';
import type { LayerSelector } from './layer-match.ts';
import { meanSquaredError, softmaxCrossEntropy, type Loss } from './losses.ts';
import type { Optimizer } from './optimizers.ts';
import { Random } from './random.ts';
import type { Regularizer } from './regularizers.ts';
import { StepRunner } from './step-runner.ts';
import { trainEpochs, type TrainOptions, type TrainProgress } from './train-epochs.ts';
import { computeGradients, type ComputedGradients, type ComputeGradientsOptions } from './compute-gradients.ts';
import {
  fitFromSource, fitOperator, TrainingSession,
  type FitOptions, type GradientReport, type StepReport, type TrainingHost, type UpdateReport,
} from './training.ts';
import { formatShape, sizeOf, Tensor, type DType, type Shape } from './tensor.ts';

// The training and inference types, also importable from here (where they lived before the split).
export type { FitOptions, StepReport, GradientReport, UpdateReport } from './training.ts';
export type { ComputeGradientsOptions, ComputedGradients } from './compute-gradients.ts';
export type { EvaluationResult, InferenceOptions } from './inference.ts';
export type { TrainOptions, TrainProgress } from './train-epochs.ts';

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
  /**
   * Shares weights with a built model (transfer learning): each parameter whose name and shape match one of
   * that model's uses its weight memory instead of new, initialised memory (gradients and optimizer state
   * stay per model). Training either model changes both; dispose this one before that one.
   */
  shareWeightsFrom?: Model;
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

/** The model's internals as its training, inference and checkpoint code see them (not part of the package's API). */
export type ModelHost = TrainingHost & InferenceHost & { readonly seed: number; optimizer: Optimizer | null; loss: Loss | null };

let hostOf: (model: Model) => ModelHost;

/**
 * The internals of `model` for the library's own modules (checkpoints, the tests' fixtures): its
 * parameter tensors, its step counter, its current optimizer. Not exported by the package.
 *
 * Usage: `modelHost(model).steps = manifest.stepCount;`
 */
export function modelHost(model: Model): ModelHost {
  return hostOf(model);
}

/**
 * A model: layers built for an input shape, their parameters in the shared heap, and the
 * operators that run batches through them. Training, evaluation and prediction are Observables;
 * steps of concurrent subscriptions are serialised, so every step sees consistent weights.
 */
export class Model {
  static {
    hostOf = (model) => model.host;
  }
  readonly outputShape: Shape;
  readonly rng: Random;
  /** Element type of the `features` column the model takes (the first layer's `inputDType`). */
  readonly inputDType: DType;
  /**
   * The step runner (src/step-runner.ts): the lower-level API behind fit and predict (batch → step
   * context, forward, backward, arena pool, the model's exclusive section), for pipeline stages.
   */
  readonly runner: StepRunner;
  private readonly params: Parameter[] = [];
  private readonly layerShapes: Shape[];
  private readonly host: ModelHost;
  private readonly gradientReports = new Subject<GradientReport>();
  private readonly updateReports = new Subject<UpdateReport>();
  /**
   * Per-update gradient norms, for dashboards and alerts (a hot Observable: subscribe any time; the
   * norms are computed only while someone listens).
   *
   * Usage: `model.gradients$.subscribe(({ step, globalNorm }) => metrics.gauge('grad_norm', globalNorm))`
   */
  readonly gradients$: Observable<GradientReport> = this.gradientReports.asObservable();
  /**
   * Per-update weight-change norms (hot; computed only while someone listens: it copies the weights before each update).
   *
   * Usage: `model.updates$.subscribe(({ norms }) => console.log(norms))`
   */
  readonly updates$: Observable<UpdateReport> = this.updateReports.asObservable();
  /** Every optimizer that trained this model: their state is freed with the model. */
  private readonly optimizers = new Set<Optimizer>();
  private disposed = false;
  /** Parameters whose weight memory belongs to the model shared from (not freed by this one). */
  private readonly borrowed = new Set<Parameter>();
  /** Live models that share this one's weights: it cannot be disposed before them. */
  private readonly sharers = new Set<Model>();

  constructor(
    readonly layers: readonly Layer[], readonly inputShape: Shape, readonly seed: number, readonly engine: Engine, readonly name: string,
    /** See {@link SequentialOptions.timeSliceMs}. */
    readonly timeSliceMs = 4,
    /** See {@link SequentialOptions.shareWeightsFrom}. */
    private readonly sharedFrom: Model | null = null,
  ) {
    if (sharedFrom && (sharedFrom.disposed || sharedFrom.engine !== engine)) {
      throw new RangeError(`sequential: shareWeightsFrom '${sharedFrom.name}' must be a live model on the same engine`);
    }
    if (!(timeSliceMs >= 0)) throw new RangeError(`sequential: timeSliceMs must be ≥ 0, got ${timeSliceMs}`);
    if (layers.length === 0) throw new RangeError('sequential: a model needs at least one layer');
    if (!inputShape.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`sequential: inputShape ${formatShape(inputShape)} must be positive integers`);
    this.rng = new Random(seed);
    this.layerShapes = buildChildren(layers, inputShape, this.buildContext());
    if (this.borrowed.size > 0) sharedFrom!.sharers.add(this);
    this.outputShape = this.layerShapes.at(-1)!;
    this.runner = new StepRunner(layers, { engine, rng: this.rng, name, inputShape, timeSliceMs });
    this.inputDType = this.runner.inputDType;
    const optimizers = this.optimizers;
    this.host = {
      name, engine, seed, runner: this.runner, parameters: this.params, outputShape: this.outputShape,
      gradientReports: this.gradientReports, updateReports: this.updateReports,
      steps: 0, optimizer: null, loss: null,
      adopt(optimizer: Optimizer, loss: Loss | null) {
        this.optimizer = optimizer;
        if (loss) this.loss = loss;
        optimizers.add(optimizer);
      },
    };
  }

  /** The root BuildContext: parameters arrive fully named (`dense_1/kernel`) and live in the persistent region. */
  private buildContext(): BuildContext {
    const engine = this.engine;
    return {
      engine,
      rng: this.rng,
      addParameter: (name: string, shape: Shape, init: Initializer, fans: { fanIn: number; fanOut: number }, regularizer?: Regularizer | null) => {
        const bytes = sizeOf(shape) * 4;
        const shared = this.sharedFrom?.params.find((q) => q.name === name);
        if (shared && (shared.shape.length !== shape.length || shared.shape.some((d, i) => d !== shape[i]))) {
          throw new RangeError(`sequential: '${name}' has shape ${formatShape(shape)}, but in shareWeightsFrom '${this.sharedFrom!.name}' ${formatShape(shared.shape)}`);
        }
        const value = shared ? shared.value : new Tensor(engine.heap, engine.heap.alloc(bytes), shape);
        const grad = new Tensor(engine.heap, engine.heap.alloc(bytes), shape);
        if (!shared) init.fill(value.data(), fans, this.rng);
        grad.data().fill(0);
        const p: Parameter = { name, shape, value, grad, regularizer: regularizer ?? null, trainable: true };
        if (shared) this.borrowed.add(p);
        this.params.push(p);
        return p;
      },
    };
  }

  /** Training steps taken so far (batches whose gradients went into the reverse stream, whatever their outcome). */
  get stepCount(): number {
    return this.host.steps;
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
   * Freezes the layers chosen by name, glob, RegExp or predicate: the optimizer leaves their parameters as
   * they are, their backward skips the gradient work for them, and the reverse stream stops at the first
   * layer that still learns. A selector matching no layer is an error naming it. Returns the layers' names.
   *
   * Usage: `model.freeze('conv*'); model.freeze((layer, i) => i < 6);`
   */
  freeze(selector: LayerSelector): string[] {
    return setTrainable(this.layers, this.params, selector, false, `${this.name}.freeze`);
  }

  /**
   * Makes the chosen layers trainable again (moving statistics and pruning masks stay frozen).
   *
   * Usage: `model.unfreeze('conv2d_2');`
   */
  unfreeze(selector: LayerSelector): string[] {
    return setTrainable(this.layers, this.params, selector, true, `${this.name}.unfreeze`);
  }

  /**
   * A Keras-style table of layers, output shapes, parameter counts and whether each layer trains
   * ('yes', 'frozen', 'partly'); returned and, unless
   * `print` is false, printed.
   *
   * Usage: `model.summary();`
   */
  summary(print: boolean | ((line: string) => void) = true): string {
    const rows = this.layers.map((layer, i) => [
      `${layer.name} (${layer.kind})`,
      formatShape([null as unknown as number, ...this.layerShapes[i]!]).replace('[, ', '[None, ').replace('[]', '[None]'),
      String(layer.parameters().reduce((s, p) => s + p.value.size, 0)),
      trainableState(this.params, layer),
    ]);
    const header = ['Layer (type)', 'Output shape', 'Param #', 'Trainable'];
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

  /**
   * True when some layer's forward differs between training and inference (dropout, augmentation,
   * batch statistics): then a training step's output is not a prediction.
   */
  get trainingDiffers(): boolean {
    return this.layers.some((l) => l.trainingDiffers === true);
  }

  /** The optimizer given to the latest `fit`/`fitFrom`/`train` (null before any): its state is part of a checkpoint. */
  get optimizer(): Optimizer | null {
    return this.host.optimizer;
  }

  /** The loss given to the latest `fit`/`fitFrom`/`train`, or null. */
  get loss(): Loss | null {
    return this.host.loss;
  }

  /**
   * Online training as an operator: one training step per incoming batch, one {@link StepReport}
   * out per step. The gradient operators are composed once per subscription over the long-lived
   * reverse stream (src/reverse-stream.ts), so `skip`, `filter`, `scan` and `accumulateGradients`
   * work across steps. Batches are processed strictly one after another, so the weights after N
   * applied updates equal those of a plain loop. A push source that outruns the model is buffered
   * without bound (`serialMap`, concatMap semantics); give it a backpressure policy (src/streams) or use {@link fitFrom} for pull sources.
   *
   * Usage: `batches$.pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam(), metrics: ['accuracy'] })).subscribe(console.log)`
   */
  fit(options: FitOptions): OperatorFunction<Batch, StepReport> {
    return fitOperator(this.host, options);
  }

  /**
   * Online training from a pull source (async iterable: an Arrow IPC reader, a Node readable
   * stream in object mode, a generator): the next batch is pulled only after the previous step's
   * report, so the source is read at the engine's pace and nothing queues up. Unsubscribing stops
   * pulling and calls the iterator's `return()`.
   *
   * Usage: `model.fitFrom(RecordBatchReader.from(stream), { loss, optimizer }).subscribe(console.log)`
   */
  fitFrom(source: AsyncIterable<Batch> | Iterable<Batch>, options: FitOptions): Observable<StepReport> {
    return fitFromSource(this.host, source, options);
  }

  /**
   * A training session: the long-lived reverse stream of `fit` for callers that drive the steps
   * themselves (custom loops, pipeline stages: `session.forward(batch)` keeps the step open for a
   * later `pass.backward(...)`). Close it to tear the gradient operators down.
   *
   * Usage: `const s = model.trainingSession({ loss, optimizer }); await s.step(batch); s.close();`
   */
  trainingSession(options: FitOptions): TrainingSession {
    return new TrainingSession(this.host, options);
  }

  /**
   * Each parameter's gradient for one batch (copies, by name) and the loss, without touching the
   * weights, the optimizer or the step count. The forward runs as in inference (no dropout, batch
   * norm on its moving statistics) unless `training: true`. Regularisation penalties are included,
   * as a training step would see them.
   *
   * Usage: `const { loss, gradients } = await model.computeGradients(batch, { loss: softmaxCrossEntropy() });`
   */
  computeGradients(batch: Batch, options: ComputeGradientsOptions = {}): Promise<ComputedGradients> {
    const loss = options.loss ?? this.host.loss ?? (batch.schema.fields.some((f) => f.name === 'targets') ? meanSquaredError() : softmaxCrossEntropy());
    return computeGradients(this.host, batch, loss, options.training ?? false);
  }

  /**
   * Inference as an operator: each input batch becomes an Arrow batch with an `output` column
   * (a copy, safe to keep), a `prediction` column (argmax) for vector outputs, and the input's
   * other columns (labels, keys) passed through.
   *
   * Usage: `batches$.pipe(model.predict()).subscribe((out) => out.getChild('prediction'))`
   */
  predict(options: InferenceOptions = {}): OperatorFunction<Batch, Batch> {
    return predictOperator(this.host, options);
  }

  /**
   * Mean loss (and accuracy) over batches, weighted by rows, without training. The loss defaults
   * to the last one given to `fit`, else softmax cross-entropy for Int32 labels or MSE for targets.
   *
   * Usage: `const { loss, accuracy } = await model.evaluate(from(testBatches));`
   */
  evaluate(batches: ObservableInput<Batch>, options: InferenceOptions & { loss?: Loss } = {}): Promise<EvaluationResult> {
    return evaluateBatches(this.host, batches, options);
  }

  /**
   * Replaces the weights with the optimizer's moving averages (Keras's finalisation of `use_ema`),
   * e.g. before saving a model for serving. Waits for any step in flight.
   *
   * Usage: `await model.applyAverageWeights(); await saveModel(model, 'runs/serving');`
   */
  async applyAverageWeights(): Promise<void> {
    const optimizer = averagingOptimizer(this.host, 'applyAverageWeights');
    await this.runner.exclusive(() => {
      optimizer.swapAverages!(this.params);
      // The average stays the average: copy the (now current) averaged values back into it.
      const state = optimizer.state();
      for (const p of this.params) state.get(p.name)?.['ema']?.data().set(p.value.data());
    });
  }

  /**
   * Keras-style epochs over a finite dataset held in typed arrays: shuffles (seeded), streams it
   * as Arrow batches through one training session, and evaluates the validation set after each
   * epoch. Emits a progress event per step and one per epoch.
   *
   * Usage: `model.train(data, { epochs: 5, batchSize: 64, loss: softmaxCrossEntropy(), optimizer: adam(), validation: test }).subscribe(log)`
   */
  train(data: BatchArrays, options: TrainOptions): Observable<TrainProgress> {
    return trainEpochs(this.host, (batches, o) => this.evaluate(batches, o), data, options);
  }

  /**
   * Frees the model's parameters, gradients, arenas and its optimizers' state in the heap. The model cannot be used afterwards.
   *
   * Usage: `model.dispose();`
   */
  dispose(): void {
    if (this.disposed) return;
    if (this.sharers.size > 0) {
      throw new Error(`${this.name}.dispose: ${[...this.sharers].map((m) => `'${m.name}'`).join(', ')} share its weights; dispose them first`);
    }
    this.disposed = true;
    this.sharedFrom?.sharers.delete(this);
    for (const p of this.params) {
      if (!this.borrowed.has(p)) this.engine.heap.free(p.value.ptr);
      this.engine.heap.free(p.grad.ptr);
    }
    this.runner.dispose();
    for (const optimizer of this.optimizers) optimizer.release(this.params, this.engine);
    this.optimizers.clear();
    this.gradientReports.complete();
    this.updateReports.complete();
  }
}

/**
 * Builds a model from layers applied in order, for a known per-example input shape; shape errors
 * surface here, naming the layer and both shapes.
 *
 * Usage: `const model = sequential([dense(128), relu(), dense(10)], { inputShape: [784], seed: 1 });`
 */
export function sequential(layers: readonly Layer[], options: SequentialOptions): Model {
  return new Model(
    layers, options.inputShape ?? [], options.seed ?? 0, options.engine ?? options.shareWeightsFrom?.engine ?? defaultEngine(), options.name ?? 'sequential',
    options.timeSliceMs, options.shareWeightsFrom ?? null,
  );
}
