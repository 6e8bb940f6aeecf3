/**
 * Determinism of the split kernels: a chunked job gives the same bits whichever thread runs which chunk.
 * Every kernel the pool splits (GEMM in every transpose, conv forward / input gradient / filter gradient
 * (direct and Winograd: inC ≥ 8 and outC = 16 or 32 take conv-winograd.ts),
 * max pooling forward and backward, an elementwise activation, the bias gradient, the optimizer updates,
 * the whole-sequence LSTM / GRU loops)
 * runs on 1, 2 and 3 threads over random shapes; the 2- and 3-thread backends claim chunks at random
 * (every claim jittered), one thread of each is slowed down (a worker, or the caller), and the caller
 * waits until a worker has claimed a chunk before claiming its own (test hooks of the pool: no timing is
 * asserted). Results must be bitwise identical to one thread.
 *
 * Run: `node --import tsx --test props/split.prop.ts`
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { SharedHeap } from '../src/heap.ts';
import { FILTER_GRADIENT_CHUNKS } from '../workers/compute-api.ts';
import { createWasmCompute, type WasmCompute } from '../workers/wasm-compute.ts';

const heap = new SharedHeap({ initialBytes: 32 << 20 });
const arena = heap.arena();
const forced = { splitThresholdFlops: 0, splitThresholdBytes: 0 };
const one = createWasmCompute(heap.memory, { threads: 1 });
const variants: [string, WasmCompute][] = [
  ['2 threads, slow worker', createWasmCompute(heap.memory, { threads: 2, ...forced, testHooks: { slowThread: 1, slowMs: 0.2, jitterMs: 0.1, workersFirst: true } })],
  ['2 threads, slow caller', createWasmCompute(heap.memory, { threads: 2, ...forced, testHooks: { slowThread: 0, slowMs: 0.2, jitterMs: 0.1, workersFirst: true } })],
  ['3 threads, slow worker', createWasmCompute(heap.memory, { threads: 3, ...forced, testHooks: { slowThread: 2, slowMs: 0.2, jitterMs: 0.1, workersFirst: true } })],
];
after(async () => {
  await one.close();
  for (const [, b] of variants) await b.close();
});

const RUNS = 12;
if (process.env['FC_SEED']) fc.configureGlobal({ seed: Number(process.env['FC_SEED']) });

function alloc(floats: number): number {
  return arena.alloc(Math.max(4, floats * 4));
}

function fillRandom(ptr: number, count: number, seed: number): void {
  let s = (seed ^ 0x9e3779b9) >>> 0;
  const h = heap.f32;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    h[(ptr >> 2) + i] = (s >>> 8) / 8388608 - 1;
  }
}

const bits = (ptr: number, count: number) => new Uint32Array(heap.f32.slice(ptr >> 2, (ptr >> 2) + count).buffer);

/**
 * Runs `op(backend)` on one thread and on every variant, each time from the same inputs (`reset` rewrites
 * them), and asserts `outputs` hold the same bits. op may return a Promise (a split) or nothing.
 */
async function sameBits(what: string, reset: () => void, outputs: [number, number][], op: (b: WasmCompute) => unknown): Promise<void> {
  reset();
  await op(one);
  const expected = outputs.map(([p, n]) => bits(p, n));
  for (const [name, backend] of variants) {
    reset();
    await op(backend);
    outputs.forEach(([p, n], i) => assert.deepEqual(bits(p, n), expected[i], `${what}: ${name} differs from 1 thread`));
  }
}

/** C = alpha·op(A)·op(B) (+ C) from random operands (transposes: bits of `t`), the same bits on every variant. */
async function gemmSameBits(m: number, n: number, k: number, t: number, accumulate: boolean, seed: number, alpha: number, hint: 'auto' | 'packed'): Promise<void> {
  arena.reset();
  const [tA, tB] = [t & 1, t >> 1];
  const a = alloc(m * k), b = alloc(k * n), c = alloc(m * n);
  const reset = () => {
    fillRandom(a, m * k, seed);
    fillRandom(b, k * n, seed + 1);
    fillRandom(c, m * n, seed + 2);
  };
  await sameBits(`gemm ${m}×${n}×${k} t${t} ${hint}`, reset, [[c, m * n]], (be) =>
    be.gemm(tA, tB, m, n, k, alpha, a, tA ? m : k, b, tB ? k : n, accumulate ? 1 : 0, c, n, hint));
}

