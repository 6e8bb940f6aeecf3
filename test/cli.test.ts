/**
 * The `rxgrad` command line on small fixtures (test/fixtures/make-cli-fixtures.ts writes them):
 * every command, every data format, and bad arguments and files (one line, status 2). Most runs
 * call `runCli` in this process (fast); the bin itself is spawned for exit codes and `serve`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { runCli } from '../src/cli/main.ts';
import { makeCliFixtures } from './fixtures/make-cli-fixtures.ts';

let dir: string;
let f: Record<string, string>;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rxgrad-cli-'));
  f = makeCliFixtures(dir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, { out: (l) => out.push(l), err: (l) => err.push(l), interactive: false });
  return { code, out, err };
}
const ok = async (...args: string[]) => {
  const r = await cli(...args);
  assert.equal(r.code, 0, `rxgrad ${args.join(' ')} failed: ${r.err.join('\n')}`);
  return r;
};

describe('rxgrad train / evaluate / predict / inspect', () => {
  it('trains a spec on CSV with validation and periodic checkpoints, then evaluates on Parquet and Arrow', async () => {
    const out = join(dir, 'runs', 'iris');
    const train = await ok('train', '--model', f['mlp.json']!, '--data', f['train.csv']!, '--label', 'species', '--validation', f['test.csv']!, '--epochs', '6', '--batch-size', '16', '--checkpoint-every', '10', '--out', out);
    assert.ok(train.out.some((l) => /^epoch 6\/6: loss [\d.]+, accuracy [\d.]+% \| validation loss/.test(l)), train.out.join('\n'));
    assert.match(train.out.at(-1)!, /saved step 60 to .*iris\.json/);
    const parquet = await ok('evaluate', out, '--data', f['test.parquet']!, '--label', 'species', '--json');
    const result = JSON.parse(parquet.out[0]!) as { accuracy: number; examples: number; step: number };
    assert.equal(result.examples, 60);
    assert.equal(result.step, 60);
    assert.ok(result.accuracy > 0.9, `accuracy ${result.accuracy}`);
    const arrow = await ok('evaluate', out, '--data', f['test.arrow']!, '--label', 'species');
    assert.match(arrow.out[0]!, /iris-mlp at step 60 on .*test\.arrow: loss [\d.]+, accuracy [\d.]+% \(60 examples\)/);
  });

  it('continues a checkpoint (--from) on Feather data: the step count goes on', async () => {
    const out = join(dir, 'runs', 'feather');
    await ok('train', '--model', f['mlp.json']!, '--data', f['train.feather']!, '--label', 'species', '--epochs', '1', '--out', out);
    const more = await ok('train', '--from', out, '--data', f['train.feather']!, '--label', 'species', '--epochs', '2', '--learning-rate', '0.01');
    assert.match(more.out.at(-1)!, /saved step 15 to .*feather\.json/); // 150 rows / 32 = 5 steps per epoch
  });

  it('trains a CNN spec on gzipped IDX images with an IDX labels file', async () => {
    const out = join(dir, 'runs', 'cnn');
    await ok('train', '--model', f['cnn.json']!, '--data', f['images-idx3-ubyte.gz']!, '--labels', f['labels-idx1-ubyte.gz']!, '--epochs', '2', '--out', out);
    const inspect = await ok('inspect', out, '--json');
    const summary = JSON.parse(inspect.out[0]!) as { inputShape: number[]; layers: string[]; step: number; parameters: number };
    assert.deepEqual(summary.inputShape, [4, 4, 1]);
    assert.deepEqual(summary.layers, ['conv2d_1 (conv2d)', 'relu_1 (relu)', 'flatten_1 (flatten)', 'dense_1 (dense)']);
    assert.equal(summary.step, 8);
    assert.equal(summary.parameters, 3 * 3 * 4 + 4 + 64 * 2 + 2);
  });

  it('predicts to CSV and to Arrow (the same predictions), and inspects a checkpoint', async () => {
    const out = join(dir, 'runs', 'predict');
    await ok('train', '--model', f['mlp.json']!, '--data', f['train.csv']!, '--label', 'species', '--epochs', '3', '--out', out);
    const csvPath = join(dir, 'p.csv');
    const arrowPath = join(dir, 'p.arrow');
    await ok('predict', out, '--data', f['test.csv']!, '--label', 'species', '--out', csvPath);
    await ok('predict', out, '--data', f['test.csv']!, '--label', 'species', '--out', arrowPath);
    const lines = readFileSync(csvPath, 'utf8').trim().split('\n');
    assert.equal(lines[0], 'prediction,output_0,output_1,output_2,label');
    assert.equal(lines.length, 61);
    const table = tableFromIPC(readFileSync(arrowPath));
    assert.equal(table.numRows, 60);
    assert.deepEqual(Array.from(table.getChild('prediction')!.toArray() as Int32Array), lines.slice(1).map((l) => Number(l.split(',')[0])));
    const unlabelled = await ok('predict', out, '--data', f['unlabelled.arrows']!, '--out', join(dir, 'u.arrows'));
    assert.match(unlabelled.out[0]!, /^10 predictions/);
    const inspect = await ok('inspect', out);
    const text = inspect.out.join('\n');
    assert.match(text, /Model: "iris-mlp"/);
    assert.match(text, /Total params: 131/);
    assert.match(text, /step 15; optimizer adam/);
    assert.match(text, /sha256 [0-9a-f]{16}…, verified/);
  });

  it('--help works on every command', async () => {
    for (const command of [[], ['train'], ['evaluate'], ['predict'], ['inspect'], ['serve']]) {
      const r = await cli(...command, '--help');
      assert.equal(r.code, 0);
      assert.match(r.out.join('\n'), /^Usage: rxgrad/);
    }
  });
});

describe('rxgrad bad arguments and bad files: one line, status 2, nothing written', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['non-numeric CSV cell', () => ['train', '--model', f['mlp.json']!, '--data', f['bad-cell.csv']!], /bad-cell\.csv: row 2, column 'petal_length': "oops" is not a finite number/],
    ['fractional label', () => ['train', '--model', f['mlp.json']!, '--data', f['bad-label.csv']!, '--label', 'species'], /row 2, column 'species': label "1\.5" is not an integer/],
    ['ragged CSV', () => ['train', '--model', f['mlp.json']!, '--data', f['ragged.csv']!], /ragged\.csv: invalid CSV: Invalid Record Length/],
    ['truncated Parquet', () => ['train', '--model', f['mlp.json']!, '--data', f['truncated.parquet']!], /truncated\.parquet: invalid Parquet/],
    ['corrupt Arrow', () => ['evaluate', join(dir, 'runs', 'iris'), '--data', f['garbage.arrow']!], /garbage\.arrow: invalid Arrow IPC/],
    ['unknown layer kind', () => ['train', '--model', f['bad-kind.json']!, '--data', f['train.csv']!, '--label', 'species'], /bad-kind\.json: layer 'sparkle_1': kind: unknown layer kind 'sparkle'/],
    ['bad layer config', () => ['train', '--model', f['bad-units.json']!, '--data', f['train.csv']!, '--label', 'species'], /layer 'dense_1': units: must be a positive integer, got -3/],
    ['misspelt optimizer field', () => ['train', '--model', f['bad-optimizer.json']!, '--data', f['train.csv']!, '--label', 'species'], /optimizer field 'learningRat' is unknown/],
    ['spec not JSON', () => ['train', '--model', f['not-json.json']!, '--data', f['train.csv']!], /not-json\.json: not valid JSON/],
    ['unknown data format', () => ['train', '--model', f['mlp.json']!, '--data', f['data.unknown']!], /data\.unknown: unknown data format/],
    ['missing file', () => ['train', '--model', f['mlp.json']!, '--data', join(dir, 'missing.csv')], /missing\.csv: no such file or directory/],
    ['IDX label count', () => ['train', '--model', f['mlp.json']!, '--data', f['images-idx3-ubyte.gz']!, '--labels', f['labels-short-idx1-ubyte']!], /IDX labels dims \[119\]; expected \[120\]/],
    ['no label column', () => ['train', '--model', f['mlp.json']!, '--data', f['train.csv']!], /train\.csv: no label column/],
    ['missing label column', () => ['train', '--model', f['mlp.json']!, '--data', f['train.csv']!, '--label', 'nope'], /no label column 'nope' \(columns: sepal_length/],
    ['both --model and --from', () => ['train', '--model', f['mlp.json']!, '--from', join(dir, 'runs', 'iris'), '--data', f['train.csv']!], /exactly one of --model/],
    ['data of the wrong width', () => ['evaluate', join(dir, 'runs', 'iris'), '--data', f['images-idx3-ubyte.gz']!, '--labels', f['labels-idx1-ubyte.gz']!], /examples have 16 values \(shape \[4, 4, 1\]\); the model takes \[4\]/],
    ['evaluate without labels', () => ['evaluate', join(dir, 'runs', 'iris'), '--data', f['unlabelled.arrows']!], /no label column/],
    ['unknown output format', () => ['predict', join(dir, 'runs', 'iris'), '--data', f['test.csv']!, '--out', join(dir, 'p.txt')], /--out .*p\.txt: say the format/],
    ['no checkpoint', () => ['inspect', join(dir, 'runs', 'nothing')], /nothing\.json: \(file\): no checkpoint here/],
    ['bad option value', () => ['train', '--model', f['mlp.json']!, '--data', f['train.csv']!, '--epochs', '-1'], /--epochs must be a positive integer, got '-1'/],
    ['bad choice', () => ['train', '--model', f['mlp.json']!, '--data', f['train.csv']!, '--format', 'xls'], /argument 'xls' is invalid\. Allowed choices are idx, csv, arrow, parquet/],
    ['missing required option', () => ['predict', join(dir, 'runs', 'iris'), '--data', f['test.csv']!], /required option '--out <file>' not specified/],
    ['unknown command', () => ['frobnicate'], /unknown command 'frobnicate'/],
    ['bad port', () => ['serve', join(dir, 'runs', 'iris'), '--port', '99999'], /--port must be an integer in 0…65535/],
  ];
  for (const [name, args, message] of cases) {
    it(name, async () => {
      const r = await cli(...args());
      assert.equal(r.code, 2);
      assert.equal(r.err.length, 1, `one line: ${r.err.join(' | ')}`);
      assert.match(r.err[0]!, message);
    });
  }
  it('no checkpoint is written by a failed train', () => {
    assert.ok(!existsSync(join(process.cwd(), 'checkpoints')), 'the default --out was never created');
  });
});

describe('the rxgrad bin', () => {
  const bin = [process.execPath, '--import', 'tsx', 'src/cli/main.ts'];
  it('exits 0 on --help and 2 with one stderr line on a bad argument', () => {
    const help = spawnSync(bin[0]!, [...bin.slice(1), '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Commands:\n\s+train/);
    const bad = spawnSync(bin[0]!, [...bin.slice(1), 'train', '--data', f['train.csv']!, '--model', f['mlp.json']!, '--batch-size', 'x'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(bad.status, 2);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    assert.match(bad.stderr, /--batch-size must be a positive integer/);
  });

  it('serve: answers /health and /predict, stops on SIGTERM with status 0', { timeout: 60_000 }, async () => {
    const checkpoint = join(dir, 'runs', 'serve');
    await ok('train', '--model', f['mlp.json']!, '--data', f['train.csv']!, '--label', 'species', '--epochs', '2', '--out', checkpoint);
    const child = spawn(bin[0]!, [...bin.slice(1), 'serve', checkpoint, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          const match = text.match(/on (http:\/\/[\d.]+:\d+)/);
          if (match) resolve(match[1]!);
        });
        child.on('exit', (code) => reject(new Error(`serve exited ${code} before listening`)));
      });
      const health = (await (await fetch(`${url}/health`)).json()) as { step: number; model: string };
      assert.deepEqual([health.model, health.step], ['iris-mlp', 10]);
      const answer = (await (await fetch(`${url}/predict`, { method: 'POST', body: JSON.stringify({ instances: [[2, 0, 0, 1], [-1, -1, 2, 2]] }) })).json()) as { predictions: number[] };
      assert.equal(answer.predictions.length, 2);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
