/**
 * A live training page: `dashboard(source, { port })` serves, on 127.0.0.1 by default, a page
 * that follows a run over Server-Sent Events (loss and metrics per step and per epoch,
 * learning rate, examples/s, event-loop delay, gradient and update norms per layer, weight
 * histograms, confusion matrices, online counters, sparsity, a search's trials).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { tap, type MonoTypeOperatorFunction, type Observable, type Subscription } from 'rxjs';
import type { Model } from '../model.ts';
import { ModelSampler, type ModelSamplingOptions } from './model-sampler.ts';
import { Recorder } from './recorder.ts';
import { DashboardServer, type ServerDiagnostics } from './server.ts';
import { DashboardState, type StateLimits } from './state.ts';

export { confusionMatrix } from './confusion.ts';
export type { ConfusionMatrix, ConfusionMatrixOptions } from './confusion.ts';
export type { TrialEvent } from './state.ts';
export type { ServerDiagnostics } from './server.ts';
export type { ModelSamplingOptions } from './model-sampler.ts';

/** Options of {@link dashboard} and {@link createDashboard}. */
export interface DashboardOptions extends ModelSamplingOptions, StateLimits {
  /** TCP port (default 6006; 0 picks a free one, see `Dashboard.port`). */
  port?: number;
  /** Interface to bind (default '127.0.0.1'; anything else is reachable from other machines and is warned about). */
  host?: string;
  /** The trained model: per-layer gradient/update norms, weight histograms, sparsity and confusion matrices come from it. */
  model?: Model;
  /** Shown as the page's title. */
  title?: string;
  /** How often viewers get the changes (default 500 ms). */
  flushIntervalMs?: number;
  /** How often event-loop delay and examples/s are sampled (default 1000 ms). */
  sampleIntervalMs?: number;
  /** Unsent bytes a viewer may accumulate before it is disconnected (default 4 MiB). */
  maxViewerBufferBytes?: number;
  /** Viewers at once (default 32). */
  maxViewers?: number;
  /** Where warnings go (default `console.warn`). */
  warn?: (message: string) => void;
}

/** A running dashboard. */
export interface Dashboard {
  /** e.g. `http://127.0.0.1:6006/`. */
  readonly url: string;
  readonly port: number;
  /** Viewers connected now. */
  readonly viewers: number;
  /**
   * A pass-through operator that shows a stream's events on the page (progress, step reports,
   * test-then-train reports, trial events).
   *
   * Usage: `model.train(data, options).pipe(board.watch(), logProgress())`
   */
  watch<T>(): MonoTypeOperatorFunction<T>;
  /** Records one event by hand (what `watch` does for each). */
  record(event: unknown): void;
  /** Viewers, timers and buffers held now (tests check disconnects leave nothing). */
  diagnostics(): Promise<ServerDiagnostics>;
  /** Resolves when the dashboard has no evaluation (confusion matrix) in flight. */
  idle(): Promise<void>;
  /** Stops watching, ends every viewer's stream and stops the server. */
  close(): Promise<void>;
}

/** A dashboard that watches `source` itself (see {@link dashboard}). */
export interface WatchingDashboard extends Dashboard {
  /** Resolves when the source completes (and the last evaluation is recorded) or the dashboard is closed; rejects with the source's error. */
  readonly done: Promise<void>;
}

/**
 * Starts a dashboard server without a source; feed it with `pipe(board.watch())`.
 *
 * Usage: `const board = await createDashboard({ port: 6006, model }); await lastValueFrom(model.train(data, o).pipe(board.watch()));`
 */
