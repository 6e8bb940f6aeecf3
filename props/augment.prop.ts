/**
 * Properties of the augmentation operators randomFlip, randomRotate, randomCrop and randomTranslate
 * (operators/random-flip.ts, random-rotate.ts, random-crop.ts, random-translate.ts, all built on the shared
 * forward/adjoint-backward scaffolding of operators/image-augmentation.ts):
 * - flipping twice with the same draws is the identity (exact); rotation by 0° is the identity (exact);
 * - crops and translations keep the shape, and every output pixel is an input pixel of the same example
 *   or the fill value (whole-pixel shifts, exact);
 * - the same seed gives the same batch (bitwise), a different seed a different one;
 * - labels are never changed and the input tensor is never written; inference is the identity (same tensor);
 * - backward is the exact adjoint: ⟨T x, dy⟩ = ⟨x, Tᵀ dy⟩ (tolerance 1e-5 relative to Σ|x|·|dy|, float32 sums).
 *
 * Run: `node --import tsx --test props/augment.prop.ts`
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { createEngine } from '../src/engine.ts';
import { StepContext, type BuildContext, type Layer } from '../src/layer.ts';
import { Random } from '../src/random.ts';
import type { Shape, Tensor } from '../src/tensor.ts';
import { randomFlip } from '../operators/random-flip.ts';
import { randomRotate } from '../operators/random-rotate.ts';
import { randomCrop } from '../operators/random-crop.ts';
import { randomTranslate } from '../operators/random-translate.ts';

const engine = createEngine({ threads: 1, initialBytes: 8 << 20 });
after(() => engine.close());
const RUNS = 60;
/** Adjoint identity tolerance, relative to Σ|Tx|·|dy| + Σ|x|·|Tᵀdy| (float32 rounding of ≤ 4-term sums). */
const ADJOINT_RTOL = 1e-5;

const ctx: BuildContext = {
  engine,
  rng: new Random(0),
  addParameter() {
    throw new Error('augmentation layers have no parameters');
  },
};

function values(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 16777216 + 0.5; // in [0.5, 1.5): never equal to a 0 fill
  }
  return out;
}

interface Out {
  x: Tensor;
  y: Tensor;
  step: StepContext;
}

/** One forward on a fresh step seeded `seed`, with int32 labels set; features x (batch first). */
async function forward(layer: Layer, shape: Shape, x: Float32Array, seed: number, training = true): Promise<Out> {
  const batch = x.length / shape.reduce((a, b) => a * b, 1);
  const step = new StepContext(engine, engine.heap.arena(), batch, training, new Random(seed), 0);
  const xt = step.alloc([batch, ...shape]);
  xt.data().set(x);
  const labels = step.alloc([batch], 'int32');
  for (let i = 0; i < batch; i++) labels.int32()[i] = (i * 7 + seed) % 10;
  step.labels = labels;
  const y = await layer.forward(xt, step);
  return { x: xt, y, step };
}

const imageCase = fc.record({
  N: fc.integer({ min: 1, max: 4 }), H: fc.integer({ min: 1, max: 9 }), W: fc.integer({ min: 1, max: 9 }),
  C: fc.integer({ min: 1, max: 3 }), seed: fc.integer({ min: 0, max: 1 << 30 }),
});

const layers: [string, () => Layer][] = [
  ['randomFlip (both axes)', () => randomFlip({ horizontal: true, vertical: true })],
  ['randomRotate ±30°', () => randomRotate({ degrees: 30, fillValue: 0.25 })],
  ['randomCrop padding 2', () => randomCrop({ padding: 2 })],
  ['randomTranslate 0.3', () => randomTranslate({ height: 0.3, width: 0.3, fillValue: -1 })],
];

