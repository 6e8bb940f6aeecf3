/**
 * Test-then-train (progressive validation, River's predict → update metric → learn contract).
 *
 * {@link testThenTrain}: for each arriving batch the model first predicts (inference mode: no
 * dropout, weights as they are), the predictions are scored against the batch's labels or
 * targets and added to a rolling window, and only then does the model take an optimizer step on
 * the batch. Every report therefore measures the model on data it has not learnt from yet. It
 * emits one report per batch, so it can be the consumer of `backpressure()` for push sources.
 *
 * {@link testThenTrainDelayed}: labels arrive later than the records. Batches arrive with a
 * `keys` column and no labels; the model predicts them at once (a `prediction` event). Labels
 * arrive on a second Observable, keyed; each is joined with its stored prediction, scored (the
 * score is that of the prediction made before the label was known), and the joined examples are
 * learnt from in batches of `learnBatchSize` (a `step` event). Waiting predictions and labels that
 * arrive before their record are held in bounded buffers with an explicit overflow policy; what
 * a policy evicts is counted as `expired`.
 */
import { concatMap, defer, finalize, from, map, Observable, of, Subject, type OperatorFunction, type Subscription } from 'rxjs';
import { batchFromArrays, floatColumn, labelColumn, type Batch } from '../batch.ts';
import type { FitOptions, Model, StepReport } from '../model.ts';
import { sizeOf } from '../tensor.ts';
import { backpressure, normalizePolicy, streamCounters, BackpressureOverflowError, type BackpressurePolicy, type StreamCounters } from './backpressure.ts';
import { rollingMetrics, scoreExample, ScoreSums, type ExampleScore, type RollingSnapshot } from './metrics.ts';
import { keyColumn, BadRecordError } from './records.ts';
import { serialMap } from '../serial-map.ts';

/** Options of {@link testThenTrain}. */
export interface TestThenTrainOptions extends FitOptions {
  /** Examples in the rolling window (default 1000). */
  window?: number;
  /** Counters shared with the pipeline's sources and backpressure (copied into each report). */
  counters?: StreamCounters;
}

/** What {@link testThenTrain} emits per batch. */
export interface ProgressiveReport {
  /** The model's step count after learning this batch. */
  step: number;
  /** Examples seen by this subscription, this batch included. */
  examples: number;
  batchSize: number;
  /** Loss of the predictions made before learning (inference mode). */
  loss?: number;
  /** Accuracy of those predictions (classification). */
  accuracy?: number;
  /** Mean absolute error of those predictions (regression). */
  mae?: number;
  /** Root mean squared error of those predictions (regression). */
  rmse?: number;
  /** The loss the optimizer step reported (training mode: with dropout, regularisation). */
  trainLoss: number;
  /** The same metrics over the last `window` examples. */
  rolling: RollingSnapshot;
  /** From the shared counters: batches dropped by backpressure, records skipped as bad. */
  dropped: number;
  skipped: number;
}

function truthOf(batch: Batch): (row: number) => { label?: number; target?: Float32Array } {
  const column = labelColumn(batch);
  // Per-position labels (sequence models) are not scored per example here.
  const labels = column && column.shape.length === 0 ? column.values : null;
  const targets = batch.schema.fields.some((f) => f.name === 'targets') ? floatColumn(batch, 'targets') : null;
  const targetWidth = targets ? sizeOf(targets.shape) : 0;
  return (row) => ({
    ...(labels ? { label: labels[row]! } : {}),
    ...(targets ? { target: targets.values.subarray(row * targetWidth, (row + 1) * targetWidth) } : {}),
  });
}

function withMeans<T extends object>(target: T, means: ReturnType<ScoreSums['means']>): T {
  return Object.assign(target, means);
}

