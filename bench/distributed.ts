/**
 * Scale-out measurements (not CI; one at a time: `flock /tmp/rxgrad-bench.lock npx tsx bench/distributed.ts`).
 *
 *  1. Data parallel, each replica pinned to one core (taskset, one compute thread): 1 vs 2 replicas,
 *     CNN b64 and MLP b256, allReduceGradients and averageWeights every 8: training throughput, test
 *     accuracy after the same examples, bytes per step, sync vs compute time per step.
 *  2. 4 replicas inside a network namespace whose loopback has a `tc netem` delay (root only): sync
 *     time per step against the round-trip model of docs/DISTRIBUTED.md.
 *  3. Pipeline: the CNN as 2 stages (one core each) vs one process on one core, M = 1, 4, 8: throughput
 *     and each stage's idle fraction against GPipe's (K−1)/(M+K−1).
 *
 * Every number is printed with the machine's load (`uptime`): on a shared machine they are noisy.
 * Usage: `npx tsx bench/distributed.ts [--examples 60000] [--scaling sqrt] [--seeds 5] [--only dp|netem|pipeline]`
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { promisify } from 'node:util';
import { Command } from 'commander';

const program = new Command()
  .option('--examples <n>', 'training examples per data-parallel run (default: one epoch of Fashion-MNIST)', Number, 60_000)
  .option('--scaling <rule>', "the rate-scaling rule of the scaled 2-replica rows ('sqrt' for Adam, see src/distributed/scaled-rate.ts)", 'sqrt')
  .option('--test <n>', 'test examples evaluated', Number, 10_000)
  .option('--seeds <k>', 'data parallel: runs per configuration with seeds 1…k (initialisation and stream order); accuracy as mean ± sd and the mean paired gap', Number, 1)
  .option('--delay-ms <ms>', 'netem one-way delay on the namespace loopback', Number, 2)
  .option('--only <part>', "'dp', 'netem' or 'pipeline'")
  .option('--model <kind>', "data parallel: only 'cnn' or 'mlp'")
  .option('--sync <mode>', "data parallel: only 'allreduce', 'average' or 'none' (the no-sync ceiling)")
  .parse();
const o = program.opts<{ model?: string; sync?: string; examples: number; scaling: string; test: number; seeds: number; delayMs: number; only?: string }>();
const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
const run = async (command: string, args: string[]) => (await promisify(execFile)(command, args, { maxBuffer: 1 << 24, timeout: 1_800_000 })).stdout;
const number = (pattern: RegExp, text: string) => Number(pattern.exec(text)?.[1] ?? Number.NaN);

interface DataParallelRun { replicas: number; throughput: number; accuracy: number; syncMs: number; stepMs: number; bytesSent: number; bytesReceived: number; redisCpu: number; trainingSeconds: number; barrierMs: number; barrierEveryMs: number; load: string }

async function dataParallel(model: string, batch: number, sync: string, replicas: number, prefix: string[] = [], extra: string[] = []): Promise<DataParallelRun> {
  const before = load();
  const args = ['--import', 'tsx', 'examples/data-parallel.ts', ...extra, '--replicas', String(replicas), '--model', model, '--batch-size', String(batch), '--sync', sync, '--every', '8', '--examples', String(o.examples), '--test', String(o.test), '--pin'];
  const out = prefix.length > 0 ? await run(prefix[0]!, [...prefix.slice(1), process.execPath, ...args]) : await run(process.execPath, args);
  const rows = [...out.matchAll(/replica \d+: (\d+) steps, (\d+) rows, sync ([\d.]+) ms\/step, (\d+) B sent and (\d+) B received/g)];
  const seconds = number(/trained in ([\d.]+) s/, out);
  const steps = Math.max(...rows.map((r) => Number(r[1])));
  return {
    replicas, throughput: number(/\((\d+) examples\/s/, out), accuracy: number(/test accuracy ([\d.]+)%/, out),
    syncMs: rows.reduce((s, r) => s + Number(r[3]), 0) / rows.length, stepMs: (seconds * 1000) / steps,
    bytesSent: rows.reduce((s, r) => s + Number(r[4]), 0) / rows.length, bytesReceived: rows.reduce((s, r) => s + Number(r[5]), 0) / rows.length,
    redisCpu: number(/redis-server CPU ([\d.]+) s/, out), trainingSeconds: seconds, barrierMs: number(/every step over these step times would cost ([\d.]+) ms per step/, out), barrierEveryMs: number(/a barrier every \d+ steps would cost ([\d.]+) ms per step/, out), load: `${before} → ${load()}`,
  };
}

if (!o.only || o.only === 'dp') {
  const seeds = Array.from({ length: o.seeds }, (_, i) => i + 1);
  console.log(`## Data parallel (${o.examples} training examples, ${o.test} test, one core and one thread per replica; seeds ${seeds.join(', ')}: initialisation and stream order)`);
  console.log(`Rows "2, ${o.scaling}": Adam's rate 1e-3 scaled by the ${o.scaling} rule for 2 replicas, warmed up over 5% of a replica's steps.`);
  console.log('Examples/s, step and sync times, bytes and redis CPU are means over the seeds; accuracy is mean ± sd; "vs 1" is the mean over seeds of (this run − the 1-replica run with the same seed).');
  console.log('| model | sync | replicas | examples/s | ratio | test acc. % | vs 1 (points) | step ms | sync ms | B sent/step | B recv/step | redis CPU % of a core | load (1/5/15 min) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));
  for (const [model, batch] of ([['cnn', 64], ['mlp', 256]] as const).filter(([m]) => !o.model || m === o.model)) {
    if (!o.sync || o.sync === 'none') {
      // The ceiling: the replicas share the cores, Redis and the stream but never synchronise.
      const one = await dataParallel(model, batch, 'none', 1, [], ['--seed', '1']);
      const two = await dataParallel(model, batch, 'none', 2, [], ['--seed', '1']);
      for (const [label, r] of [['1', one], ['2', two]] as const) {
        console.log(`| ${model} b${batch} | none (ceiling) | ${label} | ${r.throughput} | ${(r.throughput / one.throughput).toFixed(2)} | ${r.accuracy.toFixed(2)} (replica 0 alone) | — | ${r.stepMs.toFixed(1)} | 0 | 0 | 0 | ${((100 * r.redisCpu) / r.trainingSeconds).toFixed(0)} | ${r.load} |`);
      }
      console.log(`|  |  |  | a barrier every step over the 2 replicas' own step times would cost ${two.barrierMs.toFixed(2)} ms per step, every 8 steps ${two.barrierEveryMs.toFixed(2)} ms per step |  |  |  |  |  |  |  |  |  |`);
    }
    for (const sync of ['allreduce', 'average'].filter((m) => !o.sync || m === o.sync)) {
      const runs: Record<'one' | 'two' | 'scaled', DataParallelRun[]> = { one: [], two: [], scaled: [] };
      const before = load();
      for (const seed of seeds) {
        const seedArgs = ['--seed', String(seed)];
        runs.one.push(await dataParallel(model, batch, sync, 1, [], seedArgs));
        runs.two.push(await dataParallel(model, batch, sync, 2, [], seedArgs));
        runs.scaled.push(await dataParallel(model, batch, sync, 2, [], ['--lr-scaling', o.scaling, ...seedArgs]));
      }
      const loads = `${before} → ${load()}`;
      const oneRate = mean(runs.one.map((r) => r.throughput));
      for (const [label, rs] of [['1', runs.one], ['2', runs.two], [`2, ${o.scaling}`, runs.scaled]] as const) {
        const m = (f: (r: DataParallelRun) => number) => mean(rs.map(f));
        const accuracies = rs.map((r) => r.accuracy);
        const gap = mean(rs.map((r, i) => r.accuracy - runs.one[i]!.accuracy));
        console.log(`| ${model} b${batch} | ${sync === 'average' ? 'averageWeights/8' : 'allReduce'} | ${label} | ${m((r) => r.throughput).toFixed(0)} | ${(m((r) => r.throughput) / oneRate).toFixed(2)} | ${mean(accuracies).toFixed(2)}${rs.length > 1 ? ` ± ${sd(accuracies).toFixed(2)}` : ''} | ${gap.toFixed(2)} | ${m((r) => r.stepMs).toFixed(1)} | ${m((r) => r.syncMs).toFixed(2)} | ${Math.round(m((r) => r.bytesSent))} | ${Math.round(m((r) => r.bytesReceived))} | ${m((r) => (100 * r.redisCpu) / r.trainingSeconds).toFixed(0)} | ${rs.length > 1 ? loads : rs[0]!.load} |`);
      }
    }
  }
}

/** A TCP proxy to `port` delaying every chunk by `delayMs` each way (order kept: equal timeouts fire in order). */
async function delayProxy(port: number, delayMs: number): Promise<{ port: number; close: () => void }> {
  const server = createServer((client) => {
    const upstream = connect({ port, host: '127.0.0.1' });
    client.on('data', (d) => setTimeout(() => upstream.write(d), delayMs));
    upstream.on('data', (d) => setTimeout(() => client.write(d), delayMs));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

if (!o.only || o.only === 'netem') {
  // 4 replicas and redis-server in a fresh network namespace whose loopback delays each packet (tc
  // netem). Kernels without the netem qdisc (this machine's: "Specified qdisc kind is unknown") get
  // the same delay from a user-space proxy in front of Redis instead; the table says which.
  const ns = `rxgrad-bench-${process.pid}`;
  let netem = false;
  if (process.getuid?.() === 0) {
    try {
      execFileSync('ip', ['netns', 'add', ns]);
      execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', `${o.delayMs}ms`], { stdio: 'pipe' });
      netem = true;
    } catch (error) {
      console.log(`\n(tc netem unavailable: ${String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim()}; using a delaying TCP proxy)`);
    }
  }
  try {
    console.log(`\n## 1, 2 and 4 replicas, ${o.delayMs} ms one-way delay to Redis (RTT ${2 * o.delayMs} ms) by ${netem ? 'tc netem on a namespace loopback' : 'a user-space proxy'}; 4 replicas time-share the 2 cores: sync time, not throughput`);
    console.log('| delay (one way) | replicas | sync ms/step | step ms | B sent/step | load |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    // 1 replica: its sync is its own round trips (k = 1); 2: one per core; 4: time-shared cores.
    for (const [replicas, delay] of [1, 2, 4].flatMap((n) => [[n, 0], [n, o.delayMs]] as const)) {
      let r: DataParallelRun;
      if (netem) {
        if (delay === 0) execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', 'lo', 'root']);
        else execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', `${delay}ms`]);
        r = await dataParallel('mlp', 256, 'allreduce', replicas, ['ip', 'netns', 'exec', ns]);
      } else {
        const redisPort = 30_000 + ((process.pid + delay) % 20_000);
        const server = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
        const exited = new Promise((resolve) => server.on('exit', resolve));
        await new Promise((resolve) => setTimeout(resolve, 500));
        const proxy = await delayProxy(redisPort, delay);
        try {
          r = await dataParallel('mlp', 256, 'allreduce', replicas, [], ['--redis', `redis://127.0.0.1:${proxy.port}`]);
        } finally {
          proxy.close();
          server.kill('SIGTERM');
          await exited;
        }
      }
      console.log(`| ${delay} ms | ${replicas} | ${r.syncMs.toFixed(1)} | ${r.stepMs.toFixed(1)} | ${Math.round(r.bytesSent)} | ${r.load} |`);
    }
  } finally {
    if (process.getuid?.() === 0) execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
  }
}

if (!o.only || o.only === 'pipeline') {
  console.log('\n## Pipeline: CNN b64, 2 stages (the example\'s measured, balanced cut; one core each) vs one process on one core');
  const single = await run('taskset', ['-c', '0', process.execPath, '--import', 'tsx', 'examples/pipeline-parallel.ts', '--single', '--examples', String(o.examples), '--test', '1000']);
  const base = number(/\((\d+) examples\/s\)/, single);
  console.log(`one process: ${base} examples/s (load ${load()})`);
  console.log('| M | examples/s | vs one process | idle stage 0 | idle stage 1 | GPipe (K−1)/(M+K−1) | B/step | load |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const m of [1, 4, 8]) {
    const out = await run('taskset', ['-c', '0', process.execPath, '--import', 'tsx', 'examples/pipeline-parallel.ts', '--pin', '--micro-batches', String(m), '--examples', String(o.examples), '--test', '1000']);
    const rate = number(/\((\d+) examples\/s\)/, out);
    if (m === 1) console.log(out.split('\n').filter((l) => l.startsWith('layer costs') || l.startsWith('cut at')).join('\n'));
    console.log(`| ${m} | ${rate} | ${(rate / base).toFixed(2)} | ${number(/idle fraction stage 0 ([\d.]+)/, out)} | ${number(/idle fraction stage 0 [\d.]+, stage 1 ([\d.]+)/, out)} | ${(1 / (m + 1)).toFixed(3)} | ${number(/(\d+) B per step/, out)} | ${load()} |`);
  }
}
