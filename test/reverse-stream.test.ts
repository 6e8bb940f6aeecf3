/**
 * The long-lived reverse stream (src/reverse-stream.ts, src/training.ts): gradient operators across
 * steps (marbles on the operators in virtual time; outcomes and weights through `fit`), gradient
 * accumulation against one big batch, held/dropped/applied reports, asynchronous operators, the
 * after-apply callback, unsubscribing mid-accumulation, the non-finite guard, computeGradients
 * against central differences, and the stage API against `fit`.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { concatMap, filter, from, lastValueFrom, map, scan, skip, Subject, take, toArray, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import {
  accumulateGradients, adam, asyncGradients, batchFromArrays, conv2d, createEngine, dense, flatten, ParameterGradients, Random, relu, sequential, sgd,
  softmaxCrossEntropy, StepContext, tanh, Tensor, type Batch, type FitOptions, type GradientOperator, type Layer, type Model, type Optimizer, type StepReport,
} from '../src/index.ts';
import type { Parameter } from '../src/layer.ts';
import { firstNonFinite } from '../src/reverse-stream.ts';

const engine = createEngine({ threads: 1 });
after(() => engine.close());

const IN = 6;
const CLASSES = 3;

function rowsOf(seed: number, rows: number): { features: Float32Array; labels: Int32Array } {
  const rng = new Random(seed);
  const features = new Float32Array(rows * IN).map(() => rng.normal());
  const labels = new Int32Array(rows).map((_, r) => (features[r * IN]! + features[r * IN + 1]! > 0.3 ? 2 : features[r * IN + 2]! > 0 ? 1 : 0));
  return { features, labels };
}

/** `count` batches of `size` rows, consecutive slices of one seeded dataset. */
function batches(seed: number, count: number, size: number): Batch[] {
  const { features, labels } = rowsOf(seed, count * size);
  return Array.from({ length: count }, (_, b) =>
    batchFromArrays({ features: features.slice(b * size * IN, (b + 1) * size * IN), shape: [IN], labels: labels.slice(b * size, (b + 1) * size) }),
  );
}

const mlp = (seed = 5, layers?: Layer[]) => sequential(layers ?? [dense(8), relu(), dense(CLASSES)], { inputShape: [IN], seed, engine });
const loss = softmaxCrossEntropy();

async function fitAll(model: Model, data: Batch[], optimizer: Optimizer, extra: Partial<FitOptions> = {}): Promise<StepReport[]> {
  return lastValueFrom(from(data).pipe(model.fit({ loss, optimizer, ...extra }), toArray()));
}

const outcomes = (reports: StepReport[]) => reports.map((r) => r.update[0]).join('');

