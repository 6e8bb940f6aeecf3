import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const tsx = [process.execPath, '--import', 'tsx'] as const;

describe('examples/train-and-serve.ts --quick', () => {
  it('a trainer process commits checkpoints, the serving process hot-reloads each and answers with the newer weights', { timeout: 120_000 }, async () => {
    const { stdout } = await run(tsx[0], [...tsx.slice(1), 'examples/train-and-serve.ts', '--quick'], { timeout: 110_000 });
    const done = stdout.match(/done: trainer exited 0; (\d+) hot reloads; accuracy ([\d.]+)% at step (\d+) → ([\d.]+)% at step (\d+)/);
    assert.ok(done, stdout);
    const [, reloads, , , finalAccuracy, finalStep] = done.map(Number);
    assert.ok(reloads! >= 2, `at least two reloads while training (${reloads})`);
    assert.equal(finalStep, 300, 'the last commit is what is served');
    assert.ok(finalAccuracy! > 80, `the served model learned (${finalAccuracy}%)`);
    assert.match(stdout, /server: reloaded the checkpoint at step 300/);
  });
});
