/**
 * Properties of the ranking kernels (workers/assembly/ranking.ts): `scoreRows` agrees with the
 * float64 reference within a few ulps of Σ|terms|, and `topK` returns exactly the k best of a sort
 * (descending score, ties by lower index), skipping masked rows and NaN scores, padding with −1/−∞.
 * Run: `node --import tsx --test props/ranking.prop.ts`
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { SharedHeap } from '../src/heap.ts';
import { referenceKernels } from '../workers/reference-kernels.ts';
import { createWasmCompute } from '../workers/wasm-compute.ts';
import { fcParams, values } from './harness.ts';

const heap = new SharedHeap({ initialBytes: 16 << 20 });
const reference = referenceKernels(() => heap.f32, () => heap.i32);
const wasm = createWasmCompute(heap.memory, { threads: 1 });
after(() => wasm.close());

const SHAPES = fc.record({ rows: fc.integer({ min: 1, max: 300 }), dim: fc.integer({ min: 1, max: 37 }), k: fc.integer({ min: 1, max: 20 }), seed: fc.nat(), withBias: fc.boolean(), masked: fc.integer({ min: 0, max: 3 }) });

describe('ranking kernels', () => {
  it('scoreRows equals the reference; topK equals a sort of the unmasked scores', () => {
    fc.assert(fc.property(SHAPES, ({ rows, dim, k, seed, withBias, masked }) => {
      const table = heap.alloc(rows * dim * 4);
      const query = heap.alloc(dim * 4);
      const biasPtr = heap.alloc(rows * 4);
      const scores = heap.alloc(rows * 4);
      const expected = heap.alloc(rows * 4);
      const mask = heap.alloc(rows * 4);
      const index = heap.alloc(k * 4);
      const best = heap.alloc(k * 4);
      try {
        heap.f32.set(values(seed, rows * dim, 1), table >> 2);
        heap.f32.set(values(seed + 1, dim, 1), query >> 2);
        heap.f32.set(values(seed + 2, rows, 1), biasPtr >> 2);
        const b = withBias ? biasPtr : 0;
        wasm.kernels.scoreRows(table, rows, dim, query, b, scores);
        reference.scoreRows(table, rows, dim, query, b, expected);
        for (let i = 0; i < rows; i++) {
          let magnitude = withBias ? Math.abs(heap.f32[(biasPtr >> 2) + i]!) : 0;
          for (let d = 0; d < dim; d++) magnitude += Math.abs(heap.f32[(table >> 2) + i * dim + d]! * heap.f32[(query >> 2) + d]!);
          assert.ok(Math.abs(heap.f32[(scores >> 2) + i]! - heap.f32[(expected >> 2) + i]!) <= 4e-7 * (dim + 1) * magnitude + 1e-30, `scoreRows row ${i}`);
        }
        // Ties and NaN: quantise some scores, poison one.
        const s = heap.f32.subarray(scores >> 2, (scores >> 2) + rows);
        for (let i = 0; i < rows; i += 3) s[i] = Math.round(s[i]! * 4) / 4;
        if (rows > 2) s[1] = Number.NaN;
        const m = heap.i32.subarray(mask >> 2, (mask >> 2) + rows);
        for (let i = 0; i < rows; i++) m[i] = masked > 0 && i % (masked + 1) === 0 ? 1 : 0;
        const candidates = [...Array(rows).keys()].filter((i) => m[i] === 0 && !Number.isNaN(s[i]!)).sort((x, y) => s[y]! - s[x]! || x - y);
        for (const kernels of [wasm.kernels, reference]) {
          kernels.topK(scores, rows, k, mask, index, best);
          const got = [...heap.i32.subarray(index >> 2, (index >> 2) + k)];
          const want = Array.from({ length: k }, (_, j) => candidates[j] ?? -1);
          assert.deepEqual(got, want, `topK rows ${rows} k ${k}`);
          const gotScores = [...heap.f32.subarray(best >> 2, (best >> 2) + k)];
          assert.deepEqual(gotScores, want.map((i) => (i < 0 ? -Infinity : s[i]!)));
        }
      } finally {
        for (const p of [table, query, biasPtr, scores, expected, mask, index, best]) heap.free(p);
      }
    }), fcParams(100));
  });
});
