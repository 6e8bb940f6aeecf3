import { defer, finalize, type Observable, type OperatorFunction, type Subject } from 'rxjs';
import type { Batch } from './batch.ts';
import type { Engine } from './engine.ts';
import type { Parameter, StepContext } from './layer.ts';
import type { Loss } from './losses.ts';
import type { Optimizer } from './optimizers.ts';
import {
  firstNonFinite, firstNonFiniteElement, ParameterGradients, ReverseStream,
  type GradientOperator, type NonFinitePolicy, type UpdateOutcome,
} from './reverse-stream.ts';
import { serialMap } from './serial-map.ts';
import type { StepRunner } from './step-runner.ts';
import { pullThrough } from './streams/pull.ts';
import type { Tensor } from './tensor.ts';

/** Options of {@link Model.fit}, {@link Model.fitFrom}, {@link Model.trainingSession}. */
export interface FitOptions {
  loss: Loss;
  optimizer: Optimizer;
  /** 'accuracy' adds accuracy to the step reports (for losses that define it). */
  metrics?: readonly 'accuracy'[];
  /**
   * Reverse-stream operators, composed once per subscription over the stream of every step's
   * {@link ParameterGradients}; the optimizer is the sink. Stateful operators (`skip`, `filter`,
   * `scan`, {@link accumulateGradients}) work across steps.
   */
  gradientOperators?: readonly GradientOperator[];
  /**
   * A step whose loss or any parameter gradient is NaN or infinite: 'error' (default) fails the
   * stream naming the step and the first such parameter, with the weights untouched; 'skip' drops
   * the update and counts it in the reports (`nonFiniteSkipped`); 'off' checks nothing.
   */
  nonFinite?: NonFinitePolicy;
  /** Check every input batch for NaN/Infinity and fail with the row and column if found. */
  checkNumerics?: boolean;
  /**
   * Attach to each step report a copy of the model's output for the batch, from this step's forward
   * (before the update). It equals the inference output when `model.trainingDiffers` is false.
   */
  outputs?: boolean;
}

/** What {@link Model.fit} emits after each training step. */
export interface StepReport {
  /** The model's step count after this step (1 after the first batch ever); steps skipped as non-finite do not count. */
  step: number;
  /** Mean loss of this batch (regularisation penalties included). */
  loss: number;
  /** Fraction of this batch classified correctly, when asked for and defined by the loss. */
  accuracy?: number;
  /** Examples trained on by this subscription so far, this batch included. */
  examples: number;
  /** Rows in this batch. */
  batchSize: number;
  /**
   * What the reverse stream did with this step's gradients: 'applied' (an optimizer step that
   * includes them ran), 'held' (an operator such as `accumulateGradients` keeps them for a later
   * update) or 'dropped' (`skip`, `filter`, or a non-finite step under `nonFinite: 'skip'`).
   */
  update: UpdateOutcome;
  /** Steps of this subscription dropped so far because their loss or gradients were not finite (policy 'skip'). */
  nonFiniteSkipped: number;
  /** The optimizer's learning rate of the latest update (this one when applied). */
  learningRate: number;
  /** With `outputs: true`: the forward's output before the update, rows × the output shape's size (`model.outputShape`). */
  output?: Float32Array;
}

/** What {@link Model.gradients$} emits for each applied update. */
export interface GradientReport {
  /** The model's step count after the step whose arrival triggered the update. */
  step: number;
  /** L2 norm of all parameter gradients together (after gradient operators such as clipping). */
  globalNorm: number;
  /** L2 norm of each parameter's gradient, by parameter name. */
  norms: Record<string, number>;
}

/** What {@link Model.updates$} emits for each applied update. */
export interface UpdateReport {
  step: number;
  /** L2 norm of each parameter's change in this update, by name. */
  norms: Record<string, number>;
  /** L2 norm of each parameter after the update, by name (update/weight ratios are a health check). */
  weightNorms: Record<string, number>;
}

