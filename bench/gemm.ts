/**
 * GEMM throughput (GFLOP/s = 2·m·n·k / time): square sizes and the four products one training
 * step of the 784-128-10 MLP at batch 64 performs; rxgrad's thread scaling; per-call overhead.
 *
 * Each library multiplies the same pre-written operands (never zeros, so no sparsity shortcuts);
 * only the product is timed. TF.js: `tf.matMul(a, b, transA, transB).dataSync()` (cpu and wasm
 * run kernels synchronously, dataSync adds the m×n read-back, ≤ 1 % of the time except on the tiny
 * shapes). rxgrad: `await engine.compute.gemm(...)` on shared-heap pointers.
 */
import type { Engine } from '../src/engine.ts';
import { attempt, fillRandom, timeIt, type BenchCase, type BenchContext, type Row, type TimeOptions } from './harness.ts';
import { defaultRxgradEngine, emptyKernelRoundTrip, makeEngine } from './rxgrad.ts';
import { TF_BACKENDS, tf, useBackend } from './tfjs.ts';

/** One product C[m×n] = op(A)·op(B), row-major; op(A) is m×k, op(B) is k×n. */
export interface GemmShape {
  label: string;
  transA: 0 | 1;
  transB: 0 | 1;
  m: number;
  n: number;
  k: number;
}

interface Operands {
  a: Float32Array;
  b: Float32Array;
  /** Stored shapes: A is k×m when transposed, B is n×k when transposed. */
  aShape: [number, number];
  bShape: [number, number];
}

function operands(s: GemmShape): Operands {
  return {
    a: fillRandom(new Float32Array(s.m * s.k), 1 + s.m * 7 + s.k),
    b: fillRandom(new Float32Array(s.k * s.n), 2 + s.n * 13 + s.k),
    aShape: s.transA ? [s.k, s.m] : [s.m, s.k],
    bShape: s.transB ? [s.n, s.k] : [s.k, s.n],
  };
}

const gflops = (s: GemmShape, ms: number) => (2 * s.m * s.n * s.k) / (ms * 1e6);

/** Reference C[i, j] in float64 from the host copies, to check a library before trusting its speed. */
function referenceEntry(s: GemmShape, o: Operands, i: number, j: number): number {
  let sum = 0;
  for (let p = 0; p < s.k; p++) {
    const a = s.transA ? o.a[p * s.m + i]! : o.a[i * s.k + p]!;
    const b = s.transB ? o.b[j * s.k + p]! : o.b[p * s.n + j]!;
    sum += a * b;
  }
  return sum;
}

function verify(s: GemmShape, o: Operands, c: (i: number, j: number) => number, who: string): void {
  const probes: [number, number][] = [[0, 0], [s.m - 1, s.n - 1], [s.m >> 1, s.n >> 1], [s.m - 1, 0], [0, s.n - 1]];
  for (const [i, j] of probes) {
    const want = referenceEntry(s, o, i, j);
    const got = c(i, j);
    if (!(Math.abs(got - want) <= 1e-3 * Math.sqrt(s.k) + 1e-4 * Math.abs(want))) {
      throw new Error(`${who} gemm ${s.label}: C[${i},${j}] = ${got}, expected ${want}`);
    }
  }
}

/**
 * Times one TF.js matMul on the active backend; returns milliseconds per call.
 *
 * Usage: `await useBackend('wasm'); const ms = await timeTfGemm(shape, operands(shape), opts);`
 */
