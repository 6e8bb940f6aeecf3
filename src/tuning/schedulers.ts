import { Random } from '../random.ts';
import { gridConfigs, sampleConfig, SearchConfigError, type Config, type Space } from './space.ts';

/** The search strategies. */
export type StrategyName = 'grid' | 'random' | 'successive-halving' | 'hyperband' | 'asha';

/** A strategy and its settings. */
export interface StrategyOptions {
  name: StrategyName;
  /** Reduction factor of the rung-based strategies: each rung keeps the best 1/eta (default 3). */
  eta?: number;
  /** How many configurations to try (random, asha: default until `budget.total` runs out; successive halving: the bracket's size, default eta^rungs). */
  trials?: number;
  /** Values per numeric range for grid search (default 3). */
  gridPoints?: number;
}

/** Run `trial` from scratch until it has reported `units` budget units; `final`: reaching them completes it. */
export interface Job {
  trial: number;
  config: Config;
  units: number;
  final: boolean;
}

/** A scheduler's verdict on a trial at one of its rungs. */
export interface RungVerdict {
  trial: number;
  status: 'promoted' | 'stopped';
  rung: number;
  units: number;
  score: number;
}

/**
 * What a strategy decides. Scores are to be maximised (the search negates minimised metrics). The search
 * calls these in one deterministic order (its virtual clock), so a scheduler is a plain state machine.
 */
export interface Scheduler {
  /** The next job, 'wait' (results of running jobs are needed first) or 'done'. */
  next(): Job | 'wait' | 'done';
  /** A running trial reached `units` with `score`: continue, or a verdict (promoted: continues; stopped: cut). */
  report(trial: number, units: number, score: number): RungVerdict | null;
  /** A job ended: it reached its units, or failed (score -Infinity). Verdicts on other trials may follow. */
  ended(trial: number, units: number, score: number): RungVerdict[];
}

/** Allocates trial numbers and draws configurations, one per new trial. */
class TrialSource {
  private count = 0;
  private readonly rng: Random;
  constructor(private readonly space: Space, seed: number) {
    this.rng = new Random(seed);
  }
  get issued(): number {
    return this.count;
  }
  draw(): { trial: number; config: Config } {
    return { trial: this.count++, config: sampleConfig(this.space, this.rng) };
  }
}

/** Budget units of each rung: min·eta^k up to max. */
export function rungUnits(min: number, max: number, eta: number): number[] {
  const units = [min];
  while (units.at(-1)! * eta <= max) units.push(units.at(-1)! * eta);
  return units;
}

/** Runs each listed configuration to the full budget, in order. */
class ListScheduler implements Scheduler {
  constructor(private readonly take: () => { trial: number; config: Config } | null, private readonly units: number) {}
  next(): Job | 'done' {
    const t = this.take();
    return t ? { ...t, units: this.units, final: true } : 'done';
  }
  report(): null {
    return null;
  }
  ended(): RungVerdict[] {
    return [];
  }
}

/** Synchronous successive halving over one bracket: n trials at rung 0, the best 1/eta of each full rung go on (retrained from scratch). */
class Bracket {
  private rung = 0;
  private pending: { trial: number; config: Config }[] = [];
  private readonly results = new Map<number, { config: Config; score: number }>();
  private expected: number;
  private drawn = 0;
  constructor(private readonly source: TrialSource, private readonly size: number, private readonly units: readonly number[], private readonly eta: number) {
    this.expected = size;
  }
  get finished(): boolean {
    return this.rung >= this.units.length;
  }
  next(): Job | 'wait' | 'done' {
    if (this.finished) return 'done';
    const units = this.units[this.rung]!;
    const final = this.rung === this.units.length - 1;
    if (this.rung === 0 && this.drawn < this.size) {
      this.drawn++;
      return { ...this.source.draw(), units, final };
    }
    const job = this.pending.shift();
    return job ? { ...job, units, final } : 'wait';
  }
  ended(trial: number, config: Config, score: number): RungVerdict[] {
    this.results.set(trial, { config, score });
    if (this.results.size < this.expected) return [];
    const units = this.units[this.rung]!;
    const ranked = [...this.results].sort((a, b) => b[1].score - a[1].score || a[0] - b[0]);
    const last = this.rung === this.units.length - 1;
    const keep = last ? 0 : Math.max(1, Math.floor(this.expected / this.eta));
    const verdicts = ranked.map(([t, r], i): RungVerdict => ({ trial: t, status: i < keep && r.score > -Infinity ? 'promoted' : 'stopped', rung: this.rung, units, score: r.score }));
    this.pending = verdicts.filter((v) => v.status === 'promoted').map((v) => ({ trial: v.trial, config: this.results.get(v.trial)!.config }));
    this.results.clear();
    this.rung++;
    this.expected = this.pending.length;
    if (this.expected === 0) this.rung = this.units.length;
    // The last rung's trials complete; they get no verdict.
    return last ? [] : verdicts;
  }
}

/** Successive halving brackets (Hyperband: one per s, most aggressive first), started as slots free up. */
class BracketScheduler implements Scheduler {
  private readonly active: { bracket: Bracket; trials: Map<number, Config> }[] = [];
  constructor(private readonly source: TrialSource, private readonly brackets: () => Bracket | null) {}
  next(): Job | 'wait' | 'done' {
    for (const entry of this.active) {
      const job = entry.bracket.next();
      if (typeof job === 'object') {
        entry.trials.set(job.trial, job.config);
        return job;
      }
    }
    const bracket = this.brackets();
    if (bracket) {
      this.active.push({ bracket, trials: new Map() });
      return this.next();
    }
    return this.active.some((e) => !e.bracket.finished) ? 'wait' : 'done';
  }
  report(): null {
    return null;
  }
  ended(trial: number, _units: number, score: number): RungVerdict[] {
    const entry = this.active.find((e) => e.trials.has(trial));
    if (!entry) throw new Error(`search: trial ${trial} ended in no bracket`);
    return entry.bracket.ended(trial, entry.trials.get(trial)!, score);
  }
}

