/**
 * What a dashboard remembers and sends: bounded series (see history.ts), weight histograms,
 * evaluations with confusion matrices, search trials and the run's status. A page gets the whole
 * state once (`snapshot`) and then deltas (`takeDelta`), each serialised once for all viewers.
 */
import { SeriesHistory, ThinningList, type HistoryLimits, type SeriesData } from './history.ts';

/** Which chart a series belongs to (the page lays panels out by these ids). */
export type PanelId =
  | 'loss' | 'metrics' | 'learningRate' | 'throughput' | 'eventLoop' | 'gradientNorm' | 'updateNorm' | 'updateRatio'
  | 'sparsity' | 'rolling' | 'rollingError' | 'counts';

/** How a series is drawn. */
export interface SeriesMeta {
  key: string;
  panel: PanelId;
  label: string;
  /** 'step': x is the model's step; 'time': seconds since the dashboard started. */
  axis: 'step' | 'time';
  /** Draw the raw values faintly and an exponential moving average over them. */
  smooth?: boolean;
  /** Draw points only (one per epoch or evaluation). */
  points?: boolean;
}

/** A sampled histogram of one weight tensor. */
export interface HistogramSnapshot {
  step: number;
  min: number;
  max: number;
  counts: number[];
  /** Values the histogram was computed from (a strided sample of large tensors). */
  sampled: number;
  size: number;
}

/** One evaluation (after an epoch, or every n steps of an online stream). */
export interface EvaluationRecord {
  step: number;
  epoch?: number;
  loss?: number;
  accuracy?: number;
  /** Examples the evaluation covered. */
  examples?: number;
  confusion?: { classes: number; counts: number[][]; examples: number; correct: number; classNames?: string[] };
  /** Why no confusion matrix could be computed. */
  confusionError?: string;
}

/** A hyper-parameter search trial event (issue 15's search stream). */
export interface TrialEvent {
  kind: 'trial';
  trial: number;
  config: Record<string, number | string | boolean>;
  status: 'running' | 'reported' | 'promoted' | 'stopped' | 'completed' | 'failed';
  budget: number;
  metric?: number;
  rung?: number;
  error?: string;
}

/** A trial as the page shows it: its latest event and its (budget, metric) reports. */
export interface TrialRecord extends TrialEvent {
  reports: { budget: number; metric: number }[];
}

/** The run as a whole. */
export interface RunStatus {
  state: 'waiting' | 'running' | 'completed' | 'failed';
  error?: string;
  step: number;
  epoch?: number;
  epochs?: number;
  /** Which kind of source feeds the dashboard (set from its first events). */
  source?: 'train' | 'fit' | 'test-then-train' | 'search';
  startedAt: number;
  /** When the source completed or failed (ms since the epoch). */
  endedAt?: number;
  /** A finished search: which way its metric is better and its best trial. */
  search?: { direction: 'maximize' | 'minimize'; best: { trial: number; metric?: number } | null };
  /** Events of a shape the dashboard does not know (ignored), and the keys of the first one. */
  unknownEvents: number;
  unknownExample?: string;
  warnings: string[];
}

/** Limits of the state's memory. */
export interface StateLimits extends HistoryLimits {
  /** Histogram snapshots kept per tensor (default 40, spread over the run). */
  histogramSnapshots?: number;
  /** Evaluations kept (default 50, spread over the run; the latest is always shown). */
  evaluations?: number;
  /** Trials kept (default 2000, the latest). */
  trials?: number;
}

interface PendingSeries {
  from: number;
  x: number[];
  y: number[];
  /** More points arrived than a delta carries: send the whole series instead. */
  replace: boolean;
}

const MAX_REPORTS_PER_TRIAL = 64;
const MAX_WARNINGS = 20;

/** The dashboard's memory (see the module comment). */
export class DashboardState {
  readonly series = new Map<string, { meta: SeriesMeta; history: SeriesHistory }>();
  readonly histograms = new Map<string, { latest: HistogramSnapshot; list: ThinningList<HistogramSnapshot> }>();
  readonly evaluations: ThinningList<EvaluationRecord>;
  latestEvaluation: EvaluationRecord | null = null;
  readonly trials = new Map<number, TrialRecord>();
  readonly status: RunStatus = { state: 'waiting', step: 0, startedAt: Date.now(), unknownEvents: 0, warnings: [] };
  /** Bumped by every change: a cached snapshot is valid while it is unchanged. */
  version = 0;
  /** Deltas are collected only while someone watches. */
  tracking = false;
  private pending = new Map<string, PendingSeries>();
  private newMeta: SeriesMeta[] = [];
  private newHistograms = new Map<string, HistogramSnapshot>();
  private newEvaluations: EvaluationRecord[] = [];
  private changedTrials = new Set<number>();
  private statusChanged = false;

  constructor(private readonly limits: StateLimits = {}) {
    this.evaluations = new ThinningList(limits.evaluations ?? 50);
  }

