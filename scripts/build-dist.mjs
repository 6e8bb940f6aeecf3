// Builds the npm package's contents into dist/ (run by `npm run build` and `prepack`):
// 1. tsc -p tsconfig.build.json: JavaScript and .d.ts, relative `.ts` imports rewritten to `.js`;
// 2. copies what tsc does not emit beside the code that loads it by URL: the compiled kernels
//    (workers/generated/*.wasm, built by `npm run build:wasm`) and the plain-JS pool worker.
// dist/ is never committed (.gitignore).
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });

// tsc rewrites relative `.ts` specifiers in the JavaScript but not in the declarations: do it here, so
// consumers' TypeScript resolves the .d.ts files whatever their allowImportingTsExtensions says.
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = join(entry.parentPath, entry.name);
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(/((?:from|import)\s*\(?\s*)(['"])(\.{1,2}\/[^'"]+)\.ts\2/g, '$1$2$3.js$2');
  if (fixed !== text) writeFileSync(file, fixed);
}

const assets = ['workers/generated/kernels-simd.wasm', 'workers/generated/kernels-relaxed.wasm', 'workers/pool-worker.mjs'];
for (const file of assets) {
  const from = join(root, file);
  if (!existsSync(from)) {
    console.error(`build: ${file} is missing (run npm run build:wasm first)`);
    process.exit(1);
  }
  mkdirSync(dirname(join(dist, file)), { recursive: true });
  copyFileSync(from, join(dist, file));
}
// The bin must be executable in the tarball (npm also sets it at install, but `node dist/...` users may not).
const bin = join(dist, 'src/cli/main.js');
if (existsSync(bin)) chmodSync(bin, 0o755);
console.log('build: dist/ ready');
