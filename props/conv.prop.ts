/**
 * Properties of the convolutional operators and kernels: conv2d, maxPool2d, avgPool2d, globalAvgPool2d,
 * flatten, batchNorm, spatialDropout2d (operators/<name>.ts), and the conv/pooling/batch-norm kernels of
 * workers/kernel-api.ts.
 *
 * Operators (wasm backend, 1 thread, and the JS reference backend): forward against a float64 reference
 * written here from the definitions, and every gradient (input, filter, bias, gamma, beta) against central
 * differences of L = Σ dy ⊙ f(x) on that reference, over random strides, paddings ('valid', 'same',
 * explicit), dilations, channel counts (1, odd, ≥ 16 to reach the 16-wide tiles), 1×1 kernels and kernels
 * as large as the (padded) input.
 * Kernels: conv2dForward / Im2col / BackwardInput / BackwardFilter and the pooling and batch-norm kernels
 * against the float64 JS reference kernels, on one thread and split across 2 threads (forced with
 * splitThresholdFlops = 0); the split forward and input gradient must equal one thread bitwise.
 *
 * Tolerances (float32 engine vs float64 reference):
 * - forward: |err| ≤ 1e-5·max(1, ‖ref‖∞) + 1e-4·|ref| (sums of ≤ a few hundred terms of magnitude ≤ 3·1);
 * - gradients: |err| ≤ 1e-4·max(1, ‖numeric‖∞) + 1e-3·|numeric| (as props/gradients.prop.ts); central
 *   differences with eps = 1e-3 on linear maps (conv, pooling: exact up to rounding), 1e-5 on batchNorm;
 * - kernels: |err| ≤ 2e-6·(terms)·max|a|·max|b| + 1e-6, the GEMM bound of props/kernels.prop.ts;
 * - max pooling: windows whose two largest values are within 1e-2 are excluded (fc.pre) so x ± eps never
 *   changes the winner.
 *
 * Run: `node --import tsx --test props/conv.prop.ts`
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { createEngine, type Engine } from '../src/engine.ts';
import { SharedHeap } from '../src/heap.ts';
import { ShapeError, StepContext, type Layer, type Parameter } from '../src/layer.ts';
import { sequential } from '../src/model.ts';
import { Random } from '../src/random.ts';
import { sizeOf, type Shape } from '../src/tensor.ts';
import { layerFromConfig } from '../operators/index.ts';
import { conv2d, type Padding2d } from '../operators/conv2d.ts';
import { maxPool2d } from '../operators/max-pool2d.ts';
import { avgPool2d } from '../operators/avg-pool2d.ts';
import { globalAvgPool2d } from '../operators/global-avg-pool2d.ts';
import { flatten } from '../operators/flatten.ts';
import { batchNorm } from '../operators/batch-norm.ts';
import { spatialDropout2d } from '../operators/spatial-dropout2d.ts';
import { dense } from '../operators/dense.ts';
import { relu } from '../operators/relu.ts';
import { referenceKernels } from '../workers/reference-kernels.ts';
import { createWasmCompute } from '../workers/wasm-compute.ts';
import { buildLayer } from './harness.ts';

const FORWARD_ATOL = 1e-5;
const FORWARD_RTOL = 1e-4;
const GRAD_ATOL = 1e-4;
const GRAD_RTOL = 1e-3;
const RUNS = 40;

const engines: Engine[] = [createEngine({ threads: 1, initialBytes: 16 << 20 }), createEngine({ backend: 'js', initialBytes: 16 << 20 })];
const labels = ['wasm 1 thread', 'js reference'];
after(async () => {
  for (const e of engines) await e.close();
});

// ---------------------------------------------------------------- float64 references

interface Geo {
  N: number; H: number; W: number; C: number; OH: number; OW: number; CO: number;
  KH: number; KW: number; sh: number; sw: number; pt: number; pl: number; dh: number; dw: number;
}

function convRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, g: Geo): Float64Array {
  const y = new Float64Array(g.N * g.OH * g.OW * g.CO);
  for (let n = 0; n < g.N; n++) for (let oy = 0; oy < g.OH; oy++) for (let ox = 0; ox < g.OW; ox++) for (let co = 0; co < g.CO; co++) {
    let s = b ? b[co]! : 0;
    for (let ky = 0; ky < g.KH; ky++) for (let kx = 0; kx < g.KW; kx++) {
      const iy = oy * g.sh - g.pt + ky * g.dh;
      const ix = ox * g.sw - g.pl + kx * g.dw;
      if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
      for (let ci = 0; ci < g.C; ci++) s += x[((n * g.H + iy) * g.W + ix) * g.C + ci]! * w[((ky * g.KW + kx) * g.C + ci) * g.CO + co]!;
    }
    y[((n * g.OH + oy) * g.OW + ox) * g.CO + co] = s;
  }
  return y;
}

/** Window pooling reference: reduce over the in-image taps (max or mean). */
function poolRef(x: ArrayLike<number>, g: Geo, kind: 'max' | 'avg'): Float64Array {
  const y = new Float64Array(g.N * g.OH * g.OW * g.C);
  for (let n = 0; n < g.N; n++) for (let oy = 0; oy < g.OH; oy++) for (let ox = 0; ox < g.OW; ox++) for (let c = 0; c < g.C; c++) {
    const vals: number[] = [];
    for (let ky = 0; ky < g.KH; ky++) for (let kx = 0; kx < g.KW; kx++) {
      const iy = oy * g.sh - g.pt + ky;
      const ix = ox * g.sw - g.pl + kx;
      if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) vals.push(x[((n * g.H + iy) * g.W + ix) * g.C + c]!);
    }
    y[((n * g.OH + oy) * g.OW + ox) * g.C + c] = kind === 'max' ? Math.max(...vals) : vals.reduce((a, v) => a + v, 0) / vals.length;
  }
  return y;
}

/** Top-two gap of every max-pool window (for fc.pre: ties excluded). */
function minWindowGap(x: ArrayLike<number>, g: Geo): number {
  let gap = Infinity;
  for (let n = 0; n < g.N; n++) for (let oy = 0; oy < g.OH; oy++) for (let ox = 0; ox < g.OW; ox++) for (let c = 0; c < g.C; c++) {
    const vals: number[] = [];
    for (let ky = 0; ky < g.KH; ky++) for (let kx = 0; kx < g.KW; kx++) {
      const iy = oy * g.sh - g.pt + ky;
      const ix = ox * g.sw - g.pl + kx;
      if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) vals.push(x[((n * g.H + iy) * g.W + ix) * g.C + c]!);
    }
    vals.sort((a, b) => b - a);
    if (vals.length > 1) gap = Math.min(gap, vals[0]! - vals[1]!);
  }
  return gap;
}

