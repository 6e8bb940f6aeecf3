/**
 * Serving and learning in one process: an HTTP server (node:http, the request handling an RxJS
 * pipeline) answers `POST /predict` with the model's prediction while the same model trains
 * online from a stream of digits. It measures the event-loop delay (p50/p99, perf_hooks
 * `monitorEventLoopDelay`) while idle and while training (after a 0.3 s warm-up), and prints
 * both. Training steps share the loop with the server: the training source hands the model one
 * batch per event-loop turn, so a request waits for at most one step.
 *
 *   POST /predict  {"features": [784 numbers in 0..1]}            → {"prediction": 7, "output": [...10], "step": 812}
 *   POST /predict  {"instances": [[784 numbers], [784 numbers]]}   → {"predictions": [7, 2], "step": 812}
 *   GET  /stats                                                   → {"step", "phase", "requests"}
 *
 * Usage:
 *   npx tsx examples/host-server.ts                  # port 8080: 3 s idle, 20 s training, then prints and exits
 *   npx tsx examples/host-server.ts --quick          # ephemeral port: 0.6 s idle, 2 s training
 *   curl -s localhost:8080/predict -d "{\"features\": [$(python3 -c 'print(",".join(["0"]*784))')]}"
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError } from 'commander';
import { catchError, map, mergeMap, Observable, of, type Subscription } from 'rxjs';
import { adam, batchFromArrays, closeDefaultEngine, defaultEngine, dense, floatColumn, relu, sequential, softmaxCrossEntropy, type Batch } from '../src/index.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!(n > 0)) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};
const options = new Command()
  .name('host-server')
  .description('Serve predictions over HTTP while the same model trains online; report event-loop delay idle vs training.')
  .option('--quick', 'ephemeral port, 0.6 s idle, 2 s training')
  .option('--port <n>', 'port (0: ephemeral)', Number)
  .option('--idle-seconds <s>', 'idle measurement', positive('--idle-seconds'))
  .option('--train-seconds <s>', 'training measurement', positive('--train-seconds'))
  .option('--batch-size <n>', 'training batch size', positive('--batch-size'), 64)
  .parse()
  .opts<{ quick?: boolean; port?: number; idleSeconds?: number; trainSeconds?: number; batchSize: number }>();
const port = options.port ?? (options.quick ? 0 : 8080);
const idleSeconds = options.idleSeconds ?? (options.quick ? 0.6 : 3);
const trainSeconds = options.trainSeconds ?? (options.quick ? 2 : 20);

const { train } = loadEmbeddedMnist({ train: 8000, test: 0 });
const WIDTH = 784;
// timeSliceMs 0: the event loop gets a turn before every step, so a request waits for at most one
// step (~1 ms) rather than the default 4 ms slice.
const model = sequential([dense(128), relu(), dense(10)], { inputShape: [WIDTH], seed: 1, name: 'served-mlp', timeSliceMs: 0 });
// What a dashboard would show: the latest gradient norm and training loss, from the model's Observables.
let latest: { gradientNorm: number | null; loss: number | null } = { gradientNorm: null, loss: null };
const watching = model.gradients$.subscribe(({ globalNorm }) => (latest = { ...latest, gradientNorm: globalNorm }));
let phase: 'idle' | 'training' | 'done' = 'idle';
let requests = 0;

// ------------------------------------------------------------------ HTTP as an RxJS pipeline

interface Exchange {
  request: IncomingMessage;
  response: ServerResponse;
}
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const server = createServer();
/** Every request as a value; unsubscribing detaches the handler. */
const exchanges$ = new Observable<Exchange>((subscriber) => {
  const onRequest = (request: IncomingMessage, response: ServerResponse) => subscriber.next({ request, response });
  server.on('request', onRequest);
  return () => server.off('request', onRequest);
});

/** The JSON body, at most 1 MiB. */
function body(request: IncomingMessage): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > 1 << 20) subscriber.error(new HttpError(413, 'body larger than 1 MiB'));
      else chunks.push(chunk);
    };
    const onEnd = () => {
      try {
        subscriber.next(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        subscriber.complete();
      } catch {
        subscriber.error(new HttpError(400, 'body is not JSON'));
      }
    };
    request.on('data', onData).on('end', onEnd).on('error', (e) => subscriber.error(e));
    return () => request.off('data', onData).off('end', onEnd);
  });
}

