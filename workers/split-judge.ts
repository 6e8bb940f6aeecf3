/**
 * Adaptive splitting for the worker pool (workers/pool.ts): per kind of job, whether splitting it across the
 * workers pays on this host right now.
 *
 * The caller weighs what the workers' chunks saved it (their count × its own mean chunk time) against what it
 * lost waiting for them after running out of chunks (plus the dispatch). On a quiet host the wait is at most
 * about one chunk; on a busy one a worker descheduled while it holds a chunk costs a scheduler time slice (ms).
 * When a worker says the host is oversubscribed and a round of jobs lost more than it saved, that kind of job
 * runs on the caller alone (as with one thread) for REST_MS, doubling up to MAX_REST_MS while the probes after
 * a rest keep failing; then it is split again to see whether the host has quietened. On a quiet host (no
 * worker contended) a loss is only a late wake-up and never rests.
 */
import { performance } from 'node:perf_hooks';

/** How long (ms) a kind of job runs on the calling thread alone once splitting it stopped paying. */
export const REST_MS = 25;
/** Longest rest (ms): each rest that follows a failed probe doubles, up to this. */
export const MAX_REST_MS = 200;
/** Jobs whose gains and losses are weighed together before deciding whether splitting pays. */
const JUDGE_JOBS = 8;
/** Lost time (ms) after which the judge decides at once, without waiting for JUDGE_JOBS jobs. */
const JUDGE_LOST_MS = 2;

/** Time saved and lost (ms) by splitting one kind of job, over the jobs of the current round. */
export interface SplitAccount {
  saved: number;
  lost: number;
  jobs: number;
  /** performance.now() until which this kind of job runs on the caller alone. */
  restUntil: number;
  /** Length of the next rest (ms): doubles while probes keep failing, back to REST_MS after a round that paid. */
  restMs: number;
}

/**
 * The weighing of one pool's jobs, keyed by kernel name and chunk count.
 *
 * Usage: `const judge = new SplitJudge(() => anyWorkerContended()); const a = judge.account('gemm', 8); if (!judge.resting(a)) { …split…; judge.weigh(a, others, meanMs, lostMs); }`
 */
export class SplitJudge {
  /** Accounts by kernel name, then chunk count (no key string built per job: this runs on every split). */
  private readonly accounts = new Map<string, Map<number, SplitAccount>>();
  /** Rests so far (a measurement hook). */
  rests = 0;

  constructor(private readonly contended: () => boolean) {}

  /** The account of jobs of kernel `name` cut into `chunks`. */
  account(name: string, chunks: number): SplitAccount {
    let byChunks = this.accounts.get(name);
    if (!byChunks) this.accounts.set(name, (byChunks = new Map()));
    let account = byChunks.get(chunks);
    if (!account) byChunks.set(chunks, (account = { saved: 0, lost: 0, jobs: 0, restUntil: 0, restMs: REST_MS }));
    return account;
  }

  /** True while this kind of job should run on the caller alone. */
  resting(account: SplitAccount): boolean {
    return account.restUntil > 0 && performance.now() < account.restUntil;
  }

  /** Weighs one finished split job: `others` chunks ran elsewhere, the caller's chunks took `meanMs` each, it lost `lostMs`. */
  weigh(account: SplitAccount, others: number, meanMs: number, lostMs: number): void {
    account.saved += others * meanMs;
    account.lost += lostMs;
    account.jobs++;
    if (account.jobs < JUDGE_JOBS && account.lost < JUDGE_LOST_MS) return;
    if (this.contended() && account.lost > account.saved) {
      account.restUntil = performance.now() + account.restMs;
      account.restMs = Math.min(MAX_REST_MS, 2 * account.restMs);
      this.rests++;
    } else {
      account.restMs = REST_MS;
    }
    account.saved = 0;
    account.lost = 0;
    account.jobs = 0;
  }
}
