import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchFromArrays, batchesFromArrays, createEngine, dense, dropout, embedding, l2, relu, sequential, sgd, softmaxCrossEntropy,
  Random, type Batch, type Layer, type Model, type Optimizer,
} from '../src/index.ts';

// The wasm engine as shipped; RXGRAD_THREADS=2 runs the same tests with kernels split across a worker.
const engine = createEngine({ threads: Number(process.env['RXGRAD_THREADS'] ?? 1) });
after(() => engine.close());

const IN = 12;
const HIDDEN = 16;
const CLASSES = 3;
/** Weights of the stream and of the float64 loop agree to this, relative to the largest weight of each parameter. */
const RELATIVE_TOLERANCE = 1e-4;

function syntheticData(seed: number, rows: number) {
  const rng = new Random(seed);
  const features = new Float32Array(rows * IN).map(() => rng.normal());
  const labels = new Int32Array(rows).map((_, r) => {
    const score = features[r * IN]! - features[r * IN + 1]! + 0.5 * features[r * IN + 2]!;
    return score > 0.7 ? 2 : score > -0.7 ? 1 : 0;
  });
  return { features, labels, shape: [IN] };
}

const mlp = (seed: number, extra: { dropoutRate?: number; l2?: number } = {}) =>
  sequential(
    [
      dense(HIDDEN, extra.l2 ? { kernelRegularizer: l2(extra.l2) } : {}),
      relu(),
      ...(extra.dropoutRate ? [dropout(extra.dropoutRate)] : []),
      dense(CLASSES),
    ],
    { inputShape: [IN], seed, engine },
  );

async function fitAll(model: Model, batches: Batch[], optimizer: Optimizer) {
  return lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer, metrics: ['accuracy'] }), toArray()));
}

/** A plain float64 training loop of the same MLP (dense-relu-dense, softmax cross-entropy, mean over rows). */
function referenceLoop(
  initial: Map<string, Float32Array>, batches: { x: Float32Array; y: Int32Array }[],
  update: (name: string, w: Float64Array, g: Float64Array, t: number) => void,
  l2Coefficient = 0,
): Map<string, Float64Array> {
  const w = new Map([...initial].map(([k, v]) => [k, Float64Array.from(v)]));
  const W1 = w.get('dense_1/kernel')!;
  const b1 = w.get('dense_1/bias')!;
  const W2 = w.get('dense_2/kernel')!;
  const b2 = w.get('dense_2/bias')!;
  let t = 0;
  for (const { x, y } of batches) {
    t++;
    const rows = y.length;
    const h = new Float64Array(rows * HIDDEN);
    const logits = new Float64Array(rows * CLASSES);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < HIDDEN; j++) {
        let s = b1[j]!;
        for (let i = 0; i < IN; i++) s += x[r * IN + i]! * W1[i * HIDDEN + j]!;
        h[r * HIDDEN + j] = Math.max(s, 0);
      }
      for (let c = 0; c < CLASSES; c++) {
        let s = b2[c]!;
        for (let j = 0; j < HIDDEN; j++) s += h[r * HIDDEN + j]! * W2[j * CLASSES + c]!;
        logits[r * CLASSES + c] = s;
      }
    }
    const gW1 = new Float64Array(W1.length);
    const gb1 = new Float64Array(b1.length);
    const gW2 = new Float64Array(W2.length);
    const gb2 = new Float64Array(b2.length);
    for (let r = 0; r < rows; r++) {
      const row = logits.subarray(r * CLASSES, (r + 1) * CLASSES);
      const max = Math.max(...row);
      const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
      const dLogits = row.map((v, c) => (Math.exp(v - max) / sum - (c === y[r] ? 1 : 0)) / rows);
      for (let c = 0; c < CLASSES; c++) {
        gb2[c] += dLogits[c]!;
        for (let j = 0; j < HIDDEN; j++) gW2[j * CLASSES + c] += h[r * HIDDEN + j]! * dLogits[c]!;
      }
      for (let j = 0; j < HIDDEN; j++) {
        if (h[r * HIDDEN + j]! <= 0) continue;
        let dh = 0;
        for (let c = 0; c < CLASSES; c++) dh += dLogits[c]! * W2[j * CLASSES + c]!;
        gb1[j] += dh;
        for (let i = 0; i < IN; i++) gW1[i * HIDDEN + j] += x[r * IN + i]! * dh;
      }
    }
    for (let i = 0; i < W1.length; i++) gW1[i] += 2 * l2Coefficient * W1[i]!;
    update('dense_1/kernel', W1, gW1, t);
    update('dense_1/bias', b1, gb1, t);
    update('dense_2/kernel', W2, gW2, t);
    update('dense_2/bias', b2, gb2, t);
  }
  return w;
}