function batchNormRef(x: ArrayLike<number>, rows: number, C: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(rows * C);
  for (let c = 0; c < C; c++) {
    let m = 0;
    for (let r = 0; r < rows; r++) m += x[r * C + c]!;
    m /= rows;
    let v = 0;
    for (let r = 0; r < rows; r++) v += (x[r * C + c]! - m) ** 2;
    v /= rows;
    for (let r = 0; r < rows; r++) y[r * C + c] = ((x[r * C + c]! - m) / Math.sqrt(v + eps)) * gamma[c]! + beta[c]!;
  }
  return y;
}

/** Central differences of L(v) = Σ dy ⊙ f(v) with respect to every element of v. */
function numericGrad(f: (v: Float64Array) => Float64Array, v: ArrayLike<number>, dy: ArrayLike<number>, eps: number): Float64Array {
  const p = Float64Array.from(v);
  const grad = new Float64Array(p.length);
  const L = (): number => {
    const y = f(p);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dy[i]! * y[i]!;
    return s;
  };
  for (let i = 0; i < p.length; i++) {
    const keep = p[i]!;
    p[i] = keep + eps;
    const up = L();
    p[i] = keep - eps;
    const down = L();
    p[i] = keep;
    grad[i] = (up - down) / (2 * eps);
  }
  return grad;
}

// ---------------------------------------------------------------- harness

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return m;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const scale = Math.max(1, maxAbs(expected));
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = atol * scale + rtol * Math.abs(e);
    if (!(Math.abs(a - e) <= tol)) assert.fail(`${what}[${i}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > ${tol})`);
  }
}

/** Deterministic values in [lo, hi) from a seed. */
function values(count: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(count);
  let s = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}


interface Run {
  y: Float32Array;
  dx: Float32Array;
  grads: Float32Array[];
  step: StepContext;
}

/** Forward and backward (with the input gradient) of a built layer on one fresh step. */
async function run(engine: Engine, layer: Layer, params: Parameter[], shape: Shape, x: Float32Array, dyOf: (ySize: number) => Float32Array, training = true, seed = 1): Promise<Run> {
  const arena = engine.heap.arena();
  const rows = x.length / sizeOf(shape);
  const step = new StepContext(engine, arena, rows, training, new Random(seed), 0);
  const xt = step.alloc([rows, ...shape]);
  xt.data().set(x);
  const y = await layer.forward(xt, step);
  const yCopy = y.toFloat32Array();
  const dy = step.alloc(y.shape);
  dy.data().set(dyOf(y.size));
  const dx = await layer.backward(dy, step, true);
  assert.ok(dx, `${layer.kind}: no input gradient`);
  const out = { y: yCopy, dx: dx.toFloat32Array(), grads: params.map((p) => p.grad.toFloat32Array()), step };
  arena.dispose();
  return out;
}

// ---------------------------------------------------------------- arbitraries

const paddingArb: fc.Arbitrary<Padding2d> = fc.oneof(
  fc.constant('valid' as const), fc.constant('same' as const),
  fc.record({ top: fc.nat(2), bottom: fc.nat(2), left: fc.nat(2), right: fc.nat(2) }),
);

/** A conv case whose window fits the padded input. */
const convCase = fc
  .record({
    N: fc.integer({ min: 1, max: 2 }), H: fc.integer({ min: 1, max: 7 }), W: fc.integer({ min: 1, max: 7 }),
    C: fc.oneof(fc.constantFrom(1, 3), fc.integer({ min: 1, max: 5 })),
    CO: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constantFrom(16, 21)),
    KH: fc.integer({ min: 1, max: 4 }), KW: fc.integer({ min: 1, max: 4 }),
    sh: fc.integer({ min: 1, max: 3 }), sw: fc.integer({ min: 1, max: 3 }),
    dh: fc.integer({ min: 1, max: 2 }), dw: fc.integer({ min: 1, max: 2 }),
    padding: paddingArb, useBias: fc.boolean(), seed: fc.integer(),
    // Kernels as large as the input: replace KH/KW by the input size.
    whole: fc.boolean(),
  })
  .map((c) => (c.whole ? { ...c, KH: c.H, KW: c.W, dh: 1, dw: 1 } : c))
  .filter((c) => {
    const pad = c.padding === 'same' ? null : c.padding === 'valid' ? { top: 0, bottom: 0, left: 0, right: 0 } : c.padding;
    if (!pad) return true;
    return c.H + pad.top + pad.bottom >= c.dh * (c.KH - 1) + 1 && c.W + pad.left + pad.right >= c.dw * (c.KW - 1) + 1;
  });

/** The resolved geometry of a built conv/pool layer from its output shape and config. */
function geometry(layer: Layer, N: number, inShape: Shape, outShape: Shape, k: [number, number], s: [number, number], d: [number, number], padding: Padding2d, CO: number): Geo {
  const [H, W, C] = inShape as [number, number, number];
  const [OH, OW] = outShape as [number, number];
  let pt = 0;
  let pl = 0;
  if (padding === 'same') {
    pt = Math.floor(Math.max(0, (OH - 1) * s[0] + d[0] * (k[0] - 1) + 1 - H) / 2);
    pl = Math.floor(Math.max(0, (OW - 1) * s[1] + d[1] * (k[1] - 1) + 1 - W) / 2);
  } else if (padding !== 'valid') {
    pt = padding.top;
    pl = padding.left;
  }
  void layer;
  return { N, H, W, C, OH, OW, CO, KH: k[0], KW: k[1], sh: s[0], sw: s[1], pt, pl, dh: d[0], dw: d[1] };
}

// ---------------------------------------------------------------- operator properties

