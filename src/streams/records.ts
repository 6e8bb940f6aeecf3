/**
 * Records → Arrow batches, by count and/or time, with a bad-record policy.
 *
 * A record is `{ features, label?, target?, key? }` (what a JSON API, a queue or an object-mode
 * stream delivers). {@link batchBy} is the push form (an RxJS operator with a timer on a
 * scheduler, so marble tests run in virtual time); {@link batchRecords} is the pull form (an
 * async iterable for `model.fitFrom`, reading records only as batches are asked for). Both check
 * every record against the declared shape (width, finite values, integer label in range, target
 * width, string key) and either fail naming the record's index and key (`onBadRecord: 'error'`,
 * the default) or skip it and count it (`'skip'`, reported as `skipped`).
 */
import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { Field, makeData, RecordBatch, Schema, Struct, Utf8, type Data, type DataType } from 'apache-arrow';
import { batchFromArrays, type Batch } from '../batch.ts';
import { formatShape, sizeOf, type Shape } from '../tensor.ts';
import { streamCounters, type StreamCounters } from './backpressure.ts';
import { cancellable, type PullSource } from './pull.ts';

/** One example as it arrives from a live source. */
export interface StreamRecord {
  /** prod(shape) values, row-major. */
  features: ArrayLike<number>;
  /** Class index (classification). */
  label?: number;
  /** Regression target, prod(targetShape) values. */
  target?: ArrayLike<number>;
  /** Identifies the record (delayed labels join on it); becomes the `keys` column. */
  key?: string;
}

/** How records are checked and what the batches hold. */
export interface RecordOptions {
  /** Per-example feature shape, e.g. `[784]`. */
  shape: Shape;
  /** Number of classes: labels must be integers in [0, classes). Implies `labels: 'required'`. */
  classes?: number;
  /** 'required': every record needs a valid label (a `labels` column); 'none': labels are ignored. Default: 'required' if `classes` is set. */
  labels?: 'required' | 'none';
  /** Per-example target shape: every record needs a finite `target` of that size (a `targets` column). */
  targetShape?: Shape;
  /** Every record needs a string `key` (a `keys` Utf8 column, passed through `predict`). Default false. */
  keys?: boolean;
  /** 'error' (default): the stream fails, naming the record; 'skip': the record is counted in `counters.skipped`. */
  onBadRecord?: 'error' | 'skip';
  /** Where skipped records are counted (share them with `trainWithBackpressure` to report them). */
  counters?: StreamCounters;
}

/** Options of {@link batchBy} and {@link batchRecords}. */
export interface BatchByOptions extends RecordOptions {
  /** Rows per batch (a batch is emitted when it is full). Default: unbounded (time only). */
  size?: number;
  /** A partial batch is emitted this long after its first record arrived. Default: never (count only). */
  maxWaitMs?: number;
  /** Timer scheduler of {@link batchBy} (tests pass a TestScheduler). Default: asyncScheduler. */
  scheduler?: SchedulerLike;
}

/**
 * A record rejected by the `'error'` policy; `index` counts records from 0 on this subscription.
 *
 * Usage: `if (error instanceof BadRecordError) log(error.index, error.key)`
 */
export class BadRecordError extends RangeError {
  override name = 'BadRecordError';
  constructor(message: string, readonly index: number, readonly key: string | undefined) {
    super(message);
  }
}

function checkOptions(options: BatchByOptions, where: string): void {
  const { size, maxWaitMs, shape } = options;
  if (size === undefined && maxWaitMs === undefined) throw new RangeError(`${where}: give size, maxWaitMs or both`);
  if (size !== undefined && (!Number.isInteger(size) || size < 1)) throw new RangeError(`${where}: size must be a positive integer, got ${size}`);
  if (maxWaitMs !== undefined && !(maxWaitMs > 0 && Number.isFinite(maxWaitMs))) throw new RangeError(`${where}: maxWaitMs must be a positive number, got ${maxWaitMs}`);
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`${where}: shape ${JSON.stringify(shape)} must be positive integers`);
  if (options.classes !== undefined && (!Number.isInteger(options.classes) || options.classes < 1)) throw new RangeError(`${where}: classes must be a positive integer, got ${options.classes}`);
  if (options.targetShape && !options.targetShape.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`${where}: targetShape must be positive integers`);
  if (options.onBadRecord !== undefined && options.onBadRecord !== 'error' && options.onBadRecord !== 'skip') throw new RangeError(`${where}: onBadRecord must be 'error' or 'skip', got '${String(options.onBadRecord)}'`);
}

