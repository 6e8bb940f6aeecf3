import { defer, Observable, type Subscription } from 'rxjs';
import { makeScheduler, type Job, type RungVerdict, type Scheduler, type SearchBudget, type StrategyName, type StrategyOptions } from './schedulers.ts';
import { SearchConfigError, validateSpace, type Config, type Space } from './space.ts';
import { readSearchState, StateWriter, type LoggedEvent, type SearchState } from './state.ts';

/** Where a trial stands. */
export type TrialStatus = 'running' | 'reported' | 'promoted' | 'stopped' | 'completed' | 'failed';

/**
 * One step of one trial. `budget`: the units the trial runs to ('running') or has reached (the others);
 * `rung`: the rung of a promotion or of a stop at a rung.
 */
export interface TrialEvent {
  kind: 'trial';
  trial: number;
  config: Record<string, number | string | boolean>;
  status: TrialStatus;
  budget: number;
  metric?: number;
  rung?: number;
  error?: string;
}

/** A trial in the final table: its last status, the most units it reached and its metric there. */
export interface TrialRow {
  trial: number;
  config: Config;
  status: 'completed' | 'stopped' | 'failed';
  budget: number;
  metric?: number;
  /** Highest rung it was promoted from. */
  rung?: number;
  error?: string;
}

/** The search's result: rows best first (most budget, then best metric; failures last). */
export interface SearchTable {
  direction: 'maximize' | 'minimize';
  /** Budget units used by all trials (reported metrics). */
  unitsUsed: number;
  rows: TrialRow[];
  best: TrialRow | null;
}

/** The last event of a search. */
export interface SearchDone {
  kind: 'done';
  table: SearchTable;
}

export type SearchEvent = TrialEvent | SearchDone;

/** What a trial function receives besides its configuration. */
export interface TrialContext {
  trial: number;
  /** Units it will be asked for (it may be stopped earlier by unsubscribing). */
  units: number;
  /** A seed derived from the search's seed and the trial number, for the trial's model. */
  seed: number;
}

/** Options of {@link search}. */
export interface SearchOptions {
  space: Space;
  /** A configuration's metric, one value per budget unit (epoch or N steps). Unsubscribing stops it. */
  trial: (config: Config, context: TrialContext) => Observable<number>;
  strategy: StrategyName | StrategyOptions;
  budget: SearchBudget;
  /** Trials running at once (default 1). */
  concurrency?: number;
  /** Seeds the configurations drawn (default 0). */
  seed?: number;
  /** Whether a larger metric is better (default 'maximize': accuracy). */
  direction?: 'maximize' | 'minimize';
  /**
   * A JSON file the search state is saved to as it goes (atomically). A search started with the same
   * settings and an existing file resumes: it replays what was recorded and runs only the rest.
   */
  statePath?: string;
}

interface RunningJob extends Job {
  seq: number;
  /** Virtual time at which the job started: budget units elapsed on the search's clock. */
  start: number;
  processed: number;
  /** Outside events waiting for their turn on the virtual clock. */
  buffer: LoggedEvent[];
  live: Subscription | null;
  ended: boolean;
}

const positive = (field: string, value: number): number => {
  if (!Number.isSafeInteger(value) || value < 1) throw new SearchConfigError(field, `must be a positive integer, got ${JSON.stringify(value)}`);
  return value;
};

/**
 * Hyper-parameter search: runs `trial` on configurations chosen by the strategy, up to `concurrency` at a
 * time, and emits a {@link TrialEvent} per change and a final `{ kind: 'done', table }`.
 *
 * Decisions follow a virtual clock (a trial's k-th metric happens at its start + k units), so the same seed
 * and settings give the same trial sequence and table however fast each trial runs; trials run
 * concurrently in real time and a metric that arrives early waits for its turn. A trial that errors or
 * reports a non-finite metric is recorded as failed and the search goes on. Invalid settings throw a
 * {@link SearchConfigError} naming the field.
 *
 * Usage: `search({ space: { lr: logUniform(1e-4, 1e-1) }, trial: (c) => train(c), strategy: 'asha', budget: { max: 9, total: 60 }, concurrency: 2 }).subscribe(console.log)`
 */
