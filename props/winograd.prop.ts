/**
 * The Winograd F(2×2, 3×3) convolution kernels (workers/assembly/conv-winograd.ts) against the float64 JS
 * reference kernels (workers/reference-kernels.ts): forward (bias, fused ReLU), input gradient and filter
 * gradient (conv-winograd-filter.ts) over
 * random shapes that take the Winograd path (3×3, stride 1, dilation 1, inC ≥ 8 and a multiple of 4,
 * outC a multiple of 16): odd and even sizes down to 1×1, 'same', 'valid' and uneven explicit padding
 * (more than the window too), batch 1..5. Also: conv2dForward / conv2dBackwardInput / conv2dBackwardFilter
 * dispatch to them (bitwise the same outputs) exactly when the output is large enough for the tiles to pay
 * (winogradPays: 2×2 tiles covering ≤ 1.5× the output; smaller ones stay direct and match the reference), and a 2-thread split over images equals one thread bitwise
 * (the filter gradient's fixed image chunks: props/split.prop.ts). Both builds (relaxed-SIMD FMA and plain SIMD128).
 *
 * Tolerance: max |err| ≤ 1e-5 · max |reference| over the tensor (the transforms add a few roundings per
 * term; measured ~2e-7).
 *
 * Run: `node --import tsx --test props/winograd.prop.ts`
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { SharedHeap } from '../src/heap.ts';
import { referenceKernels } from '../workers/reference-kernels.ts';
import { createWasmCompute } from '../workers/wasm-compute.ts';

const REL_TOL = 1e-5;
const RUNS = 60;
if (process.env['FC_SEED']) fc.configureGlobal({ seed: Number(process.env['FC_SEED']) });

const heap = new SharedHeap({ initialBytes: 32 << 20 });
const arena = heap.arena();
const ref = referenceKernels(() => heap.f32, () => heap.i32);
const one = createWasmCompute(heap.memory, { threads: 1 });
const two = createWasmCompute(heap.memory, { threads: 2, splitThresholdFlops: 0 });
// The plain SIMD128 build (a mul and an add where the default build fuses them) checked alongside.
const simd = createWasmCompute(heap.memory, { threads: 1, relaxedSimd: false });
after(async () => {
  await one.close();
  await two.close();
  await simd.close();
});

/** The Winograd entry points (wasm exports outside the Kernels contract). */
interface WinogradExports {
  conv2dForwardWinograd(x: number, w: number, bias: number, y: number, batch: number, H: number, W: number, C: number,
    OH: number, OW: number, CO: number, pt: number, pl: number, activation: number): void;
  conv2dBackwardInputWinograd(dy: number, wt: number, dx: number, batch: number, H: number, W: number, C: number,
    OH: number, OW: number, CO: number, pt: number, pl: number): void;
  conv2dBackwardFilterWinograd(x: number, dy: number, dw: number, batch: number, H: number, W: number, C: number,
    OH: number, OW: number, CO: number, pt: number, pl: number): void;
}
const wino = one.exports as unknown as WinogradExports;
/** workers/assembly/conv-winograd.ts winogradPays: the 2×2 tiles cover at most 1.5× the oh × ow output. */
const pays = (oh: number, ow: number) => 8 * Math.ceil(oh / 2) * Math.ceil(ow / 2) <= 3 * oh * ow;

function values(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 8388608 - 1;
  }
  return out;
}
const put = (v: Float32Array) => {
  const p = arena.alloc(Math.max(1, v.length) * 4);
  heap.f32.set(v, p >> 2);
  return p;
};
const nans = (n: number) => put(new Float32Array(n).fill(Number.NaN));
const get = (p: number, n: number) => heap.f32.slice(p >> 2, (p >> 2) + n);

function assertRelClose(got: Float32Array, want: Float32Array, what: string): void {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  const tol = REL_TOL * Math.max(scale, 1e-30);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i]! - want[i]!) <= tol)) assert.fail(`${what}[${i}]: got ${got[i]}, expected ${want[i]} (tolerance ${tol})`);
  }
}

