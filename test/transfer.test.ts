import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchesFromArrays, conv2d, createEngine, dense, flatten, freeze, isFrozen, LayerSelectionError, maxPool2d, Random, relu, sequential, sgd,
  softmaxCrossEntropy, transferModel, unfreeze, loadModel, saveModel, type Model, type Optimizer,
} from '../src/index.ts';

const engine = createEngine({ threads: 1 });
after(() => engine.close());

function images(seed: number, rows: number) {
  const rng = new Random(seed);
  const features = new Float32Array(rows * 36).map(() => rng.normal());
  const labels = new Int32Array(rows).map((_, r) => (features[r * 36]! > 0 ? 1 : 0) + (features[r * 36 + 7]! > 0 ? 2 : 0));
  return { features, labels, shape: [6, 6, 1] };
}
const cnn = (seed: number, classes = 4) =>
  sequential([conv2d(4, 3, { padding: 'same' }), relu(), maxPool2d(2), conv2d(6, 3, { padding: 'same' }), relu(), flatten(), dense(16), relu(), dense(classes)], { inputShape: [6, 6, 1], seed, engine });
const train = (model: Model, optimizer: Optimizer, seed = 1, rows = 64) =>
  lastValueFrom(from(batchesFromArrays(images(seed, rows), 16)).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer }), toArray()));

/**
 * Counts, while `work` runs, the kernel calls of the backward: parameter gradients (dense dW GEMMs, conv
 * filter gradients) and input gradients (dense dx GEMMs, conv input gradients).
 */
async function countGradientKernels(work: () => Promise<unknown>): Promise<{ gemm: number; convFilter: number; inputGradients: number }> {
  const counts = { gemm: 0, convFilter: 0, inputGradients: 0 };
  type Functions = Record<string, (...args: unknown[]) => unknown>;
  const target = engine as unknown as { compute: Functions; kernels: Functions };
  const originals = { compute: target.compute, kernels: target.kernels };
  // Proxies in front of the backend's objects (the wasm exports themselves are read-only). dW = xᵀ·dy is
  // the GEMM with the first operand transposed (forward and dx use tA = 0).
  const counting = (object: Functions, name: string, count: (args: unknown[]) => void) => (...args: unknown[]) => (count(args), object[name]!.apply(object, args));
  target.compute = new Proxy(originals.compute, {
    get: (o, k: string) =>
      k === 'gemm' ? counting(o, k, (a) => (a[0] === 1 ? counts.gemm++ : a[1] === 1 && counts.inputGradients++))
      : k === 'conv2dBackwardFilter' && o[k] ? counting(o, k, () => counts.convFilter++)
      : k === 'conv2dBackwardInput' && o[k] ? counting(o, k, () => counts.inputGradients++)
      : o[k],
  });
  target.kernels = new Proxy(originals.kernels, {
    get: (o, k: string) => (k === 'conv2dBackwardFilter' ? counting(o, k, () => counts.convFilter++) : k === 'conv2dBackwardInput' ? counting(o, k, () => counts.inputGradients++) : o[k]),
  });
  try {
    await work();
  } finally {
    Object.assign(target, originals);
  }
  return counts;
}

