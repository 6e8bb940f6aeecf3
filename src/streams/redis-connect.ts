/**
 * Opens an ioredis client for the Redis stream helpers. ioredis is an optional peer dependency of
 * rxgrad: it is imported only here, on demand, so the package installs and runs without it.
 */
import type { RedisCaller } from './redis.ts';

/** A connected client: what the Redis helpers call, and how to close it. */
export interface RedisConnection extends RedisCaller {
  quit(): Promise<unknown>;
}

/**
 * Connects to Redis with ioredis (install it with `npm install ioredis`); rejects with an error
 * saying so when it is missing.
 *
 * Usage: `const redis = await connectRedis('redis://127.0.0.1:6379'); fitFromRedis(model, redis, options);`
 */
export async function connectRedis(url = 'redis://127.0.0.1:6379'): Promise<RedisConnection> {
  let ioredis: { Redis: new (url: string, options: { lazyConnect: boolean; maxRetriesPerRequest: number }) => RedisConnection & { connect(): Promise<void> } };
  try {
    // A variable specifier: TypeScript must not require ioredis's types to build the package.
    const specifier = 'ioredis';
    ioredis = (await import(specifier)) as typeof ioredis;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new Error("connectRedis: the optional peer dependency 'ioredis' is not installed (npm install ioredis)", { cause: error });
  }
  const client = new ioredis.Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  return client;
}
