/**
 * Multi-head self-attention, forward and forward + backward, per sequence length 64–512 (quick:
 * 64 and 128), showing the quadratic cost: the projections grow as T but the score and value
 * products as T², so the time ratio between doubled lengths climbs from ~2 toward 4.
 *
 * Workload: batch 4, width D = 128, 4 heads of 32, causal mask, Q/K/V/output projections with
 * biases. rxgrad: `multiHeadAttention` driven directly through its Layer protocol on the default
 * engine (forward; then forward + backward with the input gradient). TF.js: the same computation
 * written with `tf.matMul` / `tf.softmax` (heads via reshape + transpose, the mask as a −1e9 bias),
 * and `tf.variableGrads` for the backward; results read back with `dataSync`.
 * The TF.js cpu backend is skipped (null) above T = 256: one T = 512 step takes seconds there.
 * Each time is the best of three medians (one with --quick), to damp other processes' bursts.
 */
import type { Engine } from '../src/engine.ts';
import type { Layer, Parameter } from '../src/layer.ts';
import { fillRandom, timeIt, type Row } from './harness.ts';
import { defaultRxgradEngine, loadRxgrad } from './rxgrad.ts';
import { TF_BACKENDS, tf, useBackend } from './tfjs.ts';

const BATCH = 4;
const DIM = 128;
const HEADS = 4;
const KEY_DIM = DIM / HEADS;
const CPU_MAX_LENGTH = 256;

type Timer = (fn: () => unknown) => Promise<number>;

async function rxgradAttention(engine: Engine, T: number, time: Timer): Promise<{ forward: number; both: number }> {
  const rx = await loadRxgrad();
  const layer: Layer = rx.multiHeadAttention({ heads: HEADS, keyDim: KEY_DIM, causal: true, name: 'bench_attention' });
  const params: Parameter[] = [];
  const rng = new rx.Random(1);
  layer.build([T, DIM], {
    engine, rng,
    addParameter(name, shape, init, fans) {
      const size = shape.reduce((a, b) => a * b, 1);
      const value = new rx.Tensor(engine.heap, engine.heap.alloc(size * 4), shape);
      const grad = new rx.Tensor(engine.heap, engine.heap.alloc(size * 4), shape);
      init.fill(value.data(), fans, rng);
      const p: Parameter = { name, shape, value, grad, regularizer: null, trainable: true };
      params.push(p);
      return p;
    },
  });
  const arena = engine.heap.arena();
  const x = fillRandom(new Float32Array(BATCH * T * DIM), 7 + T);
  const dy = fillRandom(new Float32Array(BATCH * T * DIM), 11 + T);
  const pass = async (backward: boolean) => {
    arena.reset();
    const step = new rx.StepContext(engine, arena, BATCH, true, rng, 0);
    const xt = step.alloc([BATCH, T, DIM]);
    xt.data().set(x);
    const y = await layer.forward(xt, step);
    if (!backward) return;
    const g = step.alloc(y.shape);
    g.data().set(dy);
    await layer.backward(g, step, true);
  };
  try {
    return { forward: await time(() => pass(false)), both: await time(() => pass(true)) };
  } finally {
    arena.dispose();
    for (const p of params) {
      engine.heap.free(p.value.ptr);
      engine.heap.free(p.grad.ptr);
    }
  }
}

async function tfjsAttention(T: number, time: Timer): Promise<{ forward: number; both: number }> {
  const glorot = (rows: number, cols: number, seed: number) =>
    tf.variable(tf.tensor2d(fillRandom(new Float32Array(rows * cols), seed).map((v) => v * Math.sqrt(6 / (rows + cols))), [rows, cols]));
  const wq = glorot(DIM, DIM, 1);
  const wk = glorot(DIM, DIM, 2);
  const wv = glorot(DIM, DIM, 3);
  const wo = glorot(DIM, DIM, 4);
  const biases = [0, 1, 2, 3].map(() => tf.variable(tf.zeros([DIM])));
  const x = tf.tensor2d(fillRandom(new Float32Array(BATCH * T * DIM), 7 + T), [BATCH * T, DIM]);
  const dy = tf.tensor2d(fillRandom(new Float32Array(BATCH * T * DIM), 11 + T), [BATCH * T, DIM]);
  // Causal mask as an additive bias: 0 on and below the diagonal, −1e9 above.
  const mask = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)), -1e9));
  const heads = (t: tf.Tensor2D) => tf.transpose(tf.reshape(t, [BATCH, T, HEADS, KEY_DIM]), [0, 2, 1, 3]);
  const forward = (): tf.Tensor2D => {
    const q = heads(tf.add(tf.matMul(x, wq), biases[0]!));
    const k = heads(tf.add(tf.matMul(x, wk), biases[1]!));
    const v = heads(tf.add(tf.matMul(x, wv), biases[2]!));
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(KEY_DIM)), mask);
    const o = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]), [BATCH * T, DIM]);
    return tf.add(tf.matMul(o, wo), biases[3]!);
  };
  try {
    const forwardMs = await time(() => {
      const y = tf.tidy(forward);
      y.dataSync();
      y.dispose();
    });
    const bothMs = await time(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(forward(), dy)));
      for (const g of Object.values(grads)) g.dataSync();
      value.dispose();
      tf.dispose(grads);
    });
    return { forward: forwardMs, both: bothMs };
  } finally {
    tf.dispose([wq, wk, wv, wo, ...biases, x, dy, mask]);
  }
}

