import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Table, tableToIPC } from 'apache-arrow';
import { from, lastValueFrom, map, Subject, toArray, type Observable } from 'rxjs';
import {
  adam, batchFromArrays, createEngine, dense, dropout, meanSquaredError, Random, relu, sequential, softmaxCrossEntropy,
  type Batch, type FitOptions, type Layer, type Model, type StepReport,
} from '../src/index.ts';
import {
  batchBy, batchRecords, eventSource, ipcSource, ipcSource$, keyColumn, observePull, readableSource, streamCounters, tcpIpcSource,
  trainWithBackpressure, type BackpressurePolicy, type OnlineStepReport, type StreamRecord,
} from '../src/streams/sources.ts';
import { rollingMetrics, scoreExample } from '../src/streams/metrics.ts';
import { testThenTrain, testThenTrainDelayed, type DelayedEvent, type DelayedLabel } from '../src/streams/test-then-train.ts';

const engine = createEngine({ threads: 1 });
after(() => engine.close());

const IN = 4;
const CLASSES = 3;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rxgrad-streams-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A separable 3-class problem: the class is the sign pattern of two features. */
function records(seed: number, n: number): StreamRecord[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, (_, i) => {
    const features = Array.from({ length: IN }, () => rng.normal());
    const score = features[0]! - features[1]! + 0.5 * features[2]!;
    return { features, label: score > 0.7 ? 2 : score > -0.7 ? 1 : 0, key: `r${i}` };
  });
}

function batchesOf(rows: StreamRecord[], size: number): Batch[] {
  const out: Batch[] = [];
  for (let s = 0; s < rows.length; s += size) {
    const part = rows.slice(s, s + size);
    out.push(batchFromArrays({ features: Float32Array.from(part.flatMap((r) => Array.from(r.features))), shape: [IN], labels: Int32Array.from(part, (r) => r.label!) }));
  }
  return out;
}

const model = (seed = 1): Model => sequential([dense(16), relu(), dense(CLASSES)], { inputShape: [IN], seed, engine });
const fit = (): FitOptions => ({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.05 }), metrics: ['accuracy'] });
const collect = <T>(source: Observable<T>): Promise<T[]> => lastValueFrom(source.pipe(toArray()));
const meanTail = (reports: { accuracy?: number }[], n: number) => reports.slice(-n).reduce((s, r) => s + (r.accuracy ?? 0), 0) / n;
const handles = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;

/** After an error or unsubscribe: the heap is back at its level and the model still trains (same optimizer). */
async function assertRecovered(m: Model, level: number, options: FitOptions) {
  await sleep(5); // a cancelled step releases its arena when its queued work is reached
  assert.equal(engine.heap.allocatedBytes, level, 'the shared heap is back at its level (arenas released, nothing leaked)');
  const before = m.stepCount;
  const reports = await collect(from(batchesOf(records(99, 64), 32)).pipe(m.fit(options)));
  assert.equal(reports.length, 2);
  assert.equal(m.stepCount, before + 2);
  assert.ok(reports.every((r) => Number.isFinite(r.loss)));
  assert.equal(engine.heap.allocatedBytes, level, 'training afterwards allocates nothing new');
}

/**
 * A model that has taken a step with its optimizer, so its parameters, optimizer slots and one
 * arena exist (a new optimizer would allocate its own slots: reuse `opts`).
 */
async function warmModel(seed = 1): Promise<{ m: Model; level: number; opts: FitOptions }> {
  const m = model(seed);
  const opts = fit();
  await collect(from(batchesOf(records(98, 32), 32)).pipe(m.fit(opts)));
  return { m, level: engine.heap.allocatedBytes, opts };
}