const winogradCase = fc
  .record({
    N: fc.integer({ min: 1, max: 5 }), H: fc.integer({ min: 1, max: 13 }), W: fc.integer({ min: 1, max: 13 }),
    C: fc.constantFrom(8, 12, 16, 32), CO: fc.constantFrom(16, 32, 48),
    padding: fc.oneof(
      fc.constant({ pt: 1, pb: 1, pl: 1, pr: 1 }), fc.constant({ pt: 0, pb: 0, pl: 0, pr: 0 }),
      fc.record({ pt: fc.nat(4), pb: fc.nat(4), pl: fc.nat(4), pr: fc.nat(4) }),
    ),
    bias: fc.boolean(), relu: fc.boolean(), seed: fc.integer(),
  })
  .map((c) => ({ ...c, ...c.padding, OH: c.H + c.padding.pt + c.padding.pb - 2, OW: c.W + c.padding.pl + c.padding.pr - 2 }))
  .filter((c) => c.OH >= 1 && c.OW >= 1);
type WinogradCase = typeof winogradCase extends fc.Arbitrary<infer T> ? T : never;

async function check(c: WinogradCase): Promise<void> {
  arena.reset();
  const what = JSON.stringify(c);
  const g = [c.N, c.H, c.W, c.C, c.OH, c.OW, c.CO, 3, 3, 1, 1, c.pt, c.pl, 1, 1] as const;
  const nx = c.N * c.H * c.W * c.C, ny = c.N * c.OH * c.OW * c.CO, nw = 9 * c.C * c.CO;
  const x = put(values(nx, c.seed)), w = put(values(nw, c.seed + 1)), b = c.bias ? put(values(c.CO, c.seed + 2)) : 0;
  const dy = put(values(ny, c.seed + 3));
  const act = c.relu ? 1 : 0;

  // Forward: Winograd vs the reference (then ReLU'd like reluForward), the dispatch, the split.
  const yw = nans(ny), yd = nans(ny), ys = nans(ny), yr = nans(ny);
  wino.conv2dForwardWinograd(x, w, b, yw, c.N, c.H, c.W, c.C, c.OH, c.OW, c.CO, c.pt, c.pl, act);
  one.kernels.conv2dForward(x, w, b, yd, ...g, act);
  await two.conv2dForward(x, w, b, ys, ...g, act);
  ref.conv2dForward(x, w, b, yr, ...g);
  const want = get(yr, ny).map((v) => (c.relu ? (v > 0 ? v : 0) : v));
  assertRelClose(get(yw, ny), want, `forward ${what}`);
  if (pays(c.OH, c.OW)) assert.deepEqual(get(yd, ny), get(yw, ny), `conv2dForward did not take the Winograd path ${what}`);
  else assertRelClose(get(yd, ny), want, `forward (direct: small output) ${what}`);
  const ysimd = nans(ny);
  simd.kernels.conv2dForward(x, w, b, ysimd, ...g, act);
  assertRelClose(get(ysimd, ny), want, `forward, ${simd.name} build ${what}`);
  assert.deepEqual(get(ys, ny), get(yd, ny), `split forward differs from 1 thread ${what}`);

  // Input gradient (Winograd when C is a multiple of 16: the gradient's output channels).
  const wt = put(new Float32Array(nw));
  one.kernels.conv2dTransposeFilter(w, wt, 9, c.C, c.CO);
  const dxd = nans(nx), dxs = nans(nx), dxr = nans(nx);
  one.kernels.conv2dBackwardInput(dy, wt, dxd, ...g);
  await two.conv2dBackwardInput(dy, wt, dxs, ...g);
  ref.conv2dBackwardInput(dy, wt, dxr, ...g);
  if (c.C % 16 === 0) {
    const dxw = nans(nx);
    wino.conv2dBackwardInputWinograd(dy, wt, dxw, c.N, c.H, c.W, c.C, c.OH, c.OW, c.CO, c.pt, c.pl);
    assertRelClose(get(dxw, nx), get(dxr, nx), `input gradient ${what}`);
    const dxsimd = nans(nx);
    simd.kernels.conv2dBackwardInput(dy, wt, dxsimd, ...g);
    assertRelClose(get(dxsimd, nx), get(dxr, nx), `input gradient, ${simd.name} build ${what}`);
    if (pays(c.H, c.W)) assert.deepEqual(get(dxd, nx), get(dxw, nx), `conv2dBackwardInput did not take the Winograd path ${what}`);
    else assertRelClose(get(dxd, nx), get(dxr, nx), `input gradient (direct: small input) ${what}`);
  } else {
    assertRelClose(get(dxd, nx), get(dxr, nx), `input gradient (direct) ${what}`);
  }
  assert.deepEqual(get(dxs, nx), get(dxd, nx), `split input gradient differs from 1 thread ${what}`);

  // Filter gradient: Winograd vs the reference; conv2dBackwardFilter dispatches to it.
  const dww = nans(nw), dwd = nans(nw), dwr = nans(nw);
  const workFloats = 9 * c.C + 16;
  const work = nans(workFloats);
  wino.conv2dBackwardFilterWinograd(x, dy, dww, c.N, c.H, c.W, c.C, c.OH, c.OW, c.CO, c.pt, c.pl);
  one.kernels.conv2dBackwardFilter(x, dy, dwd, work, workFloats, ...g);
  ref.conv2dBackwardFilter(x, dy, dwr, 0, 0, ...g);
  assertRelClose(get(dww, nw), get(dwr, nw), `filter gradient ${what}`);
  const dwsimd = nans(nw);
  simd.kernels.conv2dBackwardFilter(x, dy, dwsimd, work, workFloats, ...g);
  assertRelClose(get(dwsimd, nw), get(dwr, nw), `filter gradient, ${simd.name} build ${what}`);
  if (pays(c.OH, c.OW)) assert.deepEqual(get(dwd, nw), get(dww, nw), `conv2dBackwardFilter did not take the Winograd path ${what}`);
  else assertRelClose(get(dwd, nw), get(dwr, nw), `filter gradient (direct: small output) ${what}`);
}

