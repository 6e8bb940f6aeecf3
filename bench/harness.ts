/**
 * Shared pieces of the benchmark harness: the result row, the benchmark case, and a timer that
 * reports the median of several samples, each long enough (≥ minSampleMs) for the clock.
 */

/** One line of the results table; `null` where a library cannot run the benchmark. */
export interface Row {
  benchmark: string;
  unit: string;
  rxgrad: number | null;
  tfjsWasm: number | null;
  tfjsCpu: number | null;
  /** PyTorch CPU (Debian python3-torch) where a suite measures it (bench/torch.ts); absent: not measured. */
  pytorch?: number | null;
}

/**
 * A row that only rxgrad (and, where measured, PyTorch) fills: TF.js has no figure for it.
 *
 * Usage: `rows.push(rxgradRow('train cnn b64, 2 threads', 'examples/s', rate));`
 */
export const rxgradRow = (benchmark: string, unit: string, rxgrad: number | null, pytorch: number | null = null): Row =>
  ({ benchmark, unit, rxgrad, tfjsWasm: null, tfjsCpu: null, pytorch });

/** What a case gets from the runner. */
export interface BenchContext {
  quick: boolean;
  /** Train the TF.js cpu-backend MLP for every epoch of a full run too (adds ~8 minutes). */
  cpuAllEpochs: boolean;
  /** Progress and warnings go here (stderr), so stdout holds only the table. */
  log(message: string): void;
}

/** A named benchmark; one run may yield several rows (e.g. throughput, accuracy, latency). */
export interface BenchCase {
  /** Matched by `--only`; also the prefix of the rows it yields. */
  name: string;
  /** Included in `--quick` runs. */
  quick: boolean;
  run(ctx: BenchContext): Promise<Row[]>;
}

/** Options for {@link timeIt}. */
export interface TimeOptions {
  /** Shortest sample; iterations per sample are chosen to reach it. Default 30 ms. */
  minSampleMs?: number;
  /** Samples wanted. Default 7. */
  samples?: number;
  /** Stop sampling past this budget once `minSamples` are in. Default 1500 ms. */
  maxTotalMs?: number;
  /** Default 3. */
  minSamples?: number;
  /** Warm-up duration (at least one call). Default 100 ms. */
  warmupMs?: number;
}

/** Median time of one call and how it was obtained. */
export interface Timing {
  /** Median over samples of (sample time / iterations), in milliseconds. */
  ms: number;
  samples: number;
  iterationsPerSample: number;
}

/**
 * Times `fn` (sync or async): warm-up, calibrate iterations per sample, then the median of samples.
 *
 * Usage: `const { ms } = await timeIt(() => tf.matMul(a, b).dataSync());`
 */
export async function timeIt(fn: () => unknown, options: TimeOptions = {}): Promise<Timing> {
  const minSampleMs = options.minSampleMs ?? 30;
  const wanted = options.samples ?? 7;
  const maxTotalMs = options.maxTotalMs ?? 1500;
  const minSamples = options.minSamples ?? 3;
  const warmupMs = options.warmupMs ?? 100;

  // Warm-up doubles as calibration: its mean call time sets the iterations per sample.
  let calls = 0;
  const warmStart = performance.now();
  do {
    await fn();
    calls++;
  } while (performance.now() - warmStart < warmupMs);
  const perCall = (performance.now() - warmStart) / calls;
  const iterations = Math.max(1, Math.ceil(minSampleMs / Math.max(perCall, 1e-6)));

  const times: number[] = [];
  const start = performance.now();
  while (times.length < wanted && (times.length < minSamples || performance.now() - start < maxTotalMs)) {
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) await fn();
    times.push((performance.now() - t0) / iterations);
  }
  return { ms: median(times), samples: times.length, iterationsPerSample: iterations };
}

/**
 * Untimed training (ms) a training row does before its timed part: a 2-thread engine's first seconds are slower.
 * The first MLP b64 engine of a process trained at 70, 91, 81, 106, 112, 109, 119, 113k ex/s in its first eight
 * rounds of 0.3 s (the third engine of the same process from 111k); the threads suite's first rows read 0.93–0.96×
 * quiet in some runs, and the CNN row, warmed by 5 batches, 9,990 and 12,580 ex/s against 14,770 and 14,201 for
 * the threads suite's 2-thread CNN in the same two runs (ninth session).
 */
export const WARM_UP_MS = 2000;

/**
 * Runs `work` again and again until `ms` have passed (at least once): the untimed warm-up of a training row.
 *
 * Usage: `await repeatFor(WARM_UP_MS, fit);`
 */
export async function repeatFor(ms: number, work: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  do await work(); while (performance.now() - t0 < ms);
}

/** A training run's rate, examples/s: the median of its segments', and the whole run's. */
export interface Throughput {
  /** Median over segments of timed batches (the whole run's rate when it has fewer than 3). */
  examplesPerSecond: number;
  /** The whole timed run's rate. */
  overall: number;
  batches: number;
  seconds: number;
}

/**
 * The throughput of timed batches of `batch` examples that started at `t0` and ended at `ends[i]` (ms): the
 * median of consecutive segments of `segment` batches, and the overall rate. A few seconds of foreign load on
 * this shared machine (another tenant, a GC of the runner) move the median less than the whole run's mean; both
 * are logged by the rows that use it.
 *
 * Usage: `const { examplesPerSecond, overall } = segmentedThroughput(t0, ends, 64, 25);`
 */
export function segmentedThroughput(t0: number, ends: readonly number[], batch: number, segment: number): Throughput {
  const segmentRates: number[] = [];
  for (let end = segment; end <= ends.length; end += segment) {
    const start = end === segment ? t0 : ends[end - segment - 1]!;
    segmentRates.push((segment * batch * 1000) / (ends[end - 1]! - start));
  }
  const seconds = ((ends.at(-1) ?? t0) - t0) / 1000;
  const overall = (ends.length * batch) / seconds;
  return { examplesPerSecond: segmentRates.length >= 3 ? median(segmentRates) : overall, overall, batches: ends.length, seconds };
}

/** Median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Runs one library's part of a case; a failure (e.g. rxgrad's engine not built yet) is logged and
 * becomes `null`, so the other libraries still report.
 *
 * Usage: `const gflops = await attempt(ctx, 'rxgrad gemm 512', () => runRxgrad());`
 */
export async function attempt<T>(ctx: BenchContext, label: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    ctx.log(`  ! ${label}: skipped (${message})`);
    return null;
  }
}

/** Deterministic values in [-1, 1) (xorshift32), so every library multiplies the same data. */
export function fillRandom(out: Float32Array, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

/**
 * Runs each variant once to warm up, then `rounds` alternating rounds, and returns each variant's
 * median seconds per run: drift (GC, JIT, other load) hits every variant alike.
 *
 * Usage: `const [on, off] = await alternatingMedians([() => runOn(), () => runOff()], 7);`
 */
export async function alternatingMedians(variants: readonly (() => Promise<unknown>)[], rounds: number): Promise<number[]> {
  for (const run of variants) await run();
  const seconds = variants.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    for (const [i, run] of variants.entries()) {
      const t0 = performance.now();
      await run();
      seconds[i]!.push((performance.now() - t0) / 1000);
    }
  }
  return seconds.map(median);
}
