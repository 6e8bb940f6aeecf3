/**
 * Online learning from live streams: sources (pull and push), backpressure, record batching,
 * test-then-train with rolling metrics and delayed labels, Redis Streams.
 *
 * Usage: `import { ipcSource, batchBy, trainWithBackpressure, testThenTrain } from 'rxgrad/src/streams/index.ts';`
 */
export * from './sources.ts';
export { rollingMetrics, RollingMetrics, scoreExample, ScoreSums } from './metrics.ts';
export type { ExampleScore, RollingSnapshot } from './metrics.ts';
export { testThenTrain, testThenTrainDelayed } from './test-then-train.ts';
export type { TestThenTrainOptions, ProgressiveReport, DelayedLabel, DelayedOptions, DelayedEvent } from './test-then-train.ts';
export { redisStreamSource, fitFromRedis, ackEntries } from './redis.ts';
export { connectRedis } from './redis-connect.ts';
export type { RedisConnection } from './redis-connect.ts';
export type { RedisCaller, RedisStreamOptions, RedisBatch, RedisStepReport } from './redis.ts';
