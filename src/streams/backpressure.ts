/**
 * Backpressure for push sources (Subjects, EventEmitters, sockets that do not wait for us).
 *
 * RxJS has no backpressure: `concatMap` (and so `model.fit`) buffers whatever arrives while a step
 * runs, without bound. {@link backpressure} wraps a *consumer* — an operator that emits exactly
 * one value per input, in order, like `model.fit(...)` (one report per batch) or
 * `testThenTrain(...)` — and signals its demand: it hands the consumer one item, waits for the
 * consumer's output for it, then hands the next. Items that arrive meanwhile wait in a buffer of
 * at most `buffer` items; when it is full the policy decides: `'error'` fails the stream,
 * `'dropOldest'` evicts the oldest waiting item, `'dropNewest'` discards the arriving one.
 * `'latest'` keeps only the most recent item (buffer 1, dropOldest): always train on the freshest
 * data. There is no unbounded policy: a buffer must be a finite number, so overload is either
 * counted (`dropped`, in every report) or an error, never silent memory growth.
 *
 * Errors from the source propagate at once (waiting items are discarded); unsubscribing
 * unsubscribes the source and the consumer (so a model step in flight is cancelled and its arena
 * released by the model).
 *
 * ```ts
 * subject.pipe(batchBy({ size: 32, maxWaitMs: 50, shape: [4], classes: 3 }),
 *   trainWithBackpressure(model, { loss, optimizer }, { buffer: 8, onOverflow: 'dropOldest' }))
 *   .subscribe(({ step, loss, dropped }) => …);
 * ```
 */
import { defer, map, Observable, Subject, type OperatorFunction } from 'rxjs';
import type { Batch } from '../batch.ts';
import type { FitOptions, Model, StepReport } from '../model.ts';

/** What to do with an item that arrives while the buffer is full. */
export type OverflowPolicy = 'error' | 'dropOldest' | 'dropNewest';

/** A bounded buffer and its overflow policy, or `'latest'` (= `{ buffer: 1, onOverflow: 'dropOldest' }`). */
export type BackpressurePolicy = { buffer: number; onOverflow: OverflowPolicy } | 'latest';

/**
 * Counters shared along one pipeline (sources count skipped records, the backpressure operator
 * dropped items) and copied into every report.
 */
export interface StreamCounters {
  /** Records rejected by an `onBadRecord: 'skip'` policy. */
  skipped: number;
  /** Items discarded by a backpressure or join-buffer policy. */
  dropped: number;
  /** Rows in the dropped items (batches count their rows, other items 1). */
  droppedRows: number;
  /** Why the latest record was skipped (for logs). */
  lastSkipReason?: string;
}

/**
 * Fresh counters to pass to the operators of one pipeline.
 *
 * Usage: `const counters = streamCounters(); records$.pipe(batchBy({ …, counters }), trainWithBackpressure(model, fit, 'latest', { counters }))`
 */
export function streamCounters(): StreamCounters {
  return { skipped: 0, dropped: 0, droppedRows: 0 };
}

/**
 * Thrown by the `'error'` overflow policy.
 *
 * Usage: `catchError((e) => (e instanceof BackpressureOverflowError ? alert(e) : throwError(() => e)))`
 */
export class BackpressureOverflowError extends Error {
  override name = 'BackpressureOverflowError';
}

/**
 * Checks a policy and expands `'latest'`; throws a RangeError naming the bad field.
 *
 * Usage: `const { buffer, onOverflow } = normalizePolicy('latest'); // 1, 'dropOldest'`
 */
export function normalizePolicy(policy: BackpressurePolicy, where = 'backpressure'): { buffer: number; onOverflow: OverflowPolicy } {
  const p = policy === 'latest' ? { buffer: 1, onOverflow: 'dropOldest' as const } : policy;
  if (typeof p !== 'object' || p === null) throw new TypeError(`${where}: policy must be { buffer, onOverflow } or 'latest', got ${String(policy)}`);
  if (!Number.isInteger(p.buffer) || p.buffer < 0) {
    throw new RangeError(`${where}: buffer must be a finite non-negative integer (unbounded buffering is not offered: use a pull source with model.fitFrom() to never drop), got ${p.buffer}`);
  }
  if (p.onOverflow !== 'error' && p.onOverflow !== 'dropOldest' && p.onOverflow !== 'dropNewest') {
    throw new RangeError(`${where}: onOverflow must be 'error', 'dropOldest' or 'dropNewest', got '${String(p.onOverflow)}'`);
  }
  return p;
}

