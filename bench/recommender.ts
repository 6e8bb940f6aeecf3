/**
 * Recommender benchmarks, rxgrad only (TF.js has no online recommender path to compare):
 * - biased MF (K = 10, 2,000 users × 4,000 items, synthetic ratings; sparse tables, lazy Adam) learning online: ratings/s
 *   through `model.fit` mini-batched (1,024 per step) and one rating per step, and through
 *   `testThenTrain` (score, then learn) mini-batched. Goals (issue 16): ≥ 200,000/s mini-batched,
 *   ≥ 30,000/s one at a time (River's BiasedMF does ~13,000/s). Two reference rows: the same step
 *   pipeline on 10 × 10 tables (what one rating per step can reach at all), and one rating per step
 *   with dense tables and dense Adam (what the sparse steps save).
 * - `Recommender.recommend`: top-10 over a 100,000-item table with K = 32 (SIMD scoring + heap top-k),
 *   ms per query. Goal < 5 ms.
 * Each rate is the median of several rounds over the same pre-made batches, after a warm-up round.
 *
 * Usage: `const rows = await recommenderBench({ quick: true });`
 */
import { from, lastValueFrom, toArray } from 'rxjs';
import { median, timeIt, type Row } from './harness.ts';
import { loadRxgrad, makeEngine } from './rxgrad.ts';

export async function recommenderBench(options: { quick: boolean }): Promise<Row[]> {
  const rx = await loadRxgrad();
  const engine = await makeEngine(1);
  const row = (benchmark: string, unit: string, rxgrad: number): Row => ({ benchmark, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
  try {
    const n = options.quick ? 100_000 : 300_000;
    const data = rx.syntheticRatings({ users: 2000, items: 4000, ratings: n, rank: 10, noise: 0.5, seed: 1 });
    const tiny = rx.syntheticRatings({ users: 10, items: 10, ratings: 20_000, rank: 10, noise: 0.5, seed: 1 });
    const rate = async (batchSize: number, count: number, how: 'fit' | 'testThenTrain', source = data, sparse = true): Promise<number> => {
      const batches = [...rx.interactionBatches(source, batchSize, 0, count)];
      const size = source === data ? { maxUsers: 2000, maxItems: 4000 } : { maxUsers: 10, maxItems: 10 };
      const model = rx.biasedMatrixFactorization({ ...size, factors: 10, seed: 1, engine, sparse });
      const fit = { loss: rx.meanSquaredError(), optimizer: rx.adam({ learningRate: 0.01, lazy: sparse }) };
      const run = () => (how === 'fit'
        ? lastValueFrom(from(batches).pipe(model.fit(fit), toArray()))
        : lastValueFrom(from(batches).pipe(rx.testThenTrain(model, { ...fit, window: 10_000 }), toArray())));
      await run();
      const seconds: number[] = [];
      for (let round = 0; round < (options.quick ? 2 : 4); round++) {
        const t0 = performance.now();
        await run();
        seconds.push((performance.now() - t0) / 1000);
      }
      model.dispose();
      return count / median(seconds);
    };
    const batched = await rate(1024, n, 'fit');
    const batchedTtt = await rate(1024, n, 'testThenTrain');
    const single = await rate(1, options.quick ? 5_000 : 20_000, 'fit');
    // The same step pipeline on 10 × 10 tables: kernels cost next to nothing, so this bounds what one
    // rating per step can reach through model.fit whatever the table sizes.
    const singleTiny = await rate(1, options.quick ? 5_000 : 20_000, 'fit', tiny);
    // Dense steps (whole-table gradient clear and Adam update every step): what sparse tables save.
    const singleDense = await rate(1, options.quick ? 2_000 : 5_000, 'fit', data, false);
    process.stderr.write(`  biased MF online: ${Math.round(batched)} ratings/s (b1024 fit), ${Math.round(batchedTtt)} (b1024 testThenTrain), ${Math.round(single)} (one at a time), ${Math.round(singleTiny)} (one at a time, 10×10 tables)\n`);
    process.stderr.write(`  one at a time with dense tables: ${Math.round(singleDense)} ratings/s\n`);

    // Top-10 over 100,000 items: a model whose item table is fully in use (random factors and biases).
    const items = 100_000;
    const model = rx.biasedMatrixFactorization({ maxUsers: 1000, maxItems: items, factors: 32, seed: 2, engine });
    const rng = new rx.Random(3);
    const weights = new Map<string, Float32Array>();
    for (const p of model.parameters()) weights.set(p.name, p.name.endsWith('/seen') ? new Float32Array(p.size).fill(1) : new Float32Array(p.size).map(() => 0.1 * rng.normal()));
    model.setWeights(weights);
    const recommender = new rx.Recommender(model);
    const exclude = Array.from({ length: 50 }, (_, i) => i * 7);
    let user = 0;
    const timing = await timeIt(async () => {
      await recommender.recommend(user++ % 1000, 10, { exclude });
    });
    recommender.dispose();
    model.dispose();
    process.stderr.write(`  top-10 of ${items} items (K=32): ${timing.ms.toFixed(3)} ms\n`);
    return [
      row('recommender biased MF K=10 2000×4000: online fit, mini-batched b1024 (goal ≥ 200,000)', 'ratings/s', batched),
      row('recommender biased MF K=10 2000×4000: online testThenTrain, mini-batched b1024', 'ratings/s', batchedTtt),
      row('recommender biased MF K=10 2000×4000: online fit, one rating per step (goal ≥ 30,000)', 'ratings/s', single),
      row('recommender biased MF K=10 10×10 tables: online fit, one rating per step (step pipeline bound)', 'ratings/s', singleTiny),
      row('recommender biased MF K=10 2000×4000: one rating per step with dense tables and dense Adam', 'ratings/s', singleDense),
      row('recommender top-10 of 100,000 items, K=32, 50 excluded (goal < 5)', 'ms', timing.ms),
    ];
  } finally {
    await engine.close();
  }
}
