/**
 * Text for sequence models: a {@link Vocabulary} (character- or word-level, with padding and
 * unknown tokens, saved as JSON next to a model) and helpers that turn a corpus into next-token
 * training data (`[T]` Int32 features, `[T]` Int32 labels shifted by one).
 */
import type { BatchArrays } from './batch.ts';

/** Tokenisation level of a {@link Vocabulary}. */
export type VocabularyLevel = 'char' | 'word';

/** What {@link Vocabulary.toJSON} returns and {@link Vocabulary.fromJSON} takes. */
export interface VocabularyJSON {
  format: 'rxgrad-vocabulary';
  version: 1;
  level: VocabularyLevel;
  /** Every token by id; `tokens[padId]` and `tokens[unkId]` are the special tokens. */
  tokens: string[];
  padId: number;
  unkId: number;
  /** Word level: text was lower-cased before tokenising. */
  lowercase: boolean;
}

/** Options of the vocabulary builders. */
export interface VocabularyOptions {
  /** Tokens seen fewer times are left out (they encode as unk). Default 1. */
  minCount?: number;
  /** Keep at most this many tokens, specials included (the most frequent; ties by first appearance). */
  maxSize?: number;
  /** Spelling of the padding token (default '<pad>'); id 0. */
  pad?: string;
  /** Spelling of the unknown token (default '<unk>'); id 1. */
  unk?: string;
}

