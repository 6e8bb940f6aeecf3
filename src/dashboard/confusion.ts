/**
 * A confusion matrix from a classifier's predictions on labelled data, at a bounded cost (the
 * first `maxExamples` rows: a fixed subset, so successive matrices of a run are comparable).
 */
import { from, lastValueFrom, reduce } from 'rxjs';
import { gatherBatch, type Batch, type BatchArrays } from '../batch.ts';
import type { Model } from '../model.ts';
import { sizeOf } from '../tensor.ts';

/** Options of {@link confusionMatrix}. */
export interface ConfusionMatrixOptions {
  /** Rows evaluated at most (the first ones; default 10,000). */
  maxExamples?: number;
  /** Rows per prediction batch (default 256). */
  batchSize?: number;
  /** Which weights predict ('average': the optimizer's moving averages). Default 'current'. */
  weights?: 'current' | 'average';
}

/** Counts of (true class, predicted class) pairs. */
export interface ConfusionMatrix {
  classes: number;
  /** counts[trueClass][predictedClass]. */
  counts: number[][];
  /** Examples evaluated (the sum of all counts). */
  examples: number;
  /** Examples on the diagonal. */
  correct: number;
}

function* batchesOf(data: BatchArrays, rows: number, batchSize: number): Generator<Batch> {
  for (let start = 0; start < rows; start += batchSize) yield gatherBatch(data, null, start, Math.min(batchSize, rows - start));
}

/**
 * Predicts the first `maxExamples` rows of `data` (inference mode) and counts true × predicted
 * classes. The model must output one score per class (`outputShape` `[classes]`) and `data` must
 * have one integer label per row.
 *
 * Usage: `const { counts, examples } = await confusionMatrix(model, test, { maxExamples: 2000 });`
 */
export async function confusionMatrix(model: Model, data: BatchArrays, options: ConfusionMatrixOptions = {}): Promise<ConfusionMatrix> {
  const maxExamples = options.maxExamples ?? 10_000;
  const batchSize = options.batchSize ?? 256;
  if (!Number.isInteger(maxExamples) || maxExamples < 1) throw new RangeError(`confusionMatrix: maxExamples must be a positive integer, got ${maxExamples}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`confusionMatrix: batchSize must be a positive integer, got ${batchSize}`);
  if (model.outputShape.length !== 1 || model.outputShape[0]! < 2) {
    throw new RangeError(`confusionMatrix: the model must output one score per class (shape [classes]), '${model.name}' outputs [${model.outputShape.join(', ')}]`);
  }
  const classes = model.outputShape[0]!;
  const rowsInData = data.features.length / sizeOf(data.shape);
  const labels = data.labels;
  if (!labels || (data.labelShape && sizeOf(data.labelShape) !== 1) || labels.length !== rowsInData) {
    throw new RangeError(`confusionMatrix: data needs one integer label per row (${rowsInData} rows, ${labels ? `${labels.length} labels` : 'no labels'})`);
  }
  const rows = Math.min(rowsInData, maxExamples);
  for (let r = 0; r < rows; r++) {
    const label = labels[r]!;
    if (label < 0 || label >= classes) throw new RangeError(`confusionMatrix: label ${label} at row ${r} is not a class in [0, ${classes})`);
  }
  const counts = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const seen = await lastValueFrom(
    from(batchesOf(data, rows, batchSize)).pipe(
      model.predict(options.weights ? { weights: options.weights } : {}),
      reduce((row, out) => {
        const predictions = out.getChild('prediction')!.toArray() as Int32Array;
        for (let i = 0; i < predictions.length; i++) counts[labels[row + i]!]![predictions[i]!]!++;
        return row + predictions.length;
      }, 0),
    ),
  );
  let correct = 0;
  for (let c = 0; c < classes; c++) correct += counts[c]![c]!;
  return { classes, counts, examples: seen, correct };
}