/** What a stage's backward returns (see {@link ForwardPass.backward}). */
export interface BackwardResult {
  report: StepReport;
  /** dLoss/dInput, a copy (rows × input size); null when not asked for. */
  inputGradient: Float32Array | null;
}

/**
 * One batch's forward kept open for a later backward (the stage API of pipelined training): the
 * step's arena and saved tensors live until `backward` or `release`.
 */
export interface ForwardPass {
  /** The model's output for the batch (a view into the step's arena: copy with `toFloat32Array()`). */
  readonly output: Tensor;
  readonly rows: number;
  /**
   * Backward from dLoss/dOutput (rows × output size, the mean-loss gradient for these rows), or from
   * a loss on the batch's labels/targets; the parameter gradients go through the session's reverse
   * stream like a `fit` step's. Ends the step.
   */
  backward(from: { outputGradient: Float32Array } | { loss: Loss }, options?: { inputGradient?: boolean }): Promise<BackwardResult>;
  /** Ends the step without a backward (its arena goes back to the pool). */
  release(): void;
}

/** What a model exposes to its training code. */
export interface TrainingHost {
  readonly name: string;
  readonly engine: Engine;
  readonly runner: StepRunner;
  readonly parameters: readonly Parameter[];
  /** Training steps so far (the model's step count). */
  steps: number;
  /** Makes `optimizer` the model's current one (checkpointed, freed with the model) and `loss` its latest. */
  adopt(optimizer: Optimizer, loss: Loss | null): void;
  readonly gradientReports: Subject<GradientReport>;
  readonly updateReports: Subject<UpdateReport>;
}

/**
 * A training session: one long-lived reverse stream (the gradient operators composed once, the
 * optimizer as its sink) and the steps that feed it. `fit`, `fitFrom` and `train` each run one per
 * subscription; pipeline stages and custom loops use one directly.
 *
 * Usage: `const s = model.trainingSession({ loss, optimizer }); const r = await s.step(batch); s.close();`
 */
export class TrainingSession {
  private readonly stream: ReverseStream;
  private readonly wantAccuracy: boolean;
  private readonly policy: NonFinitePolicy;
  private examples = 0;
  private nonFiniteSkipped = 0;
  private closed = false;
  private running = 0;
  private idle: (() => void) | null = null;

  constructor(private readonly host: TrainingHost, private readonly options: FitOptions) {
    this.policy = checkFitOptions(host.name, options);
    this.wantAccuracy = options.metrics?.includes('accuracy') ?? false;
    host.adopt(options.optimizer, options.loss);
    this.stream = new ReverseStream(options.gradientOperators ?? [], (g) => this.applyUpdate(g));
  }

  /**
   * One training step: forward, loss, backward, the reverse stream (and the optimizer when the
   * update goes through). Steps of every caller of the model run one at a time.
   */
  step(batch: Batch): Promise<StepReport> {
    return this.exclusive(() => this.runStep(batch));
  }

  /**
   * The stage API: runs the forward of `batch` (training mode) and keeps the step open for a later
   * {@link ForwardPass.backward}; several passes may be open at once (micro-batches in flight).
   */
  async forward(batch: Batch): Promise<ForwardPass> {
    const runner = this.host.runner;
    const opened = await this.exclusive(async () => {
      const { step, x } = runner.begin(batch, true, this.host.steps, this.options.checkNumerics ?? false);
      try {
        return { step, output: await runner.forward(x, step) };
      } catch (error) {
        runner.end(step);
        throw error;
      }
    });
    const { step, output } = opened;
    let open = true;
    const close = () => {
      if (!open) throw new Error(`${this.host.name}: this forward pass was already ended`);
      open = false;
    };
    return {
      output,
      rows: step.rows,
      backward: (source, options = {}) => {
        close();
        return this.exclusive(async () => {
          try {
            let dy: Tensor;
            if ('loss' in source) dy = this.computeLoss(source.loss, output, step);
            else {
              if (source.outputGradient.length !== output.size) throw new RangeError(`${this.host.name}: outputGradient has ${source.outputGradient.length} values, the output ${output.size}`);
              dy = step.alloc(output.shape);
              dy.data().set(source.outputGradient);
              step.loss = Number.NaN;
              step.lossCount = step.rows;
            }
            const dx = await runner.backward(dy, step, options.inputGradient ?? false);
            const inputGradient = dx ? dx.toFloat32Array() : null;
            return { report: await this.finishStep(step, null, 'loss' in source), inputGradient };
          } finally {
            runner.end(step);
          }
        });
      },
      release: () => {
        close();
        runner.end(step);
      },
    };
  }