/**
 * Attention forward and forward + backward times per sequence length, rxgrad and TF.js side by side.
 *
 * Usage: `const rows = await attentionBench({ quick: true });`
 */
export async function attentionBench(options: { quick: boolean }): Promise<Array<{ benchmark: string; unit: string; rxgrad: number | null; tfjsWasm: number | null; tfjsCpu: number | null }>> {
  const lengths = options.quick ? [64, 128] : [64, 128, 256, 512];
  // The best of three medians: on a shared machine a neighbour's burst inflates one median, rarely all three.
  const time: Timer = async (fn) => {
    const rounds = options.quick ? 1 : 3;
    let best = Infinity;
    for (let i = 0; i < rounds; i++) best = Math.min(best, (await timeIt(fn, options.quick ? { samples: 3, maxTotalMs: 500, warmupMs: 50 } : { samples: 5, maxTotalMs: 1500 })).ms);
    return best;
  };
  const safely = async <T>(fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch (error) {
      process.stderr.write(`  ! attention: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n`);
      return null;
    }
  };
  const engine = await defaultRxgradEngine();
  const rows: Row[] = [];
  const both: Record<'rxgrad' | 'tfjsWasm' | 'tfjsCpu', (number | null)[]> = { rxgrad: [], tfjsWasm: [], tfjsCpu: [] };
  const shape = `B=${BATCH} D=${DIM} H=${HEADS} causal`;
  for (const T of lengths) {
    const rx = await safely(() => rxgradAttention(engine, T, time));
    const tfResults: Partial<Record<'tfjsWasm' | 'tfjsCpu', { forward: number; both: number } | null>> = {};
    for (const { backend, key } of TF_BACKENDS) {
      tfResults[key] = backend === 'cpu' && T > CPU_MAX_LENGTH ? null : await safely(async () => {
        await useBackend(backend);
        return tfjsAttention(T, time);
      });
    }
    rows.push({ benchmark: `attention forward T=${T} (${shape})`, unit: 'ms', rxgrad: rx?.forward ?? null, tfjsWasm: tfResults.tfjsWasm?.forward ?? null, tfjsCpu: tfResults.tfjsCpu?.forward ?? null });
    rows.push({ benchmark: `attention forward+backward T=${T} (${shape})`, unit: 'ms', rxgrad: rx?.both ?? null, tfjsWasm: tfResults.tfjsWasm?.both ?? null, tfjsCpu: tfResults.tfjsCpu?.both ?? null });
    both.rxgrad.push(rx?.both ?? null);
    both.tfjsWasm.push(tfResults.tfjsWasm?.both ?? null);
    both.tfjsCpu.push(tfResults.tfjsCpu?.both ?? null);
  }
  // The quadratic term made visible: time ratio of each doubling of T (4 for a purely quadratic cost).
  const ratio = (v: (number | null)[], i: number) => (v[i] != null && v[i - 1] != null ? v[i]! / v[i - 1]! : null);
  for (let i = 1; i < lengths.length; i++) {
    rows.push({
      benchmark: `attention forward+backward time ratio T=${lengths[i]} / T=${lengths[i - 1]}`, unit: 'x',
      rxgrad: ratio(both.rxgrad, i), tfjsWasm: ratio(both.tfjsWasm, i), tfjsCpu: ratio(both.tfjsCpu, i),
    });
  }
  return rows;
}

// Run directly: `npx tsx bench/attention.ts [--quick]` prints the rows as a table.
if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await attentionBench({ quick: process.argv.includes('--quick') });
  console.table(rows.map((r) => ({ ...r, rxgrad: r.rxgrad?.toFixed(2), tfjsWasm: r.tfjsWasm?.toFixed(2), tfjsCpu: r.tfjsCpu?.toFixed(2) })));
  const { closeRxgradEngines } = await import('./rxgrad.ts');
  await closeRxgradEngines();
}
