/**
 * Rating events → Arrow batches for the recommender models (`user` and `item` Int32 columns, a
 * `targets` column), under the streams' bad-record policy (src/streams/records.ts): a record with a
 * negative or non-integer id, an id past the configured maximum, a rating that is not a finite
 * number, or an empty message either fails the stream with a {@link BadRecordError} naming the
 * record and the field (`onBadRecord: 'error'`, the default) or is skipped and counted in
 * `counters.skipped` (`'skip'`).
 */
import { batchFromColumns, type Batch } from '../batch.ts';
import { streamCounters, type StreamCounters } from '../streams/backpressure.ts';
import { cancellable, type PullSource } from '../streams/pull.ts';
import { BadRecordError } from '../streams/records.ts';
import type { Interactions } from './recommend.ts';

/** One rating as it arrives. */
export interface RatingRecord {
  user: number;
  item: number;
  rating: number;
}

/** Options of {@link RatingAccumulator} and {@link ratingBatches}. */
export interface RatingBatchOptions {
  /** Ids must be integers in [0, maxUsers) and [0, maxItems) (the models' configured maxima). */
  maxUsers: number;
  maxItems: number;
  /** Ratings per batch (default 1024; 1 = one rating at a time). */
  size?: number;
  onBadRecord?: 'error' | 'skip';
  counters?: StreamCounters;
  /** Names the source in messages (default 'ratings'). */
  where?: string;
}

/**
 * Checks rating records and collects them into batches.
 *
 * Usage: `const acc = new RatingAccumulator({ maxUsers: 943, maxItems: 1682 }); acc.add({ user: 1, item: 2, rating: 4 }); acc.take();`
 */
export class RatingAccumulator {
  private users: number[] = [];
  private items: number[] = [];
  private ratings: number[] = [];
  /** Records seen so far, good and bad (the index in messages). */
  seen = 0;
  readonly counters: StreamCounters;

  constructor(private readonly options: RatingBatchOptions) {
    for (const f of ['maxUsers', 'maxItems'] as const) {
      if (!Number.isInteger(options[f]) || options[f] < 1) throw new RangeError(`ratingBatches: ${f} must be a positive integer, got ${options[f]}`);
    }
    this.counters = options.counters ?? streamCounters();
  }

  /** Rows collected for the next batch. */
  get count(): number {
    return this.users.length;
  }

  /** Why `record` is unusable, or null. */
  problem(record: unknown): string | null {
    if (record === null || record === undefined || (typeof record === 'object' && Object.keys(record).length === 0) || record === '') return 'is empty';
    if (typeof record !== 'object') return `is ${typeof record}, not an object with user, item and rating`;
    const r = record as Record<string, unknown>;
    for (const [field, max] of [['user', this.options.maxUsers], ['item', this.options.maxItems]] as const) {
      const v = r[field];
      if (typeof v !== 'number' || !Number.isInteger(v)) return `${field} is ${v === undefined ? 'missing' : JSON.stringify(v)}, not an integer id`;
      if (v < 0) return `${field} ${v} is negative`;
      if (v >= max) return `${field} ${v} is past the configured maximum (ids < ${max})`;
    }
    const rating = r['rating'];
    if (typeof rating !== 'number' || !Number.isFinite(rating)) return `rating is ${rating === undefined ? 'missing' : String(rating)}, not a finite number`;
    return null;
  }

  /** Adds a record (true), skips it (false, counted), or throws a {@link BadRecordError}. */
  add(record: unknown): boolean {
    const index = this.seen++;
    const problem = this.problem(record);
    if (problem !== null) {
      const message = `${this.options.where ?? 'ratings'}: record ${index} ${problem}`;
      if ((this.options.onBadRecord ?? 'error') === 'error') throw new BadRecordError(message, index, undefined);
      this.counters.skipped++;
      this.counters.lastSkipReason = message;
      return false;
    }
    const r = record as RatingRecord;
    this.users.push(r.user);
    this.items.push(r.item);
    this.ratings.push(r.rating);
    return true;
  }

  /** The collected ratings as a batch, or null if none. */
  take(): Batch | null {
    if (this.users.length === 0) return null;
    const batch = batchFromColumns({
      columns: { user: { values: Int32Array.from(this.users) }, item: { values: Int32Array.from(this.items) } },
      targets: Float32Array.from(this.ratings),
    });
    this.users = [];
    this.items = [];
    this.ratings = [];
    return batch;
  }
}

/**
 * Rating records (an array, a generator, a Redis reader) → batches of `size`, read as batches are
 * asked for (a pull source for `model.fitFrom` or `pullThrough(…, testThenTrain(…))`).
 *
 * Usage: `pullThrough(ratingBatches(records, { maxUsers: 943, maxItems: 1682, size: 256, onBadRecord: 'skip' }), testThenTrain(model, fit))`
 */
export function ratingBatches(records: AsyncIterable<unknown> | Iterable<unknown>, options: RatingBatchOptions): PullSource<Batch> {
  const size = options.size ?? 1024;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`ratingBatches: size must be a positive integer, got ${size}`);
  return cancellable<Batch>(() => {
    const accumulator = new RatingAccumulator(options);
    let cancelled = false;
    async function* read(): AsyncGenerator<Batch> {
      for await (const record of records as AsyncIterable<unknown>) {
        if (cancelled) return;
        accumulator.add(record);
        if (accumulator.count >= size) yield accumulator.take()!;
      }
      const rest = accumulator.take();
      if (rest && !cancelled) yield rest;
    }
    return { iterator: read(), cancel: () => (cancelled = true) };
  });
}

/**
 * Batches over interaction arrays held in memory, in order (no checks beyond the batch's own).
 *
 * Usage: `from(interactionBatches(data, 1024)).pipe(testThenTrain(model, fit))`
 */
export function* interactionBatches(data: Interactions, size: number, start = 0, end = data.ratings.length): Generator<Batch> {
  for (let i = start; i < end; i += size) {
    const e = Math.min(end, i + size);
    yield batchFromColumns({
      columns: { user: { values: data.users.subarray(i, e) }, item: { values: data.items.subarray(i, e) } },
      targets: data.ratings.subarray(i, e),
    });
  }
}