/**
 * Collects checked records into growable typed arrays and turns them into a batch. One per
 * subscription (push) or iteration (pull).
 *
 * Usage: `const acc = new RecordAccumulator({ shape: [4], classes: 3 }, 'mySource'); acc.add(record); const batch = acc.take();`
 */
export class RecordAccumulator {
  private readonly width: number;
  private readonly targetWidth: number;
  private readonly wantLabels: boolean;
  private capacity = 0;
  private features = new Float32Array(0);
  private labels = new Int32Array(0);
  private targets = new Float32Array(0);
  private keys: string[] = [];
  /** Rows collected for the next batch. */
  count = 0;
  /** Records seen so far (good and bad): the index in error messages. */
  seen = 0;
  readonly counters: StreamCounters;

  constructor(private readonly options: RecordOptions & { size?: number }, private readonly where: string) {
    this.width = sizeOf(options.shape);
    this.targetWidth = options.targetShape ? sizeOf(options.targetShape) : 0;
    this.wantLabels = (options.labels ?? (options.classes !== undefined ? 'required' : 'none')) === 'required';
    this.counters = options.counters ?? streamCounters();
  }

  /** Why `record` is unusable, or null. */
  problem(record: unknown): string | null {
    if (typeof record !== 'object' || record === null) return `is ${record === null ? 'null' : typeof record}, not an object`;
    const r = record as Partial<StreamRecord>;
    const features = r.features as unknown;
    if (features === undefined) return 'has no features';
    if (typeof features !== 'object' || features === null || typeof (features as ArrayLike<number>).length !== 'number') return 'features is not an array of numbers';
    const values = features as ArrayLike<unknown>;
    if (values.length !== this.width) return `features has ${values.length} values, expected ${this.width} (shape ${formatShape(this.options.shape)})`;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number' || !Number.isFinite(v)) return `features[${i}] is ${typeof v === 'number' ? String(v) : typeof v}, not a finite number`;
    }
    if (this.wantLabels) {
      const label = r.label as unknown;
      const classes = this.options.classes;
      if (typeof label !== 'number' || !Number.isInteger(label) || label < 0 || (classes !== undefined && label >= classes) || label > 0x7fffffff) {
        return `label ${label === undefined ? 'is missing' : String(label)}${label === undefined ? '' : ' is not an integer in [0, ' + (classes ?? '2^31') + ')'}`;
      }
    }
    if (this.targetWidth > 0) {
      const target = r.target as unknown;
      if (typeof target !== 'object' || target === null || typeof (target as ArrayLike<number>).length !== 'number') return 'has no target array';
      const t = target as ArrayLike<unknown>;
      if (t.length !== this.targetWidth) return `target has ${t.length} values, expected ${this.targetWidth} (shape ${formatShape(this.options.targetShape!)})`;
      for (let i = 0; i < t.length; i++) {
        const v = t[i];
        if (typeof v !== 'number' || !Number.isFinite(v)) return `target[${i}] is ${typeof v === 'number' ? String(v) : typeof v}, not a finite number`;
      }
    }
    if (this.options.keys && typeof r.key !== 'string') return `key is ${r.key === undefined ? 'missing' : typeof r.key}, expected a string`;
    return null;
  }

  /** Adds a record (true), skips it (false, counted), or throws a {@link BadRecordError}. */
  add(record: unknown): boolean {
    const index = this.seen++;
    const problem = this.problem(record);
    if (problem !== null) {
      const key = typeof record === 'object' && record !== null && typeof (record as StreamRecord).key === 'string' ? (record as StreamRecord).key : undefined;
      const message = `${this.where}: record ${index}${key !== undefined ? ` (key '${key}')` : ''} ${problem}`;
      if ((this.options.onBadRecord ?? 'error') === 'error') throw new BadRecordError(message, index, key);
      this.counters.skipped++;
      this.counters.lastSkipReason = message;
      return false;
    }
    const r = record as StreamRecord;
    if (this.count === this.capacity) this.grow();
    this.features.set(r.features, this.count * this.width);
    if (this.wantLabels) this.labels[this.count] = r.label!;
    if (this.targetWidth > 0) this.targets.set(r.target!, this.count * this.targetWidth);
    if (this.options.keys) this.keys.push(r.key!);
    this.count++;
    return true;
  }

  private grow(): void {
    const size = this.options.size;
    const capacity = size !== undefined && this.capacity === 0 ? size : Math.max(64, this.capacity * 2);
    const features = new Float32Array(capacity * this.width);
    features.set(this.features.subarray(0, this.count * this.width));
    this.features = features;
    if (this.wantLabels) {
      const labels = new Int32Array(capacity);
      labels.set(this.labels.subarray(0, this.count));
      this.labels = labels;
    }
    if (this.targetWidth > 0) {
      const targets = new Float32Array(capacity * this.targetWidth);
      targets.set(this.targets.subarray(0, this.count * this.targetWidth));
      this.targets = targets;
    }
    this.capacity = capacity;
  }

  /** The collected rows as a batch (the arrays are handed over, not copied), or null if empty. */
  take(): Batch | null {
    if (this.count === 0) return null;
    const n = this.count;
    const batch = batchFromArrays({
      features: this.features.subarray(0, n * this.width), shape: this.options.shape,
      ...(this.wantLabels ? { labels: this.labels.subarray(0, n) } : {}),
      ...(this.targetWidth > 0 ? { targets: this.targets.subarray(0, n * this.targetWidth), targetShape: this.options.targetShape! } : {}),
    });
    const keys = this.keys;
    this.count = 0;
    this.capacity = 0;
    this.features = new Float32Array(0);
    this.labels = new Int32Array(0);
    this.targets = new Float32Array(0);
    this.keys = [];
    return this.options.keys ? withKeys(batch, keys) : batch;
  }
}

