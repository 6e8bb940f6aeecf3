/**
 * The gradient-check harness the property files share: fast-check parameters, the test backends,
 * tensor-scaled closeness, building a layer on a tiny BuildContext, running forward and both
 * backwards on a NaN-poisoned StepContext, and checking forward and gradients against a float64
 * reference and its central differences.
 *
 * Replay a failure of any file with the seed and path fast-check prints:
 * `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/<file>.prop.ts`.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import { createEngine, type Engine } from '../src/engine.ts';
import type { Arena } from '../src/heap.ts';
import { StepContext, type BuildContext, type Layer, type Parameter } from '../src/layer.ts';
import { Random } from '../src/random.ts';
import { sizeOf, Tensor, type Shape } from '../src/tensor.ts';
import * as ref from './reference.ts';

// ---------------------------------------------------------------- tolerances (the common defaults)

/**
 * Forward: |engine − reference| ≤ FORWARD_ATOL·max(1, ‖reference‖∞) + FORWARD_RTOL·|reference|.
 * The engine stores float32 (relative rounding 6e-8) and the wasm kernels accumulate in float32 and
 * use polynomial exp/tanh; the error of a dot product scales with the magnitude of its terms, not of
 * its possibly cancelled result, so the absolute part is scaled by the tensor's largest entry.
 * 1e-5 / 1e-4 leave two orders of magnitude above float32 rounding for sums of ≤ 9 terms, yet
 * catch any wrong formula, index or missing bias (errors of order 1e-1).
 */
export const FORWARD_ATOL = 1e-5;
export const FORWARD_RTOL = 1e-4;
/**
 * Gradients: |analytic − numeric| ≤ GRAD_ATOL·max(1, ‖numeric‖∞) + GRAD_RTOL·|numeric|. The analytic
 * side is float32 (backward formulas evaluated on float32 saved tensors, e.g. 1 − y² from a rounded y);
 * the numeric side is float64 central differences whose own error is ~1e-10 (truncation eps² plus
 * rounding 1e-16/eps). Same values as PyTorch gradcheck's float32 advice and tinygrad's gradient atol.
 */
export const GRAD_ATOL = 1e-4;
export const GRAD_RTOL = 1e-3;
/** Central-difference step in float64: truncation O(eps²) ≈ 1e-12 and rounding O(1e-16/eps) ≈ 1e-10. */
export const FD_EPS = 1e-6;

/** An absolute part (scaled by max(1, ‖expected‖∞)) and a relative part. */
export interface Tolerance {
  atol: number;
  rtol: number;
}

// ---------------------------------------------------------------- fast-check

/** `numRuns` runs, the failing assertion in the report, and FC_SEED / FC_PATH from the environment for replay. */
export function fcParams(numRuns: number): fc.Parameters<unknown> {
  return {
    numRuns,
    // Put the failing assertion (worst element, values, tolerance) in the report next to the seed.
    includeErrorInReport: true,
    ...(process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {}),
    ...(process.env['FC_PATH'] ? { path: process.env['FC_PATH'] } : {}),
  };
}

/** A bounded, NaN- and infinity-free float32 (bounds must be exact float32 values). */
export const f32 = (min: number, max: number): Arbitrary<number> =>
  fc.float({ min: Math.fround(min), max: Math.fround(max), noNaN: true, noDefaultInfinity: true });

/** Exactly `n` draws of `arb`. */
export const fixed = <T>(arb: Arbitrary<T>, n: number): Arbitrary<T[]> => fc.array(arb, { minLength: n, maxLength: n });

/** Random float32 values in [−scale, scale) from a seed (fast-check draws the seed and the shapes). */
export function values(seed: number, n: number, scale: number): number[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => Math.fround((2 * rng.uniform() - 1) * scale));
}

// ---------------------------------------------------------------- backends

const engines: Engine[] = [];
// Registered when this module loads (the file's top level), so it runs after all of the file's tests.
after(async () => {
  for (const engine of engines) await engine.close();
});

/** Bytes of the test engines' initial heap unless a file asks for more. */
const INITIAL_BYTES = 8 << 20;

/** An engine closed after the file's tests: the wasm backend with one thread, or the JS reference kernels. */
export function testEngine(backend: 'wasm' | 'js', initialBytes = INITIAL_BYTES): Engine {
  const engine = backend === 'wasm' ? createEngine({ backend: 'wasm', threads: 1, initialBytes }) : createEngine({ backend: 'js', initialBytes });
  engines.push(engine);
  return engine;
}