function assertClose(actual: Map<string, Float32Array>, expected: Map<string, Float64Array>) {
  for (const [name, want] of expected) {
    const got = actual.get(name)!;
    const scale = Math.max(...want.map(Math.abs));
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    assert.ok(worst <= RELATIVE_TOLERANCE * scale, `${name}: max |stream − float64 loop| = ${worst}, allowed ${RELATIVE_TOLERANCE * scale}`);
  }
}

const asPlain = (batches: Batch[]) =>
  batches.map((b) => ({
    x: (b.getChild('features')!.data[0]!.children[0]!.values as Float32Array).slice(),
    y: (b.getChild('labels')!.data[0]!.values as Int32Array).slice(),
  }));

describe('training through the stream equals a plain float64 loop', () => {
  const data = syntheticData(7, 20 * 16);
  const batches = batchesFromArrays(data, 16);

  it('Adam, 20 steps, with an L2 penalty on the first kernel', async () => {
    const model = mlp(11, { l2: 1e-3 });
    const initial = model.getWeights();
    const reports = await fitAll(model, batches, adam({ learningRate: 0.01 }));
    assert.equal(reports.length, 20);
    assert.equal(reports.at(-1)!.step, 20);
    const m = new Map<string, Float64Array>();
    const v = new Map<string, Float64Array>();
    const expected = referenceLoop(initial, asPlain(batches), (name, w, g, t) => {
      if (!m.has(name)) m.set(name, new Float64Array(w.length)), v.set(name, new Float64Array(w.length));
      const mm = m.get(name)!;
      const vv = v.get(name)!;
      for (let i = 0; i < w.length; i++) {
        mm[i] = 0.9 * mm[i]! + 0.1 * g[i]!;
        vv[i] = 0.999 * vv[i]! + 0.001 * g[i]! * g[i]!;
        w[i] -= (0.01 * (mm[i]! / (1 - 0.9 ** t))) / (Math.sqrt(vv[i]! / (1 - 0.999 ** t)) + 1e-7);
      }
    }, 1e-3);
    assertClose(model.getWeights(), expected);
    model.dispose();
  });

  it('SGD with Nesterov momentum, 20 steps', async () => {
    const model = mlp(12);
    const initial = model.getWeights();
    await fitAll(model, batches, sgd({ learningRate: 0.1, momentum: 0.9, nesterov: true }));
    const velocity = new Map<string, Float64Array>();
    const expected = referenceLoop(initial, asPlain(batches), (name, w, g) => {
      if (!velocity.has(name)) velocity.set(name, new Float64Array(w.length));
      const vel = velocity.get(name)!;
      for (let i = 0; i < w.length; i++) {
        vel[i] = 0.9 * vel[i]! + g[i]!;
        w[i] -= 0.1 * (g[i]! + 0.9 * vel[i]!);
      }
    });
    assertClose(model.getWeights(), expected);
    model.dispose();
  });
});

describe('the reverse stream does only the work that feeds a parameter', () => {
  /** A parameter-free layer that records how its backward is called. */
  const spy = (calls: boolean[]): Layer => ({
    kind: 'spy', name: '',
    build: (shape) => shape,
    parameters: () => [],
    forward: (x) => x,
    backward: (dy, _step, needInputGradient) => (calls.push(needInputGradient), needInputGradient ? dy : null),
    config: () => ({}),
  });

  it('layers before the first layer with parameters get no backward; the first such layer computes no input gradient', async () => {
    const front: boolean[] = [];
    const middle: boolean[] = [];
    const model = sequential([spy(front), dense(HIDDEN), spy(middle), relu(), dense(CLASSES)], { inputShape: [IN], seed: 3, engine });
    await fitAll(model, batchesFromArrays(syntheticData(8, 32), 16), sgd());
    assert.deepEqual(front, [], 'the augmentation-like front layer was asked for a backward');
    assert.deepEqual(middle, [true, true], 'a layer after a parametrised one must pass its input gradient on');
    model.dispose();
  });
});

