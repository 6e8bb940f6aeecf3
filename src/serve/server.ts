/**
 * The prediction server: node:http in front of an RxJS pipeline. Each decoded request becomes an
 * item of one Subject; `dynamicBatching` coalesces concurrent requests into model batches; each
 * batch's output rows are handed back to the requests they came from. See docs/SERVING.md.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { defer, lastValueFrom, map, of, Subject, type Observable } from 'rxjs';
import { batchFromArrays, floatColumn, labelColumn } from '../batch.ts';
import type { Engine } from '../engine.ts';
import type { Model } from '../model.ts';
import { sizeOf } from '../tensor.ts';
import { dynamicBatching } from './batching.ts';
import { ARROW_FILE, ARROW_STREAM, BadRequestError, decodeArrow, decodeJson, encodeArrow, encodeJson, type DecodedRows, type InputSpec, type RowsResult } from './codec.ts';
import { serverMetrics, type ServerMetrics } from './metrics.ts';
import { loadSlot, ModelSlot, type ReloadEvent } from './reload.ts';

/** Options of {@link serve}. */
export interface ServeOptions {
  /** TCP port (default 8080; 0 picks a free one). */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Coalesce concurrent requests into batches (default true); false runs each request alone. */
  batching?: boolean;
  /** Largest model batch, in rows (default 64). */
  maxBatch?: number;
  /** Longest a request waits for others to share its batch (default 2 ms). */
  maxWaitMs?: number;
  /** Largest request, in rows (default maxBatch); larger ones get 413. */
  maxRequestRows?: number;
  /** Largest request body (default 8 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Requests accepted but not yet answered (default 256); beyond it new requests get 503 at once. */
  maxQueue?: number;
  /** With a checkpoint path: watch it and swap in new commits (default true). */
  watch?: boolean;
  /** Stat poll interval of the watch, the fallback of fs.watch (default 500 ms). */
  pollMs?: number;
  /** The engine to load checkpoints into (default the default engine). */
  engine?: Engine;
  /** Where reloads and failures are logged (default: nowhere). */
  log?: (line: string) => void;
}

/** A running server. */
export interface PredictionServer {
  /** `http://host:port`. */
  readonly url: string;
  readonly port: number;
  /** The Prometheus registry behind `/metrics`. */
  readonly metrics: ServerMetrics;
  /** Every reload attempt (loaded or failed). */
  readonly reloads$: Observable<ReloadEvent>;
  /** The model in service now. */
  readonly model: Model;
  /** Stops listening, answers what is queued, stops the watcher and disposes loaded models. */
  close(): Promise<void>;
}

interface Pending extends DecodedRows {
  respond(status: number, result: RowsResult | { error: string }): void;
}

const jsonError = (message: string) => JSON.stringify({ error: message });

/** Reads a body up to `limit` bytes; rejects with a 413 BadRequestError beyond it. */
function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BadRequestError(`body exceeds ${limit} bytes`, 413));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const isArrow = (type: string | undefined) => type !== undefined && (type.includes(ARROW_STREAM) || type.includes(ARROW_FILE));

/**
 * Serves predictions over HTTP from a model, or from a checkpoint path that it watches and
 * hot-reloads. `POST /predict` (JSON or Arrow IPC), `GET /health`, `GET /metrics`.
 *
 * Usage: `const server = await serve('runs/live', { port: 8080, maxBatch: 64, maxWaitMs: 2 }); … await server.close();`
 */
