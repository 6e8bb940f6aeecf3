import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { from, lastValueFrom, Subject, toArray } from 'rxjs';
import { serialMap } from '../src/serial-map.ts';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('serialMap (concatMap for promises, O(1) dequeue)', () => {
  it('runs the work one value at a time, in order, over a synchronous source of many values', async () => {
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const out = await lastValueFrom(from(Array.from({ length: 5000 }, (_, i) => i)).pipe(
      serialMap(async (v: number) => {
        started.push(v);
        most = Math.max(most, ++running);
        await Promise.resolve();
        running--;
        return 2 * v;
      }),
      toArray(),
    ));
    assert.equal(most, 1, 'never two at once');
    assert.deepEqual(started, Array.from({ length: 5000 }, (_, i) => i));
    assert.deepEqual(out, Array.from({ length: 5000 }, (_, i) => 2 * i));
  });

  it('completes only after the queue drained, and at once on an empty source', async () => {
    assert.deepEqual(await lastValueFrom(from([]).pipe(serialMap(async (v: number) => v), toArray())), []);
    const source = new Subject<number>();
    const seen: number[] = [];
    let done = false;
    source.pipe(serialMap(async (v: number) => (await tick(), v))).subscribe({ next: (v) => seen.push(v), complete: () => (done = true) });
    source.next(1);
    source.next(2);
    source.complete();
    assert.equal(done, false);
    for (let i = 0; i < 5 && !done; i++) await tick();
    assert.deepEqual(seen, [1, 2]);
    assert.equal(done, true);
  });

  it('a rejected or throwing work errors the stream and starts nothing after it', async () => {
    const started: number[] = [];
    await assert.rejects(lastValueFrom(from([1, 2, 3]).pipe(serialMap(async (v: number) => {
      started.push(v);
      if (v === 2) throw new Error('step 2 failed');
      return v;
    }))), /step 2 failed/);
    assert.deepEqual(started, [1, 2]);
    await assert.rejects(lastValueFrom(from([1]).pipe(serialMap((): Promise<number> => {
      throw new Error('sync throw');
    }))), /sync throw/);
  });

  it('unsubscribing drops the queue: no further work starts, the result in flight is not emitted', async () => {
    const started: number[] = [];
    const seen: number[] = [];
    const subscription = from([1, 2, 3]).pipe(serialMap(async (v: number) => (started.push(v), await tick(), v))).subscribe((v) => seen.push(v));
    subscription.unsubscribe();
    for (let i = 0; i < 5; i++) await tick();
    assert.deepEqual(started, [1]);
    assert.deepEqual(seen, []);
  });
});
