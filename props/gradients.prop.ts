/**
 * Gradient and forward properties of every operator in operators/ and every loss in src/losses.ts.
 *
 * For each operator: random shapes (rows 1–5, an optional middle axis 1–3, feature sizes 1–9, odd ones
 * included so SIMD tails are hit) and random values; build the layer with a tiny BuildContext, run
 * forward on the engine, pick a random upstream gradient dy, run backward, and compare
 *  (a) the forward output with the float64 reference in props/reference.ts, and
 *  (b) dL/dx and every parameter gradient with central differences of L = Σ dy ⊙ f(x) on that reference.
 * Losses: reported loss vs the reference, dLoss/dOutput vs central differences of the reference loss,
 * stability for ±1e4 logits, and the documented errors.
 *
 * Every property runs on the JS reference backend and on the wasm backend with one thread
 * (props/harness.ts). Replay a failure with the seed and path fast-check prints:
 * `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/gradients.prop.ts`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import type { Engine } from '../src/engine.ts';
import type { Layer } from '../src/layer.ts';
import { binaryCrossEntropyWithLogits, meanSquaredError, softmaxCrossEntropy, type Loss } from '../src/losses.ts';
import { Random } from '../src/random.ts';
import { sizeOf, type Shape } from '../src/tensor.ts';
import { dense } from '../operators/dense.ts';
import { dropout } from '../operators/dropout.ts';
import { gelu } from '../operators/gelu.ts';
import { leakyRelu } from '../operators/leaky-relu.ts';
import { relu } from '../operators/relu.ts';
import { sigmoid } from '../operators/sigmoid.ts';
import { softmax } from '../operators/softmax.ts';
import { tanh } from '../operators/tanh.ts';
import {
  assertClose, buildLayer, checkGradients, f32, FD_EPS, fcParams, fixed, FORWARD_ATOL, FORWARD_RTOL, GRAD_ATOL, GRAD_RTOL, maxAbs,
  parameterValues, poisonedStep, runLayer, testBackends,
} from './harness.ts';
import * as ref from './reference.ts';

// ---------------------------------------------------------------- tolerances and sizes
// Forward and gradient tolerances and the central-difference step: the defaults of props/harness.ts.

/**
 * For ±1e4 logits, a float32 log-sum-exp has an absolute error of a few ulps of the largest logit
 * (ulp(1e4) ≈ 1e-3); allow this many float32 ulps of max|logit| on top of the forward tolerance.
 */
const LARGE_LOGIT_ULPS = 8;
/** Relu/leakyRelu inputs stay this far from the kink at 0 (so x ± FD_EPS never crosses it). */
const KINK_MARGIN = 1e-3;
/** Runs per property: ~60 keeps the whole file (two backends) well under 20 s. */
const NUM_RUNS = 60;
/** Elements of the tensor whose dropout mask mean is checked: σ of the mean ≤ 0.01 for rate ≤ 0.9. */
const LARGE_DROPOUT_SIZE = 100_000;
/** The mask mean must be within this many standard deviations of 1 (false alarm ≈ 6e-7 per run). */
const MASK_MEAN_SIGMAS = 5;

const FC_PARAMS = fcParams(NUM_RUNS);

// ---------------------------------------------------------------- arbitraries

const VALUE = f32(-3, 3);
/** Away from a kink at 0 by construction (fc.float favours tiny values, fc.pre alone would starve). */
const AWAY_FROM_ZERO = fc.tuple(fc.boolean(), f32(2 * KINK_MARGIN, 3)).map(([negative, m]) => (negative ? -m : m));
const LABEL_SEED = fc.nat();

interface Dims {
  rows: number;
  /** 0: per-example shape [features]; else [mid, features]. */
  mid: number;
  features: number;
  /** Dense output units. */
  units: number;
}

const DIMS: Arbitrary<Dims> = fc.record({
  rows: fc.integer({ min: 1, max: 5 }),
  mid: fc.integer({ min: 0, max: 3 }),
  features: fc.integer({ min: 1, max: 9 }),
  units: fc.integer({ min: 1, max: 9 }),
});

