import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadSpamAssassin, spamSplits, vocabularyOf } from '../src/data/spam-assassin.ts';

describe('spamSplits: the ids every implementation of the spam recipe reads', () => {
  const messages = loadSpamAssassin();
  const options = { length: 50, vocabSize: 2000, seed: 1, validation: 0.1 };
  const data = spamSplits(messages, options);

  it('splits 80/20, carves the validation share from the training split, and never shares a message across splits', () => {
    assert.equal(data.trainMessages.length + data.testMessages.length, messages.length);
    assert.equal(data.testMessages.length, Math.round(messages.length * 0.2));
    const validationRows = Math.round(data.trainMessages.length * 0.1);
    assert.equal(data.validation.labels.length, validationRows);
    assert.equal(data.fit.labels.length + validationRows, data.train.labels.length);
    // fit + validation are the training split's rows, validation first.
    assert.deepEqual([...data.validation.features, ...data.fit.features], [...data.train.features]);
    const inTest = new Set(data.testMessages);
    assert.ok(data.trainMessages.every((m) => !inTest.has(m)));
  });

  it('is deterministic for a seed and different for another', () => {
    const again = spamSplits(messages, options);
    assert.deepEqual(again.test.features, data.test.features);
    assert.deepEqual(again.vocab.tokens, data.vocab.tokens);
    assert.notDeepEqual(spamSplits(messages, { ...options, seed: 2 }).test.labels, data.test.labels);
  });

  it('encodes fixed-length rows of in-vocabulary ids, padded at the front, with a vocabulary of the training split only', () => {
    assert.equal(data.vocab.size, 2000);
    assert.deepEqual(data.vocab.tokens, vocabularyOf(data.trainMessages.map((m) => m.body), { maxSize: 2000, length: 50 }).tokens);
    for (const part of [data.fit, data.validation, data.test]) {
      assert.equal(part.features.length, part.labels.length * options.length);
      assert.ok(part.features.every((id) => id >= 0 && id < data.vocab.size));
      for (let r = 0; r < part.labels.length; r++) {
        const row = part.features.subarray(r * options.length, (r + 1) * options.length);
        const firstToken = row.findIndex((id) => id !== data.vocab.padId);
        if (firstToken > 0) assert.ok(row.subarray(firstToken).every((id) => id !== data.vocab.padId), `row ${r}: padding only in front`);
      }
    }
    const quick = spamSplits(messages, { ...options, limit: { train: 300, test: 100 } });
    assert.equal(quick.train.labels.length, 300);
    assert.equal(quick.test.labels.length, 100);
  });
});
