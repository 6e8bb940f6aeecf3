/**
 * Writes the SpamAssassin split exactly as examples/spam.ts sees it (same loader, seeded split,
 * vocabulary and fixed-length ids; the validation share carved from the training split) to one JSON
 * file, for the PyTorch reference bench/reference/spam_lstm_torch.py. The file is generated output:
 * not committed.
 *
 * Usage: npx tsx bench/reference/spam-ids.ts --length 200 --out scratch/spam-ids-200.json
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { positiveInt } from '../../examples/common.ts';
import { loadSpamAssassin, spamSplits, type SpamArrays } from '../../src/data/spam-assassin.ts';

const options = new Command()
  .name('spam-ids')
  .requiredOption('--out <path>', 'JSON file to write')
  .option('--length <n>', 'tokens per message', positiveInt('--length'), 200)
  .option('--vocab <n>', 'vocabulary size', positiveInt('--vocab'), 10_000)
  .option('--seed <n>', 'split seed', Number, 1)
  .option('--validation <fraction>', 'validation share of the training split', Number, 0.1)
  .parse()
  .opts<{ out: string; length: number; vocab: number; seed: number; validation: number }>();

const data = spamSplits(loadSpamAssassin(), { length: options.length, vocabSize: options.vocab, seed: options.seed, validation: options.validation });
const part = (a: SpamArrays) => ({ ids: Array.from(a.features), labels: Array.from(a.labels) });
await mkdir(dirname(options.out), { recursive: true });
await writeFile(options.out, JSON.stringify({
  length: options.length, vocabSize: data.vocab.size, padId: data.vocab.padId, seed: options.seed,
  fit: part(data.fit), validation: part(data.validation), test: part(data.test), train: part(data.train),
}));
console.log(`wrote ${options.out}: fit ${data.fit.labels.length}, validation ${data.validation.labels.length}, test ${data.test.labels.length} messages of ${options.length} ids (vocabulary ${data.vocab.size})`);