/**
 * Progressive validation as an operator: predict, score, then learn, for each batch; one
 * {@link ProgressiveReport} per batch with the batch's pre-update metrics and rolling ones.
 * When no layer behaves differently in training (`model.trainingDiffers` is false: no dropout,
 * augmentation or batch norm), the training step's own forward is the prediction and is scored
 * (one forward per batch); otherwise an inference forward runs first (two).
 *
 * Usage: `batches$.pipe(testThenTrain(model, { loss: softmaxCrossEntropy(), optimizer: adam(), window: 500 })).subscribe(r => log(r.step, r.rolling.accuracy))`
 */
export function testThenTrain(model: Model, options: TestThenTrainOptions): OperatorFunction<Batch, ProgressiveReport> {
  return (source) =>
    defer(() => {
      const rolling = rollingMetrics({ window: options.window ?? 1000 });
      const counters = options.counters ?? streamCounters();
      const width = sizeOf(model.outputShape);
      let examples = 0;
      const score = (batch: Batch, output: Float32Array) => {
        const truth = truthOf(batch);
        const sums = new ScoreSums();
        for (let r = 0; r * width < output.length; r++) {
          const s = scoreExample(options.loss, output.subarray(r * width, (r + 1) * width), truth(r));
          sums.add(s);
          rolling.add(s);
        }
        return sums.means();
      };
      const report = (step: StepReport, means: ReturnType<ScoreSums['means']>): ProgressiveReport => {
        examples += step.batchSize;
        return withMeans(
          { step: step.step, examples, batchSize: step.batchSize, trainLoss: step.loss, rolling: rolling.snapshot(), dropped: counters.dropped, skipped: counters.skipped },
          means,
        );
      };
      // One training session for the subscription: gradient operators see every step in order.
      if (!model.trainingDiffers) {
        const session = model.trainingSession({ ...options, outputs: true });
        return source.pipe(
          serialMap(async (batch: Batch) => {
            const step = await session.step(batch);
            return report(step, score(batch, step.output!));
          }),
          finalize(() => session.close()),
        );
      }
      const session = model.trainingSession(options);
      return source.pipe(
        concatMap((batch) =>
          of(batch).pipe(
            model.predict(),
            map((predictions) => score(batch, floatColumn(predictions, 'output').values)),
            concatMap((means) => from(session.step(batch)).pipe(map((step) => report(step, means)))),
          ),
        ),
        finalize(() => session.close()),
      );
    });
}

/** A label that arrives after its record. */
export interface DelayedLabel {
  key: string;
  label?: number;
  target?: ArrayLike<number>;
}

/** Options of {@link testThenTrainDelayed}. */
export interface DelayedOptions extends FitOptions {
  /** Examples in the rolling window (default 1000). */
  window?: number;
  /** Joined examples per optimizer step (default 32); a partial step is taken at the end. */
  learnBatchSize?: number;
  /**
   * Bound of each join buffer (predictions awaiting labels; labels awaiting their record) and its
   * overflow policy: 'error' fails, 'dropOldest' expires the oldest entry, 'dropNewest' the new
   * one. Default `{ buffer: 10000, onOverflow: 'error' }`.
   */
  join?: BackpressurePolicy;
  /** Bound of the batches waiting to be predicted (the input is a push source). Default `{ buffer: 64, onOverflow: 'error' }`. */
  input?: BackpressurePolicy;
  /** A label that is not an integer class in range (or a target of the wrong size): 'error' (default) or 'skip'. */
  onBadLabel?: 'error' | 'skip';
  counters?: StreamCounters;
}

/** What {@link testThenTrainDelayed} emits. */
export type DelayedEvent =
  | { kind: 'prediction'; /** `output`, `prediction`, `keys`. */ predictions: Batch; /** Predictions awaiting their label. */ pending: number }
  | ({ kind: 'step'; /** Examples joined in this step. */ joined: number; /** Predictions or labels evicted by the join policy so far. */ expired: number; pending: number } & ProgressiveReport);

interface Waiting {
  features: Float32Array;
  output: Float32Array;
}

/**
 * Test-then-train with delayed labels (see the module comment): predictions are emitted as soon
 * as a batch arrives; learning happens when the labels, joined by key, make a batch.
 *
 * Usage: `records$.pipe(batchBy({ size: 16, shape: [4], keys: true }), testThenTrainDelayed(model, labels$, { loss, optimizer }))`
 */
