/**
 * A character-level language model: a small decoder-only Transformer (embedding → learned positions →
 * N causal pre-norm blocks → layerNorm → dense vocabulary head) trained on English text. Reports the
 * validation loss in bits per character next to unigram and bigram baselines (add-one smoothing,
 * same train/validation split), then samples text at several temperatures.
 *
 * Usage:
 *   npx tsx examples/char-transformer.ts                    # the fortunes corpus (apt-get install fortunes), a few minutes
 *   npx tsx examples/char-transformer.ts --quick            # the small public-domain fixture, well under a minute (the tests)
 *   npx tsx examples/char-transformer.ts --data my.txt --steps 3000 --save runs/char   # any UTF-8 text file
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { lastValueFrom, of, tap } from 'rxjs';
import {
  adam, batchFromArrays, clipGradientNorm, closeDefaultEngine, cosineDecay, defaultEngine, dense, embedding, floatColumn, layerNorm, nextTokenData,
  positionalEncoding, Random, sequential, softmaxCrossEntropy, splitText, transformerDecoderBlock, Vocabulary, type Batch, type Initializer, type Model,
} from '../src/index.ts';
import { dashboardOption, keepServing, startDashboard, watchWith } from './common.ts';

const FORTUNES_DIR = '/usr/share/games/fortunes';
const FIXTURE = new URL('../test/fixtures/english-text.txt', import.meta.url);
/** Fortune files of pictures rather than English prose. */
const NOT_PROSE = new Set(['art', 'ascii-art']);
/** U(−a, a): the embeddings' initial scale (Keras' default for embeddings). */
const uniform = (a: number): Initializer => ({
  name: `uniform(${a})`,
  fill(values, _fans, rng) {
    for (let i = 0; i < values.length; i++) values[i] = (2 * rng.uniform() - 1) * a;
  },
});
/** Label of padded positions at the end of the validation text (no loss there). */
const IGNORE = -1;

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

const program = new Command()
  .name('char-transformer')
  .description('Train a decoder-only Transformer as a character-level language model; report bits per character and sample text.')
  .option('--quick', 'small model on the bundled fixture text (for tests)', false)
  .option('--data <source>', "'fortunes' (the Debian package's files) or a path to a UTF-8 text file (default: fortunes, or the fixture with --quick)")
  .option('--steps <n>', 'training steps', positiveInt('--steps'))
  .option('--length <n>', 'context length T', positiveInt('--length'))
  .option('--dim <n>', 'model width', positiveInt('--dim'))
  .option('--layers <n>', 'Transformer blocks', positiveInt('--layers'))
  .option('--heads <n>', 'attention heads', positiveInt('--heads'))
  .option('--batch-size <n>', 'sequences per step', positiveInt('--batch-size'))
  .option('--learning-rate <lr>', 'peak Adam learning rate', Number)
  .option('--dropout <rate>', 'dropout on attention weights and sublayer outputs (default 0; 0.2 with --quick, whose corpus is tiny)', Number)
  .option('--seed <n>', 'seed of initialisation, batches and sampling', Number, 1)
  .option('--sample-length <n>', 'characters sampled per temperature', positiveInt('--sample-length'))
  .option('--prompt <text>', 'text the samples continue', 'The ')
  .option('--save <dir>', 'write the weights (JSON of arrays) and the vocabulary to this directory')
  .option(...dashboardOption);
program.parse();
const o = program.opts<{
  quick: boolean; data?: string; steps?: number; length?: number; dim?: number; layers?: number; heads?: number; batchSize?: number;
  learningRate?: number; dropout?: number; seed: number; sampleLength?: number; prompt: string; save?: string; dashboard?: true | number;
}>();

const config = {
  steps: o.steps ?? (o.quick ? 600 : 2000),
  length: o.length ?? (o.quick ? 48 : 64),
  dim: o.dim ?? (o.quick ? 48 : 64),
  layers: o.layers ?? 2,
  heads: o.heads ?? 4,
  batchSize: o.batchSize ?? (o.quick ? 16 : 32),
  learningRate: o.learningRate ?? (o.quick ? 5e-3 : 1e-2),
  sampleLength: o.sampleLength ?? (o.quick ? 120 : 400),
  dropout: o.dropout ?? (o.quick ? 0.2 : 0),
};

// ---------------------------------------------------------------- corpus

/** Fortunes of every prose file: overstrike (x\b) removed, split at the `%` separator lines. */
function readFortunes(dir: string): string[] {
  const files = readdirSync(dir).filter((f) => !f.includes('.') && !NOT_PROSE.has(f)).sort();
  const fortunes: string[] = [];
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8').replace(/.\x08/gu, '').replace(/\r/g, '');
    for (const piece of text.split(/^%$/mu)) {
      const trimmed = piece.replace(/^\n+|\s+$/gu, '');
      if (trimmed) fortunes.push(trimmed);
    }
  }
  return fortunes;
}

