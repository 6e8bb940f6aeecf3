/**
 * Serving: an HTTP prediction server with dynamic batching, hot reload and Prometheus metrics.
 *
 * Usage: `import { serve } from 'rxgrad'; const server = await serve('runs/live', { port: 8080 });`
 */
export { serve } from './server.ts';
export type { ServeOptions, PredictionServer } from './server.ts';
export { dynamicBatching } from './batching.ts';
export type { DynamicBatchingOptions } from './batching.ts';
export { BadRequestError, decodeJson, decodeArrow, encodeJson, encodeArrow, ARROW_STREAM, ARROW_FILE } from './codec.ts';
export type { DecodedRows, InputSpec, RowsResult } from './codec.ts';
export { ModelSlot, loadSlot, manifestPath } from './reload.ts';
export type { ServedModel, ReloadEvent } from './reload.ts';
export type { ServerMetrics } from './metrics.ts';