  /** Appends a point to series `meta.key`, creating it on first use. Non-finite values are kept (drawn as gaps). */
  point(meta: SeriesMeta, x: number, y: number): void {
    let entry = this.series.get(meta.key);
    if (!entry) {
      entry = { meta, history: new SeriesHistory(this.limits) };
      this.series.set(meta.key, entry);
      if (this.tracking) this.newMeta.push(meta);
    }
    entry.history.push(x, y);
    this.version++;
    if (!this.tracking) return;
    let pending = this.pending.get(meta.key);
    if (!pending) {
      pending = { from: entry.history.total - 1, x: [], y: [], replace: false };
      this.pending.set(meta.key, pending);
    }
    if (pending.replace) return;
    if (pending.x.length >= entry.history.recent) {
      pending.replace = true;
      pending.x = [];
      pending.y = [];
      return;
    }
    pending.x.push(x);
    pending.y.push(y);
  }

  histogram(name: string, snapshot: HistogramSnapshot): void {
    let entry = this.histograms.get(name);
    if (!entry) {
      entry = { latest: snapshot, list: new ThinningList(this.limits.histogramSnapshots ?? 40) };
      this.histograms.set(name, entry);
    }
    entry.latest = snapshot;
    entry.list.push(snapshot);
    this.version++;
    if (this.tracking) this.newHistograms.set(name, snapshot);
  }

  evaluation(record: EvaluationRecord): void {
    this.latestEvaluation = record;
    this.evaluations.push(record);
    this.version++;
    if (this.tracking) this.newEvaluations.push(record);
  }

  trial(event: TrialEvent): void {
    let record = this.trials.get(event.trial);
    if (!record) {
      record = { ...event, reports: [] };
      this.trials.set(event.trial, record);
      const max = this.limits.trials ?? 2000;
      if (this.trials.size > max) this.trials.delete(this.trials.keys().next().value!);
    } else {
      Object.assign(record, event, { reports: record.reports });
      if (event.error === undefined) delete record.error;
    }
    if (event.metric !== undefined && Number.isFinite(event.metric) && (event.status === 'reported' || event.status === 'completed' || event.status === 'promoted' || event.status === 'stopped')) {
      const last = record.reports.at(-1);
      if (!last || last.budget !== event.budget || last.metric !== event.metric) record.reports.push({ budget: event.budget, metric: event.metric });
      if (record.reports.length > MAX_REPORTS_PER_TRIAL) record.reports.splice(0, record.reports.length - MAX_REPORTS_PER_TRIAL);
    }
    this.version++;
    if (this.tracking) this.changedTrials.add(event.trial);
  }

  /** Marks the status changed (callers mutate `status` first). */
  touchStatus(): void {
    this.version++;
    this.statusChanged = true;
  }

  warn(message: string): void {
    if (this.status.warnings.includes(message)) return;
    if (this.status.warnings.length >= MAX_WARNINGS) this.status.warnings.shift();
    this.status.warnings.push(message);
    this.touchStatus();
  }

  /** Everything a page needs to draw the run so far. */
  snapshot(): object {
    return {
      status: this.status,
      series: [...this.series.values()].map(({ meta, history }) => ({ meta, data: history.toJSON() })),
      histograms: Object.fromEntries([...this.histograms].map(([name, h]) => [name, h.list.values.at(-1) === h.latest ? h.list.values : [...h.list.values, h.latest]])),
      evaluations: this.evaluationList(),
      trials: [...this.trials.values()],
    };
  }

  private evaluationList(): EvaluationRecord[] {
    const kept = this.evaluations.values;
    return this.latestEvaluation && kept.at(-1) !== this.latestEvaluation ? [...kept, this.latestEvaluation] : [...kept];
  }

  /** What changed since the last delta (null if nothing), and forgets it. */
  takeDelta(): object | null {
    if (this.pending.size === 0 && this.newMeta.length === 0 && this.newHistograms.size === 0 && this.newEvaluations.length === 0 && this.changedTrials.size === 0 && !this.statusChanged) return null;
    const series: { key: string; from?: number; x?: number[]; y?: (number | null)[]; replace?: SeriesData }[] = [];
    for (const [key, p] of this.pending) {
      if (p.replace) series.push({ key, replace: this.series.get(key)!.history.toJSON() });
      else series.push({ key, from: p.from, x: p.x, y: p.y.map((v) => (Number.isFinite(v) ? v : null)) });
    }
    const delta = {
      status: this.status,
      meta: this.newMeta,
      series,
      histograms: Object.fromEntries(this.newHistograms),
      evaluations: this.newEvaluations,
      trials: [...this.changedTrials].flatMap((t) => this.trials.get(t) ?? []),
    };
    this.clearDelta();
    return delta;
  }

  /** Forgets pending changes (the last viewer left; a new one gets a snapshot). */
  clearDelta(): void {
    this.pending = new Map();
    this.newMeta = [];
    this.newHistograms = new Map();
    this.newEvaluations = [];
    this.changedTrials = new Set();
    this.statusChanged = false;
  }

  /** Points waiting to be sent (for tests and diagnostics). */
  get pendingPoints(): number {
    let n = 0;
    for (const p of this.pending.values()) n += p.x.length;
    return n;
  }

  /** Bytes held by the series histories (fixed per series). */
  get seriesBytes(): number {
    let n = 0;
    for (const { history } of this.series.values()) n += history.bytes;
    return n;
  }
}