describe('determinism', () => {
  it('same seed, same data: bitwise-identical weights (dropout included)', async () => {
    const batches = batchesFromArrays(syntheticData(3, 256), 32);
    const run = async () => {
      const model = mlp(5, { dropoutRate: 0.3 });
      await fitAll(model, [...batches, ...batches], adam());
      const weights = model.getWeights();
      model.dispose();
      return weights;
    };
    const a = await run();
    const b = await run();
    for (const [name, values] of a) assert.deepEqual(Buffer.from(values.buffer), Buffer.from(b.get(name)!.buffer), name);
  });

  it('different seeds give different initial weights', () => {
    const a = mlp(1);
    const b = mlp(2);
    assert.notDeepEqual(a.getWeights().get('dense_1/kernel'), b.getWeights().get('dense_1/kernel'));
    a.dispose();
    b.dispose();
  });
});

describe('bad input is a clear error and leaves the model usable', () => {
  const good = batchesFromArrays(syntheticData(9, 64), 32);
  const fitOnce = (model: Model, batch: Batch, checkNumerics = false) =>
    lastValueFrom(from([batch]).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam(), checkNumerics })));

  async function expectErrorThenRecovery(bad: Batch, pattern: RegExp, checkNumerics = false) {
    const model = mlp(21);
    const control = mlp(21);
    await assert.rejects(fitOnce(model, bad, checkNumerics), pattern);
    // After the error the model trains exactly like one that never saw the bad batch.
    for (const b of good) {
      await fitOnce(model, b);
      await fitOnce(control, b);
    }
    const got = model.getWeights();
    for (const [name, want] of control.getWeights()) assert.deepEqual(got.get(name), want, name);
    model.dispose();
    control.dispose();
  }

  it('feature width mismatch names the operator and both shapes', () =>
    expectErrorThenRecovery(
      batchFromArrays({ features: new Float32Array(4 * 10), shape: [10], labels: new Int32Array(4) }),
      /dense_1 \(dense\).*\[10\].*\[12\]/,
    ));

  it('labels out of range name the loss, row and label', () => {
    const labels = new Int32Array(4);
    labels[2] = 7;
    return expectErrorThenRecovery(
      batchFromArrays({ features: new Float32Array(4 * IN), shape: [IN], labels }),
      /softmaxCrossEntropy: label 7 at row 2 is out of range for 3 classes/,
    );
  });

  it('NaN in the input with checkNumerics names the row and element', () => {
    const features = new Float32Array(4 * IN);
    features[IN + 5] = Number.NaN;
    return expectErrorThenRecovery(batchFromArrays({ features, shape: [IN], labels: new Int32Array(4) }), /NaN at row 1, element 5/, true);
  });

  it('an empty batch', () => expectErrorThenRecovery(batchFromArrays({ features: new Float32Array(0), shape: [IN], labels: new Int32Array(0) }), /empty batch/));

  it('a batch without labels for a classification loss', () =>
    expectErrorThenRecovery(batchFromArrays({ features: new Float32Array(4 * IN), shape: [IN] }), /no Int32 'labels' column/));

  it('a shape mismatch between layers is caught when the model is built', () => {
    assert.throws(() => sequential([dense(4)], { inputShape: [], engine }), /dense_1 \(dense\).*\[\]/);
  });
});

