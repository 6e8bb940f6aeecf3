import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { asyncScheduler, from, lastValueFrom, observeOn, tap, toArray } from 'rxjs';
import {
  accumulateGradients, adam, adamw, batchFromArrays, checkpointEvery, CheckpointError, cosineDecay, createEngine, exponentialDecay, decodeSafetensors, dense, dropout, encodeSafetensors,
  chain, gelu, l1l2, l2, parallel, residual, layerFromConfig, LayerConfigError, leakyRelu, loadModel, Random, relu, saveModel, sequential, sgd, sigmoid,
  softmax, softmaxCrossEntropy, tanh, type Batch, type Model, type Optimizer,
} from '../src/index.ts';
import { modelHost } from '../src/model.ts';
import { fitBatches, legacyBatches, weightsHash } from './fixtures/legacy-checkpoint.ts';

// Bitwise resume equivalence needs one fixed reduction order: a single thread.
const engine = createEngine({ threads: 1 });
let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rxgrad-checkpoint-'));
});
after(async () => {
  await engine.close();
  await rm(root, { recursive: true, force: true });
});

const IN = 12;
const CLASSES = 3;

function batches(seed: number, count: number, rows = 16): Batch[] {
  const rng = new Random(seed);
  return Array.from({ length: count }, () => {
    const features = new Float32Array(rows * IN).map(() => rng.normal());
    const labels = new Int32Array(rows).map((_, r) => {
      const score = features[r * IN]! - features[r * IN + 1]! + 0.5 * features[r * IN + 2]!;
      return score > 0.7 ? 2 : score > -0.7 ? 1 : 0;
    });
    return batchFromArrays({ features, labels, shape: [IN] });
  });
}

/** Dropout (draws from the model's RNG every step) and L2 (reconstructed from its config) make resume non-trivial. */
const mlp = (seed: number) =>
  sequential([dense(16, { kernelRegularizer: l2(1e-3) }), relu(), dropout(0.25), dense(CLASSES, { biasRegularizer: l1l2({ l1: 1e-4, l2: 2e-4 }) })], {
    inputShape: [IN], seed, engine, name: 'mlp',
  });

async function train(model: Model, data: Batch[], optimizer: Optimizer): Promise<void> {
  await lastValueFrom(from(data).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer }), toArray()));
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function assertBitwiseEqual(actual: Map<string, Float32Array>, expected: Map<string, Float32Array>, what: string): void {
  assert.deepEqual([...actual.keys()], [...expected.keys()], `${what}: parameter names`);
  for (const [name, values] of expected) assert.ok(bytesOf(actual.get(name)!).equals(bytesOf(values)), `${what}: ${name} differs`);
}
function optimizerState(optimizer: Optimizer): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [param, slots] of optimizer.state()) for (const [slot, t] of Object.entries(slots)) out.set(`${param}/${slot}`, t.toFloat32Array());
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

const OPTIMIZERS: [string, () => Optimizer][] = [
  ['sgd (nesterov momentum)', () => sgd({ learningRate: 0.05, momentum: 0.9, nesterov: true })],
  ['adam', () => adam({ learningRate: 3e-3 })],
  ['adamw', () => adamw({ learningRate: 3e-3, weightDecay: 0.02 })],
  // Resuming at step 150 lands mid-decay: the schedule is rebuilt from the manifest and continues on its curve.
  ['adam with warm-up and cosine decay', () => adam({ learningRate: cosineDecay({ initialRate: 0, warmupSteps: 30, warmupTarget: 5e-3, decaySteps: 240, alpha: 0.1 }) })],
  ['sgd with exponential decay', () => sgd({ learningRate: exponentialDecay({ initialRate: 0.1, decaySteps: 50, decayRate: 0.5, staircase: true }), momentum: 0.9 })],
  // The moving average of the weights is an optimizer slot: saved, restored and continued like the moments.
  ['adam with weight averaging', () => adam({ learningRate: 3e-3, emaMomentum: 0.99 })],
];

