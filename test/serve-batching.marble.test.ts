/** dynamicBatching in virtual time: what forms a batch (row count, the oldest's wait, the model being busy, completion). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { map, timer } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { dynamicBatching } from '../src/serve/batching.ts';

const scheduler = () => new TestScheduler((actual, expected) => assert.deepStrictEqual(actual, expected));
interface Item { id: string; rows: number }
const items: Record<string, Item> = { a: { id: 'a', rows: 1 }, b: { id: 'b', rows: 1 }, c: { id: 'c', rows: 1 }, d: { id: 'd', rows: 2 }, e: { id: 'e', rows: 1 }, f: { id: 'f', rows: 5 } };

describe('dynamicBatching', () => {
  it('waits maxWaitMs from the oldest, coalesces what queues while busy, runs the rest at completion', () => {
    const s = scheduler();
    s.run(({ cold, expectObservable }) => {
      const source = cold('a-b---cd----e|', items);
      // Each batch takes 3 frames: c and d queue meanwhile (3 rows = maxRows) and run as soon as it ends.
      const run = (group: Item[]) => timer(3, s).pipe(map(() => group.map((i) => i.id).join('')));
      expectObservable(source.pipe(dynamicBatching({ maxRows: 3, maxWaitMs: 5, scheduler: s }, run))).toBe('--------x--y----(z|)', { x: 'ab', y: 'cd', z: 'e' });
    });
  });

  it('closes a batch at maxRows without waiting, and runs an item larger than maxRows alone', () => {
    const s = scheduler();
    s.run(({ cold, expectObservable }) => {
      const source = cold('abc-f-|', items);
      const run = (group: Item[]) => [group.map((i) => i.id).join('')];
      expectObservable(source.pipe(dynamicBatching({ maxRows: 3, maxWaitMs: 100, scheduler: s }, run))).toBe('--x-y-|', { x: 'abc', y: 'f' });
    });
  });

  it('rejects a non-positive maxRows', () => {
    assert.throws(() => dynamicBatching({ maxRows: 0, maxWaitMs: 1 }, () => []), /maxRows must be a positive integer/);
  });
});
