/**
 * Dynamic batching as an RxJS operator: requests that arrive while the model is busy, or within
 * `maxWaitMs` of the oldest waiting one, are coalesced into one batch of at most `maxRows` rows.
 * One batch runs at a time; the next is formed when it finishes, from whatever has queued up.
 */
import { asyncScheduler, from, Observable, type ObservableInput, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** Options of {@link dynamicBatching}. */
export interface DynamicBatchingOptions {
  /** Largest batch, in rows (a single larger item still runs, alone). */
  maxRows: number;
  /** How long the oldest waiting item may wait for company before its batch runs (0: run at once). */
  maxWaitMs: number;
  /** Clock and timers (default asyncScheduler; tests pass a TestScheduler). */
  scheduler?: SchedulerLike;
}

/**
 * Groups items (each `rows` long) into batches and runs `run` on each group, one group at a time,
 * emitting what `run` emits. A group is formed when the queue holds `maxRows` rows, when its oldest
 * item has waited `maxWaitMs`, or, while a group runs, as soon as that group finishes and the
 * oldest waiter's time is up. When the source completes, what is queued runs without waiting;
 * the output completes after the last group.
 *
 * Usage: `requests$.pipe(dynamicBatching({ maxRows: 64, maxWaitMs: 2 }, (group) => predict(group)))`
 */
export function dynamicBatching<T extends { rows: number }, R>(options: DynamicBatchingOptions, run: (group: T[]) => ObservableInput<R>): OperatorFunction<T, R> {
  const { maxRows, maxWaitMs } = options;
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError(`dynamicBatching: maxRows must be a positive integer, got ${maxRows}`);
  if (!(maxWaitMs >= 0)) throw new RangeError(`dynamicBatching: maxWaitMs must be ≥ 0, got ${maxWaitMs}`);
  const scheduler = options.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<R>((subscriber) => {
      const queue: { item: T; at: number }[] = [];
      let queuedRows = 0;
      let timer: Subscription | null = null;
      let running: Subscription | null = null;
      let sourceDone = false;

      const takeGroup = (): T[] => {
        const group: T[] = [];
        let rows = 0;
        while (queue.length > 0 && (group.length === 0 || rows + queue[0]!.item.rows <= maxRows)) {
          const { item } = queue.shift()!;
          group.push(item);
          rows += item.rows;
        }
        queuedRows -= rows;
        return group;
      };

      const flush = (): void => {
        timer?.unsubscribe();
        timer = null;
        const group = takeGroup();
        let finished = false;
        const subscription = from(run(group)).subscribe({
          next: (value) => subscriber.next(value),
          error: (error: unknown) => subscriber.error(error),
          complete: () => {
            finished = true;
            running = null;
            pump();
          },
        });
        if (!finished) running = subscription;
      };

      function pump(): void {
        if (running) return;
        if (queue.length === 0) {
          if (sourceDone) subscriber.complete();
          return;
        }
        const waited = scheduler.now() - queue[0]!.at;
        // Once the source has completed nobody else can join: run what is queued at once.
        if (queuedRows >= maxRows || waited >= maxWaitMs || sourceDone) return flush();
        timer ??= scheduler.schedule(() => {
          timer = null;
          if (!running && queue.length > 0) flush();
        }, maxWaitMs - waited);
      }

      const upstream = source.subscribe({
        next: (item) => {
          queue.push({ item, at: scheduler.now() });
          queuedRows += item.rows;
          pump();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          sourceDone = true;
          pump();
        },
      });
      return () => {
        upstream.unsubscribe();
        timer?.unsubscribe();
        running?.unsubscribe();
      };
    });
}
