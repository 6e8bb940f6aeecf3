/**
 * Online training from a Redis Stream read through a consumer group, at-least-once.
 *
 * Entries are read with XREADGROUP (COUNT = batch size) and become one batch per read; their ids
 * are acknowledged (XACK) only after the optimizer step that used them has been applied. If a
 * step fails (or the process dies) its entries stay in the group's pending list and are
 * delivered again: on start the consumer first re-reads its own pending entries (XREADGROUP with
 * id 0), and with `claimIdleMs` it takes over entries left pending by other consumers for that
 * long (XAUTOCLAIM), before reading new ones (`>`). A step may therefore see an entry twice,
 * never zero times.
 *
 * Entry fields: `features` (a JSON array of numbers), `label` (an integer), `target` (a JSON
 * array), `key` (a string). Bad entries follow `onBadRecord` like any record source; skipped ones
 * are acknowledged with their batch (redelivering them would fail again).
 *
 * The client is anything with ioredis's `call(command, args)`; this module does not import ioredis.
 */
import { defer, concatMap, from, map, Observable, type OperatorFunction } from 'rxjs';
import type { Batch } from '../batch.ts';
import type { FitOptions, Model, StepReport } from '../model.ts';
import { streamCounters, type StreamCounters } from './backpressure.ts';
import { cancellable, type PullSource } from './pull.ts';
import { RecordAccumulator, type RecordOptions, type StreamRecord } from './records.ts';

/** The one method of an ioredis client (or any client like it) that this module uses. */
export interface RedisCaller {
  call(command: string, args: (string | number)[]): Promise<unknown>;
}

/** Options of {@link redisStreamSource} and {@link fitFromRedis}. */
export interface RedisStreamOptions extends RecordOptions {
  stream: string;
  group: string;
  /** This consumer's name within the group (pending entries are per consumer). */
  consumer: string;
  /** Entries per read, i.e. the largest batch (default 32). */
  count?: number;
  /** How long a read waits for new entries, in ms (default 1000). */
  blockMs?: number;
  /** Create the group (and the stream) if missing, reading from the start (default true). */
  createGroup?: boolean;
  /** Take over entries other consumers left pending at least this long (XAUTOCLAIM), before reading new ones. */
  claimIdleMs?: number;
  /** End the iteration when a read finds no new entry (default false: wait for more). */
  stopWhenIdle?: boolean;
}

/** One read: the batch (null if every entry was bad and skipped) and the ids to acknowledge after its step. */
export interface RedisBatch {
  batch: Batch | null;
  /** Every entry id of the read, skipped ones included. */
  ids: string[];
  /** How many of them were delivered before (pending or claimed entries). */
  redelivered: number;
}

type Entry = [id: string, fields: string[] | null];

function parseEntries(reply: unknown): Entry[] {
  // XREADGROUP: null on timeout; RESP2 answers [[stream, entries], …], RESP3 a map that clients
  // flatten to [stream, entries, …]. Entries are [id, [field, value, …]] (null fields if deleted).
  if (reply === null || reply === undefined) return [];
  if (!Array.isArray(reply)) throw new TypeError(`XREADGROUP: unexpected reply ${JSON.stringify(reply)}`);
  if (typeof reply[0] === 'string') return reply.filter((_, i) => i % 2 === 1).flat() as Entry[];
  return (reply as [string, Entry[]][]).flatMap(([, entries]) => entries);
}

function toRecord(fields: string[] | null): unknown {
  if (fields === null) return null; // deleted from the stream while pending
  const record: Record<string, unknown> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    try {
      if (name === 'features' || name === 'target') record[name] = JSON.parse(value);
      else if (name === 'label') record[name] = value.trim() === '' ? Number.NaN : Number(value);
      else if (name === 'key') record[name] = value;
    } catch {
      record[name] = `unparseable ${name}`;
    }
  }
  return record;
}

/**
 * Batches read from a Redis Stream through a consumer group (see the module comment); a pull
 * source: the next XREADGROUP is sent when the next batch is asked for. Acknowledge with
 * {@link ackEntries} after using a batch, or use {@link fitFromRedis}.
 *
 * Usage: `for await (const { batch, ids } of redisStreamSource(redis, { stream: 's', group: 'g', consumer: 'c1', shape: [4], classes: 3 })) …`
 */
