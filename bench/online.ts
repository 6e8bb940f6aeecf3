/**
 * Online-learning benchmark: progressive validation (`testThenTrain`: score each batch, then learn
 * from it) on the 784-128-10 MLP at batch 64, rxgrad only (TF.js has no stream path to compare).
 *
 * Rows (examples/s over the same pre-made batches):
 * - `one forward`: no layer differs in training, so the training step's own forward is scored.
 * - `two forwards`: the same model plus an identity layer that declares `trainingDiffers`, which
 *   forces an inference forward before each training step (what a model with dropout pays).
 * The ratio is what `Layer.trainingDiffers` saves.
 *
 * Usage: `const rows = await onlineBench({ quick: true });`
 */
import { from, lastValueFrom, toArray } from 'rxjs';
import { alternatingMedians, type Row } from './harness.ts';
import { loadRxgrad, makeEngine, randomClassBatches } from './rxgrad.ts';

const WIDTH = 784;
const CLASSES = 10;
const BATCH = 64;

export async function onlineBench(options: { quick: boolean }): Promise<Row[]> {
  const rx = await loadRxgrad();
  const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
  try {
    const count = options.quick ? 100 : 400;
    const batches = randomClassBatches(rx, count, BATCH, WIDTH, CLASSES, 7);
    const marker: import('../src/index.ts').Layer = {
      kind: 'trainingDiffersMarker', name: '', trainingDiffers: true,
      build: (shape) => shape, parameters: () => [], config: () => ({}), forward: (x) => x, backward: (dy) => dy,
    };
    const variants = (['one', 'two'] as const).map((variant) => {
      const model = rx.sequential([...(variant === 'two' ? [marker] : []), rx.dense(128), rx.relu(), rx.dense(CLASSES)], { inputShape: [WIDTH], seed: 1, engine });
      const fit = { loss: rx.softmaxCrossEntropy(), optimizer: rx.adam({ learningRate: 1e-3 }), window: 1000 };
      return { variant, model, run: () => lastValueFrom(from(batches).pipe(rx.testThenTrain(model, fit), toArray())) };
    });
    const seconds = await alternatingMedians(variants.map((v) => v.run), options.quick ? 3 : 7);
    const rates = Object.fromEntries(variants.map((v, i) => [v.variant, (count * BATCH) / seconds[i]!])) as Record<'one' | 'two', number>;
    for (const v of variants) v.model.dispose();
    process.stderr.write(`  testThenTrain: one forward ${Math.round(rates.one)} ex/s, two forwards ${Math.round(rates.two)} ex/s\n`);
    const row = (benchmark: string, unit: string, rxgrad: number): Row => ({ benchmark, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
    return [
      row('testThenTrain mlp 784-128-10 b64, one forward per batch', 'examples/s', rates.one),
      row('testThenTrain mlp 784-128-10 b64, two forwards (a layer differs in training)', 'examples/s', rates.two),
      row('testThenTrain mlp 784-128-10 b64, one vs two forwards', '×', rates.one / rates.two),
    ];
  } finally {
    await engine.close();
  }
}
