import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchesFromArrays, compressedSize, constantSparsity, conv2d, createEngine, dense, flatten, loadModel, magnitudeMasks, maxPool2d,
  polynomialDecay, pruneLowMagnitude, pruneStructured, PruningConfigError, Random, relu, saveModel, selectKth, sequential, softmaxCrossEntropy,
  sparsityReport, stripPruning, updatePruning, type Model, type Optimizer,
} from '../src/index.ts';

const engine = createEngine({ threads: 1 });
let dir = '';
after(async () => {
  await engine.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function data(seed: number, rows: number, shape = [12]) {
  const rng = new Random(seed);
  const width = shape.reduce((a, b) => a * b, 1);
  const features = new Float32Array(rows * width).map(() => rng.normal());
  const labels = new Int32Array(rows).map((_, r) => (features[r * width]! + features[r * width + 1]! > 0 ? 1 : features[r * width + 2]! > 0 ? 2 : 0));
  return { features, labels, shape };
}
const mlp = (seed: number) => sequential([dense(16), relu(), dense(8), relu(), dense(3)], { inputShape: [12], seed, engine });
const outputs = async (model: Model, d: ReturnType<typeof data>) =>
  (await lastValueFrom(from(batchesFromArrays(d, 64)).pipe(model.predict(), toArray()))).flatMap((b) => [...(b.getChild('output')!.data[0]!.children[0]!.values as Float32Array)]);

/** Trains `model` on `batches` with pruning; after every step checks each masked weight is exactly 0. */
async function trainPruned(model: Model, batches: ReturnType<typeof batchesFromArrays>, optimizer: Optimizer): Promise<void> {
  const reports = await lastValueFrom(
    from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer, gradientOperators: [updatePruning(model)] }), toArray()),
  );
  assert.equal(reports.length, batches.length);
}
function assertMaskedZero(model: Model): void {
  const w = model.getWeights();
  for (const [name, mask] of w) {
    if (!name.endsWith('/kernel_mask')) continue;
    const kernel = w.get(name.replace(/_mask$/, ''))!;
    mask.forEach((m, i) => assert.ok(m === 1 || (m === 0 && kernel[i] === 0), `${name}[${i}]: mask ${m}, weight ${kernel[i]}`));
  }
}

describe('pruning schedules and masks', () => {
  it('polynomialDecay follows TF-MOT: final + (initial − final)(1 − p)^3, pruning every `frequency` steps in [begin, end]', () => {
    const s = polynomialDecay({ initialSparsity: 0.5, finalSparsity: 0.9, beginStep: 100, endStep: 300, frequency: 50 });
    assert.deepEqual(s.at(99), { prune: false, sparsity: 0.5 });
    assert.deepEqual(s.at(100), { prune: true, sparsity: 0.5 });
    assert.equal(s.at(120).prune, false);
    assert.ok(Math.abs(s.at(200).sparsity - (0.9 + (0.5 - 0.9) * 0.5 ** 3)) < 1e-12);
    assert.deepEqual(s.at(300), { prune: true, sparsity: 0.9 });
    assert.equal(s.at(350).prune, false);
    const c = constantSparsity({ targetSparsity: 0.8, beginStep: 10, frequency: 5 });
    assert.deepEqual([9, 10, 12, 15, 1000].map((t) => c.at(t).prune), [false, true, false, true, true]);
  });

  it('selection finds the k-th smallest as a sort would; masks prune exactly round(sparsity·n), globally across layers', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true, min: -4, max: 4 }), { minLength: 1, maxLength: 300 }), fc.nat(), (values, k0) => {
        const k = k0 % values.length;
        const sorted = [...Float32Array.from(values)].sort((a, b) => a - b);
        assert.equal(selectKth(Float32Array.from(values), k), sorted[k]);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 80 }), fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 80 }), fc.double({ min: 0, max: 0.99, noNaN: true }), (a, b, sparsity) => {
        const weights = [Float32Array.from(a), Float32Array.from(b)];
        const masks = weights.map((w) => new Float32Array(w.length));
        const pruned = magnitudeMasks(weights, masks, sparsity);
        const n = a.length + b.length;
        assert.equal(pruned, Math.round(sparsity * n));
        assert.equal(masks.reduce((z, m) => z + m.filter((x) => x === 0).length, 0), pruned);
        // Every kept magnitude is ≥ every pruned one (one threshold over both arrays).
        const kept = weights.flatMap((w, i) => [...w].filter((_, j) => masks[i]![j] === 1).map(Math.abs));
        const gone = weights.flatMap((w, i) => [...w].filter((_, j) => masks[i]![j] === 0).map(Math.abs));
        if (kept.length && gone.length) assert.ok(Math.min(...kept) >= Math.max(...gone));
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a sparsity outside [0, 1), naming the field', () => {
    assert.throws(() => constantSparsity({ targetSparsity: 1 }), (e: unknown) => e instanceof PruningConfigError && /constantSparsity\.targetSparsity: sparsity must be in \[0, 1\), got 1/.test(e.message));
    assert.throws(() => constantSparsity({ targetSparsity: -0.1 }), /constantSparsity\.targetSparsity/);
    assert.throws(() => polynomialDecay({ initialSparsity: 0, finalSparsity: 1.5, beginStep: 0, endStep: 10 }), /polynomialDecay\.finalSparsity/);
    assert.throws(() => polynomialDecay({ initialSparsity: 0, finalSparsity: 0.5, beginStep: 10, endStep: 5 }), /polynomialDecay\.endStep/);
    assert.throws(() => pruneStructured(mlp(1), { fraction: 1 }), /pruneStructured\.fraction: must be in \[0, 1\)/);
    assert.throws(() => pruneLowMagnitude(mlp(1), { schedule: constantSparsity({ targetSparsity: 0.5 }), layers: 'conv*' }), /pruneLowMagnitude\.layers: 'conv\*' matches no layer/);
  });
});

