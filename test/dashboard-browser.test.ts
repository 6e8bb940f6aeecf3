/**
 * The dashboard page in a real headless Chromium (Debian `chromium`, driven by playwright-core):
 * it loads without console errors, its charts draw, values change as steps arrive, the confusion
 * matrix's counts sum to the examples evaluated, a page opened mid-run shows the earlier history,
 * and the search's trial table and the online panels appear. Screenshots (1280×800 and a phone)
 * go to test-output/. Steps are pushed one batch at a time, so nothing depends on timing.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { from, Subject } from 'rxjs';
import { batchesFromArrays, type Batch } from '../src/batch.ts';
import { loadEmbeddedMnist } from '../src/data/index.ts';
import { createDashboard, dashboard, type TrialEvent } from '../src/dashboard/index.ts';
import { adam, closeDefaultEngine, dense, relu, sequential, softmaxCrossEntropy, streamCounters, testThenTrain } from '../src/index.ts';
import { firstExamples } from '../examples/common.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';

const OUTPUT = new URL('../test-output/', import.meta.url);
const WAIT = { timeout: 30_000 };
const missing = chromiumMissing();
if (missing) console.log(`# dashboard browser tests skipped: ${missing}`);

const { train, test } = loadEmbeddedMnist();
const validation = firstExamples(test, 300);

/** Console errors and uncaught page errors of a page, collected from its start. */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
  page.on('pageerror', (error) => errors.push(error.message));
  return errors;
}

/** How many uPlot canvases of a panel have at least one painted pixel. */
async function paintedCanvases(page: Page, selector: string): Promise<number> {
  return page.$$eval(selector, (canvases) =>
    (canvases as HTMLCanvasElement[]).filter((c) => {
      if (c.width === 0 || c.height === 0) return false;
      const pixels = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
      return false;
    }).length,
  );
}

/** The page's own copy of a series: [first x, last x, points, last y]. */
const pageSeries = (page: Page, key: string) =>
  page.evaluate((k) => {
    const s = (window as unknown as { __dashboard: { series: Map<string, { x: number[]; y: (number | null)[] }> } }).__dashboard.series.get(k);
    return s ? { first: s.x[0]!, last: s.x.at(-1)!, points: s.x.length, lastY: s.y.at(-1) ?? null } : null;
  }, key);

const confusionCells = (page: Page) => page.$$eval('#confusion td.count', (cells) => cells.map((c) => Number(c.textContent)));