describe('pull sources: trained at the engine pace through model.fitFrom', () => {
  const data = records(1, 60 * 32);
  const batches = batchesOf(data, 32);

  for (const format of ['stream', 'file'] as const) {
    it(`an Arrow IPC ${format} file written to a temp dir`, async () => {
      const path = join(dir, `train.${format === 'stream' ? 'arrows' : 'arrow'}`);
      await writeFile(path, tableToIPC(new Table(batches), format));
      const m = model();
      const reports = await collect(m.fitFrom(ipcSource(path), fit()));
      assert.equal(reports.length, batches.length);
      assert.equal(reports.at(-1)!.examples, data.length);
      assert.ok(meanTail(reports, 10) > 0.85, `accuracy over the last 10 steps ${meanTail(reports, 10)}`);
      m.dispose();
    });
  }

  it('an Arrow IPC stream over a TCP socket on 127.0.0.1 (ephemeral port), in small chunks', async () => {
    const bytes = tableToIPC(new Table(batches), 'stream');
    const server = await serve(async (socket) => {
      for (let at = 0; at < bytes.length; at += 1000) {
        socket.write(bytes.subarray(at, at + 1000));
        await sleep(0);
      }
      socket.end();
    });
    const m = model();
    const reports = await collect(m.fitFrom(tcpIpcSource({ port: port(server) }), fit()));
    assert.equal(reports.length, batches.length);
    assert.ok(meanTail(reports, 10) > 0.85);
    await close(server);
    m.dispose();
    assert.equal(handles('TCPSocketWrap') + handles('TCPServerWrap'), 0, 'no socket or server left open');
  });

  it('a TCP stream cut mid-message fails with IpcFormatError; the model recovers and no socket is left', async () => {
    const bytes = tableToIPC(new Table(batches.slice(0, 6)), 'stream');
    const cut = Math.floor(bytes.length * 0.6);
    const server = await serve((socket) => void socket.end(bytes.subarray(0, cut)));
    const { m, level, opts } = await warmModel();
    const reports: StepReport[] = [];
    await assert.rejects(
      new Promise<void>((resolve, reject) => m.fitFrom(tcpIpcSource({ port: port(server) }), opts).subscribe({ next: (r) => reports.push(r), error: reject, complete: resolve })),
      (e: Error) => e.name === 'IpcFormatError' && /truncated input: the stream ended inside the (metadata|body) of message \d+/.test(e.message),
    );
    assert.ok(reports.length >= 1 && reports.length < 6, `the batches before the cut were trained (${reports.length})`);
    await close(server);
    await assertRecovered(m, level, opts);
    assert.equal(handles('TCPSocketWrap') + handles('TCPServerWrap'), 0);
    m.dispose();
  });

  it('a connection that ends cleanly at a message boundary but without the end-of-stream marker is an error too', async () => {
    const bytes = tableToIPC(new Table(batches.slice(0, 3)), 'stream');
    const server = await serve((socket) => void socket.end(bytes.subarray(0, bytes.length - 8)));
    const m = model();
    await assert.rejects(collect(m.fitFrom(tcpIpcSource({ port: port(server) }), fit())), /ended at byte \d+ after 4 messages without the end-of-stream marker/);
    assert.equal(m.stepCount, 3, 'the complete batches were trained before the error');
    await close(server);
    m.dispose();
  });

  it('unsubscribing while the socket is silent cancels the read at once and closes the socket', async () => {
    const bytes = tableToIPC(new Table(batches.slice(0, 2)), 'stream');
    const server = await serve((socket) => {
      socket.write(bytes.subarray(0, bytes.length - 8)); // two batches, then silence (no end marker)
    });
    const { m, level, opts } = await warmModel();
    const seen: number[] = [];
    const subscription = m.fitFrom(tcpIpcSource({ port: port(server) }), opts).subscribe((r) => seen.push(r.step));
    while (seen.length < 2) await sleep(5);
    subscription.unsubscribe();
    // Before the server closes anything: the client socket is destroyed by the unsubscription
    // (so the server's end sees the close too), not left waiting for bytes that never come.
    for (let i = 0; i < 40 && handles('TCPSocketWrap') > 0; i++) await sleep(5);
    assert.equal(handles('TCPSocketWrap'), 0, 'the client socket was destroyed on unsubscribe');
    await close(server);
    await assertRecovered(m, level, opts);
    m.dispose();
  });

  it('an object-mode Node readable of records, batched on pull; bad records skipped and counted', async () => {
    const rows: unknown[] = records(2, 40 * 16);
    rows.splice(5, 0, { features: [1, 2], label: 0 }, { features: [1, 2, 3, Number.NaN], label: 1 }, { features: [0, 0, 0, 0], label: 7 });
    const counters = streamCounters();
    const m = model();
    const reports = await collect(m.fitFrom(batchRecords(readableSource<StreamRecord>(Readable.from(rows)), { size: 16, shape: [IN], classes: CLASSES, onBadRecord: 'skip', counters }), fit()));
    assert.equal(counters.skipped, 3);
    assert.equal(reports.length, 40);
    assert.equal(reports.at(-1)!.examples, 640);
    assert.ok(meanTail(reports, 10) > 0.8);
    m.dispose();
  });

  it("an object-mode readable with a bad record and onBadRecord 'error' fails naming the record", async () => {
    const rows: unknown[] = records(3, 20);
    rows[13] = { features: [0, 0, 0, 0], label: 2.5, key: 'order-13' };
    const m = model();
    await assert.rejects(
      collect(m.fitFrom(batchRecords(readableSource<StreamRecord>(Readable.from(rows)), { size: 8, shape: [IN], classes: CLASSES }), fit())),
      { name: 'BadRecordError', message: "batchRecords: record 13 (key 'order-13') label 2.5 is not an integer in [0, 3)" },
    );
    assert.equal(m.stepCount, 1, 'the batch before the bad record was trained');
    m.dispose();
  });

  it('batchRecords flushes a partial batch when the source is silent for maxWaitMs', async () => {
    async function* slow() {
      const rows = records(4, 10);
      for (let i = 0; i < rows.length; i++) {
        if (i === 3 || i === 7) await sleep(80);
        yield rows[i]!;
      }
    }
    const m = model();
    const reports = await collect(m.fitFrom(batchRecords(slow(), { size: 100, maxWaitMs: 30, shape: [IN], classes: CLASSES }), fit()));
    assert.deepEqual(reports.map((r) => r.batchSize), [3, 4, 3]);
    assert.equal(handles('Timeout'), 0, 'no timer left');
    m.dispose();
  });

  it('the Observable form of an IPC source feeds model.predict (keys pass through)', async () => {
    const keyed = batchesOf(records(5, 64), 32);
    const m = model();
    const out = await collect(ipcSource$(tableToIPC(new Table(keyed), 'stream')).pipe(m.predict()));
    assert.equal(out.length, 2);
    assert.deepEqual(out.map((b) => b.numRows), [32, 32]);
    assert.ok(out.every((b) => b.getChild('prediction') !== null && b.getChild('labels') !== null));
    m.dispose();
  });
});

