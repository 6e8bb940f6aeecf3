/**
 * Properties of the wasm kernels: each kernel of the contract (KERNEL_NAMES) agrees with the float64
 * JS reference (workers/reference-kernels.ts) over random shapes and values.
 *
 * Tolerances (float32 results against the float64 oracle; u = |operands| as stated):
 * - gemm: |err| ≤ 1e-5·k·max|a|·max|b|·|alpha| + 1e-6·(1 + |beta|·max|C₀|); C outside the m×n window
 *   (leading-dimension padding) is untouched; beta = 0 ignores a NaN-filled C.
 * - exact (bitwise): relu, leaky ReLU, fill, copy, scale, addBias, reluBackward, leakyReluBackward.
 * - transcendental (sigmoid, tanh, GELU and their gradients, softmax, cross-entropy): ≤ 2e-6 relative,
 *   plus a small absolute floor stated at each check (gradients that cross zero, subnormal underflow).
 * - sums (sumRows, softmaxBackward, axpy, optimizers): a few ulps of the sum of |terms|.
 *
 * Run: `node --import tsx --test props/kernels.prop.ts`
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { SharedHeap } from '../src/heap.ts';
import { KERNEL_NAMES, type Kernels } from '../workers/kernel-api.ts';
import { referenceKernels } from '../workers/reference-kernels.ts';
import { transpose2d } from '../src/interop/layouts.ts';
import { createWasmCompute, type WasmCompute } from '../workers/wasm-compute.ts';

const heap = new SharedHeap({ initialBytes: 32 << 20 });
const arena = heap.arena();
const ref = referenceKernels(() => heap.f32, () => heap.i32);
const simd = createWasmCompute(heap.memory, { threads: 1, relaxedSimd: false });
const auto = createWasmCompute(heap.memory, { threads: 1 });
// Split every GEMM that can be split (rows when m ≥ 8, else columns when n ≥ 16) across 2 threads.
const split = createWasmCompute(heap.memory, { threads: 2, splitThresholdFlops: 0 });
// The packed GEMM path (BLIS-style panels in the per-thread workspace) forced for every shape it can take,
// so the small random shapes below cover its edge tiles, zero padding and transposed packing too.
const packedSimd = createWasmCompute(heap.memory, { threads: 1, relaxedSimd: false, gemmPath: 'packed' });
const packedSplit = createWasmCompute(heap.memory, { threads: 2, splitThresholdFlops: 0, gemmPath: 'packed' });
const backends: [string, WasmCompute][] = [[`${simd.name} 1 thread`, simd], [`${split.name} 2 threads (split)`, split]];
if (auto.name !== simd.name) backends.push([`${auto.name} 1 thread`, auto]);
const gemmBackends: [string, WasmCompute][] = [
  ...backends,
  [`${packedSimd.name} 1 thread, packed path`, packedSimd],
  [`${packedSplit.name} 2 threads (split), packed path`, packedSplit],
];

after(async () => {
  await split.close();
  await simd.close();
  await auto.close();
  await packedSimd.close();
  await packedSplit.close();
});

const RUNS = 80;
// Replay a failure: FC_SEED=<seed printed by fast-check> node --import tsx --test props/kernels.prop.ts
if (process.env['FC_SEED']) fc.configureGlobal({ seed: Number(process.env['FC_SEED']) });
const f32 = (min: number, max: number) =>
  fc.float({ min: Math.fround(min), max: Math.fround(max), noNaN: true, noDefaultInfinity: true });

/** Deterministic pseudo-random floats in [lo, hi) from a seed (cheaper than arrays of fc.float). */
function fillRandom(ptr: number, count: number, seed: number, lo: number, hi: number): void {
  let s = (seed ^ 0x9e3779b9) >>> 0;
  const h = heap.f32;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    h[(ptr >> 2) + i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
}

function alloc(count: number): number {
  return arena.alloc(Math.max(1, count) * 4);
}

function snapshot(ptr: number, count: number): Float32Array {
  return heap.f32.slice(ptr >> 2, (ptr >> 2) + count);
}

function copyInto(dst: number, src: Float32Array): void {
  heap.f32.set(src, dst >> 2);
}

/** Asserts |got[i] − want[i]| ≤ tol(i) for every i, with a helpful message. */
function assertClose(what: string, got: Float32Array, want: Float32Array, tol: (i: number) => number): void {
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Object.is(g, w)) continue;
    const err = Math.abs(g - w);
    if (!(err <= tol(i))) assert.fail(`${what}[${i}]: got ${g}, want ${w}, |err| ${err} > ${tol(i)}`);
  }
}

const maxAbs = (xs: Float32Array) => xs.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

describe('kernel contract', () => {
  it('every kernel in KERNEL_NAMES is a function of each backend, and no other kernel is missing', () => {
    for (const [, b] of backends) for (const k of KERNEL_NAMES) assert.equal(typeof b.kernels[k], 'function', k);
  });
});