describe('checkpoint round trip', () => {
  for (const [label, make] of OPTIMIZERS) {
    it(`restores weights, ${label} slots and iterations, step count, RNG state and offsets`, async () => {
      const model = mlp(7);
      const optimizer = make();
      await train(model, batches(1, 20), optimizer);
      modelHost(model).parameters.find((p) => p.name === 'dense_2/bias')!.trainable = false;
      const path = join(root, `round-${optimizer.name}-${label.length}`);
      const saved = await saveModel(model, path, { streamOffsets: { 'events:0': 1234, cursor: 'abc' } });
      assert.equal(saved.stepCount, 20);

      const loaded = await loadModel(path, { engine });
      try {
        assertBitwiseEqual(loaded.model.getWeights(), model.getWeights(), 'weights');
        assert.equal(loaded.model.stepCount, 20);
        assert.deepEqual(loaded.model.rng.getState(), model.rng.getState());
        assert.deepEqual(loaded.streamOffsets, { 'events:0': 1234, cursor: 'abc' });
        assert.deepEqual(loaded.model.layers.map((l) => [l.kind, l.name, l.config()]), model.layers.map((l) => [l.kind, l.name, l.config()]));
        assert.deepEqual(loaded.model.inputShape, model.inputShape);
        assert.equal(loaded.model.name, 'mlp');
        assert.equal(loaded.model.seed, 7);
        assert.equal(modelHost(loaded.model).parameters.find((p) => p.name === 'dense_2/bias')!.trainable, false);
        const restored = loaded.optimizer!;
        assert.equal(restored.name, optimizer.name);
        assert.equal(restored.iterations, 20);
        assert.deepEqual(restored.config(), optimizer.config());
        assertBitwiseEqual(optimizerState(restored), optimizerState(optimizer), 'optimizer slots');
        assert.ok(optimizerState(optimizer).size > 0);
      } finally {
        loaded.model.dispose();
        model.dispose();
      }
    });
  }

  it('a loaded model owns its restored optimizer: saving it again keeps the slots, dispose frees them without any fit', async () => {
    const model = mlp(9);
    await train(model, batches(4, 5), adam({ learningRate: 3e-3 }));
    const path = join(root, 'owned-optimizer');
    await saveModel(model, path);
    const baseline = engine.heap.allocatedBytes;
    const loaded = await loadModel(path, { engine });
    assert.equal(loaded.model.optimizer, loaded.optimizer);
    await saveModel(loaded.model, join(root, 'owned-optimizer-again'));
    const again = await loadModel(join(root, 'owned-optimizer-again'), { engine });
    assertBitwiseEqual(optimizerState(again.optimizer!), optimizerState(loaded.optimizer!), 'slots after a second save');
    again.model.dispose();
    loaded.model.dispose();
    assert.equal(engine.heap.allocatedBytes, baseline);
    model.dispose();
  });

  it('saves an untrained model without optimizer into a directory', async () => {
    const model = mlp(3);
    const dir = join(root, 'as-directory') + '/';
    const saved = await saveModel(model, dir);
    assert.match(saved.json, /as-directory[\\/]checkpoint\.json$/);
    const loaded = await loadModel(dir, { engine });
    assert.equal(loaded.optimizer, null);
    assert.equal(loaded.model.stepCount, 0);
    assertBitwiseEqual(loaded.model.getWeights(), model.getWeights(), 'weights');
    assert.deepEqual(loaded.streamOffsets, {});
    // The weights file is plain safetensors, readable by any implementation.
    const { tensors, metadata } = decodeSafetensors(await readFile(saved.weights), saved.weights);
    assert.deepEqual([...tensors.keys()].sort(), ['dense_1/bias', 'dense_1/kernel', 'dense_2/bias', 'dense_2/kernel']);
    assert.equal(metadata['stepCount'], '0');
    loaded.model.dispose();
    model.dispose();
  });

  it('rebuilds combinators (chain, residual, parallel) and resumes them bit for bit', async () => {
    const build = () =>
      sequential([dense(8), residual([dense(8), tanh()]), parallel([[dense(4), relu()], [chain([dense(4), sigmoid()])]], 'concat'), dense(CLASSES)], {
        inputShape: [IN], seed: 21, engine,
      });
    const data = batches(77, 40, 8);
    const straight = build();
    await train(straight, data, adam({ learningRate: 1e-2 }));
    const first = build();
    await train(first, data.slice(0, 20), adam({ learningRate: 1e-2 }));
    const path = join(root, 'combinators');
    await saveModel(first, path);
    const { model, optimizer } = await loadModel(path, { engine });
    assert.deepEqual(model.layers.map((l) => l.config()), first.layers.map((l) => l.config()));
    assertBitwiseEqual(model.getWeights(), first.getWeights(), 'weights');
    await train(model, data.slice(20), optimizer!);
    assertBitwiseEqual(model.getWeights(), straight.getWeights(), 'weights after resume');
    for (const m of [model, first, straight]) m.dispose();
  });

  it('keeps exactly one weights file per checkpoint path across saves', async () => {
    const model = mlp(4);
    const optimizer = adam();
    const path = join(root, 'gc', 'run');
    for (let i = 0; i < 4; i++) {
      await train(model, batches(10 + i, 2), optimizer);
      await saveModel(model, path);
    }
    const files = (await readdir(join(root, 'gc'))).sort();
    assert.equal(files.length, 2, files.join(', '));
    assert.ok(files.includes('run.json'));
    assert.match(files.find((f) => f !== 'run.json')!, /^run\.[0-9a-f]{16}\.safetensors$/);
    model.dispose();
  });
});