describe('push sources through backpressure', () => {
  const burst = batchesOf(records(6, 20 * 8), 8); // 20 batches of 8

  /** Pushes all 20 batches synchronously: batch 0 starts a step, the other 19 arrive while it runs. */
  async function pushBurst(policy: BackpressurePolicy) {
    const { m, level, opts } = await warmModel();
    const subject = new Subject<Batch>();
    const reports: OnlineStepReport[] = [];
    const done = new Promise<void>((resolve, reject) => subject.pipe(trainWithBackpressure(m, opts, policy)).subscribe({ next: (r) => reports.push(r), error: reject, complete: resolve }));
    for (const b of burst) subject.next(b);
    subject.complete();
    return { m, level, opts, reports, done };
  }

  const cases: { policy: BackpressurePolicy; steps: number; dropped: number }[] = [
    { policy: 'latest', steps: 2, dropped: 18 },
    { policy: { buffer: 3, onOverflow: 'dropOldest' }, steps: 4, dropped: 16 },
    { policy: { buffer: 3, onOverflow: 'dropNewest' }, steps: 4, dropped: 16 },
    { policy: { buffer: 25, onOverflow: 'error' }, steps: 20, dropped: 0 },
  ];
  for (const c of cases) {
    it(`a Subject with policy ${JSON.stringify(c.policy)}: ${c.steps} steps, ${c.dropped} batches dropped and reported`, async () => {
      const { m, level, opts, reports, done } = await pushBurst(c.policy);
      await done;
      assert.equal(reports.length, c.steps);
      assert.equal(reports.at(-1)!.dropped, c.dropped);
      assert.equal(reports.at(-1)!.droppedRows, c.dropped * 8);
      assert.equal(reports.at(-1)!.examples + reports.at(-1)!.droppedRows, 160, 'every row was either trained on or counted as dropped');
      assert.equal(engine.heap.allocatedBytes, level, 'bounded: one arena, reused');
      m.dispose();
    });
  }

  it("a Subject with { buffer: 3, onOverflow: 'error' } fails, cancels the step in flight, and the model recovers", async () => {
    const { m, level, opts, reports, done } = await pushBurst({ buffer: 3, onOverflow: 'error' });
    await assert.rejects(done, { name: 'BackpressureOverflowError' });
    assert.equal(reports.length, 0, 'the step in flight was cancelled before it was applied');
    await assertRecovered(m, level, opts);
    m.dispose();
  });

  it('an EventEmitter of records in bursts → batchBy → trainWithBackpressure: counts add up', async () => {
    const emitter = new EventEmitter();
    const counters = streamCounters();
    const { m, opts } = await warmModel();
    const rows = records(7, 3000);
    const reportsPromise = collect(
      eventSource<StreamRecord>(emitter, { event: 'record' }).pipe(
        batchBy({ size: 32, maxWaitMs: 20, shape: [IN], classes: CLASSES, onBadRecord: 'skip', counters }),
        trainWithBackpressure(m, opts, { buffer: 2, onOverflow: 'dropOldest' }, { counters }),
      ),
    );
    for (let at = 0; at < rows.length; at += 300) {
      for (const r of rows.slice(at, at + 300)) emitter.emit('record', r);
      emitter.emit('record', { features: [1], label: 0 }); // one bad record per burst
      await new Promise((resolve) => setImmediate(resolve));
    }
    emitter.emit('end');
    const reports = await reportsPromise;
    const last = reports.at(-1)!;
    assert.equal(last.skipped, 10);
    assert.ok(last.dropped > 0, 'bursts of 300 records outran the model at least once');
    assert.equal(last.examples + last.droppedRows, rows.length, 'trained + dropped = all good records');
    assert.equal(emitter.listenerCount('record') + emitter.listenerCount('end') + emitter.listenerCount('error'), 0, 'listeners removed');
    assert.equal(handles('Timeout'), 0, 'no batchBy timer left');
    m.dispose();
  });

  it('unsubscribing mid-stream releases the arenas, removes listeners and leaves no timer', async () => {
    const emitter = new EventEmitter();
    const { m, level, opts } = await warmModel();
    const timersBefore = handles('Timeout');
    const subscription = eventSource<StreamRecord>(emitter, { event: 'record' })
      .pipe(batchBy({ size: 16, maxWaitMs: 10_000, shape: [IN], classes: CLASSES }), trainWithBackpressure(m, opts, 'latest'))
      .subscribe();
    for (const r of records(8, 40)) emitter.emit('record', r); // 2 full batches + 8 waiting under a 10 s clock
    assert.equal(handles('Timeout'), timersBefore + 1, 'the partial batch clock is running');
    subscription.unsubscribe();
    assert.equal(handles('Timeout'), timersBefore, 'unsubscribe cleared the clock');
    assert.equal(emitter.listenerCount('record'), 0);
    await assertRecovered(m, level, opts);
    m.dispose();
  });

  it('a source error propagates and the model recovers', async () => {
    const { m, level, opts } = await warmModel();
    const subject = new Subject<Batch>();
    const done = collect(subject.pipe(trainWithBackpressure(m, opts, { buffer: 4, onOverflow: 'dropOldest' })));
    subject.next(burst[0]!);
    subject.next(burst[1]!);
    subject.error(new Error('producer crashed'));
    await assert.rejects(done, /producer crashed/);
    await assertRecovered(m, level, opts);
    m.dispose();
  });
});