const inputShapeOf = (d: Dims): Shape => (d.mid ? [d.mid, d.features] : [d.features]);
/** Rows of the 2-D view the kernels see: every axis but the last. */
const flatRows = (d: Dims): number => d.rows * Math.max(1, d.mid);

/** How one operator is built, what it should compute, and which inputs it is checked on. */
interface OperatorSpec {
  /** The operator file under test. */
  file: string;
  title: string;
  make(d: Dims, extra: number): Layer;
  /** Input values (kink-free where the operator has kinks). */
  values: Arbitrary<number>;
  /** An extra scalar (leakyRelu's slope). */
  extra?: Arbitrary<number>;
  /** True for inputs too close to a kink for a central difference. */
  nearKink?: (v: number) => boolean;
  outFeatures(d: Dims): number;
  paramShapes(d: Dims): Shape[];
  reference(x: ref.Values, params: readonly ref.Values[], d: Dims, extra: number): Float64Array;
}

const elementwiseSpec = (file: string, title: string, make: (extra: number) => Layer, reference: (x: ref.Values, extra: number) => Float64Array, rest: Partial<OperatorSpec> = {}): OperatorSpec => ({
  file, title, make: (_d, extra) => make(extra), values: VALUE, outFeatures: (d) => d.features, paramShapes: () => [],
  reference: (x, _p, _d, extra) => reference(x, extra), ...rest,
});

const nearZero = (v: number) => Math.abs(v) <= KINK_MARGIN;

const OPERATORS: OperatorSpec[] = [
  {
    file: 'operators/dense.ts', title: 'dense (with bias)', make: (d) => dense(d.units), values: VALUE,
    outFeatures: (d) => d.units, paramShapes: (d) => [[d.features, d.units], [d.units]],
    reference: (x, [w, b], d) => ref.dense(x, flatRows(d), d.features, w!, d.units, b!),
  },
  {
    file: 'operators/dense.ts', title: 'dense (useBias: false)', make: (d) => dense(d.units, { useBias: false }), values: VALUE,
    outFeatures: (d) => d.units, paramShapes: (d) => [[d.features, d.units]],
    reference: (x, [w], d) => ref.dense(x, flatRows(d), d.features, w!, d.units, null),
  },
  elementwiseSpec('operators/relu.ts', 'relu', () => relu(), (x) => ref.relu(x), { values: AWAY_FROM_ZERO, nearKink: nearZero }),
  elementwiseSpec('operators/leaky-relu.ts', 'leakyRelu (random slope)', (slope) => leakyRelu({ slope }), (x, slope) => ref.leakyRelu(x, slope), {
    values: AWAY_FROM_ZERO, nearKink: nearZero, extra: f32(-1, 1),
  }),
  elementwiseSpec('operators/leaky-relu.ts', 'leakyRelu (default slope 0.01)', () => leakyRelu(), (x) => ref.leakyRelu(x, 0.01), {
    values: AWAY_FROM_ZERO, nearKink: nearZero,
  }),
  elementwiseSpec('operators/sigmoid.ts', 'sigmoid', () => sigmoid(), (x) => ref.sigmoid(x)),
  elementwiseSpec('operators/tanh.ts', 'tanh', () => tanh(), (x) => ref.tanh(x)),
  elementwiseSpec('operators/gelu.ts', 'gelu (tanh approximation)', () => gelu(), (x) => ref.gelu(x)),
  {
    file: 'operators/softmax.ts', title: 'softmax (last axis)', make: () => softmax(), values: VALUE,
    outFeatures: (d) => d.features, paramShapes: () => [],
    reference: (x, _p, d) => ref.softmax(x, flatRows(d), d.features),
  },
];

interface OperatorCase {
  d: Dims;
  extra: number;
  x: number[];
  params: number[][];
  dy: number[];
}

function operatorCase(spec: OperatorSpec): Arbitrary<OperatorCase> {
  return DIMS.chain((d) =>
    fc.record({
      d: fc.constant(d),
      extra: spec.extra ?? fc.constant(0),
      x: fixed(spec.values, flatRows(d) * d.features),
      params: fc.tuple(...spec.paramShapes(d).map((s) => fixed(VALUE, sizeOf(s)))),
      dy: fixed(VALUE, flatRows(d) * spec.outFeatures(d)),
    }),
  );
}