describe('resume equivalence', () => {
  for (const [label, make] of OPTIMIZERS) {
    it(`${label}: 300 steps equal 150 + save + load into a fresh model + 150, bit for bit`, async () => {
      const data = batches(42, 300);
      const straight = mlp(11);
      await train(straight, data, make());

      const first = mlp(11);
      await train(first, data.slice(0, 150), make());
      const path = join(root, `resume-${label.replace(/\W+/g, '-')}`);
      await saveModel(first, path);
      first.dispose();

      const { model: resumed, optimizer } = await loadModel(path, { engine });
      assert.ok(optimizer);
      await train(resumed, data.slice(150), optimizer);
      assert.equal(resumed.stepCount, 300);
      assert.equal(optimizer.iterations, 300);
      assertBitwiseEqual(resumed.getWeights(), straight.getWeights(), 'weights after 300 steps');
      assert.deepEqual(resumed.rng.getState(), straight.rng.getState());
      resumed.dispose();
      straight.dispose();
    });
  }
});

describe('checkpoints written by earlier code', () => {
  it('test/fixtures/legacy-checkpoint (written before the step-runner refactor) loads, and resuming ends bitwise where the old code did', async () => {
    const plain = createEngine({ threads: 1, relaxedSimd: false });
    try {
      const dir = new URL('./fixtures/legacy-checkpoint/', import.meta.url).pathname;
      const expected = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8')) as { stepCount: number; weightsSha256AfterResume: string };
      const { model, optimizer, streamOffsets } = await loadModel(dir, { engine: plain });
      assert.equal(model.stepCount, 12);
      assert.deepEqual(streamOffsets, { batches: 12 });
      await fitBatches(model, legacyBatches(2, 8), optimizer!);
      assert.equal(model.stepCount, expected.stepCount);
      assert.equal(weightsHash(model.getWeights()), expected.weightsSha256AfterResume);
      model.dispose();
    } finally {
      await plain.close();
    }
  });
});

