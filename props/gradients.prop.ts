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
 * Every property runs on the JS reference backend, and on the wasm backend with one thread when it
 * is available (skipped with the reason otherwise). Replay a failure with the seed and path fast-check
 * prints: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/gradients.prop.ts`.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import { createEngine, type Engine } from '../src/engine.ts';
import type { Arena } from '../src/heap.ts';
import { StepContext, type BuildContext, type Layer, type Parameter } from '../src/layer.ts';
import { binaryCrossEntropyWithLogits, meanSquaredError, softmaxCrossEntropy, type Loss } from '../src/losses.ts';
import { Random } from '../src/random.ts';
import { sizeOf, Tensor, type Shape } from '../src/tensor.ts';
import { dense } from '../operators/dense.ts';
import { dropout } from '../operators/dropout.ts';
import { gelu } from '../operators/gelu.ts';
import { leakyRelu } from '../operators/leaky-relu.ts';
import { relu } from '../operators/relu.ts';
import { sigmoid } from '../operators/sigmoid.ts';
import { softmax } from '../operators/softmax.ts';
import { tanh } from '../operators/tanh.ts';
import * as ref from './reference.ts';

// ---------------------------------------------------------------- tolerances

/**
 * Forward: |engine − reference| ≤ FORWARD_ATOL·max(1, ‖reference‖∞) + FORWARD_RTOL·|reference|.
 * The engine stores float32 (relative rounding 6e-8) and the wasm kernels accumulate in float32 and
 * use polynomial exp/tanh; the error of a dot product scales with the magnitude of its terms, not of
 * its possibly cancelled result, so the absolute part is scaled by the tensor's largest entry.
 * 1e-5 / 1e-4 leave two orders of magnitude above float32 rounding for sums of ≤ 9 terms, yet
 * catch any wrong formula, index or missing bias (errors of order 1e-1).
 */
const FORWARD_ATOL = 1e-5;
const FORWARD_RTOL = 1e-4;
/**
 * Gradients: |analytic − numeric| ≤ GRAD_ATOL·max(1, ‖numeric‖∞) + GRAD_RTOL·|numeric|. The analytic
 * side is float32 (backward formulas evaluated on float32 saved tensors, e.g. 1 − y² from a rounded y);
 * the numeric side is float64 central differences whose own error is ~1e-10 (truncation eps² plus
 * rounding 1e-16/eps). Same values as PyTorch gradcheck's float32 advice and tinygrad's gradient atol.
 */
const GRAD_ATOL = 1e-4;
const GRAD_RTOL = 1e-3;
/** Central-difference step in float64: truncation O(eps²) ≈ 1e-12 and rounding O(1e-16/eps) ≈ 1e-10. */
const FD_EPS = 1e-6;
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

const FC_PARAMS: fc.Parameters<unknown> = {
  numRuns: NUM_RUNS,
  // Put the failing assertion (worst element, values, tolerance) in the report next to the seed.
  includeErrorInReport: true,
  ...(process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {}),
  ...(process.env['FC_PATH'] ? { path: process.env['FC_PATH'] } : {}),
};

// ---------------------------------------------------------------- backends

interface Backend {
  label: string;
  engine: Engine | null;
  /** Why the backend's properties are skipped, or false. */
  skip: string | false;
}

const engines: Engine[] = [];
after(async () => {
  for (const engine of engines) await engine.close();
});

function jsBackend(): Backend {
  const engine = createEngine({ backend: 'js', initialBytes: 8 << 20 });
  engines.push(engine);
  return { label: 'js reference backend', engine, skip: false };
}

/**
 * The wasm backend with one thread, if it exists yet: it needs workers/wasm-compute.ts and the built
 * modules in workers/generated. src/index.ts is imported first because the backend may be registered
 * by it (the original design) rather than imported by src/engine.ts directly (the current one).
 */
async function wasmBackend(): Promise<Backend> {
  const label = 'wasm backend, 1 thread';
  const skip = (why: string): Backend => ({ label, engine: null, skip: `wasm backend unavailable: ${why}` });
  const workers = new URL('../workers/', import.meta.url);
  if (!existsSync(new URL('wasm-compute.ts', workers))) return skip('workers/wasm-compute.ts does not exist yet');
  const generated = fileURLToPath(new URL('generated/', workers));
  if (!existsSync(generated) || !readdirSync(generated).some((f) => f.endsWith('.wasm'))) {
    return skip('workers/generated/*.wasm missing: run npm run build:wasm');
  }
  try {
    await import('../src/index.ts');
  } catch (error) {
    return skip(`importing src/index.ts failed: ${String(error)}`);
  }
  try {
    const engine = createEngine({ backend: 'wasm', threads: 1, initialBytes: 8 << 20 });
    engines.push(engine);
    return { label: `${label} (${engine.compute.name})`, engine, skip: false };
  } catch (error) {
    return skip(`createEngine({ backend: 'wasm', threads: 1 }) failed: ${String(error)}`);
  }
}

const backends: Backend[] = [jsBackend(), await wasmBackend()];

// ---------------------------------------------------------------- harness

/** Bytes of each step's arena filled with NaN before use, so a kernel that skips an element shows. */
const POISON_BYTES = 64 << 10;

/** One engine plus a reusable arena for the steps of the properties. */
class Harness {
  private readonly arena: Arena;
  constructor(readonly engine: Engine) {
    this.arena = engine.heap.arena();
  }

  /** A fresh StepContext whose arena memory is poisoned with NaN (arenas never clear on alloc). */
  step(rows: number, training: boolean, seed: number): StepContext {
    this.arena.reset();
    const p = this.arena.alloc(POISON_BYTES);
    this.engine.heap.f32.fill(Number.NaN, p >> 2, (p + POISON_BYTES) >> 2);
    this.arena.reset();
    return new StepContext(this.engine, this.arena, rows, training, new Random(seed), 0);
  }
}

/** Builds `layer` for `inputShape` with a minimal BuildContext; parameters are freed by `free()`. */
function buildLayer(engine: Engine, layer: Layer, inputShape: Shape): { outShape: Shape; params: Parameter[]; free: () => void } {
  const params: Parameter[] = [];
  const rng = new Random(0);
  const ctx: BuildContext = {
    engine,
    rng,
    addParameter(name, shape, init, fans, regularizer) {
      const bytes = sizeOf(shape) * 4;
      const value = new Tensor(engine.heap, engine.heap.alloc(bytes), shape);
      const grad = new Tensor(engine.heap, engine.heap.alloc(bytes), shape);
      init.fill(value.data(), fans, rng);
      grad.data().fill(Number.NaN);
      const p: Parameter = { name: `${layer.name || layer.kind}/${name}`, shape, value, grad, regularizer: regularizer ?? null, trainable: true };
      params.push(p);
      return p;
    },
  };
  const outShape = layer.build(inputShape, ctx);
  const free = () => {
    for (const p of params) {
      engine.heap.free(p.value.ptr);
      engine.heap.free(p.grad.ptr);
    }
  };
  return { outShape, params, free };
}

interface LayerRun {
  y: Float32Array;
  yShape: Shape;
  dx: Float32Array;
  /** Parameter gradients after backward(…, needInputGradient = true). */
  grads: Float32Array[];
  /** Parameter gradients after backward(…, needInputGradient = false), which must be the same. */
  gradsWithoutInput: Float32Array[];
  /** The input tensor after forward and backward (must be unchanged). */
  xAfter: Float32Array;
  /** What forward saved with step.save (read with step.restore), when asked for. */
  saved: Float32Array[] | null;
}

/** Forward, then backward without and with the input gradient, on one step. */
async function runLayer(
  h: Harness, layer: Layer, params: Parameter[], inputShape: Shape, rows: number, x: ref.Values, dy: ref.Values,
  options: { training: boolean; seed: number; readSaved?: boolean },
): Promise<LayerRun> {
  const step = h.step(rows, options.training, options.seed);
  const xt = step.alloc([rows, ...inputShape]);
  xt.data().set(x);
  const y = await layer.forward(xt, step);
  const yShape = y.shape;
  const yCopy = y.toFloat32Array();
  const saved = options.readSaved ? step.restore(layer).map((t) => t.toFloat32Array()) : null;
  assert.equal(y.size, dy.length, `${layer.kind}: forward output shape [${yShape.join(', ')}] has ${y.size} elements, expected ${dy.length}`);
  const dyt = step.alloc(yShape);
  dyt.data().set(dy);
  // Gradients are overwritten by each backward (src/layer.ts): NaN shows any element not written.
  for (const p of params) p.grad.data().fill(Number.NaN);
  const none = await layer.backward(dyt, step, false);
  assert.equal(none, null, `${layer.kind}: backward(…, needInputGradient = false) must return null`);
  const gradsWithoutInput = params.map((p) => p.grad.toFloat32Array());
  for (const p of params) p.grad.data().fill(Number.NaN);
  const dxt = await layer.backward(dyt, step, true);
  assert.ok(dxt, `${layer.kind}: backward(…, needInputGradient = true) returned null`);
  assert.deepEqual([...dxt.shape], [...xt.shape], `${layer.kind}: dx shape differs from x shape`);
  return {
    y: yCopy, yShape, dx: dxt.toFloat32Array(), grads: params.map((p) => p.grad.toFloat32Array()), gradsWithoutInput,
    xAfter: xt.toFloat32Array(), saved,
  };
}

function maxAbs(values: ref.Values): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return m;
}

/** Element-wise closeness with a tensor-scaled absolute part; the message names the worst element. */
function assertClose(actual: ref.Values, expected: ref.Values, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const scale = Math.max(1, maxAbs(expected));
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = atol * scale + rtol * Math.abs(e);
    if (!(Math.abs(a - e) <= tol)) {
      assert.fail(`${what}[${i}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > tolerance ${tol})`);
    }
  }
}

// ---------------------------------------------------------------- arbitraries

/** A bounded, NaN- and infinity-free float32 (bounds must be exact float32 values). */
const f32 = (min: number, max: number): Arbitrary<number> =>
  fc.float({ min: Math.fround(min), max: Math.fround(max), noNaN: true, noDefaultInfinity: true });

const VALUE = f32(-3, 3);
/** Away from a kink at 0 by construction (fc.float favours tiny values, fc.pre alone would starve). */
const AWAY_FROM_ZERO = fc.tuple(fc.boolean(), f32(2 * KINK_MARGIN, 3)).map(([negative, m]) => (negative ? -m : m));
const LABEL_SEED = fc.nat();

const fixed = <T>(arb: Arbitrary<T>, n: number): Arbitrary<T[]> => fc.array(arb, { minLength: n, maxLength: n });

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
async function checkOperator(h: Harness, spec: OperatorSpec, c: OperatorCase): Promise<void> {
  if (spec.nearKink) fc.pre(!c.x.some(spec.nearKink));
  const { d, extra, x, dy } = c;
  const layer = spec.make(d, extra);
  const inputShape = inputShapeOf(d);
  const built = buildLayer(h.engine, layer, inputShape);
  try {
    const outShape = [...inputShape.slice(0, -1), spec.outFeatures(d)];
    assert.deepEqual([...built.outShape], outShape, `${spec.title}: build shape rule`);
    const shapes = spec.paramShapes(d);
    assert.deepEqual(built.params.map((p) => [...p.shape]), shapes.map((s) => [...s]), `${spec.title}: parameter shapes`);
    assert.deepEqual(layer.parameters(), built.params, `${spec.title}: parameters() must list the built parameters in order`);
    built.params.forEach((p, i) => p.value.data().set(c.params[i]!));
    const params = built.params.map((p) => p.value.toFloat32Array());

    const run = await runLayer(h, layer, built.params, inputShape, d.rows, x, dy, { training: true, seed: 1 });
    assert.deepEqual([...run.yShape], [d.rows, ...outShape], `${spec.title}: forward output shape`);
    assert.deepEqual(run.xAfter, Float32Array.from(x), `${spec.title}: the input tensor was modified`);

    // (a) forward against the float64 reference, on the exact float32 values the engine saw.
    assertClose(run.y, spec.reference(x, params, d, extra), FORWARD_ATOL, FORWARD_RTOL, `${spec.file} ${spec.title} forward`);

    // (b) dL/dx and dL/dθ against central differences of L = Σ dy ⊙ f(x, θ) in float64.
    const numericDx = ref.centralDifferences((v) => ref.weightedSum(dy, spec.reference(v, params, d, extra)), x, FD_EPS);
    assertClose(run.dx, numericDx, GRAD_ATOL, GRAD_RTOL, `${spec.file} ${spec.title} dL/dx`);
    built.params.forEach((p, k) => {
      const numeric = ref.centralDifferences(
        (v) => ref.weightedSum(dy, spec.reference(x, params.map((q, j) => (j === k ? v : q)), d, extra)), params[k]!, FD_EPS,
      );
      assertClose(run.grads[k]!, numeric, GRAD_ATOL, GRAD_RTOL, `${spec.file} ${spec.title} dL/d(${p.name})`);
      assert.deepEqual(run.gradsWithoutInput[k], run.grads[k], `${spec.title}: ${p.name} gradient depends on needInputGradient`);
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
  correct: number | null;
  outputAfter: Float32Array;
}

/** Computes `loss` on an output tensor with the given labels and/or targets set on the step. */
function runLoss(h: Harness, loss: Loss, output: ref.Values, outShape: Shape, given: { labels?: ref.Values; targets?: ref.Values }): LossRun {
  const step = h.step(outShape[0]!, true, 0);
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
  return { loss: result.loss, lossWithoutGradient: without.loss, grad: result.grad.toFloat32Array(), correct: result.correct, outputAfter: out.toFloat32Array() };
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

for (const backend of backends) {
  describe(`gradients and forward on the ${backend.label}`, { skip: backend.skip }, () => {
    // describe's callback runs even when skipped in some Node versions; guard the engine.
    if (!backend.engine) return;
    const h = new Harness(backend.engine);

    for (const spec of OPERATORS) {
      it(`${spec.file}: ${spec.title} forward = float64 reference, backward = central differences`, async () => {
        await fc.assert(fc.asyncProperty(operatorCase(spec), (c) => checkOperator(h, spec, c)), FC_PARAMS);
      });
    }

    it('operators/softmax.ts: softmax is stable and normalised for logits up to ±1e4', async () => {
      const large = fc.oneof(fc.constantFrom(-1e4, 1e4), f32(-1e4, 1e4));
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({ rows: fc.constant(rows), cols: fc.constant(cols), x: fixed(large, rows * cols) }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, x }) => {
        const layer = softmax();
        const built = buildLayer(h.engine, layer, [cols]);
        const run = await runLayer(h, layer, built.params, [cols], rows, x, new Array<number>(rows * cols).fill(1), { training: true, seed: 0 });
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
        const built = buildLayer(h.engine, layer, inputShape);
        assert.deepEqual([...built.outShape], [...inputShape], 'dropout shape rule is the identity');
        assert.equal(built.params.length, 0);
        const run = await runLayer(h, layer, built.params, inputShape, d.rows, x, dy, { training: true, seed, readSaved: true });
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
        buildLayer(h.engine, layer, inputShape);
        const run = await runLayer(h, layer, [], inputShape, d.rows, x, dy, { training, seed });
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
          buildLayer(h.engine, layer, inputShape);
          masks.push((await runLayer(h, layer, [], inputShape, d.rows, x, dy, { training: true, seed, readSaved: true })).saved![0]!);
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
        buildLayer(h.engine, layer, [cols]);
        const run = await runLayer(h, layer, [], [cols], rows, ones, ones, { training: true, seed, readSaved: true });
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
        const run = runLoss(h, softmaxCrossEntropy(), logits, [rows, cols], { labels });
        checkLoss(run, logits, (v) => ref.softmaxCrossEntropy(v, labels, rows, cols), `softmaxCrossEntropy [${rows}, ${cols}]`);
        assert.equal(run.correct, ref.argmaxCorrect(logits, labels, rows, cols), 'softmaxCrossEntropy: correct count');
      }), FC_PARAMS);
    });

    it('src/losses.ts: softmaxCrossEntropy is finite and accurate for logits up to ±1e4', async () => {
      const large = fc.oneof(fc.constantFrom(-1e4, 1e4), f32(-1e4, 1e4));
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), logits: fixed(large, rows * cols), seed: LABEL_SEED,
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, logits, seed }) => {
        const labels = labelsFor(rows, cols, seed);
        const run = runLoss(h, softmaxCrossEntropy(), logits, [rows, cols], { labels });
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
        assertThrowsNaming(() => runLoss(h, softmaxCrossEntropy(), new Array<number>(rows * cols).fill(0), [rows, cols], { labels }),
          RangeError, ['softmaxCrossEntropy', `label ${bad}`, `row ${badRow}`]);
      }), FC_PARAMS);
    });

    it('src/losses.ts: meanSquaredError loss and gradient vs the reference', async () => {
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), y: fixed(VALUE, rows * cols), t: fixed(VALUE, rows * cols),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, y, t }) => {
        const run = runLoss(h, meanSquaredError(), y, [rows, cols], { targets: t });
        checkLoss(run, y, (v) => ref.meanSquaredError(v, t), `meanSquaredError [${rows}, ${cols}]`);
        assert.equal(run.correct, null);
      }), FC_PARAMS);
    });

    it('src/losses.ts: binaryCrossEntropyWithLogits with Float32 targets: loss, accuracy, gradient', async () => {
      const arb = MATRIX.chain(({ rows, cols }) => fc.record({
        rows: fc.constant(rows), cols: fc.constant(cols), x: fixed(VALUE, rows * cols), t: fixed(f32(0, 1), rows * cols),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, cols, x, t }) => {
        const run = runLoss(h, binaryCrossEntropyWithLogits(), x, [rows, cols], { targets: t });
        checkLoss(run, x, (v) => ref.binaryCrossEntropyWithLogits(v, t), `binaryCrossEntropyWithLogits targets [${rows}, ${cols}]`);
        // Documented: accuracy compares the sign of the logit with t ≥ 0.5, per element, in row units.
        const agree = x.filter((v, i) => (v > 0) === (t[i]! >= 0.5)).length;
        assertClose([run.correct ?? Number.NaN], [(agree * rows) / x.length], 1e-12, 0, 'binaryCrossEntropyWithLogits correct');
      }), FC_PARAMS);
    });

    it('src/losses.ts: binaryCrossEntropyWithLogits with Int32 labels on a one-unit output', async () => {
      const arb = fc.integer({ min: 1, max: 5 }).chain((rows) => fc.record({
        rows: fc.constant(rows), x: fixed(VALUE, rows), labels: fixed(fc.integer({ min: 0, max: 1 }), rows),
      }));
      await fc.assert(fc.asyncProperty(arb, async ({ rows, x, labels }) => {
        const run = runLoss(h, binaryCrossEntropyWithLogits(), x, [rows, 1], { labels: Int32Array.from(labels) });
        checkLoss(run, x, (v) => ref.binaryCrossEntropyWithLogits(v, labels), `binaryCrossEntropyWithLogits labels [${rows}, 1]`);
        assert.equal(run.correct, x.filter((v, i) => (v > 0) === (labels[i] === 1)).length, 'binaryCrossEntropyWithLogits correct');
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
        assertThrowsNaming(() => runLoss(h, binaryCrossEntropyWithLogits(), new Array<number>(rows).fill(0), [rows, 1], { labels }),
          RangeError, ['binaryCrossEntropyWithLogits', `label ${bad}`, `row ${badRow}`]);
      }), FC_PARAMS);
    });

    it('src/losses.ts: missing labels/targets and mismatched sizes raise errors naming the loss', () => {
      assertThrowsNaming(() => runLoss(h, softmaxCrossEntropy(), [0, 0], [1, 2], {}), TypeError, ['softmaxCrossEntropy', 'labels']);
      assertThrowsNaming(() => runLoss(h, meanSquaredError(), [0, 0], [1, 2], {}), TypeError, ['meanSquaredError', 'targets']);
      assertThrowsNaming(() => runLoss(h, binaryCrossEntropyWithLogits(), [0, 0], [1, 2], {}), TypeError, ['binaryCrossEntropyWithLogits']);
      assertThrowsNaming(() => runLoss(h, softmaxCrossEntropy(), [0, 0, 0, 0], [2, 2], { labels: [0] }), RangeError, ['softmaxCrossEntropy', '2 rows', '1 labels']);
      assertThrowsNaming(() => runLoss(h, binaryCrossEntropyWithLogits(), [0, 0, 0, 0], [2, 2], { labels: [0, 1] }), RangeError, ['binaryCrossEntropyWithLogits', 'one-unit']);
      // A targets tensor of another size than the output (the step is set up by hand here).
      const step = h.step(2, true, 0);
      const out = step.alloc([2, 2]);
      out.data().fill(0);
      step.targets = step.alloc([2, 3]);
      step.targets.data().fill(0);
      assertThrowsNaming(() => meanSquaredError().compute(out, step, true), RangeError, ['meanSquaredError', '[2, 3]', '[2, 2]']);
    });
  });
}