describe('dashboard page in headless Chromium', { skip: missing ?? false, timeout: 240_000 }, () => {
  let browser: { context: BrowserContext; close: () => Promise<void> };
  before(async () => {
    mkdirSync(OUTPUT, { recursive: true });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await closeDefaultEngine();
  });

  it('follows a fit stream live: charts draw, values change per step, confusion counts sum to the examples, a page opened mid-run has the history', async () => {
    const model = sequential([dense(32), relu(), dense(10)], { inputShape: [784], seed: 3 });
    const board = await createDashboard({
      port: 0, model, validation, evaluateEverySteps: 20, normsIntervalMs: 0, histogramIntervalMs: 0, flushIntervalMs: 50, title: 'browser test',
    });
    const batches = [...batchesFromArrays(firstExamples(train, 60 * 32), 32)];
    const input = new Subject<Batch>();
    let steps = 0;
    let waiting: { target: number; resolve: () => void } | null = null;
    const run = input.pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 2e-3 }), metrics: ['accuracy'] }), board.watch()).subscribe(() => {
      steps++;
      if (waiting && steps >= waiting.target) waiting.resolve();
    });
    const pushSteps = async (n: number) => {
      const target = steps + n;
      const done = new Promise<void>((resolve) => (waiting = { target, resolve }));
      for (let i = 0; i < n; i++) input.next(batches[target - n + i]!);
      await done;
      await board.idle();
    };
    const stepShown = (page: Page, n: number) => page.waitForFunction((k) => Number(document.getElementById('status-step')!.textContent) >= k, n, WAIT);
    try {
      const first = await browser.context.newPage();
      await first.setViewportSize({ width: 1280, height: 800 });
      const firstErrors = watchErrors(first);
      await first.goto(board.url);
      await first.waitForFunction(() => (window as unknown as { __dashboard: { counters: { snapshots: number } } }).__dashboard.counters.snapshots > 0, null, WAIT);

      await pushSteps(20);
      await stepShown(first, 20);
      await first.waitForSelector('#panel-loss .uplot canvas', WAIT);
      await first.waitForFunction(() => document.querySelectorAll('#confusion td.count').length === 100, null, WAIT);
      const early = await pageSeries(first, 'loss');
      assert.equal(early?.last, 20);
      assert.ok((await paintedCanvases(first, '#panel-loss canvas')) > 0, 'the loss chart painted nothing');
      assert.ok((await paintedCanvases(first, '#panel-metrics canvas')) > 0, 'the accuracy chart painted nothing');
      assert.ok((await paintedCanvases(first, '#histograms canvas')) >= 2, 'the weight histograms painted nothing');
      await first.waitForSelector('#panel-gradientNorm .uplot', WAIT);
      let cells = await confusionCells(first);
      assert.equal(cells.reduce((a, b) => a + b, 0), validation.length, 'confusion counts must sum to the validation examples');
      assert.equal(await first.$eval('#confusion', (t) => Number((t as HTMLElement).dataset['examples'])), validation.length);

      // Values change as steps arrive.
      await pushSteps(20);
      await stepShown(first, 40);
      await first.waitForFunction(() => {
        const loss = (window as unknown as { __dashboard: { series: Map<string, { x: number[] }> } }).__dashboard.series.get('loss');
        return loss !== undefined && loss.x.at(-1) === 40;
      }, null, WAIT);
      const later = await pageSeries(first, 'loss');
      assert.ok(later!.points > early!.points, `the loss series did not grow (${early!.points} → ${later!.points})`);
      assert.equal(await first.evaluate(() => (window as unknown as { __dashboard: { charts: Map<string, { plot: { data: number[][] } }> } }).__dashboard.charts.get('loss')!.plot.data[0]!.at(-1)), 40);

      // A page opened mid-run gets the history so far (from step 1), and both evaluations.
      const second = await browser.context.newPage();
      await second.setViewportSize({ width: 390, height: 844 });
      const secondErrors = watchErrors(second);
      await second.goto(board.url);
      await stepShown(second, 40);
      await second.waitForFunction(() => document.querySelectorAll('#evaluation-select option').length === 2, null, WAIT);
      const history = await pageSeries(second, 'loss');
      assert.equal(history?.first, 1, 'the mid-run page must start at step 1');
      assert.equal(history?.points, 40);
      assert.equal((await board.diagnostics()).viewers, 2);

      await pushSteps(20);
      await stepShown(first, 60);
      await stepShown(second, 60);
      await first.waitForFunction(() => document.querySelectorAll('#evaluation-select option').length === 3, null, WAIT);
      cells = await confusionCells(first);
      assert.equal(cells.reduce((a, b) => a + b, 0), validation.length);
      input.complete();
      await first.waitForFunction(() => document.getElementById('state')!.textContent!.startsWith('completed'), null, WAIT);

      await first.screenshot({ path: new URL('dashboard-fit-1280x800.png', OUTPUT).pathname });
      await first.screenshot({ path: new URL('dashboard-fit-full.png', OUTPUT).pathname, fullPage: true });
      await second.screenshot({ path: new URL('dashboard-fit-phone.png', OUTPUT).pathname });
      await second.screenshot({ path: new URL('dashboard-fit-phone-full.png', OUTPUT).pathname, fullPage: true });
      await second.locator('#panel-confusion').scrollIntoViewIfNeeded();
      await second.screenshot({ path: new URL('dashboard-fit-phone-confusion.png', OUTPUT).pathname });
      assert.deepEqual(firstErrors, []);
      assert.deepEqual(secondErrors, []);
      await first.close();
      await second.close();
    } finally {
      run.unsubscribe();
      await board.close();
      model.dispose();
    }
  });

  it("shows train's epochs: a confusion matrix per evaluation whose counts sum to the epoch's validation examples", async () => {
    const model = sequential([dense(32), relu(), dense(10)], { inputShape: [784], seed: 4 });
    const epochs = 2;
    const board = await dashboard(
      model.train(firstExamples(train, 640), { epochs, batchSize: 32, loss: softmaxCrossEntropy(), optimizer: adam(), metrics: ['accuracy'], validation }),
      { port: 0, model, validation, histogramIntervalMs: 0 },
    );
    try {
      await board.done;
      const page = await browser.context.newPage();
      await page.setViewportSize({ width: 1280, height: 800 });
      const errors = watchErrors(page);
      await page.goto(board.url);
      await page.waitForFunction((n) => document.querySelectorAll('#evaluation-select option').length === n, epochs, WAIT);
      await page.waitForSelector('#panel-loss .uplot canvas', WAIT);
      const state = (await (await fetch(`${board.url}state`)).json()) as { evaluations: { epoch: number; examples: number; confusion: { examples: number } }[] };
      assert.deepEqual(state.evaluations.map((e) => e.epoch), [1, 2]);
      for (const e of state.evaluations) assert.equal(e.confusion.examples, e.examples, 'matrix and evaluation cover the same examples');
      const cells = await confusionCells(page);
      assert.equal(cells.reduce((a, b) => a + b, 0), state.evaluations.at(-1)!.examples);
      assert.match(await page.$eval('#state', (e) => e.textContent!), /completed · train/);
      assert.ok((await pageSeries(page, 'validationAccuracy'))!.points === epochs);
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      await board.close();
      model.dispose();
    }
  });

  it('shows a test-then-train stream (rolling metrics, counters) and a search trial table', async () => {
    const model = sequential([dense(16), relu(), dense(10)], { inputShape: [784], seed: 5 });
    const counters = streamCounters();
    counters.dropped = 3;
    const online = await dashboard(
      from(batchesFromArrays(firstExamples(train, 320), 32)).pipe(testThenTrain(model, { loss: softmaxCrossEntropy(), optimizer: adam(), window: 64, counters })),
      // A tiny history, so the page gets downsampled buckets (min..max shaded around the mean).
      { port: 0, model, recent: 4, buckets: 2 },
    );
    const trials = new Subject<TrialEvent | { kind: 'done'; table: object }>();
    const search = await dashboard(trials, { port: 0, title: 'search' });
    try {
      await online.done;
      const page = await browser.context.newPage();
      await page.setViewportSize({ width: 1280, height: 800 });
      const errors = watchErrors(page);
      await page.goto(online.url);
      await page.waitForSelector('#panel-rolling .uplot canvas', WAIT);
      await page.waitForSelector('#panel-counts .uplot canvas', WAIT);
      const rolling = await pageSeries(page, 'rollingAccuracy');
      assert.equal(rolling?.last, 10);
      assert.ok(rolling!.points < 10 && rolling!.first > 1, `10 steps should arrive as buckets + 4 recent points, got ${JSON.stringify(rolling)}`);
      assert.ok(await page.evaluate(() => (window as unknown as { __dashboard: { series: Map<string, { banded: boolean }> } }).__dashboard.series.get('rollingAccuracy')!.banded));
      await page.screenshot({ path: new URL('dashboard-online-1280x800.png', OUTPUT).pathname });
      assert.equal((await pageSeries(page, 'count:dropped'))?.lastY, 3);

      await page.goto(search.url);
      for (let t = 0; t < 6; t++) trials.next({ kind: 'trial', trial: t, config: { learningRate: 10 ** -(t % 3 + 2), units: 16 * (t + 1) }, status: 'running', budget: 1 });
      for (let t = 0; t < 6; t++) trials.next({ kind: 'trial', trial: t, config: { learningRate: 10 ** -(t % 3 + 2), units: 16 * (t + 1) }, status: 'reported', budget: 1, metric: 0.5 + t / 20, rung: 0 });
      trials.next({ kind: 'trial', trial: 5, config: { learningRate: 1e-4, units: 96 }, status: 'promoted', budget: 3, metric: 0.8, rung: 1 });
      trials.next({ kind: 'trial', trial: 0, config: { learningRate: 1e-2, units: 16 }, status: 'stopped', budget: 1, metric: 0.5, rung: 0 });
      trials.next({ kind: 'trial', trial: 1, config: { learningRate: 1e-3, units: 32 }, status: 'failed', budget: 1, error: 'loss became NaN' });
      await page.waitForFunction(() => document.querySelectorAll('#trials tr').length === 7, null, WAIT);
      await page.waitForFunction(() => document.querySelector('#trials')!.textContent!.includes('loss became NaN'), null, WAIT);
      // issue 15's search ends with { kind: 'done', table }: its best trial is named and highlighted.
      trials.next({ kind: 'done', table: { direction: 'maximize', unitsUsed: 9, rows: [], best: { trial: 5, config: {}, status: 'completed', budget: 3, metric: 0.8 } } });
      await page.waitForFunction(() => document.getElementById('trials-caption')!.textContent!.includes('best: trial 5 (0.8, higher is better)'), null, WAIT);
      assert.equal(await page.$eval('#trials tr.best td', (td) => td.textContent), '5');
      assert.ok((await paintedCanvases(page, '#trials-chart')) === 1, 'the trial chart painted nothing');
      await page.screenshot({ path: new URL('dashboard-search-1280x800.png', OUTPUT).pathname, fullPage: true });
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      trials.complete();
      await online.close();
      await search.close();
      model.dispose();
    }
  });
});