describe('prediction and evaluation', () => {
  it('predict emits Arrow batches with outputs, argmax predictions and passed-through labels', async () => {
    const model = mlp(4);
    const batches = batchesFromArrays(syntheticData(1, 40), 16);
    const outputs = await lastValueFrom(from(batches).pipe(model.predict(), toArray()));
    assert.equal(outputs.length, 3);
    assert.deepEqual(outputs.map((b) => b.numRows), [16, 16, 8]);
    const out = outputs[0]!;
    assert.deepEqual(out.schema.fields.map((f) => f.name), ['output', 'prediction', 'labels']);
    const logits = out.getChild('output')!.data[0]!.children[0]!.values as Float32Array;
    const predictions = out.getChild('prediction')!.data[0]!.values as Int32Array;
    for (let r = 0; r < 16; r++) {
      const row = [...logits.subarray(r * CLASSES, (r + 1) * CLASSES)];
      assert.equal(predictions[r], row.indexOf(Math.max(...row)));
    }
    const evaluation = await model.evaluate(from(batches), { loss: softmaxCrossEntropy() });
    assert.equal(evaluation.examples, 40);
    assert.ok(evaluation.loss > 0 && evaluation.accuracy! >= 0 && evaluation.accuracy! <= 1);
    model.dispose();
  });

  it('evaluate averages per-position labels over the positions that count (ignoreIndex excluded)', async () => {
    const T = 5;
    const model = sequential([embedding(7, 4), dense(3)], { inputShape: [T], seed: 2, engine });
    const rng = new Random(4);
    const batches = [3, 2].map((rows) =>
      batchFromArrays({
        features: new Int32Array(rows * T).map(() => rng.int(7)), shape: [T],
        labels: new Int32Array(rows * T).map(() => (rng.uniform() < 0.3 ? -1 : rng.int(3))), labelShape: [T],
      }));
    const outputs = await lastValueFrom(from(batches).pipe(model.predict(), toArray()));
    let right = 0;
    let counted = 0;
    batches.forEach((b, i) => {
      const labels = b.getChild('labels')!.data[0]!.children[0]!.values as Int32Array;
      const logits = outputs[i]!.getChild('output')!.data[0]!.children[0]!.values as Float32Array;
      labels.forEach((label, pos) => {
        if (label === -1) return;
        const row = [...logits.subarray(pos * 3, pos * 3 + 3)];
        counted++;
        if (row.indexOf(Math.max(...row)) === label) right++;
      });
    });
    const result = await model.evaluate(from(batches), { loss: softmaxCrossEntropy({ ignoreIndex: -1 }) });
    assert.equal(result.examples, 5);
    assert.ok(Math.abs(result.accuracy! - right / counted) < 1e-12, `accuracy ${result.accuracy} vs ${right}/${counted}`);
    model.dispose();
  });

  it('train runs epochs with progress and validation, and learns', async () => {
    const model = mlp(8);
    const events = await lastValueFrom(
      model.train(syntheticData(2, 600), {
        epochs: 3, batchSize: 32, loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.01 }), metrics: ['accuracy'],
        validation: syntheticData(99, 200),
      }).pipe(toArray()),
    );
    const epochs = events.filter((e) => e.kind === 'epoch');
    assert.equal(epochs.length, 3);
    assert.equal(events.filter((e) => e.kind === 'step').length, 3 * 19);
    const last = epochs.at(-1)!;
    assert.ok(last.kind === 'epoch' && last.validation!.accuracy! > 0.85, `validation accuracy ${JSON.stringify(last)}`);
    model.dispose();
  });

  it('a second train call shuffles anew (as Keras fit does); the same seed repeats the whole sequence', async () => {
    // Learning rate 0: the weights never move, so the per-step losses depend only on the order of the rows.
    const stepLosses = async (model: Model) =>
      (await lastValueFrom(model.train(syntheticData(3, 96), { epochs: 1, batchSize: 8, loss: softmaxCrossEntropy(), optimizer: sgd({ learningRate: 0 }) }).pipe(toArray())))
        .flatMap((e) => (e.kind === 'step' ? [e.loss] : []));
    const first = mlp(4);
    const firstCall = await stepLosses(first);
    const secondCall = await stepLosses(first);
    assert.notDeepEqual(secondCall, firstCall, 'the second call saw the rows in the same order as the first');
    const twin = mlp(4);
    assert.deepEqual(await stepLosses(twin), firstCall);
    assert.deepEqual(await stepLosses(twin), secondCall);
    first.dispose();
    twin.dispose();
  });

  it('summary lists layers, output shapes and parameter counts; parameters() lists names and shapes', () => {
    const model = mlp(1);
    const text = model.summary(false);
    assert.match(text, /dense_1 \(dense\)\s+\[None, 16\]\s+208/);
    assert.match(text, /Total params: 259/);
    assert.deepEqual(model.parameters().map((p) => [p.name, p.shape]), [
      ['dense_1/kernel', [IN, HIDDEN]], ['dense_1/bias', [HIDDEN]], ['dense_2/kernel', [HIDDEN, CLASSES]], ['dense_2/bias', [CLASSES]],
    ]);
    model.dispose();
  });
});

