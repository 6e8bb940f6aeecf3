/**
 * The Fashion-MNIST CNN as a 2-stage pipeline: stage 0 (this process) runs the first layers and
 * drives the training, stage 1 (a child process) the rest; activations go forward and gradients
 * back as Arrow IPC over loopback TCP, each mini-batch in M micro-batches (GPipe), one update per
 * mini-batch. Prints throughput, each stage's idle fraction against GPipe's (K−1)/(M+K−1), and the
 * test accuracy of the joined model. `--single` trains the same model in one process instead.
 *
 * Usage:
 *   npx tsx examples/pipeline-parallel.ts                       # 1 epoch, batch 64, M = 4
 *   npx tsx examples/pipeline-parallel.ts --micro-batches 8 --cut 3 --pin   # a given cut (default: measured, balanced)
 *   npx tsx examples/pipeline-parallel.ts --quick               # the test's mode: 1,024 examples
 *   npx tsx examples/pipeline-parallel.ts --single --pin        # the one-process baseline
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchesFromArrays, type Batch, closeDefaultEngine, conv2d, dense, flatten, heNormal, loadModel, maxPool2d, relu, saveModel, sequential, softmaxCrossEntropy,
} from '../src/index.ts';
import { balancedCuts, startPipelineStage, type PipelineStepReport } from '../src/distributed/index.ts';
import { firstExamples, freePort, loadImages, positiveInt } from './common.ts';

const program = new Command()
  .name('pipeline-parallel')
  .description('Train the Fashion-MNIST CNN as 2 pipeline stages in 2 processes (GPipe micro-batches over TCP).')
  .option('--micro-batches <m>', 'micro-batches per mini-batch (M)', positiveInt('--micro-batches'), 4)
  .option('--cut <layer>', "first layer of stage 1 (3: after conv16-relu-pool), or 'auto': time each layer's forward and backward on a few batches and cut where the two stages' costs are most even", 'auto')
  .option('--batch-size <n>', 'mini-batch rows', positiveInt('--batch-size'), 64)
  .option('--examples <n>', 'training examples (one epoch)', positiveInt('--examples'))
  .option('--test <n>', 'test examples', positiveInt('--test'))
  .option('--pin', 'pin stage 1 to core 1 (taskset; run the launcher itself under taskset -c 0)', false)
  .option('--single', 'train in one process (the baseline) instead', false)
  .option('--data <name>', "'fashion-mnist' or 'mnist'", 'fashion-mnist')
  .option('--quick', 'a short run: 1,024 examples, 500 test', false)
  .option('--stage <k>', '(internal) run stage k ≥ 1', Number)
  .option('--port <p>', '(internal) stage 1 port', Number)
  .option('--save <path>', '(internal) where stage 1 saves its weights at the end');
program.parse();
const o = program.opts<{ microBatches: number; cut: string; batchSize: number; examples?: number; test?: number; pin: boolean; single: boolean; data: string; quick: boolean; stage?: number; port?: number; save?: string }>();

const buildModel = () =>
  sequential(
    [conv2d(16, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2), conv2d(32, 3, { padding: 'same', kernelInitializer: heNormal() }), relu(), maxPool2d(2), flatten(), dense(10)],
    { inputShape: [28, 28, 1], seed: 1 },
  );
const model = buildModel();
if (o.cut !== 'auto' && !(Number.isInteger(Number(o.cut)) && Number(o.cut) >= 1 && Number(o.cut) < model.layers.length)) program.error(`--cut must be 'auto' or a layer index in 1…${model.layers.length - 1}, got '${o.cut}'`);

/**
 * Each layer's forward + backward wall time (ms per mini-batch), measured on a throwaway copy of the
 * model over the given batches (the first two are warm-up), with the layers' methods wrapped in timers.
 */
async function layerCosts(batches: Batch[]): Promise<number[]> {
  const probe = buildModel();
  const spent = probe.layers.map(() => 0);
  let counting = false;
  probe.layers.forEach((layer, i) => {
    for (const method of ['forward', 'backward'] as const) {
      const original = (layer[method] as (...a: unknown[]) => unknown).bind(layer);
      (layer as unknown as Record<string, unknown>)[method] = (...a: unknown[]) => {
        const t0 = performance.now();
        const add = <T>(v: T) => ((spent[i]! += counting ? performance.now() - t0 : 0), v);
        const r = original(...a);
        return r instanceof Promise ? r.then(add) : add(r);
      };
    }
  });
  const fit = (b: Batch[]) => lastValueFrom(from(b).pipe(probe.fit({ loss: softmaxCrossEntropy(), optimizer: adam() }), toArray()));
  await fit(batches.slice(0, 2));
  counting = true;
  await fit(batches.slice(2));
  probe.dispose();
  return spent.map((ms) => ms / (batches.length - 2));
}
const optimizer = adam({ learningRate: 1e-3 });
const loss = softmaxCrossEntropy();

