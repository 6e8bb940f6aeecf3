import { concat, concatMap, defer, finalize, from, map, range, type Observable } from 'rxjs';
import { gatherBatch, type Batch, type BatchArrays } from './batch.ts';
import type { EvaluationResult } from './inference.ts';
import { Random } from './random.ts';
import { formatShape, sizeOf } from './tensor.ts';
import { TrainingSession, type FitOptions, type StepReport, type TrainingHost } from './training.ts';

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

/** How `train` evaluates its validation set (the model's `evaluate`). */
export type Evaluate = (batches: Iterable<Batch>, options: { loss: FitOptions['loss']; weights?: 'current' | 'average' }) => Promise<EvaluationResult>;

/**
 * Keras-style epochs over typed arrays (what `model.train` returns): one {@link TrainingSession}
 * for the whole run, so gradient operators see every step of every epoch in order.
 */
export function trainEpochs(host: TrainingHost & { readonly seed: number }, evaluate: Evaluate, data: BatchArrays, options: TrainOptions): Observable<TrainProgress> {
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
    const shuffler = new Random((host.seed ^ 0x5eed ^ Math.imul(host.steps, 0x9e3779b9)) >>> 0);
    const order = new Int32Array(rows).map((_, i) => i);
    const session = new TrainingSession(host, options);
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
          concatMap((b) => defer(() => from(session.step(gatherBatch(data, order, b * batchSize, Math.min(batchSize, rows - b * batchSize)))))),
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
            ? await evaluate(batchesOf(options.validation, 256), { loss: options.loss, ...(options.validationWeights ? { weights: options.validationWeights } : {}) })
            : undefined;
          return {
            kind: 'epoch', epoch: epoch + 1, epochs, loss: lossSum / seen, seconds, examplesPerSecond: seen / seconds,
            ...(wantAccuracy && seen > 0 ? { accuracy: correct / seen } : {}),
            ...(validation ? { validation } : {}),
          };
        });
        return concat(steps, summary);
      }),
      finalize(() => session.close()),
    );
  });
}

function* batchesOf(data: BatchArrays, batchSize: number): Generator<Batch> {
  const rows = data.features.length / sizeOf(data.shape);
  for (let start = 0; start < rows; start += batchSize) yield gatherBatch(data, null, start, Math.min(batchSize, rows - start));
}