describe('checkpointEvery', () => {
  it('saves every N steps at step boundaries, holds reports until the save is durable, and the last save loads', async () => {
    const model = mlp(5);
    const path = join(root, 'every', 'live');
    const events: string[] = [];
    let offset = 0;
    let snapshotAt40 = new Map<string, Float32Array>();
    const reports = await lastValueFrom(
      from(batches(9, 45)).pipe(
        model.fit({ loss: softmaxCrossEntropy(), optimizer: sgd({ learningRate: 0.1, momentum: 0.5 }) }),
        // At the step boundary, like checkpointEvery's copy: steps 41–45 run while step 40 is being written.
        tap((r) => r.step === 40 && (snapshotAt40 = model.getWeights())),
        checkpointEvery({ model, path, steps: 10, streamOffsets: () => ({ offset: ++offset }), onSave: (s) => events.push(`save ${s.stepCount}`) }),
        tap((r) => events.push(`report ${r.step}`)),
        toArray(),
      ),
    );
    assert.deepEqual(reports.map((r) => r.step), Array.from({ length: 45 }, (_, i) => i + 1));
    // Saves that come due while a write runs are coalesced into the newest (only the latest checkpoint is kept anyway).
    const saves = events.filter((e) => e.startsWith('save')).map((e) => Number(e.slice(5)));
    assert.equal(saves[0], 10);
    assert.equal(saves.at(-1), 40);
    assert.deepEqual(saves, [...new Set(saves)].sort((a, b) => a - b));
    for (const due of [10, 20, 30, 40]) {
      const reported = events.indexOf(`report ${due}`);
      assert.ok(events.slice(0, reported).some((e) => e.startsWith('save') && Number(e.slice(5)) >= due), `report ${due} passed before a save of step ≥ ${due}: ${events.join(', ')}`);
    }
    const loaded = await loadModel(path, { engine });
    assert.equal(loaded.model.stepCount, 40);
    assert.deepEqual(loaded.streamOffsets, { offset: 4 });
    assert.equal(loaded.optimizer!.iterations, 40);
    assertBitwiseEqual(loaded.model.getWeights(), snapshotAt40, 'weights of step 40');
    assert.equal(model.stepCount, 45);
    assert.ok(!bytesOf(model.getWeights().get('dense_1/kernel')!).equals(bytesOf(snapshotAt40.get('dense_1/kernel')!)), 'the model trained on after the copy');
    loaded.model.dispose();
    model.dispose();
  });

  it('never saves on a held step (gradient accumulation): a due save waits for the step that applies the sum, and resuming is exact', async () => {
    const data = batches(10, 12);
    const optimizerOf = () => adam({ learningRate: 3e-3 });
    const model = mlp(6);
    const path = join(root, 'every-held', 'live');
    const saves: number[] = [];
    await lastValueFrom(
      from(data.slice(0, 6)).pipe(
        model.fit({ loss: softmaxCrossEntropy(), optimizer: optimizerOf(), gradientOperators: [accumulateGradients(3)] }),
        checkpointEvery({ model, path, steps: 2, onSave: (s) => saves.push(s.stepCount) }),
        toArray(),
      ),
    );
    // Due at 2 (held: waits for 3) and at 4 (held) → 6.
    assert.deepEqual(saves, [3, 6]);
    const straight = mlp(6);
    await lastValueFrom(from(data).pipe(straight.fit({ loss: softmaxCrossEntropy(), optimizer: optimizerOf(), gradientOperators: [accumulateGradients(3)] }), toArray()));
    const { model: resumed, optimizer } = await loadModel(path, { engine });
    await lastValueFrom(from(data.slice(6)).pipe(resumed.fit({ loss: softmaxCrossEntropy(), optimizer: optimizer!, gradientOperators: [accumulateGradients(3)] }), toArray()));
    assertBitwiseEqual(resumed.getWeights(), straight.getWeights(), 'resumed after a save at an applied step');
    for (const m of [model, straight, resumed]) m.dispose();
  });

  it('saves by elapsed time', async () => {
    const model = mlp(6);
    const path = join(root, 'every-seconds');
    const saves: number[] = [];
    await lastValueFrom(
      from(batches(8, 30)).pipe(
        model.fit({ loss: softmaxCrossEntropy(), optimizer: adam() }),
        checkpointEvery({ model, path, seconds: 0.001, onSave: (s) => saves.push(s.stepCount) }),
        toArray(),
      ),
    );
    assert.ok(saves.length >= 1);
    assert.deepEqual(saves, [...saves].sort((a, b) => a - b));
    const loaded = await loadModel(path, { engine });
    assert.equal(loaded.model.stepCount, saves.at(-1));
    loaded.model.dispose();
    model.dispose();
  });

  it('errors (instead of saving a state that does not match the report) when reports arrive late', async () => {
    const model = mlp(12);
    const late = lastValueFrom(
      from(batches(5, 6)).pipe(
        model.fit({ loss: softmaxCrossEntropy(), optimizer: adam() }),
        observeOn(asyncScheduler),
        checkpointEvery({ model, path: join(root, 'late'), steps: 1 }),
      ),
    );
    await assert.rejects(late, /checkpointEvery: report of step 1 arrived when mlp is at step \d+; put checkpointEvery directly after fit\/fitFrom/);
    model.dispose();
  });

  it('surfaces a write error as the stream error', async () => {
    const model = mlp(13);
    const file = join(root, 'a-file');
    await writeFile(file, 'not a directory');
    const failing = lastValueFrom(
      from(batches(5, 3)).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam() }), checkpointEvery({ model, path: join(file, 'run'), steps: 1 })),
    );
    await assert.rejects(failing, /ENOTDIR|EEXIST/);
    model.dispose();
  });

  it('refuses bad options', () => {
    const model = mlp(1);
    assert.throws(() => checkpointEvery({ model, path: root }), /steps and\/or seconds/);
    assert.throws(() => checkpointEvery({ model, path: root, steps: 0 }), /steps must be a positive integer/);
    model.dispose();
  });
});