export function search(options: SearchOptions): Observable<SearchEvent> {
  validateSpace(options.space);
  if (typeof options.trial !== 'function') throw new SearchConfigError('trial', 'must be a function (config, context) => Observable<number>');
  const concurrency = positive('concurrency', options.concurrency ?? 1);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new SearchConfigError('seed', `must be an integer, got ${seed}`);
  const direction = options.direction ?? 'maximize';
  if (direction !== 'maximize' && direction !== 'minimize') throw new SearchConfigError('direction', `must be 'maximize' or 'minimize', got ${JSON.stringify(direction)}`);
  // Validates strategy and budget now, so a bad search fails where it is written.
  makeScheduler(options.strategy, options.budget, options.space, seed);
  const settings = { space: options.space, strategy: options.strategy, budget: options.budget, concurrency, seed, direction };
  return new Observable<SearchEvent>((subscriber) => {
    const run = new SearchRun(options, concurrency, seed, direction, (e) => subscriber.next(e));
    let cancelled = false;
    const stateFile = options.statePath;
    (async () => {
      const state = stateFile ? await readSearchState(stateFile, settings) : null;
      if (cancelled) return;
      const writer = stateFile ? new StateWriter(stateFile, () => ({ format: 'rxgrad-search', version: 1, settings, log: run.log, ...(run.table ? { table: run.table } : {}) }) satisfies SearchState) : null;
      const table = await run.execute(state?.log ?? [], () => writer?.request());
      await writer?.flush();
      if (!cancelled) {
        subscriber.next({ kind: 'done', table });
        subscriber.complete();
      }
    })().catch((error: unknown) => subscriber.error(error));
    return () => {
      cancelled = true;
      run.cancel();
    };
  });
}

/** One execution of a search: the virtual-clock event loop. */
class SearchRun {
  readonly log: LoggedEvent[] = [];
  table: SearchTable | null = null;
  private readonly scheduler: Scheduler;
  private readonly running: RunningJob[] = [];
  /** Each trial's latest event status, most units reached and metric there. */
  private readonly rows = new Map<number, Omit<TrialRow, 'status'> & { status: TrialStatus }>();
  private replay = new Map<number, LoggedEvent[]>();
  private seq = 0;
  private unitsUsed = 0;
  private exhausted = false;
  private schedulerDone = false;
  private pumping = false;
  private again = false;
  private finish: (() => void) | null = null;
  private fail: ((error: unknown) => void) | null = null;
  private saved: () => void = () => {};
  /** Events replayed from a state file: a save before they are all processed again would shorten it. */
  private recorded = 0;
  /** Virtual time of the latest processed event. */
  private clock = 0;

  constructor(
    private readonly options: SearchOptions, private readonly concurrency: number, private readonly seed: number,
    private readonly direction: 'maximize' | 'minimize', private readonly emit: (event: TrialEvent) => void,
  ) {
    this.scheduler = makeScheduler(options.strategy, options.budget, options.space, seed);
  }

  execute(recorded: readonly LoggedEvent[], saved: () => void): Promise<SearchTable> {
    this.saved = saved;
    this.recorded = recorded.length;
    for (const e of recorded) {
      const list = this.replay.get(e.job) ?? [];
      list.push(e);
      this.replay.set(e.job, list);
    }
    return new Promise<SearchTable>((resolve, reject) => {
      this.finish = () => resolve(this.table!);
      this.fail = reject;
      this.pump();
    });
  }

  cancel(): void {
    for (const job of this.running) job.live?.unsubscribe();
    this.running.length = 0;
    this.finish = null;
  }

  private score(metric: number): number {
    return this.direction === 'maximize' ? metric : -metric;
  }

