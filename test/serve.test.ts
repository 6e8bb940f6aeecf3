/**
 * The prediction server on loopback: dynamic batching (requests from different clients in one
 * batch, each answered with its own rows), JSON and Arrow bodies, overload (503 at once), malformed
 * bodies (400 with the reason, the server keeps serving), body limits, and hot reload from a
 * checkpoint directory while requests keep arriving. No test depends on wall-clock timing: batches
 * are closed by row count, and waits are for observable events (a reload, a queue length).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, Agent } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { firstValueFrom, filter, from, lastValueFrom, of, take, timeout } from 'rxjs';
import { tableFromIPC, tableToIPC, Table } from 'apache-arrow';
import { adam, batchFromArrays, batchesFromArrays, dense, relu, saveModel, sequential, serve, softmaxCrossEntropy, type Model } from '../src/index.ts';

const WIDTH = 4;
const makeModel = (seed = 1) => sequential([dense(8), relu(), dense(3)], { inputShape: [WIDTH], seed, name: 'served' });
const rowsOf = (n: number, offset: number) => Array.from({ length: n }, (_, r) => Array.from({ length: WIDTH }, (_, c) => ((offset + r) * 7 + c * 3) % 11 / 10 - 0.5));

/** One HTTP exchange on its own connection (a separate client). */
function post(url: string, body: string | Uint8Array, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const agent = new Agent({ keepAlive: false });
    const req = httpRequest(`${url}/predict`, { method: 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const postJson = async (url: string, value: unknown) => {
  const res = await post(url, JSON.stringify(value));
  return { status: res.status, json: JSON.parse(res.body.toString()) as Record<string, unknown> };
};
const getJson = async (url: string) => (await fetch(url)).json() as Promise<Record<string, unknown>>;

async function predictAlone(model: Model, rows: number[][]): Promise<Float32Array> {
  const out = await lastValueFrom(of(batchFromArrays({ features: Float32Array.from(rows.flat()), shape: [WIDTH] })).pipe(model.predict()));
  return out.getChild('output')!.data[0]!.children[0]!.values as Float32Array;
}

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  assert.ok(line, `metric ${name} present`);
  return Number(line.split(' ').at(-1));
}

test('requests from different clients are coalesced into one batch and each gets its own rows back', async () => {
  const model = makeModel();
  // The batch closes on row count (1 + 2 + 3 = maxBatch), never on the clock.
  const server = await serve(model, { port: 0, maxBatch: 6, maxWaitMs: 600_000 });
  try {
    const requests = [rowsOf(1, 0), rowsOf(2, 10), rowsOf(3, 20)];
    const answers = await Promise.all(requests.map((rows) => postJson(server.url, { instances: rows })));
    for (const [i, { status, json }] of answers.entries()) {
      assert.equal(status, 200);
      const expected = await predictAlone(model, requests[i]!);
      const outputs = json.outputs as number[][];
      assert.equal(outputs.length, requests[i]!.length, `client ${i} gets ${requests[i]!.length} rows`);
      outputs.flat().forEach((v, j) => assert.ok(Math.abs(v - expected[j]!) < 1e-5, `client ${i} value ${j}: ${v} vs ${expected[j]}`));
      assert.equal((json.predictions as number[]).length, requests[i]!.length);
    }
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.equal(metricValue(metrics, 'rxgrad_batch_rows_count'), 1, 'one model batch');
    assert.equal(metricValue(metrics, 'rxgrad_batch_rows_sum'), 6);
    assert.equal(metricValue(metrics, 'rxgrad_batch_requests_sum'), 3, 'three requests in it');
    assert.equal(metricValue(metrics, 'rxgrad_requests_total{status="200"}'), 3);
    assert.match(metrics, /rxgrad_request_duration_seconds_bucket/);
  } finally {
    await server.close();
    model.dispose();
  }
});

test('Arrow IPC in, Arrow IPC out; a single JSON example gets the single-example answer', async () => {
  const model = makeModel();
  const server = await serve(model, { port: 0, maxWaitMs: 0 });
  try {
    const rows = rowsOf(5, 3);
    const body = tableToIPC(new Table(batchFromArrays({ features: Float32Array.from(rows.flat()), shape: [WIDTH] })), 'stream');
    const res = await post(server.url, body, { 'content-type': 'application/vnd.apache.arrow.stream' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/vnd.apache.arrow.stream');
    const table = tableFromIPC(res.body);
    assert.equal(table.numRows, 5);
    const expected = await predictAlone(model, rows);
    const got = (table.getChild('output')!.data[0]!.children[0]!.values as Float32Array).subarray(0, 5 * 3);
    got.forEach((v, j) => assert.ok(Math.abs(v - expected[j]!) < 1e-5));
    const single = await postJson(server.url, { features: rows[0] });
    assert.equal(single.status, 200);
    assert.equal(typeof single.json.prediction, 'number');
    assert.equal((single.json.output as number[]).length, 3);
    const health = await getJson(`${server.url}/health`);
    assert.deepEqual([health.status, health.inputShape], ['ok', [WIDTH]]);
  } finally {
    await server.close();
    model.dispose();
  }
});

test('malformed bodies answer 400 with the reason, oversized ones 413, and the server keeps serving', async () => {
  const model = makeModel();
  const server = await serve(model, { port: 0, maxWaitMs: 0, maxBatch: 8, maxBodyBytes: 4096 });
  try {
    const cases: [string | Uint8Array, Record<string, string> | undefined, number, RegExp][] = [
      ['{"instances": [[1, 2, 3', undefined, 400, /not valid JSON/],
      ['[1, 2, 3, 4]', undefined, 400, /JSON object/],
      ['{"instances": [[1, 2, 3]]}', undefined, 400, /instances\[0\] has 3 values; the model takes 4/],
      ['{"instances": [[1, 2, "x", 4]]}', undefined, 400, /instances\[0\]\[2\] is "x"/],
      ['{"instances": []}', undefined, 400, /empty/],
      ['{"rows": [[1, 2, 3, 4]]}', undefined, 400, /"instances".*"features"/],
      [JSON.stringify({ instances: rowsOf(9, 0) }), undefined, 413, /9 instances in one request; the limit is 8/],
      [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 1, 2, 3]), { 'content-type': 'application/vnd.apache.arrow.stream' }, 400, /Arrow IPC/],
      ['a,b\n1,2', { 'content-type': 'text/csv' }, 400, /not valid JSON/],
      [JSON.stringify({ instances: Array.from({ length: 200 }, () => [0.123456, 0.123456, 0.123456, 0.123456]) }), undefined, 413, /exceeds the limit of 4096/],
    ];
    for (const [body, headers, status, reason] of cases) {
      const res = await post(server.url, body, headers);
      assert.equal(res.status, status, `${String(body).slice(0, 40)} → ${status}`);
      assert.match((JSON.parse(res.body.toString()) as { error: string }).error, reason);
      const ok = await postJson(server.url, { instances: rowsOf(2, 1) });
      assert.equal(ok.status, 200, 'still serving after a bad request');
    }
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.equal(metricValue(metrics, 'rxgrad_requests_total{status="400"}'), 8);
  } finally {
    await server.close();
    model.dispose();
  }
});

test('overload: beyond maxQueue waiting requests, a new request gets 503 at once; the queued ones are answered', async () => {
  const model = makeModel();
  // Nothing closes a batch (100 rows, 10 min) until close(): two requests stay queued.
  const server = await serve(model, { port: 0, maxQueue: 2, maxBatch: 100, maxWaitMs: 600_000 });
  let closed = false;
  try {
    const queued = [postJson(server.url, { instances: rowsOf(1, 0) }), postJson(server.url, { instances: rowsOf(1, 1) })];
    for (let i = 0; (await getJson(`${server.url}/health`)).queue !== 2; i++) {
      assert.ok(i < 1000, 'the two requests are queued');
      await sleep(5);
    }
    const rejected = await post(server.url, JSON.stringify({ instances: rowsOf(1, 2) }));
    assert.equal(rejected.status, 503);
    assert.equal(rejected.headers['retry-after'], '1');
    assert.match((JSON.parse(rejected.body.toString()) as { error: string }).error, /overloaded: 2 requests already queued/);
    await server.close(); // runs what is queued
    closed = true;
    for (const answer of await Promise.all(queued)) assert.equal(answer.status, 200);
  } finally {
    if (!closed) await server.close();
    model.dispose();
  }
});

test('hot reload: a new checkpoint committed to the directory is served, with no failed request meanwhile', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rxgrad-serve-'));
  const trainer = makeModel(3);
  const loss = softmaxCrossEntropy();
  const optimizer = adam({ learningRate: 0.05 });
  const features = Float32Array.from(rowsOf(64, 0).flat());
  const labels = Int32Array.from({ length: 64 }, (_, i) => i % 3);
  const trainSteps = (n: number) => lastValueFrom(from(batchesFromArrays({ features, shape: [WIDTH], labels }, 64)).pipe(take(1), trainer.fit({ loss, optimizer })).pipe(take(n)));
  await trainSteps(1);
  await saveModel(trainer, dir);
  const server = await serve(dir, { port: 0, maxWaitMs: 1, pollMs: 50 });
  let stop = false;
  const statuses: number[] = [];
  const load = (async () => {
    while (!stop) statuses.push((await postJson(server.url, { instances: rowsOf(3, statuses.length % 5) })).status);
  })();
  try {
    assert.equal((await getJson(`${server.url}/health`)).step, 1);
    for (let round = 2; round <= 4; round++) {
      await trainSteps(1);
      const reloaded = firstValueFrom(server.reloads$.pipe(filter((e) => e.kind === 'loaded' && e.step === round), timeout(20_000)));
      await saveModel(trainer, dir);
      await reloaded;
      const health = await getJson(`${server.url}/health`);
      assert.equal(health.step, round);
      const answer = await postJson(server.url, { instances: rowsOf(2, 7) });
      assert.equal(answer.json.step, round);
      const expected = await predictAlone(trainer, rowsOf(2, 7));
      (answer.json.outputs as number[][]).flat().forEach((v, j) => assert.ok(Math.abs(v - expected[j]!) < 1e-5, 'the new weights answer'));
    }
    stop = true;
    await load;
    assert.ok(statuses.length > 0);
    assert.deepEqual([...new Set(statuses)], [200], 'no request failed across the reloads');
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.equal(metricValue(metrics, 'rxgrad_model_step'), 4);
    assert.equal(metricValue(metrics, 'rxgrad_reloads_total{result="loaded"}'), 3);
  } finally {
    stop = true;
    await load;
    await server.close();
    trainer.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
