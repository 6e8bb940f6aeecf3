/**
 * examples/pruning.ts and examples/search-fashion-mlp.ts in their --quick modes, run as a user runs them:
 * the tables they print must be complete and consistent (sparsities reached, sizes shrinking with sparsity,
 * structured pruning halving the hidden layers, both search strategies within the same budget).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FASHION_MNIST_DIR } from '../src/data/index.ts';

const run = promisify(execFile);
const TIMEOUT_MS = 180_000;
const data = existsSync(FASHION_MNIST_DIR) ? 'fashion-mnist' : 'mnist';
const example = async (file: string, args: string[]) =>
  (await run(process.execPath, ['--import', 'tsx', file, '--quick', '--data', data, ...args], { timeout: TIMEOUT_MS })).stdout;

describe('tuning examples --quick', () => {
  it('pruning: 50/80/90% unstructured reach their sparsity and compress smaller; structured 50% halves the hidden layers', { timeout: TIMEOUT_MS + 30_000 }, async () => {
    const stdout = await example('examples/pruning.ts', []);
    const row = (name: string) => {
      const line = stdout.split('\n').find((l) => l.startsWith(name));
      assert.ok(line, `no row '${name}' in:\n${stdout}`);
      const [accuracy, sparsity, params, kib, gzip] = line.slice(30).trim().split(/\s+/).map((v) => Number.parseFloat(v));
      return { accuracy: accuracy!, sparsity: sparsity!, params: params!, kib: kib!, gzip: gzip! };
    };
    const dense = row('dense (2 epochs)');
    const rows = [row('unstructured 50%'), row('unstructured 80%'), row('unstructured 90%')];
    [50, 80, 90].forEach((target, i) => assert.ok(Math.abs(rows[i]!.sparsity - target) < 0.5, `sparsity ${rows[i]!.sparsity} vs ${target}`));
    assert.ok(dense.gzip > rows[0]!.gzip && rows[0]!.gzip > rows[1]!.gzip && rows[1]!.gzip > rows[2]!.gzip, stdout);
    for (const r of rows) assert.ok(r.accuracy > 40, stdout);
    assert.match(stdout, /structured 50%: dense_1 300→150, dense_2 100→50/);
    assert.equal(row('structured 50% (+').params, 784 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10);
  });

  it('search: ASHA and random search each use the budget and report a best configuration', { timeout: TIMEOUT_MS + 30_000 }, async () => {
    const stdout = await example('examples/search-fashion-mlp.ts', []);
    for (const strategy of ['asha', 'random']) {
      const line = stdout.split('\n').find((l) => l.startsWith(`${strategy.padEnd(8)}`) && /\d+\.\d+%/.test(l));
      assert.ok(line, `no table row for ${strategy}:\n${stdout}`);
      const cells = line.trim().split(/\s+/);
      const best = cells.slice(2, 6).map((v) => Number.parseFloat(v));
      assert.ok(best.every((v, i) => i === 0 || v >= best[i - 1]!), `best so far never decreases: ${line}`);
      assert.ok(best[3]! > 40, line);
    }
    // ASHA stops most configurations early: with the same budget it tries more of them.
    const configs = (s: string) => Number(stdout.split('\n').find((l) => l.startsWith(s.padEnd(8)) && /%/.test(l))!.trim().split(/\s+/)[6]);
    assert.ok(configs('asha') > configs('random'), stdout);
  });
});
