import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { catchError, concat, concatMap, from, ignoreElements, map, Subject, tap, throwError, timer, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { floatColumn, labelColumn, type Batch } from '../src/batch.ts';
import { backpressure, batchBy, streamCounters, type BackpressurePolicy, type StreamRecord } from '../src/streams/sources.ts';

const scheduler = () => new TestScheduler((actual, expected) => assert.deepStrictEqual(actual, expected));

/** Record i: features [i, i + 0.5], label i % 3. */
const rec = (i: number): StreamRecord => ({ features: [i, i + 0.5], label: i % 3 });
const records = { a: rec(0), b: rec(1), c: rec(2), d: rec(3), e: rec(4), f: rec(5) };
/** A batch as the ids of its records (first feature of each row). */
const ids = (b: Batch): number[] => Array.from(floatColumn(b, 'features').values).filter((_, j) => j % 2 === 0);
/** Errors become their message, so marbles compare strings. */
const messages = <T>(source: Observable<T>) => source.pipe(catchError((e: Error) => throwError(() => `${e.name}: ${e.message}`)));

describe('batchBy (marbles, virtual time)', () => {
  it('batches by size; the partial batch is flushed on completion', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c-d-e|', records);
      const out = source.pipe(batchBy({ size: 2, shape: [2], classes: 3 }), map(ids));
      expectObservable(out).toBe('--x---y--(z|)', { x: [0, 1], y: [2, 3], z: [4] });
    });
  });

  it('carries labels as an Int32 column', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const out = cold('a-b-c|', records).pipe(batchBy({ size: 3, shape: [2], classes: 3 }), map((b) => Array.from(labelColumn(b)!.values)));
      expectObservable(out).toBe('----x|', { x: [0, 1, 2] });
    });
  });

  it('flushes a partial batch maxWaitMs after its first record', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b------c|', records);
      const out = source.pipe(batchBy({ size: 10, maxWaitMs: 5, shape: [2], classes: 3 }), map(ids));
      // a at 0 starts the clock: [a, b] at 5; c at 9 starts it again; completion at 10 flushes [c].
      expectObservable(out).toBe('-----x----(y|)', { x: [0, 1], y: [2] });
    });
  });

  it('emits on whichever comes first: a full batch resets the clock', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('abc----d-------|', records);
      const out = source.pipe(batchBy({ size: 2, maxWaitMs: 4, shape: [2], classes: 3 }), map(ids));
      // [a, b] full at 1; c at 2 starts a clock → 6; d at 7 → 11; completion at 15 has nothing left.
      expectObservable(out).toBe('-x----y----z---|', { x: [0, 1], y: [2], z: [3] });
    });
  });

  it('batches by time only (no size): everything that arrived within maxWaitMs, however many', () => {
    scheduler().run(({ expectObservable }) => {
      // 150 records at frame 0 (more than the accumulator's first 64 rows), one more at 8, completion at 10.
      const source = concat(from(Array.from({ length: 150 }, (_, i) => rec(i))), timer(8).pipe(map(() => rec(999))), timer(2).pipe(ignoreElements()));
      const out = source.pipe(batchBy({ maxWaitMs: 5, shape: [2], classes: 3 }), map((b) => [b.numRows, ids(b)[0], ids(b).at(-1)]));
      expectObservable(out).toBe('-----x----(y|)', { x: [150, 0, 149], y: [1, 999, 999] });
    });
  });

  it('propagates a source error without emitting the partial batch, and stops its timer', () => {
    const ts = scheduler();
    let left = -1;
    ts.run(({ cold, expectObservable }) => {
      const source = cold('a-b-#', records, new Error('upstream broke'));
      expectObservable(messages(source.pipe(batchBy({ size: 10, maxWaitMs: 8, shape: [2], classes: 3 }), map(ids)))).toBe('----#', undefined, 'Error: upstream broke');
      // Frame 5: after the error (4), before the clock started by `a` would fire (8).
      ts.schedule(() => (left = ts.actions.length), 5);
    });
    assert.equal(left, 0, 'a timer was still scheduled after the error');
  });

  it('leaves no timer scheduled after unsubscribe', () => {
    const ts = scheduler();
    let left = -1;
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold('a-b-------|', records);
      expectObservable(source.pipe(batchBy({ size: 10, maxWaitMs: 6, shape: [2], classes: 3 }), map(ids)), '^---!').toBe('-----');
      expectSubscriptions(source.subscriptions).toBe('^---!');
      // Frame 5: after the unsubscription (4), the clock started by `a` (due at 6) must be gone.
      ts.schedule(() => (left = ts.actions.length), 5);
    });
    assert.equal(left, 0, 'a timer was still scheduled after unsubscribe');
  });

  it("onBadRecord 'error' fails naming the record's index, key and problem", () => {
    scheduler().run(({ cold, expectObservable }) => {
      const bad = {
        w: { features: [1, 2, 3], label: 0, key: 'k-7' },
        n: { features: [1, Number.NaN], label: 0 },
        l: { features: [1, 2], label: 3 },
        f: { features: [1, 2], label: 1.5 },
      };
      const make = (m: string, v: Record<string, unknown>) => messages(cold(m, v as Record<string, StreamRecord>).pipe(batchBy({ size: 4, shape: [2], classes: 3 })));
      expectObservable(make('a-w', { ...records, ...bad })).toBe('--#', undefined, "BadRecordError: batchBy: record 1 (key 'k-7') features has 3 values, expected 2 (shape [2])");
      expectObservable(make('n', bad)).toBe('#', undefined, 'BadRecordError: batchBy: record 0 features[1] is NaN, not a finite number');
      expectObservable(make('ab-l', { ...records, ...bad })).toBe('---#', undefined, 'BadRecordError: batchBy: record 2 label 3 is not an integer in [0, 3)');
      expectObservable(make('f', bad)).toBe('#', undefined, 'BadRecordError: batchBy: record 0 label 1.5 is not an integer in [0, 3)');
    });
  });

  it("onBadRecord 'skip' drops bad records and counts them", () => {
    const counters = streamCounters();
    scheduler().run(({ cold, expectObservable }) => {
      const values = { ...records, x: { features: [Number.POSITIVE_INFINITY, 0], label: 1 }, y: { features: [0, 0] } } as Record<string, StreamRecord>;
      const out = cold('axbyc|', values).pipe(batchBy({ size: 2, shape: [2], classes: 3, onBadRecord: 'skip', counters }), map(ids));
      expectObservable(out).toBe('--x--(y|)', { x: [0, 1], y: [2] });
    });
    assert.equal(counters.skipped, 2);
    assert.match(counters.lastSkipReason ?? '', /record 3 label is missing/);
  });
});

