/**
 * Turns the events of what a dashboard watches into series points: a model's `train` progress, a
 * `fit` step-report stream, a test-then-train stream (plain or with delayed labels) or a
 * hyper-parameter search's trial events. Events are recognised by their shape, so a stream that
 * mixes them (or adds fields) still works; unknown shapes are counted and shown, never fatal.
 */
import type { DashboardState, PanelId, SeriesMeta, TrialEvent } from './state.ts';

/** What {@link Recorder.record} learnt from an event, for the model sampler. */
export interface Recorded {
  kind: 'step' | 'epoch' | 'prediction' | 'trial' | 'unknown';
  step?: number;
  epoch?: number;
}

type Fields = Record<string, unknown>;

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** Counters of online pipelines, by the field names the streams use (issue 10's skip count included under its likely names). */
const COUNT_FIELDS: [string, string][] = [
  ['dropped', 'dropped batches'], ['droppedRows', 'dropped rows'], ['skipped', 'skipped records'], ['expired', 'expired'],
  ['pending', 'awaiting labels'], ['nonFiniteSkipped', 'non-finite steps skipped'], ['skippedSteps', 'steps skipped'],
  ['nonFiniteSteps', 'non-finite steps skipped'],
];

const meta = (key: string, panel: PanelId, label: string, extra: Partial<SeriesMeta> = {}): SeriesMeta => ({ key, panel, label, axis: 'step', ...extra });
const M = {
  loss: meta('loss', 'loss', 'loss', { smooth: true }),
  accuracy: meta('accuracy', 'metrics', 'accuracy', { smooth: true }),
  testLoss: meta('testLoss', 'loss', 'loss before learning (test-then-train)', { smooth: true }),
  mae: meta('mae', 'metrics', 'MAE', { smooth: true }),
  rmse: meta('rmse', 'metrics', 'RMSE', { smooth: true }),
  learningRate: meta('learningRate', 'learningRate', 'learning rate'),
  epochLoss: meta('epochLoss', 'loss', 'epoch loss (train)', { points: true }),
  epochAccuracy: meta('epochAccuracy', 'metrics', 'epoch accuracy (train)', { points: true }),
  validationLoss: meta('validationLoss', 'loss', 'validation loss', { points: true }),
  validationAccuracy: meta('validationAccuracy', 'metrics', 'validation accuracy', { points: true }),
  rollingLoss: meta('rollingLoss', 'rolling', 'rolling loss'),
  rollingAccuracy: meta('rollingAccuracy', 'rolling', 'rolling accuracy'),
  rollingMae: meta('rollingMae', 'rollingError', 'rolling MAE'),
  rollingRmse: meta('rollingRmse', 'rollingError', 'rolling RMSE'),
  examplesPerSecond: meta('examplesPerSecond', 'throughput', 'examples/s', { axis: 'time' }),
  loopP50: meta('loopP50', 'eventLoop', 'p50 ms', { axis: 'time' }),
  loopP99: meta('loopP99', 'eventLoop', 'p99 ms', { axis: 'time' }),
  loopMax: meta('loopMax', 'eventLoop', 'max ms', { axis: 'time' }),
};
const countMeta = new Map(COUNT_FIELDS.map(([field, label]) => [field, meta(`count:${field}`, 'counts', label)]));

/**
 * Records events into a {@link DashboardState}.
 *
 * Usage: `const recorder = new Recorder(state); source.subscribe((e) => recorder.record(e));`
 */
export class Recorder {
  /** Examples trained on, summed over step events (for examples/s). */
  examples = 0;
  private lastStep = 0;
  private update = { applied: 0, held: 0, dropped: 0 };

  constructor(private readonly state: DashboardState) {}

  /** The latest step seen (x of per-epoch and sampled points). */
  get step(): number {
    return this.lastStep;
  }

  record(event: unknown): Recorded {
    if (typeof event !== 'object' || event === null) return this.unknown(event);
    const e = event as Fields;
    if (e['kind'] === 'trial') return this.trial(e as unknown as TrialEvent);
    if (e['kind'] === 'done' && typeof e['table'] === 'object' && e['table'] !== null) return this.searchDone(e['table'] as Fields);
    if (e['kind'] === 'epoch') return this.epoch(e);
    if (e['kind'] === 'prediction') {
      this.source('test-then-train');
      this.count('pending', e['pending']);
      return { kind: 'prediction' };
    }
    if (typeof e['step'] === 'number' && typeof e['batchSize'] === 'number') return this.stepEvent(e);
    return this.unknown(event);
  }

  private source(kind: NonNullable<DashboardState['status']['source']>): void {
    const status = this.state.status;
    if (status.state === 'waiting') status.state = 'running';
    if (status.source === undefined || (status.source === 'fit' && kind !== 'fit')) {
      status.source = kind;
      this.state.touchStatus();
    }
  }

  private stepEvent(e: Fields): Recorded {
    const step = e['step'] as number;
    this.lastStep = step;
    this.examples += e['batchSize'] as number;
    const status = this.state.status;
    status.step = step;
    const rolling = e['rolling'];
    if (typeof rolling === 'object' && rolling !== null) {
      this.source('test-then-train');
      // test-then-train: `loss` is the prediction's loss before learning, `trainLoss` the optimizer's.
      this.add(M.loss, step, num(e['trainLoss']));
      this.add(M.testLoss, step, num(e['loss']));
      const r = rolling as Fields;
      this.add(M.rollingLoss, step, num(r['loss']));
      this.add(M.rollingAccuracy, step, num(r['accuracy']));
      this.add(M.rollingMae, step, num(r['mae']));
      this.add(M.rollingRmse, step, num(r['rmse']));
    } else {
      this.source(typeof e['epoch'] === 'number' ? 'train' : 'fit');
      this.add(M.loss, step, num(e['loss']));
    }
    if (typeof e['epoch'] === 'number') {
      status.epoch = e['epoch'];
      status.epochs = num(e['epochs']);
    }
    this.add(M.accuracy, step, num(e['accuracy']));
    this.add(M.mae, step, num(e['mae']));
    this.add(M.rmse, step, num(e['rmse']));
    this.add(M.learningRate, step, num(e['learningRate']));
    for (const [field] of COUNT_FIELDS) this.count(field, e[field]);
    const update = e['update'];
    if (update === 'applied' || update === 'held' || update === 'dropped') {
      this.update[update]++;
      if (update !== 'applied') this.add(meta(`update:${update}`, 'counts', `updates ${update}`), step, this.update[update]);
    }
    this.state.touchStatus();
    return { kind: 'step', step };
  }

  private epoch(e: Fields): Recorded {
    this.source('train');
    const step = this.lastStep;
    const epoch = num(e['epoch']);
    this.add(M.epochLoss, step, num(e['loss']));
    this.add(M.epochAccuracy, step, num(e['accuracy']));
    const validation = e['validation'] as Fields | undefined;
    if (validation) {
      this.add(M.validationLoss, step, num(validation['loss']));
      this.add(M.validationAccuracy, step, num(validation['accuracy']));
    }
    const status = this.state.status;
    if (epoch !== undefined) status.epoch = epoch;
    status.epochs = num(e['epochs']) ?? status.epochs;
    this.state.touchStatus();
    return { kind: 'epoch', step, ...(epoch !== undefined ? { epoch } : {}) };
  }

  private trial(e: TrialEvent): Recorded {
    if (typeof e.trial !== 'number' || typeof e.status !== 'string' || typeof e.budget !== 'number') return this.unknown(e);
    this.source('search');
    this.state.trial(e);
    return { kind: 'trial' };
  }

  /** A counter becomes a series once it is non-zero (a fit that never skips shows no panel of zeros). */
  /** A search's final `{ kind: 'done', table }`: its direction and best trial. */
  private searchDone(table: Fields): Recorded {
    const direction = table['direction'];
    if (direction !== 'maximize' && direction !== 'minimize') return this.unknown({ kind: 'done', table });
    const best = table['best'] as { trial?: unknown; metric?: unknown } | null | undefined;
    this.state.status.search = {
      direction,
      best: best && typeof best.trial === 'number' ? { trial: best.trial, ...(typeof best.metric === 'number' ? { metric: best.metric } : {}) } : null,
    };
    this.state.touchStatus();
    return { kind: 'trial' };
  }

  private count(field: string, value: unknown): void {
    const m = countMeta.get(field);
    if (m && typeof value === 'number' && (value !== 0 || this.state.series.has(m.key))) this.add(m, this.lastStep, value);
  }

  private add(m: SeriesMeta, x: number, y: number | undefined): void {
    if (y !== undefined) this.state.point(m, x, y);
  }

  private unknown(event: unknown): Recorded {
    const status = this.state.status;
    status.unknownEvents++;
    if (status.unknownExample === undefined) {
      status.unknownExample = typeof event === 'object' && event !== null ? `{ ${Object.keys(event).slice(0, 12).join(', ')} }` : String(event).slice(0, 80);
    }
    this.state.touchStatus();
    return { kind: 'unknown' };
  }

  /** Records an examples/s point (x: seconds since start). */
  throughput(seconds: number, examplesPerSecond: number): void {
    this.add(M.examplesPerSecond, seconds, examplesPerSecond);
  }

  /** Records event-loop delay percentiles in ms (x: seconds since start). */
  eventLoop(seconds: number, p50: number, p99: number, max: number): void {
    this.add(M.loopP50, seconds, p50);
    this.add(M.loopP99, seconds, p99);
    this.add(M.loopMax, seconds, max);
  }

  /** Records a validation point from an evaluation the dashboard ran itself (online streams). */
  validation(step: number, accuracy: number): void {
    this.add(M.validationAccuracy, step, accuracy);
  }
}
