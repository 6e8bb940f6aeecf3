/**
 * Pipeline (model) parallel training: a sequential model cut at layer boundaries into K stages, each
 * in its own process, linked by TCP (src/distributed/pipeline-link.ts). Each mini-batch is split into
 * M micro-batches (GPipe): stage 0 runs the M forwards and sends each micro-batch's activations on as
 * soon as it is done, so the stages work on different micro-batches at once; the last stage computes
 * each micro-batch's loss and sends dLoss/dActivation back, scaled by its share of the mini-batch's
 * rows; every stage accumulates its parameters' gradients over the M backwards and applies one
 * optimizer update per mini-batch. The weights therefore equal single-process training on the same
 * mini-batches (up to float32 summation order). A stage that dies fails the step on every stage with
 * an error naming it (`abort` is passed along the chain).
 */
import { Observable } from 'rxjs';
import { batchFromArrays, labelColumn, tensorColumn, type Batch } from '../batch.ts';
import type { Arena } from '../heap.ts';
import { StepContext, type Layer, type Parameter } from '../layer.ts';
import type { Loss } from '../losses.ts';
import { saveModel } from '../checkpoint.ts';
import { backwardThrough, forwardThrough } from '../step-runner.ts';
import { modelHost, type Model } from '../model.ts';
import type { Optimizer } from '../optimizers.ts';
import { Tensor, type Shape } from '../tensor.ts';
import { applyState, stateFromCheckpoint } from './model-state.ts';
import { acceptLink, connectLink, type Frame, type StageLink } from './pipeline-link.ts';

/** Where a stage listens (stage k ≥ 1; stage k − 1 connects to it). */
export interface StageAddress {
  host: string;
  port: number;
}

/** Options of {@link startPipelineStage}. */
export interface PipelineStageOptions {
  /** The whole model, built the same way (same layers and seed) in every stage's process; a stage trains only its layers. */
  model: Model;
  optimizer: Optimizer;
  /** The loss (used by the last stage). */
  loss: Loss;
  /** Layer indices where stages 1…K−1 begin, e.g. `[4]`: stage 0 runs layers 0–3, stage 1 the rest. */
  cuts: number[];
  /** This process's stage, 0…K−1. Stage 0 drives the training (`train`), the others `serve`. */
  stage: number;
  /** `addresses[k]`: where stage k listens (index 0 unused). */
  addresses: (StageAddress | null)[];
  /** Micro-batches per mini-batch (M, default 4). */
  microBatches?: number;
  /** Every stage saves `<path>.stage<k>` every `every` steps; on start each stage resumes from its file if present. */
  checkpoint?: { path: string; every: number };
  /** How long to wait for the neighbouring stages to connect, ms (default 30,000). */
  connectTimeoutMs?: number;
}

/** What stage 0 reports per mini-batch. */
export interface PipelineStepReport {
  step: number;
  loss: number;
  rows: number;
  microBatches: number;
  /** Wall time of the step at stage 0 (first forward to the last stage's update), ms. */
  wallMs: number;
  /** Compute time of each stage in the step, ms (index = stage). */
  busyMs: number[];
  /** 1 − busy / wall, per stage: GPipe's bubble is (K − 1)/(M + K − 1). */
  idleFraction: number[];
  /** Bytes stage 0 sent and received in the step. */
  bytesSent: number;
  bytesReceived: number;
}

interface Micro {
  step: StepContext;
  rows: number;
}

/** One stage's layers, links and accumulated gradients. */
export class PipelineStage {
  private readonly layers: readonly Layer[];
  private readonly params: Parameter[];
  private readonly accumulated: Float32Array[];
  private readonly micros = new Map<number, Micro>();
  /** The layers the backward runs through: on stage 0 it stops at the first layer with parameters, as in the model. */
  private readonly backwardLayers: readonly Layer[];
  readonly stages: number;
  readonly stage: number;
  readonly microBatches: number;
  upstream: StageLink | null = null;
  downstream: StageLink | null = null;
  private busy = 0;
  private backwardsDone = 0;
  private failed: Error | null = null;

