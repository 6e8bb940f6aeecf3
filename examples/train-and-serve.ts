/**
 * Training and serving in two processes that share only a checkpoint directory. This process
 * starts a trainer child (the same file, `--role train`) that learns the embedded MNIST digits
 * online, one step per arriving batch, and commits a checkpoint every `--every` steps; meanwhile it
 * serves predictions from the directory with `serve(dir)`, which hot-reloads each commit between
 * batches. After each reload it scores the held-out digits through HTTP, so the served accuracy is
 * seen rising while the trainer runs.
 *
 * Usage:
 *   npx tsx examples/train-and-serve.ts                   # 1,500 steps, a checkpoint every 250
 *   npx tsx examples/train-and-serve.ts --quick           # 300 steps, every 60 (what the tests run)
 *   npx tsx examples/train-and-serve.ts --dir runs/live   # keep the checkpoints; `rxgrad serve runs/live` serves them too
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { lastValueFrom, take } from 'rxjs';
import { adam, checkpointEvery, closeDefaultEngine, dense, gatherBatch, loadEmbeddedMnist, relu, sequential, serve, softmaxCrossEntropy } from '../src/index.ts';
import { positiveInt } from './common.ts';

const options = new Command()
  .name('train-and-serve')
  .description('Train online in one process, serve with hot reload from the same checkpoint directory in another.')
  .option('--role <role>', "'serve' (default: starts the trainer too) or 'train' (the child)", 'serve')
  .option('--dir <path>', 'checkpoint directory (default: a temporary one, removed at the end)')
  .option('--quick', '300 steps, a checkpoint every 60')
  .option('--steps <n>', 'training steps', positiveInt('--steps'))
  .option('--every <n>', 'checkpoint every n steps', positiveInt('--every'))
  .option('--rate <n>', 'batches per second arriving on the training stream', positiveInt('--rate'), 150)
  .option('--test <n>', 'held-out digits scored after each reload', positiveInt('--test'), 500)
  .parse()
  .opts<{ role: string; dir?: string; quick?: boolean; steps?: number; every?: number; rate: number; test: number }>();
const steps = options.steps ?? (options.quick ? 300 : 1500);
const every = options.every ?? (options.quick ? 60 : 250);
const BATCH = 32;

/** The trainer: a stream of digit batches arriving at `--rate` per second, one step each, a checkpoint commit every `every` steps. */
async function train(dir: string): Promise<void> {
  const { train: digits } = loadEmbeddedMnist({ train: 8000, test: 0 });
  const model = sequential([dense(128), relu(), dense(10)], { inputShape: [784], seed: 1, name: 'online-mlp' });
  async function* stream() {
    for (let i = 0; ; i = (i + BATCH) % (digits.length - BATCH)) {
      await sleep(1000 / options.rate);
      yield gatherBatch(digits, null, i, BATCH);
    }
  }
  await lastValueFrom(
    model.fitFrom(stream(), { loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) }).pipe(
      take(steps),
      checkpointEvery({ model, path: dir, steps: every, onSave: (saved) => console.log(`trainer: committed step ${saved.stepCount}`) }),
    ),
  );
  model.dispose();
  await closeDefaultEngine();
}

/** The server: waits for the first commit, serves the directory, scores the held-out digits after each reload. */
async function serveWhileTraining(dir: string): Promise<void> {
  const trainer = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--role', 'train', '--dir', dir, '--steps', String(steps), '--every', String(every), '--rate', String(options.rate)], { stdio: ['ignore', 'inherit', 'inherit'] });
  const trainerDone = new Promise<number>((resolve) => trainer.on('exit', (code) => resolve(code ?? 1)));
  let trainerExit: number | null = null;
  void trainerDone.then((code) => (trainerExit = code));
  while (!existsSync(join(dir, 'checkpoint.json'))) {
    if (trainerExit !== null) throw new Error(`the trainer exited (${trainerExit}) before its first checkpoint`);
    await sleep(20);
  }
  const server = await serve(dir, { port: 0, pollMs: 100, maxBatch: 64, log: (line) => console.log(`server: ${line}`) });
  console.log(`server: ${server.url} serving step ${(await (await fetch(`${server.url}/health`)).json() as { step: number }).step}`);
  const { test } = loadEmbeddedMnist({ train: 8000, test: options.test });
  const instances: number[][] = [];
  for (let i = 0; i < test.length; i++) instances.push(Array.from(test.features.subarray(i * 784, (i + 1) * 784)));

  /** Held-out accuracy of whatever the server answers with now (64 digits per request, 4 requests at a time). */
  const score = async (): Promise<{ accuracy: number; step: number }> => {
    const chunks = [];
    for (let i = 0; i < instances.length; i += 64) chunks.push(i);
    let correct = 0;
    let step = 0;
    for (let i = 0; i < chunks.length; i += 4) {
      const answers = await Promise.all(chunks.slice(i, i + 4).map(async (start) => {
        const res = await fetch(`${server.url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ instances: instances.slice(start, start + 64) }) });
        if (!res.ok) throw new Error(`predict answered ${res.status}: ${await res.text()}`);
        return { start, ...(await res.json() as { predictions: number[]; step: number }) };
      }));
      for (const { start, predictions, step: s } of answers) {
        predictions.forEach((p, j) => (correct += p === test.labels[start + j] ? 1 : 0));
        step = Math.max(step, s);
      }
    }
    return { accuracy: correct / instances.length, step };
  };

  // Score whatever is in service each time the served step changes, until the trainer's last commit is served.
  const finalStep = Math.floor(steps / every) * every;
  const health = async () => ((await (await fetch(`${server.url}/health`)).json()) as { step: number }).step;
  let first: { accuracy: number; step: number } | null = null;
  let last = { accuracy: 0, step: -1 };
  while (last.step < finalStep) {
    if ((await health()) !== last.step) {
      last = await score();
      first ??= last;
      console.log(`served step ${last.step}: held-out accuracy ${(last.accuracy * 100).toFixed(1)}%`);
    } else {
      if (trainerExit !== null && trainerExit !== 0) throw new Error(`the trainer failed (exit ${trainerExit})`);
      await sleep(25);
    }
  }
  const code = await trainerDone;
  const reloads = (await (await fetch(`${server.url}/metrics`)).text()).match(/rxgrad_reloads_total\{result="loaded"\} (\d+)/)?.[1] ?? '0';
  console.log(`done: trainer exited ${code}; ${reloads} hot reloads; accuracy ${(first!.accuracy * 100).toFixed(1)}% at step ${first!.step} → ${(last.accuracy * 100).toFixed(1)}% at step ${last.step}`);
  await server.close();
  await closeDefaultEngine();
  if (code !== 0) process.exitCode = 1;
}

if (options.role === 'train') {
  if (!options.dir) throw new Error('--role train needs --dir');
  await train(options.dir);
} else {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'rxgrad-train-and-serve-'));
  try {
    await serveWhileTraining(dir);
  } finally {
    if (!options.dir) rmSync(dir, { recursive: true, force: true });
  }
}