/** `{features}` or `{instances}` → a batch; every row must be 784 finite numbers. */
function toBatch(json: unknown): { batch: Batch; single: boolean } {
  const object = (json ?? {}) as { features?: unknown; instances?: unknown };
  const single = object.features !== undefined;
  const rows = single ? [object.features] : object.instances;
  if (!Array.isArray(rows) || rows.length === 0 || rows.length > 1024) throw new HttpError(400, "expected {features: number[784]} or {instances: number[784][]} (1 … 1024 rows)");
  const features = new Float32Array(rows.length * WIDTH);
  rows.forEach((row: unknown, r) => {
    if (!Array.isArray(row) || row.length !== WIDTH || !row.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new HttpError(400, `row ${r}: expected ${WIDTH} finite numbers`);
    }
    features.set(row as number[], r * WIDTH);
  });
  return { batch: batchFromArrays({ features, shape: [WIDTH] }), single };
}

function reply(response: ServerResponse, status: number, payload: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
}

const serving: Subscription = exchanges$
  .pipe(
    mergeMap(({ request, response }) => {
      requests++;
      if (request.method === 'GET' && request.url === '/stats') return of(() => reply(response, 200, { step: model.stepCount, phase, requests, ...latest }));
      if (request.method !== 'POST' || request.url !== '/predict') return of(() => reply(response, 404, { error: 'POST /predict or GET /stats' }));
      return body(request).pipe(
        map(toBatch),
        // The prediction is a model step like any other: serialised with the training steps.
        mergeMap(({ batch, single }) =>
          of(batch).pipe(
            model.predict(),
            map((out) => {
              const predictions = Array.from(out.getChild('prediction')!.toArray() as Int32Array);
              const output = floatColumn(out, 'output').values;
              return () => reply(response, 200, single ? { prediction: predictions[0], output: Array.from(output), step: model.stepCount } : { predictions, step: model.stepCount });
            }),
          ),
        ),
        catchError((error: Error) => of(() => reply(response, error instanceof HttpError ? error.status : 500, { error: error.message }))),
      );
    }, 64),
  )
  .subscribe((send) => send());

// ------------------------------------------------------------------ online training

/**
 * An endless stream of digit batches (cycling the embedded set), pulled at the model's pace. The
 * batches are zero-copy views of the dataset (8,000 rows = 125 batches of 64): a stream that
 * allocates 200 KB per batch would have the garbage collector, not the model, dominate the
 * event-loop delay.
 */
async function* digits(): AsyncGenerator<Batch> {
  const n = options.batchSize;
  const batches = Math.floor(train.length / n);
  if (batches === 0) throw new RangeError(`--batch-size ${n} exceeds the ${train.length} training digits`);
  for (let k = 0; ; k = (k + 1) % batches) {
    yield batchFromArrays({ features: train.features.subarray(k * n * WIDTH, (k + 1) * n * WIDTH), shape: [WIDTH], labels: train.labels.subarray(k * n, (k + 1) * n) });
  }
}

// ------------------------------------------------------------------ measurement

await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
const address = server.address() as AddressInfo;
console.log(`listening http://127.0.0.1:${address.port} (compute: ${defaultEngine().compute.name}, ${defaultEngine().compute.threads} thread(s))`);

const histogram = monitorEventLoopDelay({ resolution: 1 });
const ms = (ns: number) => ns / 1e6;
async function measure(seconds: number): Promise<{ p50: number; p99: number; max: number }> {
  histogram.reset();
  histogram.enable();
  await sleep(seconds * 1000);
  histogram.disable();
  return { p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max) };
}

console.log('phase idle');
const idle = await measure(idleSeconds);

phase = 'training';
const stepsBefore = model.stepCount;
let trainingError: unknown = null;
const training = model
  .fitFrom(digits(), { loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }), metrics: ['accuracy'] })
  .subscribe({ next: ({ loss }) => (latest = { ...latest, loss }), error: (e: unknown) => (trainingError = e) });
console.log('phase training');
// The first steps allocate the optimizer slots and the arena and warm the JIT: not steady state.
await sleep(300);
const busy = await measure(trainSeconds);
training.unsubscribe();
phase = 'done';
if (trainingError) throw trainingError;
const steps = model.stepCount - stepsBefore;

const f = (x: number) => x.toFixed(2);
console.log(`event-loop delay idle:     p50 ${f(idle.p50)} ms  p99 ${f(idle.p99)} ms  max ${f(idle.max)} ms`);
console.log(`event-loop delay training: p50 ${f(busy.p50)} ms  p99 ${f(busy.p99)} ms  max ${f(busy.max)} ms`);
console.log(`training: ${steps} steps of ${options.batchSize} in ${trainSeconds} s (${(steps / trainSeconds).toFixed(0)} steps/s, ${((steps * options.batchSize) / trainSeconds).toFixed(0)} examples/s) while serving ${requests} requests`);
console.log(`RESULT ${JSON.stringify({ idle, training: busy, steps, requests })}`);

serving.unsubscribe();
watching.unsubscribe();
server.closeAllConnections();
await new Promise<void>((resolve) => server.close(() => resolve()));
model.dispose();
await closeDefaultEngine();
