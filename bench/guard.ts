/**
 * Cost of the non-finite guard (`fit({ nonFinite })`, default 'error') on the 784-128-10 MLP at
 * batch 64, rxgrad only. Two measurements, because a difference of two ~1 ms step times is within
 * the noise of a busy machine:
 * - the training steps with the guard on ('error') and off ('off'), same pre-made batches,
 *   alternating rounds, median per variant (examples/s);
 * - the guard's own work (the SIMD column sums over every gradient plus their finiteness checks,
 *   `firstNonFinite`), timed alone on the model's real gradients, as a percentage of the median
 *   guarded step. The target is at most 2% of a step.
 *
 * Usage: `const rows = await guardBench({ quick: true });`
 */
import { from, lastValueFrom } from 'rxjs';
import { alternatingMedians, timeIt, type Row } from './harness.ts';
import { loadRxgrad, makeEngine, randomClassBatches } from './rxgrad.ts';

const WIDTH = 784;
const CLASSES = 10;
const BATCH = 64;

export async function guardBench(options: { quick: boolean }): Promise<Row[]> {
  const rx = await loadRxgrad();
  const { firstNonFinite } = await import('../src/reverse-stream.ts');
  const { modelHost } = await import('../src/model.ts');
  const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
  try {
    const count = options.quick ? 100 : 300;
    const batches = randomClassBatches(rx, count, BATCH, WIDTH, CLASSES, 7);
    const variants = (['error', 'off'] as const).map((nonFinite) => {
      const model = rx.sequential([rx.dense(128), rx.relu(), rx.dense(CLASSES)], { inputShape: [WIDTH], seed: 1, engine });
      const fit = { loss: rx.softmaxCrossEntropy(), optimizer: rx.adam({ learningRate: 1e-3 }), nonFinite };
      return { nonFinite, model, run: () => lastValueFrom(from(batches).pipe(model.fit(fit))) };
    });
    const seconds = await alternatingMedians(variants.map((v) => v.run), options.quick ? 3 : 7);
    const stepMs = { error: (seconds[0]! * 1000) / count, off: (seconds[1]! * 1000) / count };
    // The check alone, on the gradients the last step left in the model (all finite: the full scan path).
    const params = modelHost(variants[0]!.model).parameters;
    const arena = engine.heap.arena();
    const step = new rx.StepContext(engine, arena, BATCH, true, new rx.Random(1), 0);
    const check = await timeIt(() => {
      arena.reset();
      if (firstNonFinite(params, step) !== null) throw new Error('guard bench: the gradients are not finite');
    });
    arena.dispose();
    for (const v of variants) v.model.dispose();
    const share = (100 * check.ms) / stepMs.error;
    process.stderr.write(`  guard: step ${stepMs.error.toFixed(3)} ms on, ${stepMs.off.toFixed(3)} ms off; the check alone ${(check.ms * 1000).toFixed(1)} µs = ${share.toFixed(2)}% of a step\n`);
    const row = (benchmark: string, unit: string, rxgrad: number): Row => ({ benchmark, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
    return [
      row("non-finite guard mlp 784-128-10 b64: fit with nonFinite 'error' (default)", 'examples/s', (BATCH * 1000) / stepMs.error),
      row("non-finite guard mlp 784-128-10 b64: fit with nonFinite 'off'", 'examples/s', (BATCH * 1000) / stepMs.off),
      row('non-finite guard mlp 784-128-10 b64: the check alone, share of a guarded step', '%', share),
    ];
  } finally {
    await engine.close();
  }
}