describe('loading a bad checkpoint', () => {
  let path = '';
  let json = '';
  let weightsPath = '';
  before(async () => {
    const model = mlp(2);
    await train(model, batches(3, 5), adam());
    path = join(root, 'bad', 'good');
    const saved = await saveModel(model, path);
    json = await readFile(saved.json, 'utf8');
    weightsPath = saved.weights;
    model.dispose();
  });

  /** Writes a variant of the good checkpoint under `name` and returns its load error. */
  async function loadVariant(name: string, manifest: (m: Record<string, unknown>) => void, weights?: (w: Buffer) => Buffer): Promise<Error> {
    const dir = join(root, 'bad');
    const m = JSON.parse(json) as Record<string, unknown>;
    manifest(m);
    const w = m['weights'] as { file: string };
    if (weights) {
      // Give the altered weights their own file (so the good checkpoint stays intact).
      w.file = `${name}.${'0'.repeat(16)}.safetensors`;
      await writeFile(join(dir, w.file), weights(await readFile(weightsPath)));
    }
    await writeFile(join(dir, `${name}.json`), typeof m['raw'] === 'string' ? m['raw'] : JSON.stringify(m));
    return loadModel(join(dir, name), { engine }).then(
      () => assert.fail('loadModel should have failed'),
      (error: Error) => error,
    );
  }

  it('loads the unaltered checkpoint', async () => {
    const { model } = await loadModel(path, { engine });
    model.dispose();
  });

  it('names a missing checkpoint', async () => {
    await assert.rejects(loadModel(join(root, 'nothing-here'), { engine }), (e: Error) => e instanceof CheckpointError && /nothing-here\.json.*no checkpoint here/.test(e.message));
  });

  it('names a truncated manifest', async () => {
    const error = await loadVariant('truncated', (m) => (m['raw'] = json.slice(0, json.length / 2)));
    assert.ok(error instanceof CheckpointError);
    assert.match(error.message, /truncated\.json: \(json\): is not valid JSON/);
  });

  it('names bad manifest fields', async () => {
    const cases: [string, (m: Record<string, unknown>) => void, RegExp][] = [
      ['version', (m) => (m['version'] = 99), /version: this rxgrad reads version 1, got 99/],
      ['stepcount', (m) => (m['stepCount'] = -1), /stepCount: must be an integer/],
      ['rng', (m) => ((m['rng'] as Record<string, unknown>)['state'] = [1, 2, 3]), /rng\.state: must hold 4 words/],
      ['optname', (m) => ((m['optimizer'] as Record<string, unknown>)['name'] = 'lion'), /optimizer\.name: unknown optimizer 'lion'/],
      ['optfield', (m) => ((m['optimizer'] as { config: Record<string, unknown> }).config['beta1'] = 'x'), /optimizer\.config\.beta1: must be a finite number/],
      ['optrange', (m) => ((m['optimizer'] as { config: Record<string, unknown> }).config['beta1'] = 2), /optimizer\.config: adam: beta1 must be in/],
      ['lrtype', (m) => ((m['optimizer'] as { config: Record<string, unknown> }).config['learningRate'] = 'fast'), /optimizer\.config\.learningRate: must be a finite number or a schedule, got "fast"/],
      ['lrkind', (m) => ((m['optimizer'] as { config: Record<string, unknown> }).config['learningRate'] = { kind: 'cyclic' }), /optimizer\.config\.learningRate: kind: unknown schedule "cyclic"/],
      ['lrfield', (m) => ((m['optimizer'] as { config: Record<string, unknown> }).config['learningRate'] = { kind: 'exponentialDecay', initialRate: 0.1, decaySteps: 10, decayRate: 0.5, staircas: true }), /optimizer\.config\.learningRate: staircas: is not an option of exponentialDecay/],
      ['lrvalue', (m) => ((m['optimizer'] as { config: Record<string, unknown> }).config['learningRate'] = { kind: 'cosineDecay', initialRate: 0.1, decaySteps: 0 }), /optimizer\.config\.learningRate: cosineDecay: decaySteps must be an integer ≥ 1, got 0/],
      ['kind', (m) => ((m['model'] as { layers: { kind: string }[] }).layers[1]!.kind = 'conv9d'), /model\.layers\[1\]: layer 'relu_1': kind: unknown layer kind 'conv9d'/],
      ['units', (m) => ((m['model'] as { layers: { config: Record<string, unknown> }[] }).layers[0]!.config['units'] = 'many'), /layer 'dense_1': units: must be a finite number/],
      ['extra', (m) => ((m['model'] as { layers: { config: Record<string, unknown> }[] }).layers[2]!.config['rat'] = 0.5), /layer 'dropout_1': rat: is not a config field/],
      ['rate', (m) => ((m['model'] as { layers: { config: Record<string, unknown> }[] }).layers[2]!.config['rate'] = 1.5), /layer 'dropout_1': rate: dropout: rate must be in \[0, 1\)/],
      ['file', (m) => ((m['weights'] as Record<string, unknown>)['file'] = '../../etc/passwd'), /weights\.file: must be a '<base>\.<hash16>\.safetensors' name/],
    ];
    for (const [name, edit, pattern] of cases) {
      const error = await loadVariant(name, edit);
      assert.ok(error instanceof CheckpointError, `${name}: ${error.message}`);
      assert.match(error.message, new RegExp(`${name}\\.json`), name);
      assert.match(error.message, pattern, name);
    }
  });

  it('detects corrupt or mismatched weights by size and sha256', async () => {
    const flipped = await loadVariant('flipped', () => {}, (w) => {
      const c = Buffer.from(w);
      c[c.length - 3]! ^= 0x40;
      return c;
    });
    assert.match(flipped.message, /flipped\.0{16}\.safetensors: sha256: is [0-9a-f]{64}, but flipped\.json records/);
    const short = await loadVariant('short', () => {}, (w) => w.subarray(0, w.length - 8));
    assert.match(short.message, /short\.0{16}\.safetensors: size: .* truncated, or not the pair of this manifest/);

    // The pair of another checkpoint: a different model saved under the same file name.
    const other = mlp(99);
    const otherSaved = await saveModel(other, join(root, 'bad', 'other'));
    other.dispose();
    const otherWeights = await readFile(otherSaved.weights);
    const swapped = await loadVariant('swapped', () => {}, () => otherWeights);
    assert.match(swapped.message, /swapped\.0{16}\.safetensors: (size|sha256):/);

    const missing = await loadVariant('missing', (m) => ((m['weights'] as Record<string, unknown>)['file'] = `missing.${'a'.repeat(16)}.safetensors`));
    assert.match(missing.message, /missing\.json: weights\.file: 'missing\.a{16}\.safetensors' cannot be read \(ENOENT\)/);
  });

  it('names a missing tensor, a shape mismatch and a stray tensor when the checksum is right', async () => {
    const { tensors } = decodeSafetensors(await readFile(weightsPath), weightsPath);
    const { createHash } = await import('node:crypto');
    const consistent = (bytes: Uint8Array) => (m: Record<string, unknown>) => {
      m['weights'] = { file: 'x', sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
    };
    const variants: [string, (t: typeof tensors) => void, RegExp][] = [
      ['notensor', (t) => t.delete('dense_2/kernel'), /notensor\.0{16}\.safetensors: safetensors dense_2\/kernel: is missing \(needed by the model parameter 'dense_2\/kernel'\)/],
      ['noslot', (t) => t.delete('optimizer/dense_1/bias/v'), /optimizer\/dense_1\/bias\/v: is missing \(needed by the adam slot 'v' of 'dense_1\/bias'\)/],
      ['shape', (t) => t.set('dense_1/bias', { dtype: 'F32', shape: [4, 4], data: new Float32Array(16) }), /dense_1\/bias\.shape: is \[4, 4\], but the model parameter 'dense_1\/bias' needs \[16\]/],
      ['stray', (t) => t.set('dense_9/kernel', { dtype: 'F32', shape: [1], data: new Float32Array(1) }), /dense_9\/kernel: is not a parameter of the model/],
    ];
    for (const [name, edit, pattern] of variants) {
      const copy = new Map(tensors);
      edit(copy);
      const bytes = encodeSafetensors(copy);
      const error = await loadVariant(name, consistent(bytes), () => Buffer.from(bytes));
      assert.match(error.message, pattern, name);
    }
  });
});

describe('layerFromConfig', () => {
  it('rebuilds every operator from its config', () => {
    const layers = [
      dense(5, { useBias: false, kernelRegularizer: l2(0.5), name: 'd' }), relu({ name: 'r' }), leakyRelu({ slope: 0.2, name: 'lr' }), sigmoid({ name: 's' }),
      tanh({ name: 't' }), gelu({ name: 'g' }), softmax({ name: 'sm' }), dropout(0.3, { name: 'dr' }),
    ];
    for (const layer of layers) {
      const copy = layerFromConfig(layer.kind, JSON.parse(JSON.stringify(layer.config())) as Record<string, unknown>, layer.name);
      assert.equal(copy.kind, layer.kind);
      assert.equal(copy.name, layer.name);
      assert.deepEqual(copy.config(), layer.config());
    }
  });

  it('names the layer and field of a bad config', () => {
    assert.throws(() => layerFromConfig('dense', { units: 0 }, 'head'), (e: Error) => e instanceof LayerConfigError && e.message === "layer 'head': units: must be a positive integer, got 0");
    assert.throws(() => layerFromConfig('dense', {}, 'head'), /layer 'head': units: must be a finite number, got undefined/);
    assert.throws(() => layerFromConfig('dense', { units: 2, kernelRegularizer: { l2: -1 } }, 'head'), /layer 'head': kernelRegularizer\.l2: must be a finite number ≥ 0/);
    assert.throws(() => layerFromConfig('dense', { units: 2, kernelInitializer: 'magic' }, 'head'), /layer 'head': kernelInitializer: unknown initializer 'magic'/);
    assert.throws(() => layerFromConfig('relu', { slope: 1 }, 'act'), /layer 'act': slope: is not a config field of this layer/);
    assert.throws(() => layerFromConfig('nope', {}, 'x'), /layer 'x': kind: unknown layer kind 'nope'/);
    assert.throws(
      () => layerFromConfig('residual', { layers: [{ kind: 'relu', name: 'r', config: {} }, { kind: 'dense', name: 'd', config: { units: -1 } }] }, 'res'),
      /layer 'res': layers\[1\]: layer 'd': units: must be a positive integer, got -1/,
    );
    assert.throws(() => layerFromConfig('parallel', { merge: 'mul', branches: [] }, 'p'), /layer 'p': merge: must be one of 'concat', 'add', got "mul"/);
  });
});
