/**
 * Setting up the wasm backend: loading (and caching) the compiled kernel module, the relaxed-SIMD feature
 * test, the default thread count, the per-thread workspaces, and the warm-up that tiers the kernels up.
 */
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import v8 from 'node:v8';
import type { Kernels } from './kernel-api.ts';

const modules = new Map<string, WebAssembly.Module>();

export function loadModule(file: string): WebAssembly.Module {
  let mod = modules.get(file);
  if (mod) return mod;
  const path = fileURLToPath(new URL(`./generated/${file}`, import.meta.url));
  if (!existsSync(path)) throw new Error(`rxgrad: ${path} is missing: run npm run build:wasm`);
  mod = new WebAssembly.Module(readFileSync(path));
  modules.set(file, mod);
  return mod;
}

let relaxedOk: boolean | undefined;

/** True if this V8 compiles relaxed SIMD, turning on Node 20's experimental flag if needed. */
export function relaxedSupported(): boolean {
  if (relaxedOk !== undefined) return relaxedOk;
  const path = fileURLToPath(new URL('./generated/kernels-relaxed.wasm', import.meta.url));
  if (!existsSync(path)) return (relaxedOk = false);
  const bytes = readFileSync(path);
  if (!WebAssembly.validate(bytes)) {
    // Node 20 (V8 11.3) has relaxed SIMD behind a flag; V8 ≥ 11.4 ships it. The flag is process-wide
    // and also covers workers created afterwards.
    try {
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // Unknown flag on a future V8: validation below decides.
    }
  }
  return (relaxedOk = WebAssembly.validate(bytes));
}

export function defaultThreads(): number {
  const env = process.env['RXGRAD_THREADS'];
  if (env !== undefined && env !== '') {
    const t = Number(env);
    if (!Number.isInteger(t) || t < 1) throw new RangeError(`RXGRAD_THREADS must be a positive integer, got ${env}`);
    return t;
  }
  return Math.min(Math.max(1, os.availableParallelism()), 2);
}

/**
 * Base of `bytes` of memory for the packing workspaces: from `alloc` when given, else pages grown at the
 * top of the memory (owned by this backend from then on). Written once: never-written pages run GEMM at
 * about half speed (KERNELS.md §1, first touch).
 */
export function provideWorkspace(memory: WebAssembly.Memory, bytes: number, alloc?: (bytes: number) => number): number {
  let base: number;
  if (alloc) {
    base = alloc(bytes);
    if (base % 64 !== 0 || base < 65536) throw new RangeError(`rxgrad: alloc returned ${base}: need a 64-byte aligned address above the control region`);
  } else {
    const pages = Math.ceil(bytes / 65536);
    try {
      base = memory.grow(pages) * 65536;
    } catch (err) {
      throw new RangeError(`rxgrad: cannot grow the memory by ${pages} pages for the GEMM workspaces: ${String(err)}`);
    }
  }
  new Uint8Array(memory.buffer, base, bytes).fill(0);
  return base;
}

/**
 * Calls every kernel a few times on this thread's scratch so V8 has tiered them up (Liftoff runs GEMM at a
 * fraction of TurboFan speed and wasm has no on-stack replacement). Touches only the scratch area.
 */
