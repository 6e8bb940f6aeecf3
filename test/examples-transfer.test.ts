/**
 * examples/transfer.ts --quick, run as a user runs it: it pre-trains, saves and loads the base, learns classes
 * 5-9 three ways and prints the table; the frozen base must stay bitwise unchanged and only the head train.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FASHION_MNIST_DIR } from '../src/data/index.ts';

const run = promisify(execFile);
const TIMEOUT_MS = 240_000;

describe('examples/transfer.ts --quick', () => {
  const data = existsSync(FASHION_MNIST_DIR) ? 'fashion-mnist' : 'mnist';
  it(`pre-trains on classes 0-4 of ${data}, then compares frozen base, fine-tuned base and scratch on 250 examples of classes 5-9`, { timeout: TIMEOUT_MS + 30_000 }, async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/transfer.ts', '--quick', '--epochs', '8', '--no-progress', '--data', data], { timeout: TIMEOUT_MS });
    const row = (name: string) => {
      const line = stdout.split('\n').find((l) => l.startsWith(name));
      assert.ok(line, `no row '${name}' in:\n${stdout}`);
      const [, accuracy, seconds, trainable] = /\s([\d.]+)%\s+([\d.]+)\s+(\d+)/.exec(line)!;
      return { accuracy: Number(accuracy), seconds: Number(seconds), trainable: Number(trainable), line };
    };
    const frozen = row('frozen base + new head');
    const tuned = row('fine-tuned base');
    const scratch = row('from scratch');
    assert.match(stdout, /few-shot 250 images of classes 5-9 \(50 per class\)/);
    assert.equal(frozen.trainable, 128 * 5 + 5, 'only the new dense(5) head trains');
    assert.equal(tuned.trainable, scratch.trainable);
    assert.match(frozen.line, /base weights bitwise unchanged/);
    assert.match(tuned.line, /base weights changed/);
    // Five classes: chance is 20%; each way must have learnt something from 250 examples.
    for (const r of [frozen, tuned, scratch]) assert.ok(r.accuracy > 40 && r.accuracy <= 100, r.line);
    assert.match(stdout, /frozen-base training speed-up over the fine-tuned base: [\d.]+x/);
  });
});
