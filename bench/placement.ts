/**
 * Whole training steps with one core busy, for each way the kernel can stack three runnable threads on two cores:
 * the engine's main thread (C), its pool worker (W) and a busy-loop process (B). Each placement is forced with
 * `taskset` (B on CPU 1 throughout; C and W pinned per placement), and the 2-thread engine's rate is set against
 * a 1-thread engine on the same busy host with its main thread free (where the kernel puts it: a core of its own).
 *
 * Why: on this 2-vCPU VM the threads suite's busy rows mostly read 0.94–1.01×, and above 1.2× in some runs only.
 * With three runnable threads on two cores one core always runs two of them; moving one to the other core would only
 * turn a 2:1 split into 1:2, so which two share can stay put for seconds (a row's rounds then all read ~1.0× or all
 * ~1.3×). The rows here measure what each placement allows the engine as it ships (its judges on):
 * - W beside B, C alone: the engine's second thread gets the half core B leaves it;
 * - W beside C, B alone: the process has one core, whatever it does;
 * - C beside B, W alone: the main thread gets half a core (the 1-thread engine, free, would get a whole one).
 *
 * Each placement's rows include the coherence probe's reading (bench/coherence-probe.ts), the worse of just before
 * and just after it: with W beside B the pool gained ~1.4× in runs where it read close at both ends and ~1.0× in
 * runs where it read far at one (fifteenth session, docs/PERFORMANCE.md).
 *
 * Linux only (`taskset` from util-linux); elsewhere the suite returns no rows and says why.
 *
 * Usage: `rows.push(...await placementBench({ quick: ctx.quick }));` or `npx tsx bench/placement.ts [--quick] [--only cnn]`
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import type { Engine } from '../src/engine.ts';
import { median, repeatFor, rxgradRow, WARM_UP_MS, type Row } from './harness.ts';
import { loadRxgrad, makeEngine } from './rxgrad.ts';
import { SUBJECTS, makeBatches, trainRound } from './train-subjects.ts';
import { BusyCore } from './busy-core.ts';
import { CoherenceProbe } from './coherence-probe.ts';
import { CLEAN_COHERENCE } from './clean-host.ts';

const log = (message: string) => process.stderr.write(`${message}\n`);

/** Where the main thread and the worker run, the busy loop being on CPU 1. */
interface Placement {
  name: string;
  main: string;
  worker: string;
}

const PLACEMENTS: Placement[] = [
  { name: 'worker beside the busy loop, main thread alone', main: '0', worker: '1' },
  { name: 'worker beside the main thread, busy loop alone', main: '0', worker: '0' },
  { name: 'main thread beside the busy loop, worker alone', main: '1', worker: '0' },
];

/** The models whose busy rows must gain (issue 11: CNN b64 and MLP b256). */
const MODELS = ['mlp 784-128-10 b256', 'cnn 28x28 conv16-pool-conv32-pool-dense10 b64'];

/** A thread's CPU time so far (clock ticks), from /proc/self/task/<tid>/stat. */
function cpuTicks(tid: string): number {
  const fields = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

const threadIds = () => readdirSync('/proc/self/task');

/** Sets the CPUs a thread of this process may run on (`taskset -p`). */
const pin = (tid: string, cpus: string) => execFileSync('taskset', ['-p', '-c', cpus, tid], { stdio: 'ignore' });

/** The CPUs this process may run on now, as `taskset -c` takes them (restored at the end). */
function currentAffinity(): string {
  const out = execFileSync('taskset', ['-p', '-c', String(process.pid)], { encoding: 'utf8' });
  return out.slice(out.lastIndexOf(':') + 1).trim();
}

/** Why the suite cannot run here, or undefined. */
function unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (os.availableParallelism() < 2) return 'fewer than 2 CPUs';
  let mine: string;
  try {
    mine = currentAffinity();
  } catch {
    return 'taskset (util-linux) not found';
  }
  if (mine !== '0,1' && mine !== '0-1' && !/^0-\d+$/.test(mine)) return `this process may run only on CPUs ${mine}, not 0 and 1`;
  return undefined;
}

/**
 * The suite: per model (MLP b256, CNN b64) and placement, the 2-thread engine's examples/s and its ratio to the
 * 1-thread engine's, median of alternating rounds, one core busy.
 */
