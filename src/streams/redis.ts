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
 * array), `key` (a string); or one binary field `arrow` holding a whole Arrow IPC stream with one
 * record batch (read through the verified IPC framing; needs a client with `callBuffer`, as
 * ioredis has), which becomes a batch of its own. Bad entries follow `onBadRecord` like any record
 * source; skipped ones are acknowledged with their batch (redelivering them would fail again).
 *
 * With `claimEveryMs`, the takeover is repeated during the run: every so often the consumer claims
 * entries idle for `claimIdleMs` (a replica that died mid-run) and re-reads its own pending list
 * (entries it chose not to acknowledge), so nothing stays pending while the consumer runs.
 *
 * The client is anything with ioredis's `call(command, args)`; this module does not import ioredis.
 */
import { defer, concatMap, from, map, Observable, type OperatorFunction } from 'rxjs';
import type { Batch } from '../batch.ts';
import type { FitOptions, Model, StepReport } from '../model.ts';
import { streamCounters, type StreamCounters } from './backpressure.ts';
import { cancellable, type PullSource } from './pull.ts';
import { batchesFromIpc } from './ipc.ts';
import { BadRecordError, RecordAccumulator, type RecordOptions, type StreamRecord } from './records.ts';
import { tensorColumn, labelColumn } from '../batch.ts';
import { formatShape } from '../tensor.ts';

/** The method of an ioredis client (or any client like it) that this module uses; `callBuffer` (binary replies) enables Arrow entries. */
export interface RedisCaller {
  call(command: string, args: (string | number | Buffer)[]): Promise<unknown>;
  callBuffer?(command: string, args: (string | number | Buffer)[]): Promise<unknown>;
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
  /** Repeat the takeover (XAUTOCLAIM with `claimIdleMs`, then this consumer's own pending entries) at most this often during the run. */
  claimEveryMs?: number;
  /**
   * End the iteration when a read finds no new entry (default false: wait for more); 'drained':
   * only once the group has no pending entry either (every entry acknowledged by someone).
   */
  stopWhenIdle?: boolean | 'drained';
  /** Called after a read that found no new entry (and did not end the iteration); the next read waits for it. */
  onIdle?: () => Promise<void>;
}

/** One read: the batch (null if every entry was bad and skipped) and the ids to acknowledge after its step. */
export interface RedisBatch {
  batch: Batch | null;
  /** Every entry id of the read, skipped ones included. */
  ids: string[];
  /** How many of them were delivered before (pending or claimed entries). */
  redelivered: number;
}

type Value = string | Buffer;
type Entry = [id: string, fields: Value[] | null];

function parseEntries(reply: unknown): Entry[] {
  // XREADGROUP: null on timeout; RESP2 answers [[stream, entries], …], RESP3 a map that clients
  // flatten to [stream, entries, …]. Entries are [id, [field, value, …]] (null fields if deleted).
  if (reply === null || reply === undefined) return [];
  if (!Array.isArray(reply)) throw new TypeError(`XREADGROUP: unexpected reply ${JSON.stringify(reply)}`);
  const isName = (v: unknown) => typeof v === 'string' || Buffer.isBuffer(v);
  const entries = isName(reply[0]) ? (reply.filter((_, i) => i % 2 === 1).flat() as Entry[]) : (reply as [Value, Entry[]][]).flatMap(([, e]) => e);
  return entries.map(([id, fields]) => [String(id), fields]);
}

/** The Arrow batch of an entry's `arrow` field, or null if it has none; throws (a message for onBadRecord) if unusable. */
function arrowBatch(fields: Value[] | null, options: RedisStreamOptions): Batch | null {
  if (fields === null) return null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (String(fields[i]) !== 'arrow') continue;
    const value = fields[i + 1]!;
    if (!Buffer.isBuffer(value)) throw new TypeError("field 'arrow' arrived as text: read with a client that has callBuffer (ioredis)");
    const batches = batchesFromIpc(value);
    if (batches.length !== 1) throw new RangeError(`field 'arrow' holds ${batches.length} record batches, expected 1`);
    const batch = batches[0]!;
    const features = tensorColumn(batch, 'features');
    if (features.shape.length !== options.shape.length || features.shape.some((d, k) => d !== options.shape[k])) {
      throw new RangeError(`field 'arrow': features have shape ${formatShape(features.shape)} per row, expected ${formatShape(options.shape)}`);
    }
    if (batch.numRows === 0) throw new RangeError("field 'arrow': the batch has no rows");
    if (options.classes !== undefined) {
      const labels = labelColumn(batch);
      if (!labels) throw new RangeError("field 'arrow': the batch has no labels column");
      const bad = labels.values.findIndex((l) => !(l >= 0 && l < options.classes!));
      if (bad >= 0) throw new RangeError(`field 'arrow': label ${labels.values[bad]} at row ${bad} is not in [0, ${options.classes})`);
    }
    return batch;
  }
  return null;
}