export interface TestBackend {
  label: string;
  engine: Engine;
}

/** The backends every property runs on: wasm with one thread (its kernel set in the label) and the JS reference. */
export function testBackends(initialBytes = INITIAL_BYTES): TestBackend[] {
  const wasm = testEngine('wasm', initialBytes);
  return [
    { label: `wasm backend, 1 thread (${wasm.compute.name})`, engine: wasm },
    { label: 'js reference backend', engine: testEngine('js', initialBytes) },
  ];
}

// ---------------------------------------------------------------- closeness

export function maxAbs(values: ref.Values): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return m;
}

/**
 * Element-wise |actual − expected| ≤ atol·max(1, ‖expected‖∞) + rtol·|expected| (NaN fails); the
 * message names the worst element (largest excess over its tolerance).
 */
export function assertClose(actual: ref.Values, expected: ref.Values, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const scale = Math.max(1, maxAbs(expected));
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    const tol = atol * scale + rtol * Math.abs(expected[i]!);
    if (!(diff <= tol) && (worst < 0 || !(diff - tol <= worstExcess))) {
      worst = i;
      worstExcess = diff - tol;
    }
  }
  if (worst >= 0) {
    const a = actual[worst]!;
    const e = expected[worst]!;
    assert.fail(`${what}[${worst}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > tolerance ${atol * scale + rtol * Math.abs(e)})`);
  }
}

// ---------------------------------------------------------------- layers and steps

/** Bytes of each step's arena filled with NaN before use, so an element no kernel wrote shows. */
export const POISON_BYTES = 64 << 10;

const arenas = new WeakMap<Engine, Arena>();

/**
 * A fresh StepContext on the engine's one test arena, whose first `poisonBytes` are filled with NaN
 * (arenas never clear on alloc). Each call resets the arena: copy out what an earlier step produced.
 */
export function poisonedStep(engine: Engine, rows: number, options: { training: boolean; seed: number; poisonBytes?: number }): StepContext {
  let arena = arenas.get(engine);
  if (!arena) arenas.set(engine, (arena = engine.heap.arena()));
  const bytes = options.poisonBytes ?? POISON_BYTES;
  arena.reset();
  const p = arena.alloc(bytes);
  engine.heap.f32.fill(Number.NaN, p >> 2, (p + bytes) >> 2);
  arena.reset();
  return new StepContext(engine, arena, rows, options.training, new Random(options.seed), 0);
}

export interface BuiltLayer {
  outShape: Shape;
  /** Parameters in the order the layer created them; gradients start as NaN (backward must overwrite them). */
  params: Parameter[];
  /** Frees the parameters' heap memory. */
  free(): void;
}

/**
 * Builds `layer` for `inputShape` with a minimal BuildContext (initialisers drawn from Random(0)).
 * Parameters are named as the layer names them, or `<layer name or kind>/<name>` with `qualifiedNames`.
 */
export function buildLayer(engine: Engine, layer: Layer, inputShape: Shape, options: { qualifiedNames?: boolean } = {}): BuiltLayer {
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
      const fullName = options.qualifiedNames ? `${layer.name || layer.kind}/${name}` : name;
      const p: Parameter = { name: fullName, shape, value, grad, regularizer: regularizer ?? null, trainable: true };
      params.push(p);
      return p;
    },
  };
  const outShape = layer.build(inputShape, ctx);
  return {
    outShape, params,
    free() {
      for (const p of params) {
        engine.heap.free(p.value.ptr);
        engine.heap.free(p.grad.ptr);
      }
    },
  };
}