export async function placementBench(options: { quick: boolean; only?: string }): Promise<Row[]> {
  const why = unavailable();
  if (why) {
    log(`  placement: skipped (${why})`);
    return [];
  }
  const rx = await loadRxgrad();
  const rows: Row[] = [];
  const rounds = options.quick ? 3 : 7;
  const passes = options.quick ? 1 : 3;
  const affinity = currentAffinity();
  const main = String(process.pid);
  const busy = new BusyCore(1);
  // Read before and after each arrangement: with the worker beside the busy loop the pool gains ~1.4× while the host
  // keeps the two vCPUs close and ~1.0× in its far stretches (fifteenth session, docs/PERFORMANCE.md). Started before
  // the engines, so its reader is not taken for the pool's worker.
  const coherence = await CoherenceProbe.start();
  try {
    await busy.start();
    for (const name of MODELS.filter((m) => !options.only || m.includes(options.only))) {
      const subject = SUBJECTS.find((s) => s.name === name)!;
      const batches = makeBatches(rx, subject, options.quick ? Math.ceil(subject.steps / 2) : subject.steps);
      const before = new Map(threadIds().map((t) => [t, cpuTicks(t)]));
      const engines: Engine[] = [await makeEngine(1), await makeEngine(2)];
      const models = engines.map((engine) => subject.build(rx, engine));
      try {
        const fits = models.map((model) => trainRound(rx, model, batches, passes));
        for (const fit of fits) await repeatFor(options.quick ? 300 : WARM_UP_MS, fit);
        // The pool's worker: of the threads the engines started, the one that worked most during the warm-up.
        const started = threadIds().filter((t) => !before.has(t));
        const worker = started.sort((a, b) => cpuTicks(b) - cpuTicks(a))[0];
        if (worker === undefined) throw new Error('placement: no worker thread found for the 2-thread engine');
        const examples = passes * batches.length * subject.batch;
        for (const placement of PLACEMENTS) {
          const ones: number[] = [], twos: number[] = [], ratios: number[] = [];
          const coherenceBefore = coherence.measure();
          for (let r = 0; r < rounds; r++) {
            // The 1-thread engine with its main thread free; the 2-thread engine in the placement; alternating order.
            const times = [0, 0];
            for (const i of r % 2 ? [1, 0] : [0, 1]) {
              if (i === 1) {
                pin(main, placement.main);
                pin(worker, placement.worker);
              }
              const t0 = performance.now();
              await fits[i]!();
              times[i] = performance.now() - t0;
              if (i === 1) pin(main, affinity);
            }
            ones.push(times[0]!);
            twos.push(times[1]!);
            ratios.push(times[0]! / times[1]!);
          }
          pin(worker, affinity);
          const coherenceAfter = coherence.measure();
          const coherenceWorse = Math.max(coherenceBefore, coherenceAfter);
          const far = coherenceWorse > CLEAN_COHERENCE;
          const ratio = median(ratios);
          const two = (1000 * examples) / median(twos), one = (1000 * examples) / median(ones);
          log(`  ${name}, one core busy, ${placement.name}: 2 threads ${Math.round(two)} ex/s, 1 thread (free) ${Math.round(one)} ex/s, ` +
            `${ratio.toFixed(2)}× (rounds ${ratios.map((x) => x.toFixed(2)).join(' ')}; coherence probe ${coherenceBefore.toFixed(1)} before, ` +
            `${coherenceAfter.toFixed(1)} after${far ? ': the vCPUs far apart at one end' : ''}; load average ${os.loadavg()[0]!.toFixed(1)})`);
          const prefix = `train ${name}, one core busy, ${placement.name}`;
          rows.push(
            rxgradRow(`${prefix}, 2 threads`, 'examples/s', two),
            rxgradRow(`${prefix}, 2 threads vs 1 thread (its main thread free)`, '×', ratio),
            rxgradRow(`${prefix}, a write to what the other thread just read vs an unshared one, the worse of before and after`, '×', coherenceWorse),
          );
        }
      } finally {
        pin(main, affinity);
        for (const model of models) model.dispose();
        for (const engine of engines) await engine.close();
      }
    }
  } finally {
    await busy.stop();
    await coherence.close();
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
  const rows = await placementBench({ quick: process.argv.includes('--quick'), ...(only ? { only } : {}) });
  console.table(rows.map((r) => ({ benchmark: r.benchmark, unit: r.unit, rxgrad: r.rxgrad && Number(r.rxgrad.toPrecision(4)) })));
}