/** The whole check of one operator on one case: shapes, forward, backward vs central differences. */
async function checkOperator(engine: Engine, spec: OperatorSpec, c: OperatorCase): Promise<void> {
  if (spec.nearKink) fc.pre(!c.x.some(spec.nearKink));
  const { d, extra, x, dy } = c;
  const layer = spec.make(d, extra);
  const inputShape = inputShapeOf(d);
  const built = buildLayer(engine, layer, inputShape, { qualifiedNames: true });
  try {
    const outShape = [...inputShape.slice(0, -1), spec.outFeatures(d)];
    assert.deepEqual([...built.outShape], outShape, `${spec.title}: build shape rule`);
    const shapes = spec.paramShapes(d);
    assert.deepEqual(built.params.map((p) => [...p.shape]), shapes.map((s) => [...s]), `${spec.title}: parameter shapes`);
    assert.deepEqual(layer.parameters(), built.params, `${spec.title}: parameters() must list the built parameters in order`);
    built.params.forEach((p, i) => p.value.data().set(c.params[i]!));
    const theta = parameterValues(built.params);

    const run = await runLayer(engine, layer, built.params, d.rows, inputShape, x, dy, { training: true, seed: 1 });
    assert.deepEqual([...run.yShape], [d.rows, ...outShape], `${spec.title}: forward output shape`);
    assert.deepEqual(run.xAfter, Float32Array.from(x), `${spec.title}: the input tensor was modified`);

    // (a) forward against the float64 reference, on the exact float32 values the engine saw;
    // (b) dL/dx and dL/dθ against central differences of L = Σ dy ⊙ f(x, θ) in float64.
    checkGradients({
      what: `${spec.file} ${spec.title}`, run, params: built.params, theta, x, dy,
      reference: (v, th) => spec.reference(v, th, d, extra),
    });
  } finally {
    built.free();
  }
}

// ---------------------------------------------------------------- losses

interface LossRun {
  loss: number;
  lossWithoutGradient: number;
  grad: Float32Array;
  accuracy: number | null;
  count: number;
  outputAfter: Float32Array;
}

/** Computes `loss` on an output tensor with the given labels and/or targets set on the step. */
function runLoss(engine: Engine, loss: Loss, output: ref.Values, outShape: Shape, given: { labels?: ref.Values; targets?: ref.Values }): LossRun {
  const step = poisonedStep(engine, outShape[0]!, { training: true, seed: 0 });
  const out = step.alloc(outShape);
  out.data().set(output);
  if (given.labels) {
    step.labels = step.alloc([given.labels.length], 'int32');
    step.labels.int32().set(given.labels);
  }
  if (given.targets) {
    step.targets = step.alloc(outShape);
    step.targets.data().set(given.targets);
  }
  const without = loss.compute(out, step, false);
  assert.equal(without.grad, null, `${loss.name}: compute(…, withGradient = false) must not return a gradient`);
  const result = loss.compute(out, step, true);
  assert.ok(result.grad, `${loss.name}: compute(…, withGradient = true) returned no gradient`);
  assert.deepEqual([...result.grad.shape], [...outShape], `${loss.name}: gradient shape`);
  return { loss: result.loss, lossWithoutGradient: without.loss, grad: result.grad.toFloat32Array(), accuracy: result.accuracy, count: result.count, outputAfter: out.toFloat32Array() };
}

/** Loss value and gradient against the reference loss and its central differences. */
function checkLoss(run: LossRun, output: ref.Values, reference: (v: ref.Values) => number, what: string): void {
  const expected = reference(output);
  assertClose([run.loss], [expected], FORWARD_ATOL, FORWARD_RTOL, `${what} loss`);
  assertClose([run.lossWithoutGradient], [expected], FORWARD_ATOL, FORWARD_RTOL, `${what} loss without gradient`);
  assertClose(run.grad, ref.centralDifferences(reference, output, FD_EPS), GRAD_ATOL, GRAD_RTOL, `${what} dLoss/dOutput`);
  assert.deepEqual(run.outputAfter, Float32Array.from(output), `${what}: the output tensor was modified`);
}