describe('gemm equals the reference', () => {
  const shape = fc.record({
    m: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 40 })),
    n: fc.oneof(fc.integer({ min: 1, max: 17 }), fc.integer({ min: 1, max: 40 })),
    k: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 1, max: 300 })),
    transA: fc.integer({ min: 0, max: 1 }),
    transB: fc.integer({ min: 0, max: 1 }),
    // Extra leading dimension; ≥ 512 floats sends op(B) = B through the packed-panel path.
    padA: fc.integer({ min: 0, max: 5 }),
    padB: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 510, max: 530 })),
    padC: fc.integer({ min: 0, max: 5 }),
    alpha: fc.oneof(fc.constantFrom(1, -1, 0.5), f32(-3, 3)),
    beta: fc.oneof(fc.constantFrom(0, 1, -0.5), f32(-2, 2)),
    seed: fc.integer(),
  });

  for (const [label, backend] of gemmBackends) {
    it(`${label}: all transposes, edges, alpha/beta, leading dimensions`, async () => {
      await fc.assert(
        fc.asyncProperty(shape, async ({ m, n, k, transA, transB, padA, padB, padC, alpha, beta, seed }) => {
          arena.reset();
          const lda = (transA ? m : k) + padA;
          const ldb = (transB ? k : n) + padB;
          const ldc = n + padC;
          const aCount = lda * (transA ? k : m);
          const bCount = ldb * (transB ? n : k);
          const cCount = ldc * (m - 1) + n + padC;
          const a = alloc(aCount);
          const b = alloc(bCount);
          const c = alloc(cCount);
          const cRef = alloc(cCount);
          fillRandom(a, aCount, seed, -2, 2);
          fillRandom(b, bCount, seed + 1, -2, 2);
          fillRandom(c, cCount, seed + 2, -2, 2);
          // beta = 0 must ignore C entirely, NaN included: poison the window, keep the padding finite.
          if (beta === 0) for (let i = 0; i < m; i++) heap.f32.fill(NaN, (c >> 2) + i * ldc, (c >> 2) + i * ldc + n);
          const c0 = snapshot(c, cCount);
          copyInto(cRef, c0);
          await backend.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
          ref.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cRef, ldc);
          const maxA = maxAbs(snapshot(a, aCount));
          const maxB = maxAbs(snapshot(b, bCount));
          const maxC = beta === 0 ? 0 : maxAbs(c0);
          const tol = 1e-5 * k * maxA * maxB * Math.abs(alpha) + 1e-6 * (1 + Math.abs(beta) * maxC);
          // Padding of C (columns n..ldc) must be untouched: the reference leaves it alone too.
          assertClose(`gemm ${JSON.stringify({ m, n, k, transA, transB, lda, ldb, ldc })}`, snapshot(c, cCount), snapshot(cRef, cCount), () => tol);
        }),
        { numRuns: backend === split || backend === packedSplit ? RUNS * 2 : RUNS },
      );
    });
  }

  it('wide shapes through both paths (n > 512, k > KC) with the split backend', async () => {
    for (const [m, n, k, tA, tB] of [[9, 600, 300, 0, 0], [33, 520, 129, 1, 1], [5, 530, 260, 0, 1], [70, 64, 515, 1, 0]] as const) {
      arena.reset();
      const a = alloc(m * k);
      const b = alloc(k * n);
      const c = alloc(m * n);
      const cRef = alloc(m * n);
      fillRandom(a, m * k, 1, -1, 1);
      fillRandom(b, k * n, 2, -1, 1);
      await split.gemm(tA, tB, m, n, k, 1, a, tA ? m : k, b, tB ? k : n, 0, c, n);
      ref.gemm(tA, tB, m, n, k, 1, a, tA ? m : k, b, tB ? k : n, 0, cRef, n);
      assertClose(`gemm ${m},${n},${k}`, snapshot(c, m * n), snapshot(cRef, m * n), () => 1e-5 * k + 1e-6);
    }
  });

  // Packed-path block boundaries (gemm.ts: KC = 256 rows of k, MC = 16·MR rows of A with MR = 5 or 6,
  // NC = 1024 columns of B): k = 255/256/257, n = 511/512/513 and across NC (1031), m not a multiple of
  // 5 or 6 and across MC (97, 131); both builds, one thread and split, the paths chosen by shape.
  it('packed-path block boundaries: k around KC, n around 512 and NC, m across MR and MC', async () => {
    const cases: [m: number, n: number, k: number, tA: number, tB: number][] = [
      [7, 511, 255, 0, 0], [13, 512, 256, 1, 0], [17, 513, 257, 0, 1], [97, 1031, 257, 1, 1],
      [131, 520, 513, 0, 0], [130, 256, 256, 0, 0], [131, 263, 255, 1, 0], [29, 1025, 33, 0, 1],
    ];
    const all: [string, WasmCompute][] = [...gemmBackends];
    for (const [m, n, k, tA, tB] of cases) {
      arena.reset();
      const lda = tA ? m : k;
      const ldb = tB ? k : n;
      const a = alloc(m * k);
      const b = alloc(k * n);
      const c = alloc(m * n);
      const c0 = alloc(m * n);
      const cRef = alloc(m * n);
      fillRandom(a, m * k, m, -1, 1);
      fillRandom(b, k * n, n, -1, 1);
      fillRandom(c0, m * n, k, -1, 1);
      for (const beta of [0, 0.5]) {
        heap.f32.copyWithin(cRef >> 2, c0 >> 2, (c0 >> 2) + m * n);
        ref.gemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, cRef, n);
        for (const [label, backend] of all) {
          heap.f32.copyWithin(c >> 2, c0 >> 2, (c0 >> 2) + m * n);
          await backend.gemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, c, n);
          assertClose(`${label} gemm ${JSON.stringify({ m, n, k, tA, tB, beta })}`, snapshot(c, m * n), snapshot(cRef, m * n), () => 1.5e-5 * k + 1e-6);
        }
      }
    }
  });
});

