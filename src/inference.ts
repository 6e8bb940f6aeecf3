import { concatMap, from, type ObservableInput, type OperatorFunction } from 'rxjs';
import { outputBatch, type Batch } from './batch.ts';
import type { Parameter, StepContext } from './layer.ts';
import { meanSquaredError, softmaxCrossEntropy, type Loss } from './losses.ts';
import type { Optimizer } from './optimizers.ts';
import type { StepRunner } from './step-runner.ts';
import type { Shape, Tensor } from './tensor.ts';

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

/** What a model exposes to its inference code. */
export interface InferenceHost {
  readonly name: string;
  readonly runner: StepRunner;
  readonly parameters: readonly Parameter[];
  readonly outputShape: Shape;
  readonly steps: number;
  /** The optimizer of the latest fit (its moving averages serve `weights: 'average'`), or null. */
  readonly optimizer: Optimizer | null;
  /** The loss of the latest fit, or null. */
  readonly loss: Loss | null;
}

/**
 * Runs one inference step on `batch` inside the model's exclusive section and hands the output
 * (a view into the step's arena) to `finish`; the arena is released after it.
 */
function inferenceStep<T>(host: InferenceHost, batch: Batch, options: InferenceOptions, caller: string, finish: (output: Tensor, step: StepContext) => T): Promise<T> {
  const runner = host.runner;
  const swap = averagesSwap(host, options.weights, caller);
  return runner
    .exclusive(async () => {
      swap?.();
      try {
        const { step, x } = runner.begin(batch, false, host.steps, options.checkNumerics ?? false);
        try {
          return finish(await runner.forward(x, step), step);
        } finally {
          runner.end(step);
        }
      } finally {
        swap?.();
      }
    })
    .then((r) => r as T);
}

/**
 * The swap of weights and their moving averages for `weights: 'average'` (its own inverse), or
 * null for the weights as they are. Runs inside the exclusive section, so a training step never
 * sees the averages, and is swapped back even if the work fails.
 */
function averagesSwap(host: InferenceHost, weights: 'current' | 'average' | undefined, caller: string): (() => void) | null {
  if (weights === undefined || weights === 'current') return null;
  if (weights !== 'average') throw new RangeError(`${host.name}.${caller}: weights must be 'current' or 'average', got ${JSON.stringify(weights)}`);
  const optimizer = averagingOptimizer(host, caller);
  return () => optimizer.swapAverages!(host.parameters);
}

/** The optimizer keeping moving averages of the weights, or an error saying why there is none. */
export function averagingOptimizer(host: InferenceHost, caller: string): Optimizer {
  const optimizer = host.optimizer;
  if (!optimizer || !((optimizer.emaMomentum ?? 0) > 0) || !optimizer.swapAverages) {
    const why = optimizer ? `its optimizer '${optimizer.name}' keeps none` : 'it has not trained yet';
    throw new Error(`${host.name}.${caller}: the averaged weights need an optimizer created with emaMomentum (e.g. adam({ emaMomentum: 0.99 })); ${why}`);
  }
  return optimizer;
}

/**
 * Inference as an operator (what `model.predict()` returns): each batch becomes an Arrow batch with
 * an `output` column (a copy), a `prediction` column (argmax) for vector outputs, and the input's other columns.
 *
 * Usage: `batches$.pipe(predictOperator(host, {}))`
 */
export function predictOperator(host: InferenceHost, options: InferenceOptions): OperatorFunction<Batch, Batch> {
  averagesSwap(host, options.weights, 'predict');
  const argmax = host.outputShape.length === 1 && host.outputShape[0]! > 1;
  return concatMap((batch) =>
    from(
      inferenceStep(host, batch, options, 'predict', (output) => {
        const passThrough = batch.schema.fields.filter((f) => f.name !== 'features').map((f) => ({ field: f, data: batch.getChild(f.name)!.data[0]! }));
        return outputBatch(output.toFloat32Array(), host.outputShape, { argmax, passThrough });
      }),
    ),
  );
}

/**
 * Mean loss (and accuracy) over batches, weighted by each loss's own count (what `model.evaluate` resolves).
 *
 * Usage: `await evaluateBatches(host, from(testBatches), {})`
 */
export function evaluateBatches(host: InferenceHost, batches: ObservableInput<Batch>, options: InferenceOptions & { loss?: Loss }): Promise<EvaluationResult> {
  return new Promise<EvaluationResult>((resolve, reject) => {
    averagesSwap(host, options.weights, 'evaluate');
    let lossSum = 0;
    let correctSum = 0;
    let count = 0;
    let examples = 0;
    let hasAccuracy = true;
    from(batches)
      .pipe(
        concatMap((batch) =>
          inferenceStep(host, batch, options, 'evaluate', (output, step) => {
            const loss = options.loss ?? host.loss ?? (step.targets ? meanSquaredError() : softmaxCrossEntropy());
            const result = loss.compute(output, step, false);
            lossSum += result.loss * result.count;
            count += result.count;
            examples += step.rows;
            if (result.accuracy === null) hasAccuracy = false;
            else correctSum += result.accuracy * result.count;
          }),
        ),
      )
      .subscribe({
        error: reject,
        complete: () => {
          if (examples === 0) return reject(new RangeError(`${host.name}.evaluate: no batches`));
          resolve({ loss: count > 0 ? lossSum / count : 0, ...(hasAccuracy ? { accuracy: count > 0 ? correctSum / count : 0 } : {}), examples });
        },
      });
  });
}
