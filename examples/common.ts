/**
 * What the image examples share: option parsing and loading a dataset with a clear fallback.
 * Not part of the library; the library's own progress output is `logProgress()`.
 */
import { createServer, type AddressInfo } from 'node:net';
import { InvalidArgumentError } from 'commander';
import { identity, type MonoTypeOperatorFunction } from 'rxjs';
import { FASHION_MNIST_DIR, loadEmbeddedMnist, loadFashionMnist, type Dataset } from '../src/data/index.ts';
import { createDashboard, type Dashboard, type DashboardOptions } from '../src/dashboard/index.ts';

/** A commander option parser for positive integers. Usage: `.option('--epochs <n>', 'epochs', positiveInt('--epochs'))` */
export const positiveInt = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

/**
 * The q-quantile (0 ≤ q ≤ 1) of ascending `sorted` values, nearest rank below (NaN when empty).
 *
 * Usage: `const p90 = quantile(times.sort((a, b) => a - b), 0.9);`
 */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** A free TCP port on loopback (for the multi-process examples). Usage: `const port = await freePort();` */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The first `n` examples of a dataset (views, no copy), seen with another per-example shape if given. */
export function firstExamples(dataset: Dataset, n: number | undefined, shape: number[] = dataset.shape): Dataset {
  return { ...exampleRange(dataset, 0, n === undefined ? dataset.length : Math.min(n, dataset.length)), shape };
}

/** Examples start .. start + count of a dataset (views, no copy). Usage: `exampleRange(d, d.length - 5000, 5000)` */
export function exampleRange(dataset: Dataset, start: number, count: number): Dataset {
  const width = dataset.features.length / dataset.length;
  return {
    ...dataset, features: dataset.features.subarray(start * width, (start + count) * width), labels: dataset.labels.subarray(start, start + count), length: count,
  };
}

/**
 * The reference set's pixel mean and standard deviation, and `sets` standardised with them (copies, in order).
 * Usage: `const { mean, std, sets: [train, test] } = standardize(data.train, [data.train, data.test]);`
 */
export function standardize(reference: Dataset, sets: readonly Dataset[]): { mean: number; std: number; sets: Dataset[] } {
  let sum = 0;
  let sq = 0;
  for (const v of reference.features) {
    sum += v;
    sq += v * v;
  }
  const mean = sum / reference.features.length;
  const std = Math.sqrt(sq / reference.features.length - mean * mean);
  return { mean, std, sets: sets.map((d) => ({ ...d, features: d.features.map((v) => (v - mean) / std) })) };
}

/** `--data <name>` of the Fashion-MNIST examples (loadImages checks the name). Usage: `.option(...dataOption)` */
export const dataOption = [
  '--data <name>', "'fashion-mnist' (the Debian IDX files) or 'mnist' (the embedded digits, for machines without the dataset)", 'fashion-mnist',
] as const;

/**
 * 'mnist' (the embedded digits) or 'fashion-mnist' (the Debian IDX files; with `fallback`, the
 * embedded digits when they are missing, saying so).
 */
export function loadImages(name: string, options: { fashionDir?: string; fallback?: boolean; fail: (message: string) => never }): { train: Dataset; test: Dataset } {
  if (name === 'mnist') return loadEmbeddedMnist();
  if (name !== 'fashion-mnist') return options.fail(`--data must be 'fashion-mnist' or 'mnist', got '${name}'`);
  try {
    return loadFashionMnist(options.fashionDir ?? FASHION_MNIST_DIR);
  } catch (error) {
    if (!options.fallback) throw error;
    console.log(`Fashion-MNIST unavailable (${(error as Error).message}); using the embedded MNIST digits instead.`);
    return loadEmbeddedMnist();
  }
}

/** The dashboard's port when `--dashboard` is given without one. */
export const DEFAULT_DASHBOARD_PORT = 6006;

/** Help text and parser of `--dashboard [port]`. Usage: `.option(...dashboardOption)` */
export const dashboardOption = [
  '--dashboard [port]',
  `serve a live training page on http://127.0.0.1:<port> (default ${DEFAULT_DASHBOARD_PORT}) while training`,
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('--dashboard port must be an integer in [0, 65535]');
    return n;
  },
] as const;

/** Starts the dashboard when `--dashboard` was given (`true`: the default port) and prints its address. */
export async function startDashboard(option: true | number | undefined, options: DashboardOptions): Promise<Dashboard | null> {
  if (option === undefined) return null;
  const board = await createDashboard({ ...options, port: option === true ? DEFAULT_DASHBOARD_PORT : option });
  console.log(`dashboard: ${board.url}`);
  return board;
}

/** `board.watch()`, or nothing without a dashboard. */
export function watchWith<T>(board: Dashboard | null): MonoTypeOperatorFunction<T> {
  return board ? board.watch<T>() : identity;
}

/** At the end of a run with a dashboard: the page stays up (history and all) until Ctrl-C. */
export async function keepServing(board: Dashboard | null): Promise<void> {
  if (!board) return;
  await board.idle();
  console.log(`dashboard: the run is over; ${board.url} stays up until Ctrl-C`);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  await board.close();
}
