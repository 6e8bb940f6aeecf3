import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, Subject, tap, toArray } from 'rxjs';
import { adam, batchFromArrays, createEngine, dense, floatColumn, Random, relu, sequential, sgd, softmaxCrossEntropy, type Batch, type Model, type Optimizer } from '../src/index.ts';

// Bitwise comparisons with a twin need one fixed reduction order: a single thread.
const engine = createEngine({ threads: 1 });
after(() => engine.close());

const IN = 8;
const batches = (seed: number, count: number): Batch[] => {
  const rng = new Random(seed);
  return Array.from({ length: count }, () => {
    const features = new Float32Array(16 * IN).map(() => rng.normal());
    return batchFromArrays({ features, shape: [IN], labels: new Int32Array(16).map((_, r) => (features[r * IN]! - features[r * IN + 1]! > 0 ? 1 : 0)) });
  });
};
const mlp = (seed = 5) => sequential([dense(6), relu(), dense(2)], { inputShape: [IN], seed, engine });
const fitAll = (model: Model, data: Batch[], optimizer: Optimizer) =>
  lastValueFrom(from(data).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer }), toArray()));
const averages = (optimizer: Optimizer) => new Map([...optimizer.state()].map(([name, slots]) => [name, slots['ema']!.toFloat32Array()]));

describe('moving average of the weights (emaMomentum)', () => {
  for (const [label, make] of [
    ['sgd without momentum (no other slot)', () => sgd({ learningRate: 0.2, emaMomentum: 0.9 })],
    ['adam', () => adam({ learningRate: 0.01, emaMomentum: 0.95 })],
  ] as const) {
    it(`${label}: starts at the weights before the first step and follows min(m, (1 + t) / (10 + t))`, async () => {
      const model = mlp();
      const optimizer = make();
      const momentum = optimizer.emaMomentum!;
      const expected = new Map([...model.getWeights()].map(([k, v]) => [k, Float64Array.from(v)]));
      const data = batches(1, 40);
      for (const [k, batch] of data.entries()) {
        await fitAll(model, [batch], optimizer);
        const t = k + 1;
        const m = Math.min(momentum, (1 + t) / (10 + t));
        for (const [name, w] of model.getWeights()) {
          const e = expected.get(name)!;
          for (let i = 0; i < e.length; i++) e[i] = m * e[i]! + (1 - m) * w[i]!;
        }
      }
      for (const [name, actual] of averages(optimizer)) {
        const e = expected.get(name)!;
        const scale = Math.max(...e.map(Math.abs), 1e-3);
        actual.forEach((a, i) => assert.ok(Math.abs(a - e[i]!) <= 1e-5 * scale, `${name}[${i}]: ${a} vs ${e[i]}`));
      }
      model.dispose();
    });
  }

  it("evaluate and predict with weights: 'average' use the averages and leave the weights as they were", async () => {
    const model = mlp();
    const optimizer = adam({ learningRate: 0.02, emaMomentum: 0.9 });
    await fitAll(model, batches(2, 30), optimizer);
    const before = model.getWeights();
    const test = batches(3, 4);
    const averaged = await model.evaluate(from(test), { weights: 'average' });
    const predicted = await lastValueFrom(from(test).pipe(model.predict({ weights: 'average' }), toArray()));
    assert.deepEqual(model.getWeights(), before, 'weights restored bit for bit');

    const twin = mlp();
    twin.setWeights(averages(optimizer));
    assert.deepEqual(await twin.evaluate(from(test), { loss: softmaxCrossEntropy() }), averaged);
    const twinPredicted = await lastValueFrom(from(test).pipe(twin.predict(), toArray()));
    predicted.forEach((b, i) => assert.deepEqual(floatColumn(b, 'output').values, floatColumn(twinPredicted[i]!, 'output').values));
    assert.notDeepEqual(await model.evaluate(from(test)), averaged, 'the current weights score differently');
    model.dispose();
    twin.dispose();
  });

  it('evaluations on the averages interleaved with training do not change what training computes', async () => {
    const data = batches(4, 40);
    const straight = mlp();
    await fitAll(straight, data, adam({ learningRate: 0.01, emaMomentum: 0.9 }));

    const model = mlp();
    const optimizer = adam({ learningRate: 0.01, emaMomentum: 0.9 });
    // Batches arrive one at a time; every fifth, an evaluation on the averages is asked for while the step
    // is in flight, so it runs between that step and the next one.
    const arrivals = new Subject<Batch>();
    let onReport = () => {};
    const training = lastValueFrom(arrivals.pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer }), tap(() => onReport()), toArray()));
    const evaluatedAt: Promise<number>[] = [];
    for (const [k, batch] of data.entries()) {
      const reported = new Promise<void>((resolve) => (onReport = resolve));
      arrivals.next(batch);
      if (k % 5 === 0) evaluatedAt.push(model.evaluate(from(batches(9, 2)), { weights: 'average' }).then(() => model.stepCount));
      await reported;
    }
    arrivals.complete();
    await training;
    const at = await Promise.all(evaluatedAt);
    assert.ok(at.every((s) => s >= 1 && s < data.length) && new Set(at).size === at.length, `evaluations ran between steps (after steps ${at.join(', ')})`);
    assert.deepEqual(model.getWeights(), straight.getWeights());
    model.dispose();
    straight.dispose();
  });

  it('applyAverageWeights makes the averages the weights (Keras finalisation); the average is unchanged', async () => {
    const model = mlp();
    const optimizer = sgd({ learningRate: 0.1, momentum: 0.5, emaMomentum: 0.8 });
    await fitAll(model, batches(5, 20), optimizer);
    const expected = averages(optimizer);
    await model.applyAverageWeights();
    assert.deepEqual(model.getWeights(), expected);
    assert.deepEqual(averages(optimizer), expected);
    model.dispose();
  });

  it('asking for averages the optimizer does not keep is a clear error, and the model stays usable', async () => {
    const untrained = mlp();
    await assert.rejects(untrained.evaluate(from(batches(6, 1)), { weights: 'average' }), /evaluate: the averaged weights need an optimizer created with emaMomentum .*it has not trained yet/);
    const model = mlp();
    await fitAll(model, batches(6, 3), adam());
    await assert.rejects(model.evaluate(from(batches(6, 1)), { weights: 'average' }), /its optimizer 'adam' keeps none/);
    assert.throws(() => model.predict({ weights: 'averaged' as 'average' }), /predict: weights must be 'current' or 'average', got "averaged"/);
    await assert.rejects(model.applyAverageWeights(), /applyAverageWeights: .*keeps none/);
    assert.throws(() => adam({ emaMomentum: 1 }), /adam: emaMomentum must be in \[0, 1\)/);
    const result = await model.evaluate(from(batches(6, 1)));
    assert.ok(Number.isFinite(result.loss));
    untrained.dispose();
    model.dispose();
  });
});
