/**
 * Measuring again when the host did not give this VM two full cores close together: the bench's answer to "when a
 * figure looks contaminated, rerun it, and report the quiet run", with "contaminated" decided by two probes of
 * the host, never by the figure itself.
 *
 * Why: on this 2-vCPU VM the host changes what two threads get for stretches of seconds, in two ways that the
 * engine cannot see and a 1-thread engine does not feel:
 * - it takes part of a core away ({@link SimdPairProbe}: two threads sharing nothing, a GEMM loop each, read
 *   1.84–2.00× one thread in bench runs whose quiet rows reached their targets and 1.37–1.70× in others);
 * - a write to memory the other thread has just read costs 3.5× as much (most likely the vCPUs placed far apart;
 *   the guest cannot see where they run)
 *   ({@link CoherenceProbe}: 52 µs, then 182 µs, in one engine-free run). The quiet MLP b256 2-thread engine then
 *   ran 2.4 ms a step instead of 1.5 for stretches of 5–15 s while the pair probe read ~2 (thirteenth session,
 *   docs/PERFORMANCE.md).
 * A quiet row timed in such a stretch measures the host, so each attempt waits (a bounded time) for the probes to
 * read clean, and the row is measured again (a bounded number of times) when they did not read clean around it:
 * the first attempt on a clean host is reported, else the least contaminated one; every attempt is logged. Rows
 * with one core kept busy by another process ask the coherence probe only ({@link isCleanBusy}).
 *
 * Usage: `const { result } = await onCleanHost(probes, 'cnn train', async () => ({ result: await train() }), String, log);`
 */
import { CoherenceProbe } from './coherence-probe.ts';
import { SimdPairProbe } from './simd-pair.ts';

/** Two threads sharing nothing at this many times one thread or more: the host gave two full cores. */
export const CLEAN_PAIR = 1.85;
/** A write to what the other thread just read at most this many times an unshared write: the vCPUs are close. */
export const CLEAN_COHERENCE = 3;
/** Attempts at most per figure (the first included). */
export const CLEAN_ATTEMPTS = 3;
/** Longest wait (ms) for a clean reading before an attempt (the host's stretches last seconds to a minute). */
export const CLEAN_WAIT_MS = 20_000;
/** Between two readings while waiting (ms). */
const POLL_MS = 300;

/** The two probes of the host. */
export interface HostProbes {
  pair: SimdPairProbe;
  coherence: CoherenceProbe;
}

/** Starts both probes (each a thread of its own that sleeps between readings). */
export async function startHostProbes(): Promise<HostProbes> {
  return { pair: await SimdPairProbe.start(), coherence: await CoherenceProbe.start() };
}

/** Stops both probes' threads. */
export async function closeHostProbes(probes: HostProbes): Promise<void> {
  await probes.pair.close();
  await probes.coherence.close();
}

/** Readings of the host during (or around) one attempt. */
export interface HostReading {
  /** Two threads sharing nothing over one (higher is cleaner). */
  pair: number;
  /** A write to what the other thread just read over an unshared write (lower is cleaner). */
  coherence: number;
}

/** One measurement and the probes' reading of the host. */
export interface CleanMeasurement<T> extends HostReading {
  result: T;
  /** The attempt reported (1-based) and how many ran. */
  attempt: number;
  attempts: number;
}

/** How clean a reading is: ≥ 1 is clean; the lower of the two probes' margins. */
export const cleanliness = (r: HostReading): number => Math.min(r.pair / CLEAN_PAIR, CLEAN_COHERENCE / r.coherence);

/** Clean for a quiet row: both probes. */
export const isCleanQuiet = (r: HostReading): boolean => cleanliness(r) >= 1;
/**
 * Clean for a row with one core kept busy: the coherence probe only. The busy-loop child takes a core, so two
 * threads sharing nothing are not expected to get two; but the vCPUs' distance is the host's, as on a quiet host.
 */
export const isCleanBusy = (r: HostReading): boolean => r.coherence <= CLEAN_COHERENCE;

/** Both probes once. */
export const readHost = (probes: HostProbes): HostReading => ({ pair: probes.pair.measure(), coherence: probes.coherence.measure() });

/**
 * Reads the host until it reads clean or `maxMs` passed; returns the last reading and how long it waited.
 *
 * Usage: `const { reading, waitedMs } = await awaitCleanHost(probes, CLEAN_WAIT_MS);`
 */
export async function awaitCleanHost(
  probes: HostProbes, maxMs: number, isClean: (r: HostReading) => boolean = isCleanQuiet,
): Promise<{ reading: HostReading; waitedMs: number }> {
  const t0 = performance.now();
  let reading = readHost(probes);
  while (!isClean(reading) && performance.now() - t0 < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    reading = readHost(probes);
  }
  return { reading, waitedMs: performance.now() - t0 };
}

/**
 * Runs `measure` until the host reads clean or CLEAN_ATTEMPTS ran, and returns the first clean attempt, else the
 * cleanest. `measure` may report its own reading of the host (taken during the attempt); without one, the
 * attempt is bracketed by readings before and after, and the worse counts. (The threads suite selects single
 * rounds instead, with {@link isCleanQuiet} / {@link isCleanBusy} and {@link awaitCleanHost}.)
 * `describe` turns a result into the figure logged per attempt.
 */
export async function onCleanHost<T>(
  probes: HostProbes, label: string, measure: () => Promise<{ result: T; host?: HostReading }>,
  describe: (result: T) => string, log: (message: string) => void,
): Promise<CleanMeasurement<T>> {
  let best: CleanMeasurement<T> | undefined;
  for (let attempt = 1; attempt <= CLEAN_ATTEMPTS; attempt++) {
    const { reading: before, waitedMs } = await awaitCleanHost(probes, CLEAN_WAIT_MS);
    if (waitedMs > 1000) log(`    ${label}: waited ${(waitedMs / 1000).toFixed(1)} s for the host to read clean${cleanliness(before) >= 1 ? '' : ' (it did not)'}`);
    const measured = await measure();
    let host = measured.host;
    if (!host) {
      const after = readHost(probes);
      host = { pair: Math.min(before.pair, after.pair), coherence: Math.max(before.coherence, after.coherence) };
    }
    const clean = cleanliness(host) >= 1;
    log(`    ${label}, attempt ${attempt}: ${describe(measured.result)}; host: two threads sharing nothing ${host.pair.toFixed(2)}× one,` +
      ` a write to what the other thread just read ${host.coherence.toFixed(1)}× an unshared one` +
      (clean ? '' : ` (contaminated: under ${CLEAN_PAIR}× or over ${CLEAN_COHERENCE}×${attempt < CLEAN_ATTEMPTS ? ', measuring again' : ''})`));
    if (!best || cleanliness(host) > cleanliness(best)) best = { result: measured.result, ...host, attempt, attempts: 0 };
    best.attempts = attempt;
    if (clean) break;
  }
  if (best!.attempts > 1) log(`    ${label}: reported attempt ${best!.attempt} of ${best!.attempts}`);
  return best!;
}