const rowsOf = (item: unknown): number => (typeof item === 'object' && item !== null && 'numRows' in item && typeof item.numRows === 'number' ? item.numRows : 1);

/**
 * Puts a bounded buffer with an explicit overflow policy between a push source and a consumer
 * that emits one value per input (see the module comment). The consumer gets the next item only
 * after it has emitted its result for the previous one.
 *
 * Usage: `push$.pipe(backpressure({ buffer: 16, onOverflow: 'dropOldest' }, model.fit(fitOptions)))`
 */
export function backpressure<T, R>(policy: BackpressurePolicy, consumer: OperatorFunction<T, R>, options: { counters?: StreamCounters } = {}): OperatorFunction<T, R> {
  const { buffer, onOverflow } = normalizePolicy(policy);
  return (source) =>
    new Observable<R>((subscriber) => {
      const counters = options.counters ?? streamCounters();
      const waiting: T[] = [];
      const feed = new Subject<T>();
      let inFlight = false;
      let sourceDone = false;
      let pumping = false;
      let finished = false;

      // Hands items to the consumer while it is idle. A loop, not recursion: a synchronous
      // consumer emits its result inside feed.next().
      const pump = (): void => {
        if (pumping) return;
        pumping = true;
        try {
          while (!inFlight && !finished) {
            if (waiting.length > 0) {
              inFlight = true;
              feed.next(waiting.shift()!);
            } else {
              if (sourceDone) feed.complete();
              break;
            }
          }
        } finally {
          pumping = false;
        }
      };

      const consumerSubscription = feed.pipe(consumer).subscribe({
        next: (value) => {
          inFlight = false;
          subscriber.next(value);
          pump();
        },
        error: (error: unknown) => {
          finished = true;
          subscriber.error(error);
        },
        complete: () => {
          finished = true;
          subscriber.complete();
        },
      });
      subscriber.add(consumerSubscription);

      const sourceSubscription = source.subscribe({
        next: (item) => {
          if (finished) return;
          if (waiting.length >= buffer) {
            if (onOverflow === 'error') {
              finished = true;
              subscriber.error(new BackpressureOverflowError(`backpressure: ${buffer === 0 ? 'an item arrived while the consumer was busy (buffer 0)' : `the buffer of ${buffer} items is full`}; the source is faster than the consumer (choose onOverflow 'dropOldest' or 'dropNewest', a larger buffer, or a pull source)`));
              return;
            }
            const dropped = onOverflow === 'dropOldest' && waiting.length > 0 ? waiting.shift()! : item;
            counters.dropped++;
            counters.droppedRows += rowsOf(dropped);
            if (dropped === item) return;
          }
          waiting.push(item);
          pump();
        },
        error: (error: unknown) => {
          finished = true;
          waiting.length = 0;
          subscriber.error(error);
        },
        complete: () => {
          sourceDone = true;
          pump();
        },
      });
      subscriber.add(sourceSubscription);
      return () => {
        finished = true;
        waiting.length = 0;
      };
    });
}

/** A step report of a push pipeline: the model's report plus the pipeline's counters (cumulative). */
export interface OnlineStepReport extends StepReport {
  /** Items (batches) dropped by the backpressure policy so far. */
  dropped: number;
  /** Rows in the dropped batches so far. */
  droppedRows: number;
  /** Records skipped as bad so far (when the record operators share the same counters). */
  skipped: number;
}

/**
 * `model.fit(fitOptions)` behind {@link backpressure}: one optimizer step per batch, at most
 * `policy.buffer` batches waiting, each report extended with the cumulative `dropped`,
 * `droppedRows` and `skipped` counts.
 *
 * Usage: `subject.pipe(trainWithBackpressure(model, { loss: softmaxCrossEntropy(), optimizer: adam() }, 'latest'))`
 */
export function trainWithBackpressure(model: Model, fitOptions: FitOptions, policy: BackpressurePolicy, options: { counters?: StreamCounters } = {}): OperatorFunction<Batch, OnlineStepReport> {
  normalizePolicy(policy, 'trainWithBackpressure');
  return (source) =>
    defer(() => {
      // Fresh counters per subscription unless the pipeline shares its own.
      const counters = options.counters ?? streamCounters();
      return source.pipe(
        backpressure(policy, model.fit(fitOptions), { counters }),
        map((report): OnlineStepReport => ({ ...report, dropped: counters.dropped, droppedRows: counters.droppedRows, skipped: counters.skipped })),
      );
    });
}
