import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import {
  adam, batchFromColumns, BadRecordError, biasedMatrixFactorization, createEngine, dense, fitBiases, floatColumn, idEmbedding, input, interactionBatches,
  layerFromConfig, loadModel, saveModel, meanSquaredError, MovieLensFormatError, neuralRecommender, parallel, parseMovieLens, pullThrough, rankingMetrics,
  ratingBatches, readMovieLens, Recommender, regressionErrors, relu, sequential, sgd, streamCounters, syntheticRatings, testThenTrain, truncatedSvd,
  bias, dot, embedding, type Batch, type Model,
} from '../src/index.ts';

// Bitwise resume needs one fixed reduction order: a single thread.
const engine = createEngine({ threads: 1 });
let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rxgrad-recommender-'));
});
after(async () => {
  await engine.close();
  await rm(root, { recursive: true, force: true });
});

const data = syntheticRatings({ users: 120, items: 200, ratings: 24_000, rank: 4, noise: 0.3, seed: 3 });
const fit = () => ({ loss: meanSquaredError(), optimizer: adam({ learningRate: 0.01, lazy: true }) });
const mf = (seed = 1) => biasedMatrixFactorization({ maxUsers: 120, maxItems: 200, factors: 8, seed, engine });
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function progressive(model: Model, start: number, end: number, size = 256) {
  return lastValueFrom(from(interactionBatches(data, size, start, end)).pipe(testThenTrain(model, { ...fit(), window: 5000 }), toArray()));
}

describe('models with several inputs', () => {
  it('parallel branches reading two Int32 columns through input(): summary, fit, predict (columns passed through), evaluate, checkpoint', async () => {
    const model = sequential([
      parallel([[input('user'), embedding(10, 4)], [input('item'), embedding(20, 3)]], 'concat'),
      dense(8), relu(), dense(1),
    ], { seed: 2, engine, name: 'twoTowers' });
    const text = model.summary(false);
    assert.match(text, /parallel_1 \(parallel\)\s+\[None, 7\]\s+100/);
    const users = Int32Array.from({ length: 32 }, (_, i) => i % 10);
    const items = Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 20);
    const targets = Float32Array.from(users, (u, i) => u / 10 - items[i]! / 20);
    const batch = batchFromColumns({ columns: { user: { values: users }, item: { values: items } }, targets });
    const before = await model.evaluate([batch], { loss: meanSquaredError() });
    await lastValueFrom(from(Array(30).fill(batch) as Batch[]).pipe(model.fit({ loss: meanSquaredError(), optimizer: adam({ learningRate: 0.01 }) }), toArray()));
    const afterFit = await model.evaluate([batch]);
    assert.ok(afterFit.loss < before.loss / 2, `trains: ${before.loss} → ${afterFit.loss}`);
    const out = await lastValueFrom(of(batch).pipe(model.predict()));
    assert.deepEqual([...out.getChild('user')!.toArray()], [...users], 'the id columns pass through predict');
    const path = join(root, 'two-towers');
    await saveModel(model, path);
    const { model: loaded } = await loadModel(path, { engine });
    const again = await lastValueFrom(of(batch).pipe(loaded.predict()));
    assert.ok(bytes(floatColumn(again, 'output').values).equals(bytes(floatColumn(out, 'output').values)), 'the loaded model predicts the same bits');
    await assert.rejects(lastValueFrom(of(batchFromColumns({ columns: { user: { values: users } }, targets })).pipe(model.fit(fit()))), /batch has no 'item' column/);
    model.dispose();
    loaded.dispose();
  });

  it('new layer kinds round-trip through the registry', () => {
    for (const layer of [input('tokens', { shape: [5], dtype: 'int32' }), bias({ initial: 3.5 }), dot([input('a'), idEmbedding(4, 2)], [input('b'), idEmbedding(5, 2, { l2: 0.1, onOverflow: 'hash' })]), idEmbedding(9, 3, { initStd: 0 })]) {
      layer.name ||= `${layer.kind}_1`;
      const config = JSON.parse(JSON.stringify(layer.config())) as Record<string, unknown>;
      assert.deepEqual(JSON.parse(JSON.stringify(layerFromConfig(layer.kind, config, layer.name).config())), config);
    }
    assert.throws(() => input('features'), /read by the model itself/);
    assert.throws(() => layerFromConfig('idEmbedding', { maxIds: 3, dim: 2, onOverflow: 'wrap' }, 'e'), /layer 'e': maxIds: idEmbedding: onOverflow must be 'error' or 'hash'/);
  });
});

