/**
 * Redis commands that survive a server restart: connection errors are retried with backoff for a
 * bounded time (ioredis reconnects underneath), then fail with an error that says so. Everything
 * the group sends through it is idempotent (SET, SADD, SREM, PEXPIRE, GET), so a retried command
 * that had in fact been executed does no harm.
 */
import type { RedisCaller } from '../streams/redis.ts';

/** A client able to return binary replies (ioredis's `Redis`). */
export interface BinaryRedis extends RedisCaller {
  callBuffer(command: string, args: (string | number | Buffer)[]): Promise<unknown>;
  /** A second connection to the same server (ioredis's `duplicate`): a replica blocks on it while a round closes, instead of polling. */
  duplicate?(): BinaryRedis & { disconnect(): void };
}

const TRANSIENT = /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Connection is closed|Stream isn't writeable|LOADING|MaxRetriesPerRequest|max retries per request|enableOfflineQueue|Socket closed unexpectedly/i;

/** True for errors of a lost or reconnecting connection (worth retrying). Usage: `if (isTransient(e)) retry()` */
export function isTransient(error: unknown): boolean {
  return TRANSIENT.test((error as Error)?.message ?? '');
}

/**
 * Runs `issue`, which sends commands synchronously, with the client's socket corked when it exposes one
 * (ioredis's `stream`), so those commands leave in one write. Each write to a loopback socket is a
 * syscall that also runs the receiving side and wakes Redis: 0.1-0.25 ms apiece on this machine's VM,
 * measured in a replica's CPU profile, against a CNN step of ~10 ms with 6-7 commands per step.
 *
 * Usage: `const replies = coalesced(redis, () => Promise.all([redis.call('SET', a), redis.call('GET', b)]));`
 */
export function coalesced<T>(client: unknown, issue: () => T): T {
  const socket = (client as { stream?: { cork?: unknown; uncork?: unknown; writable?: boolean } } | null)?.stream;
  if (!socket || typeof socket.cork !== 'function' || typeof socket.uncork !== 'function' || socket.writable === false) return issue();
  const { cork, uncork } = socket as { cork: () => void; uncork: () => void };
  cork.call(socket);
  try {
    return issue();
  } finally {
    uncork.call(socket);
  }
}

/** Counts retries for reports. */
export interface RetryStats {
  retries: number;
  lastError: string | null;
}

/** True once an ioredis client will not reconnect: closed by `disconnect()` / `quit()`, or given up on. */
export function clientEnded(client: unknown): boolean {
  return (client as { status?: unknown } | null)?.status === 'end';
}

/**
 * Runs `command` until it succeeds, retrying transient failures for up to `retryForMs`; not when the
 * `client` it runs on has ended (closed on purpose: nothing would reconnect it, and retrying would only
 * keep the process alive).
 *
 * Usage: `await retrying(() => redis.call('SET', [key, value]), 30_000, 'SET', stats, redis);`
 */
export async function retrying<T>(command: () => Promise<T>, retryForMs: number, what: string, stats?: RetryStats, client?: unknown): Promise<T> {
  const started = performance.now();
  let delay = 20;
  for (;;) {
    try {
      return await command();
    } catch (error) {
      if (!isTransient(error) || clientEnded(client)) throw error;
      if (stats) {
        stats.retries++;
        stats.lastError = (error as Error).message;
      }
      if (performance.now() - started > retryForMs) {
        throw new Error(`Redis unreachable for ${Math.round(retryForMs / 1000)} s (${what}): ${(error as Error).message}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 500);
    }
  }
}