function loadCorpus(): { name: string; train: string; validation: string } {
  const source = o.data ?? (o.quick ? 'fixture' : 'fortunes');
  if (source === 'fortunes') {
    if (!existsSync(FORTUNES_DIR)) program.error(`${FORTUNES_DIR} is missing: apt-get install fortunes, or pass --data <file> or --quick`);
    const fortunes = readFortunes(FORTUNES_DIR);
    // Every tenth fortune is held out: validation text comes from every file, never from a training fortune.
    const train = fortunes.filter((_, i) => i % 10 !== 9).join('\n\n');
    const validation = fortunes.filter((_, i) => i % 10 === 9).join('\n\n');
    return { name: `fortunes (${fortunes.length} fortunes)`, train, validation };
  }
  const path = source === 'fixture' ? FIXTURE : source;
  if (!existsSync(path)) program.error(`--data: no such file '${String(path)}'`);
  const text = readFileSync(path, 'utf8');
  return { name: source === 'fixture' ? 'test/fixtures/english-text.txt' : source, ...splitText(text, 0.15) };
}

// ---------------------------------------------------------------- baselines

/** Unigram and bigram bits per character of `validation`, counts from `train`, add-one smoothing over the vocabulary. */
function baselines(train: Int32Array, validation: Int32Array, size: number): { unigram: number; bigram: number } {
  const uni = new Float64Array(size);
  const bi = new Float64Array(size * size);
  for (let i = 0; i < train.length; i++) {
    uni[train[i]!]!++;
    if (i > 0) bi[train[i - 1]! * size + train[i]!]!++;
  }
  // The same predicted positions as the model: every validation character after the first.
  let unigramBits = 0;
  let bigramBits = 0;
  const n = validation.length - 1;
  for (let i = 1; i < validation.length; i++) {
    const c = validation[i]!;
    const p = validation[i - 1]!;
    unigramBits -= Math.log2((uni[c]! + 1) / (train.length + size));
    const context = train.length > 0 ? uni[p]! - (train[train.length - 1] === p ? 1 : 0) : 0;
    bigramBits -= Math.log2((bi[p * size + c]! + 1) / (context + size));
  }
  return { unigram: unigramBits / n, bigram: bigramBits / n };
}

// ---------------------------------------------------------------- model

const corpus = loadCorpus();
const vocab = Vocabulary.fromCharacters(corpus.train);
const trainIds = vocab.encode(corpus.train);
const validationIds = vocab.encode(corpus.validation);
const T = config.length;
const engine = defaultEngine();

const model = sequential([
  embedding(vocab.size, config.dim, { paddingIndex: vocab.padId }),
  // Positions start as small as the token embeddings (U(±0.05)), so neither drowns the other at first.
  positionalEncoding({ kind: 'learned', maxLength: T, initializer: uniform(0.05) }),
  ...Array.from({ length: config.layers }, () => transformerDecoderBlock({ heads: config.heads, dim: config.dim, ffDim: 4 * config.dim, dropout: config.dropout })),
  layerNorm(),
  dense(vocab.size),
], { inputShape: [T], seed: o.seed, name: 'char-transformer' });
model.summary();
console.log(`corpus: ${corpus.name}: ${trainIds.length.toLocaleString('en-US')} training characters, ${validationIds.length.toLocaleString('en-US')} validation; vocabulary ${vocab.size} (pad, unk and ${vocab.size - 2} characters)`);
console.log(`compute: ${engine.compute.name}, ${engine.compute.threads} thread(s); steps ${config.steps}, batch ${config.batchSize}×${T}, peak learning rate ${config.learningRate}`);

const base = baselines(trainIds, validationIds, vocab.size);
console.log(`baselines on validation: unigram ${base.unigram.toFixed(3)} bpc, bigram ${base.bigram.toFixed(3)} bpc`);

/** Bits per character of the model on the validation text: windows of T, every transition counted once. */
async function validationBpc(m: Model): Promise<number> {
  const data = nextTokenData(validationIds, { length: T, padLast: { padId: vocab.padId, ignoreLabel: IGNORE } });
  const rowsPerBatch = 64;
  let bits = 0;
  let counted = 0;
  for (let start = 0; start < data.rows; start += rowsPerBatch) {
    const rows = Math.min(rowsPerBatch, data.rows - start);
    const batch = batchFromArrays({ features: data.features.subarray(start * T, (start + rows) * T), shape: [T] });
    const out = await lastValueFrom(of(batch).pipe(m.predict()));
    const logits = floatColumn(out, 'output').values;
    const V = vocab.size;
    for (let r = 0; r < rows * T; r++) {
      const label = data.labels[start * T + r]!;
      if (label === IGNORE) continue;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[r * V + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[r * V + v]! - max);
      bits += (Math.log(sum) + max - logits[r * V + label]!) / Math.LN2;
      counted++;
    }
  }
  return bits / counted;
}

// ---------------------------------------------------------------- training

/**
 * Random windows of T + 1 characters, one batch per step, pulled lazily by `fitFrom`.
 */
