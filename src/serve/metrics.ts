/**
 * The prediction server's Prometheus metrics (prom-client), in a registry of its own so two
 * servers in one process do not mix their counts.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The metrics one server keeps. */
export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'status'>;
  batchRows: Histogram;
  batchRequests: Histogram;
  latency: Histogram;
  modelStep: Gauge;
  queueRequests: Gauge;
  reloads: Counter<'result'>;
}

/**
 * Creates the server's metrics: `rxgrad_requests_total{status}`, `rxgrad_batch_rows`,
 * `rxgrad_batch_requests`, `rxgrad_request_duration_seconds`, `rxgrad_model_step`,
 * `rxgrad_queue_requests`, `rxgrad_reloads_total{result}`, and prom-client's process metrics
 * (`process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`, event-loop lag, …).
 *
 * Usage: `const metrics = serverMetrics(); res.end(await metrics.registry.metrics());`
 */
export function serverMetrics(): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const rowBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
  return {
    registry,
    requests: new Counter({ name: 'rxgrad_requests_total', help: 'Prediction requests answered, by HTTP status.', labelNames: ['status'], registers: [registry] }),
    batchRows: new Histogram({ name: 'rxgrad_batch_rows', help: 'Rows per model batch (after dynamic batching).', buckets: rowBuckets, registers: [registry] }),
    batchRequests: new Histogram({ name: 'rxgrad_batch_requests', help: 'Requests coalesced into one model batch.', buckets: rowBuckets, registers: [registry] }),
    latency: new Histogram({
      name: 'rxgrad_request_duration_seconds', help: 'Time from a prediction request arriving to its answer being written.',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5], registers: [registry],
    }),
    modelStep: new Gauge({ name: 'rxgrad_model_step', help: 'Training step of the model in service.', registers: [registry] }),
    queueRequests: new Gauge({ name: 'rxgrad_queue_requests', help: 'Prediction requests waiting for or in a batch.', registers: [registry] }),
    reloads: new Counter({ name: 'rxgrad_reloads_total', help: 'Checkpoint reloads, by result (loaded, failed).', labelNames: ['result'], registers: [registry] }),
  };
}