describe('augmentation operators (image-augmentation base: draw, transform, adjoint backward)', () => {
  it('randomFlip: flipping twice with the same draws is the identity', async () => {
    await fc.assert(
      fc.asyncProperty(imageCase, fc.boolean(), fc.boolean(), async ({ N, H, W, C, seed }, horizontal, vertical) => {
        const layer = randomFlip({ horizontal, vertical });
        layer.build([H, W, C], ctx);
        const x = values(N * H * W * C, seed);
        const once = await forward(layer, [H, W, C], x, seed);
        const twice = await forward(layer, [H, W, C], once.y.toFloat32Array(), seed);
        assert.deepEqual(twice.y.toFloat32Array(), x);
        once.step.arena.dispose();
        twice.step.arena.dispose();
      }),
      { numRuns: RUNS },
    );
  });

  it('randomRotate by 0° is the identity (exactly), whatever the fill', async () => {
    await fc.assert(
      fc.asyncProperty(imageCase, fc.float({ min: -2, max: 2, noNaN: true }), async ({ N, H, W, C, seed }, fillValue) => {
        const layer = randomRotate({ degrees: [0, 0], fillValue });
        layer.build([H, W, C], ctx);
        const x = values(N * H * W * C, seed);
        const out = await forward(layer, [H, W, C], x, seed);
        assert.deepEqual(out.y.toFloat32Array(), x);
        out.step.arena.dispose();
      }),
      { numRuns: RUNS },
    );
  });

  it('randomCrop / randomTranslate keep the shape; every output pixel is a pixel of the same image or the fill', async () => {
    await fc.assert(
      fc.asyncProperty(imageCase, fc.integer({ min: 0, max: 4 }), fc.boolean(), async ({ N, H, W, C, seed }, padding, crop) => {
        const fill = crop ? 0 : -1;
        const layer = crop ? randomCrop({ padding }) : randomTranslate({ height: padding / 8, width: padding / 8, fillValue: fill });
        assert.deepEqual(layer.build([H, W, C], ctx), [H, W, C]);
        const x = values(N * H * W * C, seed);
        const out = await forward(layer, [H, W, C], x, seed);
        assert.deepEqual([...out.y.shape], [N, H, W, C]);
        const y = out.y.toFloat32Array();
        for (let n = 0; n < N; n++) {
          // The whole image moved by one (sy, sx): find it from any pixel and check all of them.
          const img = (a: Float32Array, i: number, j: number, c: number) => a[((n * H + i) * W + j) * C + c]!;
          let found = false;
          for (let sy = -padding; sy <= padding && !found; sy++) {
            for (let sx = -padding; sx <= padding && !found; sx++) {
              let ok = true;
              for (let i = 0; i < H && ok; i++) for (let j = 0; j < W && ok; j++) for (let c = 0; c < C && ok; c++) {
                const si = i - sy, sj = j - sx;
                const want = si >= 0 && si < H && sj >= 0 && sj < W ? img(x, si, sj, c) : fill;
                ok = img(y, i, j, c) === want;
              }
              found = ok;
            }
          }
          assert.ok(found, `example ${n} is not a whole-pixel shift within ±${padding} of its input`);
        }
        out.step.arena.dispose();
      }),
      { numRuns: RUNS },
    );
  });

  for (const [name, make] of layers) {
    it(`${name}: same seed → same batch; labels and the input untouched; inference is the identity`, async () => {
      await fc.assert(
        fc.asyncProperty(imageCase, async ({ N, H, W, C, seed }) => {
          const layer = make();
          layer.build([H, W, C], ctx);
          const x = values(N * H * W * C, seed);
          const a = await forward(layer, [H, W, C], x, seed);
          const b = await forward(layer, [H, W, C], x, seed);
          assert.deepEqual(a.y.toFloat32Array(), b.y.toFloat32Array(), 'same seed, different batch');
          assert.deepEqual(a.x.toFloat32Array(), x, 'the input tensor was written');
          for (const o of [a, b]) {
            const l = o.step.labels!.int32();
            for (let i = 0; i < N; i++) assert.equal(l[i], (i * 7 + seed) % 10, 'a label changed');
          }
          const inf = await forward(layer, [H, W, C], x, seed, false);
          assert.equal(inf.y, inf.x, 'inference must return the input tensor itself');
          for (const o of [a, b, inf]) o.step.arena.dispose();
        }),
        { numRuns: RUNS / 2 },
      );
    });

    it(`${name}: backward is the exact adjoint of the forward transform`, async () => {
      await fc.assert(
        fc.asyncProperty(imageCase, async ({ N, H, W, C, seed }) => {
          const layer = make();
          layer.build([H, W, C], ctx);
          const x = values(N * H * W * C, seed);
          const dyv = values(N * H * W * C, seed + 1).map((v) => v - 1);
          // The fill makes T affine: T x = A x + f. Use T x − T 0 = A x for the linear part.
          const tx = await forward(layer, [H, W, C], x, seed);
          const t0 = await forward(layer, [H, W, C], new Float32Array(x.length), seed);
          const dy = tx.step.alloc(tx.y.shape);
          dy.data().set(dyv);
          const dx = await layer.backward(dy, tx.step, true);
          assert.ok(dx);
          const ax = tx.y.toFloat32Array().map((v, i) => v - t0.y.data()[i]!);
          const atdy = dx.toFloat32Array();
          let lhs = 0, rhs = 0, scale = 0;
          for (let i = 0; i < x.length; i++) {
            lhs += ax[i]! * dyv[i]!;
            rhs += x[i]! * atdy[i]!;
            scale += Math.abs(ax[i]! * dyv[i]!) + Math.abs(x[i]! * atdy[i]!);
          }
          assert.ok(Math.abs(lhs - rhs) <= ADJOINT_RTOL * (scale + 1), `⟨Ax, dy⟩ = ${lhs} but ⟨x, Aᵀdy⟩ = ${rhs}`);
          assert.equal(await layer.backward(dy, tx.step, false), null);
          tx.step.arena.dispose();
          t0.step.arena.dispose();
        }),
        { numRuns: RUNS / 2 },
      );
    });
  }

  it('different seeds give different batches (a 28×28 image, 8 examples)', async () => {
    for (const [name, make] of layers) {
      const layer = make();
      layer.build([28, 28, 1], ctx);
      const x = values(8 * 784, 3);
      const a = await forward(layer, [28, 28, 1], x, 1);
      const b = await forward(layer, [28, 28, 1], x, 2);
      assert.notDeepEqual(a.y.toFloat32Array(), b.y.toFloat32Array(), name);
      a.step.arena.dispose();
      b.step.arena.dispose();
    }
  });
});
