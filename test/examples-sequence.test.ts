/**
 * examples/fashion-mnist-lstm.ts run as a user would (a child `node --import tsx` process): the quick mode
 * on Fashion-MNIST (or the embedded digits when it is not installed), the fallback message, bad
 * arguments, and — only with RXGRAD_LONG_EXAMPLES=1, it takes minutes — the full 5-epoch run's ≥ 85%.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FASHION_MNIST_DIR } from '../src/data/index.ts';

const run = promisify(execFile);
const EXAMPLE = 'examples/fashion-mnist-lstm.ts';

async function runExample(args: string[], timeout = 240_000): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', EXAMPLE, ...args], {
    timeout, env: { ...process.env, RXGRAD_THREADS: process.env['RXGRAD_THREADS'] ?? '2' },
  });
  return stdout;
}

const finalAccuracy = (stdout: string): number => {
  const match = /final test accuracy: ([\d.]+)%/.exec(stdout);
  assert.ok(match, `no final accuracy in:\n${stdout}`);
  return Number(match[1]);
};

describe('examples/fashion-mnist-lstm.ts', () => {
  it('--quick: 2,000 examples, 1 epoch, an LSTM(128) of 81,674 parameters well above chance', async () => {
    const stdout = await runExample(['--quick', '--no-progress']);
    assert.match(stdout, /lstm_1 \(lstm\)\s+\[None, 128\]\s+80384/);
    assert.match(stdout, /Total params: 81,674/);
    assert.match(stdout, /train 2000 examples, .*test 500/);
    assert.match(stdout, /epoch 1\/1: .*test accuracy [\d.]+%/);
    const accuracy = finalAccuracy(stdout);
    console.log(`quick LSTM final test accuracy: ${accuracy}%`);
    // Measured 55.6% on Fashion-MNIST and 39.6% on the embedded digits (the fallback), seed 1; chance is
    // 10%. The bounds only ask that it learned, with room for last-bit differences between SIMD builds.
    const bound = stdout.includes('mnist-embedded') ? 25 : 45;
    assert.ok(accuracy >= bound, `quick run test accuracy ${accuracy}% < ${bound}%`);
  });

  it('falls back to the embedded MNIST digits, saying so, when Fashion-MNIST is missing', async () => {
    const stdout = await runExample(['--quick', '--no-progress', '--fashion-dir', '/nonexistent/fashion-mnist', '--train', '500', '--test', '100']);
    assert.match(stdout, /Fashion-MNIST unavailable .*nonexistent.*; using the embedded MNIST digits instead/);
    assert.match(stdout, /data: mnist-embedded\/train 500 examples/);
    assert.ok(Number.isFinite(finalAccuracy(stdout)));
  });

  it('rejects an unknown dataset with a clear message', async () => {
    await assert.rejects(runExample(['--data', 'cifar']), /--data must be 'fashion-mnist' or 'mnist', got 'cifar'/);
  });

  const long = process.env['RXGRAD_LONG_EXAMPLES'] === '1';
  it('full run: at least 85% Fashion-MNIST test accuracy within 5 epochs', {
    skip: !long ? 'set RXGRAD_LONG_EXAMPLES=1 (takes ~5–10 minutes)' : existsSync(FASHION_MNIST_DIR) ? false : `${FASHION_MNIST_DIR} missing`,
  }, async () => {
    const stdout = await runExample(['--no-progress'], 1_800_000);
    const perEpoch = [...stdout.matchAll(/epoch (\d)\/5: .*test accuracy ([\d.]+)%/g)].map((m) => Number(m[2]));
    console.log(`per-epoch test accuracy: ${perEpoch.join(', ')}%`);
    assert.equal(perEpoch.length, 5);
    assert.ok(Math.max(...perEpoch) >= 85, `best test accuracy over 5 epochs ${Math.max(...perEpoch)}% < 85%`);
    assert.ok(finalAccuracy(stdout) >= 85, `final test accuracy ${finalAccuracy(stdout)}% < 85%`);
  });
});
