import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
// `node --import tsx` is what `npx tsx` runs, without npm's start-up and warnings.
const tsx = [process.execPath, '--import', 'tsx'] as const;

describe('examples/online-drift.ts --quick', () => {
  it('shows the drop when the class mapping is permuted and the recovery', async () => {
    const { stdout } = await run(tsx[0], [...tsx.slice(1), 'examples/online-drift.ts', '--quick'], { timeout: 60_000 });
    const rows = stdout.split('\n').filter((l) => /^\d+,/.test(l)).map((l) => l.split(',').map(Number));
    assert.equal(rows.length, 500, 'one CSV row per step');
    assert.deepEqual(rows.slice(0, 3).map((r) => r[0]), [1, 2, 3]);
    const summary = /# summary before=([\d.]+) after=([\d.]+) end=([\d.]+) switch=(\d+) window_steps=(\d+)/.exec(stdout);
    assert.ok(summary, stdout.slice(-500));
    const [before, after, end] = [Number(summary[1]), Number(summary[2]), Number(summary[3])];
    const [switchAt, windowSteps] = [Number(summary[4]), Number(summary[5])];
    // The summary restates the CSV (rolling accuracy at those steps).
    assert.equal(rows[switchAt - 1]![1], before);
    assert.equal(rows[switchAt + windowSteps - 1]![1], after);
    console.log(`online-drift: rolling accuracy ${before} before the switch, ${after} one window after, ${end} at the end`);
    // Seeds 1–5 measured before 0.908–0.917, after 0.181–0.225, end 0.911–0.917.
    assert.ok(before > 0.85, `before the switch ${before} ≤ 0.85`);
    assert.ok(after < 0.4, `after the switch ${after} ≥ 0.4`);
    assert.ok(end > 0.85, `at the end ${end} ≤ 0.85`);
  });
});

/** Runs the server with --quick, sending requests once it reports the training phase. */
async function runServer(): Promise<{ stdout: string; replies: { status: number; body: Record<string, unknown> }[] }> {
  const child = spawn(tsx[0], [...tsx.slice(1), 'examples/host-server.ts', '--quick'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const replies: { status: number; body: Record<string, unknown> }[] = [];
  let port = 0;
  let sent: Promise<void> | null = null;
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    port ||= Number(/listening http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)?.[1] ?? 0);
    if (!sent && stdout.includes('phase training')) {
      sent = (async () => {
        const digit = Array.from({ length: 784 }, (_, i) => ((i % 28) > 10 && (i % 28) < 18 ? 0.9 : 0));
        replies.push(await post(port, '/predict', { features: digit }));
        replies.push(await post(port, '/predict', { instances: [digit, digit.map((v) => 1 - v)] }));
        replies.push(await post(port, '/predict', { features: [1, 2, 3] }));
        for (let i = 0; i < 5; i++) replies.push(await post(port, '/predict', { features: digit }));
        replies.push(await post(port, '/stats', null, 'GET'));
      })();
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(killer);
  await sent;
  assert.equal(code, 0, `host-server exited with ${code}:\n${stderr}`);
  return { stdout, replies };
}

function post(port: number, path: string, payload: unknown, method = 'POST'): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(payload));
  });
}

describe('examples/host-server.ts --quick', () => {
  // The event-loop delay is printed, not asserted: it is a wall-clock figure that another process on the
  // machine can inflate at will (measured in `npm run bench`, MLP rows). What the test pins is structural:
  // requests are answered while the same model keeps training.
  it('answers predictions while training (event-loop delay printed, measured in the bench)', async () => {
    const { stdout, replies } = await runServer();
    const result = JSON.parse(/RESULT (.*)/.exec(stdout)![1]!) as { idle: { p50: number; p99: number }; training: { p50: number; p99: number }; steps: number; requests: number };
    console.log(`host-server: event-loop delay idle p50 ${result.idle.p50.toFixed(2)} p99 ${result.idle.p99.toFixed(2)} ms; training p50 ${result.training.p50.toFixed(2)} p99 ${result.training.p99.toFixed(2)} ms; ${result.steps} steps`);
    assert.equal(replies.length, 9);
    const [single, many, bad] = replies;
    assert.equal(single!.status, 200);
    assert.ok(Number.isInteger(single!.body['prediction']) && (single!.body['prediction'] as number) >= 0 && (single!.body['prediction'] as number) < 10);
    assert.equal((single!.body['output'] as number[]).length, 10);
    assert.equal(many!.status, 200);
    assert.equal((many!.body['predictions'] as number[]).length, 2);
    assert.equal(bad!.status, 400);
    assert.match(String(bad!.body['error']), /row 0: expected 784 finite numbers/);
    const stats = replies.at(-1)!;
    assert.equal(stats.status, 200);
    // The dashboard values come from model.gradients$ and the training step reports.
    assert.ok(typeof stats.body['gradientNorm'] === 'number' && (stats.body['gradientNorm'] as number) > 0, `gradientNorm in ${JSON.stringify(stats.body)}`);
    assert.ok(typeof stats.body['loss'] === 'number' && (stats.body['loss'] as number) > 0, `loss in ${JSON.stringify(stats.body)}`);
    assert.ok((replies.at(-2)!.body['step'] as number) > (single!.body['step'] as number), 'the model kept training between requests');
    // How many steps fit in the 2 s window depends on the machine's load; that training went on is what counts.
    assert.ok(result.steps > 0, `no training steps`);
  });
});