describe('split kernels: bitwise identical on 1, 2 and 3 threads with random claiming and a slowed thread', () => {
  it('gemm (every transpose, beta 0 and 1, rows and columns)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 150 }), fc.integer({ min: 1, max: 150 }), fc.integer({ min: 1, max: 90 }),
        fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer(),
        (m, n, k, t, accumulate, seed) => gemmSameBits(m, n, k, t, accumulate, seed, 1.5, 'auto'),
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('gemm row splits on the packed path, op(B) packed once for every chunk (k across packing blocks)', async () => {
    await fc.assert(
      fc.asyncProperty(
        // m ≥ n: split by rows; the 'packed' hint: the packed path on every build; k past 256: two k blocks.
        fc.integer({ min: 16, max: 40 }), fc.integer({ min: 40, max: 90 }), fc.integer({ min: 200, max: 600 }),
        fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer(),
        (n, extra, k, t, accumulate, seed) => gemmSameBits(n + extra, n, k, t, accumulate, seed, 0.75, 'packed'),
      ),
      { numRuns: RUNS },
    );
  });

  it('two packed GEMM row splits in flight at once: the second does not pack over the first\'s shared op(B)', async () => {
    const m = 120, n = 48, k = 300;
    arena.reset();
    const a = alloc(m * k), b1 = alloc(k * n), b2 = alloc(k * n), c1 = alloc(m * n), c2 = alloc(m * n);
    fillRandom(a, m * k, 1);
    fillRandom(b1, k * n, 2);
    fillRandom(b2, k * n, 3);
    await one.gemm(0, 0, m, n, k, 1, a, k, b1, n, 0, c1, n, 'packed');
    await one.gemm(0, 0, m, n, k, 1, a, k, b2, n, 0, c2, n, 'packed');
    const expected = [bits(c1, m * n), bits(c2, m * n)];
    heap.f32.fill(0, c1 >> 2, (c1 >> 2) + m * n);
    heap.f32.fill(0, c2 >> 2, (c2 >> 2) + m * n);
    // The worker holds its chunk 20 ms before running it, past the caller's spin (5 ms): the first product is
    // still pending when the second is asked for, not awaited in between.
    const held = createWasmCompute(heap.memory, { threads: 2, ...forced, testHooks: { slowThread: 1, slowMs: 20, workersFirst: true } });
    try {
      const first = held.gemm(0, 0, m, n, k, 1, a, k, b1, n, 0, c1, n, 'packed');
      const second = held.gemm(0, 0, m, n, k, 1, a, k, b2, n, 0, c2, n, 'packed');
      await Promise.all([first, second]);
    } finally {
      await held.close();
    }
    assert.deepEqual(bits(c1, m * n), expected[0], 'first product differs from 1 thread');
    assert.deepEqual(bits(c2, m * n), expected[1], 'second product differs from 1 thread');
  });

  it('conv2d forward, input gradient and filter gradient; max pooling forward and backward', async () => {
    await fc.assert(
      fc.asyncProperty(
        // Up to ~6.6 MFLOP: filter gradients from 2 MFLOP are cut into image chunks (reductionChunks).
        fc.integer({ min: 1, max: 16 }), fc.integer({ min: 3, max: 12 }), fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(16)),
        fc.constantFrom(3, 16, 20, 32), fc.integer(),
        async (N, HW, C, CO, seed) => {
          arena.reset();
          const g = [N, HW, HW, C, HW, HW, CO, 3, 3, 1, 1, 1, 1, 1, 1] as const;
          const xs = N * HW * HW * C, ys = N * HW * HW * CO, filter = 9 * C * CO;
          const x = alloc(xs), w = alloc(filter), bias = alloc(CO), y = alloc(ys), dx = alloc(xs), dw = alloc(filter);
          const taps = 9 * C;
          const region = Math.ceil((filter + Math.ceil(N * HW * HW / FILTER_GRADIENT_CHUNKS) * taps) / 16) * 16 + 16;
          const work = alloc(FILTER_GRADIENT_CHUNKS * region);
          const reset = () => {
            fillRandom(x, xs, seed);
            fillRandom(w, filter, seed + 1);
            fillRandom(bias, CO, seed + 2);
            fillRandom(y, ys, seed + 3);
          };
          await sameBits('conv2dForward', reset, [[y, ys]], (be) => be.conv2dForward(x, w, bias, y, ...g, 1));
          await sameBits('conv2dBackwardInput', reset, [[dx, xs]], (be) => be.conv2dBackwardInput(y, w, dx, ...g));
          await sameBits('conv2dBackwardFilter', reset, [[dw, filter]], (be) =>
            be.conv2dBackwardFilter(x, y, dw, work, FILTER_GRADIENT_CHUNKS * region, ...g));
          const OH = Math.floor(HW / 2);
          if (OH < 1) return;
          const pooled = N * OH * OH * CO;
          const p = alloc(pooled), argmax = alloc(pooled), dp = alloc(ys);
          const pg = [N, HW, HW, CO, OH, OH, 2, 2, 2, 2, 0, 0] as const;
          await sameBits('maxPool2dForward', reset, [[p, pooled], [argmax, pooled]], (be) => be.maxPool2dForward(y, p, argmax, ...pg));
          await sameBits('maxPool2dBackward', () => fillRandom(p, pooled, seed + 4), [[dp, ys]], (be) => be.maxPool2dBackward(p, argmax, dp, ys, pooled, N));
        },
      ),
      // A filter gradient above 2 MFLOP (cut into 8 image chunks), and the Winograd forward and input
      // gradient (inC 16 → outC 32, the example CNN's second layer), always, whatever the random draws.
      { numRuns: RUNS, examples: [[16, 12, 8, 16, 7], [9, 12, 16, 32, 5]] },
    );
  });

  it('elementwise activation, bias gradient (row reduction), fused optimizer updates', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 70 }), fc.integer(), async (rows, cols, seed) => {
        arena.reset();
        const n = rows * cols;
        const x = alloc(n), y = alloc(n), out = alloc(cols), g = alloc(n), m = alloc(n), v = alloc(n), ema = alloc(n);
        const reset = () => {
          for (const [p, s] of [[x, 0], [y, 1], [out, 2], [g, 3], [m, 4], [v, 5], [ema, 6]] as const) fillRandom(p, p === out ? cols : n, seed + s);
          heap.f32.fill(0, v >> 2, (v >> 2) + n); // second moments start at 0
        };
        await sameBits('tanhForward', reset, [[y, n]], (be) => be.elementwise('tanhForward', [x, y], n));
        await sameBits('sumRows', reset, [[out, cols]], (be) => be.sumRows(x, out, rows, cols, 0.5));
        // LSTM cells: R = rows / 4 rows of 4·U gates in x, U = cols (y: c_prev, v: tanh c, g: dh, ema: dy, m: dc).
        const U = cols, R = rows >> 2;
        if (R >= 1) {
          const cNew = alloc(R * U), tanhC = alloc(R * U), hNew = alloc(R * U), dz = alloc(4 * R * U);
          await sameBits('lstmCellForward', reset, [[x, 4 * R * U], [cNew, R * U], [tanhC, R * U], [hNew, R * U]], (be) => be.lstmCellForward(x, y, cNew, tanhC, hNew, R, U));
          await sameBits('lstmCellBackward', reset, [[dz, 4 * R * U], [m, R * U]], (be) => be.lstmCellBackward(x, y, v, g, ema, m, dz, R, U));
          await sameBits('gruCellForward', reset, [[x, 3 * R * U], [hNew, R * U]], (be) => be.gruCellForward(x, y, g, hNew, R, U));
          const dq = alloc(3 * R * U);
          await sameBits('gruCellBackward', reset, [[dz, 3 * R * U], [dq, 3 * R * U], [m, R * U]], (be) => be.gruCellBackward(x, y, g, m, ema, dz, dq, R, U));
        }
        await sameBits('adam + sgd + ema updates', reset, [[x, n], [m, n], [v, n], [y, n], [ema, n]], (be) => be.elementwiseMany([
          { name: 'adamUpdate', pointers: [x, g, m, v], n, tail: [1e-3, 0.9, 0.999, 1e-7, 0.01, 1, 0.1, 0.001], tailFloatMask: 0b11011111 },
          { name: 'sgdUpdate', pointers: [y, g, 0], n, tail: [0.1, 0, 0, 0], tailFloatMask: 0b1011 },
          { name: 'emaUpdate', pointers: [ema, g], n, tail: [0.99, 1 - 0.99] }, // calls of one job are independent
        ]));
      }),
      { numRuns: RUNS },
    );
  });

  it('whole-sequence LSTM and GRU kernels (row ranges over every step; truncation, carry, dy per step or last)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 5 }), fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 2 }), fc.integer(),
        async (B, T, U, cut, skipFirst, carry, dyMode, seed) => {
          arena.reset();
          const t0 = Math.min(cut, T - 1);
          const dyEvery = dyMode === 2 ? 1 : 0;
          for (const G of [4, 3]) {
            const W = G * U;
            const z = alloc(T * B * W), q = alloc(T * B * W), rk = alloc(U * W), rkT = alloc(W * U), bias = alloc(W);
            const h = alloc((T + 1) * B * U), c = alloc((T + 1) * B * U), tanhC = alloc(T * B * U);
            const dy = alloc(T * B * U), dh = alloc(B * U), dc = alloc(B * U), dz = alloc(T * B * W), dq = alloc(T * B * W);
            const dyPtr = dyMode === 0 ? 0 : dy;
            const reset = () => {
              for (const [p, count, i] of [[z, T * B * W, 0], [q, T * B * W, 1], [rk, U * W, 2], [rkT, W * U, 3], [bias, W, 4], [h, (T + 1) * B * U, 5],
                [c, (T + 1) * B * U, 6], [tanhC, T * B * U, 7], [dy, T * B * U, 8]] as const) fillRandom(p, count, seed + i);
              // Small recurrent weights keep the states in the gates' sensitive range over the steps.
              for (let i = 0; i < U * W; i++) heap.f32[(rk >> 2) + i]! *= 0.3;
              heap.f32.fill(0, dh >> 2, (dh >> 2) + B * U);
              heap.f32.fill(0, dc >> 2, (dc >> 2) + B * U);
            };
            if (G === 4) {
              await sameBits('lstmForwardSequence', reset, [[z, T * B * W], [h, (T + 1) * B * U], [c, (T + 1) * B * U], [tanhC, T * B * U]],
                (be) => be.lstmForwardSequence(z, rk, bias, h, c, tanhC, B, T, U, skipFirst ? 1 : 0));
              await sameBits('lstmBackwardSequence', reset, [[dz, (T - t0) * B * W], [dh, B * U], [dc, B * U]],
                (be) => be.lstmBackwardSequence(z, c, tanhC, dh, dyPtr, dyEvery, dc, dz, rkT, B, T, t0, U, carry ? 1 : 0));
            } else {
              await sameBits('gruForwardSequence', reset, [[z, T * B * W], [q, T * B * W], [h, (T + 1) * B * U]],
                (be) => be.gruForwardSequence(z, q, rk, bias, bias, h, B, T, U, skipFirst ? 1 : 0));
              await sameBits('gruBackwardSequence', reset, [[dz, (T - t0) * B * W], [dq, (T - t0) * B * W], [dh, B * U]],
                (be) => be.gruBackwardSequence(z, q, h, dh, dyPtr, dyEvery, dz, dq, rkT, B, T, t0, U, carry ? 1 : 0));
            }
          }
        }),
      { numRuns: RUNS },
    );
  });

  it('every variant ran chunks on more than one thread', () => {
    for (const [name, backend] of variants) {
      const counts = backend.pool!.chunkCounts();
      assert.ok(counts.slice(1).some((c) => c > 0), `${name}: workers ran no chunk (${counts.join(', ')})`);
      assert.ok(counts[0]! > 0, `${name}: the caller ran no chunk (${counts.join(', ')})`);
    }
  });
});