  /** Ends the session: no further step starts; the reverse stream is torn down once the step in flight ends. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.running === 0) this.stream.close();
    else this.idle = () => this.stream.close();
  }

  /**
   * Runs `work` in the model's exclusive section. Work still queued when the session closes (its
   * subscriber unsubscribed) never starts; work already running finishes.
   */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const closedError = () => new Error(`${this.host.name}: the training session was closed`);
    if (this.closed) return Promise.reject(closedError());
    this.running++;
    return this.host.runner
      .exclusive(async () => ({ value: await work() }), () => this.closed)
      .then((result) => {
        if (!result) throw closedError();
        return result.value;
      })
      .finally(() => {
        if (--this.running === 0 && this.idle) this.idle();
      });
  }

  private computeLoss(loss: Loss, output: Tensor, step: StepContext): Tensor {
    const result = loss.compute(output, step, true);
    step.loss = result.loss;
    step.accuracy = result.accuracy;
    step.lossCount = result.count;
    return result.grad!;
  }

  private async runStep(batch: Batch): Promise<StepReport> {
    const runner = this.host.runner;
    const { step, x } = runner.begin(batch, true, this.host.steps, this.options.checkNumerics ?? false);
    try {
      const y = await runner.forward(x, step);
      const output = this.options.outputs ? y.toFloat32Array() : null;
      await runner.backward(this.computeLoss(this.options.loss, y, step), step);
      return await this.finishStep(step, output, true);
    } finally {
      runner.end(step);
    }
  }

  /** After backward: regularisation, the non-finite guard, the reverse stream, the report. */
  private async finishStep(step: StepContext, output: Float32Array | null, checkLoss: boolean): Promise<StepReport> {
    const host = this.host;
    regularize(host.parameters, step);
    let outcome: UpdateOutcome;
    if (this.policy !== 'off' && this.nonFinite(step, checkLoss)) {
      this.nonFiniteSkipped++;
      outcome = 'dropped';
    } else {
      // The step counts once its gradients went through the stream; a failing operator leaves the count as it was.
      const number = ++host.steps;
      const g = new ParameterGradients(host.parameters, host.engine, number, number, 1, step.rows, step.lossCount, step.loss);
      try {
        outcome = await this.stream.push(g);
      } catch (error) {
        host.steps = number - 1;
        throw error;
      }
    }
    this.examples += step.rows;
    const report: StepReport = {
      step: host.steps, loss: step.loss, examples: this.examples, batchSize: step.rows,
      update: outcome, nonFiniteSkipped: this.nonFiniteSkipped, learningRate: this.options.optimizer.learningRate,
    };
    if (this.wantAccuracy && step.accuracy !== null) report.accuracy = step.accuracy;
    if (output) report.output = output;
    return report;
  }

  /** True when the step must be skipped; throws under policy 'error'. */
  private nonFinite(step: StepContext, checkLoss: boolean): boolean {
    const badLoss = checkLoss && !Number.isFinite(step.loss);
    const bad = firstNonFinite(this.host.parameters, step);
    if (!badLoss && !bad) return false;
    if (this.policy === 'skip') return true;
    const element = bad ? firstNonFiniteElement(bad.grad.data())! : null;
    const what = [
      ...(badLoss ? [`the loss is ${step.loss}`] : []),
      ...(bad && element ? [`the first parameter with a non-finite gradient is '${bad.name}' (${element.value} at element ${element.index})`] : []),
    ].join('; ');
    throw new RangeError(`${this.host.name}: step ${this.host.steps + 1}: ${what}. The update was not applied (nonFinite: 'error'; 'skip' drops such steps and counts them)`);
  }

  /** The reverse stream's sink: one optimizer step, the after-apply callbacks, the reports. */
  private applyUpdate(g: ParameterGradients): void {
    const host = this.host;
    const params = host.parameters;
    const previous = host.updateReports.observed ? params.map((p) => p.value.toFloat32Array()) : null;
    if (host.gradientReports.observed) {
      const norms = params.map((p) => l2(p.grad.data()));
      host.gradientReports.next({ step: host.steps, globalNorm: Math.hypot(...norms), norms: Object.fromEntries(params.map((p, i) => [p.name, norms[i]!])) });
    }
    this.options.optimizer.apply(params, host.engine);
    for (const callback of g.collectAfterApply()) callback();
    if (previous) {
      host.updateReports.next({
        step: host.steps,
        norms: Object.fromEntries(params.map((p, i) => [p.name, l2(p.value.data(), previous[i]!)])),
        weightNorms: Object.fromEntries(params.map((p) => [p.name, l2(p.value.data())])),
      });
    }
  }
}