export interface LayerRun {
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

export interface RunOptions {
  training: boolean;
  /** Seed of the step's generator (dropout masks). */
  seed: number;
  /** NaN-poisoned bytes of the arena (default POISON_BYTES). */
  poisonBytes?: number;
  /** Copy out what forward saved (step.restore(layer)). */
  readSaved?: boolean;
  /** Called after x is written and before forward: side columns go on the step here. */
  beforeForward?(step: StepContext): void;
  /** Called after each backward (its checks done and parameter gradients copied), with its needInputGradient. */
  afterBackward?(step: StepContext, needInputGradient: boolean): void;
}

/**
 * Forward, then backward without and with the input gradient, on one poisoned step. Parameter
 * gradients are NaN-filled before each backward (each backward overwrites them, src/layer.ts), so an
 * element not written shows. Checks: output size = dy size, backward(…, false) returns null,
 * backward(…, true) returns dx of x's shape.
 */
export async function runLayer(
  engine: Engine, layer: Layer, params: readonly Parameter[], rows: number, inputShape: Shape, x: ref.Values, dy: ref.Values,
  options: RunOptions,
): Promise<LayerRun> {
  const step = poisonedStep(engine, rows, options);
  const xt = step.alloc([rows, ...inputShape]);
  xt.data().set(x);
  options.beforeForward?.(step);
  const y = await layer.forward(xt, step);
  const yShape = y.shape;
  const yCopy = y.toFloat32Array();
  const saved = options.readSaved ? step.restore(layer).map((t) => t.toFloat32Array()) : null;
  assert.equal(y.size, dy.length, `${layer.kind}: forward output shape [${yShape.join(', ')}] has ${y.size} elements, expected ${dy.length}`);
  const dyt = step.alloc(yShape);
  dyt.data().set(dy);
  for (const p of params) p.grad.data().fill(Number.NaN);
  const none = await layer.backward(dyt, step, false);
  assert.equal(none, null, `${layer.kind}: backward(…, needInputGradient = false) must return null`);
  const gradsWithoutInput = params.map((p) => p.grad.toFloat32Array());
  options.afterBackward?.(step, false);
  for (const p of params) p.grad.data().fill(Number.NaN);
  const dxt = await layer.backward(dyt, step, true);
  assert.ok(dxt, `${layer.kind}: backward(…, needInputGradient = true) returned null`);
  assert.deepEqual([...dxt.shape], [...xt.shape], `${layer.kind}: dx shape differs from x shape`);
  options.afterBackward?.(step, true);
  return {
    y: yCopy, yShape, dx: dxt.toFloat32Array(), grads: params.map((p) => p.grad.toFloat32Array()), gradsWithoutInput,
    xAfter: xt.toFloat32Array(), saved,
  };
}

/** The current values of the parameters, as float32 copies (θ for a reference). */
export const parameterValues = (params: readonly Parameter[]): Float32Array[] => params.map((p) => p.value.toFloat32Array());

/** One run to check against a float64 reference f(x, θ). */
export interface GradientCheck {
  /** Names the case in every message. */
  what: string;
  run: LayerRun;
  params: readonly Parameter[];
  /** The parameter values the run used, in `params` order. */
  theta: readonly ref.Values[];
  x: ref.Values;
  dy: ref.Values;
  reference(x: ref.Values, theta: readonly ref.Values[]): ref.Values;
  /** Default FORWARD_ATOL / FORWARD_RTOL. */
  forward?: Tolerance;
  /** Default GRAD_ATOL / GRAD_RTOL. */
  grad?: Tolerance;
}

/**
 * (a) The forward output against reference(x, θ), and (b) dL/dx and every parameter gradient against
 * central differences (step FD_EPS) of L = Σ dy ⊙ reference(x, θ) in float64; each parameter gradient
 * must not depend on needInputGradient.
 */
export function checkGradients(c: GradientCheck): void {
  const { what, run, params, theta, x, dy, reference } = c;
  const forward = c.forward ?? { atol: FORWARD_ATOL, rtol: FORWARD_RTOL };
  const grad = c.grad ?? { atol: GRAD_ATOL, rtol: GRAD_RTOL };
  assertClose(run.y, reference(x, theta), forward.atol, forward.rtol, `${what} forward`);
  const loss = (xv: ref.Values, th: readonly ref.Values[]) => ref.weightedSum(dy, reference(xv, th));
  assertClose(run.dx, ref.centralDifferences((v) => loss(v, theta), x, FD_EPS), grad.atol, grad.rtol, `${what} dL/dx`);
  params.forEach((p, k) => {
    const numeric = ref.centralDifferences((v) => loss(x, theta.map((t, j) => (j === k ? v : t))), theta[k]!, FD_EPS);
    assertClose(run.grads[k]!, numeric, grad.atol, grad.rtol, `${what} dL/d(${p.name})`);
    assert.deepEqual(run.gradsWithoutInput[k], run.grads[k], `${what}: ${p.name} gradient depends on needInputGradient`);
  });
}