/** A consumer that takes 7 frames per item and emits it: one output per input, like model.fit. */
function slowConsumer(fired: { count: number }) {
  return concatMap((x: string) => timer(7).pipe(tap(() => fired.count++), map(() => x)));
}

describe('backpressure (marbles): one item in the consumer, a bounded buffer, an explicit policy', () => {
  const SOURCE = 'a-b-c-d-e-f-|'; // a..f at 0, 2, …, 10; complete at 12

  const cases: { name: string; policy: BackpressurePolicy; expected: string; values: Record<string, string>; dropped: number }[] = [
    // a runs 0→7; b, c, d arrive while it runs and only the latest (d) survives; then e, f → f.
    { name: "'latest' keeps only the newest waiting item", policy: 'latest', expected: '-------a------d------(f|)', values: { a: 'a', d: 'd', f: 'f' }, dropped: 3 },
    { name: 'dropOldest with a buffer of 2 evicts the oldest waiting item', policy: { buffer: 2, onOverflow: 'dropOldest' }, expected: '-------a------c------e------(f|)', values: { a: 'a', c: 'c', e: 'e', f: 'f' }, dropped: 2 },
    { name: 'dropNewest with a buffer of 2 discards the arriving item', policy: { buffer: 2, onOverflow: 'dropNewest' }, expected: '-------a------b------c------(e|)', values: { a: 'a', b: 'b', c: 'c', e: 'e' }, dropped: 2 },
    { name: 'a buffer large enough drops nothing and completes after draining', policy: { buffer: 6, onOverflow: 'error' }, expected: '-------a------b------c------d------e------(f|)', values: { a: 'a', b: 'b', c: 'c', d: 'd', e: 'e', f: 'f' }, dropped: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const counters = streamCounters();
      const fired = { count: 0 };
      scheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
        const source = hot(SOURCE, { a: 'a', b: 'b', c: 'c', d: 'd', e: 'e', f: 'f' });
        expectObservable(source.pipe(backpressure(c.policy, slowConsumer(fired), { counters }))).toBe(c.expected, c.values);
        expectSubscriptions(source.subscriptions).toBe('^-----------!');
      });
      assert.equal(counters.dropped, c.dropped);
      assert.equal(fired.count, Object.keys(c.values).length, 'the consumer ran once per delivered item');
    });
  }

  it("'error' fails when the buffer is full, unsubscribes the source and cancels the item in flight", () => {
    const fired = { count: 0 };
    scheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot(SOURCE, { a: 'a', b: 'b', c: 'c', d: 'd', e: 'e', f: 'f' });
      expectObservable(messages(source.pipe(backpressure({ buffer: 2, onOverflow: 'error' }, slowConsumer(fired))))).toBe(
        '------#', undefined,
        "BackpressureOverflowError: backpressure: the buffer of 2 items is full; the source is faster than the consumer (choose onOverflow 'dropOldest' or 'dropNewest', a larger buffer, or a pull source)",
      );
      expectSubscriptions(source.subscriptions).toBe('^-----!');
    });
    assert.equal(fired.count, 0, 'the step in flight was cancelled, not completed');
  });

  it('propagates a source error at once, discarding waiting items', () => {
    const fired = { count: 0 };
    scheduler().run(({ hot, expectObservable }) => {
      const source = hot('a-b-c-#', { a: 'a', b: 'b', c: 'c' }, new Error('socket reset'));
      expectObservable(messages(source.pipe(backpressure({ buffer: 4, onOverflow: 'error' }, slowConsumer(fired))))).toBe('------#', undefined, 'Error: socket reset');
    });
    assert.equal(fired.count, 0);
  });

  it('propagates a consumer error (a failed step) and unsubscribes the source', () => {
    scheduler().run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const source = hot(SOURCE, { a: 'a', b: 'b', c: 'c', d: 'd', e: 'e', f: 'f' });
      const failing = concatMap((x: string) => (x === 'b' ? cold('---#', undefined, new Error('step 2 failed')) : cold('---(x|)', { x })));
      expectObservable(messages(source.pipe(backpressure('latest', failing)))).toBe('---a--#', { a: 'a' }, 'Error: step 2 failed');
      expectSubscriptions(source.subscriptions).toBe('^-----!');
    });
  });

  it('unsubscribing cancels the source and the consumer: nothing fires or stays scheduled afterwards', () => {
    const ts = scheduler();
    const fired = { count: 0 };
    let left = -1;
    ts.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot(SOURCE, { a: 'a', b: 'b', c: 'c', d: 'd', e: 'e', f: 'f' });
      expectObservable(source.pipe(backpressure('latest', slowConsumer(fired))), '^--------!').toBe('-------a--', { a: 'a' });
      expectSubscriptions(source.subscriptions).toBe('^--------!');
      ts.schedule(() => (left = ts.actions.length), 30);
    });
    assert.equal(fired.count, 1, 'only a finished; d (in flight at 9) was cancelled');
    assert.equal(left, 0);
  });

  it('a synchronous consumer and a synchronous burst: bounded, in order, no recursion blow-up', () => {
    const counters = streamCounters();
    const source = new Subject<number>();
    const seen: number[] = [];
    source.pipe(backpressure({ buffer: 3, onOverflow: 'dropOldest' }, map((x: number) => x * 2), { counters })).subscribe((x) => seen.push(x));
    for (let i = 0; i < 100_000; i++) source.next(i);
    source.complete();
    assert.equal(seen.length, 100_000, 'a synchronous consumer is never busy when the next item arrives');
    assert.equal(counters.dropped, 0);
  });

  it('rejects unbounded or malformed policies with a message', () => {
    assert.throws(() => backpressure({ buffer: Number.POSITIVE_INFINITY, onOverflow: 'dropOldest' }, map((x: number) => x)), /buffer must be a finite non-negative integer \(unbounded buffering is not offered/);
    assert.throws(() => backpressure({ buffer: 4, onOverflow: 'block' as 'error' }, map((x: number) => x)), /onOverflow must be 'error', 'dropOldest' or 'dropNewest', got 'block'/);
  });
});
