/**
 * Adaptive splitting for the worker pool (workers/pool.ts): per kind of job, whether splitting it across the
 * workers pays on this host right now.
 *
 * On a quiet host (no worker says the host is oversubscribed) every job is split. On a busy one the judge
 * times both ways of running a kind of job, wall clock per unit of work from the job's start to its end:
 * split across the pool, and on the caller alone. It runs whichever was faster, and measures the other again
 * once its figure is older than the exploration interval (EXPLORE_MS, doubling up to MAX_EXPLORE_MS while
 * the choice holds).
 *
 * Why wall time of both ways, not an estimate: the previous judge weighed the caller's wait for the workers'
 * chunks against their count × the caller's own mean chunk time. Under contention the caller's chunks are
 * themselves slowed (the woken worker shares its core), so that estimate of the saving grew with the harm:
 * the LSTM's sequence jobs "saved" 839 ms and "lost" 367 ms in a run where the 2-thread pool trained at
 * 0.76× of one thread (2026-12-06, seventh session, docs/PERFORMANCE.md).
 */
import { performance } from 'node:perf_hooks';

/** How old (ms) the other way's figure may get before it is measured again, at first. */
export const EXPLORE_MS = 25;
/** The same right after the judge switched ways. */
export const RECHECK_MS = 10;
/** Longest exploration interval (ms): it doubles while re-measuring confirms the choice. */
export const MAX_EXPLORE_MS = 800;
/** Jobs of one round: their wall times are summed into one figure for the way they ran. */
const ROUND_JOBS = 8;
/** A round also ends once its jobs took this long (ms): long jobs make rounds of one or two. */
const ROUND_MS = 2;

/** How a job runs: across the pool, or on the calling thread alone. */
export type SplitMode = 'split' | 'alone';

/** What the judge knows of one kind of job. */
export interface SplitAccount {
  mode: SplitMode;
  /** The current round: wall time (ms), work and jobs so far. */
  roundMs: number;
  roundWork: number;
  roundJobs: number;
  /** Wall time per unit of work (ms) of each way, smoothed over its rounds; NaN before its first. */
  splitRate: number;
  aloneRate: number;
  /** performance.now() of each way's last figure. */
  splitAt: number;
  aloneAt: number;
  exploreMs: number;
  /** The current round measures the way not chosen, to see whether the choice still holds. */
  exploring: boolean;
}

/**
 * The judge of one pool's jobs, keyed by kernel name and chunk count.
 *
 * Usage: `const judge = new SplitJudge(() => anyWorkerContended()); const a = judge.account('gemm', 8); const mode = judge.mode(a); …run it…; judge.record(a, mode, ms, flops);`
 */
export class SplitJudge {
  /** Accounts by kernel name, then chunk count (no key string built per job: this runs on every split). */
  private readonly accounts = new Map<string, Map<number, SplitAccount>>();
  /** Times a kind of job went from split to alone (a measurement hook: the threads bench logs it). */
  rests = 0;

  /** `contended`: whether some worker says the host is oversubscribed; `now`: the clock (ms), a test hook. */
  constructor(private readonly contended: () => boolean, private readonly now: () => number = () => performance.now()) {}

  /** The account of jobs of kernel `name` cut into `chunks`. */
  account(name: string, chunks: number): SplitAccount {
    let byChunks = this.accounts.get(name);
    if (!byChunks) this.accounts.set(name, (byChunks = new Map()));
    let account = byChunks.get(chunks);
    if (!account) {
      account = {
        mode: 'split', roundMs: 0, roundWork: 0, roundJobs: 0, splitRate: NaN, aloneRate: NaN, splitAt: -Infinity, aloneAt: -Infinity, exploreMs: EXPLORE_MS, exploring: false,
      };
      byChunks.set(chunks, account);
    }
    return account;
  }

  /** How the next job of this kind runs. */
  mode(account: SplitAccount): SplitMode {
    return account.mode;
  }

  /** Records a finished job run `mode`: `ms` of wall time for `work` units (flops, bytes or chunks). */
  record(account: SplitAccount, mode: SplitMode, ms: number, work: number): void {
    if (mode !== account.mode) return; // a job started before the last decision
    account.roundMs += ms;
    account.roundWork += Math.max(work, 1e-9);
    account.roundJobs++;
    if (account.roundJobs < ROUND_JOBS && account.roundMs < ROUND_MS) return;
    const rate = account.roundMs / account.roundWork;
    const now = this.now();
    if (mode === 'split') {
      account.splitRate = Number.isNaN(account.splitRate) ? rate : (account.splitRate + rate) / 2;
      account.splitAt = now;
    } else {
      account.aloneRate = Number.isNaN(account.aloneRate) ? rate : (account.aloneRate + rate) / 2;
      account.aloneAt = now;
    }
    account.roundMs = 0;
    account.roundWork = 0;
    account.roundJobs = 0;
    this.decide(account, now);
  }

  private decide(account: SplitAccount, now: number): void {
    const before = account.mode;
    const other: SplitMode = before === 'split' ? 'alone' : 'split';
    const best: SplitMode = account.splitRate <= account.aloneRate ? 'split' : 'alone';
    if (!this.contended()) {
      // A quiet host: splitting always pays; figures from a busy spell are forgotten.
      account.mode = 'split';
      account.aloneRate = NaN;
      account.exploring = false;
      account.exploreMs = EXPLORE_MS;
    } else if (Number.isNaN(account.splitRate) || Number.isNaN(account.aloneRate)) {
      account.mode = other; // the other way's first figure
      account.exploring = true;
    } else if (account.exploring) {
      // The round measured the other way again. A switch is checked again soon (one noisy round must not hold
      // the worse way for long); a choice that keeps being confirmed is checked less and less often.
      account.exploring = false;
      account.exploreMs = best === before ? RECHECK_MS : Math.min(MAX_EXPLORE_MS, 2 * account.exploreMs);
      account.mode = best;
    } else if (now - (before === 'split' ? account.aloneAt : account.splitAt) > account.exploreMs) {
      account.mode = other; // the other way's figure is stale: measure it again
      account.exploring = true;
    } else {
      if (best !== before) account.exploreMs = RECHECK_MS; // the current way got slower: check the switch soon too
      account.mode = best;
    }
    if (before === 'split' && account.mode === 'alone') this.rests++;
  }
}
