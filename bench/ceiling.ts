/**
 * The machine's ceiling for a 2-vs-1 thread speed-up of one model's training: two child processes, each training
 * its own copy on a 1-thread engine at the same time, against one such child alone, under the same load.
 *
 * Two processes share nothing but the machine (cores, caches, memory bandwidth, the hypervisor's scheduling), and
 * need no synchronisation, so no 2-thread engine in one process can beat their combined rate. On a quiet host
 * it says what the second core gives at best; with one core busy, what the OS gives three runnable threads on two
 * cores. The threads suite reports it next to each whole-step ratio.
 *
 * Usage: `const c = await separateProcessCeiling('cnn 28x28 ...', 25, 3, 3000); c.ratio`
 * (child mode, started by it: `node --import tsx bench/ceiling.ts --child <subject> <steps> <passes> <ms>`)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './harness.ts';
import { loadRxgrad, makeEngine } from './rxgrad.ts';
import { SUBJECTS, makeBatches, trainRound } from './train-subjects.ts';

/** What the parent and a child say to each other over the IPC channel. */
type ChildMessage = { ready: true } | { rates: number[] };

/** Solo and paired rates (examples/s; a pair's is the sum of its two children) and their ratio. */
export interface Ceiling {
  solo: number;
  pair: number;
  ratio: number;
}

/**
 * One child alone, then two at once, each training `subject` on a 1-thread engine for `ms` of timed rounds
 * (`passes` over `steps` batches a round; median round per child).
 *
 * Usage: `const { ratio } = await separateProcessCeiling(subject.name, 25, 3, 3000);`
 */
export async function separateProcessCeiling(subject: string, steps: number, passes: number, ms: number): Promise<Ceiling> {
  const solo = await runChildren(1, subject, steps, passes, ms);
  const pair = await runChildren(2, subject, steps, passes, ms);
  return { solo, pair, ratio: pair / solo };
}

/** Starts `k` children, waits until every one has warmed up, starts them together; the sum of their median rates. */
async function runChildren(k: number, subject: string, steps: number, passes: number, ms: number): Promise<number> {
  const script = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  const kill = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.once('exit', kill);
  try {
    const ready: Promise<void>[] = [];
    const done: Promise<number>[] = [];
    for (let i = 0; i < k; i++) {
      const child = spawn(process.execPath, ['--import', 'tsx', script, '--child', subject, String(steps), String(passes), String(ms)],
        { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      children.push(child);
      const exited = new Promise<never>((_, reject) =>
        child.once('exit', (code) => reject(new Error(`ceiling child for ${subject} exited with code ${code} before reporting`))));
      exited.catch(() => {}); // observed through the races below
      ready.push(Promise.race([exited, new Promise<void>((resolve) => child.once('message', () => resolve()))]));
      done.push(Promise.race([exited, new Promise<number>((resolve) => child.on('message', (m: ChildMessage) => {
        if ('rates' in m) resolve(median(m.rates));
      }))]));
    }
    await Promise.all(ready);
    for (const child of children) child.send('go');
    const rates = await Promise.all(done);
    return rates.reduce((a, b) => a + b, 0);
  } finally {
    kill();
    process.removeListener('exit', kill);
  }
}

/** Child mode: warm up, say ready, wait for go, then train in timed rounds for `ms` and report each round's examples/s. */
async function child(subjectName: string, steps: number, passes: number, ms: number): Promise<void> {
  const subject = SUBJECTS.find((s) => s.name === subjectName);
  if (!subject) throw new Error(`ceiling child: no subject named ${subjectName}`);
  const rx = await loadRxgrad();
  const engine = await makeEngine(1);
  const batches = makeBatches(rx, subject, steps);
  const model = subject.build(rx, engine);
  const fit = trainRound(rx, model, batches, passes);
  await fit(); // warm-up, as the threads suite does
  const go = new Promise<void>((resolve) => process.once('message', () => resolve()));
  process.send!({ ready: true } satisfies ChildMessage);
  await go;
  const rates: number[] = [];
  const start = performance.now();
  while (performance.now() - start < ms || rates.length < 3) {
    const t0 = performance.now();
    await fit();
    rates.push((passes * steps * subject.batch) / ((performance.now() - t0) / 1000));
  }
  process.send!({ rates } satisfies ChildMessage);
  model.dispose();
  await engine.close();
  process.disconnect();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === '--child') {
  const [subject, steps, passes, ms] = process.argv.slice(3);
  await child(subject!, Number(steps), Number(passes), Number(ms));
}
