/**
 * Pull sources: async iterables that can be cancelled while a read is pending.
 *
 * `Model.fitFrom()` pulls the next batch only after the previous step is applied and calls the
 * iterator's `return()` when its subscriber unsubscribes. An async generator queues `return()`
 * behind a pending `next()`, so a generator reading a silent socket could never be stopped. Every
 * source in `src/streams` is therefore a {@link PullSource}: `return()` releases its resources at
 * once (destroys the socket or file stream) and settles the pending `next()` with `done`.
 */
import { Observable, Subject, type OperatorFunction } from 'rxjs';
import type { Readable } from 'node:stream';

/** An async iterable whose iterators can be cancelled while a `next()` is pending. */
export interface PullSource<T> extends AsyncIterable<T> {
  [Symbol.asyncIterator](): AsyncIterableIterator<T>;
}

/** What {@link cancellable} needs to start one iteration. */
export interface Iteration<T> {
  /** The iterator doing the work (typically an async generator). */
  iterator: AsyncIterator<T>;
  /** Releases the underlying resources at once; the pending read must then settle. Idempotent. */
  cancel: () => void;
}

/**
 * Wraps an iterator factory so that `return()` (and an optional abort signal) cancels at once:
 * the pending `next()` resolves `done` (or rejects with the abort reason), `cancel()` releases
 * the resources, and the inner iterator's own `return()` runs once its pending read settles.
 *
 * Usage: `const source = cancellable(() => ({ iterator: gen(socket), cancel: () => socket.destroy() }));`
 */
export function cancellable<T>(start: () => Iteration<T>, options: { signal?: AbortSignal } = {}): PullSource<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterableIterator<T> {
      const { iterator, cancel } = start();
      let closed = false;
      let stop!: (result: IteratorResult<T>) => void;
      let fail!: (reason: unknown) => void;
      const stopped = new Promise<IteratorResult<T>>((resolve, reject) => {
        stop = resolve;
        fail = reject;
      });
      // Nobody may be waiting when the signal fires; the rejection is handled by `next()` callers.
      stopped.catch(() => {});
      const finish = (): void => {
        if (closed) return;
        closed = true;
        options.signal?.removeEventListener('abort', onAbort);
        cancel();
        // The inner iterator's return runs after its pending read settles (cancel() makes it settle).
        void Promise.resolve()
          .then(() => iterator.return?.())
          .catch(() => {});
      };
      const onAbort = (): void => {
        fail(options.signal?.reason ?? new Error('aborted'));
        finish();
      };
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
      const self: AsyncIterableIterator<T> = {
        async next(): Promise<IteratorResult<T>> {
          if (closed) return options.signal?.aborted ? Promise.reject(options.signal.reason) : { done: true, value: undefined };
          try {
            const result = await Promise.race([iterator.next(), stopped]);
            if (result.done) finish();
            return closed && !result.done ? { done: true, value: undefined } : result;
          } catch (error) {
            finish();
            throw error;
          }
        },
        async return(): Promise<IteratorResult<T>> {
          stop({ done: true, value: undefined });
          finish();
          return { done: true, value: undefined };
        },
        [Symbol.asyncIterator]() {
          return self;
        },
      };
      return self;
    },
  };
}

/**
 * The chunks (or objects, in object mode) of a Node readable stream as a {@link PullSource}:
 * each chunk is read only when asked for, and `return()` destroys the stream. A readable stream
 * can be iterated once.
 *
 * Usage: `model.fitFrom(batchRecords(readableSource(objectStream), { size: 32, shape: [4], classes: 3 }), fit)`
 */
export function readableSource<T = unknown>(readable: Readable | NodeJS.ReadableStream): PullSource<T> {
  let used = false;
  return cancellable<T>(() => {
    if (used) throw new Error('readableSource: a readable stream can be iterated only once');
    used = true;
    const iterator = (readable as AsyncIterable<T>)[Symbol.asyncIterator]();
    return {
      iterator,
      cancel: () => {
        const destroyable = readable as { destroy?: () => void; destroyed?: boolean };
        if (!destroyable.destroyed) destroyable.destroy?.();
      },
    };
  });
}

/**
 * The Observable form of a pull source: subscribing starts an iteration that reads as fast as
 * the subscriber takes values (it is a push stream from then on: put `backpressure()` after it if
 * the consumer is slower, or prefer `model.fitFrom(source)`); unsubscribing cancels the read.
 *
 * Usage: `observePull(ipcSource('train.arrow')).pipe(model.predict()).subscribe(show)`
 */
export function observePull<T>(source: AsyncIterable<T> | Iterable<T>): Observable<T> {
  return new Observable<T>((subscriber) => {
    const iterator: AsyncIterator<T> | Iterator<T> =
      Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
    let stopped = false;
    const pump = async (): Promise<void> => {
      try {
        while (!stopped) {
          const next = await iterator.next();
          if (stopped) return;
          if (next.done) return subscriber.complete();
          subscriber.next(next.value);
        }
      } catch (error) {
        if (!stopped) subscriber.error(error);
      }
    };
    void pump();
    return () => {
      stopped = true;
      void Promise.resolve(iterator.return?.()).catch(() => {});
    };
  });
}

/**
 * Drives a one-output-per-input consumer (`model.fit(...)`, `testThenTrain(...)`) from a pull
 * source: the next item is pulled only after the consumer has emitted its result for the
 * previous one, so a fast source is read at the consumer's pace (the pull counterpart of
 * `backpressure()`). Unsubscribing cancels the pending read.
 *
 * Usage: `pullThrough(batchRecords(readableSource(stream), { size: 32, shape: [784], classes: 10 }), testThenTrain(model, fit))`
 */
export function pullThrough<T, R>(source: AsyncIterable<T> | Iterable<T>, consumer: OperatorFunction<T, R>): Observable<R> {
  return new Observable<R>((subscriber) => {
    const iterator: AsyncIterator<T> | Iterator<T> = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
    const feed = new Subject<T>();
    let stopped = false;
    const pull = async (): Promise<void> => {
      let next: IteratorResult<T>;
      try {
        next = await iterator.next();
      } catch (error) {
        if (!stopped) subscriber.error(error);
        return;
      }
      if (stopped) return;
      if (next.done) feed.complete();
      else feed.next(next.value);
    };
    subscriber.add(
      feed.pipe(consumer).subscribe({
        next: (value) => {
          subscriber.next(value);
          void pull();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      }),
    );
    void pull();
    return () => {
      stopped = true;
      void Promise.resolve(iterator.return?.()).catch(() => {});
    };
  });
}
