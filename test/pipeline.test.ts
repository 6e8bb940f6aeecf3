import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, toArray } from 'rxjs';
import { adam, batchFromArrays, createEngine, dense, Random, relu, sequential, softmaxCrossEntropy } from '../src/index.ts';
import { freePort, relativeError } from './redis-server.ts';

const engine = createEngine({ threads: 1 });
const dir = mkdtempSync(join(tmpdir(), 'rxgrad-pipeline-'));
const children = new Set<ChildProcess>();
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  await engine.close();
});

interface StageRun {
  child: ChildProcess;
  reports: { step: number; loss: number; idleFraction: number[] }[];
  /** Resolves the DONE payload, or the FAILED message. */
  done: Promise<{ weights?: Record<string, number[]>; steps?: number; failed?: string }>;
}

function startStage(config: Record<string, unknown>, timeoutMs = 60_000): StageRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/pipeline-stage.ts', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const run: StageRun = { child, reports: [], done: null as never };
  let out = '';
  run.done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`stage ${String(config['stage'])} timed out (a hang):\n${out}`));
    }, timeoutMs);
    let result: { weights?: Record<string, number[]>; steps?: number; failed?: string } = { failed: '(killed)' };
    let pending = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('REPORT ')) run.reports.push(JSON.parse(line.slice(7)));
        else if (line.startsWith('DONE ')) result = JSON.parse(line.slice(5));
        else if (line.startsWith('FAILED ')) result = { failed: line.slice(7) };
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve(result);
    });
  });
  return run;
}

/** The fixture's model and mini-batches, trained in one process. */
async function singleProcess(steps: number, batchSize: number): Promise<Record<string, number[]>> {
  const model = sequential([dense(16), relu(), dense(12), relu(), dense(3)], { inputShape: [6], seed: 3, engine });
  const rng = new Random(99);
  const batches = Array.from({ length: steps }, () => {
    const features = new Float32Array(batchSize * 6).map(() => rng.normal());
    const labels = new Int32Array(batchSize).map((_, r) => (features[r * 6]! + features[r * 6 + 1]! > 0 ? 1 : features[r * 6 + 2]! > 0.5 ? 2 : 0));
    return batchFromArrays({ features, shape: [6], labels });
  });
  await lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 0.01 }) }), toArray()));
  const weights = Object.fromEntries([...model.getWeights()].map(([n, v]) => [n, [...v]]));
  model.dispose();
  return weights;
}

/** Each stage's own layers' weights, merged: stage 0 holds dense_1, the last stage dense_2 and dense_3 (cut at layer 2). */
function merged(stage0: Record<string, number[]>, stage1: Record<string, number[]>): Record<string, number[]> {
  return Object.fromEntries(Object.entries(stage0).map(([name, v]) => [name, name.startsWith('dense_1/') ? v : stage1[name]!]));
}

describe('pipeline parallel over TCP (GPipe micro-batches)', { timeout: 180_000 }, () => {
  it('2 stages with 4 micro-batches per mini-batch equal one process on the same mini-batches (1e-5 relative)', async () => {
    const ports = [await freePort()];
    const config = { cuts: [2], ports, microBatches: 4, steps: 12, batchSize: 30 };
    const [s0, s1] = [startStage({ ...config, stage: 0 }), startStage({ ...config, stage: 1 })];
    const [r0, r1] = await Promise.all([s0.done, s1.done]);
    assert.ok(r0.weights && r1.weights, `${r0.failed ?? ''} ${r1.failed ?? ''}`);
    assert.equal(s0.reports.length, 12);
    const expected = await singleProcess(12, 30);
    const actual = merged(r0.weights, r1.weights);
    for (const [name, values] of Object.entries(expected)) {
      const error = relativeError(actual[name]!, values);
      assert.ok(error < 1e-5, `${name}: relative error ${error}`);
    }
  });

  it('a stage killed mid-step fails the step on every stage with an error naming it, not a hang', async () => {
    const ports = [await freePort(), await freePort()];
    const config = { cuts: [2, 4], ports, microBatches: 4, steps: 50, batchSize: 16 };
    const runs = [0, 1, 2].map((stage) => startStage({ ...config, stage, ...(stage === 2 ? { slowMs: 5 } : {}) }, 45_000));
    while (runs[0]!.reports.length < 2 && runs[0]!.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 20));
    runs[2]!.child.kill('SIGKILL');
    const [r0, r1] = await Promise.all([runs[0]!.done, runs[1]!.done]);
    const named = new RegExp(`pipeline stage 2 \\(127\\.0\\.0\\.1:${ports[1]}\\) closed the connection`);
    assert.match(r0.failed ?? '', /^pipeline step \d+ failed: /);
    assert.match(r0.failed ?? '', named);
    assert.match(r1.failed ?? '', named);
  });

  it('training resumes from the last checkpoint after a stage died, ending with the same weights as one uninterrupted process', async () => {
    const ports = [await freePort()];
    const path = join(dir, 'resume');
    const config = { cuts: [2], ports, microBatches: 3, steps: 10, batchSize: 24, checkpoint: { path, every: 2 } };
    const first = [startStage({ ...config, stage: 0 }), startStage({ ...config, stage: 1, slowMs: 3 })];
    while (first[0]!.reports.length < 5 && first[0]!.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 10));
    first[1]!.child.kill('SIGKILL');
    const failed = await first[0]!.done;
    assert.match(failed.failed ?? '', /pipeline stage 1 .* closed the connection/);
    const second = [startStage({ ...config, stage: 0 }), startStage({ ...config, stage: 1 })];
    const [r0, r1] = await Promise.all(second.map((s) => s.done));
    assert.ok(r0.weights && r1.weights, `${r0.failed ?? ''} ${r1.failed ?? ''}`);
    const resumedAt = second[0]!.reports[0]!.step;
    assert.ok(resumedAt > 1 && (resumedAt - 1) % 2 === 0, `resumed after a checkpoint (first step ${resumedAt})`);
    assert.equal(r0.steps, 10);
    const expected = await singleProcess(10, 24);
    const actual = merged(r0.weights, r1.weights);
    for (const [name, values] of Object.entries(expected)) assert.ok(relativeError(actual[name]!, values) < 1e-5, name);
  });
});