  /** Processes outside events in virtual-clock order for as long as the next one is known. */
  private pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        for (;;) {
          this.fill();
          if (this.running.length === 0) {
            if (this.finish) this.complete();
            break;
          }
          const job = this.running.reduce((a, b) => (b.start + b.processed < a.start + a.processed ? b : a));
          const event = job.buffer.shift();
          if (!event) break; // its next metric has not arrived yet
          this.process(job, event);
        }
      } while (this.again);
    } catch (error) {
      this.cancel();
      this.fail?.(error);
    } finally {
      this.pumping = false;
    }
  }

  /** Starts jobs while slots are free, the budget lasts and the strategy has some. */
  private fill(): void {
    while (!this.exhausted && !this.schedulerDone && this.running.length < this.concurrency) {
      const job = this.scheduler.next();
      if (job === 'done') this.schedulerDone = true;
      if (typeof job !== 'object') {
        if (job === 'wait' && this.running.length === 0) throw new Error('search: the strategy waits for results but no trial is running');
        return;
      }
      this.start(job);
    }
  }

  private start(job: Job): void {
    const seq = this.seq++;
    const recorded = this.replay.get(seq) ?? [];
    this.replay.delete(seq);
    const running: RunningJob = { ...job, seq, start: this.clock, processed: 0, buffer: [...recorded], live: null, ended: false };
    this.running.push(running);
    this.publish({ kind: 'trial', trial: job.trial, config: job.config, status: 'running', budget: job.units });
    const terminal = recorded.some((e) => !('metric' in e));
    const replayedMetrics = recorded.filter((e) => 'metric' in e).length;
    if (terminal || replayedMetrics >= job.units) return;
    // The live trial starts from scratch: its first metrics repeat the recorded ones and are skipped.
    let seen = 0;
    const context = { trial: job.trial, units: job.units, seed: (Math.imul(this.seed + 1, 0x9e3779b1) ^ Math.imul(job.trial + 1, 0x85ebca6b)) >>> 0 };
    running.live = defer(() => this.options.trial(job.config, context)).subscribe({
      next: (metric) => {
        if (running.ended || ++seen <= replayedMetrics) return;
        running.buffer.push({ job: seq, metric: typeof metric === 'number' && Number.isFinite(metric) ? metric : String(metric) });
        this.pump();
      },
      error: (error: unknown) => {
        running.buffer.push({ job: seq, error: error instanceof Error ? error.message : String(error) });
        this.pump();
      },
      complete: () => {
        running.buffer.push({ job: seq, complete: true });
        this.pump();
      },
    });
  }

  private process(job: RunningJob, event: LoggedEvent): void {
    this.log.push(event);
    if (this.log.length > this.recorded) this.saved();
    if ('error' in event) return this.failJob(job, event.error);
    if ('complete' in event) {
      if (job.processed === 0) return this.failJob(job, 'the trial completed without reporting a metric');
      return this.reachEnd(job);
    }
    const metric = typeof event.metric === 'number' ? event.metric : Number(event.metric);
    if (!Number.isFinite(metric)) return this.failJob(job, `metric is ${event.metric} after ${job.processed + 1} units`);
    job.processed++;
    this.clock = job.start + job.processed;
    this.unitsUsed++;
    this.publish({ kind: 'trial', trial: job.trial, config: job.config, status: 'reported', budget: job.processed, metric });
    if (job.processed >= job.units) this.reachEnd(job);
    else {
      const verdict = this.scheduler.report(job.trial, job.processed, this.score(metric));
      if (verdict) {
        this.announce(verdict);
        if (verdict.status === 'stopped') this.end(job);
      }
    }
    if (this.unitsUsed >= (this.options.budget.total ?? Infinity) && !this.exhausted) {
      this.exhausted = true;
      for (const other of [...this.running]) {
        this.publish({ kind: 'trial', trial: other.trial, config: other.config, status: 'stopped', budget: other.processed, ...this.metricOf(other.trial) });
        this.end(other);
      }
    }
  }

  private metricOf(trial: number): { metric?: number } {
    const metric = this.rows.get(trial)?.metric;
    return metric === undefined ? {} : { metric };
  }

  /** The job reached its units (or its trial completed early): final → completed; else a rung result. */
  private reachEnd(job: RunningJob): void {
    const metric = this.rows.get(job.trial)!.metric!;
    this.end(job);
    if (job.final) this.publish({ kind: 'trial', trial: job.trial, config: job.config, status: 'completed', budget: job.processed, metric });
    for (const verdict of this.scheduler.ended(job.trial, job.processed, this.score(metric))) this.announce(verdict);
  }

  private failJob(job: RunningJob, error: string): void {
    this.publish({ kind: 'trial', trial: job.trial, config: job.config, status: 'failed', budget: job.processed, ...this.metricOf(job.trial), error });
    this.end(job);
    for (const verdict of this.scheduler.ended(job.trial, job.processed, -Infinity)) this.announce(verdict);
  }

  private announce(verdict: RungVerdict): void {
    const row = this.rows.get(verdict.trial)!;
    if (row.status === 'failed') return;
    this.publish({ kind: 'trial', trial: verdict.trial, config: row.config, status: verdict.status, budget: verdict.units, rung: verdict.rung, ...this.metricOf(verdict.trial) });
  }

  private end(job: RunningJob): void {
    job.ended = true;
    job.live?.unsubscribe();
    this.running.splice(this.running.indexOf(job), 1);
    this.clock = Math.max(this.clock, job.start + job.processed);
  }

  /** Updates the trial's row from an event and emits it. A rerun's lower-budget metrics do not replace a higher one. */
  private publish(event: TrialEvent): void {
    let row = this.rows.get(event.trial);
    if (!row) {
      row = { trial: event.trial, config: event.config, status: 'running', budget: 0 };
      this.rows.set(event.trial, row);
    }
    row.status = event.status;
    if (event.status === 'reported' && event.budget >= row.budget) {
      row.budget = event.budget;
      row.metric = event.metric!;
    }
    if (event.status === 'promoted') row.rung = event.rung!;
    if (event.error !== undefined) row.error = event.error;
    this.emit(event);
  }

  private complete(): void {
    // A trial still running, waiting at a rung or promoted but never rerun when the search ended was stopped.
    const rows = [...this.rows.values()].map((r): TrialRow => ({ ...r, status: r.status === 'completed' || r.status === 'failed' ? r.status : 'stopped' }));
    const rank = (r: TrialRow) => (r.status === 'failed' || r.metric === undefined ? -Infinity : r.budget);
    rows.sort((a, b) => rank(b) - rank(a) || this.score(b.metric ?? -Infinity) - this.score(a.metric ?? -Infinity) || a.trial - b.trial);
    this.table = { direction: this.direction, unitsUsed: this.unitsUsed, rows, best: rows[0] && rank(rows[0]) > -Infinity ? rows[0] : null };
    this.saved();
    const finish = this.finish!;
    this.finish = null;
    finish();
  }
}