for (const [e, engine] of engines.entries()) {
  describe(`conv operators on ${labels[e]}`, () => {
    it('conv2d: forward, dx, dW, db vs float64 central differences (strides, paddings, dilations, 1×1 and whole-input kernels)', async () => {
      await fc.assert(
        fc.asyncProperty(convCase, async (c) => {
          const layer = conv2d(c.CO, [c.KH, c.KW], { strides: [c.sh, c.sw], dilation: [c.dh, c.dw], padding: c.padding, useBias: c.useBias });
          const inShape = [c.H, c.W, c.C];
          const { outShape, params, free } = buildLayer(engine, layer, inShape);
          try {
            const g = geometry(layer, c.N, inShape, outShape, [c.KH, c.KW], [c.sh, c.sw], [c.dh, c.dw], c.padding, c.CO);
            const x = values(c.N * c.H * c.W * c.C, c.seed);
            const w = params[0]!.value.toFloat32Array();
            const b = c.useBias ? values(c.CO, c.seed + 3) : null;
            if (b) params[1]!.value.data().set(b);
            let dyv: Float32Array = new Float32Array(0);
            const r = await run(engine, layer, params, inShape, x, (n) => (dyv = values(n, c.seed + 7)));
            const what = `conv2d ${JSON.stringify(g)} bias ${c.useBias}`;
            assertClose(r.y, convRef(x, w, b, g), FORWARD_ATOL, FORWARD_RTOL, `${what} y`);
            const eps = 1e-3;
            assertClose(r.dx, numericGrad((v) => convRef(v, w, b, g), x, dyv, eps), GRAD_ATOL, GRAD_RTOL, `${what} dx`);
            assertClose(r.grads[0]!, numericGrad((v) => convRef(x, v, b, g), w, dyv, eps), GRAD_ATOL, GRAD_RTOL, `${what} dW`);
            if (b) assertClose(r.grads[1]!, numericGrad((v) => convRef(x, w, v, g), b, dyv, eps), GRAD_ATOL, GRAD_RTOL, `${what} db`);
          } finally {
            free();
          }
        }),
        { numRuns: RUNS },
      );
    });

    it("conv2d({ activation: 'relu' }) equals conv2d then relu() bitwise: y, dx, dW, db; config round trip", async () => {
      await fc.assert(
        fc.asyncProperty(convCase, async (c) => {
          const opts = { strides: [c.sh, c.sw] as const, dilation: [c.dh, c.dw] as const, padding: c.padding, useBias: c.useBias };
          const fused = conv2d(c.CO, [c.KH, c.KW], { ...opts, activation: 'relu' });
          const plain = conv2d(c.CO, [c.KH, c.KW], opts);
          const inShape = [c.H, c.W, c.C];
          const A = buildLayer(engine, fused, inShape);
          const B = buildLayer(engine, plain, inShape);
          const act = relu();
          buildLayer(engine, act, B.outShape);
          try {
            // Same weights in both; zeros in x (every 5th value) also give all-zero windows, y = bias exactly.
            for (const [i, p] of B.params.entries()) p.value.data().set(A.params[i]!.value.data());
            const x = values(c.N * c.H * c.W * c.C, c.seed).map((v, i) => (i % 5 === 0 ? 0 : v));
            const dyv = (n: number) => values(n, c.seed + 7);
            const a = await run(engine, fused, A.params, inShape, x, dyv);
            // conv2d then relu on one step.
            const arena = engine.heap.arena();
            const step = new StepContext(engine, arena, c.N, true, new Random(1), 0);
            const xt = step.alloc([c.N, ...inShape]);
            xt.data().set(x);
            const y = await act.forward(await plain.forward(xt, step), step);
            const dy = step.alloc(y.shape);
            dy.data().set(dyv(y.size));
            const dx = await plain.backward((await act.backward(dy, step, true))!, step, true);
            const what = JSON.stringify(c);
            assert.deepEqual(a.y, y.toFloat32Array(), `y ${what}`);
            assert.deepEqual(a.dx, dx!.toFloat32Array(), `dx ${what}`);
            for (const [i, p] of B.params.entries()) assert.deepEqual(a.grads[i], p.grad.toFloat32Array(), `${p.name} grad ${what}`);
            arena.dispose();
            assert.equal(fused.config?.()['activation'], 'relu');
            assert.equal(layerFromConfig('conv2d', fused.config!(), 'c').config!()['activation'], 'relu');
          } finally {
            A.free();
            B.free();
          }
        }),
        { numRuns: Math.max(20, RUNS >> 1) },
      );
    });

    for (const kind of ['max', 'avg'] as const) {
      it(`${kind}Pool2d: forward and dx vs float64 central differences${kind === 'max' ? ' (ties excluded)' : ''}`, async () => {
        const poolCase = fc.record({
          N: fc.integer({ min: 1, max: 2 }), H: fc.integer({ min: 1, max: 7 }), W: fc.integer({ min: 1, max: 7 }),
          C: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 9 })),
          KH: fc.integer({ min: 1, max: 3 }), KW: fc.integer({ min: 1, max: 3 }),
          sh: fc.integer({ min: 1, max: 3 }), sw: fc.integer({ min: 1, max: 3 }),
          same: fc.boolean(), seed: fc.integer(),
        }).filter((c) => c.same || (c.H >= c.KH && c.W >= c.KW));
        await fc.assert(
          fc.asyncProperty(poolCase, async (c) => {
            const padding: Padding2d = c.same ? 'same' : 'valid';
            const layer = kind === 'max' ? maxPool2d([c.KH, c.KW], { strides: [c.sh, c.sw], padding }) : avgPool2d([c.KH, c.KW], { strides: [c.sh, c.sw], padding });
            const inShape = [c.H, c.W, c.C];
            const { outShape, free } = buildLayer(engine, layer, inShape);
            try {
              const g = geometry(layer, c.N, inShape, outShape, [c.KH, c.KW], [c.sh, c.sw], [1, 1], padding, c.C);
              const x = values(c.N * c.H * c.W * c.C, c.seed, -3, 3);
              if (kind === 'max') fc.pre(minWindowGap(x, g) > 1e-2);
              let dyv: Float32Array = new Float32Array(0);
              const r = await run(engine, layer, [], inShape, x, (n) => (dyv = values(n, c.seed + 5)));
              const what = `${kind}Pool2d ${JSON.stringify(g)}`;
              assertClose(r.y, poolRef(x, g, kind), FORWARD_ATOL, FORWARD_RTOL, `${what} y`);
              assertClose(r.dx, numericGrad((v) => poolRef(v, g, kind), x, dyv, 1e-3), GRAD_ATOL, GRAD_RTOL, `${what} dx`);
            } finally {
              free();
            }
          }),
          { numRuns: RUNS },
        );
      });
    }

    it('globalAvgPool2d and flatten: forward and dx vs float64 central differences', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({ N: fc.integer({ min: 1, max: 3 }), H: fc.integer({ min: 1, max: 6 }), W: fc.integer({ min: 1, max: 6 }), C: fc.integer({ min: 1, max: 9 }), seed: fc.integer() }),
          async ({ N, H, W, C, seed }) => {
            const x = values(N * H * W * C, seed);
            const gapRef = (v: ArrayLike<number>) => {
              const y = new Float64Array(N * C);
              for (let n = 0; n < N; n++) for (let p = 0; p < H * W; p++) for (let c = 0; c < C; c++) y[n * C + c] += v[(n * H * W + p) * C + c]! / (H * W);
              return y;
            };
            const gap = globalAvgPool2d();
            const b1 = buildLayer(engine, gap, [H, W, C]);
            assert.deepEqual(b1.outShape, [C]);
            let dyv: Float32Array = new Float32Array(0);
            const r = await run(engine, gap, [], [H, W, C], x, (n) => (dyv = values(n, seed + 1)));
            assertClose(r.y, gapRef(x), FORWARD_ATOL, FORWARD_RTOL, 'globalAvgPool2d y');
            assertClose(r.dx, numericGrad(gapRef, x, dyv, 1e-3), GRAD_ATOL, GRAD_RTOL, 'globalAvgPool2d dx');
            const fl = flatten();
            const b2 = buildLayer(engine, fl, [H, W, C]);
            assert.deepEqual(b2.outShape, [H * W * C]);
            const r2 = await run(engine, fl, [], [H, W, C], x, (n) => (dyv = values(n, seed + 2)));
            assert.deepEqual(r2.y, x, 'flatten keeps the row-major order (channels fastest)');
            assert.deepEqual(r2.dx, dyv, 'flatten backward is the inverse reshape');
          },
        ),
        { numRuns: RUNS },
      );
    });

    it('batchNorm (training): forward, dx, dgamma, dbeta vs float64 central differences; moving statistics updated', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({ rows: fc.integer({ min: 2, max: 12 }), C: fc.integer({ min: 1, max: 9 }), image: fc.boolean(), seed: fc.integer(), momentum: fc.constantFrom(0.9, 0.99) }),
          async ({ rows, C, image, seed, momentum }) => {
            const eps = 1e-3;
            const layer = batchNorm({ momentum, epsilon: eps });
            // [2, rows/2… ] as an image, or a plain feature vector.
            const inShape = image ? [1, 2, C] : [C];
            const n = image ? Math.ceil(rows / 2) : rows;
            const total = n * sizeOf(inShape) / C;
            const { params, free } = buildLayer(engine, layer, inShape);
            try {
              const [gammaP, betaP, mm, mv] = params as [Parameter, Parameter, Parameter, Parameter];
              const gamma = values(C, seed + 1, 0.5, 1.5);
              const beta = values(C, seed + 2);
              gammaP.value.data().set(gamma);
              betaP.value.data().set(beta);
              const x = values(total * C, seed, -2, 2);
              let dyv: Float32Array = new Float32Array(0);
              const r = await run(engine, layer, params, inShape, x, (k) => (dyv = values(k, seed + 3)));
              const f = (v: ArrayLike<number>, g: ArrayLike<number> = gamma, b: ArrayLike<number> = beta) => batchNormRef(v, total, C, g, b, eps);
              assertClose(r.y, f(x), 1e-4, 1e-4, 'batchNorm y');
              const h = 1e-5;
              assertClose(r.dx, numericGrad((v) => f(v), x, dyv, h), GRAD_ATOL, GRAD_RTOL, 'batchNorm dx');
              assertClose(r.grads[0]!, numericGrad((v) => f(x, v), gamma, dyv, h), GRAD_ATOL, GRAD_RTOL, 'batchNorm dgamma');
              assertClose(r.grads[1]!, numericGrad((v) => f(x, gamma, v), beta, dyv, h), GRAD_ATOL, GRAD_RTOL, 'batchNorm dbeta');
              // moving = m·moving + (1 − m)·batch, from mean 0 / variance 1.
              for (let c = 0; c < C; c++) {
                let m = 0;
                for (let i = 0; i < total; i++) m += x[i * C + c]!;
                m /= total;
                let v = 0;
                for (let i = 0; i < total; i++) v += (x[i * C + c]! - m) ** 2;
                v /= total;
                assert.ok(Math.abs(mm.value.data()[c]! - (1 - momentum) * m) < 1e-5, 'moving mean');
                assert.ok(Math.abs(mv.value.data()[c]! - (momentum + (1 - momentum) * v)) < 1e-5, 'moving variance');
              }
              assert.equal(mm.trainable, false);
              assert.equal(mv.trainable, false);
            } finally {
              free();
            }
          },
        ),
        { numRuns: RUNS },
      );
    });

    it('batchNorm (inference): normalises with the moving statistics, identity at the initial ones up to ε', async () => {
      const layer = batchNorm({ epsilon: 1e-3 });
      const { params, free } = buildLayer(engine, layer, [3]);
      try {
        const [, , mm, mv] = params as [Parameter, Parameter, Parameter, Parameter];
        mm.value.data().set([1, -1, 0.5]);
        mv.value.data().set([4, 0.25, 1]);
        const x = Float32Array.from([3, 0, 1, -1, -1, 0.5]);
        const r = await run(engine, layer, params, [3], x, (n) => new Float32Array(n).fill(1), false);
        const want = [3, 0, 1, -1, -1, 0.5].map((v, i) => (v - [1, -1, 0.5][i % 3]!) / Math.sqrt([4, 0.25, 1][i % 3]! + 1e-3));
        assertClose(r.y, want, 1e-6, 1e-6, 'inference y');
      } finally {
        free();
      }
    });

    it('spatialDropout2d: whole channels kept (scaled by 1/(1−rate)) or zeroed; dx = dy·mask; inference is the identity', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.record({ N: fc.integer({ min: 1, max: 3 }), H: fc.integer({ min: 1, max: 4 }), W: fc.integer({ min: 1, max: 4 }), C: fc.integer({ min: 1, max: 8 }), rate: fc.constantFrom(0, 0.25, 0.5, 0.9), seed: fc.integer() }),
          async ({ N, H, W, C, rate, seed }) => {
            const layer = spatialDropout2d(rate);
            buildLayer(engine, layer, [H, W, C]);
            const x = values(N * H * W * C, seed, 0.5, 1.5); // never 0: a zero output means a dropped channel
            let dyv: Float32Array = new Float32Array(0);
            const r = await run(engine, layer, [], [H, W, C], x, (n) => (dyv = values(n, seed + 1)), true, seed);
            for (let n = 0; n < N; n++) {
              for (let c = 0; c < C; c++) {
                const first = r.y[(n * H * W) * C + c]!;
                const scale = first === 0 ? 0 : 1 / (1 - rate);
                for (let p = 0; p < H * W; p++) {
                  const i = (n * H * W + p) * C + c;
                  assert.ok(Math.abs(r.y[i]! - x[i]! * scale) <= 1e-6 * Math.abs(x[i]! * scale), `y[${i}] not x·${scale}`);
                  assert.ok(Math.abs(r.dx[i]! - dyv[i]! * scale) <= 1e-6 * Math.abs(dyv[i]! * scale) + 0, `dx[${i}] not dy·${scale}`);
                }
              }
            }
            const inf = await run(engine, layer, [], [H, W, C], x, (n) => values(n, 1), false);
            assert.deepEqual(inf.y, x);
          },
        ),
        { numRuns: RUNS },
      );
    });
  });
}