describe('test-then-train', () => {
  it('scores each batch before learning from it (the report equals an evaluation of the pre-step weights)', async () => {
    const batches = batchesOf(records(9, 10 * 32), 32);
    const m = model(3);
    const twin = model(3);
    const twinFit = fit();
    const reports = await collect(from(batches).pipe(testThenTrain(m, { ...fit(), window: 64 })));
    assert.equal(reports.length, 10);
    // The twin replays: evaluate batch k, then train on it; its evaluation is what testThenTrain reported.
    for (let k = 0; k < 3; k++) {
      const evaluation = await twin.evaluate(from([batches[k]!]), { loss: softmaxCrossEntropy() });
      assert.ok(Math.abs(evaluation.loss - reports[k]!.loss!) < 1e-5, `batch ${k}: ${evaluation.loss} vs ${reports[k]!.loss}`);
      assert.equal(evaluation.accuracy, reports[k]!.accuracy);
      await collect(from([batches[k]!]).pipe(twin.fit(twinFit)));
    }
    assert.equal(reports[0]!.rolling.count, 32);
    assert.equal(reports[5]!.rolling.count, 64, 'the window holds the last 64 examples');
    const lastTwo = (reports[8]!.accuracy! + reports[9]!.accuracy!) / 2;
    assert.ok(Math.abs(reports[9]!.rolling.accuracy! - lastTwo) < 1e-12, 'rolling accuracy = mean over the last two batches of 32');
    assert.equal(reports.at(-1)!.step, 10);
    m.dispose();
    twin.dispose();
  });

  it('runs one forward per batch unless a layer differs in training (dropout: predict first, and the score is still the inference one)', async () => {
    // An identity layer that counts the forwards it sees.
    const counter = (): Layer & { forwards: number } => ({
      kind: 'forwardCounter', name: '', forwards: 0,
      build: (shape) => shape, parameters: () => [], config: () => ({}),
      forward(x) {
        this.forwards++;
        return x;
      },
      backward: (dy) => dy,
    });
    const batches = batchesOf(records(12, 6 * 32), 32);
    for (const rate of [0, 0.3]) {
      const build = (seed: number) => {
        const probe = counter();
        return { probe, m: sequential([probe, dense(16), relu(), dropout(rate), dense(CLASSES)], { inputShape: [IN], seed, engine }) };
      };
      const { probe, m } = build(4);
      const twin = build(4).m;
      assert.equal(m.trainingDiffers, rate > 0);
      const twinFit = fit();
      const reports = await collect(from(batches).pipe(testThenTrain(m, fit())));
      assert.equal(probe.forwards, batches.length * (rate > 0 ? 2 : 1), `dropout ${rate}: forwards`);
      for (const [k, batch] of batches.entries()) {
        const evaluation = await twin.evaluate(from([batch]), { loss: softmaxCrossEntropy() });
        assert.ok(Math.abs(evaluation.loss - reports[k]!.loss!) < 1e-5, `dropout ${rate}, batch ${k}: ${evaluation.loss} vs ${reports[k]!.loss}`);
        assert.equal(evaluation.accuracy, reports[k]!.accuracy);
        await collect(from([batch]).pipe(twin.fit(twinFit)));
      }
      m.dispose();
      twin.dispose();
    }
  });

  it('regression: rolling MAE and RMSE', async () => {
    const rng = new Random(4);
    const batches = Array.from({ length: 40 }, () => {
      const x = new Float32Array(16 * IN).map(() => rng.normal());
      const t = new Float32Array(16).map((_, r) => 2 * x[r * IN]! - x[r * IN + 1]!);
      return batchFromArrays({ features: x, shape: [IN], targets: t, targetShape: [1] });
    });
    const m = sequential([dense(1)], { inputShape: [IN], seed: 1, engine });
    const reports = await collect(from(batches).pipe(testThenTrain(m, { loss: meanSquaredError(), optimizer: adam({ learningRate: 0.1 }), window: 64 })));
    const first = reports[0]!;
    const last = reports.at(-1)!;
    assert.ok(first.mae !== undefined && first.rmse !== undefined && first.accuracy === undefined);
    assert.ok(Math.abs(first.rmse! ** 2 - first.loss!) < 1e-9, 'RMSE² = MSE for a one-output model');
    assert.ok(last.rolling.rmse! < first.rolling.rmse! / 3, `RMSE fell from ${first.rolling.rmse} to ${last.rolling.rmse}`);
    m.dispose();
  });

  it('rollingMetrics agrees with a brute-force window', () => {
    const rolling = rollingMetrics({ window: 7 });
    const rng = new Random(5);
    const all: { loss: number; correct: number }[] = [];
    for (let i = 0; i < 100; i++) {
      const s = { loss: rng.normal() ** 2, correct: rng.normal() > 0 ? 1 : 0 };
      all.push(s);
      rolling.add(s);
      const window = all.slice(-7);
      const snap = rolling.snapshot();
      assert.equal(snap.count, window.length);
      assert.ok(Math.abs(snap.loss! - window.reduce((a, b) => a + b.loss, 0) / window.length) < 1e-12);
      assert.ok(Math.abs(snap.accuracy! - window.reduce((a, b) => a + b.correct, 0) / window.length) < 1e-12);
    }
    const s = scoreExample(softmaxCrossEntropy(), [1, 2, 3], { label: 0 });
    assert.ok(Math.abs(s.loss! - (Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)) - 1)) < 1e-12);
    assert.equal(s.correct, 0);
  });

  it('as a backpressure consumer behind a Subject', async () => {
    const { backpressure } = await import('../src/streams/backpressure.ts');
    const counters = streamCounters();
    const m = model(5);
    const subject = new Subject<Batch>();
    const done = collect(subject.pipe(backpressure('latest', testThenTrain(m, { ...fit(), counters }), { counters })));
    for (const b of batchesOf(records(10, 10 * 8), 8)) subject.next(b);
    subject.complete();
    const reports = await done;
    assert.equal(reports.length, 2);
    assert.equal(reports.at(-1)!.dropped, 8);
    m.dispose();
  });
});