describe('pruneLowMagnitude', () => {
  it('property: pruned weights stay exactly zero through training, a checkpoint and a resume, which continues bitwise', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rxgrad-prune-'));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1000 }), fc.constantFrom('layer', 'global') as fc.Arbitrary<'layer' | 'global'>, fc.double({ min: 0.3, max: 0.9, noNaN: true }), async (seed, scope, finalSparsity) => {
        const schedule = polynomialDecay({ initialSparsity: 0.1, finalSparsity, beginStep: 0, endStep: 12, frequency: 3 });
        const batches = batchesFromArrays(data(seed, 24 * 16), 16);
        const straight = pruneLowMagnitude(mlp(seed), { schedule, scope });
        await trainPruned(straight, batches, adam({ learningRate: 0.01 }));
        assertMaskedZero(straight);

        const first = pruneLowMagnitude(mlp(seed), { schedule, scope });
        await trainPruned(first, batches.slice(0, 10), adam({ learningRate: 0.01 }));
        assertMaskedZero(first);
        await saveModel(first, join(dir, `run-${seed}`));
        first.dispose();
        const { model: resumed, optimizer } = await loadModel(join(dir, `run-${seed}`), { engine });
        assertMaskedZero(resumed);
        await trainPruned(resumed, batches.slice(10), optimizer!);
        assertMaskedZero(resumed);
        assert.deepEqual(resumed.getWeights(), straight.getWeights());
        const report = sparsityReport(stripPruning(resumed));
        if (scope === 'layer') for (const r of report) assert.ok(Math.abs(r.sparsity - finalSparsity) < 0.05, JSON.stringify(r));
        straight.dispose();
        resumed.dispose();
      }),
      { numRuns: 4 },
    );
  });

  it('stripPruning gives a plain model computing the same outputs, smaller when gzip-compressed', async () => {
    const d = data(3, 256);
    const pruned = pruneLowMagnitude(mlp(3), { schedule: constantSparsity({ targetSparsity: 0.8, frequency: 1 }) });
    await trainPruned(pruned, batchesFromArrays(d, 32), adam({ learningRate: 0.01 }));
    const plain = stripPruning(pruned);
    assert.deepEqual(plain.layers.map((l) => l.kind), ['dense', 'relu', 'dense', 'relu', 'dense']);
    assert.deepEqual(await outputs(plain, d), await outputs(pruned, d));
    for (const r of sparsityReport(plain)) assert.ok(Math.abs(r.sparsity - 0.8) < 0.02, JSON.stringify(r));
    dir ||= await mkdtemp(join(tmpdir(), 'rxgrad-prune-'));
    const dense0 = await compressedSize(await saveModel(mlp(3), join(dir, 'dense')));
    const sparse = await compressedSize(await saveModel(plain, join(dir, 'sparse')));
    assert.ok(sparse.gzipBytes < 0.6 * dense0.gzipBytes, `${sparse.gzipBytes} vs ${dense0.gzipBytes}`);
  });

  it('training a pruned model without updatePruning is an error saying so', async () => {
    const pruned = pruneLowMagnitude(mlp(2), { schedule: constantSparsity({ targetSparsity: 0.5 }) });
    await assert.rejects(lastValueFrom(from(batchesFromArrays(data(1, 16), 16)).pipe(pruned.fit({ loss: softmaxCrossEntropy(), optimizer: adam() }))), /updatePruning\(model\)/);
  });
});