/**
 * ASHA as an early-stopping rule (Li et al. 2020; the asynchronous variant Ray Tune ships): every trial is
 * started for the top rung's budget; when it reaches a rung it goes on (is promoted) if its score is in the
 * best max(1, ⌊n/eta⌋) of the n scores that rung has recorded so far, itself included, and is stopped
 * otherwise. No trial ever waits for a rung to fill.
 */
class AshaScheduler implements Scheduler {
  private readonly records: number[][];
  constructor(private readonly source: TrialSource, private readonly units: readonly number[], private readonly eta: number, private readonly trials: number) {
    this.records = units.map(() => []);
  }
  next(): Job | 'done' {
    if (this.source.issued >= this.trials) return 'done';
    return { ...this.source.draw(), units: this.units.at(-1)!, final: true };
  }
  report(trial: number, units: number, score: number): RungVerdict | null {
    const rung = this.units.indexOf(units);
    if (rung < 0 || rung === this.units.length - 1) return null;
    const recorded = this.records[rung]!;
    recorded.push(score);
    const keep = Math.max(1, Math.floor(recorded.length / this.eta));
    const better = recorded.filter((s) => s > score).length;
    return { trial, status: better < keep ? 'promoted' : 'stopped', rung, units, score };
  }
  ended(): RungVerdict[] {
    return [];
  }
}

/** The search's budget, in units of the trial's metric stream (epochs, or N steps). */
export interface SearchBudget {
  /** Most units one trial runs (the top rung). */
  max: number;
  /** Units of the first rung (successive halving, Hyperband, ASHA); default 1. */
  min?: number;
  /** Units all trials together may use; when reached, running trials are stopped and none start. */
  total?: number;
}

const positiveInteger = (field: string, value: unknown): number => {
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw new SearchConfigError(field, `must be a positive integer, got ${JSON.stringify(value)}`);
  return value as number;
};

/** Checks the strategy and budget together, naming the field, and makes the scheduler. */
export function makeScheduler(strategy: StrategyName | StrategyOptions, budget: SearchBudget, space: Space, seed: number): Scheduler {
  const options: StrategyOptions = typeof strategy === 'string' ? { name: strategy } : strategy;
  const names: StrategyName[] = ['grid', 'random', 'successive-halving', 'hyperband', 'asha'];
  if (!names.includes(options?.name)) throw new SearchConfigError('strategy', `must be one of ${names.join(', ')}, got ${JSON.stringify(options?.name ?? strategy)}`);
  if (typeof budget !== 'object' || budget === null) throw new SearchConfigError('budget', 'must be an object { max, min?, total? }');
  const max = positiveInteger('budget.max', budget.max);
  const min = positiveInteger('budget.min', budget.min ?? 1);
  const total = budget.total === undefined ? Infinity : positiveInteger('budget.total', budget.total);
  const eta = options.eta === undefined ? 3 : positiveInteger('strategy.eta', options.eta);
  if (eta < 2) throw new SearchConfigError('strategy.eta', `must be at least 2, got ${eta}`);
  const trials = options.trials === undefined ? undefined : positiveInteger('strategy.trials', options.trials);
  const source = new TrialSource(space, seed);
  const rungBased = options.name === 'successive-halving' || options.name === 'hyperband' || options.name === 'asha';
  if (rungBased) {
    if (max < min) throw new SearchConfigError('budget.max', `${max} is smaller than one rung (budget.min = ${min})`);
    if (total < min) throw new SearchConfigError('budget.total', `${total} is smaller than one rung (budget.min = ${min})`);
  } else if (total < max) {
    throw new SearchConfigError('budget.total', `${total} is smaller than one trial (budget.max = ${max})`);
  }
  const repeat = total !== Infinity;
  switch (options.name) {
    case 'grid': {
      const configs = gridConfigs(space, options.gridPoints === undefined ? 3 : positiveInteger('strategy.gridPoints', options.gridPoints));
      let i = 0;
      return new ListScheduler(() => (i < configs.length ? { trial: i, config: configs[i++]! } : null), max);
    }
    case 'random': {
      if (trials === undefined && !repeat) throw new SearchConfigError('strategy.trials', 'random search needs strategy.trials or budget.total');
      const limit = trials ?? Infinity;
      return new ListScheduler(() => (source.issued < limit ? source.draw() : null), max);
    }
    case 'asha': {
      if (trials === undefined && !repeat) throw new SearchConfigError('strategy.trials', 'ASHA needs strategy.trials or budget.total');
      return new AshaScheduler(source, rungUnits(min, max, eta), eta, trials ?? Infinity);
    }
    case 'successive-halving': {
      const units = rungUnits(min, max, eta);
      const size = trials ?? eta ** (units.length - 1);
      let made = 0;
      return new BracketScheduler(source, () => (made++ === 0 || repeat ? new Bracket(source, size, units, eta) : null));
    }
    case 'hyperband': {
      const all = rungUnits(min, max, eta);
      const sMax = all.length - 1;
      let s = sMax;
      return new BracketScheduler(source, () => {
        if (s < 0) {
          if (!repeat) return null;
          s = sMax; // with a total budget, Hyperband iterations repeat until it runs out
        }
        const size = Math.ceil(((sMax + 1) / (s + 1)) * eta ** s);
        const bracket = new Bracket(source, size, all.slice(sMax - s), eta);
        s--;
        return bracket;
      });
    }
  }
}
