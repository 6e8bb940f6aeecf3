/**
 * Each thread's share of a chunked job (workers/pool-jobs.ts, JOB): a thread claims its own chunks first, then
 * steals the others', every chunk runs once; and the shares cut different kernels over the same memory alike
 * (a weight gradient's GEMM rows and the optimizer's update of those weights), so its lines stay on one core.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { SharedHeap } from '../src/heap.ts';
import { claimChunk, claimedCount, GEN_MASK, INDEX_MASK, JOB, JOB_BYTES, openJob, shareBounds } from '../workers/pool-jobs.ts';
import { F, SLOT_BASE, SLOT_BYTES } from '../workers/pool-workers.ts';
import { partitionElements, partitionGemm, shareOwners, shareStarts } from '../workers/partition.ts';
import { CALL_NAMES, createWasmCompute } from '../workers/wasm-compute.ts';

const newJob = () => new Int32Array(new SharedArrayBuffer(JOB_BYTES));

describe('chunk shares: the claim protocol', () => {
  it('a thread claims its own share in order, then the others\', and every chunk once', () => {
    const job = newJob();
    const tag = 7 << JOB.INDEX_BITS;
    openJob(job, tag, shareBounds(8, 2), () => {});
    assert.deepEqual([1, 1, 1].map(() => claimChunk(job, tag, 1)), [4, 5, 6], 'the worker starts on its own share');
    assert.deepEqual([0, 0].map(() => claimChunk(job, tag, 0)), [0, 1], 'the caller starts on its own share');
    assert.equal(claimedCount(job, tag), 5);
    const rest = [claimChunk(job, tag, 1), claimChunk(job, tag, 1), claimChunk(job, tag, 0), claimChunk(job, tag, 0), claimChunk(job, tag, 1)];
    assert.deepEqual(rest, [7, 2, 3, -1, -1], 'the worker finishes its share, then steals the caller\'s next chunk');
  });

  it('claims nothing of a job that is no longer current, nor of one being written', () => {
    const job = newJob();
    const old = 3 << JOB.INDEX_BITS;
    openJob(job, old, shareBounds(4, 2), () => {});
    const next = ((3 + 1) & GEN_MASK) << JOB.INDEX_BITS;
    let during: number[] = [];
    openJob(job, next, shareBounds(6, 2), () => {
      // While the rows are written: the old tag is gone, the new one is closed.
      during = [claimChunk(job, old, 0), claimChunk(job, old, 1), claimChunk(job, next, 0), claimChunk(job, next, 1)];
    });
    assert.deepEqual(during, [-1, -1, -1, -1]);
    assert.equal(claimChunk(job, old, 0), -1);
    assert.equal(claimChunk(job, next, 0), 0);
    assert.equal(Atomics.load(job, JOB.HOME) & INDEX_MASK, 1);
  });

  it('uneven and empty shares: every chunk once, whoever claims', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 5 }), fc.array(fc.nat(4), { maxLength: 200 }), (count, threads, order) => {
      const starts = [0, ...Array.from({ length: threads - 1 }, (_, t) => Math.min(count, Math.floor(((t + 1) * count * count) / (threads * 37))))].sort((a, b) => a - b);
      const job = newJob();
      const tag = 1 << JOB.INDEX_BITS;
      openJob(job, tag, shareBounds(count, threads, starts), () => {});
      const seen: number[] = [];
      for (const t of order) {
        const i = claimChunk(job, tag, t % threads);
        if (i >= 0) seen.push(i);
      }
      for (let i = claimChunk(job, tag, 0); i >= 0; i = claimChunk(job, tag, 0)) seen.push(i);
      assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i));
    }));
  });
});

describe('chunk shares: by position', () => {
  it('a weight gradient\'s GEMM rows and the optimizer\'s line ranges over those weights go to the same thread, but near a boundary', () => {
    fc.assert(fc.property(fc.integer({ min: 16, max: 2048 }), fc.integer({ min: 1, max: 512 }), fc.integer({ min: 2, max: 4 }), fc.integer({ min: 2, max: 16 }), (m, n, threads, chunks) => {
      const gemm = partitionGemm(m, n, chunks, 6);
      fc.pre(gemm.rows);
      const gemmOwner = shareOwners(gemm.ranges, m, threads);
      const lines = partitionElements(m * n, chunks);
      const lineOwner = shareOwners(lines, m * n, threads);
      // Owners are nondecreasing, so the shares are contiguous.
      for (const owners of [gemmOwner, lineOwner]) owners.forEach((o, i) => assert.ok(i === 0 || o >= owners[i - 1]!));
      // A row owned differently by the two lies within one chunk of a part boundary t·m / threads.
      const rowOwner = (r: number, parts: [number, number][], owners: number[], scale: number) => owners[parts.findIndex(([s, e]) => r * scale >= s && r * scale < e)]!;
      const slack = Math.max(gemm.ranges[0]![1] - gemm.ranges[0]![0], Math.ceil((lines[0]![1] - lines[0]![0]) / n) + 1);
      for (let r = 0; r < m; r++) {
        if (rowOwner(r, gemm.ranges, gemmOwner, 1) === rowOwner(r, lines, lineOwner, n)) continue;
        const near = Array.from({ length: threads - 1 }, (_, t) => ((t + 1) * m) / threads).some((b) => Math.abs(r - b) <= slack);
        assert.ok(near, `row ${r} of ${m}×${n}: GEMM owner ${rowOwner(r, gemm.ranges, gemmOwner, 1)}, update owner ${rowOwner(r, lines, lineOwner, n)}`);
      }
    }));
  });

  it('share starts: the first range of each thread, past the end for a thread with none', () => {
    assert.deepEqual(shareStarts([0, 0, 1, 1], 2), [0, 2]);
    assert.deepEqual(shareStarts([0, 0, 0], 2), [0, 3]);
    assert.deepEqual(shareStarts([0, 2, 2], 3), [0, 1, 1]);
    assert.deepEqual(shareOwners([[0, 102], [102, 204], [204, 306], [306, 392]], 392, 2), [0, 0, 1, 1]);
  });
});

describe('chunk shares: the pool', () => {
  const heap = new SharedHeap({ initialBytes: 8 << 20 });
  const compute = createWasmCompute(heap.memory, { threads: 2, splitThresholdFlops: 0, testHooks: { slowThread: 1, slowMs: 1000, workersFirst: true } });
  after(() => compute.close());

  it('a worker starts on its own share and the caller on its own, then takes the rest of the slowed worker\'s', async () => {
    const a = heap.alloc(64 * 64 * 4);
    await compute.gemm(0, 0, 64, 64, 64, 1, a, 64, a, 64, 0, a, 64); // starts the pool
    const pool = compute.pool!;
    const x = heap.alloc(64 * 4);
    const relu = CALL_NAMES.indexOf('reluForward');
    const rows = Array.from({ length: 8 }, () => ({ kernel: relu, args: [x, x, 16] }));
    const callerRan: number[] = [];
    const workerHeld: number[] = [];
    const slot = new Int32Array(heap.memory.buffer, SLOT_BASE, SLOT_BYTES / 4);
    pool.runChunks('share test', rows, (row) => {
      // The caller runs only once the worker has claimed (workersFirst); the worker then sleeps 1 s holding it.
      if (callerRan.length === 0) workerHeld.push(Atomics.load(slot, F.CLAIMED) - 1);
      callerRan.push(rows.indexOf(row as (typeof rows)[number]));
    }, true);
    assert.deepEqual(workerHeld, [4], 'the worker\'s first chunk is the first of its share');
    assert.deepEqual(callerRan.slice(0, 4), [0, 1, 2, 3], 'the caller runs its own share first, in order');
    assert.deepEqual([...callerRan].sort(), [0, 1, 2, 3, 5, 6, 7], 'then the slowed worker\'s rest');
    heap.free(a);
    heap.free(x);
  });

  it('shares that are not ascending chunk indices are refused by name, and the pool stays usable', async () => {
    const pool = compute.pool!;
    const relu = CALL_NAMES.indexOf('reluForward');
    const x = heap.alloc(64 * 4);
    const rows = Array.from({ length: 4 }, () => ({ kernel: relu, args: [x, x, 16] }));
    assert.throws(() => pool.runChunks('bad shares', rows, () => {}, true, { shares: [0, 5] }), /bad shares's shares \[0, 5\] are not 2 ascending chunk indices from 0 up to 4/);
    assert.throws(() => pool.runChunks('bad shares', rows, () => {}, true, { shares: [1, 2] }), /are not 2 ascending/);
    assert.throws(() => pool.runChunks('bad shares', rows, () => {}, true, { shares: [0] }), /are not 2 ascending/);
    let ran = 0;
    pool.runChunks('good shares', rows, () => void ran++, true, { shares: [0, 4] });
    assert.ok(ran >= 1 && ran <= 4);
    heap.free(x);
  });
});