/** max |a − b| / max |b| over each parameter: the relative distance of two weight sets. */
function maxRelative(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < x.length; i++) {
      scale = Math.max(scale, Math.abs(y[i]!));
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

function assertBitwise(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  for (const [name, x] of a) assert.deepEqual(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(b.get(name)!.buffer, b.get(name)!.byteOffset, b.get(name)!.byteLength), `${what}: ${name}`);
}

describe('gradient operators across steps (marbles, virtual time)', () => {
  // One fake parameter of 2 values in the engine's heap; each item's gradient is written into it as
  // the item enters the stream, as a step's backward does.
  const value = new Tensor(engine.heap, engine.heap.alloc(8), [2]);
  const grad = new Tensor(engine.heap, engine.heap.alloc(8), [2]);
  const param: Parameter = { name: 'w', shape: [2], value, grad, regularizer: null, trainable: true };
  const gradients = new Map<ParameterGradients, [number, number]>();
  const item = (step: number, g: [number, number], rows = 2): ParameterGradients => {
    const it = new ParameterGradients([param], engine, step, step, 1, rows, rows, step / 10);
    gradients.set(it, g);
    return it;
  };
  const enter = map((g: ParameterGradients) => {
    grad.data().set(gradients.get(g)!);
    return g;
  });
  const show = (g: ParameterGradients) => `${g.describe()}:${Array.from(grad.data()).join(',')}`;
  const run = (marbles: string, op: GradientOperator, expected: string, values: Record<string, string>, items: Record<string, ParameterGradients>) =>
    new TestScheduler((actual, wanted) => assert.deepStrictEqual(actual, wanted)).run(({ cold, expectObservable }) => {
      expectObservable((cold(marbles, items) as Observable<ParameterGradients>).pipe(enter, op, map(show))).toBe(expected, values);
    });

  it('accumulateGradients(2): holds the first of each pair and emits their row-weighted mean with the second; a partial pair is discarded', () => {
    const items = { a: item(1, [1, 2]), b: item(2, [3, 4], 6), c: item(3, [5, 6]), d: item(4, [7, 8]), e: item(5, [9, 9]) };
    // (1·2 + 3·6)/8 = 2.5, (2·2 + 4·6)/8 = 3.5; (5 + 7)/2, (6 + 8)/2.
    run('a-b-c-d-e|', accumulateGradients(2), '--x---y--|', { x: '1–2:2.5,3.5', y: '3–4:6,7' }, items);
    assert.equal(items.a.decision, 'held');
    assert.equal(items.c.decision, 'held');
    assert.equal(items.e.decision, 'held');
  });

  it('skip(2) drops the first two steps of the subscription, then passes every step', () => {
    const items = { a: item(1, [1, 1]), b: item(2, [2, 2]), c: item(3, [3, 3]), d: item(4, [4, 4]) };
    run('a-b-c-d|', skip(2), '----x-y|', { x: '3:3,3', y: '4:4,4' }, items);
  });

  it('filter passes the steps its predicate accepts', () => {
    const items = { a: item(1, [1, 1]), b: item(2, [2, 2]), c: item(3, [3, 3]), d: item(4, [4, 4]) };
    run('a-b-c-d|', filter((g: ParameterGradients) => g.lastStep % 2 === 0), '--x---y|', { x: '2:2,2', y: '4:4,4' }, items);
  });

  it('a custom scan keeps state across steps (here: the gradient scaled by 1/k at the k-th step)', () => {
    const items = { a: item(1, [1, 2]), b: item(2, [4, 4]), c: item(3, [3, 6]) };
    const decay: GradientOperator = (source) =>
      source.pipe(
        scan((acc: { k: number; g: ParameterGradients | null }, g: ParameterGradients) => {
          g.engine.kernels.scale(grad.ptr, 2, 1 / (acc.k + 1));
          return { k: acc.k + 1, g };
        }, { k: 0, g: null }),
        map((acc) => acc.g!),
      );
    run('a-b-c|', decay, 'x-y-z|', { x: '1:1,2', y: '2:2,2', z: '3:1,2' }, items);
  });
});

describe('the reverse stream lives as long as the fit subscription', () => {
  for (const [label, make] of [['SGD', () => sgd({ learningRate: 0.1 })], ['Adam', () => adam({ learningRate: 0.01 })]] as const) {
    it(`accumulateGradients(4) over batches of 16 equals one step on the batch of 64 (same rows), ${label}, to 1e-6 relative`, async () => {
      const small = batches(11, 12, 16);
      const big = batches(11, 3, 64);
      const a = mlp();
      const b = mlp();
      const reports = await fitAll(a, small, make(), { gradientOperators: [accumulateGradients(4)] });
      await fitAll(b, big, make());
      assert.equal(outcomes(reports), 'hhhahhhahhha');
      assert.deepEqual(reports.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      assert.equal(a.stepCount, 12);
      assert.equal(a.optimizer!.iterations, 3);
      const distance = maxRelative(a.getWeights(), b.getWeights());
      assert.ok(distance <= 1e-6, `relative distance ${distance}`);
      // And the weights really moved: the comparison is not between two untouched models.
      assert.ok(maxRelative(a.getWeights(), mlp().getWeights()) > 1e-3);
      a.dispose();
      b.dispose();
    });
  }

  it('while an update is held, the next forward uses the weights as they are (the losses of held steps are those of the initial weights)', async () => {
    const data = batches(12, 4, 8);
    const a = mlp();
    const reports = await fitAll(a, data, sgd({ learningRate: 0.5 }), { gradientOperators: [accumulateGradients(4)] });
    const b = mlp();
    for (let i = 0; i < 4; i++) {
      const { loss: l } = await b.computeGradients(data[i]!, { loss });
      assert.equal(reports[i]!.loss, l, `step ${i + 1}`);
    }
    a.dispose();
    b.dispose();
  });

  it('skip(n) is a warm-up: gradients computed, no update for the first n steps of the subscription (across train epochs too)', async () => {
    const data = batches(13, 6, 8);
    const a = mlp();
    const reports = await fitAll(a, data, sgd({ learningRate: 0.2 }), { gradientOperators: [skip(3)] });
    assert.equal(outcomes(reports), 'dddaaa');
    const b = mlp();
    await fitAll(b, data.slice(3), sgd({ learningRate: 0.2 }));
    assertBitwise(a.getWeights(), b.getWeights(), 'skip(3) vs training on the last 3 batches');

    // train() runs one subscription over every epoch: skip(3) skips 3 steps in all, not 3 per epoch.
    const c = mlp();
    const { features, labels } = rowsOf(13, 16);
    const steps = await lastValueFrom(
      c.train({ features, labels, shape: [IN] }, { epochs: 3, batchSize: 8, loss, optimizer: sgd(), gradientOperators: [skip(3)] }).pipe(
        filter((e) => e.kind === 'step'),
        toArray(),
      ),
    );
    assert.equal(steps.map((s) => (s as StepReport).update[0]).join(''), 'dddaaa');
    for (const m of [a, b, c]) m.dispose();
  });

  it('filter drops the steps it rejects; the weights equal training on the accepted batches only', async () => {
    const data = batches(14, 6, 8);
    const a = mlp();
    const reports = await fitAll(a, data, adam(), { gradientOperators: [filter((g: ParameterGradients) => g.lastStep % 2 === 0)] });
    assert.equal(outcomes(reports), 'dadada');
    const b = mlp();
    await fitAll(b, data.filter((_, i) => i % 2 === 1), adam());
    assertBitwise(a.getWeights(), b.getWeights(), 'filter vs the accepted batches');
    a.dispose();
    b.dispose();
  });

  it('a custom scan scaling the k-th gradient by 1/k equals SGD with the rate set to lr/k before each step', async () => {
    const data = batches(15, 5, 8);
    const a = mlp();
    const decay: GradientOperator = (source) =>
      source.pipe(
        scan((acc: { k: number; g: ParameterGradients | null }, g: ParameterGradients) => {
          for (const p of g.parameters) g.engine.kernels.scale(p.grad.ptr, p.grad.size, 1 / (acc.k + 1));
          return { k: acc.k + 1, g };
        }, { k: 0, g: null }),
        map((acc) => acc.g!),
      );
    await fitAll(a, data, sgd({ learningRate: 0.3 }), { gradientOperators: [decay] });
    const b = mlp();
    const optimizer = sgd({ learningRate: 0.3 });
    for (let k = 1; k <= data.length; k++) {
      optimizer.learningRate = 0.3 / k;
      await fitAll(b, [data[k - 1]!], optimizer);
    }
    assert.ok(maxRelative(a.getWeights(), b.getWeights()) < 1e-6);
    a.dispose();
    b.dispose();
  });

  it('an asynchronous operator is awaited before the next forward: the weights equal a synchronous fit bitwise', async () => {
    const data = batches(16, 5, 8);
    const a = mlp();
    let inFlight = 0;
    const slow = asyncGradients(async (g) => {
      inFlight++;
      await sleep(3);
      inFlight--;
      return g.lastStep === 3 ? null : g;
    });
    const reports = await fitAll(a, data, adam(), { gradientOperators: [slow, map((g: ParameterGradients) => (assert.equal(inFlight, 0), g))] });
    assert.equal(outcomes(reports), 'aadaa');
    const b = mlp();
    await fitAll(b, data.filter((_, i) => i !== 2), adam());
    assertBitwise(a.getWeights(), b.getWeights(), 'async vs sync');
    a.dispose();
    b.dispose();
  });

  it('an operator that passes on a new item made from the gradients (not listing the original) still reports applied, sync or async', async () => {
    const data = batches(23, 3, 8);
    let callbacks = 0;
    const remake = (g: ParameterGradients) => {
      g.afterApply(() => callbacks++);
      return new ParameterGradients(g.parameters, g.engine, g.firstStep, g.lastStep, g.steps, g.rows, g.lossCount, g.loss);
    };
    const a = mlp();
    assert.equal(outcomes(await fitAll(a, data, sgd(), { gradientOperators: [map(remake)] })), 'aaa');
    const b = mlp();
    assert.equal(outcomes(await fitAll(b, data, sgd(), { gradientOperators: [asyncGradients(async (g) => (await sleep(1), remake(g)))] })), 'aaa');
    assert.equal(callbacks, 6);
    assertBitwise(a.getWeights(), b.getWeights(), 'sync vs async remake');
    a.dispose();
    b.dispose();
  });

  it('an unmarked asynchronous operator fails with a message saying how to mark it, and the optimizer never sees the late gradients', async () => {
    const a = mlp();
    const gate = new Subject<void>();
    // Emits each item only when the gate opens (after its step ended, as a network round trip would).
    const late: GradientOperator = concatMap((g: ParameterGradients) => gate.pipe(take(1), map(() => g)));
    const before = a.getWeights();
    const reports: StepReport[] = [];
    await assert.rejects(
      lastValueFrom(from(batches(17, 4, 8)).pipe(a.fit({ loss, optimizer: sgd(), gradientOperators: [late] }), map((r) => (reports.push(r), r.step === 2 && gate.next(), r)))),
      /gradients of steps 1 reached the optimizer after their step ended as 'dropped'.*g\.pending\(\).*asyncGradients/,
    );
    assert.equal(outcomes(reports), 'dd');
    assertBitwise(a.getWeights(), before, 'weights after the failure');
    a.dispose();
  });

  it('afterApply callbacks run right after each applied update (a pruning mask stays applied), not for held steps', async () => {
    const data = batches(18, 6, 8);
    const a = mlp();
    let calls = 0;
    const prune = map((g: ParameterGradients) => {
      g.afterApply(() => {
        calls++;
        const kernel = g.parameters.find((p) => p.name === 'dense_1/kernel')!;
        kernel.value.data().fill(0, 0, 8); // the first input's row
      });
      return g;
    });
    const reports = await fitAll(a, data, adam(), { gradientOperators: [prune, accumulateGradients(2)] });
    assert.equal(outcomes(reports), 'hahaha');
    assert.equal(calls, 6, 'the callbacks of the held steps run with the update that includes them');
    assert.ok(a.getWeights().get('dense_1/kernel')!.subarray(0, 8).every((v) => v === 0));
    a.dispose();
  });

  it('a step still queued behind other work when its subscriber unsubscribes never starts', async () => {
    const a = mlp();
    const before = a.getWeights();
    let open!: () => void;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const busy = a.runner.exclusive(() => {
      started();
      return new Promise<void>((resolve) => (open = resolve));
    });
    await running;
    const subscription = from(batches(20, 2, 8)).pipe(a.fit({ loss, optimizer: sgd() })).subscribe();
    subscription.unsubscribe();
    open();
    await busy;
    // A barrier: resolves after everything queued before it has settled.
    await a.runner.exclusive(() => undefined);
    assert.equal(a.stepCount, 0);
    assertBitwise(a.getWeights(), before, 'weights');
    assert.equal(a.runner.stepsInFlight, 0);
    a.dispose();
  });

  it('unsubscribing mid-accumulation releases every arena and the accumulator; the model trains on as if the held steps never happened', async () => {
    const data = batches(19, 8, 8);
    const a = mlp();
    const warm = adam();
    // Warm: arenas pooled and optimizer slots allocated, then back to the initial weights.
    const initial = a.getWeights();
    await fitAll(a, data.slice(0, 4), warm, { gradientOperators: [accumulateGradients(4)] });
    a.setWeights(initial);
    const baseline = engine.heap.allocatedBytes;
    const optimizer = adam();
    const reports = await lastValueFrom(from(data).pipe(a.fit({ loss, optimizer, gradientOperators: [accumulateGradients(4)] }), take(2), toArray()));
    assert.equal(outcomes(reports), 'hh');
    while (a.runner.stepsInFlight > 0) await sleep(1);
    assert.equal(a.runner.stepsInFlight, 0);
    assert.equal(engine.heap.allocatedBytes - baseline, 0, 'bytes still allocated after unsubscribing');
    assertBitwise(a.getWeights(), initial, 'held steps changed the weights');
    // Usable: training on resumes and equals a fresh model trained on the same later batches.
    const fresh = mlp();
    const resumed = adam();
    await fitAll(a, data.slice(4), resumed, { gradientOperators: [accumulateGradients(4)] });
    await fitAll(fresh, data.slice(4), adam(), { gradientOperators: [accumulateGradients(4)] });
    assertBitwise(a.getWeights(), fresh.getWeights(), 'after the aborted accumulation');
    a.dispose();
    fresh.dispose();
  });
});

describe('the non-finite guard', () => {
  /** Five batches of 8 rows; the third has one NaN feature (a corrupt pixel). */
  const poisoned = (): Batch[] => {
    const data = batches(21, 5, 8);
    const { features, labels } = rowsOf(21, 40);
    const bad = features.slice(16 * IN, 24 * IN);
    bad[3] = Number.NaN;
    data[2] = batchFromArrays({ features: bad, shape: [IN], labels: labels.slice(16, 24) });
    return data;
  };

  it("default 'error': the stream errors naming the step and the first parameter, and the weights are bitwise those before the bad batch", async () => {
    const data = poisoned();
    const a = mlp();
    const reports: StepReport[] = [];
    let before: Map<string, Float32Array> | null = null;
    await assert.rejects(
      lastValueFrom(from(data).pipe(a.fit({ loss, optimizer: adam() }), map((r) => (reports.push(r), (before = a.getWeights()), r)))),
      (error: Error) => {
        // The loss itself stays finite (the "normal-looking loss"); the gradients do not.
        assert.match(error.message, /^sequential: step 3: the first parameter with a non-finite gradient is 'dense_1\/kernel' \(NaN at element \d+\)\. The update was not applied/);
        return true;
      },
    );
    assert.equal(reports.length, 2);
    assertBitwise(a.getWeights(), before!, 'weights after the error');
    assert.equal(a.stepCount, 2);
    a.dispose();
  });

  it("'skip': training continues, the step is dropped and counted, and the model ends identical to one that never saw the bad batch", async () => {
    const data = poisoned();
    const a = mlp();
    const optimizer = adam();
    const reports = await fitAll(a, data, optimizer, { nonFinite: 'skip' });
    assert.equal(outcomes(reports), 'aadaa');
    assert.deepEqual(reports.map((r) => r.nonFiniteSkipped), [0, 0, 1, 1, 1]);
    const b = mlp();
    const clean = adam();
    await fitAll(b, data.filter((_, i) => i !== 2), clean);
    assertBitwise(a.getWeights(), b.getWeights(), 'skip vs never seen');
    assert.equal(optimizer.iterations, clean.iterations);
    assert.equal(a.stepCount, b.stepCount);
    a.dispose();
    b.dispose();
  });

  it("'off' lets the NaN reach the weights (the behaviour the default prevents)", async () => {
    const a = mlp();
    await fitAll(a, poisoned(), sgd(), { nonFinite: 'off' });
    assert.ok(a.getWeights().get('dense_1/kernel')!.some(Number.isNaN));
    a.dispose();
  });

  it('the detector finds an infinity in the SIMD body or a NaN in the tail, and is not fooled by sums that overflow from finite values', () => {
    const arena = engine.heap.arena();
    const step = new StepContext(engine, arena, 1, true, new Random(1), 0);
    const param = (name: string, values: number[]): Parameter => {
      const grad = step.alloc([values.length]);
      grad.data().set(values);
      return { name, shape: [values.length], value: grad, grad, regularizer: null, trainable: true };
    };
    const body = Array.from({ length: 200 }, (_, i) => i / 7);
    const huge = param('huge', Array.from({ length: 256 }, () => 3e38));
    assert.equal(firstNonFinite([huge, param('fine', body)], step), null);
    assert.equal(firstNonFinite([huge, param('inf', body.map((v, i) => (i === 70 ? -Infinity : v)))], step)!.name, 'inf');
    assert.equal(firstNonFinite([param('fine', body), param('tail', body.map((v, i) => (i === 199 ? Number.NaN : v)))], step)!.name, 'tail');
    arena.dispose();
  });

  it('the detector reads only the rows a sparse gradient reports, and skips frozen parameters', () => {
    const arena = engine.heap.arena();
    const step = new StepContext(engine, arena, 1, true, new Random(1), 0);
    // A [4, 3] table gradient whose row 2 holds a NaN.
    const grad = step.alloc([4, 3]);
    grad.data().set([0, 0, 0, 1, 2, 3, 0, Number.NaN, 0, 4, 5, 6]);
    const table: Parameter = { name: 'table', shape: [4, 3], value: grad, grad, regularizer: null, trainable: true, sparseRows: Int32Array.of(1, 3) };
    assert.equal(firstNonFinite([table], step), null, 'rows 1 and 3 are finite');
    table.sparseRows = Int32Array.of(3, 2);
    assert.equal(firstNonFinite([table], step)!.name, 'table');
    table.sparseRows = null;
    assert.equal(firstNonFinite([table], step)!.name, 'table', 'a dense gradient is read whole');
    table.trainable = false;
    assert.equal(firstNonFinite([table], step), null, 'a frozen parameter is never applied');
    arena.dispose();
  });

  it('a bad policy is refused, naming it', () => {
    const a = mlp();
    assert.throws(() => from([]).pipe(a.fit({ loss, optimizer: sgd(), nonFinite: 'maybe' as 'skip' })).subscribe(), /nonFinite must be 'error', 'skip' or 'off', got "maybe"/);
    a.dispose();
  });
});

describe('computeGradients', () => {
  /** Central differences of the evaluated loss for `samples` entries of each parameter. */
  async function checkAgainstCentralDifferences(model: Model, batch: Batch, samples: number): Promise<void> {
    const before = model.getWeights();
    const steps = model.stepCount;
    const { loss: value, gradients } = await model.computeGradients(batch, { loss });
    assertBitwise(model.getWeights(), before, 'computeGradients changed the weights');
    assert.equal(model.stepCount, steps);
    assert.equal(value, (await model.evaluate([batch], { loss })).loss);
    const rng = new Random(3);
    const eps = 1e-2;
    for (const [name, w] of before) {
      const g = gradients.get(name)!;
      assert.equal(g.length, w.length);
      for (let s = 0; s < Math.min(samples, w.length); s++) {
        const i = rng.int(w.length);
        const at = async (delta: number) => {
          const moved = Float32Array.from(w);
          moved[i] = w[i]! + delta;
          model.setWeights(new Map([[name, moved]]));
          return (await model.evaluate([batch], { loss })).loss;
        };
        const numeric = ((await at(eps)) - (await at(-eps))) / (2 * eps);
        model.setWeights(before);
        assert.ok(Math.abs(numeric - g[i]!) <= 2e-3 + 2e-2 * Math.abs(numeric), `${name}[${i}]: analytic ${g[i]}, central difference ${numeric}`);
      }
    }
  }

  it('agrees with central differences through getWeights/setWeights and evaluate on a random MLP', async () => {
    const model = sequential([dense(7), tanh(), dense(5), tanh(), dense(CLASSES)], { inputShape: [IN], seed: 31, engine });
    await checkAgainstCentralDifferences(model, batches(31, 1, 10)[0]!, 12);
    model.dispose();
  });

  it('agrees with central differences on a small CNN', async () => {
    const model = sequential([conv2d(3, 3, { padding: 'same' }), tanh(), conv2d(2, 3), tanh(), flatten(), dense(CLASSES)], { inputShape: [5, 5, 2], seed: 32, engine });
    const rng = new Random(32);
    const features = new Float32Array(4 * 50).map(() => rng.normal());
    await checkAgainstCentralDifferences(model, batchFromArrays({ features, shape: [5, 5, 2], labels: new Int32Array([0, 2, 1, 2]) }), 10);
    model.dispose();
  });

  it('is exactly the gradient an SGD step (rate 1) subtracts; the optimizer state is untouched', async () => {
    const batch = batches(33, 1, 8)[0]!;
    const model = mlp();
    const optimizer = sgd({ learningRate: 1 });
    await fitAll(model, [batches(34, 1, 8)[0]!], optimizer);
    const before = model.getWeights();
    const { gradients } = await model.computeGradients(batch);
    assert.equal(optimizer.iterations, 1);
    await fitAll(model, [batch], optimizer);
    for (const [name, w] of before) {
      const expected = w.map((v, i) => Math.fround(v - gradients.get(name)![i]!));
      assertBitwise(new Map([[name, model.getWeights().get(name)!]]), new Map([[name, expected]]), 'w − g');
    }
    model.dispose();
  });
});

describe('the stage API (a model cut in two, as a pipeline stage runs it)', () => {
  it('forward on stage 1, forward + loss backward on stage 2, backward on stage 1 equals fit on the whole model, bitwise', async () => {
    const data = batches(41, 4, 8);
    const whole = mlp(7, [dense(8), relu(), dense(6), relu(), dense(CLASSES)]);
    const first = sequential([dense(8), relu()], { inputShape: [IN], seed: 1, engine });
    const second = sequential([dense(6), relu(), dense(CLASSES)], { inputShape: [8], seed: 1, engine });
    const w = [...whole.getWeights().values()];
    first.setWeights(new Map([...first.getWeights().keys()].map((k, i) => [k, w[i]!])));
    second.setWeights(new Map([...second.getWeights().keys()].map((k, i) => [k, w[i + 2]!])));
    await fitAll(whole, data, adam());
    const s1 = first.trainingSession({ loss, optimizer: adam() });
    const s2 = second.trainingSession({ loss, optimizer: adam() });
    for (const batch of data) {
      const p1 = await s1.forward(batch);
      const activations = batchFromArrays({ features: p1.output.toFloat32Array(), shape: [8], labels: batch.getChild('labels')!.toArray() as Int32Array });
      const p2 = await s2.forward(activations);
      const back = await p2.backward({ loss }, { inputGradient: true });
      assert.equal(back.report.update, 'applied');
      const front = await p1.backward({ outputGradient: back.inputGradient! });
      assert.equal(front.inputGradient, null);
    }
    s1.close();
    s2.close();
    const split = [...first.getWeights().values(), ...second.getWeights().values()];
    [...whole.getWeights().entries()].forEach(([name, v], i) => assertBitwise(new Map([[name, v]]), new Map([[name, split[i]!]]), 'stage vs whole'));
    assert.equal(first.runner.stepsInFlight + second.runner.stepsInFlight, 0);
    for (const m of [whole, first, second]) m.dispose();
  });
});