describe('test-then-train with delayed labels', () => {
  const rows = records(11, 96);
  const unlabelled = rows.map(({ features, key }) => ({ features, key: key! }));
  const labelOf = new Map(rows.map((r) => [r.key!, r.label!]));

  it('predicts at once, learns only when labels arrive (joined by key, in any order)', async () => {
    const m = model(6);
    const records$ = new Subject<StreamRecord>();
    const labels$ = new Subject<DelayedLabel>();
    const events: DelayedEvent[] = [];
    const done = new Promise<void>((resolve, reject) =>
      records$
        .pipe(batchBy({ size: 16, shape: [IN], keys: true }), testThenTrainDelayed(m, labels$, { ...fit(), learnBatchSize: 32 }))
        .subscribe({ next: (e) => events.push(e), error: reject, complete: resolve }),
    );
    for (const r of unlabelled.slice(0, 48)) records$.next(r);
    await sleep(20);
    const predictions = events.filter((e) => e.kind === 'prediction');
    assert.equal(predictions.length, 3);
    assert.equal(m.stepCount, 0, 'no label yet: nothing learnt');
    assert.deepEqual(keyColumn((predictions[0] as { predictions: Batch }).predictions)!.slice(0, 3), ['r0', 'r1', 'r2']);
    // Labels for 40 of them, newest first, plus 8 labels whose records have not arrived yet.
    for (const r of [...rows.slice(0, 40)].reverse()) labels$.next({ key: r.key!, label: labelOf.get(r.key!)! });
    for (const r of rows.slice(48, 56)) labels$.next({ key: r.key!, label: labelOf.get(r.key!)! });
    await sleep(20);
    const steps = () => events.filter((e): e is Extract<DelayedEvent, { kind: 'step' }> => e.kind === 'step');
    assert.equal(steps().length, 1, '40 joined → one step of 32, 8 waiting');
    assert.equal(steps()[0]!.joined, 32);
    for (const r of unlabelled.slice(48)) records$.next(r);
    records$.complete();
    for (const r of rows.slice(40, 48).concat(rows.slice(56))) labels$.next({ key: r.key!, label: labelOf.get(r.key!)! });
    labels$.complete();
    await done;
    assert.equal(steps().reduce((n, s) => n + s.joined, 0), 96, 'every example learnt exactly once');
    assert.equal(m.stepCount, 3);
    assert.equal(steps().at(-1)!.rolling.count, 96);
    assert.equal(steps().at(-1)!.expired, 0);
    m.dispose();
  });

  it('a full join buffer with the error policy fails with a message; dropOldest expires and counts', async () => {
    const m = model(7);
    const run = (join: BackpressurePolicy) => {
      const labels$ = new Subject<DelayedLabel>();
      return collect(from(unlabelled).pipe(batchBy({ size: 16, shape: [IN], keys: true }), testThenTrainDelayed(m, labels$.pipe(map((l) => l)), { ...fit(), join })));
    };
    await assert.rejects(run({ buffer: 20, onOverflow: 'error' }), /testThenTrainDelayed: 20 predictions without their label are waiting \(join buffer full\)/);
    // With dropOldest and labels that never come, the source completes: 76 evicted + 20 left waiting at the end expire.
    const labels$ = new Subject<DelayedLabel>();
    const events = collect(from(unlabelled).pipe(batchBy({ size: 16, shape: [IN], keys: true }), testThenTrainDelayed(m, labels$, { ...fit(), join: { buffer: 20, onOverflow: 'dropOldest' } })));
    labels$.complete();
    const all = await events;
    assert.equal(all.filter((e) => e.kind === 'prediction').length, 6);
    assert.equal(all.filter((e) => e.kind === 'step').length, 0);
    m.dispose();
  });
});