type Unary = 'reluForward' | 'leakyReluForward' | 'sigmoidForward' | 'tanhForward' | 'geluForward';
type Binary =
  | 'reluBackward' | 'leakyReluBackward' | 'sigmoidBackward' | 'tanhBackward' | 'geluBackward';

/** Input range of the first operand, and tolerance from (reference value, dy). */
const unaryCases: { name: Unary; lo: number; hi: number; tol: (want: number, x: number) => number }[] = [
  { name: 'reluForward', lo: -4, hi: 4, tol: () => 0 },
  { name: 'leakyReluForward', lo: -4, hi: 4, tol: () => 0 },
  // 1e-37: values below ~1e-38 may be flushed to 0 (subnormal).
  { name: 'sigmoidForward', lo: -30, hi: 30, tol: (w) => 2e-6 * Math.abs(w) + 1e-37 },
  { name: 'tanhForward', lo: -10, hi: 10, tol: (w) => 2e-6 * Math.abs(w) },
  // e^−2|u| inherits the float32 rounding of its argument 2u = 1.6·x·(1 + 0.0447x²): relative error grows
  // as ~2.5e-7·|2u| (≤ 2e-6 for |x| ≤ 2.6). |x| ≤ 5: beyond it the float64 reference itself loses
  // relative accuracy (1 + tanh u cancels).
  { name: 'geluForward', lo: -5, hi: 5, tol: (w, x) => (2e-6 + 2.5e-7 * 1.6 * Math.abs(x) * (1 + 0.0447 * x * x)) * Math.abs(w) + 1e-30 },
];

const binaryCases: { name: Binary; lo: number; hi: number; tol: (want: number, dy: number) => number }[] = [
  { name: 'reluBackward', lo: -4, hi: 4, tol: () => 0 },
  { name: 'leakyReluBackward', lo: -4, hi: 4, tol: () => 0 },
  // Operand is the forward output y.
  { name: 'sigmoidBackward', lo: 0, hi: 1, tol: (w, dy) => 2e-7 * (Math.abs(w) + Math.abs(dy)) },
  { name: 'tanhBackward', lo: -1, hi: 1, tol: (w, dy) => 2e-7 * (Math.abs(w) + Math.abs(dy)) },
  // The gradient crosses 0 near x ≈ −0.75: an absolute floor relative to |dy|.
  { name: 'geluBackward', lo: -5, hi: 5, tol: (w, dy) => 2e-6 * Math.abs(w) + 1e-6 * Math.abs(dy) },
];

describe('element-wise kernels equal the reference', () => {
  const k = simd.kernels;
  const kernelsUnderTest: [string, Kernels][] = [[simd.name, k]];
  if (auto.name !== simd.name) kernelsUnderTest.push([auto.name, auto.kernels]);
  const nArb = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 200 }));

  for (const [bname, kern] of kernelsUnderTest) {
    for (const { name, lo, hi, tol } of unaryCases) {
      it(`${bname} ${name}`, () => {
        fc.assert(
          fc.property(nArb, fc.integer(), f32(0, 0.5), fc.boolean(), (n, seed, slope, inPlace) => {
            arena.reset();
            const x = alloc(n + 1);
            const y = inPlace ? x : alloc(n + 1);
            const yRef = alloc(n + 1);
            fillRandom(x, n, seed, lo, hi);
            heap.f32[(x >> 2) + n] = 12345; // sentinel past the end
            if (!inPlace) heap.f32[(y >> 2) + n] = 54321;
            const inputs = snapshot(x, n);
            copyInto(yRef, inputs);
            if (name === 'leakyReluForward') {
              ref.leakyReluForward(yRef, yRef, n, slope);
              kern.leakyReluForward(x, y, n, slope);
            } else {
              ref[name](yRef, yRef, n);
              kern[name](x, y, n);
            }
            const want = snapshot(yRef, n);
            assertClose(name, snapshot(y, n), want, (i) => tol(want[i]!, inputs[i]!));
            assert.equal(heap.f32[(y >> 2) + n], inPlace ? 12345 : 54321, 'wrote past n');
          }),
          { numRuns: RUNS },
        );
      });
    }

    for (const { name, lo, hi, tol } of binaryCases) {
      it(`${bname} ${name}`, () => {
        fc.assert(
          fc.property(nArb, fc.integer(), f32(0, 0.5), (n, seed, slope) => {
            arena.reset();
            const x = alloc(n);
            const dy = alloc(n);
            const dx = alloc(n + 1);
            const dxRef = alloc(n);
            fillRandom(x, n, seed, lo, hi);
            fillRandom(dy, n, seed + 7, -2, 2);
            heap.f32[(dx >> 2) + n] = 777;
            if (name === 'leakyReluBackward') {
              ref.leakyReluBackward(x, dy, dxRef, n, slope);
              kern.leakyReluBackward(x, dy, dx, n, slope);
            } else {
              ref[name](x, dy, dxRef, n);
              kern[name](x, dy, dx, n);
            }
            const want = snapshot(dxRef, n);
            const d = snapshot(dy, n);
            assertClose(name, snapshot(dx, n), want, (i) => tol(want[i]!, d[i]!));
            assert.equal(heap.f32[(dx >> 2) + n], 777, 'wrote past n');
          }),
          { numRuns: RUNS },
        );
      });
    }
  }

  it('relu maps NaN and −0 to +0 like the reference; sigmoid/tanh saturate; exp underflow is 0 or subnormal', () => {
    arena.reset();
    const vals = [NaN, -0, 0, 1e-30, -1e-30, 100, -100, 1e6, -1e6, Infinity, -Infinity];
    const x = alloc(vals.length);
    const y = alloc(vals.length);
    const yRef = alloc(vals.length);
    heap.f32.set(vals, x >> 2);
    for (const name of ['reluForward', 'sigmoidForward', 'tanhForward'] as const) {
      k[name](x, y, vals.length);
      ref[name](x, yRef, vals.length);
      assertClose(name, snapshot(y, vals.length), snapshot(yRef, vals.length), (i) => (Number.isNaN(vals[i]) ? NaN : 1e-37));
    }
  });
});