  constructor(private readonly options: PipelineStageOptions) {
    const { model, cuts, stage } = options;
    const bounds = [0, ...cuts, model.layers.length];
    if (!bounds.every((b, i) => i === 0 || (Number.isInteger(b) && b > bounds[i - 1]!))) throw new RangeError(`pipeline: cuts ${JSON.stringify(cuts)} must be increasing layer indices in (0, ${model.layers.length})`);
    this.stages = cuts.length + 1;
    if (!(Number.isInteger(stage) && stage >= 0 && stage < this.stages)) throw new RangeError(`pipeline: stage ${stage} is not in 0…${this.stages - 1}`);
    this.stage = stage;
    this.microBatches = options.microBatches ?? 4;
    if (!(Number.isInteger(this.microBatches) && this.microBatches >= 1)) throw new RangeError(`pipeline: microBatches must be a positive integer, got ${this.microBatches}`);
    this.layers = model.layers.slice(bounds[stage], bounds[stage + 1]);
    this.params = this.layers.flatMap((l) => l.parameters());
    this.accumulated = this.params.map((p) => new Float32Array(p.grad.size));
    // As in the model: the reverse stream stops at the first layer with parameters.
    const first = model.layers.findIndex((l) => l.parameters().length > 0);
    this.backwardLayers = stage === 0 ? this.layers.slice(Math.max(0, first)) : this.layers;
  }

  private name(k: number): string {
    const a = this.options.addresses[k];
    return `pipeline stage ${k}${a ? ` (${a.host}:${a.port})` : ''}`;
  }

  /** Loads the stage's checkpoint, if any, and connects to the neighbouring stages. */
  async connect(): Promise<void> {
    const { checkpoint, model, optimizer } = this.options;
    if (checkpoint) {
      const state = await stateFromCheckpoint(`${checkpoint.path}.stage${this.stage}`, model);
      if (state) applyState(model, optimizer, state);
    }
    const timeout = this.options.connectTimeoutMs ?? 30_000;
    const own = this.options.addresses[this.stage];
    const next = this.options.addresses[this.stage + 1];
    const [up, down] = await Promise.all([
      this.stage > 0 ? acceptLink(own!.port, own!.host, this.name(this.stage - 1), timeout) : null,
      this.stage < this.stages - 1 ? connectLink(next!.port, next!.host, this.name(this.stage + 1), timeout) : null,
    ]);
    this.upstream = up;
    this.downstream = down;
  }

  private timed<T>(work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    return work().finally(() => (this.busy += performance.now() - started));
  }

  /** Runs this stage's layers forward on a micro-batch, keeping its context for the backward. */
  private async forward(key: number, features: Float32Array, shape: Shape, rows: number, labels: Int32Array | null): Promise<Tensor> {
    const { model } = this.options;
    const step = new StepContext(model.engine, this.freeArenas.pop() ?? model.engine.heap.arena(), rows, true, model.rng, model.stepCount);
    this.micros.set(key, { step, rows });
    const x = step.alloc([rows, ...shape]);
    x.data().set(features);
    if (labels) {
      step.labels = step.alloc([rows], 'int32');
      step.labels.int32().set(labels);
    }
    return forwardThrough(this.layers, x, step);
  }

  /** Runs the backward of a micro-batch from dLoss/dOutput, adds its parameter gradients to the sums, frees its arena; returns dLoss/dInput (null on stage 0). */
  private async backward(key: number, dy: Tensor | Float32Array, shape: Shape): Promise<Float32Array | null> {
    const micro = this.micros.get(key);
    if (!micro) throw new Error(`${this.name(this.stage)}: backward of micro-batch ${key} without its forward`);
    const { step, rows } = micro;
    try {
      const dOutput: Tensor = dy instanceof Tensor ? dy : step.alloc([rows, ...shape]);
      if (!(dy instanceof Tensor)) dOutput.data().set(dy);
      // The model's own sequencing (src/step-runner.ts): stage 0 needs no input gradient.
      const grad = await backwardThrough(this.backwardLayers, dOutput, step, this.stage > 0);
      this.params.forEach((p, i) => {
        const sum = this.accumulated[i]!;
        const g = p.grad.data();
        for (let j = 0; j < sum.length; j++) sum[j]! += g[j]!;
      });
      return this.stage > 0 && grad ? grad.toFloat32Array() : null;
    } finally {
      step.arena.reset();
      this.freeArenas.push(step.arena);
      this.micros.delete(key);
    }
  }

  /** One update from the accumulated gradients (regularisation added once per mini-batch). */
  private apply(): void {
    const { model, optimizer } = this.options;
    this.params.forEach((p, i) => {
      p.grad.data().set(this.accumulated[i]!);
      this.accumulated[i]!.fill(0);
      if (p.regularizer) p.regularizer.addGradient(p.value.data(), p.grad.data());
    });
    optimizer.apply(this.params, model.engine);
    const host = modelHost(model);
    host.steps++;
    host.adopt(optimizer, this.options.loss);
    this.backwardsDone = 0;
  }

  private async saveIfDue(step: number): Promise<void> {
    const c = this.options.checkpoint;
    if (c && step % c.every === 0) await saveModel(this.options.model, `${c.path}.stage${this.stage}`, { streamOffsets: { step } });
  }