describe('transfer learning', () => {
  it('freezes by name, glob or predicate; unfreeze keeps state parameters frozen; no match is an error naming the selector', () => {
    const model = cnn(1);
    assert.deepEqual(freeze(model, 'conv*'), ['conv2d_1', 'conv2d_2']);
    assert.ok(isFrozen(model, model.layers[0]!) && !isFrozen(model, model.layers[6]!));
    assert.deepEqual(freeze(model, (l, i) => i === 6), ['dense_1']);
    assert.deepEqual(unfreeze(model, /^dense_\d$/), ['dense_1', 'dense_2']);
    assert.deepEqual(unfreeze(model, 'conv2d_2'), ['conv2d_2']);
    assert.deepEqual(model.parameters().filter((p) => !p.trainable).map((p) => p.name), ['conv2d_1/kernel', 'conv2d_1/bias']);
    assert.deepEqual(model.freeze('dense_1'), ['dense_1']);
    const summary = model.summary(false);
    assert.match(summary, /Param #\s+Trainable/);
    assert.match(summary, /conv2d_1 \(conv2d\)\s+\[None, 6, 6, 4\]\s+40\s+frozen/);
    assert.match(summary, /conv2d_2 \(conv2d\)\s+\[None, 3, 3, 6\]\s+222\s+yes/);
    assert.match(summary, /dense_1 \(dense\)\s+\[None, 16\]\s+880\s+frozen/);
    assert.throws(() => freeze(model, 'lstm*'), (e: unknown) => e instanceof LayerSelectionError && /freeze: 'lstm\*' matches no layer \(layers: conv2d_1, relu_1/.test(e.message));
    assert.throws(() => unfreeze(model, () => false), /unfreeze: the predicate matches no layer/);
  });

  it('frozen parameters stay bitwise unchanged; their gradient kernels are never called and the backward stops at the first layer that learns', async () => {
    const model = cnn(2);
    const trainableCounts = await countGradientKernels(() => train(model, adam({ learningRate: 0.01 })));
    assert.equal(trainableCounts.convFilter, 2 * 4, 'two conv filter gradients per step, 4 steps');
    assert.equal(trainableCounts.gemm, 2 * 4, 'two dense dW GEMMs per step');
    assert.equal(trainableCounts.inputGradients, 3 * 4, 'input gradients of dense_2, dense_1 and conv2d_2 per step (conv2d_1 is first)');
    model.freeze((l) => l.name !== 'dense_2');
    const before = model.getWeights();
    const counts = await countGradientKernels(() => train(model, adam({ learningRate: 0.01 }), 2));
    assert.deepEqual(counts, { gemm: 4, convFilter: 0, inputGradients: 0 }, 'only the head computes its weight gradient; the reverse stream stops at it');
    const after = model.getWeights();
    for (const [name, values] of before) {
      if (name.startsWith('dense_2/')) assert.notDeepEqual(after.get(name), values, `${name} trains`);
      else assert.deepEqual(after.get(name), values, `${name} is bitwise unchanged`);
    }
  });

  it('transferModel copies all but the head into a new model with a new head; training it leaves the source as it was', async () => {
    const source = cnn(3);
    await train(source, adam({ learningRate: 0.01 }));
    const sourceWeights = source.getWeights();
    const model = transferModel(source, { head: [dense(5)], weights: 'copy', freeze: true });
    assert.deepEqual(model.layers.map((l) => l.name), [...source.layers.slice(0, 8).map((l) => l.name), 'dense_3']);
    assert.deepEqual(model.outputShape, [5]);
    for (const p of model.parameters()) if (!p.name.startsWith('dense_3/')) assert.deepEqual(p.values(), sourceWeights.get(p.name), p.name);
    assert.deepEqual(model.parameters().filter((p) => p.trainable).map((p) => p.name), ['dense_3/kernel', 'dense_3/bias']);
    await train(model, adam({ learningRate: 0.01 }), 5);
    assert.deepEqual(source.getWeights(), sourceWeights);
    assert.throws(() => transferModel(source, { head: [], weights: 'link' as never }), /weights must be 'copy' or 'share'/);
  });

  it("weights: 'share' uses the source's weight memory: training one changes the other; the source outlives the sharer", async () => {
    const source = cnn(6);
    const shared = transferModel(source, { head: [dense(5)], weights: 'share' });
    const before = source.getWeights().get('conv2d_1/kernel')!;
    await train(shared, sgd({ learningRate: 0.1 }), 7);
    assert.deepEqual(source.getWeights().get('conv2d_1/kernel'), shared.getWeights().get('conv2d_1/kernel'));
    assert.notDeepEqual(source.getWeights().get('conv2d_1/kernel'), before);
    assert.throws(() => source.dispose(), /share its weights; dispose them first/);
    shared.dispose();
    source.dispose();
  });

  it('parameter groups are checkpointed with the optimizer and a resumed run continues bitwise', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'rxgrad-groups-'));
    try {
      const groups = [{ parameters: 'conv*', learningRateScale: 0.1 }];
      const straight = cnn(8);
      await train(straight, adam({ learningRate: 0.01, parameterGroups: groups }), 1, 128);
      const first = cnn(8);
      const optimizer = adam({ learningRate: 0.01, parameterGroups: groups });
      await lastValueFrom(from(batchesFromArrays(images(1, 128), 16).slice(0, 4)).pipe(first.fit({ loss: softmaxCrossEntropy(), optimizer }), toArray()));
      await saveModel(first, join(dir, 'run'));
      const { model, optimizer: restored } = await loadModel(join(dir, 'run'), { engine });
      assert.deepEqual(restored!.config()['parameterGroups'], groups);
      await lastValueFrom(from(batchesFromArrays(images(1, 128), 16).slice(4)).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: restored! }), toArray()));
      assert.deepEqual(model.getWeights(), straight.getWeights());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('parameter groups scale the learning rate of the parameters they match (discriminative fine-tuning)', async () => {
    const a = cnn(4);
    const b = cnn(4);
    const start = a.getWeights();
    await train(a, sgd({ learningRate: 0.1 }));
    await train(b, sgd({ learningRate: 0.1, parameterGroups: [{ parameters: 'conv2d_1/*', learningRateScale: 0 }, { parameters: 'dense*', learningRateScale: 1 }] }));
    const [wa, wb] = [a.getWeights(), b.getWeights()];
    assert.deepEqual(wb.get('conv2d_1/kernel'), start.get('conv2d_1/kernel'), 'scale 0 leaves the group unchanged');
    assert.notDeepEqual(wa.get('conv2d_1/kernel'), start.get('conv2d_1/kernel'));
    assert.throws(() => sgd({ parameterGroups: [{ parameters: '', learningRateScale: 1 }] }), /parameterGroups\[0\]\.parameters/);
    assert.throws(() => adam({ parameterGroups: [{ parameters: 'x', learningRateScale: -1 }] }), /parameterGroups\[0\]\.learningRateScale/);
    await assert.rejects(train(cnn(4), adam({ parameterGroups: [{ parameters: 'lstm*', learningRateScale: 0.1 }] })), /parameterGroups\[0\]\.parameters 'lstm\*' matches no parameter/);
  });
});