/** Words (letters, digits, inner apostrophes) and single punctuation marks; whitespace separates. */
const WORD_PATTERN = /[\p{L}\p{N}_]+(?:['’][\p{L}\p{N}_]+)*|[^\s\p{L}\p{N}_]/gu;
/** Punctuation that attaches to the previous word when decoding words back to text. */
const CLOSING = /^[.,;:!?%)\]}'’”]$/u;
const OPENING = /^[([{“]$/u;

/**
 * A token ↔ id mapping. Ids 0 and 1 are the padding and unknown tokens; the rest are the corpus'
 * tokens by descending count (ties in order of first appearance, so building is deterministic).
 * Character level splits by Unicode code point (not UTF-16 unit), so an emoji is one token.
 *
 * Usage: `const vocab = Vocabulary.fromCharacters(corpus); const ids = vocab.encode('hello'); vocab.decode(ids) === 'hello'`
 */
export class Vocabulary {
  readonly padId = 0;
  readonly unkId = 1;
  private readonly index = new Map<string, number>();

  private constructor(
    readonly level: VocabularyLevel,
    readonly tokens: readonly string[],
    readonly lowercase: boolean,
  ) {
    if (tokens.length < 2) throw new RangeError('Vocabulary: needs at least the padding and unknown tokens');
    tokens.forEach((t, i) => {
      if (this.index.has(t)) throw new RangeError(`Vocabulary: token ${JSON.stringify(t)} appears twice (ids ${this.index.get(t)} and ${i})`);
      this.index.set(t, i);
    });
  }

  /**
   * A character-level vocabulary of `text`.
   *
   * Usage: `const vocab = Vocabulary.fromCharacters(readFileSync('corpus.txt', 'utf8'));`
   */
  static fromCharacters(text: string, options: VocabularyOptions = {}): Vocabulary {
    return Vocabulary.build('char', Array.from(text), false, options);
  }

  /**
   * A word-level vocabulary: words and punctuation marks of `text`, lower-cased unless `lowercase: false`.
   *
   * Usage: `const vocab = Vocabulary.fromWords(corpus, { minCount: 2, maxSize: 10_000 });`
   */
  static fromWords(text: string, options: VocabularyOptions & { lowercase?: boolean } = {}): Vocabulary {
    const lowercase = options.lowercase ?? true;
    return Vocabulary.build('word', wordsOf(text, lowercase), lowercase, options);
  }

  private static build(level: VocabularyLevel, pieces: readonly string[], lowercase: boolean, options: VocabularyOptions): Vocabulary {
    const pad = options.pad ?? '<pad>';
    const unk = options.unk ?? '<unk>';
    if (pad === unk) throw new RangeError(`Vocabulary: pad and unk tokens must differ, both are ${JSON.stringify(pad)}`);
    const minCount = options.minCount ?? 1;
    const maxSize = options.maxSize ?? Infinity;
    if (!(maxSize >= 2)) throw new RangeError(`Vocabulary: maxSize must be at least 2 (pad and unk), got ${maxSize}`);
    const counts = new Map<string, number>();
    for (const p of pieces) if (p !== pad && p !== unk) counts.set(p, (counts.get(p) ?? 0) + 1);
    // Map iteration is insertion order = first appearance; a stable sort keeps it among equal counts.
    const ranked = [...counts].filter(([, c]) => c >= minCount).sort((a, b) => b[1] - a[1]).map(([t]) => t);
    return new Vocabulary(level, [pad, unk, ...ranked.slice(0, maxSize - 2)], lowercase);
  }

  /** Number of tokens, specials included (the embedding's and the output layer's size). */
  get size(): number {
    return this.tokens.length;
  }

  /** The id of a token, or unkId. */
  id(token: string): number {
    return this.index.get(token) ?? this.unkId;
  }

  /** The token of an id; throws for an id outside the vocabulary. */
  token(id: number): string {
    const t = this.tokens[id];
    if (t === undefined) throw new RangeError(`Vocabulary: id ${id} is outside 0..${this.size - 1}`);
    return t;
  }

  /** Splits text into this vocabulary's tokens (characters, or words and punctuation). */
  tokenize(text: string): string[] {
    return this.level === 'char' ? Array.from(text) : wordsOf(text, this.lowercase);
  }

  /**
   * Token ids of `text`; unknown tokens become unkId.
   *
   * Usage: `const ids = vocab.encode('to be or not to be');`
   */
  encode(text: string): Int32Array {
    const pieces = this.tokenize(text);
    const ids = new Int32Array(pieces.length);
    for (let i = 0; i < pieces.length; i++) ids[i] = this.id(pieces[i]!);
    return ids;
  }

  /**
   * Text of token ids. Padding is dropped unless `keepPadding`; words are joined by spaces, with
   * no space before closing punctuation or after opening brackets.
   *
   * Usage: `vocab.decode(model output ids)`
   */
  decode(ids: ArrayLike<number>, options: { keepPadding?: boolean } = {}): string {
    const pieces: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id === this.padId && !options.keepPadding) continue;
      pieces.push(this.token(id));
    }
    if (this.level === 'char') return pieces.join('');
    let out = '';
    for (const p of pieces) {
      const glue = out === '' || CLOSING.test(p) || OPENING.test(out.at(-1)!) ? '' : ' ';
      out += glue + p;
    }
    return out;
  }

  /**
   * A JSON-safe description, to save with a model (`JSON.stringify(vocab)` calls it).
   *
   * Usage: `writeFileSync('vocab.json', JSON.stringify(vocab));`
   */
  toJSON(): VocabularyJSON {
    return { format: 'rxgrad-vocabulary', version: 1, level: this.level, tokens: [...this.tokens], padId: this.padId, unkId: this.unkId, lowercase: this.lowercase };
  }

  /**
   * Rebuilds a vocabulary from {@link toJSON}'s output (or its parsed JSON text), checking every field.
   *
   * Usage: `const vocab = Vocabulary.fromJSON(JSON.parse(readFileSync('vocab.json', 'utf8')));`
   */
  static fromJSON(json: unknown): Vocabulary {
    const fail = (why: string): never => {
      throw new TypeError(`Vocabulary.fromJSON: ${why}`);
    };
    if (typeof json !== 'object' || json === null) return fail('expected an object');
    const o = json as Record<string, unknown>;
    if (o['format'] !== 'rxgrad-vocabulary') fail(`format is ${JSON.stringify(o['format'])}, expected "rxgrad-vocabulary"`);
    if (o['version'] !== 1) fail(`version ${JSON.stringify(o['version'])} is not supported (1)`);
    if (o['level'] !== 'char' && o['level'] !== 'word') fail(`level must be "char" or "word", got ${JSON.stringify(o['level'])}`);
    const tokens = o['tokens'];
    if (!Array.isArray(tokens) || !tokens.every((t): t is string => typeof t === 'string')) return fail('tokens must be an array of strings');
    if (o['padId'] !== 0 || o['unkId'] !== 1) fail(`padId and unkId must be 0 and 1, got ${JSON.stringify(o['padId'])} and ${JSON.stringify(o['unkId'])}`);
    if (typeof o['lowercase'] !== 'boolean') fail('lowercase must be a boolean');
    return new Vocabulary(o['level'] as VocabularyLevel, tokens, o['lowercase'] as boolean);
  }
}

function wordsOf(text: string, lowercase: boolean): string[] {
  return (lowercase ? text.toLowerCase() : text).match(WORD_PATTERN) ?? [];
}

// ---------------------------------------------------------------- next-token data

/** Options of {@link nextTokenData}. */
export interface NextTokenOptions {
  /** Tokens per example, T. */
  length: number;
  /** Start of each window after the previous one's (default `length`: windows do not overlap). */
  stride?: number;
  /**
   * A final window shorter than `length` is padded with `padId` (features) and `ignoreLabel`
   * (labels), and a `mask` column (1 real, 0 padding) is added — by default it is dropped.
   */
  padLast?: { padId: number; ignoreLabel: number };
}

/**
 * Next-token prediction examples from a token stream: example i is the window
 * `ids[s, s + T)` as features and `ids[s + 1, s + T + 1)` as labels (each position predicts the
 * next token), s = i·stride. Returned as {@link BatchArrays} (`shape: [T]`, `labelShape: [T]`) for
 * `model.train(...)` or `batchFromArrays(...)`.
 *
 * Usage: `const data = nextTokenData(vocab.encode(text), { length: 128 }); model.train(data, { epochs: 1, batchSize: 32, loss: softmaxCrossEntropy(), optimizer: adam() })`
 */
export function nextTokenData(ids: ArrayLike<number>, options: NextTokenOptions): BatchArrays & { labels: Int32Array; rows: number } {
  const T = options.length;
  const stride = options.stride ?? T;
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`nextTokenData: length must be a positive integer, got ${T}`);
  if (!Number.isInteger(stride) || stride < 1) throw new RangeError(`nextTokenData: stride must be a positive integer, got ${stride}`);
  const pairs = ids.length - 1;
  const starts: number[] = [];
  for (let s = 0; s + T <= pairs; s += stride) starts.push(s);
  // The tokens after the last full window (if any) make one padded example, when asked for.
  const next = starts.length === 0 ? 0 : starts.at(-1)! + stride;
  const padded = options.padLast && next < pairs ? next : null;
  if (padded !== null) starts.push(padded);
  const rows = starts.length;
  if (rows === 0) throw new RangeError(`nextTokenData: ${ids.length} tokens make no example of length ${T} (need ${T + 1})`);
  const features = new Int32Array(rows * T);
  const labels = new Int32Array(rows * T);
  const mask = padded !== null ? new Int32Array(rows * T).fill(1) : null;
  starts.forEach((s, r) => {
    for (let t = 0; t < T; t++) {
      const o = r * T + t;
      if (s + t < pairs) {
        features[o] = ids[s + t]!;
        labels[o] = ids[s + t + 1]!;
      } else {
        features[o] = options.padLast!.padId;
        labels[o] = options.padLast!.ignoreLabel;
        mask![o] = 0;
      }
    }
  });
  return { features, shape: [T], labels, labelShape: [T], rows, ...(mask ? { columns: { mask: { values: mask, shape: [T] } } } : {}) };
}

/**
 * Splits text at a line boundary into a leading training part and a trailing validation part of
 * about `validationFraction` of the characters (so no line is in both).
 *
 * Usage: `const { train, validation } = splitText(corpus, 0.1);`
 */
export function splitText(text: string, validationFraction: number): { train: string; validation: string } {
  if (!(validationFraction > 0 && validationFraction < 1)) throw new RangeError(`splitText: validationFraction must be in (0, 1), got ${validationFraction}`);
  let cut = Math.floor(text.length * (1 - validationFraction));
  const newline = text.indexOf('\n', cut);
  cut = newline === -1 ? cut : newline + 1;
  return { train: text.slice(0, cut), validation: text.slice(cut) };
}