describe('pruneStructured', () => {
  /**
   * Zeroes, in `model`, the kernel slices and biases of `layer`'s weakest units (kept: `keep`) and the inputs
   * of `next` that read them: the function the small model must compute. Returns nothing; norms are taken
   * after the inputs removed earlier were zeroed, as pruneStructured takes them on the remaining inputs.
   */
  function zeroWeakest(model: Model, layer: string, keep: number, next: string): void {
    const w = model.getWeights();
    const kernel = w.get(`${layer}/kernel`)!;
    const bias = w.get(`${layer}/bias`)!;
    const outputs = bias.length;
    const norms = new Float64Array(outputs);
    kernel.forEach((v, i) => (norms[i % outputs] += v * v));
    const removed = new Set([...norms.keys()].sort((a, b) => norms[b]! - norms[a]! || a - b).slice(keep));
    kernel.forEach((_, i) => removed.has(i % outputs) && (kernel[i] = 0));
    for (const u of removed) bias[u] = 0;
    const nextKernel = w.get(`${next}/kernel`)!;
    const nextOutputs = w.get(`${next}/bias`)!.length;
    // Input index r = ⌊i / outputs⌋; its channel is r mod channels (after a flatten too: NHWC, channel last).
    nextKernel.forEach((_, i) => removed.has(Math.floor(i / nextOutputs) % outputs) && (nextKernel[i] = 0));
    model.setWeights(w);
  }

  it('removes the weakest half of dense units and the next layer inputs: same function as zeroing them', async () => {
    const model = mlp(5);
    const { model: small, layers } = pruneStructured(model, { fraction: 0.5 });
    assert.deepEqual(layers, [{ layer: 'dense_1', before: 16, after: 8 }, { layer: 'dense_2', before: 8, after: 4 }]);
    assert.deepEqual(small.parameters().map((p) => p.shape), [[12, 8], [8], [8, 4], [4], [4, 3], [3]]);
    zeroWeakest(model, 'dense_1', 8, 'dense_2');
    zeroWeakest(model, 'dense_2', 4, 'dense_3');
    const d = data(9, 64);
    const [a, b] = [await outputs(small, d), await outputs(model, d)];
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-5, `${v} vs ${b[i]}`));
  });

  it('removes conv filters through relu, pooling and flatten', async () => {
    const cnn = sequential([conv2d(4, 3, { padding: 'same' }), relu(), maxPool2d(2), conv2d(6, 3, { padding: 'same' }), relu(), flatten(), dense(3)], { inputShape: [6, 6, 1], seed: 4, engine });
    const { model: small, layers } = pruneStructured(cnn, { fraction: 0.5 });
    assert.deepEqual(layers.map((l) => l.after), [2, 3]);
    assert.deepEqual(small.parameters().map((p) => p.shape), [[3, 3, 1, 2], [2], [3, 3, 2, 3], [3], [27, 3], [3]]);
    zeroWeakest(cnn, 'conv2d_1', 2, 'conv2d_2');
    zeroWeakest(cnn, 'conv2d_2', 3, 'dense_1');
    const d = data(2, 32, [6, 6, 1]);
    const [a, b] = [await outputs(small, d), await outputs(cnn, d)];
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-5, `${v} vs ${b[i]}`));
  });
});