/** Checks the options a session needs (throws naming the field); returns the non-finite policy. */
function checkFitOptions(name: string, options: FitOptions): NonFinitePolicy {
  if (!options.loss || typeof options.loss.compute !== 'function') throw new TypeError(`${name}: fit needs a loss (e.g. softmaxCrossEntropy())`);
  if (!options.optimizer || typeof options.optimizer.apply !== 'function') throw new TypeError(`${name}: fit needs an optimizer (e.g. adam())`);
  const policy = options.nonFinite ?? 'error';
  if (policy !== 'error' && policy !== 'skip' && policy !== 'off') throw new RangeError(`${name}: nonFinite must be 'error', 'skip' or 'off', got ${JSON.stringify(policy)}`);
  return policy;
}

/** Regularisation: adds each penalty to the batch loss and its gradient to the parameter's. */
export function regularize(parameters: readonly Parameter[], step: StepContext): void {
  for (const p of parameters) {
    if (!p.regularizer) continue;
    const values = p.value.data();
    step.loss += p.regularizer.penalty(values);
    p.regularizer.addGradient(values, p.grad.data());
  }
}

/**
 * Online training as an operator over one {@link TrainingSession} per subscription.
 *
 * Usage: `batches$.pipe(fitOperator(host, options))` (what `model.fit(options)` returns)
 */
export function fitOperator(host: TrainingHost, options: FitOptions): OperatorFunction<Batch, StepReport> {
  checkFitOptions(host.name, options);
  return (source) =>
    defer(() => {
      const session = new TrainingSession(host, options);
      return source.pipe(
        serialMap((batch: Batch) => session.step(batch)),
        finalize(() => session.close()),
      );
    });
}

/**
 * Training from a pull source: {@link pullThrough} reads the next batch only after the previous step's report.
 *
 * Usage: `fitFromSource(host, ipcSource(path), options).subscribe(log)` (what `model.fitFrom` returns)
 */
export function fitFromSource(host: TrainingHost, source: AsyncIterable<Batch> | Iterable<Batch>, options: FitOptions): Observable<StepReport> {
  return pullThrough(source, fitOperator(host, options));
}

/** ‖a − b‖₂ (‖a‖₂ without b), summed in float64. */
export function l2(a: Float32Array, b?: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = b ? a[i]! - b[i]! : a[i]!;
    sum += d * d;
  }
  return Math.sqrt(sum);
}
