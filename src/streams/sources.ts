/**
 * Live sources for online learning, in two kinds.
 *
 * **Pull sources** (`PullSource<T>`, an async iterable that can be cancelled mid-read) are read at
 * the engine's pace: `model.fitFrom(source, fit)` asks for the next batch only after the previous
 * step is applied, so nothing queues up and nothing is dropped.
 * - {@link ipcSource}: Arrow IPC stream or file from a path, bytes, or any Node readable;
 *   {@link tcpIpcSource}: an IPC stream over TCP. Corrupt or truncated input fails with an
 *   `IpcFormatError` (see ipc-framing.ts for why we frame and verify before Arrow decodes).
 * - {@link batchRecords}: records from an async iterable or an object-mode readable
 *   ({@link readableSource}) into batches by count and/or time.
 * - {@link observePull}: the Observable form of any pull source; {@link pullThrough} drives any
 *   one-output-per-input consumer (`testThenTrain`, `model.fit`) from a pull source at its pace.
 *
 * **Push sources** (Subjects, {@link eventSource} over an EventEmitter) emit when they like. They
 * must go through {@link backpressure} / {@link trainWithBackpressure} with an explicit policy —
 * a bounded buffer with `'error' | 'dropOldest' | 'dropNewest'`, or `'latest'` — and records
 * through {@link batchBy}. Dropped and skipped counts appear in every report.
 *
 * ```ts
 * const counters = streamCounters();
 * eventSource<StreamRecord>(emitter, { event: 'record' }).pipe(
 *   batchBy({ size: 32, maxWaitMs: 50, shape: [4], classes: 3, onBadRecord: 'skip', counters }),
 *   trainWithBackpressure(model, { loss: softmaxCrossEntropy(), optimizer: adam() }, { buffer: 4, onOverflow: 'dropOldest' }, { counters }),
 * ).subscribe(({ step, loss, dropped, skipped }) => log(step, loss, dropped, skipped));
 * ```
 */
import type { EventEmitter } from 'node:events';
import { Observable } from 'rxjs';

export { cancellable, observePull, pullThrough, readableSource } from './pull.ts';
export type { PullSource, Iteration } from './pull.ts';
export { ipcSource, ipcSource$, tcpIpcSource } from './ipc-sources.ts';
export type { IpcInput } from './ipc-sources.ts';
export { batchesFromIpc, validateBatch } from './ipc-decode.ts';
export { IpcFormatError } from './ipc-framing.ts';
export type { IpcSourceOptions } from './ipc-framing.ts';
export { batchBy, batchRecords, BadRecordError, RecordAccumulator, withKeys, keyColumn } from './records.ts';
export type { StreamRecord, RecordOptions, BatchByOptions } from './records.ts';
export {
  backpressure, trainWithBackpressure, streamCounters, normalizePolicy, BackpressureOverflowError,
} from './backpressure.ts';
export type { BackpressurePolicy, OverflowPolicy, StreamCounters, OnlineStepReport } from './backpressure.ts';

/** The part of a Node EventEmitter that {@link eventSource} uses. */
export type EmitterLike = Pick<EventEmitter, 'on' | 'off'>;

/**
 * A push source over an EventEmitter: `event` values are emitted, `end` completes, `error`
 * fails; unsubscribing removes the listeners. Put `backpressure` downstream: the emitter does
 * not wait for the model.
 *
 * Usage: `eventSource<StreamRecord>(emitter, { event: 'record' }).pipe(batchBy({ size: 32, shape: [4], classes: 3 }), …)`
 */
export function eventSource<T>(emitter: EmitterLike, options: { event?: string; end?: string | null; error?: string | null } = {}): Observable<T> {
  const event = options.event ?? 'data';
  const end = options.end === undefined ? 'end' : options.end;
  const errorEvent = options.error === undefined ? 'error' : options.error;
  return new Observable<T>((subscriber) => {
    const onValue = (value: T): void => subscriber.next(value);
    const onEnd = (): void => subscriber.complete();
    const onError = (error: unknown): void => subscriber.error(error);
    emitter.on(event, onValue);
    if (end !== null) emitter.on(end, onEnd);
    if (errorEvent !== null) emitter.on(errorEvent, onError);
    return () => {
      emitter.off(event, onValue);
      if (end !== null) emitter.off(end, onEnd);
      if (errorEvent !== null) emitter.off(errorEvent, onError);
    };
  });
}
