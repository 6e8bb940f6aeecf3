/**
 * The dashboard without a browser: bounded downsampled history, the confusion-matrix helper, the
 * server's viewers (disconnects mid-stream and viewers that never read leave no timers, listeners
 * or buffers), loopback binding and its warning, and clear errors for bad options.
 */
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, Subject, toArray } from 'rxjs';
import { batchesFromArrays } from '../src/batch.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';
import { confusionMatrix, createDashboard, dashboard } from '../src/dashboard/index.ts';
import { SeriesHistory } from '../src/dashboard/history.ts';
import { DashboardState, type SeriesMeta } from '../src/dashboard/state.ts';
import { adam, closeDefaultEngine, dense, relu, sequential, softmaxCrossEntropy } from '../src/index.ts';
import { firstExamples } from '../examples/common.ts';

after(() => closeDefaultEngine());

describe('SeriesHistory', () => {
  it('keeps the recent points exactly and older ones as buckets whose mean, min and max are those of the points they cover', () => {
    const h = new SeriesHistory({ recent: 10, buckets: 4 });
    const ys = Array.from({ length: 103 }, (_, i) => Math.sin(i) * 10 + i);
    ys.forEach((y, i) => h.push(i, y));
    const data = h.toJSON();
    assert.equal(data.total, 103);
    assert.deepEqual(data.x, Array.from({ length: 10 }, (_, i) => 93 + i));
    assert.deepEqual(data.y, ys.slice(93));
    // 93 evicted points; buckets hold whole spans of `span` points from the oldest.
    let start = 0;
    for (let b = 0; b < data.bx.length; b++) {
      const covered = ys.slice(start, start + data.span);
      assert.ok(Math.abs(data.by[b]! - covered.reduce((a, c) => a + c, 0) / covered.length) < 1e-9, `bucket ${b} mean`);
      assert.equal(data.blo[b], Math.min(...covered));
      assert.equal(data.bhi[b], Math.max(...covered));
      start += data.span;
    }
    assert.ok(data.bx.length <= 4 && data.bx.length >= 2);
  });

  it('holds a fixed amount of memory for 1,000,000 points; non-finite values become gaps, not NaN in buckets', () => {
    const h = new SeriesHistory({ recent: 100, buckets: 50 });
    const bytes = h.bytes;
    for (let i = 0; i < 1_000_000; i++) h.push(i, i % 1000 === 0 ? NaN : 1);
    assert.equal(h.bytes, bytes);
    const data = h.toJSON();
    assert.ok(data.bx.length <= 50 && data.x.length === 100);
    assert.ok(data.by.every((v) => v === 1), 'bucket means skip NaN');
    assert.ok(JSON.stringify(data).length < 20_000);
  });

  it('rejects bad limits', () => {
    assert.throws(() => new SeriesHistory({ buckets: 3 }), /buckets must be an even integer/);
    assert.throws(() => new SeriesHistory({ recent: 0 }), /recent must be a positive integer/);
  });
});

describe('DashboardState deltas', () => {
  const meta: SeriesMeta = { key: 'loss', panel: 'loss', label: 'loss', axis: 'step' };
  it('collects nothing without viewers; deltas carry the index of their first point; a flood becomes one whole-series replace', () => {
    const state = new DashboardState({ recent: 50, buckets: 10 });
    for (let s = 1; s <= 20; s++) state.point(meta, s, 1 / s);
    assert.equal(state.takeDelta(), null, 'no viewer, no delta');
    state.tracking = true;
    for (let s = 21; s <= 30; s++) state.point(meta, s, 1 / s);
    const delta = state.takeDelta() as { series: { key: string; from: number; x: number[] }[] };
    assert.deepEqual(delta.series.map((d) => [d.key, d.from, d.x.length]), [['loss', 20, 10]]);
    for (let s = 31; s <= 200; s++) state.point(meta, s, 1 / s);
    assert.ok(state.pendingPoints <= 50, 'pending points stay bounded by the recent window');
    const flood = state.takeDelta() as { series: { replace?: { total: number; x: number[] } }[] };
    assert.equal(flood.series[0]!.replace?.total, 200);
    assert.equal(flood.series[0]!.replace?.x.at(-1), 200);
    state.tracking = false;
    state.clearDelta();
    assert.equal(state.pendingPoints, 0);
  });
});