async function timeTfGemm(s: GemmShape, o: Operands, options: TimeOptions): Promise<number> {
  const a = tf.tensor2d(o.a, o.aShape);
  const b = tf.tensor2d(o.b, o.bShape);
  try {
    const check = tf.matMul(a, b, s.transA === 1, s.transB === 1);
    const values = check.dataSync();
    check.dispose();
    verify(s, o, (i, j) => values[i * s.n + j]!, `tfjs-${tf.getBackend()}`);
    const { ms } = await timeIt(() => {
      const c = tf.matMul(a, b, s.transA === 1, s.transB === 1);
      c.dataSync();
      c.dispose();
    }, options);
    return ms;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** Times one rxgrad gemm on `engine`; returns milliseconds per call. */
async function timeRxGemm(engine: Engine, s: GemmShape, o: Operands, options: TimeOptions): Promise<number> {
  const heap = engine.heap;
  const pa = heap.alloc(o.a.length * 4);
  const pb = heap.alloc(o.b.length * 4);
  const pc = heap.alloc(s.m * s.n * 4);
  try {
    // Views are re-read after every alloc: growing the memory replaces them.
    heap.f32.set(o.a, pa >> 2);
    heap.f32.set(o.b, pb >> 2);
    const lda = o.aShape[1];
    const ldb = o.bShape[1];
    const run = () => engine.compute.gemm(s.transA, s.transB, s.m, s.n, s.k, 1, pa, lda, pb, ldb, 0, pc, s.n);
    await run();
    verify(s, o, (i, j) => heap.f32[(pc >> 2) + i * s.n + j]!, `rxgrad(${engine.compute.name})`);
    const { ms } = await timeIt(run, options);
    return ms;
  } finally {
    heap.free(pa);
    heap.free(pb);
    heap.free(pc);
  }
}

const square = (n: number): GemmShape => ({ label: `${n}³`, transA: 0, transB: 0, m: n, n, k: n });

/** The four products of one training step of 784-128-10 at batch 64. */
export const TRAINING_SHAPES: GemmShape[] = [
  { label: '64×784 · 784×128 (dense1 forward)', transA: 0, transB: 0, m: 64, n: 128, k: 784 },
  { label: '(64×784)ᵀ · 64×128 (dense1 dW = Xᵀ·dY)', transA: 1, transB: 0, m: 784, n: 128, k: 64 },
  { label: '64×128 · (784×128)ᵀ (dense1 dX = dY·Wᵀ)', transA: 0, transB: 1, m: 64, n: 784, k: 128 },
  { label: '64×128 · 128×10 (dense2 forward)', transA: 0, transB: 0, m: 64, n: 10, k: 128 },
];

function timeOptions(ctx: BenchContext): TimeOptions {
  return ctx.quick ? { samples: 5, maxTotalMs: 600, warmupMs: 60 } : { samples: 9, maxTotalMs: 2000, warmupMs: 150 };
}

function gemmCase(s: GemmShape, quick: boolean): BenchCase {
  return {
    name: `gemm ${s.label}`,
    quick,
    async run(ctx) {
      const o = operands(s);
      const options = timeOptions(ctx);
      // Single thread on both sides: TF.js wasm has no threads in Node, so this row compares kernels.
      const row: Row = { benchmark: `gemm ${s.label}, 1 thread`, unit: 'GFLOP/s', rxgrad: null, tfjsWasm: null, tfjsCpu: null };
      const rx = await attempt(ctx, `rxgrad ${row.benchmark}`, async () => {
        const engine = await makeEngine(1);
        try {
          return gflops(s, await timeRxGemm(engine, s, o, options));
        } finally {
          await engine.close();
        }
      });
      row.rxgrad = rx;
      for (const { backend, key } of TF_BACKENDS) {
        row[key] = await attempt(ctx, `tfjs-${backend} ${row.benchmark}`, async () => {
          await useBackend(backend);
          return gflops(s, await timeTfGemm(s, o, options));
        });
      }
      return [row];
    },
  };
}

/** rxgrad alone: the same product with 1 and with 2 threads, and the speed-up. */
function threadScalingCase(s: GemmShape, quick: boolean): BenchCase {
  return {
    name: `gemm ${s.label} rxgrad threads`,
    quick,
    async run(ctx) {
      const o = operands(s);
      const options = timeOptions(ctx);
      const result: Record<number, number | null> = {};
      for (const threads of [1, 2]) {
        result[threads] = await attempt(ctx, `rxgrad gemm ${s.label} ${threads} thread(s)`, async () => {
          const engine = await makeEngine(threads);
          try {
            if (engine.compute.threads !== threads) {
              throw new Error(`asked for ${threads} threads, engine reports ${engine.compute.threads}`);
            }
            return gflops(s, await timeRxGemm(engine, s, o, options));
          } finally {
            await engine.close();
          }
        });
      }
      const one = result[1] ?? null;
      const two = result[2] ?? null;
      const rxOnly = (benchmark: string, unit: string, rxgrad: number | null): Row =>
        ({ benchmark, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
      return [
        rxOnly(`gemm ${s.label} rxgrad 1 thread`, 'GFLOP/s', one),
        rxOnly(`gemm ${s.label} rxgrad 2 threads`, 'GFLOP/s', two),
        rxOnly(`gemm ${s.label} rxgrad speed-up 2 vs 1 thread`, '×', one && two ? two / one : null),
      ];
    },
  };
}

/** Per-call overhead: a 1×1×1 product, and (rxgrad) an empty kernel sent to the pool and back. */
function overheadCase(): BenchCase {
  return {
    name: 'overhead',
    quick: true,
    async run(ctx) {
      const s: GemmShape = { label: '1×1×1', transA: 0, transB: 0, m: 1, n: 1, k: 1 };
      const o = operands(s);
      const options: TimeOptions = { samples: 7, maxTotalMs: 500, minSampleMs: 30, warmupMs: 100 };
      const us = (ms: number) => ms * 1000;
      const call: Row = { benchmark: 'overhead: gemm 1×1×1 call (dispatch + tiny kernel)', unit: 'µs', rxgrad: null, tfjsWasm: null, tfjsCpu: null };
      call.rxgrad = await attempt(ctx, 'rxgrad gemm 1×1×1', async () =>
        us(await timeRxGemm(await defaultRxgradEngine(), s, o, options)));
      for (const { backend, key } of TF_BACKENDS) {
        call[key] = await attempt(ctx, `tfjs-${backend} gemm 1×1×1`, async () => {
          await useBackend(backend);
          return us(await timeTfGemm(s, o, options));
        });
      }
      // TF.js in Node has no worker pool (its wasm backend is single-threaded here), so this row
      // is rxgrad's alone: the cost of waking the workers and waiting for all of them.
      const dispatch: Row = { benchmark: 'overhead: empty kernel dispatch to all workers', unit: 'µs', rxgrad: null, tfjsWasm: null, tfjsCpu: null };
      dispatch.rxgrad = await attempt(ctx, 'rxgrad empty kernel', async () => {
        const ping = emptyKernelRoundTrip(await defaultRxgradEngine());
        if (!ping) throw new Error('no empty-kernel hook on the compute backend yet (bench/rxgrad.ts, HOOK)');
        // Steady state: a worker that saw run-queue waits in the last 50 ms (V8 compiling the rows before
        // this one) sleeps instead of spinning, and the first tens of ms of pings would time its wake-ups.
        return us((await timeIt(ping, { ...options, warmupMs: 300 })).ms);
      });
      return [call, dispatch];
    },
  };
}

/**
 * The GEMM suite. Quick runs keep 128³, 512³, the training shapes and 512³ thread scaling.
 *
 * Usage: `for (const c of gemmCases()) rows.push(...await c.run(ctx));`
 */
export function gemmCases(): BenchCase[] {
  return [
    ...[64, 128, 256, 512, 1024].map((n) => gemmCase(square(n), n === 128 || n === 512)),
    ...TRAINING_SHAPES.map((s) => gemmCase(s, true)),
    threadScalingCase(square(512), true),
    threadScalingCase(square(1024), false),
    threadScalingCase({ label: '256×784 · 784×128', transA: 0, transB: 0, m: 256, n: 128, k: 784 }, true),
    overheadCase(),
  ];
}