export function warmUp(k: Kernels, scratch: number, bytes: number): void {
  k.fill(scratch, bytes >> 2, 0.5);
  const f = 4; // bytes per float
  const x = scratch;
  const y = scratch + 64 * f;
  const z = scratch + 128 * f;
  const w = scratch + 192 * f;
  // Small GEMMs: all row-edge variants (m = 5, 6, 7, 8), both A layouts, direct and panel paths.
  const a = scratch + 256 * f; // 8×8
  const b = scratch + 320 * f; // 8×9
  const c = scratch + 400 * f; // 8×9
  const e = k as Kernels & { setGemmPath(mode: number): void };
  for (let rep = 0; rep < 8; rep++) {
    // Paths 1 (direct / panel) and 2 (packed, full and edge tiles) so V8 tiers up both.
    for (const path of [1, 2]) {
      e.setGemmPath(path);
      for (let m = 5; m <= 8; m++) {
        for (let t = 0; t < 4; t++) k.gemm(t & 1, t >> 1, m, 9, 8, 1, a, 8, b, 9, rep & 1, c, 9);
      }
    }
    e.setGemmPath(0);
    k.addBias(x, y, 4, 16);
    k.sumRows(x, y, 4, 16, 0);
    k.reluForward(x, y, 63);
    k.reluBackward(x, y, z, 63);
    k.leakyReluForward(x, y, 63, 0.01);
    k.leakyReluBackward(x, y, z, 63, 0.01);
    k.sigmoidForward(x, y, 63);
    k.sigmoidBackward(x, y, z, 63);
    k.tanhForward(x, y, 63);
    k.tanhBackward(x, y, z, 63);
    k.geluForward(x, y, 63);
    k.geluBackward(x, y, z, 63);
    k.softmaxForward(x, y, 4, 15);
    k.softmaxBackward(x, y, z, 4, 15);
    k.fill(w, 4, 0);
    k.softmaxCrossEntropy(x, w, 4, 15, y, z, 0.25);
    k.adamUpdate(x, y, z, w, 63, 0, 0.9, 0.999, 1e-8, 0, rep & 1, 0.1, 0.001);
    k.sgdUpdate(x, y, z, 63, 0, 0.9, rep & 1, 0);
    k.copy(x, y, 63);
    k.scale(y, 63, 1);
    k.axpy(63, 0, x, y);
    k.emaUpdate(y, x, 63, 0.5, 0.5);
    k.lstmCellForward(x, y, z, w, x + 32 * f, 1, 7);
    k.gruCellForward(x, y, z, w, 1, 5);
    k.gruCellBackward(x, y, z, w, rep & 1 ? y : 0, x + 32 * f, z + 16 * f, 1, 5);
    k.lstmCellBackward(x, y, z, w, rep & 1 ? y : 0, z + 16 * f, x + 32 * f, 1, 7);
    k.fill(x, 64, 0.5);
  }
  // Conv and pooling kernels on tiny shapes (all channel tiles: 20 = 16 + 4; a 3-channel edge). The GEMM
  // inside the filter gradient packs its panel over this scratch too: values are garbage, bounds are not.
  const at = (floats: number) => scratch + 4 * floats;
  for (let rep = 0; rep < 6; rep++) {
    k.fill(scratch, bytes >> 2, 0.25);
    const X = at(0), Wf = at(32), Bs = at(392), Y = at(412), Wt = at(492), DX = at(852), WORK = at(884);
    const g = [1, 4, 4, 2, 2, 2, 20, 3, 3, 1, 1, 0, 0, 1, 1] as const;
    k.conv2dForward(X, Wf, Bs, Y, ...g);
    k.conv2dForward(X, Wf, 0, Y, 1, 4, 4, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1);
    k.conv2dTransposeFilter(Wf, Wt, 9, 2, 20);
    k.conv2dBackwardInput(Y, Wt, DX, ...g);
    k.conv2dBackwardFilter(X, Y, Wt, WORK, 162, ...g);
    k.conv2dForwardIm2col(X, Wf, Bs, Y, WORK, 162, ...g);
    k.fill(scratch, bytes >> 2, 0.25);
    k.maxPool2dForward(X, Y, Wt, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 0, 0);
    // C = 4 and 5: the 2×2 row kernels (with and without argmax, with a scalar tail channel).
    k.maxPool2dForward(X, Y, Wt, 1, 4, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dForward(X, Y, 0, 1, 4, 4, 5, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dForward(X, Y, Wt, 1, 4, 4, 5, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dForward(X, Y, 0, 1, 4, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0);
    k.maxPool2dBackward(Y, Wt, DX, 32, 8);
    k.avgPool2dForward(X, Y, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 0, 0);
    k.avgPool2dBackward(Y, DX, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 0, 0);
    k.globalAvgPool2dForward(X, Y, 2, 4, 5);
    k.globalAvgPool2dBackward(Y, DX, 2, 4, 5);
    k.batchNormStats(X, Y, Wt, 6, 5);
    k.batchNormForward(X, DX, Y, Wt, Bs, Bs, 6, 5);
    k.batchNormBackward(X, X, DX, Y, Wt, Bs, Wf, WORK, 6, 5);
  }
  k.fill(scratch, bytes >> 2, 0);
}