describe('observePull', () => {
  it('unsubscribing stops pulling', async () => {
    let pulled = 0;
    async function* numbers() {
      for (;;) {
        pulled++;
        yield pulled;
        await sleep(1);
      }
    }
    const seen: number[] = [];
    const s = observePull(numbers()).subscribe((x) => seen.push(x));
    await sleep(30);
    s.unsubscribe();
    const at = pulled;
    await sleep(30);
    assert.ok(pulled <= at + 1, 'no pulls after unsubscribe');
    assert.ok(seen.length > 3);
  });
});

// ------------------------------------------------------------------ helpers

const peers = new WeakMap<Server, Set<Socket>>();
function serve(onConnection: (socket: Socket) => void | Promise<void>): Promise<Server> {
  return new Promise((resolve) => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      void onConnection(socket);
    });
    peers.set(server, sockets);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
const port = (server: Server) => (server.address() as AddressInfo).port;
async function close(server: Server): Promise<void> {
  for (const socket of peers.get(server) ?? []) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await sleep(5); // socket handles close on the next turn
}

describe('process hygiene', () => {
  it('no socket, server or timer is left behind by the tests above', async () => {
    await sleep(10);
    const left = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap' || r === 'Timeout' || r === 'FSReqCallback' || r === 'FileHandle');
    assert.deepEqual(left, [], `left: ${process.getActiveResourcesInfo().join(', ')}`);
  });
});
