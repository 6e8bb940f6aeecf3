/**
 * Whether other processes keep this host's cores busy: the pool's judges (workers/split-judge.ts,
 * workers/step-judge.ts) weigh splitting against running alone only then, and only then may a worker stop
 * spinning for its next task on its own run-queue signal (pool-worker.mjs, told through its slot's HOST field).
 *
 * The measure is CPU time: the host's busy time (Linux `/proc/stat`, all cores, in clock ticks) minus this
 * process's own (`process.cpuUsage()`, every thread), over periods of at least SAMPLE_MS. Other processes
 * using at least BUSY_CORES of a core on average make the host busy.
 *
 * Why not the workers' own signal (their run-queue waits): it also fires
 * on a quiet host whenever this process has more runnable threads than cores for a moment (V8's GC and
 * compiler threads beside the caller and a worker), and a judge acting on it explored running alone on a
 * quiet host: the LSTM bench row fell from 4,474–4,673 to 3,593–4,816 examples/s (seventh session,
 * docs/PERFORMANCE.md); and workers acting on it alone slept at about half the posts of a quiet training step
 * (eighth session). Other processes' CPU time is what "another process keeps a core busy" means.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Least period (ms) between two readings: /proc/stat counts in 10 ms ticks. */
export const SAMPLE_MS = 100;
/** Other processes' average use (cores) from which the host counts as busy. */
export const BUSY_CORES = 0.4;
/** Milliseconds per clock tick of /proc/stat (USER_HZ, 100 on Linux). */
const TICK_MS = 10;

/** The host's busy CPU time so far (ms, all cores), or NaN where /proc/stat cannot be read. */
function hostBusyMs(): number {
  try {
    const text = readFileSync('/proc/stat', 'latin1');
    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice": guest time is inside user.
    const fields = text.slice(0, text.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    return (user + nice + system + irq + softirq + steal) * TICK_MS;
  } catch {
    return NaN;
  }
}

const ownCpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/**
 * Other processes' CPU use, sampled at most every SAMPLE_MS.
 *
 * Usage: `const load = new HostLoad(); if (load.busy() ?? fallback()) …`
 */
export class HostLoad {
  private at = performance.now();
  private host = hostBusyMs();
  private own = ownCpuMs();
  /** Cores' worth other processes used over the last period; NaN before the first or where unknown. */
  otherCores = NaN;

  /** True if other processes kept at least BUSY_CORES busy over the last period; undefined where the host does not say. */
  busy(): boolean | undefined {
    if (Number.isNaN(this.host)) return undefined;
    const now = performance.now();
    if (now - this.at >= SAMPLE_MS) {
      const host = hostBusyMs();
      const own = ownCpuMs();
      this.otherCores = Math.max(0, host - this.host - (own - this.own)) / (now - this.at);
      this.at = now;
      this.host = host;
      this.own = own;
    }
    return Number.isNaN(this.otherCores) ? false : this.otherCores >= BUSY_CORES;
  }
}