export async function serve(source: Model | string, options: ServeOptions = {}): Promise<PredictionServer> {
  const maxBatch = options.maxBatch ?? 64;
  const maxRequestRows = options.maxRequestRows ?? maxBatch;
  const maxBodyBytes = options.maxBodyBytes ?? 8 << 20;
  const maxQueue = options.maxQueue ?? 256;
  for (const [name, value] of [['maxBatch', maxBatch], ['maxRequestRows', maxRequestRows], ['maxBodyBytes', maxBodyBytes], ['maxQueue', maxQueue]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`serve: ${name} must be a positive integer, got ${value}`);
  }
  const log = options.log ?? (() => undefined);
  const slot = typeof source === 'string' ? await loadSlot(source, options.engine) : new ModelSlot(source);
  const metrics = serverMetrics();
  metrics.modelStep.set(slot.served.step);
  let pending = 0;

  slot.reloads$.subscribe((event) => {
    metrics.reloads.inc({ result: event.kind });
    if (event.kind === 'loaded') {
      metrics.modelStep.set(event.step);
      log(`reloaded the checkpoint at step ${event.step} (${event.seconds.toFixed(3)} s)`);
    } else {
      log(`reload failed, still serving step ${slot.served.step}: ${event.error.message}`);
    }
  });
  if (typeof source === 'string' && options.watch !== false) await slot.watch(source, { pollMs: options.pollMs ?? 500, ...(options.engine ? { engine: options.engine } : {}) });

  /** One model batch for a group of requests; answers each request with its own rows, never errors. */
  const runGroup = (group: Pending[]): Observable<void> =>
    defer(async () => {
      const served = slot.acquire();
      const { model } = served;
      try {
        const width = sizeOf(model.inputShape);
        // A reload may have changed the input between a request's decoding and its batch.
        const fits = group.filter((p) => {
          if (p.features.length === p.rows * width && (p.features instanceof Int32Array) === (model.inputDType === 'int32')) return true;
          p.respond(400, { error: `the model now in service (step ${served.step}) takes ${width} ${model.inputDType} values per row` });
          return false;
        });
        if (fits.length === 0) return;
        const rows = fits.reduce((n, p) => n + p.rows, 0);
        const features = model.inputDType === 'int32' ? new Int32Array(rows * width) : new Float32Array(rows * width);
        let at = 0;
        for (const p of fits) {
          features.set(p.features, at);
          at += p.features.length;
        }
        metrics.batchRows.observe(rows);
        metrics.batchRequests.observe(fits.length);
        try {
          const out = await lastValueFrom(of(batchFromArrays({ features, shape: model.inputShape })).pipe(model.predict()));
          const output = floatColumn(out, 'output').values;
          const prediction = out.schema.fields.some((f) => f.name === 'prediction') ? (labelColumn(out, 'prediction')?.values ?? null) : null;
          const outWidth = sizeOf(model.outputShape);
          let row = 0;
          for (const p of fits) {
            p.respond(200, {
              output: output.slice(row * outWidth, (row + p.rows) * outWidth), outputShape: model.outputShape,
              prediction: prediction ? prediction.slice(row, row + p.rows) : null, step: served.step, model: model.name,
            });
            row += p.rows;
          }
        } catch (error) {
          for (const p of fits) p.respond(500, { error: `prediction failed: ${(error as Error).message}` });
        }
      } finally {
        slot.release(served);
      }
    });

  const requests$ = new Subject<Pending>();
  const done = lastValueFrom(
    requests$.pipe(
      options.batching === false
        ? dynamicBatching({ maxRows: 1, maxWaitMs: 0 }, runGroup)
        : dynamicBatching({ maxRows: maxBatch, maxWaitMs: options.maxWaitMs ?? 2 }, runGroup),
      map(() => undefined),
    ),
    { defaultValue: undefined },
  );

  async function predict(req: IncomingMessage, res: ServerResponse, started: number): Promise<void> {
    const contentType = req.headers['content-type'];
    // Arrow IPC when it says so; anything else is read as JSON (curl -d sends form-urlencoded).
    const arrowIn = isArrow(contentType);
    const accept = req.headers.accept;
    const arrowOut = accept?.includes(ARROW_STREAM) ? true : accept?.includes('application/json') ? false : arrowIn;
    let answered = false;
    const finish = (status: number, body: string | Uint8Array, type: string, close = false) => {
      if (answered) return;
      answered = true;
      pending--;
      metrics.queueRequests.set(pending);
      metrics.requests.inc({ status: String(status) });
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...(close ? { connection: 'close' } : {}), ...(status === 503 ? { 'retry-after': '1' } : {}) });
      res.end(body, () => metrics.latency.observe((performance.now() - started) / 1000));
    };
    const fail = (status: number, message: string, close = false) => finish(status, jsonError(message), 'application/json', close);

    if (pending >= maxQueue) {
      pending++;
      req.resume();
      return fail(503, `overloaded: ${maxQueue} requests already queued; retry later`, true);
    }
    pending++;
    metrics.queueRequests.set(pending);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBodyBytes) {
      req.resume();
      return fail(413, `body of ${declared} bytes exceeds the limit of ${maxBodyBytes}`, true);
    }
    let decoded: DecodedRows;
    try {
      const body = await readBody(req, maxBodyBytes);
      const model = slot.served.model;
      const spec: InputSpec = { shape: model.inputShape, dtype: model.inputDType, maxRows: maxRequestRows };
      decoded = arrowIn ? decodeArrow(body, spec) : decodeJson(body, spec);
    } catch (error) {
      if (error instanceof BadRequestError) return fail(error.status, error.message, error.status === 413);
      return fail(400, `could not read the request: ${(error as Error).message}`, true);
    }
    requests$.next({
      ...decoded,
      respond: (status, result) => {
        if ('error' in result) return fail(status, result.error);
        if (arrowOut) finish(status, encodeArrow(result), ARROW_STREAM);
        else finish(status, encodeJson(result, decoded.single), 'application/json');
      },
    });
  }

  const server: Server = createServer((req, res) => {
    const started = performance.now();
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/predict') {
      if (req.method !== 'POST') {
        res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' }).end(jsonError('use POST /predict'));
        return;
      }
      predict(req, res, started).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(jsonError((error as Error).message));
      });
      return;
    }
    if (req.method === 'GET' && path === '/health') {
      const { model, step } = slot.served;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        status: 'ok', model: model.name, step, inputShape: model.inputShape, inputDType: model.inputDType, outputShape: model.outputShape, queue: pending,
      }));
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (error: unknown) => res.writeHead(500).end(String(error)),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(jsonError(`no route ${req.method} ${path}: POST /predict, GET /health, GET /metrics`));
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    // Nothing may outlive a server that never started: the watcher's timers, a loaded model.
    requests$.complete();
    slot.close();
    throw error;
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    metrics,
    reloads$: slot.reloads$.asObservable(),
    get model() {
      return slot.served.model;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      requests$.complete();
      await done;
      await closed;
      slot.close();
    },
  };
}