  /** Fails this stage and tells the neighbours, naming the stage where it started. */
  private abort(reason: Error): Error {
    if (this.failed) return this.failed;
    this.failed = reason;
    for (const link of [this.upstream, this.downstream]) {
      try {
        link?.send({ type: 'abort', reason: reason.message });
      } catch {
        // that link is the broken one
      }
      link?.close();
    }
    return reason;
  }

  private async nextFrom(link: StageLink, expect: string[]): Promise<Frame> {
    const frame = await link.next();
    if (frame.header.type === 'abort') throw new Error(String(frame.header['reason']));
    if (!expect.includes(frame.header.type)) throw new Error(`${this.name(this.stage)}: unexpected '${frame.header.type}' from ${link.peer} (expected ${expect.join(' or ')})`);
    return frame;
  }

  /**
   * Stages 1…K−1: serves forward and backward frames until stage 0 ends the run; rejects (after
   * telling the neighbours) when a neighbour dies or aborts.
   *
   * Usage: `const stage = await startPipelineStage({ …, stage: 1 }); await stage.serve();`
   */
  async serve(): Promise<void> {
    if (this.stage === 0) throw new Error('pipeline: stage 0 drives the training with train(), it does not serve');
    const up = this.upstream!;
    const last = this.stage === this.stages - 1;
    try {
      const hello = await this.nextFrom(up, ['hello']);
      if (hello.header['step'] !== this.options.model.stepCount) {
        throw new Error(`${this.name(this.stage)} is at step ${this.options.model.stepCount} but stage 0 at step ${String(hello.header['step'])} (checkpoints of different steps)`);
      }
      this.downstream?.send(hello.header);
      for (;;) {
        // Forward frames come from upstream; in a middle stage, backward frames from downstream.
        const frame = await this.nextFrom(up, ['forward', 'end', 'checkpoint']);
        if (frame.header.type === 'end') {
          this.downstream?.send(frame.header);
          await new Promise((resolve) => setImmediate(resolve));
          up.close();
          this.downstream?.close();
          return;
        }
        if (frame.header.type === 'checkpoint') {
          await this.saveIfDue(Number(frame.header['step']));
          this.downstream?.send(frame.header);
          continue;
        }
        await this.runStep(frame, last);
      }
    } catch (error) {
      throw this.abort(error as Error);
    }
  }

  /** A middle or last stage's share of one mini-batch, starting from its first forward frame. */
  private async runStep(first: Frame, last: boolean): Promise<void> {
    const up = this.upstream!;
    const m = Number(first.header['micros']);
    const total = Number(first.header['total']);
    this.busy = 0;
    let lossSum = 0;
    let forwards = 0;
    let frame: Frame | null = first;
    while (this.backwardsDone < m) {
      // The last stage turns each forward straight into its backward; a middle stage forwards all it
      // gets from upstream and does backwards as they come back (GPipe: all forwards, then backwards).
      if (frame === null) frame = forwards < m ? await this.nextFrom(up, ['forward']) : await this.nextFrom(this.downstream!, ['backward']);
      const f: Frame = frame;
      frame = null;
      const micro = Number(f.header['micro']);
      const column = tensorColumn(f.batch!, 'features');
      if (f.header.type === 'forward') {
        forwards++;
        this.inputShapes.set(micro, column.shape);
        const labels = labelColumn(f.batch!)?.values ?? null;
        const y = await this.timed(() => this.forward(micro, column.values as Float32Array, column.shape, column.values.length / (column.shape.reduce((a, b) => a * b, 1)), labels));
        if (!last) {
          this.downstream!.send({ type: 'forward', step: f.header['step'], micro, micros: m, total }, batchFromArrays({ features: y.toFloat32Array(), shape: y.shape.slice(1), ...(labels ? { labels } : {}) }));
          continue;
        }
        const { step, rows } = this.micros.get(micro)!;
        const dx = await this.timed(async () => {
          const result = this.options.loss.compute(y, step, true);
          lossSum += result.loss * rows;
          // The loss is a mean over the micro-batch: weigh it by its share of the mini-batch.
          this.options.model.engine.kernels.scale(result.grad!.ptr, result.grad!.size, rows / total);
          return this.backward(micro, result.grad!, y.shape.slice(1));
        });
        this.backwardsDone++;
        up.send({ type: 'backward', step: f.header['step'], micro }, batchFromArrays({ features: dx!, shape: column.shape }));
      } else {
        const dx = await this.timed(() => this.backward(micro, column.values as Float32Array, column.shape));
        this.backwardsDone++;
        const shape = this.inputShapes.get(micro);
        this.inputShapes.delete(micro);
        up.send({ type: 'backward', step: f.header['step'], micro }, batchFromArrays({ features: dx!, shape: shape! }));
      }
    }
    await this.timed(async () => this.apply());
    const stats = last ? { busy: [] as number[], loss: lossSum / total } : (await this.nextFrom(this.downstream!, ['stats'])).header;
    up.send({ type: 'stats', step: first.header['step'], busy: [this.busy, ...(stats['busy'] as number[])], loss: stats['loss'] });
  }

