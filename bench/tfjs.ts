/**
 * TF.js in the same process as rxgrad: the pure-JS `cpu` backend (from @tensorflow/tfjs) and the
 * XNNPACK `wasm` backend (@tensorflow/tfjs-backend-wasm), switched with `tf.setBackend`.
 *
 * In Node the wasm backend never picks its threaded binary (its WASM_HAS_MULTITHREAD_SUPPORT flag
 * is hard-wired to false under Node, tfjs#3830), so it loads `tfjs-backend-wasm-simd.wasm` and
 * runs single-threaded. The binaries ship in the package's dist/ directory and are read with
 * fs.readFileSync, so no network is needed; we still pass that directory explicitly to
 * setWasmPaths so the lookup doesn't depend on the bundle's __dirname.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

export { tf };

/** The TF.js backends the benchmarks compare against. */
export type TfBackend = 'cpu' | 'wasm';

/** What {@link initTfjs} found. */
export interface TfjsInfo {
  version: string;
  /** File name of the wasm binary actually read, e.g. 'tfjs-backend-wasm-simd.wasm'. */
  wasmBinary: string | null;
  wasmSimd: boolean;
  wasmThreads: number;
}

let info: TfjsInfo | undefined;

/**
 * Registers and initialises both backends once, and reports which wasm binary was loaded (by
 * watching fs.readFileSync during initialisation, the call Emscripten uses in Node).
 *
 * Usage: `const { wasmBinary } = await initTfjs(); await useBackend('wasm');`
 */
export async function initTfjs(): Promise<TfjsInfo> {
  if (info) return info;
  // Prod mode drops debug checks and the "install tfjs-node" banner; benchmarks want neither.
  tf.enableProdMode();
  const require = createRequire(import.meta.url);
  const distDir = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  setWasmPaths(`${distDir}/`);

  const loaded: string[] = [];
  const original = fs.readFileSync;
  // The wasm bundle holds `require('fs')`, the same object as this default import, and looks up
  // readFileSync at call time, so a temporary wrapper sees the binary's path.
  fs.readFileSync = ((path: fs.PathOrFileDescriptor, options?: unknown) => {
    if (typeof path === 'string' && path.endsWith('.wasm')) loaded.push(path);
    return (original as (p: fs.PathOrFileDescriptor, o?: unknown) => string | Buffer)(path, options);
  }) as typeof fs.readFileSync;
  try {
    if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
    await tf.ready();
  } finally {
    fs.readFileSync = original;
  }
  const wasmSimd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  const wasmThreads = getThreadsCount();
  if (!(await tf.setBackend('cpu'))) throw new Error('tf.setBackend("cpu") failed');
  info = {
    version: tf.version.tfjs,
    wasmBinary: loaded.length ? basename(loaded[loaded.length - 1]!) : null,
    wasmSimd,
    wasmThreads,
  };
  return info;
}

/**
 * Makes `name` the active TF.js backend (tensors created before live on their old backend).
 *
 * Usage: `await useBackend('cpu'); const t = tf.tensor2d(values, [m, k]);`
 */
export async function useBackend(name: TfBackend): Promise<void> {
  await initTfjs();
  if (tf.getBackend() !== name && !(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
}

/** Both backends, in the order benchmarks run them, with the result-row key each fills. */
export const TF_BACKENDS = [
  { backend: 'wasm', key: 'tfjsWasm' },
  { backend: 'cpu', key: 'tfjsCpu' },
] as const satisfies readonly { backend: TfBackend; key: 'tfjsWasm' | 'tfjsCpu' }[];