/**
 * Adds a Utf8 `keys` column to a batch.
 *
 * Usage: `const keyed = withKeys(batch, ['a', 'b']);`
 */
export function withKeys(batch: Batch, keys: readonly string[]): Batch {
  if (keys.length !== batch.numRows) throw new RangeError(`withKeys: ${keys.length} keys for ${batch.numRows} rows`);
  const encoder = new TextEncoder();
  const encoded = keys.map((k) => encoder.encode(k));
  const offsets = new Int32Array(keys.length + 1);
  for (let i = 0; i < encoded.length; i++) offsets[i + 1] = offsets[i]! + encoded[i]!.length;
  const data = new Uint8Array(offsets[keys.length]!);
  for (let i = 0; i < encoded.length; i++) data.set(encoded[i]!, offsets[i]!);
  const field = new Field('keys', new Utf8(), false);
  const fields = [...batch.schema.fields, field];
  const children: Data<DataType>[] = [...batch.schema.fields.map((f) => batch.getChild(f.name)!.data[0]!), makeData({ type: new Utf8(), length: keys.length, nullCount: 0, valueOffsets: offsets, data })];
  return new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: batch.numRows, nullCount: 0, children }));
}

/**
 * The `keys` column of a batch as strings, or null without one.
 *
 * Usage: `const keys = keyColumn(predictions);`
 */
export function keyColumn(batch: Batch, name = 'keys'): string[] | null {
  const vector = batch.getChild(name);
  if (!vector) return null;
  return Array.from({ length: batch.numRows }, (_, i) => String(vector.get(i)));
}

