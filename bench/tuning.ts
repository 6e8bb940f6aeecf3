/**
 * Speed of what pruning and transfer learning buy, rxgrad only (TF.js has neither to compare):
 * - inference examples/s of the Fashion-MNIST MLP (784-300-100-10) and CNN (conv16-conv32-dense10) against
 *   the same models with half their hidden units / filters removed by `pruneStructured` (batch 256);
 * - fine-tuning examples/s of the CNN with a frozen base (only the last dense layer trains) against all
 *   trainable (batch 64, Adam).
 * Alternating rounds, median per variant, so drift and other load hit both alike. Speed does not depend on
 * the weights' values, so the models are not trained first.
 *
 * Usage: `const rows = await tuningBench({ quick: true });`
 */
import { from, lastValueFrom, toArray } from 'rxjs';
import { median, type Row } from './harness.ts';
import { loadRxgrad, makeEngine } from './rxgrad.ts';

type Rx = Awaited<ReturnType<typeof loadRxgrad>>;
type Model = import('../src/index.ts').Model;
type Batch = import('../src/index.ts').Batch;

/** Median examples/s of each variant over alternating rounds of `run`. */
async function alternate(variants: { name: string; run: () => Promise<unknown> }[], examples: number, rounds: number): Promise<number[]> {
  for (const v of variants) await v.run(); // warm-up: arenas, optimizer slots, JIT
  const seconds = variants.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, v] of variants.entries()) {
      const t0 = performance.now();
      await v.run();
      seconds[i]!.push((performance.now() - t0) / 1000);
    }
  }
  return seconds.map((s) => examples / median(s));
}

function randomBatches(rx: Rx, count: number, rows: number, shape: number[], seed: number): Batch[] {
  const rng = new rx.Random(seed);
  const width = shape.reduce((a, b) => a * b, 1);
  return Array.from({ length: count }, () =>
    rx.batchFromArrays({ features: new Float32Array(rows * width).map(() => rng.uniform()), shape, labels: new Int32Array(rows).map(() => rng.int(10)) }),
  );
}

export async function tuningBench(options: { quick: boolean }): Promise<Row[]> {
  const rx = await loadRxgrad();
  const engine = await makeEngine(Number(process.env['RXGRAD_THREADS'] ?? 2));
  const rounds = options.quick ? 3 : 7;
  const rows: Row[] = [];
  const row = (benchmark: string, unit: string, rxgrad: number): Row => ({ benchmark, unit, rxgrad, tfjsWasm: null, tfjsCpu: null });
  const models: Model[] = [];
  try {
    const nets = {
      'mlp 784-300-100-10': { shape: [784], layers: () => [rx.dense(300), rx.relu(), rx.dense(100), rx.relu(), rx.dense(10)] },
      'cnn conv16-conv32-dense10': {
        shape: [28, 28, 1],
        layers: () => [rx.conv2d(16, 3, { padding: 'same' }), rx.relu(), rx.maxPool2d(2), rx.conv2d(32, 3, { padding: 'same' }), rx.relu(), rx.maxPool2d(2), rx.flatten(), rx.dense(10)],
      },
    };
    for (const [name, net] of Object.entries(nets)) {
      const full = rx.sequential(net.layers(), { inputShape: net.shape, seed: 1, engine });
      const { model: half } = rx.pruneStructured(full, { fraction: 0.5 });
      models.push(full, half);
      const batches = randomBatches(rx, options.quick ? 8 : 20, 256, net.shape, 3);
      const predict = (m: Model) => () => lastValueFrom(from(batches).pipe(m.predict(), toArray()));
      const [f, h] = await alternate([{ name: 'full', run: predict(full) }, { name: 'half', run: predict(half) }], batches.length * 256, rounds);
      process.stderr.write(`  ${name} inference: full ${Math.round(f!)} ex/s, structured 50% ${Math.round(h!)} ex/s\n`);
      rows.push(
        row(`inference ${name} b256, full`, 'examples/s', f!),
        row(`inference ${name} b256, structured pruning 50% of units/filters`, 'examples/s', h!),
        row(`inference ${name} b256, structured 50% speed-up`, '×', h! / f!),
      );
    }
    const net = nets['cnn conv16-conv32-dense10'];
    const batches = randomBatches(rx, options.quick ? 8 : 20, 64, net.shape, 4);
    const frozen = rx.sequential(net.layers(), { inputShape: net.shape, seed: 1, engine });
    const trainable = rx.sequential(net.layers(), { inputShape: net.shape, seed: 1, engine });
    models.push(frozen, trainable);
    rx.freeze(frozen, (l) => l.name !== 'dense_1');
    const fit = (m: Model) => {
      const optimizer = rx.adam({ learningRate: 1e-4 });
      return () => lastValueFrom(from(batches).pipe(m.fit({ loss: rx.softmaxCrossEntropy(), optimizer }), toArray()));
    };
    const [fz, tr] = await alternate([{ name: 'frozen', run: fit(frozen) }, { name: 'trainable', run: fit(trainable) }], batches.length * 64, rounds);
    process.stderr.write(`  cnn fine-tuning: frozen base ${Math.round(fz!)} ex/s, all trainable ${Math.round(tr!)} ex/s\n`);
    rows.push(
      row('fine-tuning cnn conv16-conv32-dense10 b64, all trainable', 'examples/s', tr!),
      row('fine-tuning cnn conv16-conv32-dense10 b64, frozen base (head only)', 'examples/s', fz!),
      row('fine-tuning cnn conv16-conv32-dense10 b64, frozen-base speed-up', '×', fz! / tr!),
    );
    return rows;
  } finally {
    for (const m of models) m.dispose();
    await engine.close();
  }
}
