import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { hasRedis } from './redis-server.ts';

const run = (args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', ...args], { timeout: 150_000 });

describe('distributed examples (--quick)', { timeout: 320_000 }, () => {
  it('examples/data-parallel.ts --quick: 2 replicas and their own redis-server train the CNN from one stream', { skip: hasRedis ? false : 'redis-server is not on PATH' }, async () => {
    const { stdout } = await run(['examples/data-parallel.ts', '--quick', '--data', 'mnist']);
    const replicas = [...stdout.matchAll(/replica (\d): (\d+) steps, (\d+) rows/g)];
    assert.equal(replicas.length, 2, stdout);
    assert.equal(replicas.reduce((n, m) => n + Number(m[3]), 0), 2048, 'every example trained once');
    const accuracy = Number(/test accuracy ([\d.]+)%/.exec(stdout)?.[1]);
    console.log(stdout.trim().split('\n').at(-1));
    assert.ok(accuracy > 50, `accuracy ${accuracy}`);
  });

  it('examples/pipeline-parallel.ts --quick: the CNN as 2 stages in 2 processes', async () => {
    const { stdout } = await run(['examples/pipeline-parallel.ts', '--quick', '--data', 'mnist']);
    assert.match(stdout, /2 stages, M = 4: 1024 examples/);
    const accuracy = Number(/test accuracy ([\d.]+)%/.exec(stdout)?.[1]);
    console.log(stdout.trim());
    assert.ok(accuracy > 50, `accuracy ${accuracy}`);
  });
});