describe('biased matrix factorisation online', () => {
  it('learns by test-then-train: progressive RMSE falls below the biases-only baseline and towards σ', async () => {
    const model = mf();
    const reports = await progressive(model, 0, 24_000);
    const last = reports.at(-1)!;
    const first = reports[0]!;
    const base = fitBiases({ users: data.users.subarray(0, 18_000), items: data.items.subarray(0, 18_000), ratings: data.ratings.subarray(0, 18_000) }, { users: 120, items: 200 });
    const heldOut = { users: data.users.subarray(18_000), items: data.items.subarray(18_000), ratings: data.ratings.subarray(18_000) };
    const baseline = regressionErrors(heldOut, base.predict).rmse;
    assert.ok(first.rmse! > 0.6, `the first batch is predicted from the initial mean: ${first.rmse}`);
    assert.ok(last.rolling.rmse! < baseline, `MF ${last.rolling.rmse} beats biases only ${baseline}`);
    assert.ok(last.rolling.rmse! < 0.55, `rolling RMSE ${last.rolling.rmse} (σ = 0.3 on a 120 × 200 toy: 24,000 ratings for 2,560 factors)`);
    model.dispose();
  });

  it('an unseen user or item is predicted from the biases; the rows come into use as ids arrive', async () => {
    const model = mf();
    await progressive(model, 0, 4000);
    const rec = new Recommender(model);
    const p = new Map(model.getWeights());
    const find = (suffix: string) => [...p].find(([n]) => n.endsWith(suffix))![1];
    const userSeen = find('userFactors/seen');
    const itemSeen = find('itemFactors/seen');
    const unseenUser = userSeen.findIndex((c) => c === 0);
    const seenItem = itemSeen.findIndex((c) => c > 0);
    assert.ok(unseenUser >= 0, 'some user has not arrived yet after 4,000 ratings');
    const out = await lastValueFrom(of(batchFromColumns({ columns: { user: { values: Int32Array.of(unseenUser) }, item: { values: Int32Array.of(seenItem) } } })).pipe(model.predict()));
    const expected = Math.fround(find('globalMean/bias')[0]! + find('itemBias/embeddings')[seenItem]!);
    assert.equal(floatColumn(out, 'output').values[0], expected, 'μ + b_i exactly');
    assert.ok(find('userFactors/embeddings').subarray(unseenUser * 8, unseenUser * 8 + 8).every((v) => v === 0));
    rec.dispose();
    model.dispose();
  });

  it('checkpoint and resume are bitwise with grown tables (rows in use, counts, optimizer, RNG)', async () => {
    const straight = mf(5);
    const optimizer = adam({ learningRate: 0.01, lazy: true });
    const run = (model: Model, opt: typeof optimizer, start: number, end: number) =>
      lastValueFrom(from(interactionBatches(data, 200, start, end)).pipe(model.fit({ loss: meanSquaredError(), optimizer: opt }), toArray()));
    await run(straight, optimizer, 0, 3000);
    const path = join(root, 'mf');
    await saveModel(straight, path);
    await run(straight, optimizer, 3000, 9000);
    const { model: resumed, optimizer: restored } = await loadModel(path, { engine });
    await run(resumed, restored!, 3000, 9000);
    const a = straight.getWeights();
    const b = resumed.getWeights();
    for (const [name, values] of a) assert.ok(bytes(values).equals(bytes(b.get(name)!)), `${name} differs after resume`);
    const seen = [...a].find(([n]) => n.endsWith('userFactors/seen'))![1];
    assert.ok(seen.filter((c) => c > 0).length > 60, 'the user table grew past the rows seen at the checkpoint');
    straight.dispose();
    resumed.dispose();
  });

  it('lazy optimizers: lazy SGD equals dense SGD bit for bit; lazy Adam moves only the rows of the batch', async () => {
    const run = async (optimizer: ReturnType<typeof sgd>, sparse: boolean) => {
      const model = biasedMatrixFactorization({ maxUsers: 120, maxItems: 200, factors: 8, seed: 4, engine, sparse });
      await lastValueFrom(from(interactionBatches(data, 16, 0, 800)).pipe(model.fit({ loss: meanSquaredError(), optimizer }), toArray()));
      const w = model.getWeights();
      model.dispose();
      return w;
    };
    const dense = await run(sgd({ learningRate: 0.05 }), false);
    const lazy = await run(sgd({ learningRate: 0.05, lazy: true }), true);
    for (const [name, values] of dense) assert.ok(bytes(values).equals(bytes(lazy.get(name)!)), `${name}: lazy SGD differs from dense SGD`);
    const model = mf(4);
    const optimizer = adam({ learningRate: 0.01, lazy: true });
    await lastValueFrom(from(interactionBatches(data, 16, 0, 160)).pipe(model.fit({ loss: meanSquaredError(), optimizer }), toArray()));
    const before = model.getWeights();
    const batch = batchFromColumns({ columns: { user: { values: Int32Array.of(5, 6) }, item: { values: Int32Array.of(7, 7) } }, targets: Float32Array.of(4, 2) });
    await lastValueFrom(of(batch).pipe(model.fit({ loss: meanSquaredError(), optimizer })));
    const after = model.getWeights();
    const changedRows = (name: string, dim: number) => {
      const a = [...before].find(([n]) => n.endsWith(name))![1];
      const b = [...after].find(([n]) => n.endsWith(name))![1];
      return [...Array(a.length / dim).keys()].filter((r) => !bytes(a.subarray(r * dim, (r + 1) * dim)).equals(bytes(b.subarray(r * dim, (r + 1) * dim))));
    };
    assert.deepEqual(changedRows('userFactors/embeddings', 8), [5, 6]);
    assert.deepEqual(changedRows('itemBias/embeddings', 1), [7]);
    assert.deepEqual(optimizer.config()['lazy'], true, 'the flag is in the config a checkpoint stores');
    model.dispose();
  });

  it('recommend: top-k by predicted rating over the whole item table, excluding rated and unseen items; ranking metrics', async () => {
    const model = mf();
    await progressive(model, 0, 20_000);
    const rec = new Recommender(model);
    const w = model.getWeights();
    const get = (suffix: string) => [...w].find(([n]) => n.endsWith(suffix))![1];
    const P = get('userFactors/embeddings');
    const Q = get('itemFactors/embeddings');
    const bi = get('itemBias/embeddings');
    const seen = get('itemFactors/seen');
    const user = 7;
    const exclude = [0, 1, 2, 3];
    const brute = [...Array(200).keys()]
      .filter((i) => seen[i]! > 0 && !exclude.includes(i))
      .map((i) => {
        let s = bi[i]!;
        for (let k = 0; k < 8; k++) s += P[user * 8 + k]! * Q[i * 8 + k]!;
        return [i, s] as const;
      })
      .sort((x, y) => y[1] - x[1] || x[0] - y[0]);
    const { items, scores } = await rec.recommend(user, 10, { exclude });
    assert.deepEqual([...items], brute.slice(0, 10).map(([i]) => i));
    const out = await lastValueFrom(of(batchFromColumns({ columns: { user: { values: new Int32Array(10).fill(user) }, item: { values: items } } })).pipe(model.predict()));
    floatColumn(out, 'output').values.forEach((v, j) => assert.ok(Math.abs(v - scores[j]!) < 1e-4, `score ${j} is the model's prediction`));
    const train = { users: data.users.subarray(0, 20_000), items: data.items.subarray(0, 20_000) };
    const test = { users: data.users.subarray(20_000), items: data.items.subarray(20_000), ratings: data.ratings.subarray(20_000) };
    const m = await rankingMetrics(rec, test, { k: 10, threshold: 4, train });
    assert.ok(m.users > 10 && m.precision > 0 && m.recall > 0 && m.ndcg > 0 && m.ndcg <= 1, JSON.stringify(m));
    await assert.rejects(rec.recommend(500, 10), /user 500 is not an id in \[0, 120\)/);
    rec.dispose();
    model.dispose();
  });

  it('the neural variant (MLP over concatenated embeddings) learns and recommends through a forward pass', async () => {
    const model = neuralRecommender({ maxUsers: 120, maxItems: 200, factors: 8, hidden: [16], seed: 1, engine });
    const reports = await progressive(model, 0, 12_000);
    assert.ok(reports.at(-1)!.rolling.rmse! < reports[0]!.rmse!, 'progressive RMSE falls');
    const rec = new Recommender(model);
    assert.equal(rec.factorized, false);
    const { items } = await rec.recommend(3, 5, { exclude: [1] });
    assert.equal(items.length, 5);
    assert.ok(!items.includes(1));
    rec.dispose();
    model.dispose();
  });
});