describe('Winograd F(2×2, 3×3) convolution kernels', () => {
  it('forward (bias, ReLU), input gradient and filter gradient equal the float64 reference to 1e-5 relative; dispatch and split bitwise', async () => {
    await fc.assert(fc.asyncProperty(winogradCase, check), {
      numRuns: RUNS,
      // The example CNN's second layer ('same' and 'valid') and a 1×1 image, always.
      examples: [
        [{ N: 3, H: 14, W: 14, C: 16, CO: 32, padding: { pt: 1, pb: 1, pl: 1, pr: 1 }, bias: true, relu: true, seed: 1, pt: 1, pb: 1, pl: 1, pr: 1, OH: 14, OW: 14 }],
        [{ N: 2, H: 13, W: 13, C: 16, CO: 32, padding: { pt: 0, pb: 0, pl: 0, pr: 0 }, bias: true, relu: false, seed: 2, pt: 0, pb: 0, pl: 0, pr: 0, OH: 11, OW: 11 }],
        [{ N: 1, H: 1, W: 1, C: 16, CO: 16, padding: { pt: 1, pb: 1, pl: 1, pr: 1 }, bias: false, relu: false, seed: 3, pt: 1, pb: 1, pl: 1, pr: 1, OH: 1, OW: 1 }],
      ],
    });
  });

  it('the Winograd entry points refuse shapes they do not cover (a trap, not wrong numbers)', () => {
    arena.reset();
    const x = put(values(4 * 4 * 4, 1)), w = put(values(9 * 4 * 16, 2)), y = nans(4 * 4 * 16);
    // inC = 4 is below the Winograd minimum; outC = 8 is not a multiple of 16.
    assert.throws(() => wino.conv2dForwardWinograd(x, w, 0, y, 1, 4, 4, 4, 4, 4, 16, 1, 1, 0), WebAssembly.RuntimeError);
    assert.throws(() => wino.conv2dBackwardInputWinograd(y, w, x, 1, 4, 4, 8, 4, 4, 16, 1, 1), WebAssembly.RuntimeError);
    assert.throws(() => wino.conv2dBackwardFilterWinograd(x, y, w, 1, 4, 4, 4, 4, 4, 16, 1, 1), WebAssembly.RuntimeError);
  });
});