describe('conv operators: build-time shapes and configs', () => {
  const engine = engines[0]!;
  it('a window larger than the (padded) input is a ShapeError at sequential(...) naming the layer and both shapes', () => {
    assert.throws(
      () => sequential([conv2d(4, 5), maxPool2d(2), conv2d(8, 3)], { inputShape: [6, 6, 1], engine }),
      (e: unknown) => e instanceof ShapeError && /conv2d_2 \(conv2d\)/.test(e.message) && /\[1, 1, 4\]/.test(e.message) && /\[3, 3\]/.test(e.message),
    );
    assert.throws(() => sequential([maxPool2d(3)], { inputShape: [2, 5, 1], engine }), (e: unknown) => e instanceof ShapeError && /maxPool2d_1/.test(e.message));
    assert.throws(() => sequential([conv2d(4, 3)], { inputShape: [784], engine }), (e: unknown) => e instanceof ShapeError && /\[784\]/.test(e.message));
    // 'same' padding always fits; dilation widens the window.
    const m = sequential([conv2d(4, 5, { padding: 'same' }), conv2d(2, 2, { dilation: 2 }), flatten(), dense(3)], { inputShape: [3, 3, 1], engine });
    assert.deepEqual(m.outputShape, [3]);
    assert.throws(() => sequential([conv2d(4, 2, { dilation: 4 })], { inputShape: [4, 4, 1], engine }), ShapeError);
    m.dispose();
  });

  it('every operator rebuilds from its config (checkpoints) with the same output shape', () => {
    const layers: Layer[] = [
      conv2d(3, [2, 3], { strides: [1, 2], padding: { top: 1, bottom: 0, left: 2, right: 1 }, dilation: [2, 1], useBias: false }),
      conv2d(4, 3, { padding: 'same' }), maxPool2d(2, { strides: 1, padding: 'same' }), avgPool2d([2, 1]), batchNorm({ momentum: 0.9 }),
      spatialDropout2d(0.2), globalAvgPool2d(), flatten(),
    ];
    const model = sequential(layers, { inputShape: [9, 8, 2], engine });
    const rebuilt = sequential(model.layers.map((l) => layerFromConfig(l.kind, l.config(), l.name)), { inputShape: [9, 8, 2], engine });
    assert.deepEqual(rebuilt.outputShape, model.outputShape);
    assert.deepEqual(rebuilt.parameters().map((p) => [p.name, p.shape, p.trainable]), model.parameters().map((p) => [p.name, p.shape, p.trainable]));
    model.dispose();
    rebuilt.dispose();
  });
});