function* trainingBatches(): Generator<Batch> {
  const rng = new Random(o.seed + 17);
  const B = config.batchSize;
  const features = new Int32Array(B * T);
  const labels = new Int32Array(B * T);
  for (let step = 0; step < config.steps; step++) {
    for (let b = 0; b < B; b++) {
      const s = rng.int(trainIds.length - T);
      features.set(trainIds.subarray(s, s + T), b * T);
      labels.set(trainIds.subarray(s + 1, s + T + 1), b * T);
    }
    // Copies: a batch wraps its arrays, and the next step refills them.
    yield batchFromArrays({ features: features.slice(), shape: [T], labels: labels.slice(), labelShape: [T] });
  }
}

// A linear warm-up to the peak rate, then a cosine decay to a tenth of it over the remaining steps.
const warmupSteps = Math.min(100, Math.floor(config.steps / 10));
const optimizer = adam({
  learningRate: cosineDecay({
    initialRate: config.learningRate / Math.max(1, warmupSteps), warmupSteps, warmupTarget: config.learningRate,
    decaySteps: Math.max(1, config.steps - warmupSteps), alpha: 0.1,
  }),
});
const board = await startDashboard(o.dashboard, { model, title: 'char-transformer' });
const started = performance.now();
let running = 0;
const every = Math.max(1, Math.floor(config.steps / 10));
await lastValueFrom(
  // Clipping the global gradient norm at 1 guards the high peak learning rate against rare spikes.
  model.fitFrom(trainingBatches(), { loss: softmaxCrossEntropy(), optimizer, gradientOperators: [clipGradientNorm(1)] }).pipe(
    watchWith(board),
    tap((r) => {
      running = r.step === 1 ? r.loss : 0.95 * running + 0.05 * r.loss;
      if (r.step % every === 0 || r.step === config.steps) {
        const seconds = (performance.now() - started) / 1000;
        console.log(`step ${r.step}/${config.steps}  train ${(running / Math.LN2).toFixed(3)} bpc  lr ${optimizer.learningRate.toExponential(2)}  ${seconds.toFixed(1)} s`);
      }
    }),
  ),
);
const trainSeconds = (performance.now() - started) / 1000;
const bpc = await validationBpc(model);
console.log(`validation bpc: model ${bpc.toFixed(3)} | unigram ${base.unigram.toFixed(3)} | bigram ${base.bigram.toFixed(3)}`);
console.log(`training time: ${trainSeconds.toFixed(1)} s (${((config.steps * config.batchSize * T) / trainSeconds).toFixed(0)} characters/s)`);

// ---------------------------------------------------------------- sampling

/**
 * Continues `prompt` at each temperature (one batch row per temperature): the causal model reads
 * the last ≤ T characters placed at the start of the window (later positions are padding it cannot
 * see), and the next character is drawn from softmax(logits / temperature) without pad and unk.
 */
async function sample(prompt: string, temperatures: readonly number[], count: number): Promise<string[]> {
  const rng = new Random(o.seed + 99);
  const texts = temperatures.map(() => Array.from(vocab.encode(prompt)).filter((id) => id !== vocab.unkId));
  const V = vocab.size;
  for (let n = 0; n < count; n++) {
    const features = new Int32Array(temperatures.length * T).fill(vocab.padId);
    texts.forEach((ids, r) => features.set(ids.slice(-T), r * T));
    const out = await lastValueFrom(of(batchFromArrays({ features, shape: [T] })).pipe(model.predict()));
    const logits = floatColumn(out, 'output').values;
    texts.forEach((ids, r) => {
      const at = (r * T + Math.min(ids.length, T) - 1) * V;
      const temperature = temperatures[r]!;
      const weights = new Float64Array(V);
      let max = -Infinity;
      for (let v = 2; v < V; v++) max = Math.max(max, logits[at + v]! / temperature);
      let total = 0;
      for (let v = 2; v < V; v++) total += weights[v] = Math.exp(logits[at + v]! / temperature - max);
      let u = rng.uniform() * total;
      let next = V - 1;
      for (let v = 2; v < V; v++) if ((u -= weights[v]!) < 0) { next = v; break; }
      ids.push(next);
    });
  }
  return texts.map((ids) => vocab.decode(ids));
}

const temperatures = [0.5, 0.8, 1.0];
const samples = await sample(o.prompt, temperatures, config.sampleLength);
samples.forEach((text, i) => console.log(`\n--- sample, temperature ${temperatures[i]} ---\n${text}`));

if (o.save) {
  mkdirSync(o.save, { recursive: true });
  writeFileSync(join(o.save, 'vocabulary.json'), JSON.stringify(vocab));
  writeFileSync(join(o.save, 'weights.json'), JSON.stringify(Object.fromEntries([...model.getWeights()].map(([k, v]) => [k, Array.from(v)]))));
  console.log(`\nsaved vocabulary.json and weights.json to ${o.save}`);
}
await keepServing(board);
model.dispose();
await closeDefaultEngine();
