import { Table, tableToIPC } from 'apache-arrow';
import type { Batch } from '../batch.ts';
import type { RedisCaller } from '../streams/redis.ts';

/**
 * Appends batches to a Redis Stream, one entry per batch, each a whole Arrow IPC stream in the
 * binary field `arrow` (what {@link redisStreamSource} and {@link fitReplica} read). Resolves the entry ids.
 *
 * Usage: `const ids = await addBatchEntries(redis, 'fmnist', batchesFromArrays(train, 64));`
 */
export async function addBatchEntries(client: RedisCaller, stream: string, batches: Iterable<Batch>, options: { maxLength?: number } = {}): Promise<string[]> {
  const ids: string[] = [];
  for (const batch of batches) {
    const bytes = Buffer.from(tableToIPC(new Table(batch), 'stream'));
    const args: (string | number | Buffer)[] = [stream];
    if (options.maxLength !== undefined) args.push('MAXLEN', '~', options.maxLength);
    args.push('*', 'arrow', bytes);
    ids.push(String(await client.call('XADD', args)));
  }
  return ids;
}
