/**
 * Single-thread A/B of the CNN kernels (conv forward / dx / dW, pooling) on the example CNN's layer shapes
 * at batch 64 (not a test). Timed on process CPU time (robust to foreign load on a shared box), samples of
 * the variants interleaved; median and best of the rounds.
 *
 * Usage: `npx tsx bench/measure-conv.ts [--old=/path/to/kernels-relaxed.wasm] [--rounds=9] [--batch=64]`
 * `--old`: a second build (e.g. the previous commit's) instantiated over the same memory, measured alongside.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { SharedHeap } from '../src/heap.ts';
import { createWasmCompute } from '../workers/wasm-compute.ts';
import type { Kernels } from '../workers/kernel-api.ts';

const arg = (name: string, dflt: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const rounds = Number(arg('rounds', '9'));
const N = Number(arg('batch', '64'));
const oldPath = arg('old', '');
const only = arg('only', '');

const heap = new SharedHeap({ initialBytes: 256 << 20 });
const compute = createWasmCompute(heap.memory, { threads: 1, alloc: (b) => heap.alloc(b) });
const variants: [string, Kernels][] = [['new', compute.kernels]];
if (oldPath) {
  const mod = new WebAssembly.Module(readFileSync(oldPath));
  const inst = new WebAssembly.Instance(mod, { env: { memory: heap.memory } });
  const e = inst.exports as unknown as Kernels & { setScratch(p: number): void; scratchBytes(): number; setWorkspace(p: number): void; workspaceBytes(): number };
  e.setScratch(heap.alloc(e.scratchBytes() + 64));
  e.setWorkspace(heap.alloc(e.workspaceBytes() + 64));
  variants.push(['old', e]);
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
function filled(count: number, seed: number): number {
  const p = heap.alloc(count * 4 + 64);
  const f = heap.f32;
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    f[(p >> 2) + i] = s / 2 ** 32 - 0.5;
  }
  return p;
}

interface Case { name: string; flops: number; run: (k: Kernels) => void }
const cases: Case[] = [];
for (const pad of ['valid', 'same'] as const) {
  for (const L of [{ tag: 'L1 28x28x1->16', H: 28, C: 1, CO: 16 }, { tag: pad === 'same' ? 'L2 14x14x16->32' : 'L2 13x13x16->32', H: pad === 'same' ? 14 : 13, C: 16, CO: 32 }]) {
    const H = L.H, W = L.H, p = pad === 'same' ? 1 : 0, OH = H + 2 * p - 2, OW = OH;
    const g = [N, H, W, L.C, OH, OW, L.CO, 3, 3, 1, 1, p, p, 1, 1] as const;
    const flops = 2 * N * OH * OW * L.CO * 9 * L.C;
    const x = filled(N * H * W * L.C, 1), w = filled(9 * L.C * L.CO, 2), b = filled(L.CO, 3), y = filled(N * OH * OW * L.CO, 4);
    const wt = filled(9 * L.C * L.CO, 5), dx = filled(N * H * W * L.C, 6), dw = filled(9 * L.C * L.CO, 7);
    const taps = 9 * L.C;
    const workFloats = Math.ceil((taps * L.CO + taps * Math.min(N * OH * OW, Math.floor(32768 / taps))) / 16) * 16 + 16;
    const work = filled(workFloats, 8);
    const t = `${L.tag} ${pad}`;
    cases.push({ name: `${t} fwd`, flops, run: (k) => k.conv2dForward(x, w, b, y, ...g) });
    cases.push({ name: `${t} dx`, flops, run: (k) => k.conv2dBackwardInput(y, wt, dx, ...g) });
    cases.push({ name: `${t} dW`, flops, run: (k) => k.conv2dBackwardFilter(x, y, dw, work, workFloats, ...g) });
    // Pooling of this conv's output (2×2, stride 2, valid).
    const PH = Math.floor(OH / 2);
    const pg = [N, OH, OW, L.CO, PH, PH, 2, 2, 2, 2, 0, 0] as const;
    const py = filled(N * PH * PH * L.CO, 9), am = filled(N * PH * PH * L.CO, 10);
    const bytes = 4 * N * OH * OW * L.CO;
    if (L.C === 1 || pad === 'same') {
      cases.push({ name: `${t} maxpool fwd`, flops: bytes, run: (k) => k.maxPool2dForward(y, py, am, ...pg) });
      cases.push({ name: `${t} maxpool bwd`, flops: bytes, run: (k) => k.maxPool2dBackward(py, am, dx, N * OH * OW * L.CO, N * PH * PH * L.CO) });
      cases.push({ name: `${t} relu fwd`, flops: bytes, run: (k) => k.reluForward(y, y, N * OH * OW * L.CO) });
    }
  }
}

const load0 = os.loadavg()[0]!;
const results = new Map<string, number[]>();
const selected = cases.filter((c) => !only || c.name.includes(only));
// Warm-up (tier-up).
for (const c of selected) for (const [, k] of variants) for (let i = 0; i < 3; i++) c.run(k);
for (let r = 0; r < rounds; r++) {
  for (const c of selected) {
    for (const [v, k] of variants) {
      let calls = 0;
      const t0 = cpuMs();
      let t = t0;
      do {
        c.run(k);
        calls++;
        t = cpuMs();
      } while (t - t0 < 20);
      const key = `${c.name}|${v}`;
      (results.get(key) ?? results.set(key, []).get(key)!).push((t - t0) / calls);
    }
  }
}
console.log(`batch ${N}, single thread, CPU time, ${rounds} rounds; load average ${load0.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)} (${os.availableParallelism()} cores)`);
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
for (const c of selected) {
  const cells = variants.map(([v]) => {
    const a = results.get(`${c.name}|${v}`)!;
    const m = med(a), best = Math.min(...a);
    const rate = c.name.includes('pool') || c.name.includes('relu') ? `${(c.flops / m / 1e6).toFixed(1)} GB/s` : `${(c.flops / m / 1e6).toFixed(1)} GF/s (best ${(c.flops / best / 1e6).toFixed(1)})`;
    return `${v} ${m.toFixed(3)} ms ${rate}`;
  });
  console.log(`${c.name.padEnd(32)} ${cells.join('   ')}`);
}
await compute.close();