function toRecord(fields: Value[] | null): unknown {
  if (fields === null) return null; // deleted from the stream while pending
  const record: Record<string, unknown> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = String(fields[i]!);
    const value = String(fields[i + 1]!);
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
      const call = (command: string, args: (string | number)[]) => (client.callBuffer ? client.callBuffer(command, args) : client.call(command, args));
      let lastClaim = Number.NEGATIVE_INFINITY;
      /** Takes over what dead consumers left: the claimed entries join our pending list, read next. */
      const claim = async () => {
        lastClaim = performance.now();
        let cursor = '0-0';
        do {
          const reply = (await client.call('XAUTOCLAIM', [options.stream, options.group, options.consumer, options.claimIdleMs!, cursor, 'COUNT', count, 'JUSTID'])) as [string, ...unknown[]];
          cursor = String(reply[0]);
        } while (cursor !== '0-0' && !cancelled);
      };
      const pendingInGroup = async () => Number(((await client.call('XPENDING', [options.stream, options.group])) as unknown[])[0]);
      if (options.claimIdleMs !== undefined) await claim();
      // Our own pending entries first (delivered before, never acknowledged), then new ones.
      let pendingFrom: string | null = '0';
      let redelivering = false;
      while (!cancelled) {
        if (pendingFrom === null && options.claimIdleMs !== undefined && options.claimEveryMs !== undefined && performance.now() - lastClaim >= options.claimEveryMs) {
          await claim();
          pendingFrom = '0';
        }
        const args: (string | number)[] = ['GROUP', options.group, options.consumer, 'COUNT', count];
        if (pendingFrom === null) args.push('BLOCK', options.blockMs ?? 1000);
        args.push('STREAMS', options.stream, pendingFrom ?? '>');
        const entries = parseEntries(await call('XREADGROUP', args));
        if (cancelled) return;
        if (entries.length === 0) {
          if (pendingFrom !== null) {
            pendingFrom = null;
            continue;
          }
          if (options.stopWhenIdle === true) return;
          if (options.stopWhenIdle === 'drained' && (await pendingInGroup()) === 0) return;
          await options.onIdle?.();
          continue;
        }
        redelivering = pendingFrom !== null;
        if (pendingFrom !== null) pendingFrom = entries.at(-1)![0];
        // JSON records of a read make one batch; an Arrow entry is a batch of its own.
        let ids: string[] = [];
        const flush = function* (): Generator<RedisBatch> {
          if (ids.length === 0) return;
          yield { batch: accumulator.take(), ids, redelivered: redelivering ? ids.length : 0 };
          ids = [];
        };
        for (const [id, fields] of entries) {
          let batch: Batch | null;
          try {
            batch = arrowBatch(fields, options);
          } catch (error) {
            // The record policy applies to Arrow entries too; the message names the entry.
            const index = accumulator.seen++;
            const message = `redis stream '${options.stream}': entry ${id} (record ${index}): ${(error as Error).message}`;
            if ((options.onBadRecord ?? 'error') === 'error') throw new BadRecordError(message, index, undefined);
            accumulator.counters.skipped++;
            accumulator.counters.lastSkipReason = message;
            ids.push(id);
            continue;
          }
          if (batch === null) {
            accumulator.add(toRecord(fields));
            ids.push(id);
            continue;
          }
          yield* flush();
          yield { batch, ids: [id], redelivered: redelivering ? 1 : 0 };
        }
        yield* flush();
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