describe('row-wise kernels equal the reference', () => {
  const k = simd.kernels;
  const shape = fc.record({
    rows: fc.integer({ min: 1, max: 7 }),
    cols: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 70 })),
    seed: fc.integer(),
  });

  it('addBias (exact)', () => {
    fc.assert(
      fc.property(shape, ({ rows, cols, seed }) => {
        arena.reset();
        const y = alloc(rows * cols);
        const bias = alloc(cols);
        const yRef = alloc(rows * cols);
        fillRandom(y, rows * cols, seed, -3, 3);
        fillRandom(bias, cols, seed + 1, -3, 3);
        copyInto(yRef, snapshot(y, rows * cols));
        k.addBias(y, bias, rows, cols);
        ref.addBias(yRef, bias, rows, cols);
        assertClose('addBias', snapshot(y, rows * cols), snapshot(yRef, rows * cols), () => 0);
      }),
      { numRuns: RUNS },
    );
  });

  it('sumRows (beta 0 ignores NaN in out)', () => {
    fc.assert(
      fc.property(shape, fc.oneof(fc.constant(0), f32(-2, 2)), ({ rows, cols, seed }, beta) => {
        arena.reset();
        const x = alloc(rows * cols);
        const out = alloc(cols);
        const outRef = alloc(cols);
        fillRandom(x, rows * cols, seed, -3, 3);
        fillRandom(out, cols, seed + 1, -3, 3);
        if (beta === 0) heap.f32.fill(NaN, out >> 2, (out >> 2) + cols);
        copyInto(outRef, snapshot(out, cols));
        k.sumRows(x, out, rows, cols, beta);
        ref.sumRows(x, outRef, rows, cols, beta);
        // rows·ulp of the sum of |terms| (3 is the max |x|).
        assertClose('sumRows', snapshot(out, cols), snapshot(outRef, cols), () => 1.2e-7 * (rows + 1) * (3 * rows + 3 * Math.abs(beta)));
      }),
      { numRuns: RUNS },
    );
  });

  it('softmaxForward', () => {
    fc.assert(
      fc.property(shape, f32(0.1, 30), ({ rows, cols, seed }, spread) => {
        arena.reset();
        const x = alloc(rows * cols);
        const y = alloc(rows * cols);
        const yRef = alloc(rows * cols);
        fillRandom(x, rows * cols, seed, -spread, spread);
        k.softmaxForward(x, y, rows, cols);
        ref.softmaxForward(x, yRef, rows, cols);
        const want = snapshot(yRef, rows * cols);
        // The row sum adds up to cols·ulp relative error; 1e-37: underflow to 0.
        assertClose('softmax', snapshot(y, rows * cols), want, (i) => (2e-6 + 6e-8 * cols) * want[i]! + 1e-37);
      }),
      { numRuns: RUNS },
    );
  });

  it('softmaxBackward', () => {
    fc.assert(
      fc.property(shape, ({ rows, cols, seed }) => {
        arena.reset();
        const x = alloc(rows * cols);
        const y = alloc(rows * cols);
        const dy = alloc(rows * cols);
        const dx = alloc(rows * cols);
        const dxRef = alloc(rows * cols);
        fillRandom(x, rows * cols, seed, -4, 4);
        ref.softmaxForward(x, y, rows, cols);
        fillRandom(dy, rows * cols, seed + 3, -2, 2);
        k.softmaxBackward(y, dy, dx, rows, cols);
        ref.softmaxBackward(y, dy, dxRef, rows, cols);
        const ys = snapshot(y, rows * cols);
        // dx = y·(dy − dot): the difference cancels; bound by ulps of y·(|dy| + Σ|dy·y|) ≤ y·4.
        assertClose('softmaxBackward', snapshot(dx, rows * cols), snapshot(dxRef, rows * cols), (i) => 6e-8 * (cols + 4) * 4 * ys[i]!);
      }),
      { numRuns: RUNS },
    );
  });

  it('softmaxCrossEntropy (with and without dLogits)', () => {
    fc.assert(
      fc.property(shape, f32(0.1, 30), f32(-2, 2), fc.boolean(), ({ rows, cols, seed }, spread, scale, withGrad) => {
        arena.reset();
        const x = alloc(rows * cols);
        const labels = alloc(rows);
        const loss = alloc(rows);
        const lossRef = alloc(rows);
        const g = withGrad ? alloc(rows * cols) : 0;
        const gRef = alloc(rows * cols);
        fillRandom(x, rows * cols, seed, -spread, spread);
        for (let r = 0; r < rows; r++) heap.i32[(labels >> 2) + r] = (r * 7 + (seed >>> 0)) % cols;
        k.softmaxCrossEntropy(x, labels, rows, cols, loss, g, scale);
        ref.softmaxCrossEntropy(x, labels, rows, cols, lossRef, gRef, scale);
        const lr = snapshot(lossRef, rows);
        assertClose('loss', snapshot(loss, rows), lr, (i) => 2e-6 * (Math.abs(lr[i]!) + spread) + 1e-6);
        if (withGrad) {
          assertClose('dLogits', snapshot(g, rows * cols), snapshot(gRef, rows * cols), () => (2e-6 + 6e-8 * cols) * Math.abs(scale) + 1e-37);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

/** A recurrent cell property: rows 1…5, every unit count mod 4 (1…19), with and without dy, both builds. */
function cellProperty(check: (k: Kernels, rows: number, U: number, withDy: boolean, seed: number) => void): void {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 19 }), fc.boolean(), fc.integer(), (rows, U, withDy, seed) => {
      for (const k of [simd.kernels, auto.kernels]) {
        arena.reset();
        check(k, rows, U, withDy, seed);
      }
    }),
    { numRuns: RUNS },
  );
}

describe('fused recurrent cells equal the reference', () => {
  it('lstmCellForward / lstmCellBackward (every unit count mod 4, with and without dy), both builds', () => {
    cellProperty((k, rows, U, withDy, seed) => {
      const zs = rows * 4 * U, n = rows * U;
      const z = alloc(zs), zr = alloc(zs), cp = alloc(n), c = alloc(n), cr = alloc(n), tc = alloc(n), tcr = alloc(n), h = alloc(n), hr = alloc(n);
      fillRandom(z, zs, seed, -4, 4);
      fillRandom(cp, n, seed + 1, -2, 2);
      copyInto(zr, snapshot(z, zs));
      k.lstmCellForward(z, cp, c, tc, h, rows, U);
      ref.lstmCellForward(zr, cp, cr, tcr, hr, rows, U);
      // Transcendental gates (≤ 2e-6 relative), then products and sums of them: a few ulps of their size.
      assertClose('gates', snapshot(z, zs), snapshot(zr, zs), () => 4e-6);
      assertClose('c', snapshot(c, n), snapshot(cr, n), () => 1.2e-5);
      assertClose('tanh c', snapshot(tc, n), snapshot(tcr, n), () => 1.2e-5);
      assertClose('h', snapshot(h, n), snapshot(hr, n), () => 1.2e-5);
      const dh = alloc(n), dy = alloc(n), dc = alloc(n), dcr = alloc(n), dz = alloc(zs), dzr = alloc(zs);
      fillRandom(dh, n, seed + 2, -1, 1);
      fillRandom(dy, n, seed + 3, -1, 1);
      fillRandom(dc, n, seed + 4, -1, 1);
      copyInto(dcr, snapshot(dc, n));
      // The reference reads the wasm activations, so only the backward's own arithmetic is compared.
      k.lstmCellBackward(z, cp, tc, dh, withDy ? dy : 0, dc, dz, rows, U);
      ref.lstmCellBackward(z, cp, tc, dh, withDy ? dy : 0, dcr, dzr, rows, U);
      assertClose('dz', snapshot(dz, zs), snapshot(dzr, zs), () => 2e-6);
      assertClose('dc', snapshot(dc, n), snapshot(dcr, n), () => 2e-6);
    });
  });


  it('gruCellForward / gruCellBackward (every unit count mod 4, with and without dy), both builds', () => {
    cellProperty((k, rows, U, withDy, seed) => {
      const gs = rows * 3 * U, n = rows * U;
      const a = alloc(gs), ar = alloc(gs), q = alloc(gs), hp = alloc(n), h = alloc(n), hr = alloc(n);
      fillRandom(a, gs, seed, -4, 4);
      fillRandom(q, gs, seed + 1, -4, 4);
      fillRandom(hp, n, seed + 2, -1, 1);
      copyInto(ar, snapshot(a, gs));
      k.gruCellForward(a, q, hp, h, rows, U);
      ref.gruCellForward(ar, q, hp, hr, rows, U);
      assertClose('gates', snapshot(a, gs), snapshot(ar, gs), () => 4e-6);
      assertClose('h', snapshot(h, n), snapshot(hr, n), () => 1e-5);
      const dh = alloc(n), dhr = alloc(n), dy = alloc(n), da = alloc(gs), dar = alloc(gs), dq = alloc(gs), dqr = alloc(gs);
      fillRandom(dh, n, seed + 3, -1, 1);
      fillRandom(dy, n, seed + 4, -1, 1);
      copyInto(dhr, snapshot(dh, n));
      // The reference reads the wasm activations, so only the backward's own arithmetic is compared.
      k.gruCellBackward(a, q, hp, dh, withDy ? dy : 0, da, dq, rows, U);
      ref.gruCellBackward(a, q, hp, dhr, withDy ? dy : 0, dar, dqr, rows, U);
      assertClose('da', snapshot(da, gs), snapshot(dar, gs), () => 4e-6);
      assertClose('dq', snapshot(dq, gs), snapshot(dqr, gs), () => 4e-6);
      assertClose('dh', snapshot(dh, n), snapshot(dhr, n), () => 2e-6);
    });
  });
});

describe('whole-sequence recurrent kernels equal their step loop on the reference', () => {
  // U = 3: one packed k block; U = 70: the backward's k = 4U (LSTM) or 3U (GRU) spans two blocks of the recurrent
  // kernel packed once; U = 300: the kernel does not fit a thread's workspace and every step reads it in place.
  const cases = [[3, 7, 4], [70, 12, 3], [300, 6, 2]] as const;
  const sequenceBackends = backends.filter(([, be]) => be.lstmForwardSequence);

  it('LSTM forward and backward (bias, skipFirst, dy per step, carry), each build, 1 and 2 threads', async () => {
    for (const [U, B, T] of cases) {
      for (const [name, be] of sequenceBackends) {
        arena.reset();
        const W = 4 * U, zs = T * B * W, hs = (T + 1) * B * U, ts = T * B * U;
        const z = alloc(zs), zr = alloc(zs), rk = alloc(U * W), rkT = alloc(W * U), bias = alloc(W);
        const h = alloc(hs), hr = alloc(hs), c = alloc(hs), cr = alloc(hs), tc = alloc(ts), tcr = alloc(ts);
        fillRandom(z, zs, U, -1, 1);
        copyInto(zr, snapshot(z, zs));
        fillRandom(rk, U * W, U + 1, -1 / Math.sqrt(U), 1 / Math.sqrt(U));
        copyInto(rkT, transpose2d(snapshot(rk, U * W), U, W));
        fillRandom(bias, W, U + 2, -0.5, 0.5);
        for (const p of [h, hr, c, cr]) heap.f32.fill(0, p >> 2, (p >> 2) + B * U);
        await be.lstmForwardSequence(z, rk, bias, h, c, tc, B, T, U, 1);
        for (let t = 0; t < T; t++) {
          const zt = zr + 4 * t * B * W, s = 4 * t * B * U, s1 = 4 * (t + 1) * B * U;
          ref.addBias(zt, bias, B, W);
          if (t > 0) ref.gemm(0, 0, B, W, U, 1, hr + s, U, rk, W, 1, zt, W);
          ref.lstmCellForward(zt, cr + s, cr + s1, tcr + s, hr + s1, B, U);
        }
        const tol = (k: number) => () => 2e-6 * k + 1e-5;
        assertClose(`${name} U ${U} forward gates`, snapshot(z, zs), snapshot(zr, zs), tol(U));
        assertClose(`${name} U ${U} forward h`, snapshot(h, hs), snapshot(hr, hs), tol(U));
        assertClose(`${name} U ${U} forward c`, snapshot(c, hs), snapshot(cr, hs), tol(U));
        // Backward from the kernel's own activations, dy at every step, the state's gradient carried out.
        const dy = alloc(ts), dh = alloc(B * U), dhr = alloc(B * U), dc = alloc(B * U), dcr = alloc(B * U), dz = alloc(zs), dzr = alloc(zs);
        fillRandom(dy, ts, U + 3, -1, 1);
        for (const p of [dh, dhr, dc, dcr]) heap.f32.fill(0, p >> 2, (p >> 2) + B * U);
        await be.lstmBackwardSequence(z, c, tc, dh, dy, 1, dc, dz, rkT, B, T, 0, U, 1);
        for (let t = T - 1; t >= 0; t--) {
          const zt = z + 4 * t * B * W, s = 4 * t * B * U, dzt = dzr + 4 * t * B * W;
          ref.lstmCellBackward(zt, c + s, tc + s, dhr, dy + s, dcr, dzt, B, U);
          ref.gemm(0, 0, B, U, W, 1, dzt, W, rkT, U, 0, dhr, U);
        }
        assertClose(`${name} U ${U} backward dz`, snapshot(dz, zs), snapshot(dzr, zs), tol(W));
        assertClose(`${name} U ${U} backward dh`, snapshot(dh, B * U), snapshot(dhr, B * U), tol(W));
        assertClose(`${name} U ${U} backward dc`, snapshot(dc, B * U), snapshot(dcr, B * U), tol(W));
      }
    }
  });

  it('GRU forward and backward (both biases, dy per step, carry), each build, 1 and 2 threads', async () => {
    for (const [U, B, T] of cases) {
      for (const [name, be] of sequenceBackends) {
        arena.reset();
        const W = 3 * U, as = T * B * W, hs = (T + 1) * B * U, ts = T * B * U;
        const a = alloc(as), ar = alloc(as), q = alloc(as), qr = alloc(as), rk = alloc(U * W), rkT = alloc(W * U);
        const bi = alloc(W), br = alloc(W), h = alloc(hs), hr = alloc(hs);
        fillRandom(a, as, U, -1, 1);
        copyInto(ar, snapshot(a, as));
        fillRandom(rk, U * W, U + 1, -1 / Math.sqrt(U), 1 / Math.sqrt(U));
        copyInto(rkT, transpose2d(snapshot(rk, U * W), U, W));
        fillRandom(bi, W, U + 2, -0.5, 0.5);
        fillRandom(br, W, U + 4, -0.5, 0.5);
        fillRandom(h, B * U, U + 5, -0.5, 0.5);
        copyInto(hr, snapshot(h, B * U));
        await be.gruForwardSequence(a, q, rk, bi, br, h, B, T, U, 0);
        for (let t = 0; t < T; t++) {
          const at = ar + 4 * t * B * W, qt = qr + 4 * t * B * W, s = 4 * t * B * U;
          ref.addBias(at, bi, B, W);
          ref.gemm(0, 0, B, W, U, 1, hr + s, U, rk, W, 0, qt, W);
          ref.addBias(qt, br, B, W);
          ref.gruCellForward(at, qt, hr + s, hr + 4 * (t + 1) * B * U, B, U);
        }
        const tol = (k: number) => () => 2e-6 * k + 1e-5;
        assertClose(`${name} U ${U} forward a`, snapshot(a, as), snapshot(ar, as), tol(U));
        assertClose(`${name} U ${U} forward q`, snapshot(q, as), snapshot(qr, as), tol(U));
        assertClose(`${name} U ${U} forward h`, snapshot(h, hs), snapshot(hr, hs), tol(U));
        const dy = alloc(ts), dh = alloc(B * U), dhr = alloc(B * U), da = alloc(as), dar = alloc(as), dq = alloc(as), dqr = alloc(as);
        fillRandom(dy, ts, U + 3, -1, 1);
        for (const p of [dh, dhr]) heap.f32.fill(0, p >> 2, (p >> 2) + B * U);
        await be.gruBackwardSequence(a, q, h, dh, dy, 1, da, dq, rkT, B, T, 0, U, 1);
        for (let t = T - 1; t >= 0; t--) {
          const g = 4 * t * B * W, s = 4 * t * B * U;
          ref.gruCellBackward(a + g, q + g, h + s, dhr, dy + s, dar + g, dqr + g, B, U);
          ref.gemm(0, 0, B, U, W, 1, dqr + g, W, rkT, U, 1, dhr, U);
        }
        assertClose(`${name} U ${U} backward da`, snapshot(da, as), snapshot(dar, as), tol(W));
        assertClose(`${name} U ${U} backward dq`, snapshot(dq, as), snapshot(dqr, as), tol(W));
        assertClose(`${name} U ${U} backward dh`, snapshot(dh, B * U), snapshot(dhr, B * U), tol(W));
      }
    }
  });
});

describe('optimizer and BLAS-1 kernels equal the reference', () => {
  const k = simd.kernels;
  const nArb = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 130 }));

  it('adamUpdate (Adam and AdamW)', () => {
    const hyper = fc.record({
      lr: f32(1e-4, 0.1),
      beta1: f32(0.5, 0.99),
      beta2: f32(0.9, 0.9999),
      eps: f32(1e-8, 1e-6),
      weightDecay: fc.oneof(fc.constant(0), f32(0, 0.1)),
      decoupled: fc.integer({ min: 0, max: 1 }),
      bc1: f32(0.1, 1),
      bc2: f32(0.001, 1),
    });
    fc.assert(
      fc.property(nArb, fc.integer(), hyper, (n, seed, h) => {
        arena.reset();
        const bufs = [alloc(n), alloc(n), alloc(n), alloc(n)] as const; // param, grad, m, v
        const refs = [alloc(n), alloc(n), alloc(n), alloc(n)] as const;
        fillRandom(bufs[0], n, seed, -2, 2);
        fillRandom(bufs[1], n, seed + 1, -2, 2);
        fillRandom(bufs[2], n, seed + 2, -1, 1);
        fillRandom(bufs[3], n, seed + 3, 0, 1);
        for (let j = 0; j < 4; j++) copyInto(refs[j], snapshot(bufs[j], n));
        const p0 = snapshot(bufs[0], n);
        const m0 = snapshot(bufs[2], n);
        const v0 = snapshot(bufs[3], n);
        const g0 = snapshot(bufs[1], n);
        const args = [n, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.decoupled, h.bc1, h.bc2] as const;
        k.adamUpdate(bufs[0], bufs[1], bufs[2], bufs[3], ...args);
        ref.adamUpdate(refs[0], refs[1], refs[2], refs[3], ...args);
        const pr = snapshot(refs[0], n);
        const gAbs = (i: number) => Math.abs(g0[i]!) + h.weightDecay * Math.abs(p0[i]!);
        assertClose('m', snapshot(bufs[2], n), snapshot(refs[2], n), (i) => 3e-7 * (Math.abs(m0[i]!) + gAbs(i)));
        assertClose('v', snapshot(bufs[3], n), snapshot(refs[3], n), (i) => 3e-7 * (Math.abs(v0[i]!) + gAbs(i) ** 2));
        // The step is lr·(m/bc1)/(√(v/bc2) + eps): when m = β1·m0 + (1−β1)·g nearly cancels, m's own float32
        // rounding (the tolerance on m above) is amplified by lr/bc1/(√(v/bc2) + eps), so that term is part of the bound.
        const vr = snapshot(refs[3], n);
        const mError = (i: number) => 3e-7 * (Math.abs(m0[i]!) + gAbs(i));
        const stepGain = (i: number) => h.lr / h.bc1 / (Math.sqrt(vr[i]! / h.bc2) + h.eps);
        assertClose('param', snapshot(bufs[0], n), pr, (i) => 3e-7 * Math.abs(p0[i]!) + 2e-6 * Math.abs(pr[i]! - p0[i]!) + stepGain(i) * mError(i));
      }),
      { numRuns: RUNS },
    );
  });

  it('sgdUpdate (plain, momentum, Nesterov; velocity pointer 0 without momentum)', () => {
    fc.assert(
      fc.property(nArb, fc.integer(), f32(1e-4, 0.5), fc.oneof(fc.constant(0), f32(0.1, 0.99)), fc.integer({ min: 0, max: 1 }), fc.oneof(fc.constant(0), f32(0, 0.1)), (n, seed, lr, momentum, nesterov, wd) => {
        arena.reset();
        const p = alloc(n), g = alloc(n), v = momentum === 0 ? 0 : alloc(n);
        const pr = alloc(n), vr = alloc(n);
        fillRandom(p, n, seed, -2, 2);
        fillRandom(g, n, seed + 1, -2, 2);
        if (v) fillRandom(v, n, seed + 2, -1, 1);
        copyInto(pr, snapshot(p, n));
        if (v) copyInto(vr, snapshot(v, n));
        k.sgdUpdate(p, g, v, n, lr, momentum, nesterov, wd);
        ref.sgdUpdate(pr, g, v ? vr : 0, n, lr, momentum, nesterov, wd);
        // Sums of at most 4 terms bounded by 2 + 2 + 2·1: a few ulps of 8.
        if (v) assertClose('velocity', snapshot(v, n), snapshot(vr, n), () => 4 * 6e-8 * 8);
        assertClose('param', snapshot(p, n), snapshot(pr, n), () => 4 * 6e-8 * 8);
      }),
      { numRuns: RUNS },
    );
  });

  it('fill, copy (overlapping too), scale (exact); axpy', () => {
    fc.assert(
      fc.property(nArb, fc.integer(), f32(-3, 3), fc.integer({ min: -3, max: 3 }), (n, seed, s, shift) => {
        arena.reset();
        const x = alloc(n + 8);
        const xr = alloc(n + 8);
        const y = alloc(n + 8);
        const yr = alloc(n + 8);
        fillRandom(x, n + 8, seed, -2, 2);
        fillRandom(y, n + 8, seed + 1, -2, 2);
        copyInto(xr, snapshot(x, n + 8));
        copyInto(yr, snapshot(y, n + 8));
        k.axpy(n, s, x, y);
        ref.axpy(n, s, xr, yr);
        assertClose('axpy', snapshot(y, n + 8), snapshot(yr, n + 8), () => 1.2e-7 * (2 + 2 * Math.abs(s)));
        // The fused moving average equals scale then axpy bitwise (the optimizer relied on those two before).
        const m = Math.fround(Math.abs(s) / 3);
        const e = alloc(n + 8);
        copyInto(e, snapshot(y, n + 8));
        k.emaUpdate(e, x, n, m, Math.fround(1 - m));
        k.scale(y, n, m);
        k.axpy(n, Math.fround(1 - m), x, y);
        assertClose('emaUpdate', snapshot(e, n + 8), snapshot(y, n + 8), () => 0);
        ref.emaUpdate(yr, xr, n, m, Math.fround(1 - m));
        assertClose('emaUpdate (reference)', snapshot(e, n + 8), snapshot(yr, n + 8), () => 1e-5);
        k.scale(x, n, s);
        ref.scale(xr, n, s);
        assertClose('scale', snapshot(x, n + 8), snapshot(xr, n + 8), () => 0);
        // Overlapping copy within one buffer: memmove semantics.
        const from = x + 16;
        const to = from + shift * 4;
        k.copy(from, to, n);
        ref.copy(xr + 16, xr + 16 + shift * 4, n);
        assertClose('copy', snapshot(x, n + 8), snapshot(xr, n + 8), () => 0);
        k.fill(y, n, s);
        ref.fill(yr, n, s);
        assertClose('fill', snapshot(y, n + 8), snapshot(yr, n + 8), () => 0);
      }),
      { numRuns: RUNS },
    );
  });
});