export function testThenTrainDelayed(model: Model, labels$: Observable<DelayedLabel>, options: DelayedOptions): OperatorFunction<Batch, DelayedEvent> {
  const join = normalizePolicy(options.join ?? { buffer: 10_000, onOverflow: 'error' }, 'testThenTrainDelayed join');
  const inputPolicy = options.input ?? { buffer: 64, onOverflow: 'error' as const };
  normalizePolicy(inputPolicy, 'testThenTrainDelayed input');
  const learnBatchSize = options.learnBatchSize ?? 32;
  if (!Number.isInteger(learnBatchSize) || learnBatchSize < 1) throw new RangeError(`testThenTrainDelayed: learnBatchSize must be a positive integer, got ${learnBatchSize}`);
  const width = sizeOf(model.inputShape);
  const outWidth = sizeOf(model.outputShape);
  return (source) =>
    new Observable<DelayedEvent>((subscriber) => {
      const counters = options.counters ?? streamCounters();
      const rolling = rollingMetrics({ window: options.window ?? 1000 });
      const pending = new Map<string, Waiting>();
      const early = new Map<string, DelayedLabel>();
      let expired = 0;
      let examples = 0;
      let kind: 'label' | 'target' | null = null;
      // Joined examples waiting for the next optimizer step.
      let ready: { features: Float32Array; label?: number; target?: ArrayLike<number>; score: ExampleScore }[] = [];
      let sourceDone = false;
      let labelsDone = false;
      let learnClosed = false;

      const learn = new Subject<typeof ready>();
      const fail = (error: unknown): void => subscriber.error(error);

      const bounded = <V>(buffer: Map<string, V>, key: string, value: V, what: string): void => {
        if (buffer.has(key)) {
          buffer.delete(key);
          expired++;
        }
        if (buffer.size >= join.buffer) {
          if (join.onOverflow === 'error') throw new BackpressureOverflowError(`testThenTrainDelayed: ${join.buffer} ${what} are waiting (join buffer full); labels lag too far behind (choose onOverflow 'dropOldest', a larger buffer, or fewer in flight)`);
          expired++;
          counters.dropped++;
          counters.droppedRows++;
          if (join.onOverflow === 'dropNewest') return;
          buffer.delete(buffer.keys().next().value!);
        }
        buffer.set(key, value);
      };

      const pushReady = (flushAll: boolean): void => {
        while (ready.length >= learnBatchSize || (flushAll && ready.length > 0)) {
          learn.next(ready.slice(0, learnBatchSize));
          ready = ready.slice(learnBatchSize);
        }
      };

      const joinOne = (waiting: Waiting, label: DelayedLabel): void => {
        const truth = kind === 'label' ? { label: label.label! } : { target: label.target! };
        const score = scoreExample(options.loss, waiting.output, truth);
        rolling.add(score);
        ready.push({ features: waiting.features, ...truth, score });
        pushReady(false);
      };

      const checkLabel = (label: DelayedLabel): string | null => {
        if (typeof label !== 'object' || label === null || typeof label.key !== 'string') return 'has no string key';
        const hasLabel = label.label !== undefined;
        kind ??= hasLabel ? 'label' : 'target';
        if (kind === 'label') {
          const classes = outWidth;
          if (!Number.isInteger(label.label) || label.label! < 0 || (classes > 1 && label.label! >= classes)) return `label ${String(label.label)} is not an integer class in [0, ${classes})`;
        } else if (!label.target || label.target.length !== outWidth || !Array.from(label.target).every(Number.isFinite)) {
          return `target must be ${outWidth} finite numbers`;
        }
        return null;
      };

      const onLabel = (label: DelayedLabel): void => {
        const problem = checkLabel(label);
        if (problem) {
          const message = `testThenTrainDelayed: label for key '${String(label?.key)}' ${problem}`;
          if ((options.onBadLabel ?? 'error') === 'error') throw new BadRecordError(message, -1, label?.key);
          counters.skipped++;
          counters.lastSkipReason = message;
          return;
        }
        const waiting = pending.get(label.key);
        if (waiting) {
          pending.delete(label.key);
          joinOne(waiting, label);
        } else {
          bounded(early, label.key, label, 'labels without their record');
        }
      };

      const maybeFinish = (): void => {
        if (learnClosed || !sourceDone || (!labelsDone && pending.size > 0)) return;
        learnClosed = true;
        // Predictions whose labels will never come (the label stream ended) expire.
        expired += pending.size;
        pending.clear();
        pushReady(true);
        learn.complete();
      };

      // Learning: one training step per ready batch, at most a few waiting (labels are a push source too),
      // all in one training session (gradient operators see every step in order).
      const session = model.trainingSession(options);
      const learnSubscription = learn
        .pipe(
          backpressure(
            { buffer: Math.max(1, Math.ceil(join.buffer / learnBatchSize)), onOverflow: join.onOverflow },
            concatMap((rows: typeof ready) => {
              const features = new Float32Array(rows.length * width);
              rows.forEach((r, i) => features.set(r.features, i * width));
              const batch = batchFromArrays({
                features, shape: model.inputShape,
                ...(kind === 'label'
                  ? { labels: Int32Array.from(rows, (r) => r.label!) }
                  : { targets: Float32Array.from(rows.flatMap((r) => Array.from(r.target!))), targetShape: model.outputShape }),
              });
              const sums = new ScoreSums();
              for (const r of rows) sums.add(r.score);
              return from(session.step(batch)).pipe(
                map((report): DelayedEvent => {
                  examples += report.batchSize;
                  return withMeans(
                    {
                      kind: 'step' as const, joined: rows.length, expired, pending: pending.size, step: report.step, examples, batchSize: report.batchSize,
                      trainLoss: report.loss, rolling: rolling.snapshot(), dropped: counters.dropped, skipped: counters.skipped,
                    },
                    sums.means(),
                  );
                }),
              );
            }),
            { counters },
          ),
        )
        .subscribe({ next: (e) => subscriber.next(e), error: fail, complete: () => subscriber.complete() });

      // Prediction: each arriving batch at once (bounded queue), its rows then wait for labels.
      const predictSubscription = source
        .pipe(
          backpressure(
            inputPolicy,
            concatMap((batch: Batch) => {
              const keys = keyColumn(batch);
              if (!keys) throw new TypeError("testThenTrainDelayed: batches need a 'keys' column (batchBy({ …, keys: true }))");
              const features = floatColumn(batch, 'features');
              return of(batch).pipe(
                model.predict(),
                map((predictions): DelayedEvent => {
                  const output = floatColumn(predictions, 'output');
                  for (let r = 0; r < keys.length; r++) {
                    const waiting: Waiting = {
                      features: features.values.slice(r * width, (r + 1) * width),
                      output: output.values.slice(r * outWidth, (r + 1) * outWidth),
                    };
                    const label = early.get(keys[r]!);
                    if (label) {
                      early.delete(keys[r]!);
                      joinOne(waiting, label);
                    } else {
                      bounded(pending, keys[r]!, waiting, 'predictions without their label');
                    }
                  }
                  return { kind: 'prediction', predictions, pending: pending.size };
                }),
              );
            }),
            { counters },
          ),
        )
        .subscribe({
          next: (e) => subscriber.next(e),
          error: fail,
          complete: () => {
            sourceDone = true;
            maybeFinish();
          },
        });

      let labelSubscription: Subscription | null = null;
      labelSubscription = labels$.subscribe({
        next: (label) => {
          try {
            onLabel(label);
            if (sourceDone) maybeFinish();
          } catch (error) {
            fail(error);
          }
        },
        error: fail,
        complete: () => {
          labelsDone = true;
          maybeFinish();
        },
      });

      return () => {
        predictSubscription.unsubscribe();
        labelSubscription?.unsubscribe();
        learnSubscription.unsubscribe();
        session.close();
      };
    });
}