// ---------------------------------------------------------------- kernel equivalence (1 thread and a forced 2-thread split)

describe('conv kernels equal the float64 reference, single thread and split across 2 threads', () => {
  const heap = new SharedHeap({ initialBytes: 32 << 20 });
  const ref = referenceKernels(() => heap.f32, () => heap.i32);
  const one = createWasmCompute(heap.memory, { threads: 1 });
  const two = createWasmCompute(heap.memory, { threads: 2, splitThresholdFlops: 0, splitThresholdBytes: 0 });
  after(async () => {
    await one.close();
    await two.close();
  });
  const arena = heap.arena();
  const put = (v: Float32Array) => {
    const p = arena.alloc(Math.max(1, v.length) * 4);
    heap.f32.set(v, p >> 2);
    return p;
  };
  const get = (p: number, n: number) => heap.f32.slice(p >> 2, (p >> 2) + n);
  const kernelCase = fc
    .record({
      N: fc.integer({ min: 1, max: 5 }), H: fc.integer({ min: 1, max: 10 }), W: fc.integer({ min: 1, max: 10 }),
      C: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 20 })), CO: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 14, max: 37 })),
      KH: fc.integer({ min: 1, max: 4 }), KW: fc.integer({ min: 1, max: 4 }), sh: fc.integer({ min: 1, max: 3 }), sw: fc.integer({ min: 1, max: 3 }),
      dh: fc.integer({ min: 1, max: 3 }), dw: fc.integer({ min: 1, max: 3 }),
      pt: fc.nat(3), pb: fc.nat(3), pl: fc.nat(3), pr: fc.nat(3), bias: fc.boolean(), seed: fc.integer(),
    })
    .map((c) => ({ ...c, OH: Math.floor((c.H + c.pt + c.pb - c.dh * (c.KH - 1) - 1) / c.sh) + 1, OW: Math.floor((c.W + c.pl + c.pr - c.dw * (c.KW - 1) - 1) / c.sw) + 1 }))
    .filter((c) => c.OH >= 1 && c.OW >= 1);

  type KernelCase = typeof kernelCase extends fc.Arbitrary<infer T> ? T : never;
  /** Every conv kernel of case c against the reference; forward and dx bitwise equal between 1 thread and the split. */
  async function checkKernels(c: KernelCase): Promise<void> {
    arena.reset();
    const g = [c.N, c.H, c.W, c.C, c.OH, c.OW, c.CO, c.KH, c.KW, c.sh, c.sw, c.pt, c.pl, c.dh, c.dw] as const;
    const taps = c.KH * c.KW * c.C;
    const nx = c.N * c.H * c.W * c.C, ny = c.N * c.OH * c.OW * c.CO, nw = taps * c.CO;
    const x = put(values(nx, c.seed)), w = put(values(nw, c.seed + 1)), b = c.bias ? put(values(c.CO, c.seed + 2)) : 0;
    const dy = put(values(ny, c.seed + 3));
    const y1 = put(new Float32Array(ny)), y2 = put(new Float32Array(ny)), yr = put(new Float32Array(ny)), yc = put(new Float32Array(ny));
    one.kernels.conv2dForward(x, w, b, y1, ...g);
    await two.conv2dForward(x, w, b, y2, ...g);
    ref.conv2dForward(x, w, b, yr, ...g);
    // Fused ReLU (activation 1) = reluForward of the plain output, bit for bit, split or not.
    const yf1 = put(new Float32Array(ny)), yf2 = put(new Float32Array(ny)), yrelu = put(new Float32Array(ny));
    one.kernels.conv2dForward(x, w, b, yf1, ...g, 1);
    await two.conv2dForward(x, w, b, yf2, ...g, 1);
    one.kernels.reluForward(y1, yrelu, ny);
    assert.deepEqual(get(yf1, ny), get(yrelu, ny), `fused relu forward ${JSON.stringify(c)}`);
    assert.deepEqual(get(yf2, ny), get(yrelu, ny), `split fused relu forward ${JSON.stringify(c)}`);
    const workFloats = 2 * (nw + 3 * taps) + 64;
    const work = put(new Float32Array(workFloats));
    one.kernels.conv2dForwardIm2col(x, w, b, yc, work, workFloats, ...g);
    const tol = 2e-6 * (taps + 1) + 1e-6;
    const what = JSON.stringify(c);
    assertClose(get(y1, ny), get(yr, ny), tol, 0, `forward ${what}`);
    assertClose(get(yc, ny), get(yr, ny), tol, 0, `forward im2col ${what}`);
    assert.deepEqual(get(y2, ny), get(y1, ny), `split forward differs from 1 thread ${what}`);
    const wt = put(new Float32Array(nw));
    one.kernels.conv2dTransposeFilter(w, wt, c.KH * c.KW, c.C, c.CO);
    const dx1 = put(new Float32Array(nx).fill(Number.NaN)), dx2 = put(new Float32Array(nx).fill(Number.NaN)), dxr = put(new Float32Array(nx));
    one.kernels.conv2dBackwardInput(dy, wt, dx1, ...g);
    await two.conv2dBackwardInput(dy, wt, dx2, ...g);
    ref.conv2dBackwardInput(dy, wt, dxr, ...g);
    assertClose(get(dx1, nx), get(dxr, nx), 2e-6 * (c.KH * c.KW * c.CO + 1) + 1e-6, 0, `backward input ${what}`);
    assert.deepEqual(get(dx2, nx), get(dx1, nx), `split dx differs from 1 thread ${what}`);
    const dw1 = put(new Float32Array(nw).fill(Number.NaN)), dw2 = put(new Float32Array(nw).fill(Number.NaN)), dwr = put(new Float32Array(nw));
    one.kernels.conv2dBackwardFilter(x, dy, dw1, work, workFloats, ...g);
    await two.conv2dBackwardFilter(x, dy, dw2, work, workFloats, ...g);
    ref.conv2dBackwardFilter(x, dy, dwr, 0, 0, ...g);
    const ftol = 2e-6 * (c.N * c.OH * c.OW + 1) + 1e-6;
    assertClose(get(dw1, nw), get(dwr, nw), ftol, 0, `backward filter ${what}`);
    assertClose(get(dw2, nw), get(dwr, nw), ftol, 0, `split backward filter ${what}`);
    // Bitwise reproducible for a given thread count.
    const dw3 = put(new Float32Array(nw));
    await two.conv2dBackwardFilter(x, dy, dw3, work, workFloats, ...g);
    assert.deepEqual(get(dw3, nw), get(dw2, nw), 'split filter gradient not reproducible');
  }

  it('conv2dForward, conv2dForwardIm2col, conv2dBackwardInput, conv2dBackwardFilter (split = 1 thread bitwise for y and dx)', async () => {
    await fc.assert(fc.asyncProperty(kernelCase, checkKernels), { numRuns: 120 });
  });

  // The fast paths: outC a multiple of 16 (forward row kernels, direct dW with tap / channel pairs),
  // C = 1 (forward 3-float run, dW tap pairs with border strips, dx vectorised over co in pixel quads when
  // strideW = 1), odd sizes, every stride / padding / dilation combination, split across 2 threads.
  const fastCase = fc
    .record({
      N: fc.integer({ min: 1, max: 4 }), H: fc.integer({ min: 1, max: 13 }), W: fc.integer({ min: 1, max: 13 }),
      C: fc.constantFrom(1, 1, 1, 2, 3, 16), CO: fc.constantFrom(16, 32, 48),
      KH: fc.integer({ min: 1, max: 4 }), KW: fc.integer({ min: 1, max: 4 }), sh: fc.constantFrom(1, 1, 2, 3), sw: fc.constantFrom(1, 1, 1, 2, 3),
      dh: fc.constantFrom(1, 1, 2), dw: fc.constantFrom(1, 1, 2),
      pt: fc.nat(2), pb: fc.nat(2), pl: fc.nat(2), pr: fc.nat(2), bias: fc.boolean(), seed: fc.integer(),
    })
    .map((c) => ({ ...c, OH: Math.floor((c.H + c.pt + c.pb - c.dh * (c.KH - 1) - 1) / c.sh) + 1, OW: Math.floor((c.W + c.pl + c.pr - c.dw * (c.KW - 1) - 1) / c.sw) + 1 }))
    .filter((c) => c.OH >= 1 && c.OW >= 1);

  it('fast paths (outC % 16 = 0, C = 1, odd sizes, strides / padding / dilation) equal the reference, split = 1 thread bitwise', async () => {
    await fc.assert(fc.asyncProperty(fastCase, checkKernels), { numRuns: 150 });
  });

  it('the example CNN layers (28×28×1 → 16 and 14×14×16 → 32, 3×3, same and valid) equal the reference', async () => {
    for (const [H, C, CO] of [[28, 1, 16], [14, 16, 32], [13, 16, 32]] as const) {
      for (const p of [0, 1]) {
        const OH = H + 2 * p - 2;
        await checkKernels({ N: 3, H, W: H, C, CO, KH: 3, KW: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: p, pb: p, pl: p, pr: p, bias: true, seed: H + p, OH, OW: OH });
      }
    }
  });

  it('the split backends really split (a 2-thread pool ran)', async () => {
    arena.reset();
    const g = [4, 6, 6, 2, 4, 4, 8, 3, 3, 1, 1, 0, 0, 1, 1] as const;
    const x = put(values(4 * 36 * 2, 1)), w = put(values(18 * 8, 2)), y = put(new Float32Array(4 * 16 * 8));
    const before = two.pool?.chunkCounts().reduce((t, c) => t + c, 0) ?? 0;
    await two.conv2dForward(x, w, 0, y, ...g);
    assert.ok(two.pool && two.pool.size === 1);
    // A forced split runs as a chunked job (claimed by the caller and the worker, whoever comes first).
    assert.ok(two.pool.chunkCounts().reduce((t, c) => t + c, 0) > before, 'the forced split ran as chunks');
  });

  // Max pooling's 2×2 row kernels (windows wholly inside, channels in blocks of 4) next to the general walk
  // (border windows, C % 4 tail channels), with ties, ±0 and NaN (values from a small set); the batch split
  // (maxPool2dForwardPart / BackwardPart through the pool) must equal one thread bit for bit.
  const poolCase = fc
    .record({
      N: fc.integer({ min: 1, max: 5 }), H: fc.integer({ min: 1, max: 11 }), W: fc.integer({ min: 1, max: 11 }),
      C: fc.oneof(fc.constantFrom(4, 16, 32), fc.integer({ min: 1, max: 37 })),
      KH: fc.constantFrom(2, 2, 2, 1, 3), KW: fc.constantFrom(2, 2, 2, 1, 3), sh: fc.constantFrom(2, 2, 1, 3), sw: fc.constantFrom(2, 2, 1, 3),
      pt: fc.nat(1), pl: fc.nat(1), pb: fc.nat(1), pr: fc.nat(1), seed: fc.integer(),
    })
    .map((c) => ({ ...c, pt: Math.min(c.pt, c.KH - 1), pb: Math.min(c.pb, c.KH - 1), pl: Math.min(c.pl, c.KW - 1), pr: Math.min(c.pr, c.KW - 1) }))
    .map((c) => ({ ...c, OH: Math.floor((c.H + c.pt + c.pb - c.KH) / c.sh) + 1, OW: Math.floor((c.W + c.pl + c.pr - c.KW) / c.sw) + 1 }))
    .filter((c) => c.OH >= 1 && c.OW >= 1);
  const bits = (p: number, n: number) => heap.i32.slice(p >> 2, (p >> 2) + n);

  it('maxPool2d 2×2 fast rows and general walk: exact vs the reference with ties / ±0 / NaN; split = 1 thread bitwise', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        arena.reset();
        const g = [c.N, c.H, c.W, c.C, c.OH, c.OW, c.KH, c.KW, c.sh, c.sw, c.pt, c.pl] as const;
        const nx = c.N * c.H * c.W * c.C, ny = c.N * c.OH * c.OW * c.C;
        const pick = [1, -1, 0, -0, 2, 0.5, Number.NaN];
        let s = c.seed >>> 0;
        const xv = new Float32Array(nx).map(() => pick[(s = (s * 1103515245 + 12345) >>> 0) % pick.length]!);
        const x = put(xv), dy = put(values(ny, c.seed + 1));
        const [y1, y2, yr, yi, yi2] = [0, 1, 2, 3, 4].map(() => put(new Float32Array(ny).fill(7)));
        const [a1, a2, ar] = [0, 1, 2].map(() => put(new Float32Array(ny)));
        const what = JSON.stringify(c);
        one.kernels.maxPool2dForward(x, y1!, a1!, ...g);
        ref.maxPool2dForward(x, yr!, ar!, ...g);
        await two.maxPool2dForward(x, y2!, a2!, ...g);
        assert.deepEqual(bits(y1!, ny), bits(yr!, ny), `max pool exact ${what}`);
        assert.deepEqual(bits(a1!, ny), bits(ar!, ny), `argmax ${what}`);
        assert.deepEqual(bits(y2!, ny), bits(y1!, ny), `split forward ${what}`);
        assert.deepEqual(bits(a2!, ny), bits(a1!, ny), `split argmax ${what}`);
        one.kernels.maxPool2dForward(x, yi!, 0, ...g);
        await two.maxPool2dForward(x, yi2!, 0, ...g);
        assert.deepEqual(bits(yi!, ny), bits(y1!, ny), `inference (no argmax) ${what}`);
        assert.deepEqual(bits(yi2!, ny), bits(y1!, ny), `split inference ${what}`);
        const [dx1, dx2] = [0, 1].map(() => put(new Float32Array(nx).fill(Number.NaN)));
        const dxr = put(new Float32Array(nx));
        one.kernels.maxPool2dBackward(dy, a1!, dx1!, nx, ny);
        await two.maxPool2dBackward(dy, a1!, dx2!, nx, ny, c.N);
        ref.maxPool2dBackward(dy, ar!, dxr, nx, ny);
        assertClose(get(dx1!, nx), get(dxr, nx), 1e-6 * c.KH * c.KW, 0, `maxPool2dBackward ${what}`);
        assert.deepEqual(bits(dx2!, nx), bits(dx1!, nx), `split backward ${what}`);
      }),
      { numRuns: 200 },
    );
  });

  it('elementwise split (relu, leaky relu with its f32 slope, gelu): every range boundary equals 1 thread bitwise', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 300 }), fc.integer(), async (n, seed) => {
        arena.reset();
        const x = put(values(n, seed)), dy = put(values(n, seed + 1));
        const [o1, o2] = [0, 1].map(() => put(new Float32Array(n + 16).fill(Number.NaN)));
        const cases: [Parameters<typeof two.elementwise>[0], number[], number[]][] = [
          ['reluForward', [x], []], ['reluBackward', [x, dy], []], ['leakyReluForward', [x], [0.1]],
          ['leakyReluBackward', [x, dy], [0.3]], ['geluForward', [x], []],
        ];
        for (const [name, ins, floats] of cases) {
          (one.kernels[name] as unknown as (...a: number[]) => void)(...ins, o1!, n, ...floats);
          await two.elementwise(name, [...ins, o2!], n, floats);
          // n + 16: nothing past n is written by either.
          assert.deepEqual(bits(o2!, n + 16), bits(o1!, n + 16), `${name} n=${n}`);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('pooling and batch-norm kernels', () => {
    fc.assert(
      fc.property(
        fc.record({
          N: fc.integer({ min: 1, max: 3 }), H: fc.integer({ min: 1, max: 9 }), W: fc.integer({ min: 1, max: 9 }), C: fc.integer({ min: 1, max: 11 }),
          KH: fc.integer({ min: 1, max: 3 }), KW: fc.integer({ min: 1, max: 3 }), sh: fc.integer({ min: 1, max: 3 }), sw: fc.integer({ min: 1, max: 3 }),
          pt: fc.nat(2), pl: fc.nat(2), pb: fc.nat(2), pr: fc.nat(2), seed: fc.integer(),
        })
          .map((c) => ({ ...c, pt: Math.min(c.pt, c.KH - 1), pb: Math.min(c.pb, c.KH - 1), pl: Math.min(c.pl, c.KW - 1), pr: Math.min(c.pr, c.KW - 1) }))
          .map((c) => ({ ...c, OH: Math.floor((c.H + c.pt + c.pb - c.KH) / c.sh) + 1, OW: Math.floor((c.W + c.pl + c.pr - c.KW) / c.sw) + 1 }))
          .filter((c) => c.OH >= 1 && c.OW >= 1),
        (c) => {
          arena.reset();
          const k = one.kernels;
          const g = [c.N, c.H, c.W, c.C, c.OH, c.OW, c.KH, c.KW, c.sh, c.sw, c.pt, c.pl] as const;
          const nx = c.N * c.H * c.W * c.C, ny = c.N * c.OH * c.OW * c.C;
          const x = put(values(nx, c.seed)), dy = put(values(ny, c.seed + 1));
          const [y, yr, am, amr] = [0, 1, 2, 3].map(() => put(new Float32Array(ny)));
          k.maxPool2dForward(x, y!, am!, ...g);
          ref.maxPool2dForward(x, yr!, amr!, ...g);
          assert.deepEqual(get(y!, ny), get(yr!, ny), 'max pool is exact');
          assert.deepEqual(heap.i32.slice(am! >> 2, (am! >> 2) + ny), heap.i32.slice(amr! >> 2, (amr! >> 2) + ny), 'argmax');
          // Inference: argmax = 0 skips the index tracking, same values.
          const yi = put(new Float32Array(ny));
          k.maxPool2dForward(x, yi, 0, ...g);
          assert.deepEqual(get(yi, ny), get(yr!, ny), 'max pool without argmax (inference)');
          const [dx, dxr] = [0, 1].map(() => put(new Float32Array(nx)));
          k.maxPool2dBackward(dy, am!, dx!, nx, ny);
          ref.maxPool2dBackward(dy, am!, dxr!, nx, ny);
          assertClose(get(dx!, nx), get(dxr!, nx), 1e-6 * c.KH * c.KW, 0, 'maxPool2dBackward');
          k.avgPool2dForward(x, y!, ...g);
          ref.avgPool2dForward(x, yr!, ...g);
          assertClose(get(y!, ny), get(yr!, ny), 1e-6 * c.KH * c.KW, 0, 'avgPool2dForward');
          k.avgPool2dBackward(dy, dx!, ...g);
          ref.avgPool2dBackward(dy, dxr!, ...g);
          assertClose(get(dx!, nx), get(dxr!, nx), 1e-6 * c.KH * c.KW, 0, 'avgPool2dBackward');
          const rows = c.N * c.H * c.W;
          const [m, v, mr, vr] = [0, 1, 2, 3].map(() => put(new Float32Array(c.C)));
          k.batchNormStats(x, m!, v!, rows, c.C);
          ref.batchNormStats(x, mr!, vr!, rows, c.C);
          assertClose(get(m!, c.C), get(mr!, c.C), 1e-6, 0, 'batchNormStats mean');
          assertClose(get(v!, c.C), get(vr!, c.C), 1e-6, 1e-5, 'batchNormStats variance');
          const inv = put(values(c.C, c.seed + 4, 0.5, 2)), gam = put(values(c.C, c.seed + 5)), bet = put(values(c.C, c.seed + 6));
          k.batchNormForward(x, dx!, mr!, inv, gam, bet, rows, c.C);
          ref.batchNormForward(x, dxr!, mr!, inv, gam, bet, rows, c.C);
          assertClose(get(dx!, nx), get(dxr!, nx), 1e-6, 1e-6, 'batchNormForward');
          const [dg, db, dgr, dbr] = [0, 1, 2, 3].map(() => put(new Float32Array(c.C)));
          const g2 = put(values(nx, c.seed + 7));
          k.batchNormBackward(x, g2, dx!, mr!, inv, gam, dg!, db!, rows, c.C);
          ref.batchNormBackward(x, g2, dxr!, mr!, inv, gam, dgr!, dbr!, rows, c.C);
          assertClose(get(dg!, c.C), get(dgr!, c.C), 1e-5 * rows, 0, 'batchNormBackward dgamma');
          assertClose(get(db!, c.C), get(dbr!, c.C), 1e-6 * rows, 0, 'batchNormBackward dbeta');
          assertClose(get(dx!, nx), get(dxr!, nx), 1e-5, 1e-5, 'batchNormBackward dx');
          const gp = put(new Float32Array(c.N * c.C)), gpr = put(new Float32Array(c.N * c.C));
          k.globalAvgPool2dForward(x, gp, c.N, c.H * c.W, c.C);
          ref.globalAvgPool2dForward(x, gpr, c.N, c.H * c.W, c.C);
          assertClose(get(gp, c.N * c.C), get(gpr, c.N * c.C), 1e-6, 0, 'globalAvgPool2dForward');
          k.globalAvgPool2dBackward(gp, dx!, c.N, c.H * c.W, c.C);
          ref.globalAvgPool2dBackward(gp, dxr!, c.N, c.H * c.W, c.C);
          assertClose(get(dx!, nx), get(dxr!, nx), 1e-7, 0, 'globalAvgPool2dBackward');
        },
      ),
      { numRuns: 150 },
    );
  });
});