  private readonly inputShapes = new Map<number, Shape>();
  private readonly freeArenas: Arena[] = [];

  /**
   * Stage 0: trains on mini-batches (each split into M micro-batches), one report per mini-batch
   * after every stage applied its update; every `checkpoint.every` steps each stage saves its state.
   * Completes by ending the run on every stage; errors (naming the stage) if a stage dies.
   *
   * Usage: `stage.train(batchesFromArrays(train, 64)).subscribe((r) => console.log(r.step, r.loss))`
   */
  train(batches: Iterable<Batch> | AsyncIterable<Batch>): Observable<PipelineStepReport> {
    if (this.stage !== 0) throw new Error(`pipeline: stage ${this.stage} serves; stage 0 trains`);
    return new Observable<PipelineStepReport>((subscriber) => {
      let stopped = false;
      const down = this.downstream!;
      (async () => {
        down.send({ type: 'hello', step: this.options.model.stepCount });
        for await (const batch of batches) {
          if (stopped) return;
          const report = await this.driveStep(batch);
          if (this.options.checkpoint && report.step % this.options.checkpoint.every === 0) {
            await this.saveIfDue(report.step);
            down.send({ type: 'checkpoint', step: report.step });
          }
          subscriber.next(report);
        }
        down.send({ type: 'end' });
        await new Promise((resolve) => setImmediate(resolve));
        down.close();
        subscriber.complete();
      })().catch((error: unknown) => subscriber.error(this.abort(new Error(`pipeline step ${this.options.model.stepCount + 1} failed: ${(error as Error).message}`, { cause: error }))));
      return () => {
        stopped = true;
      };
    });
  }

  private async driveStep(batch: Batch): Promise<PipelineStepReport> {
    const down = this.downstream!;
    const started = performance.now();
    const sent = down.bytesSent;
    const received = down.bytesReceived;
    this.busy = 0;
    const features = tensorColumn(batch, 'features');
    const labels = labelColumn(batch);
    const width = features.shape.reduce((a, b) => a * b, 1);
    const total = batch.numRows;
    const m = Math.min(this.microBatches, total);
    const step = this.options.model.stepCount + 1;
    let start = 0;
    for (let micro = 0; micro < m; micro++) {
      const rows = Math.floor(total / m) + (micro < total % m ? 1 : 0);
      const x = (features.values as Float32Array).subarray(start * width, (start + rows) * width);
      const y = labels?.values.subarray(start, start + rows) ?? null;
      const out = await this.timed(() => this.forward(micro, x, features.shape, rows, null));
      down.send({ type: 'forward', step, micro, micros: m, total }, batchFromArrays({ features: out.toFloat32Array(), shape: out.shape.slice(1), ...(y ? { labels: y } : {}) }));
      start += rows;
    }
    for (let done = 0; done < m; done++) {
      const frame = await this.nextFrom(down, ['backward']);
      const column = tensorColumn(frame.batch!, 'features');
      await this.timed(() => this.backward(Number(frame.header['micro']), column.values as Float32Array, column.shape));
    }
    await this.timed(async () => this.apply());
    const stats = (await this.nextFrom(down, ['stats'])).header;
    const wallMs = performance.now() - started;
    const busyMs = [this.busy, ...(stats['busy'] as number[])];
    return {
      step, loss: Number(stats['loss']), rows: total, microBatches: m, wallMs, busyMs, idleFraction: busyMs.map((b) => Math.max(0, 1 - b / wallMs)),
      bytesSent: down.bytesSent - sent, bytesReceived: down.bytesReceived - received,
    };
  }
}

/**
 * Starts one stage of a pipeline: resumes from its checkpoint if there is one, then connects to its
 * neighbours (stage k listens at `addresses[k]` for stage k − 1 and connects to stage k + 1).
 *
 * Usage: `const stage = await startPipelineStage({ model, optimizer, loss, cuts: [4], stage: 1, addresses: [null, { host: '127.0.0.1', port: 9001 }] }); await stage.serve();`
 */
export async function startPipelineStage(options: PipelineStageOptions): Promise<PipelineStage> {
  if (options.cuts.length === 0) throw new RangeError('pipeline: give at least one cut (two stages)');
  const stage = new PipelineStage(options);
  await stage.connect();
  return stage;
}