describe('confusionMatrix', () => {
  const { train, test } = loadEmbeddedMnist();
  it('counts (true, predicted) pairs exactly as a loop over predict does, over the first maxExamples rows', async () => {
    const model = sequential([dense(16), relu(), dense(10)], { inputShape: [784], seed: 2 });
    await lastValueFrom(from(batchesFromArrays(firstExamples(train, 512), 64)).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam() }), toArray()));
    const data = firstExamples(test, 333);
    const matrix = await confusionMatrix(model, data, { maxExamples: 300, batchSize: 64 });
    const expected = Array.from({ length: 10 }, () => new Array<number>(10).fill(0));
    const outputs = await lastValueFrom(from(batchesFromArrays(firstExamples(test, 300), 100)).pipe(model.predict(), toArray()));
    let row = 0;
    for (const out of outputs) for (const p of out.getChild('prediction')!.toArray() as Int32Array) expected[data.labels[row++]!]![p]!++;
    assert.deepEqual(matrix.counts, expected);
    assert.equal(matrix.examples, 300);
    assert.equal(matrix.correct, expected.reduce((s, r, i) => s + r[i]!, 0));
    // Each row holds exactly the examples of its class.
    for (let c = 0; c < 10; c++) assert.equal(matrix.counts[c]!.reduce((a, b) => a + b, 0), data.labels.subarray(0, 300).filter((l) => l === c).length);
    model.dispose();
  });

  it('names what is wrong with the model or the data', async () => {
    const regression = sequential([dense(1)], { inputShape: [784], seed: 1 });
    await assert.rejects(confusionMatrix(regression, firstExamples(test, 10)), /one score per class/);
    const model = sequential([dense(10)], { inputShape: [784], seed: 1 });
    const small = firstExamples(test, 10);
    await assert.rejects(confusionMatrix(model, { features: small.features, shape: small.shape }), /one integer label per row/);
    await assert.rejects(confusionMatrix(model, { ...small, labels: Int32Array.from(small.labels, () => 12) }), /label 12 at row 0 is not a class in \[0, 10\)/);
    await assert.rejects(confusionMatrix(model, small, { maxExamples: 0 }), /maxExamples must be a positive integer/);
    regression.dispose();
    model.dispose();
  });
});