/**
 * Push batching: records → Arrow batches of `size` rows, or fewer when `maxWaitMs` has passed
 * since the batch's first record; a partial batch is also emitted when the source completes (not
 * when it errors). No timer outlives completion, error or unsubscription.
 *
 * Usage: `records$.pipe(batchBy({ size: 32, maxWaitMs: 100, shape: [4], classes: 3 }), model.fit(fit))`
 */
export function batchBy(options: BatchByOptions): OperatorFunction<StreamRecord, Batch> {
  checkOptions(options, 'batchBy');
  const scheduler = options.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<Batch>((subscriber) => {
      const accumulator = new RecordAccumulator(options, 'batchBy');
      let timer: Subscription | null = null;
      const stopTimer = (): void => {
        timer?.unsubscribe();
        timer = null;
      };
      const flush = (): void => {
        stopTimer();
        const batch = accumulator.take();
        if (batch) subscriber.next(batch);
      };
      const subscription = source.subscribe({
        next: (record) => {
          if (subscriber.closed) return;
          let added: boolean;
          try {
            added = accumulator.add(record);
          } catch (error) {
            stopTimer();
            subscriber.error(error);
            return;
          }
          if (!added) return;
          if (accumulator.count === 1 && options.maxWaitMs !== undefined) timer = scheduler.schedule(flush, options.maxWaitMs);
          if (options.size !== undefined && accumulator.count >= options.size) flush();
        },
        error: (error: unknown) => {
          stopTimer();
          subscriber.error(error);
        },
        complete: () => {
          flush();
          subscriber.complete();
        },
      });
      return () => {
        stopTimer();
        subscription.unsubscribe();
      };
    });
}

/**
 * Pull batching for `model.fitFrom`: reads records from an (async) iterable — e.g. an
 * object-mode Node readable (wrap it in `readableSource` so cancelling destroys it) — only when
 * the next batch is asked for. With `maxWaitMs`, a partial batch is returned when the source is
 * silent that long after the batch's first record (the pending read is kept for the next batch).
 *
 * Usage: `model.fitFrom(batchRecords(readableSource(objectStream), { size: 32, shape: [4], classes: 3 }), fit)`
 */
export function batchRecords(records: AsyncIterable<StreamRecord> | Iterable<StreamRecord>, options: Omit<BatchByOptions, 'scheduler'>): PullSource<Batch> {
  checkOptions(options, 'batchRecords');
  return cancellable<Batch>(() => {
    const iterator: AsyncIterator<StreamRecord> | Iterator<StreamRecord> =
      Symbol.asyncIterator in records ? records[Symbol.asyncIterator]() : records[Symbol.iterator]();
    const accumulator = new RecordAccumulator(options, 'batchRecords');
    let pending: Promise<IteratorResult<StreamRecord>> | null = null;
    let ended = false;
    let cancelled = false;
    let timer: NodeJS.Timeout | null = null;
    const clearTimer = (): void => {
      if (timer) clearTimeout(timer);
      timer = null;
    };
    async function* batches(): AsyncGenerator<Batch> {
      try {
        while (!ended && !cancelled) {
          let deadline: Promise<'timeout'> | null = null;
          while (!ended && !cancelled && (options.size === undefined || accumulator.count < options.size)) {
            if (!pending) {
              pending = Promise.resolve(iterator.next());
              // If the batch is cut by the timer and the iteration then cancelled, nobody awaits it.
              pending.catch(() => {});
            }
            const result = deadline ? await Promise.race([pending, deadline]) : await pending;
            if (result === 'timeout') break;
            pending = null;
            if (result.done) {
              ended = true;
              break;
            }
            if (accumulator.add(result.value) && accumulator.count === 1 && options.maxWaitMs !== undefined) {
              deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, options.maxWaitMs, 'timeout')));
            }
          }
          clearTimer();
          const batch = accumulator.take();
          if (batch && !cancelled) yield batch;
        }
      } finally {
        clearTimer();
      }
    }
    return {
      iterator: batches(),
      cancel: () => {
        cancelled = true;
        clearTimer();
        // The record source may be waiting for data: cancel it now rather than after its read.
        void Promise.resolve(iterator.return?.()).catch(() => {});
      },
    };
  });
}