const MATRIX = fc.record({ rows: fc.integer({ min: 1, max: 5 }), cols: fc.integer({ min: 1, max: 9 }) });

/** Int32 labels in [0, classes) from a seed, so shrinking keeps them valid. */
function labelsFor(rows: number, classes: number, seed: number): Int32Array {
  const rng = new Random(seed);
  return Int32Array.from({ length: rows }, () => rng.int(classes));
}

/** Asserts that `fn` throws `type` with every `parts` string in the message. */
function assertThrowsNaming(fn: () => unknown, type: ErrorConstructor, parts: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    for (const part of parts) assert.ok(error.message.includes(part), `message "${error.message}" does not name "${part}"`);
    return true;
  });
}

// ---------------------------------------------------------------- the properties

for (const { label, engine } of testBackends()) {
  describe(`gradients and forward on the ${label}`, () => {
    for (const spec of OPERATORS) {
      it(`${spec.file}: ${spec.title} forward = float64 reference, backward = central differences`, async () => {
        await fc.assert(fc.asyncProperty(operatorCase(spec), (c) => checkOperator(engine, spec, c)), FC_PARAMS);
      });
    }

    it('operators/softmax.ts: softmax is stable and normalised for logits up to ±1e4', async () => {
      const large = fc.oneof(fc.constantFrom(-1e4, 1e4), f32(-1e4, 1e4));
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({ rows: fc.constant(rows), cols: fc.constant(cols), x: fixed(large, rows * cols) }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, x }) => {
        const layer = softmax();
        const built = buildLayer(engine, layer, [cols]);
        const run = await runLayer(engine, layer, built.params, rows, [cols], x, new Array<number>(rows * cols).fill(1), { training: true, seed: 0 });
        assert.ok(run.y.every(Number.isFinite), `softmax of large logits is not finite: ${run.y.join(', ')}`);
        for (let r = 0; r < rows; r++) {
          const sum = run.y.subarray(r * cols, (r + 1) * cols).reduce((a, b) => a + b, 0);
          assert.ok(Math.abs(sum - 1) <= FORWARD_ATOL * cols, `row ${r} sums to ${sum}`);
        }
        assertClose(run.y, ref.softmax(x, rows, cols), FORWARD_ATOL, FORWARD_RTOL, 'softmax of large logits');
        // dy = 1 everywhere: softmax is invariant to a constant shift, so dx must vanish.
        assertClose(run.dx, new Float64Array(rows * cols), GRAD_ATOL, 0, 'softmax backward of a constant dy');
      }), FC_PARAMS);
    });

    // ---- dropout

    const RATE = fc.integer({ min: 1, max: 18 }).map((k) => k / 20);
    const dropoutCase = DIMS.chain((d) => fc.record({
      d: fc.constant(d), rate: RATE, seed: fc.nat(),
      x: fixed(VALUE, flatRows(d) * d.features), dy: fixed(VALUE, flatRows(d) * d.features),
    }));

    it('operators/dropout.ts: training forward = x ⊙ mask, backward = central differences given the drawn mask', async () => {
      await fc.assert(fc.asyncProperty(dropoutCase, async ({ d, rate, seed, x, dy }) => {
        const layer = dropout(rate);
        const inputShape = inputShapeOf(d);
        const built = buildLayer(engine, layer, inputShape);
        assert.deepEqual([...built.outShape], [...inputShape], 'dropout shape rule is the identity');
        assert.equal(built.params.length, 0);
        const run = await runLayer(engine, layer, built.params, d.rows, inputShape, x, dy, { training: true, seed, readSaved: true });
        const mask = run.saved![0]!;
        assert.equal(mask.length, x.length, 'the saved mask has the input size');
        const scale = Math.fround(1 / (1 - rate));
        assert.ok(mask.every((m) => m === 0 || m === scale), `mask entries must be 0 or ${scale}: ${mask.join(', ')}`);
        assertClose(run.y, ref.dropout(x, mask), FORWARD_ATOL, FORWARD_RTOL, `dropout(${rate}) forward`);
        const numeric = ref.centralDifferences((v) => ref.weightedSum(dy, ref.dropout(v, mask)), x, FD_EPS);
        assertClose(run.dx, numeric, GRAD_ATOL, GRAD_RTOL, `dropout(${rate}) dL/dx`);
        assert.deepEqual(run.xAfter, Float32Array.from(x), 'dropout modified its input');
      }), FC_PARAMS);
    });

    it('operators/dropout.ts: inference (and rate 0) is the identity, forward and backward', async () => {
      const arb = fc.record({ c: dropoutCase, training: fc.boolean(), zeroRate: fc.boolean() })
        // Training with a non-zero rate is the other property; here: inference with any rate, or rate 0.
        .map(({ c, training, zeroRate }) => ({ ...c, training: training && zeroRate, rate: zeroRate ? 0 : c.rate }));
      await fc.assert(fc.asyncProperty(arb, async ({ d, rate, seed, x, dy, training }) => {
        const layer = dropout(rate);
        const inputShape = inputShapeOf(d);
        buildLayer(engine, layer, inputShape);
        const run = await runLayer(engine, layer, [], d.rows, inputShape, x, dy, { training, seed });
        assert.deepEqual(run.y, Float32Array.from(x), `dropout(${rate}), training ${training}: forward is not the identity`);
        assert.deepEqual(run.dx, Float32Array.from(dy), `dropout(${rate}), training ${training}: backward is not the identity`);
      }), FC_PARAMS);
    });

    it('operators/dropout.ts: the same seed draws the same mask', async () => {
      await fc.assert(fc.asyncProperty(dropoutCase, async ({ d, rate, seed, x, dy }) => {
        const inputShape = inputShapeOf(d);
        const masks: Float32Array[] = [];
        for (let i = 0; i < 2; i++) {
          const layer = dropout(rate);
          buildLayer(engine, layer, inputShape);
          masks.push((await runLayer(engine, layer, [], d.rows, inputShape, x, dy, { training: true, seed, readSaved: true })).saved![0]!);
        }
        assert.deepEqual(masks[0], masks[1], `dropout(${rate}) with seed ${seed} drew two different masks`);
      }), FC_PARAMS);
    });

    it(`operators/dropout.ts: the mask mean is 1 and the kept fraction 1 − rate over ${LARGE_DROPOUT_SIZE} elements`, async () => {
      const cols = 100;
      const rows = LARGE_DROPOUT_SIZE / cols;
      const ones = new Float32Array(LARGE_DROPOUT_SIZE).fill(1);
      await fc.assert(fc.asyncProperty(RATE, fc.nat(), async (rate, seed) => {
        const layer = dropout(rate);
        buildLayer(engine, layer, [cols]);
        const run = await runLayer(engine, layer, [], rows, [cols], ones, ones, { training: true, seed, readSaved: true });
        const mask = run.saved![0]!;
        const keep = 1 - rate;
        let sum = 0;
        let kept = 0;
        for (const m of mask) {
          sum += m;
          if (m !== 0) kept++;
        }
        // Each mask entry is scale·Bernoulli(keep): mean 1, variance rate/keep.
        const sigma = Math.sqrt(rate / keep / LARGE_DROPOUT_SIZE);
        const mean = sum / LARGE_DROPOUT_SIZE;
        assert.ok(Math.abs(mean - 1) <= MASK_MEAN_SIGMAS * sigma, `dropout(${rate}) seed ${seed}: mask mean ${mean}, σ ${sigma}`);
        const keptSigma = Math.sqrt(rate * keep / LARGE_DROPOUT_SIZE);
        assert.ok(Math.abs(kept / LARGE_DROPOUT_SIZE - keep) <= MASK_MEAN_SIGMAS * keptSigma, `dropout(${rate}): kept ${kept / LARGE_DROPOUT_SIZE}`);
      }), { ...FC_PARAMS, numRuns: 10 });
    });

    // ---- losses

    it('src/losses.ts: softmaxCrossEntropy loss, accuracy and gradient vs the reference', async () => {
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), logits: fixed(VALUE, rows * cols), seed: LABEL_SEED,
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, logits, seed }) => {
        const labels = labelsFor(rows, cols, seed);
        const run = runLoss(engine, softmaxCrossEntropy(), logits, [rows, cols], { labels });
        checkLoss(run, logits, (v) => ref.softmaxCrossEntropy(v, labels, rows, cols), `softmaxCrossEntropy [${rows}, ${cols}]`);
        assert.equal(run.accuracy, ref.argmaxCorrect(logits, labels, rows, cols) / rows, 'softmaxCrossEntropy: accuracy');
        assert.equal(run.count, rows, 'softmaxCrossEntropy: count');
      }), FC_PARAMS);
    });

    it('src/losses.ts: softmaxCrossEntropy is finite and accurate for logits up to ±1e4', async () => {
      const large = fc.oneof(fc.constantFrom(-1e4, 1e4), f32(-1e4, 1e4));
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), logits: fixed(large, rows * cols), seed: LABEL_SEED,
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, logits, seed }) => {
        const labels = labelsFor(rows, cols, seed);
        const run = runLoss(engine, softmaxCrossEntropy(), logits, [rows, cols], { labels });
        assert.ok(Number.isFinite(run.loss), `loss ${run.loss} for logits ${logits.join(', ')}`);
        assert.ok(run.grad.every(Number.isFinite), `gradient not finite: ${run.grad.join(', ')}`);
        const expected = ref.softmaxCrossEntropy(logits, labels, rows, cols);
        const tol = FORWARD_ATOL + FORWARD_RTOL * Math.abs(expected) + LARGE_LOGIT_ULPS * 2 ** -24 * maxAbs(logits);
        assert.ok(Math.abs(run.loss - expected) <= tol, `loss ${run.loss}, expected ${expected} (tolerance ${tol})`);
        // The gradient is (softmax − onehot)/rows: each entry in [−1/rows, 1/rows], each row sums to 0.
        for (let r = 0; r < rows; r++) {
          const g = run.grad.subarray(r * cols, (r + 1) * cols);
          assert.ok(g.every((v) => Math.abs(v) <= 1 / rows + FORWARD_ATOL), `row ${r} gradient out of range: ${g.join(', ')}`);
          assert.ok(Math.abs(g.reduce((a, b) => a + b, 0)) <= FORWARD_ATOL * cols, `row ${r} gradient does not sum to 0: ${g.join(', ')}`);
        }
      }), FC_PARAMS);
    });

    it('src/losses.ts: softmaxCrossEntropy rejects an out-of-range label with a RangeError naming the loss, row and label', async () => {
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), badRow: fc.integer({ min: 0, max: rows - 1 }), seed: LABEL_SEED,
        bad: fc.oneof(fc.integer({ min: -1000, max: -1 }), fc.integer({ min: cols, max: cols + 1000 }), fc.constantFrom(-2147483648, 2147483647)),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, badRow, bad, seed }) => {
        const labels = labelsFor(rows, cols, seed);
        labels[badRow] = bad;
        assertThrowsNaming(() => runLoss(engine, softmaxCrossEntropy(), new Array<number>(rows * cols).fill(0), [rows, cols], { labels }),
          RangeError, ['softmaxCrossEntropy', `label ${bad}`, `row ${badRow}`]);
      }), FC_PARAMS);
    });

    it('src/losses.ts: meanSquaredError loss and gradient vs the reference', async () => {
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), y: fixed(VALUE, rows * cols), t: fixed(VALUE, rows * cols),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, y, t }) => {
        const run = runLoss(engine, meanSquaredError(), y, [rows, cols], { targets: t });
        checkLoss(run, y, (v) => ref.meanSquaredError(v, t), `meanSquaredError [${rows}, ${cols}]`);
        assert.equal(run.accuracy, null);
      }), FC_PARAMS);
    });

    it('src/losses.ts: binaryCrossEntropyWithLogits with Float32 targets: loss, accuracy, gradient', async () => {
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), x: fixed(VALUE, rows * cols), t: fixed(f32(0, 1), rows * cols),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, x, t }) => {
        const run = runLoss(engine, binaryCrossEntropyWithLogits(), x, [rows, cols], { targets: t });
        checkLoss(run, x, (v) => ref.binaryCrossEntropyWithLogits(v, t), `binaryCrossEntropyWithLogits targets [${rows}, ${cols}]`);
        // Documented: accuracy compares the sign of the logit with t ≥ 0.5, per element, in row units.
        const agree = x.filter((v, i) => (v > 0) === (t[i]! >= 0.5)).length;
        assertClose([run.accuracy ?? Number.NaN], [agree / x.length], 1e-12, 0, 'binaryCrossEntropyWithLogits accuracy');
      }), FC_PARAMS);
    });

    it('src/losses.ts: binaryCrossEntropyWithLogits with Int32 labels on a one-unit output', async () => {
      const arb = fc.integer({ min: 1, max: 5 }).chain((rows) => fc.record({
        rows: fc.constant(rows), x: fixed(VALUE, rows), labels: fixed(fc.integer({ min: 0, max: 1 }), rows),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, x, labels }) => {
        const run = runLoss(engine, binaryCrossEntropyWithLogits(), x, [rows, 1], { labels: Int32Array.from(labels) });
        checkLoss(run, x, (v) => ref.binaryCrossEntropyWithLogits(v, labels), `binaryCrossEntropyWithLogits labels [${rows}, 1]`);
        assert.equal(run.accuracy, x.filter((v, i) => (v > 0) === (labels[i] === 1)).length / x.length, 'binaryCrossEntropyWithLogits accuracy');
      }), FC_PARAMS);
    });

    it('src/losses.ts: binaryCrossEntropyWithLogits rejects a label other than 0/1 naming the loss, row and label', async () => {
      const arb = fc.integer({ min: 1, max: 5 }).chain((rows) => fc.record({
        rows: fc.constant(rows), badRow: fc.integer({ min: 0, max: rows - 1 }),
        bad: fc.integer({ min: -1000, max: 1000 }).filter((v) => v !== 0 && v !== 1),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, badRow, bad }) => {
        const labels = new Int32Array(rows);
        labels[badRow] = bad;
        assertThrowsNaming(() => runLoss(engine, binaryCrossEntropyWithLogits(), new Array<number>(rows).fill(0), [rows, 1], { labels }),
          RangeError, ['binaryCrossEntropyWithLogits', `label ${bad}`, `row ${badRow}`]);
      }), FC_PARAMS);
    });

    it('src/losses.ts: missing labels/targets and mismatched sizes raise errors naming the loss', () => {
      assertThrowsNaming(() => runLoss(engine, softmaxCrossEntropy(), [0, 0], [1, 2], {}), TypeError, ['softmaxCrossEntropy', 'labels']);
      assertThrowsNaming(() => runLoss(engine, meanSquaredError(), [0, 0], [1, 2], {}), TypeError, ['meanSquaredError', 'targets']);
      assertThrowsNaming(() => runLoss(engine, binaryCrossEntropyWithLogits(), [0, 0], [1, 2], {}), TypeError, ['binaryCrossEntropyWithLogits']);
      assertThrowsNaming(() => runLoss(engine, softmaxCrossEntropy(), [0, 0, 0, 0], [2, 2], { labels: [0] }), RangeError, ['softmaxCrossEntropy', '2 rows', '1 labels']);
      assertThrowsNaming(() => runLoss(engine, binaryCrossEntropyWithLogits(), [0, 0, 0, 0], [2, 2], { labels: [0, 1] }), RangeError, ['binaryCrossEntropyWithLogits', 'one-unit']);
      // A targets tensor of another size than the output (the step is set up by hand here).
      const step = poisonedStep(engine, 2, { training: true, seed: 0 });
      const out = step.alloc([2, 2]);
      out.data().fill(0);
      step.targets = step.alloc([2, 3]);
      step.targets.data().fill(0);
      assertThrowsNaming(() => meanSquaredError().compute(out, step, true), RangeError, ['meanSquaredError', '[2, 3]', '[2, 2]']);
    });
  });
}
