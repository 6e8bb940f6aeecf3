/**
 * Adaptive splitting for the worker pool (workers/pool.ts): per kind of job, whether splitting it across the
 * workers pays on this host right now.
 *
 * On a quiet host (no worker says the host is oversubscribed) every job is split. On a busy one the judge
 * times both ways of running a kind of job, wall clock per unit of work from the job's start to its end:
 * split across the pool, and on the caller alone, and runs the faster ({@link TwoWayChoice}: the other way is
 * measured again at intervals of EXPLORE_MS, doubling up to MAX_EXPLORE_MS while the choice holds, RECHECK_MS
 * after a switch).
 *
 * Why wall time of both ways, not an estimate: the previous judge weighed the caller's wait for the workers'
 * chunks against their count × the caller's own mean chunk time. Under contention the caller's chunks are
 * themselves slowed (the woken worker shares its core), so that estimate of the saving grew with the harm:
 * the LSTM's sequence jobs "saved" 839 ms and "lost" 367 ms in a run where the 2-thread pool trained at
 * 0.76× of one thread (2026-12-06, seventh session, docs/PERFORMANCE.md). What a per-job figure cannot see
 * is the harm a woken worker does after its job (the main thread waiting on a run queue): the step judge
 * (workers/step-judge.ts) weighs whole steps for that.
 */
import { performance } from 'node:perf_hooks';
import { TwoWayChoice, type ChoiceSettings } from './two-way-choice.ts';

/** How old (ms) the other way's figure may get before it is measured again, at first. */
export const EXPLORE_MS = 25;
/** The same right after the judge switched ways. */
export const RECHECK_MS = 10;
/** Longest exploration interval (ms): it doubles while re-measuring confirms the choice. */
export const MAX_EXPLORE_MS = 800;
const SETTINGS: ChoiceSettings = { exploreMs: EXPLORE_MS, maxExploreMs: MAX_EXPLORE_MS, recheckMs: RECHECK_MS };
/** Jobs of one round: their wall times are summed into one figure for the way they ran. */
const ROUND_JOBS = 8;
/** A round also ends once its jobs took this long (ms): long jobs make rounds of one or two. */
const ROUND_MS = 2;

/** How a job runs: across the pool, or on the calling thread alone. */
export type SplitMode = 'split' | 'alone';
const MODES: readonly SplitMode[] = ['split', 'alone'];

/** What the judge knows of one kind of job: the choice (way 0 split, 1 alone) and the current round. */
export interface SplitAccount {
  readonly choice: TwoWayChoice;
  /** The current round: wall time (ms), work and jobs so far. */
  roundMs: number;
  roundWork: number;
  roundJobs: number;
}

/**
 * The judge of one pool's jobs, keyed by kernel name and chunk count.
 *
 * Usage: `const judge = new SplitJudge(() => hostBusy()); const a = judge.account('gemm', 8); const mode = judge.mode(a); …run it…; judge.record(a, mode, ms, flops);`
 */
export class SplitJudge {
  /** Accounts by kernel name, then chunk count (no key string built per job: this runs on every split). */
  private readonly accounts = new Map<string, Map<number, SplitAccount>>();

  /** `contended`: whether the host is busy (the pool: workers/host-load.ts); `now`: the clock (ms), a test hook. */
  constructor(private readonly contended: () => boolean, private readonly now: () => number = () => performance.now()) {}

  /** Times a kind of job went from split to alone (a measurement hook: the threads bench logs it). */
  get rests(): number {
    let n = 0;
    for (const byChunks of this.accounts.values()) for (const a of byChunks.values()) n += a.choice.switches;
    return n;
  }

  /** The account of jobs of kernel `name` cut into `chunks`. */
  account(name: string, chunks: number): SplitAccount {
    let byChunks = this.accounts.get(name);
    if (!byChunks) this.accounts.set(name, (byChunks = new Map()));
    let account = byChunks.get(chunks);
    if (!account) byChunks.set(chunks, (account = { choice: new TwoWayChoice(SETTINGS), roundMs: 0, roundWork: 0, roundJobs: 0 }));
    return account;
  }

  /** How the next job of this kind runs. */
  mode(account: SplitAccount): SplitMode {
    return MODES[account.choice.way]!;
  }

  /** Records a finished job run `mode`: `ms` of wall time for `work` units (flops, bytes or chunks). */
  record(account: SplitAccount, mode: SplitMode, ms: number, work: number): void {
    if (mode !== this.mode(account)) return; // a job started before the last decision
    account.roundMs += ms;
    account.roundWork += Math.max(work, 1e-9);
    account.roundJobs++;
    if (account.roundJobs < ROUND_JOBS && account.roundMs < ROUND_MS) return;
    account.choice.record(account.roundMs / account.roundWork, this.now(), this.contended());
    account.roundMs = 0;
    account.roundWork = 0;
    account.roundJobs = 0;
  }
}