export async function createDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const state = new DashboardState(options);
  if (options.title !== undefined) Object.assign(state.status, { title: options.title });
  const recorder = new Recorder(state);
  const sampler = options.model ? new ModelSampler(options.model, state, recorder, options) : null;
  if (!options.model && (options.validation || options.evaluateEverySteps !== undefined)) {
    throw new TypeError('dashboard: validation / evaluateEverySteps need the model (options.model) to compute confusion matrices');
  }
  const warn = options.warn ?? ((message: string) => console.warn(message));
  const server = await DashboardServer.listen(state, {
    port: options.port ?? 6006,
    host: options.host ?? '127.0.0.1',
    flushIntervalMs: options.flushIntervalMs ?? 500,
    maxViewerBufferBytes: options.maxViewerBufferBytes ?? 4 * 1024 * 1024,
    maxViewers: options.maxViewers ?? 32,
    heartbeatMs: 15_000,
    warn,
  });

  // Event-loop delay and throughput, sampled on a clock (they matter most when steps stall).
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const started = performance.now();
  let lastTime = started;
  let lastExamples = 0;
  const sampleTimer = setInterval(() => {
    const now = performance.now();
    const seconds = (now - started) / 1000;
    if (loop.count > 0) recorder.eventLoop(seconds, loop.percentile(50) / 1e6, loop.percentile(99) / 1e6, loop.max / 1e6);
    loop.reset();
    if (state.status.state === 'running' && recorder.examples > 0) recorder.throughput(seconds, ((recorder.examples - lastExamples) * 1000) / (now - lastTime));
    lastTime = now;
    lastExamples = recorder.examples;
  }, options.sampleIntervalMs ?? 1000);

  const record = (event: unknown): void => {
    // The dashboard must never break the run it watches: its own failures become warnings on the page.
    try {
      const recorded = recorder.record(event);
      if (!sampler) return;
      if (recorded.kind === 'step') sampler.afterStep(recorded.step!);
      else if (recorded.kind === 'epoch') {
        const validation = (event as { validation?: { loss?: number; accuracy?: number; examples?: number } }).validation;
        sampler.evaluate({ step: recorded.step!, ...(recorded.epoch !== undefined ? { epoch: recorded.epoch } : {}), ...validation });
      }
    } catch (error) {
      state.warn(`dashboard: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const finish = (failure?: unknown): void => {
    const status = state.status;
    status.state = failure === undefined ? 'completed' : 'failed';
    status.endedAt = Date.now();
    if (failure !== undefined) status.error = failure instanceof Error ? failure.message : String(failure);
    state.touchStatus();
    server.flush();
  };
  let closed = false;
  return {
    url: server.url,
    port: server.port,
    get viewers() {
      return server.viewerCount;
    },
    watch<T>(): MonoTypeOperatorFunction<T> {
      return tap<T>({ next: record, error: (error: unknown) => finish(error), complete: () => finish() });
    },
    record,
    diagnostics: () => server.diagnostics(),
    idle: async () => sampler?.idle(),
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sampleTimer);
      loop.disable();
      sampler?.close();
      await server.close();
    },
  };
}

/**
 * Serves a live page for a run and watches `source` (subscribing to it: a cold source such as
 * `model.train(…)` starts now): a model's `train` progress, a `fit` report stream, a
 * test-then-train stream or a hyper-parameter search's trial events. Pass `model` for per-layer
 * norms, weight histograms and sparsity, and `validation` for a confusion matrix at each epoch.
 * `close()` unsubscribes from the source and stops the server.
 *
 * Usage: `const board = await dashboard(model.train(train, { …, validation: test }), { port: 6006, model, validation: test }); await board.done;`
 */
export async function dashboard(source: Observable<unknown>, options: DashboardOptions = {}): Promise<WatchingDashboard> {
  const board = await createDashboard(options);
  let subscription: Subscription | null = null;
  let settle: () => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    settle = resolve;
    subscription = source.pipe(board.watch()).subscribe({
      error: (error: unknown) => reject(error),
      complete: () => void board.idle().then(resolve, reject),
    });
  });
  // An unawaited `done` must not crash the process: the error is on the page and rejects `done` for who awaits it.
  done.catch(() => {});
  return {
    url: board.url,
    port: board.port,
    get viewers() {
      return board.viewers;
    },
    watch: () => board.watch(),
    record: (event) => board.record(event),
    diagnostics: () => board.diagnostics(),
    idle: () => board.idle(),
    done,
    async close() {
      (subscription as Subscription | null)?.unsubscribe();
      await board.close();
      settle();
    },
  };
}