describe('rating streams, bad input and data', () => {
  it('bad records follow the bad-record policy: negative id, id past the maximum, NaN rating, empty message', async () => {
    const records = [
      { user: 1, item: 2, rating: 4 }, { user: -1, item: 2, rating: 3 }, { user: 1, item: 200, rating: 3 }, { user: 1, item: 2, rating: Number.NaN }, {}, null,
      { user: 2, item: 3, rating: 5 },
    ];
    const expectations = [/record 1 user -1 is negative/, /record 1 item 200 is past the configured maximum \(ids < 200\)/, /record 1 rating is NaN, not a finite number/, /record 1 is empty/];
    for (const [i, re] of expectations.entries()) {
      const source = ratingBatches([records[0], records[i + 1]], { maxUsers: 120, maxItems: 200, size: 8 });
      await assert.rejects(async () => { for await (const _ of source) void _; }, (e: unknown) => e instanceof BadRecordError && re.test(e.message));
    }
    const counters = streamCounters();
    const model = mf();
    const before = model.getWeights();
    const reports = await lastValueFrom(pullThrough(ratingBatches(records, { maxUsers: 120, maxItems: 200, size: 8, onBadRecord: 'skip', counters }), testThenTrain(model, { ...fit(), counters })).pipe(toArray()));
    assert.equal(counters.skipped, 5);
    assert.equal(reports.at(-1)!.skipped, 5);
    assert.equal(reports.at(-1)!.examples, 2);
    assert.ok([...model.getWeights()].some(([n, v]) => !bytes(v).equals(bytes(before.get(n)!))), 'the good records were learnt');
    // An id past the table at the model (no record check): the batch fails before any change, the model stays usable.
    const w = model.getWeights();
    await assert.rejects(lastValueFrom(of(batchFromColumns({ columns: { user: { values: Int32Array.of(1, 999) }, item: { values: Int32Array.of(1, 1) } }, targets: Float32Array.of(3, 3) })).pipe(model.fit(fit()))), /id 999 is past the configured maximum \(maxIds 120/);
    for (const [n, v] of model.getWeights()) assert.ok(bytes(v).equals(bytes(w.get(n)!)), `${n} unchanged by the failed batch`);
    await progressive(model, 0, 512);
    model.dispose();
  });

  it('MovieLens u.data and ratings.csv readers (time order, errors name file, line and field)', async () => {
    const uData = join(root, 'u.data');
    await writeFile(uData, '196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n');
    const a = await readMovieLens(uData);
    assert.deepEqual([...a.users], [22, 196, 186]);
    assert.deepEqual([...a.items], [377, 242, 302]);
    assert.deepEqual([...a.ratings], [1, 3, 3]);
    assert.equal(a.maxUsers, 197);
    const csv = join(root, 'ratings.csv');
    await writeFile(csv, 'userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,6,4.0,964982224\n');
    const b = await readMovieLens(csv);
    assert.deepEqual([...b.ratings], [4.5, 4, 4]);
    assert.deepEqual([...b.items], [3, 6, 1]);
    assert.throws(() => parseMovieLens('1\t2\tx\t5\n', 'u.data'), (e: unknown) => e instanceof MovieLensFormatError && /u.data line 1: field 'rating' is 'x', not a number/.test(e.message));
    assert.throws(() => parseMovieLens('user,item\n1,2,3,4\n', 'ratings.csv'), /line 1: expected the header/);
    assert.throws(() => parseMovieLens('userId,movieId,rating,timestamp\n1,-2,3,4\n', 'ratings.csv'), /line 2: field 'item' is -2, not a non-negative integer id/);
  });

  it('synthetic ratings: the noise-free values are σ away from the ratings; truncated SVD recovers a fully observed low-rank matrix', async () => {
    const big = syntheticRatings({ users: 50, items: 60, ratings: 20_000, rank: 3, noise: 0.5, seed: 1 });
    let se = 0;
    for (let i = 0; i < 20_000; i++) se += (big.ratings[i]! - big.expected[i]!) ** 2;
    assert.ok(Math.abs(Math.sqrt(se / 20_000) - 0.5) < 0.02);
    // Drift re-draws the item factors from its point on: the stream before it is unchanged.
    const drifted = syntheticRatings({ users: 50, items: 60, ratings: 20_000, rank: 3, noise: 0.5, seed: 1, drift: { at: 0.5, strength: 1 } });
    assert.deepEqual(drifted.expected.subarray(0, 10_000), big.expected.subarray(0, 10_000));
    assert.ok(drifted.expected.subarray(10_000).some((v, i) => v !== big.expected[10_000 + i]));
    // New ids arrive over time: the first tenth of the stream sees only the first ~55% of the users.
    assert.ok(Math.max(...big.users.subarray(0, 2000)) < 0.6 * 50);
    // A complete rank-3 matrix: its double-centred residual has rank ≤ 3, so the rank-3 SVD is exact and rank 2 is not.
    const users = new Int32Array(1200);
    const items = new Int32Array(1200);
    const ratings = new Float32Array(1200);
    let r = 0;
    for (let u = 0; u < 40; u++) {
      for (let i = 0; i < 30; i++, r++) {
        users[r] = u;
        items[r] = i;
        ratings[r] = Math.sin(u) * Math.cos(i) + 0.5 * Math.cos(2 * u) * Math.sin(3 * i) + 0.1 * u * (i % 5);
      }
    }
    const all = { users, items, ratings };
    const svd = await truncatedSvd(all, { users: 40, items: 30, rank: 3, engine, lambda: 0 });
    assert.ok(regressionErrors(all, svd.predict).rmse < 1e-5, `rank-3 residual fits: ${regressionErrors(all, svd.predict).rmse}`);
    const rank2 = await truncatedSvd(all, { users: 40, items: 30, rank: 2, engine, lambda: 0 });
    assert.ok(regressionErrors(all, rank2.predict).rmse > 0.1);
    assert.ok(Math.abs(svd.singularValues[2]! - 8.196) < 1e-2 && svd.singularValues[0]! > svd.singularValues[1]!);
    assert.ok(regressionErrors(all, svd.baseline.predict).rmse > 0.1);
  });
});
