/**
 * examples/fashion-mnist-cnn.ts in its --quick mode (1 epoch on 4,000 / 1,000 examples), run as a child
 * process the way a user runs it: it must train, report per-epoch and final test accuracy, print the
 * confusion matrix, save a checkpoint that loads back, and finish within a bounded time.
 * Falls back to the embedded MNIST digits (reshaped to 28×28×1) when Fashion-MNIST is not installed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FASHION_MNIST_DIR } from '../src/data/index.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'rxgrad-cnn-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Generous: ~10 s on an idle 2-core machine; the bound absorbs other jobs sharing the CPU. */
const TIMEOUT_MS = 180_000;

async function runExample(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/fashion-mnist-cnn.ts', ...args], {
    timeout: TIMEOUT_MS,
    env: { ...process.env, RXGRAD_THREADS: process.env['RXGRAD_THREADS'] ?? '2' },
  });
  return stdout;
}

describe('examples/fashion-mnist-cnn.ts --quick', () => {
  const data = existsSync(FASHION_MNIST_DIR) ? 'fashion-mnist' : 'mnist';

  it(`trains one short epoch on ${data}, prints accuracy and a confusion matrix, saves a loadable model`, { timeout: TIMEOUT_MS + 30_000 }, async () => {
    const save = join(dir, 'cnn');
    const stdout = await runExample(['--quick', '--no-progress', '--data', data, '--save', save]);
    assert.match(stdout, /conv2d_1 \(conv2d\)\s+\[None, 28, 28, 16\]\s+160/);
    assert.match(stdout, /conv2d_2 \(conv2d\)\s+\[None, 14, 14, 32\]\s+4640/);
    assert.match(stdout, /epoch 1\/1: .* test accuracy [\d.]+%/);
    const final = /final test accuracy: ([\d.]+)% \(1000 examples\)/.exec(stdout);
    assert.ok(final, `no final accuracy in:\n${stdout}`);
    // One epoch on 4,000 examples: measured 67–75% on Fashion-MNIST; chance is 10%.
    assert.ok(Number(final[1]) >= 55, `final test accuracy ${final[1]}% < 55%`);
    assert.match(stdout, /confusion matrix/);
    const matrix = stdout.split('\n').filter((l) => /^\d [^\n]{9}\s+(\s+\d+){10}$/.test(l.trimEnd()));
    assert.equal(matrix.length, 10, `expected 10 confusion-matrix rows in:\n${stdout}`);
    const total = matrix.reduce((s, l) => s + l.trim().split(/\s+/).slice(-10).reduce((a, v) => a + Number(v), 0), 0);
    assert.equal(total, 1000);
    assert.match(stdout, /saved model to /);

    const { loadModel, createEngine } = await import('../src/index.ts');
    const engine = createEngine({ threads: 1 });
    try {
      const loaded = await loadModel(save, { engine });
      assert.deepEqual(loaded.model.layers.map((l) => l.kind), ['randomTranslate', 'conv2d', 'relu', 'maxPool2d', 'conv2d', 'relu', 'maxPool2d', 'flatten', 'dense']);
      assert.deepEqual(loaded.model.outputShape, [10]);
    } finally {
      await engine.close();
    }
  });

  it('rejects a bad --padding with a clear message', async () => {
    await assert.rejects(runExample(['--padding', 'full']), /--padding must be 'same' or 'valid', got 'full'/);
  });
});