export function redisStreamSource(client: RedisCaller, options: RedisStreamOptions): PullSource<RedisBatch> {
  const count = options.count ?? 32;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`redisStreamSource: count must be a positive integer, got ${count}`);
  return cancellable<RedisBatch>(() => {
    let cancelled = false;
    const accumulator = new RecordAccumulator({ ...options, size: count }, `redis stream '${options.stream}'`);
    async function* reads(): AsyncGenerator<RedisBatch> {
      if (options.createGroup ?? true) {
        try {
          await client.call('XGROUP', ['CREATE', options.stream, options.group, '0', 'MKSTREAM']);
        } catch (error) {
          if (!/BUSYGROUP/.test((error as Error).message)) throw error;
        }
      }
      if (options.claimIdleMs !== undefined) {
        // Take over what dead consumers left: the claimed entries join our pending list, read next.
        let cursor = '0-0';
        do {
          const reply = (await client.call('XAUTOCLAIM', [options.stream, options.group, options.consumer, options.claimIdleMs, cursor, 'COUNT', count, 'JUSTID'])) as [string, ...unknown[]];
          cursor = reply[0];
        } while (cursor !== '0-0' && !cancelled);
      }
      // Our own pending entries first (delivered before, never acknowledged), then new ones.
      let pendingFrom: string | null = '0';
      while (!cancelled) {
        const args: (string | number)[] = ['GROUP', options.group, options.consumer, 'COUNT', count];
        if (pendingFrom === null) args.push('BLOCK', options.blockMs ?? 1000);
        args.push('STREAMS', options.stream, pendingFrom ?? '>');
        const entries = parseEntries(await client.call('XREADGROUP', args));
        if (cancelled) return;
        if (entries.length === 0) {
          if (pendingFrom !== null) {
            pendingFrom = null;
            continue;
          }
          if (options.stopWhenIdle) return;
          continue;
        }
        if (pendingFrom !== null) pendingFrom = entries.at(-1)![0];
        for (const [, fields] of entries) accumulator.add(toRecord(fields));
        yield { batch: accumulator.take(), ids: entries.map(([id]) => id), redelivered: pendingFrom !== null ? entries.length : 0 };
      }
    }
    return {
      iterator: reads(),
      cancel: () => {
        cancelled = true;
      },
    };
  });
}

/**
 * Acknowledges entries of a consumer group (XACK); resolves the number acknowledged.
 *
 * Usage: `await ackEntries(redis, 'events', 'trainers', ids);`
 */
export async function ackEntries(client: RedisCaller, stream: string, group: string, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return Number(await client.call('XACK', [stream, group, ...ids]));
}

/** A step report of {@link fitFromRedis}. */
export interface RedisStepReport extends StepReport {
  /** Entries acknowledged after this step (its batch's entries plus skipped ones). */
  acked: number;
  /** Entries of this step that had been delivered before. */
  redelivered: number;
  /** Records skipped as bad so far. */
  skipped: number;
}

/**
 * Trains from a Redis Stream consumer group, acknowledging each step's entries only after the
 * step is applied; a failed step leaves them pending for redelivery (see the module comment).
 * Reads are pulled at the model's pace (`model.fitFrom`).
 *
 * Usage: `fitFromRedis(model, redis, { stream: 'digits', group: 'trainers', consumer: 'c1', shape: [784], classes: 10, fit: { loss, optimizer } }).subscribe(log)`
 */
export function fitFromRedis(model: Model, client: RedisCaller, options: RedisStreamOptions & { fit: FitOptions }): Observable<RedisStepReport> {
  return defer(() => {
    const counters: StreamCounters = options.counters ?? streamCounters();
    const source = redisStreamSource(client, { ...options, counters });
    // Ids of the batches handed to the model, oldest first: fitFrom emits one report per batch, in order.
    const inFlight: RedisBatch[] = [];
    async function* batches(): AsyncGenerator<Batch> {
      for await (const read of source) {
        if (read.batch === null) {
          // Every entry was bad and skipped: nothing to train, and redelivery would fail again.
          await ackEntries(client, options.stream, options.group, read.ids);
          continue;
        }
        inFlight.push(read);
        yield read.batch;
      }
    }
    const ack: OperatorFunction<StepReport, RedisStepReport> = concatMap((report) => {
      const read = inFlight.shift()!;
      return from(ackEntries(client, options.stream, options.group, read.ids)).pipe(
        map((acked): RedisStepReport => ({ ...report, acked, redelivered: read.redelivered, skipped: counters.skipped })),
      );
    });
    return model.fitFrom(batches(), options.fit).pipe(ack);
  });
}

/** Re-exported for callers that build records themselves. */
export type { StreamRecord };