/** An SSE connection read as text; `pause` stops reading (a viewer that never reads). */
function openEvents(url: string, options: { read: boolean }): Promise<{ response: IncomingMessage; text: () => string; destroy: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}events`, (response) => {
      let text = '';
      if (options.read) response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      else response.pause();
      resolve({ response, text: () => text, destroy: () => req.destroy() });
    });
    req.on('error', (error) => (options.read ? reject(error) : undefined));
    req.end();
  });
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (bounded) until `condition` holds, checking every few ms. */
async function until(condition: () => boolean | Promise<boolean>, what: string, tries = 2000): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await condition()) return;
    await tick(5);
  }
  assert.fail(`gave up waiting for ${what}`);
}

describe('dashboard server', () => {
  it('viewers that disconnect mid-stream or never read leave no timers, listeners or buffers behind', async () => {
    const before = timers();
    const board = await createDashboard({ port: 0, flushIntervalMs: 5, maxViewerBufferBytes: 256 * 1024, warn: () => assert.fail('no warning on loopback') });
    const withBoard = timers();
    assert.equal(withBoard, before + 1, 'the board samples event-loop delay on one timer');
    assert.equal((await board.diagnostics()).flushTimer, false, 'no flush timer without viewers');
    const steps = new Subject<object>();
    steps.pipe(board.watch()).subscribe();
    let step = 0;
    const push = (n: number) => {
      for (let i = 0; i < n; i++) {
        step++;
        steps.next({ step, loss: 1 / step, accuracy: step % 100 / 100, examples: step * 32, batchSize: 32, dropped: step, skipped: step >> 1, learningRate: 1e-3 });
      }
    };
    push(100);
    const reader = await openEvents(board.url, { read: true });
    const quitter = await openEvents(board.url, { read: true });
    const stalled = await openEvents(board.url, { read: false });
    await until(async () => (await board.diagnostics()).viewers === 3, '3 viewers');
    assert.equal(timers(), withBoard + 1, 'one flush timer for all viewers');
    await until(() => reader.text().includes('event: snapshot'), 'a snapshot');
    push(50);
    await until(() => reader.text().includes('event: update'), 'an update');
    quitter.destroy();
    await until(async () => (await board.diagnostics()).viewers === 2, 'the quitter to be removed');
    // The stalled viewer's unsent bytes grow until it is cut off; the reader keeps up.
    for (let round = 0; round < 400 && (await board.diagnostics()).droppedViewers === 0; round++) {
      push(2000);
      await tick(10);
    }
    const d = await board.diagnostics();
    assert.equal(d.droppedViewers, 1, 'the viewer that never reads is disconnected');
    assert.equal(d.viewers, 1);
    assert.ok(reader.text().length > 1_000_000, 'the reading viewer got the updates');
    reader.destroy();
    stalled.destroy();
    await until(async () => {
      const x = await board.diagnostics();
      return x.viewers === 0 && x.connections === 0;
    }, 'all connections to close');
    const last = await board.diagnostics();
    assert.equal(last.flushTimer, false);
    assert.equal(last.pendingPoints, 0, 'nothing buffered for nobody');
    assert.equal(timers(), withBoard, 'no timer left by viewers');
    await board.close();
    assert.equal(timers(), before, 'close leaves no timer');
  });

  it('a page opened later gets the history; the state is served as JSON; unknown events are counted, not fatal', async () => {
    const events = new Subject<unknown>();
    const board = await dashboard(events, { port: 0 });
    for (let s = 1; s <= 30; s++) events.next({ step: s, loss: 2 / s, examples: 8 * s, batchSize: 8, learningRate: 0.01 / s });
    events.next({ hello: 'world' });
    events.next({ kind: 'trial', trial: 1, config: { lr: 0.1 }, status: 'running', budget: 1 });
    events.complete();
    await board.done;
    const state = (await (await fetch(`${board.url}state`)).json()) as { status: { state: string; unknownEvents: number; unknownExample: string }; series: { meta: { key: string }; data: { x: number[]; total: number } }[]; trials: unknown[] };
    assert.equal(state.status.state, 'completed');
    assert.equal(state.status.unknownEvents, 1);
    assert.equal(state.status.unknownExample, '{ hello }');
    const loss = state.series.find((s) => s.meta.key === 'loss')!;
    assert.deepEqual(loss.data.x, Array.from({ length: 30 }, (_, i) => i + 1));
    assert.ok(state.series.some((s) => s.meta.key === 'learningRate'));
    assert.equal(state.trials.length, 1);
    const page = await fetch(board.url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /uPlot\.iife\.min\.js/);
    const uplot = await fetch(`${board.url}uPlot.iife.min.js`);
    assert.equal(uplot.status, 200);
    assert.ok((await uplot.text()).length > 10_000, 'uPlot is served from the package');
    assert.equal((await fetch(`${board.url}nothing`)).status, 404);
    await board.close();
  });

  it('close() unsubscribes from the source it watches and settles done; a failing source rejects done and shows failed', async () => {
    const events = new Subject<unknown>();
    const board = await dashboard(events, { port: 0 });
    assert.equal(events.observed, true);
    await board.close();
    assert.equal(events.observed, false);
    await board.done;
    const failing = new Subject<unknown>();
    const failed = await dashboard(failing, { port: 0 });
    failing.error(new Error('source broke'));
    await assert.rejects(failed.done, /source broke/);
    const state = (await (await fetch(`${failed.url}state`)).json()) as { status: { state: string; error: string } };
    assert.deepEqual([state.status.state, state.status.error], ['failed', 'source broke']);
    await failed.close();
  });

  it('binds to loopback by default, warns when asked to listen elsewhere, refuses foreign Host headers on loopback', async () => {
    const board = await createDashboard({ port: 0 });
    assert.match(board.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const refused = await new Promise<number>((resolve, reject) => {
      const req = request(board.url, { headers: { Host: 'evil.example:80' } }, (r) => {
        r.resume();
        resolve(r.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(refused, 403);
    await board.close();
    const warnings: string[] = [];
    const open = await createDashboard({ port: 0, host: '0.0.0.0', warn: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /listening on 0\.0\.0\.0:\d+, reachable from other machines/);
    await open.close();
  });

  it('bad options and a taken port fail with clear errors and leave nothing running', async () => {
    await assert.rejects(createDashboard({ port: 70000 }), /port must be an integer in \[0, 65535\], got 70000/);
    const first = await createDashboard({ port: 0 });
    await assert.rejects(createDashboard({ port: first.port }), new RegExp(`listening on 127\\.0\\.0\\.1:${first.port} is in use`));
    await first.close();
    const { test } = loadEmbeddedMnist();
    await assert.rejects(createDashboard({ port: 0, validation: firstExamples(test, 10) }), /need the model/);
  });
});
