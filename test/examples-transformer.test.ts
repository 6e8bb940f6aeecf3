/**
 * examples/char-transformer.ts in its `--quick` mode (the bundled public-domain fixture, no Debian
 * package needed), run as a child process with a time bound; and src/text.ts, which the example is
 * built on (vocabulary round trips, next-token windows).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { nextTokenData, splitText, Vocabulary } from '../src/text.ts';

const run = promisify(execFile);
/** The quick run takes ~15 s on an idle 2-core machine; the bound leaves room for a loaded CI host. */
const TIMEOUT_MS = 180_000;

async function runExample(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/char-transformer.ts', ...args], {
    timeout: TIMEOUT_MS, env: { ...process.env, RXGRAD_THREADS: process.env['RXGRAD_THREADS'] ?? '2' },
  });
  return stdout;
}

describe('examples/char-transformer.ts --quick', () => {
  it('beats the unigram baseline by a wide margin and the bigram baseline, and samples text', { timeout: TIMEOUT_MS + 10_000 }, async () => {
    const started = performance.now();
    const stdout = await runExample(['--quick']);
    const match = /validation bpc: model ([\d.]+) \| unigram ([\d.]+) \| bigram ([\d.]+)/.exec(stdout);
    assert.ok(match, `no bpc line in:\n${stdout}`);
    const [model, unigram, bigram] = match.slice(1).map(Number) as [number, number, number];
    console.log(`char-transformer --quick: model ${model} bpc, unigram ${unigram}, bigram ${bigram}; ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.ok(model < unigram - 0.75, `model ${model} bpc is not well below the unigram baseline ${unigram}`);
    assert.ok(model < bigram, `model ${model} bpc does not beat the bigram baseline ${bigram}`);
    for (const t of ['0.5', '0.8', '1']) assert.match(stdout, new RegExp(`--- sample, temperature ${t} ---\\nThe `));
  });

  it('rejects a missing data file with a clear message', async () => {
    await assert.rejects(runExample(['--data', 'no/such/file.txt', '--steps', '1']), /--data: no such file 'no\/such\/file.txt'/);
  });
});

describe('src/text.ts', () => {
  it('character vocabulary: specials first, ranked by count, encode/decode round trip, unknowns', () => {
    const vocab = Vocabulary.fromCharacters('abracadabra 🙂');
    assert.deepEqual(vocab.tokens.slice(0, 4), ['<pad>', '<unk>', 'a', 'b']);
    assert.equal(vocab.id('🙂') > 1, true, 'a code point, not a UTF-16 half, is one token');
    assert.equal(vocab.decode(vocab.encode('cabbage')), 'cabba<unk><unk>');
    assert.equal(vocab.decode(vocab.encode('abracadabra 🙂')), 'abracadabra 🙂');
    assert.deepEqual([...vocab.encode('xa')], [vocab.unkId, vocab.id('a')]);
    assert.equal(vocab.decode([0, vocab.id('a'), 0]), 'a', 'padding is dropped');
  });

  it('word vocabulary: words and punctuation, lower-cased, minCount/maxSize, readable decode', () => {
    const text = "The cat sat. The cat's hat? A cat!";
    const vocab = Vocabulary.fromWords(text, { minCount: 1 });
    assert.deepEqual(vocab.tokens.slice(2, 4), ['the', 'cat'], 'equal counts keep the order of first appearance');
    assert.deepEqual(vocab.tokenize('The Cat sat.'), ['the', 'cat', 'sat', '.']);
    assert.equal(vocab.decode(vocab.encode("The cat's hat?")), "the cat's hat?");
    assert.equal(Vocabulary.fromWords(text, { minCount: 2 }).size, 2 + 2, 'only "the" and "cat" occur twice or more');
    assert.equal(Vocabulary.fromWords(text, { maxSize: 3 }).size, 3);
  });

  it('toJSON / fromJSON round trip, and bad JSON is refused naming the field', () => {
    const vocab = Vocabulary.fromWords('Hello, world! Hello again.', { lowercase: false });
    const again = Vocabulary.fromJSON(JSON.parse(JSON.stringify(vocab)));
    assert.deepEqual(again.toJSON(), vocab.toJSON());
    assert.deepEqual([...again.encode('Hello world')], [...vocab.encode('Hello world')]);
    assert.throws(() => Vocabulary.fromJSON({ ...vocab.toJSON(), format: 'x' }), /format/);
    assert.throws(() => Vocabulary.fromJSON({ ...vocab.toJSON(), tokens: ['a', 'a'] }), /appears twice/);
    assert.throws(() => Vocabulary.fromJSON({ ...vocab.toJSON(), level: 'byte' }), /level/);
  });

  it('nextTokenData: labels are the features shifted by one; stride; a padded last window with a mask', () => {
    const ids = Int32Array.from([10, 11, 12, 13, 14, 15, 16]);
    const d = nextTokenData(ids, { length: 3 });
    assert.equal(d.rows, 2);
    assert.deepEqual([...d.features], [10, 11, 12, 13, 14, 15]);
    assert.deepEqual([...d.labels], [11, 12, 13, 14, 15, 16]);
    assert.deepEqual(d.shape, [3]);
    assert.deepEqual(d.labelShape, [3]);
    const s = nextTokenData(ids, { length: 3, stride: 2 });
    assert.deepEqual([...s.features], [10, 11, 12, 12, 13, 14]);
    assert.deepEqual([...s.labels], [11, 12, 13, 13, 14, 15]);
    const p = nextTokenData(Int32Array.from([1, 2, 3, 4, 5]), { length: 3, padLast: { padId: 0, ignoreLabel: -1 } });
    assert.deepEqual([...p.features], [1, 2, 3, 4, 0, 0]);
    assert.deepEqual([...p.labels], [2, 3, 4, 5, -1, -1]);
    assert.deepEqual([...p.columns!['mask']!.values], [1, 1, 1, 1, 0, 0]);
    assert.throws(() => nextTokenData(Int32Array.from([1, 2]), { length: 3 }), /no example of length 3/);
  });

  it('splitText cuts at a line boundary', () => {
    const { train, validation } = splitText('aaaa\nbbbb\ncccc\ndddd\n', 0.3);
    assert.equal(train + validation, 'aaaa\nbbbb\ncccc\ndddd\n');
    assert.ok(train.endsWith('\n') && validation.length > 0 && !validation.startsWith('\n'));
  });
});
