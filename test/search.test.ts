import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { lastValueFrom, toArray } from 'rxjs';
import { choice, integer, logUniform, search, SearchConfigError, uniform, type SearchEvent, type SearchOptions, type SearchTable, type TrialEvent } from '../src/index.ts';
import { Recorder } from '../src/dashboard/recorder.ts';
import { DashboardState } from '../src/dashboard/state.ts';
import { curve, syntheticTrial, trialStats } from './fixtures/search-trial.ts';

const space = { lr: logUniform(1e-4, 1e-1), width: integer(16, 256, { log: true }) };
const run = (options: Omit<SearchOptions, 'trial'> & { trial?: SearchOptions['trial'] }) =>
  lastValueFrom(search({ trial: syntheticTrial(), ...options }).pipe(toArray()));
const trialEvents = (events: SearchEvent[]) => events.filter((e): e is TrialEvent => e.kind === 'trial');
const tableOf = (events: SearchEvent[]): SearchTable => {
  const done = events.at(-1)!;
  assert.equal(done.kind, 'done');
  return (done as { table: SearchTable }).table;
};
let dir = '';
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('search', () => {
  it('grid search runs every configuration of the grid to the full budget', async () => {
    const events = await run({ space: { lr: choice([0.001, 0.01, 0.1]), width: integer(32, 34) }, strategy: 'grid', budget: { max: 2 } });
    const table = tableOf(events);
    assert.equal(table.rows.length, 9);
    assert.ok(table.rows.every((r) => r.status === 'completed' && r.budget === 2));
    assert.equal(table.unitsUsed, 18);
    const best = Math.max(...table.rows.map((r) => curve(r.config, 2)));
    assert.equal(table.best!.metric, best);
  });

  it('same seed, same trial sequence and table, whatever the real-time order; another seed differs', async () => {
    const options = { space, strategy: 'asha', budget: { max: 9, total: 80 }, concurrency: 3, seed: 3 } as const;
    const a = await run({ ...options, trial: syntheticTrial((t, u) => 1 + ((t * 5 + u) % 7)) });
    const b = await run({ ...options, trial: syntheticTrial((t, u) => 1 + ((t * 3 + u * 11) % 4)) });
    assert.deepEqual(a, b);
    const c = await run({ ...options, seed: 4 });
    assert.notDeepEqual(tableOf(a).rows.map((r) => r.config), tableOf(c).rows.map((r) => r.config));
  });

  it('successive halving keeps the best third of each full rung and reruns it with eta times the budget', async () => {
    const events = await run({ space, strategy: { name: 'successive-halving', eta: 3 }, budget: { min: 1, max: 9 }, concurrency: 2, seed: 1 });
    const table = tableOf(events);
    assert.equal(table.rows.length, 9);
    assert.equal(table.unitsUsed, 9 * 1 + 3 * 3 + 1 * 9);
    const promoted0 = trialEvents(events).filter((e) => e.status === 'promoted' && e.rung === 0).map((e) => e.trial);
    const atRung0 = [...table.rows].sort((x, y) => curve(y.config, 1) - curve(x.config, 1)).map((r) => r.trial);
    assert.deepEqual([...promoted0].sort(), atRung0.slice(0, 3).sort());
    assert.equal(table.rows.filter((r) => r.status === 'completed').length, 1);
    assert.equal(table.best!.budget, 9);
  });

  it('hyperband runs its brackets (eta 3, budgets 1..9: 9+5+3 trials)', async () => {
    const events = await run({ space, strategy: { name: 'hyperband', eta: 3 }, budget: { min: 1, max: 9 }, concurrency: 2 });
    const table = tableOf(events);
    assert.equal(table.rows.length, 9 + 5 + 3);
    // Bracket s=2: 9×1 + 3×3 + 1×9; s=1: 5×3 + 1×9; s=0: 3×9.
    assert.equal(table.unitsUsed, 27 + 24 + 27);
    assert.equal(table.rows.filter((r) => r.status === 'completed').length, 1 + 1 + 3);
  });

  it('ASHA promotes asynchronously, stops by unsubscribing, and keeps every slot busy', async () => {
    Object.assign(trialStats, { subscribed: 0, active: 0, maxActive: 0, emitted: 0, unsubscribedEarly: 0 });
    const events = await run({ space, strategy: { name: 'asha', eta: 3 }, budget: { min: 1, max: 9, total: 60 }, concurrency: 3, seed: 2 });
    const table = tableOf(events);
    assert.equal(table.unitsUsed, 60);
    assert.equal(trialStats.maxActive, 3);
    assert.ok(trialStats.unsubscribedEarly > 0, 'stopped trials were unsubscribed');
    const trials = trialEvents(events);
    // The first trial at a rung is promoted without waiting for others (asynchronous).
    const first = trials.find((e) => e.status === 'promoted' || e.status === 'stopped')!;
    assert.equal(first.status, 'promoted');
    // Every stop at a rung is justified: at least one recorded result at that rung was better.
    for (const stop of trials.filter((e) => e.status === 'stopped' && e.rung !== undefined)) {
      const before = trials.slice(0, trials.indexOf(stop)).filter((e) => e.rung === stop.rung && e.metric !== undefined);
      assert.ok(before.some((e) => e.metric! > stop.metric!), `trial ${stop.trial} stopped at rung ${stop.rung}`);
    }
    // A stopped trial reports nothing more.
    for (const stop of trials.filter((e) => e.status === 'stopped')) {
      assert.ok(!trials.slice(trials.indexOf(stop) + 1).some((e) => e.trial === stop.trial));
    }
    assert.ok(table.rows.some((r) => r.status === 'completed' && r.budget === 9));
  });

  it('records failed trials (error, NaN) and goes on; minimize ranks the other way', async () => {
    const trial = syntheticTrial(undefined, (c) => (Number(c['lr']) > 0.03 ? 'error' : Number(c['lr']) < 1e-3 ? 'nan' : null));
    const events = await run({ space, trial, strategy: { name: 'random', trials: 12 }, budget: { max: 3 }, seed: 5 });
    const table = tableOf(events);
    const failed = table.rows.filter((r) => r.status === 'failed');
    assert.ok(failed.some((r) => /diverged/.test(r.error!)) && failed.some((r) => /NaN/.test(r.error!)), JSON.stringify(failed));
    assert.equal(table.rows.length, 12);
    assert.ok(table.rows.slice(-failed.length).every((r) => r.status === 'failed'), 'failures rank last');
    const min = tableOf(await run({ space, strategy: { name: 'random', trials: 6 }, budget: { max: 2 }, direction: 'minimize' }));
    assert.equal(min.best!.metric, Math.min(...min.rows.map((r) => r.metric!)));
  });

  it("the dashboard records the search's events as trials (one event shape for both)", async () => {
    const events = await run({ space, strategy: { name: 'asha', eta: 3 }, budget: { max: 9, total: 30 }, concurrency: 2, seed: 9 });
    const state = new DashboardState();
    const recorder = new Recorder(state);
    for (const e of trialEvents(events)) assert.equal(recorder.record(e).kind, 'trial');
    const table = tableOf(events);
    assert.equal(state.trials.size, table.rows.length);
    for (const row of table.rows) assert.equal(state.trials.get(row.trial)!.status, row.status);
  });

  it('rejects bad settings naming the field', () => {
    const trial = syntheticTrial();
    const bad = (options: Partial<SearchOptions>, field: RegExp) =>
      assert.throws(() => search({ space, trial, strategy: 'asha', budget: { max: 9, total: 50 }, ...options }), (e: unknown) => e instanceof SearchConfigError && field.test(e.message));
    bad({ space: {} }, /space: is empty/);
    bad({ space: { lr: uniform(0.5, 0.1) } }, /space\.lr\.min: min 0\.5 is greater than max 0\.1/);
    bad({ space: { lr: logUniform(0, 1) } }, /space\.lr\.min: a log-scale range needs min > 0/);
    bad({ budget: { min: 3, max: 2 } }, /budget\.max: 2 is smaller than one rung \(budget\.min = 3\)/);
    bad({ budget: { min: 3, max: 9, total: 2 } }, /budget\.total: 2 is smaller than one rung/);
    bad({ strategy: 'random', budget: { max: 9, total: 5 } }, /budget\.total: 5 is smaller than one trial/);
    bad({ strategy: 'random', budget: { max: 9 } }, /strategy\.trials/);
    bad({ strategy: { name: 'hyperband', eta: 1 }, budget: { max: 9 } }, /strategy\.eta/);
    bad({ strategy: 'bayes' as never }, /strategy: must be one of/);
    bad({ concurrency: 0 }, /concurrency/);
  });

  // Three child processes (tsx start-up included): ~5 s each on an idle machine; the bound absorbs a busy one.
  it('a search SIGKILLed mid-way resumes from its state file to the same events and table', { timeout: 400_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'rxgrad-search-'));
    const child = fileURLToPath(new URL('./fixtures/search-child.ts', import.meta.url));
    const runChild = (args: string[], onLine?: (line: Record<string, unknown>, kill: () => void) => void) =>
      new Promise<Record<string, unknown>[]>((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        const lines: Record<string, unknown>[] = [];
        let buffered = '';
        let stderr = '';
        const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
        p.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString();
          for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
            const line = JSON.parse(buffered.slice(0, i)) as Record<string, unknown>;
            buffered = buffered.slice(i + 1);
            lines.push(line);
            onLine?.(line, () => p.kill('SIGKILL'));
          }
        });
        p.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        p.on('exit', (code, signal) => {
          clearTimeout(timer);
          if (code === 0 || signal === 'SIGKILL') resolve(lines);
          else reject(new Error(`child exited with ${code ?? signal}: ${stderr}`));
        });
      });
    const full = await runChild([join(dir, 'full.json')]);
    const killedPath = join(dir, 'killed.json');
    const killed = await runChild([killedPath, 'hang-after', '6'], (line, kill) => line['kind'] === 'ready' && kill());
    assert.equal(killed.at(-1)!['kind'], 'ready', 'killed mid-search');
    const saved = JSON.parse(await readFile(killedPath, 'utf8')) as { log: unknown[]; table?: unknown };
    assert.ok(saved.log.length > 0 && saved.table === undefined);
    const resumed = await runChild([killedPath]);
    const withoutStats = (lines: Record<string, unknown>[]) => lines.filter((l) => l['kind'] !== 'stats');
    assert.deepEqual(withoutStats(resumed), withoutStats(full));
    assert.equal(resumed.at(-2)!['kind'], 'done');
    // The resumed run computed fewer metrics: what was recorded was replayed, not recomputed.
    assert.ok((resumed.at(-1)!['emitted'] as number) < (full.at(-1)!['emitted'] as number));
    const finalState = JSON.parse(await readFile(killedPath, 'utf8')) as { table: unknown };
    assert.deepEqual(finalState.table, (full.at(-2) as { table: unknown }).table);
  });
});