if (o.stage !== undefined) {
  // A served stage: train its layers until stage 0 ends the run, then save them for the evaluation.
  const stage = await startPipelineStage({ model, optimizer, loss, cuts: [Number(o.cut)], stage: o.stage, microBatches: o.microBatches, addresses: [null, { host: '127.0.0.1', port: o.port! }] });
  await stage.serve();
  if (o.save) await saveModel(model, o.save);
  await closeDefaultEngine();
} else {
  const data = loadImages(o.data, { fail: (m) => program.error(m) });
  const train = firstExamples(data.train, o.examples ?? (o.quick ? 1024 : data.train.length), [28, 28, 1]);
  const test = firstExamples(data.test, o.test ?? (o.quick ? 500 : data.test.length), [28, 28, 1]);
  const batches = batchesFromArrays(train, o.batchSize);
  let cut = Number(o.cut);
  if (o.cut === 'auto' && !o.single) {
    const costs = await layerCosts(batches.slice(0, 12));
    cut = balancedCuts(costs, 2).cuts[0]!;
    const share = (from: number, to: number) => costs.slice(from, to).reduce((a, b) => a + b, 0);
    console.log(`layer costs (forward + backward, ms per batch of ${o.batchSize}): ${model.layers.map((l, i) => `${l.name} ${costs[i]!.toFixed(2)}`).join(', ')}`);
    console.log(`cut at layer ${cut} (${model.layers[cut]!.name}): stage 0 ${share(0, cut).toFixed(2)} ms, stage 1 ${share(cut, costs.length).toFixed(2)} ms; a 2-stage pipeline can at best run ${(share(0, costs.length) / Math.max(share(0, cut), share(cut, costs.length))).toFixed(2)}× one process`);
  }
  const started = performance.now();
  let child: ChildProcess | null = null;
  const dir = mkdtempSync(join(tmpdir(), 'rxgrad-pipeline-'));
  try {
    if (o.single) {
      await lastValueFrom(from(batches).pipe(model.fit({ loss, optimizer }), toArray()));
      const seconds = (performance.now() - started) / 1000;
      console.log(`one process: ${train.length} examples in ${seconds.toFixed(2)} s (${(train.length / seconds).toFixed(0)} examples/s)`);
    } else {
      const port = await freePort();
      const save = join(dir, 'stage1');
      const args = ['--import', 'tsx', 'examples/pipeline-parallel.ts', '--stage', '1', '--port', String(port), '--cut', String(cut), '--micro-batches', String(o.microBatches), '--save', save];
      child = o.pin ? spawn('taskset', ['-c', '1', process.execPath, ...args], { stdio: 'inherit' }) : spawn(process.execPath, args, { stdio: 'inherit' });
      const exited = new Promise<number | null>((resolve) => child!.on('exit', resolve));
      const stage = await startPipelineStage({ model, optimizer, loss, cuts: [cut], stage: 0, microBatches: o.microBatches, addresses: [null, { host: '127.0.0.1', port }] });
      const trainStarted = performance.now();
      const reports: PipelineStepReport[] = await lastValueFrom(stage.train(batches).pipe(toArray()));
      const seconds = (performance.now() - trainStarted) / 1000;
      if ((await exited) !== 0) throw new Error('stage 1 failed');
      // Join the model: stage 1's layers from its saved weights.
      const { model: saved } = await loadModel(save);
      const stage1 = new Set(model.layers.slice(cut).flatMap((l) => l.parameters().map((p) => p.name)));
      model.setWeights(new Map([...saved.getWeights()].filter(([name]) => stage1.has(name))));
      saved.dispose();
      const k = 2;
      const m = o.microBatches;
      const steady = reports.slice(Math.min(5, reports.length - 1));
      const idle = [0, 1].map((s) => steady.reduce((sum, r) => sum + r.idleFraction[s]!, 0) / steady.length);
      const bytes = steady.reduce((sum, r) => sum + r.bytesSent + r.bytesReceived, 0) / steady.length;
      console.log(`2 stages, M = ${m}: ${train.length} examples in ${seconds.toFixed(2)} s (${(train.length / seconds).toFixed(0)} examples/s); idle fraction stage 0 ${idle[0]!.toFixed(3)}, stage 1 ${idle[1]!.toFixed(3)} (GPipe bubble (K−1)/(M+K−1) = ${((k - 1) / (m + k - 1)).toFixed(3)}); ${Math.round(bytes)} B per step on the link`);
    }
    const evaluation = await model.evaluate(from(batchesFromArrays(test, 500)));
    console.log(`test accuracy ${((evaluation.accuracy ?? 0) * 100).toFixed(2)}% on ${test.length}`);
  } finally {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await closeDefaultEngine();
  }
}