describe('observing training', () => {
  it('gradients$ and updates$ report per-step norms while subscribed, and nothing after unsubscribe', async () => {
    const model = mlp(17);
    const batches = batchesFromArrays(syntheticData(6, 96), 32);
    const gradients: { step: number; globalNorm: number; norms: Record<string, number> }[] = [];
    const updates: { step: number; norms: Record<string, number> }[] = [];
    const g = model.gradients$.subscribe((r) => gradients.push(r));
    const u = model.updates$.subscribe((r) => updates.push(r));
    const before = model.getWeights();
    await fitAll(model, batches.slice(0, 1), sgd({ learningRate: 0.5 }));
    const after1 = model.getWeights();
    await fitAll(model, batches.slice(1), sgd({ learningRate: 0.5 }));
    g.unsubscribe();
    u.unsubscribe();
    await fitAll(model, batches, sgd({ learningRate: 0.5 }));
    assert.deepEqual(gradients.map((r) => r.step), [1, 2, 3]);
    assert.deepEqual(updates.map((r) => r.step), [1, 2, 3]);
    for (const r of gradients) {
      const sum = Object.values(r.norms).reduce((acc, n) => acc + n * n, 0);
      assert.ok(Math.abs(Math.sqrt(sum) - r.globalNorm) < 1e-6 * r.globalNorm, 'global norm is the norm of the per-parameter norms');
      assert.deepEqual(Object.keys(r.norms), ['dense_1/kernel', 'dense_1/bias', 'dense_2/kernel', 'dense_2/bias']);
    }
    // Plain SGD: the first update of each parameter is exactly lr × its gradient.
    for (const [name, w0] of before) {
      const w1 = after1.get(name)!;
      const delta = Math.sqrt(w0.reduce((acc, v, i) => acc + (w1[i]! - v) ** 2, 0));
      assert.ok(Math.abs(updates[0]!.norms[name]! - delta) <= 1e-6 + 1e-4 * delta, `${name}: update norm ${updates[0]!.norms[name]} vs ${delta}`);
      assert.ok(Math.abs(updates[0]!.norms[name]! - 0.5 * gradients[0]!.norms[name]!) <= 1e-5 + 1e-3 * delta, `${name}: update = lr · gradient`);
    }
    model.dispose();
  });
});

describe('memory', () => {
  it('dispose() frees parameters, gradients, arenas and the state of every optimizer the model trained with', async () => {
    const before = engine.heap.allocatedBytes;
    const model = mlp(13, { dropoutRate: 0.2 });
    const batches = batchesFromArrays(syntheticData(5, 64), 32);
    await fitAll(model, batches, adam());
    await fitAll(model, batches, sgd({ learningRate: 0.1, momentum: 0.9 }));
    assert.ok(engine.heap.allocatedBytes > before);
    model.dispose();
    assert.equal(engine.heap.allocatedBytes, before);
  });

  it('10,000 steps on a fixed-size batch keep the shared heap and the JS heap flat after warm-up', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const model = mlp(6, { dropoutRate: 0.1 });
    const batch = batchesFromArrays(syntheticData(4, 64), 64)[0]!;
    const measure = () => {
      gc();
      return { shared: engine.heap.allocatedBytes, sharedTotal: engine.heap.byteLength, js: process.memoryUsage().heapUsed };
    };
    const optimizer = adam();
    const run = (steps: number) => lastValueFrom(from(Array.from({ length: steps }, () => batch)).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer })));
    await run(500);
    const warm = measure();
    await run(9500);
    const end = measure();
    assert.equal(model.stepCount, 10_000);
    assert.equal(end.shared, warm.shared, 'shared heap bytes allocated');
    assert.equal(end.sharedTotal, warm.sharedTotal, 'shared memory size');
    // JS heap: allow 2 MiB of noise (compiled code, inline caches), far below 9,500 steps × any per-step leak.
    assert.ok(end.js - warm.js < 2 * 1024 * 1024, `JS heap grew by ${end.js - warm.js} bytes over 9,500 steps`);
    console.log(`memory: shared heap ${warm.shared} → ${end.shared} bytes allocated; JS heap ${(warm.js / 1e6).toFixed(2)} → ${(end.js / 1e6).toFixed(2)} MB`);
    model.dispose();
  });
});
