import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { from, lastValueFrom, tap, toArray } from 'rxjs';
import { adam, batchFromArrays, createEngine, dense, Random, relu, sequential, sgd, softmaxCrossEntropy, type Batch, type ParameterGradients } from '../src/index.ts';
import { addBatchEntries, allReduceGradients, averageWeights, encodeMessage, fitReplica, FingerprintMismatchError, joinGroup, type ReplicaGroup, type ReplicaGroupOptions } from '../src/distributed/index.ts';
import { coalesced } from '../src/distributed/redis-retry.ts';
import { hasRedis, relativeError, startRedisCluster, TestRedis } from './redis-server.ts';

const skip = hasRedis ? false : 'redis-server is not on PATH (apt-get install redis-server)';
const engine = createEngine({ threads: 1 });
after(() => engine.close());

const IN = 4;
/** n batches of `rows` labelled rows, deterministic in `seed`. */
function makeBatches(n: number, rows: number, seed: number): { features: Float32Array; labels: Int32Array }[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => {
    const features = new Float32Array(rows * IN).map(() => rng.normal());
    const labels = new Int32Array(rows).map((_, r) => {
      const s = features[r * IN]! - features[r * IN + 1]!;
      return s > 0.7 ? 2 : s > -0.7 ? 1 : 0;
    });
    return { features, labels };
  });
}

interface ReplicaRun {
  child: ChildProcess;
  reports: { step: number; round: number | null; entries: string[]; included: boolean; missing: string[]; contributors: string[]; acked: number; syncMs: number; bytesSent: number; bytesReceived: number; redisRetries: number }[];
  done: Promise<{ weights: Record<string, number[]>; steps: number } | null>;
  output: () => string;
}
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function startReplica(config: Record<string, unknown>, timeoutMs = 60_000): ReplicaRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/dp-replica.ts', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const run: ReplicaRun = { child, reports: [], done: null as never, output: () => out + err };
  let out = '';
  let err = '';
  let buffered = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  run.done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`replica ${String(config['replica'])} timed out:\n${out}${err}`));
    }, timeoutMs);
    let result: { weights: Record<string, number[]>; steps: number } | null = null;
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('REPORT ')) run.reports.push(JSON.parse(line.slice(7)));
        else if (line.startsWith('DONE ')) result = JSON.parse(line.slice(5));
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve(result);
    });
  });
  return run;
}

describe('data parallel through Redis (allReduceGradients, averageWeights)', { skip, timeout: 240_000 }, () => {
  let server: TestRedis;
  let redis: Redis;
  before(async () => {
    server = await TestRedis.start();
    redis = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  });
  after(async () => {
    redis?.disconnect();
    await server?.close();
  });

  /** Trains one process on the union of each round's batches, in round order. */
  async function reference(optimizer: 'sgd' | 'adam', rounds: Map<number, string[]>, data: Map<string, { features: Float32Array; labels: Int32Array }>) {
    const model = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 7, engine });
    const batches: Batch[] = [...rounds.keys()].sort((a, b) => a - b).map((round) => {
      const parts = rounds.get(round)!.map((id) => data.get(id)!);
      const features = new Float32Array(parts.reduce((n, p) => n + p.features.length, 0));
      const labels = new Int32Array(parts.reduce((n, p) => n + p.labels.length, 0));
      let f = 0;
      let l = 0;
      for (const p of parts) {
        features.set(p.features, f);
        labels.set(p.labels, l);
        f += p.features.length;
        l += p.labels.length;
      }
      return batchFromArrays({ features, shape: [IN], labels });
    });
    await lastValueFrom(from(batches).pipe(model.fit({ loss: softmaxCrossEntropy(), optimizer: optimizer === 'adam' ? adam({ learningRate: 0.01 }) : sgd({ learningRate: 0.1 }) }), toArray()));
    const weights = Object.fromEntries([...model.getWeights()].map(([n, v]) => [n, [...v]]));
    model.dispose();
    return weights;
  }

  /**
   * Checks a run of in-process replicas: every entry in exactly one round, nothing pending, the replicas
   * bitwise equal, and equal to one process on each round's rows to 1e-5. Returns the rounds' entries.
   */
  async function assertEqualsOneProcess(
    reports: { round: number | null; entries: string[]; included: boolean }[][], ids: string[], data: Map<string, { features: Float32Array; labels: Int32Array }>,
    replicas: { model: { getWeights(): Map<string, Float32Array> } }[], optimizer: 'sgd' | 'adam', client: Redis | Cluster, stream: string,
  ): Promise<Map<number, string[]>> {
    // Which entries each round averaged: the union over replicas.
    const rounds = new Map<number, string[]>();
    for (const report of reports.flat()) {
      assert.equal(report.included, true);
      rounds.set(report.round!, [...(rounds.get(report.round!) ?? []), ...report.entries]);
    }
    assert.deepEqual([...rounds.values()].flat().sort(), [...ids].sort(), 'every entry trained exactly once');
    assert.equal(((await client.xpending(stream, stream)) as unknown[])[0], 0, 'nothing pending');
    const weights = replicas.map(({ model }) => Object.fromEntries([...model.getWeights()].map(([n, v]) => [n, [...v]])));
    for (const w of weights.slice(1)) assert.deepEqual(w, weights[0], 'replicas hold bitwise-equal weights');
    const expected = await reference(optimizer, rounds, data);
    for (const [name, values] of Object.entries(expected)) {
      const error = relativeError(weights[0]![name]!, values);
      assert.ok(error < 1e-5, `${name}: relative error ${error}`);
    }
    return rounds;
  }

  /** n replicas of the test model in this process, each with its own Redis connection, joined as one group. */
  async function inProcessReplicas(n: number, groupName: string, optimizer: 'sgd' | 'adam', extra: Partial<ReplicaGroupOptions> = {}) {
    return Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const client = new Redis({ port: server.port, host: '127.0.0.1' });
        client.on('error', () => {}); // reconnects are counted, not printed
        client.on('reconnecting', () => reconnects++);
        clients.push(client);
        const model = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 7, engine });
        const opt = optimizer === 'adam' ? adam({ learningRate: 0.01 }) : sgd({ learningRate: 0.1 });
        const group = await joinGroup({ redis: client, group: groupName, replica: `r${i}`, model, optimizer: opt, minReplicas: n, roundTimeoutMs: 5000, memberTtlMs: 1000, ...extra });
        return { client, model, optimizer: opt, group };
      }),
    );
  }
  const clients: Redis[] = [];
  let reconnects = 0;
  after(() => clients.forEach((c) => c.disconnect()));

  for (const optimizer of ['sgd', 'adam'] as const) {
    it(`3 replicas on batches of 16 equal one process on the 48 rows of each round (${optimizer}, 1e-5 relative)`, async () => {
      const stream = `exact-${optimizer}`;
      const raw = makeBatches(30, 16, optimizer === 'sgd' ? 11 : 12);
      const ids = await addBatchEntries(redis, stream, raw.map((b) => batchFromArrays({ ...b, shape: [IN] })));
      const data = new Map(ids.map((id, i) => [id, raw[i]!]));
      const replicas = await inProcessReplicas(3, stream, optimizer);
      const reports = await Promise.all(
        replicas.map(({ client, model, optimizer: opt, group }) =>
          lastValueFrom(fitReplica(model, group, client, { stream, shape: [IN], classes: 3, blockMs: 20, fit: { loss: softmaxCrossEntropy(), optimizer: opt, gradientOperators: [allReduceGradients(group)] } }).pipe(toArray())),
        ),
      );
      const rounds = await assertEqualsOneProcess(reports, ids, data, replicas, optimizer, redis, stream);
      const sync = reports.flat().map((x) => x.syncMs);
      console.log(`${optimizer}: ${rounds.size} rounds of 3, sync ${(sync.reduce((a, b) => a + b, 0) / sync.length).toFixed(1)} ms/step (3 replicas in one process), ${reports[0]![0]!.bytesSent} bytes sent per step`);
      replicas.forEach(({ model }) => model.dispose());
    });
  }

  it('on a 3-master Redis Cluster, messages in 3 pieces on other slots: 3 replicas equal one process (adam, 1e-5 relative)', async () => {
    const cluster = await startRedisCluster(3);
    const connected: Cluster[] = [];
    const connect = () => {
      const client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
      client.on('error', () => {});
      connected.push(client);
      return client;
    };
    try {
      const admin = connect();
      const stream = 'cluster-exact';
      const raw = makeBatches(24, 16, 13);
      const ids = await addBatchEntries(admin, stream, raw.map((b) => batchFromArrays({ ...b, shape: [IN] })));
      const data = new Map(ids.map((id, i) => [id, raw[i]!]));
      const replicas = await Promise.all(Array.from({ length: 3 }, async (_, i) => {
        const client = connect();
        const model = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 7, engine });
        const optimizer = adam({ learningRate: 0.01 });
        const group = await joinGroup({ redis: client, group: stream, replica: `r${i}`, model, optimizer, minReplicas: 3, roundTimeoutMs: 5000, memberTtlMs: 1000, payloadShards: 3 });
        return { client, model, optimizer, group };
      }));
      const reports = await Promise.all(replicas.map(({ client, model, optimizer, group }) =>
        lastValueFrom(fitReplica(model, group, client, { stream, shape: [IN], classes: 3, blockMs: 20, fit: { loss: softmaxCrossEntropy(), optimizer, gradientOperators: [allReduceGradients(group)] } }).pipe(toArray()))));
      const rounds = await assertEqualsOneProcess(reports, ids, data, replicas, 'adam', admin, stream);
      // The pieces of a round live on more than one node (their hash tags map to other slots).
      const round = reports[0]![0]!.round!;
      const slots = (await admin.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const pieceNodes = new Set(await Promise.all([0, 1, 2].map(async (k) => {
        const slot = Number(await admin.call('CLUSTER', 'KEYSLOT', `rxgrad:{${stream}#${k}}:e:${replicas[0]!.group.epoch}:r:${round}:m:r0`));
        return slots.find(([lo, hi]) => slot >= lo && slot <= hi)![2][1];
      })));
      assert.ok(pieceNodes.size >= 2, `pieces on ${pieceNodes.size} node(s)`);
      console.log(`cluster: ${rounds.size} rounds of 3, pieces on ${pieceNodes.size} of 3 nodes, ${reports[0]![0]!.bytesReceived} bytes received per step`);
      replicas.forEach(({ model }) => model.dispose());
    } finally {
      connected.forEach((c) => c.disconnect());
      await cluster.close();
    }
  });

  it('averageWeights (every 1 and 4, Adam state averaged): replicas end equal, idle replicas join the averages, nothing pending', async () => {
    for (const every of [1, 4]) {
      const stream = `avg-${every}`;
      const raw = makeBatches(16, 16, 50 + every);
      const ids = await addBatchEntries(redis, stream, raw.map((b) => batchFromArrays({ ...b, shape: [IN] })));
      const replicas = await inProcessReplicas(2, stream, 'adam');
      const averaging = replicas.map(({ group }) => averageWeights(group, { every }));
      const reports = await Promise.all(
        replicas.map(({ client, model, optimizer, group }, i) =>
          lastValueFrom(fitReplica(model, group, client, { stream, shape: [IN], classes: 3, blockMs: 20, fit: { loss: softmaxCrossEntropy(), optimizer, gradientOperators: [averaging[i]!] } }).pipe(toArray())),
        ),
      );
      const [w0, w1] = replicas.map(({ model }) => Object.fromEntries([...model.getWeights()].map(([n, v]) => [n, [...v]])));
      assert.deepEqual(w0, w1, `every ${every}: replicas equal after the last average`);
      assert.ok(reports.flat().some((r) => r.bytesSent > 0), 'weights went over the wire');
      assert.equal(((await redis.xpending(stream, stream)) as unknown[])[0], 0);
      const trained = new Set(reports.flat().flatMap((r) => r.entries));
      assert.deepEqual(ids.filter((id) => !trained.has(id)), []);
      replicas.forEach(({ model }) => model.dispose());
    }
  });

  it('a replica joining a running group starts from its current weights and optimizer state; all end equal', async () => {
    const stream = 'join';
    const ids = await addBatchEntries(redis, stream, makeBatches(40, 16, 61).map((b) => batchFromArrays({ ...b, shape: [IN] })));
    const replicas = await inProcessReplicas(2, stream, 'adam');
    const slow = tap<ParameterGradients>(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10));
    const fit = (r: (typeof replicas)[number]) =>
      lastValueFrom(fitReplica(r.model, r.group, r.client, { stream, shape: [IN], classes: 3, blockMs: 20, fit: { loss: softmaxCrossEntropy(), optimizer: r.optimizer, gradientOperators: [slow, allReduceGradients(r.group)] } }).pipe(toArray()));
    const running = replicas.map(fit);
    while (replicas[0]!.model.stepCount < 4) await new Promise((resolve) => setTimeout(resolve, 10));
    const client = new Redis({ port: server.port, host: '127.0.0.1' });
    clients.push(client);
    // A different seed: only the group's snapshot can make it equal.
    const model = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 99, engine });
    const optimizer = adam({ learningRate: 0.01 });
    const group = await joinGroup({ redis: client, group: stream, replica: 'late', model, optimizer, roundTimeoutMs: 5000, memberTtlMs: 1000 });
    assert.ok(model.stepCount >= 4 && optimizer.iterations === model.stepCount, `joined at step ${model.stepCount}, iterations ${optimizer.iterations}, round ${group.round}`);
    const reports = await Promise.all([...running, fit({ client, model, optimizer, group })]);
    assert.ok(reports[2]!.length > 0, 'the joiner trained');
    const weights = [...replicas.map((r) => r.model), model].map((m) => Object.fromEntries([...m.getWeights()].map(([n, v]) => [n, [...v]])));
    assert.deepEqual(weights[2], weights[0]);
    assert.deepEqual(weights[1], weights[0]);
    const trained = new Set(reports.flat().filter((r) => r.included).flatMap((r) => r.entries));
    assert.deepEqual(ids.filter((id) => !trained.has(id)), []);
    assert.equal(((await redis.xpending(stream, stream)) as unknown[])[0], 0);
    [...replicas.map((r) => r.model), model].forEach((m) => m.dispose());
  });

  it('leave() twice is one leave; a client closed on purpose right after it is not retried (the process exits at once)', async () => {
    // The data-parallel example's replicas called redis.disconnect() right after training while fitReplica's
    // leave was still on the wire: its SREMs failed with "Connection is closed" and were retried for
    // retryForMs, keeping the process alive 30 s.
    const client = new Redis({ port: server.port, host: '127.0.0.1' });
    const model = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 1, engine });
    const group = await joinGroup({ redis: client, group: 'leave-close', replica: 'only', model, optimizer: adam(), retryForMs: 60_000 });
    const first = group.leave();
    assert.equal(group.leave(), first, 'a second leave() is the first one');
    client.disconnect();
    await first.catch(() => {});
    assert.equal(group.retries.retries, 0, `commands on a client closed on purpose were retried: ${group.retries.lastError}`);
    model.dispose();
  });

  it('a replica whose model or optimizer differs is refused on joining, naming the first difference', async () => {
    const client = new Redis({ port: server.port, host: '127.0.0.1' });
    clients.push(client);
    const base = sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 1, engine });
    const group = await joinGroup({ redis: client, group: 'fp', replica: 'first', model: base, optimizer: adam(), memberTtlMs: 1000 });
    const wider = sequential([dense(9), relu(), dense(3)], { inputShape: [IN], seed: 1, engine });
    await assert.rejects(joinGroup({ redis: client, group: 'fp', replica: 'wider', model: wider, optimizer: adam() }), (e: Error) => e instanceof FingerprintMismatchError && /parameter 'dense_1\/kernel': shape \[4,9\] differs from the group's \[4,8\]/.test(e.message));
    await assert.rejects(joinGroup({ redis: client, group: 'fp', replica: 'sgd', model: base, optimizer: sgd() }), /optimizer 'sgd' differs from the group's 'adam'/);
    await assert.rejects(joinGroup({ redis: client, group: 'fp', replica: 'lr', model: base, optimizer: adam({ learningRate: 0.5 }) }), /optimizer 'adam' option learningRate: 0.5 differs from the group's 0.001/);
    await group.leave();
    base.dispose();
    wider.dispose();
  });

  for (const damage of ['corrupt', 'truncated'] as const) {
    it(`a ${damage} gradient message fails the round with a clear error and never reaches the weights`, async () => {
      const [a, b] = await inProcessReplicas(2, `bad-${damage}`, 'adam');
      // b's round-0 message, damaged in the store.
      const message = encodeMessage({ kind: 'gradients', round: 0, rows: 16, fingerprint: b!.group.digest, replica: 'r1' }, new Float32Array(67).fill(0.5));
      if (damage === 'corrupt') message[100] ^= 0x10;
      const stored = damage === 'corrupt' ? message : message.subarray(0, message.length - 8);
      const prefix = `rxgrad:{bad-${damage}}:e:${a!.group.epoch}:r:0`;
      await redis.set(`${prefix}:r1`, Buffer.from(stored));
      await redis.sadd(`${prefix}:in`, 'r1');
      const before = a!.model.getWeights();
      const [batch] = makeBatches(1, 16, 5);
      await assert.rejects(
        lastValueFrom(from([batchFromArrays({ ...batch!, shape: [IN] })]).pipe(a!.model.fit({ loss: softmaxCrossEntropy(), optimizer: a!.optimizer, gradientOperators: [allReduceGradients(a!.group)] }))),
        damage === 'corrupt' ? /round 0, replica 'r1': payload checksum mismatch/ : /round 0, replica 'r1': message truncated or padded: header says 268 payload bytes, 260 arrived/,
      );
      assert.equal(a!.model.stepCount, 0);
      for (const [name, values] of a!.model.getWeights()) assert.deepEqual(values, before.get(name), `${name} unchanged`);
      await Promise.all([a!.group.leave(), b!.group.leave()]);
      a!.model.dispose();
      b!.model.dispose();
    });
  }

  /**
   * A client that runs normally until `trigger` matches a command and its reply, then holds every later
   * command until `release()`: forces two replicas' group commands to interleave at a chosen point.
   */
  function gatedClient(trigger: (command: string, args: (string | number | Buffer)[], reply: unknown) => boolean) {
    const client = new Redis({ port: server.port, host: '127.0.0.1' });
    clients.push(client);
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    let reachedGate: () => void = () => {};
    const reached = new Promise<void>((resolve) => (reachedGate = resolve));
    let triggered = false;
    const run = async (send: () => Promise<unknown>, command: string, args: (string | number | Buffer)[]) => {
      if (triggered) await gate;
      const reply = await send();
      if (!triggered && trigger(command, args, reply)) {
        triggered = true;
        reachedGate();
      }
      return reply;
    };
    const gated = {
      call: (command: string, args: (string | number | Buffer)[]) => run(() => client.call(command, args), command, args),
      callBuffer: (command: string, args: (string | number | Buffer)[]) => run(() => client.callBuffer(command, args), command, args),
      duplicate: () => client.duplicate(),
    };
    return { client: gated, reached, release: () => open() };
  }
  /** A group whose every replica died: an epoch whose only member has no heartbeat. */
  async function deadGroup(name: string): Promise<void> {
    await redis.set(`rxgrad:{${name}}:epoch`, 'dead-epoch');
    await redis.sadd(`rxgrad:{${name}}:members`, 'gone');
  }
  const testModel = () => ({ model: sequential([dense(8), relu(), dense(3)], { inputShape: [IN], seed: 7, engine }), optimizer: adam({ learningRate: 0.01 }) });
  /** Both replicas are in one epoch and take a round together (each waits for the other). */
  async function assertOneGroup(a: ReplicaGroup, b: ReplicaGroup): Promise<void> {
    assert.equal(a.epoch, b.epoch, `one epoch: ${a.id} is in ${a.epoch}, ${b.id} in ${b.epoch}`);
    const [ra, rb] = await Promise.all([a.exchange('gradients', new Float32Array(67).fill(1), 1), b.exchange('gradients', new Float32Array(67).fill(3), 1)]);
    assert.deepEqual(ra.contributors, ['A', 'B']);
    assert.deepEqual(rb.contributors, ['A', 'B']);
    assert.deepEqual([...ra.mean], new Array(67).fill(2));
    assert.deepEqual(rb.mean, ra.mean);
  }

  /**
   * Replica `stalled` joins a dead group through a client that stalls after `trigger`; while it stalls,
   * `meanwhile` runs and the other replica joins; then it goes on. Both must end in one epoch.
   */
  async function foundingRace(name: string, stalled: 'A' | 'B', minReplicas: number, trigger: Parameters<typeof gatedClient>[0], meanwhile = async () => {}) {
    await deadGroup(name);
    const options = { group: name, minReplicas, roundTimeoutMs: 20_000, memberTtlMs: 20_000, startTimeoutMs: 20_000 };
    const gated = gatedClient(trigger);
    const models = [testModel(), testModel()];
    const joiningStalled = joinGroup({ redis: gated.client, replica: stalled, ...models[0]!, ...options });
    await gated.reached;
    await meanwhile();
    const client = new Redis({ port: server.port, host: '127.0.0.1' });
    clients.push(client);
    const other = await joinGroup({ redis: client, replica: stalled === 'A' ? 'B' : 'A', ...models[1]!, ...options });
    gated.release();
    const [a, b] = [await joiningStalled, other].sort((x, y) => x.id.localeCompare(y.id));
    await assertOneGroup(a!, b!);
    await Promise.all([a!.leave(), b!.leave()]);
    models.forEach(({ model }) => model.dispose());
  }

  it('founding race: a founder whose leader lock expired mid-founding joins the epoch another founded instead of replacing it', async () => {
    // A stalls right after taking the leader lock; meanwhile its lock expires (deleted here) and B founds.
    await foundingRace('race-lock', 'A', 1, (command, args, reply) => command === 'SET' && args[0] === 'rxgrad:{race-lock}:leader' && reply === 'OK', async () => void (await redis.del('rxgrad:{race-lock}:leader')));
  });

  it('founding race: a replica that read the dead epoch just before another founded the new one with it joins the new one', async () => {
    // B stalls right after its first read of the group's epoch; A founds the new epoch (with B in it) meanwhile.
    await foundingRace('race-read', 'B', 2, (_command, args, reply) => args.includes('rxgrad:{race-read}:epoch') && reply !== null && reply !== undefined);
  });

  it('a client without duplicate() polls the round instead of blocking on a second connection: the same rounds', async () => {
    const options = { group: 'polling', minReplicas: 2, roundTimeoutMs: 20_000, memberTtlMs: 20_000 };
    const models = [testModel(), testModel()];
    const [a, b] = await Promise.all(
      (['A', 'B'] as const).map((replica, i) => {
        const client = new Redis({ port: server.port, host: '127.0.0.1' });
        clients.push(client);
        // Replica B's client has only call and callBuffer.
        const redisClient = replica === 'B' ? { call: client.call.bind(client), callBuffer: client.callBuffer.bind(client) } : client;
        return joinGroup({ redis: redisClient, replica, ...models[i]!, ...options });
      }),
    );
    for (let round = 0; round < 3; round++) await assertOneGroup(a!, b!);
    await Promise.all([a!.leave(), b!.leave()]);
    models.forEach(({ model }) => model.dispose());
  });

  it("a contribution whose message is not in Redis when the round script runs is stored again: the round closes with it", async () => {
    // B's client loses its first message SET (as when a reconnect reorders retried commands): the
    // script finds no message under B's key, says so, and B stores it again before contributing.
    const options = { group: 'lost-set', minReplicas: 2, roundTimeoutMs: 20_000, memberTtlMs: 20_000 };
    const models = [testModel(), testModel()];
    let dropped = 0;
    const [a, b] = await Promise.all(
      (['A', 'B'] as const).map((replica, i) => {
        const client = new Redis({ port: server.port, host: '127.0.0.1' });
        clients.push(client);
        const dropping = {
          call: client.call.bind(client),
          callBuffer: (command: string, args: (string | number | Buffer)[]) => {
            if (replica === 'B' && command === 'SET' && String(args[0]).endsWith(':r:0:B') && dropped++ === 0) return Promise.resolve('OK');
            return client.callBuffer(command, args);
          },
          duplicate: () => client.duplicate(),
        };
        return joinGroup({ redis: replica === 'B' ? dropping : client, replica, ...models[i]!, ...options });
      }),
    );
    await assertOneGroup(a!, b!);
    assert.equal(dropped, 2, 'the first SET was dropped, the second went through');
    await Promise.all([a!.leave(), b!.leave()]);
    models.forEach(({ model }) => model.dispose());
  });

  it('coalesced() sends the commands issued inside it in one socket write, and their replies are unchanged', async () => {
    const client = new Redis({ port: server.port, host: '127.0.0.1' });
    clients.push(client);
    await client.ping();
    const socket = (client as unknown as { stream: { _writev: (...args: unknown[]) => void; _write: (...args: unknown[]) => void } }).stream;
    let writes = 0;
    for (const method of ['_write', '_writev'] as const) {
      const original = socket[method].bind(socket);
      socket[method] = (...args: unknown[]) => {
        writes++;
        original(...args);
      };
    }
    const replies = await coalesced(client, () => Promise.all([client.set('co:a', '1'), client.incr('co:b'), client.get('co:a')]));
    assert.deepEqual(replies, ['OK', 1, '1']);
    assert.equal(writes, 1, 'three commands, one write');
    writes = 0;
    await Promise.all([client.get('co:a'), client.get('co:b')]);
    assert.equal(writes, 2, 'without it, one write per command');
    // A client without a socket (a wrapper, a cluster) just runs the commands.
    assert.equal(await coalesced({ call: client.call.bind(client) }, () => client.get('co:a')), '1');
  });

  /** Waits until `run` has printed n step reports (or exited). */
  async function reportsFrom(run: ReplicaRun, n: number): Promise<void> {
    while (run.reports.length < n && run.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const includedEntries = (runs: ReplicaRun[]) => new Set(runs.flatMap((r) => r.reports.filter((x) => x.included).flatMap((x) => x.entries)));

  it('a replica SIGKILLed while the others wait for it in a round: training completes, every entry trained and acknowledged, survivors equal', async () => {
    const stream = 'kill';
    const ids = await addBatchEntries(redis, stream, makeBatches(36, 16, 21).map((b) => batchFromArrays({ ...b, shape: [IN] })));
    const config = { port: server.port, group: stream, stream, optimizer: 'adam', seed: 7, minReplicas: 3, roundTimeoutMs: 3000, memberTtlMs: 1000, claimIdleMs: 2500, stepDelayMs: 15 };
    const runs = ['a', 'b', 'c'].map((replica) => startReplica({ ...config, replica, ...(replica === 'c' ? { stepDelayMs: 60 } : {}) }));
    await reportsFrom(runs[2]!, 3);
    runs[2]!.child.kill('SIGKILL');
    const [a, b, c] = await Promise.all(runs.map((r) => r.done));
    assert.equal(c, null, 'c was killed');
    assert.ok(a && b, runs[0]!.output() + runs[1]!.output());
    assert.deepEqual(a.weights, b.weights, "the survivors' weights are bitwise equal");
    const trained = includedEntries(runs);
    // c acknowledges an entry once its round is applied, then prints the step's report: a SIGKILL between the two
    // loses that one report, never the training (the round was the group's). At most one such entry, and it is
    // acknowledged, so no survivor trains it again.
    const unreported = ids.filter((id) => !trained.has(id));
    assert.ok(unreported.length <= 1, `entries in no applied round's report: ${unreported.join(', ')}`);
    assert.equal(((await redis.xpending(stream, stream)) as unknown[])[0], 0, 'every entry acknowledged');
    const survivors = [...runs[0]!.reports, ...runs[1]!.reports];
    assert.ok(survivors.some((r) => r.missing.includes('c')), 'a step report names c as missing');
    assert.ok(survivors.at(-1)!.contributors.every((m) => m !== 'c'));
    console.log(`SIGKILL: c trained ${runs[2]!.reports.length} steps before dying; survivors ${a.steps} steps each; rounds missing c: ${runs[0]!.reports.filter((r) => r.missing.includes('c')).length}`);
  });

  it('every replica dies: a new group resumes from the leader\'s last checkpoint and the pending entries', async () => {
    const stream = 'resume';
    const path = join(server.dir, 'ckpt');
    const ids = await addBatchEntries(redis, stream, makeBatches(24, 16, 31).map((b) => batchFromArrays({ ...b, shape: [IN] })));
    const config = { port: server.port, group: stream, stream, optimizer: 'adam', seed: 7, minReplicas: 2, roundTimeoutMs: 3000, memberTtlMs: 800, claimIdleMs: 1000, stepDelayMs: 40, checkpoint: { path, every: 2 } };
    const first = ['a', 'b'].map((replica) => startReplica({ ...config, replica }));
    await reportsFrom(first[0]!, 5);
    first.forEach((r) => r.child.kill('SIGKILL'));
    await Promise.all(first.map((r) => r.done));
    // What the first group left: entries still pending on its dead consumers, and entries it was never given. An entry
    // it was given that is no longer pending it acknowledged, which it does only once the round that trained it was
    // applied; its report can die with the process (SIGKILL between the acknowledgement and the printed report: CI,
    // 2026-12-07), so the reports alone cannot show it.
    const pendingAfterKill = new Set(((await redis.xpending(stream, stream, '-', '+', 1000)) as [string, string, number, number][]).map(([id]) => id));
    const groupInfo = ((await redis.xinfo('GROUPS', stream)) as unknown[][]).find((g) => g[g.indexOf('name') + 1] === stream)!;
    const lastDelivered = String(groupInfo[groupInfo.indexOf('last-delivered-id') + 1]);
    const streamId = (id: string) => id.split('-').map(BigInt) as [bigint, bigint];
    const delivered = (id: string) => {
      const [ms, seq] = streamId(id);
      const [lastMs, lastSeq] = streamId(lastDelivered);
      return ms < lastMs || (ms === lastMs && seq <= lastSeq);
    };
    const leftToSecond = ids.filter((id) => pendingAfterKill.has(id) || !delivered(id));
    const saved = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as { stepCount: number; streamOffsets: { round: number } };
    assert.ok(saved.stepCount >= 2, `a checkpoint was written (step ${saved.stepCount})`);
    await new Promise((resolve) => setTimeout(resolve, 900)); // heartbeats expire
    const second = ['c', 'd'].map((replica) => startReplica({ ...config, replica, stepDelayMs: 0 }));
    const results = await Promise.all(second.map((r) => r.done));
    results.forEach((r, i) => assert.ok(r, second[i]!.output()));
    assert.equal(second[0]!.reports[0]!.step, saved.stepCount + 1, 'the new group starts at the checkpoint');
    assert.equal(second[0]!.reports[0]!.round, saved.streamOffsets.round, 'and at its round');
    assert.deepEqual(results[0]!.weights, results[1]!.weights);
    const trained = includedEntries([...first, ...second]);
    const acknowledgedByFirst = new Set(ids.filter((id) => !leftToSecond.includes(id)));
    assert.deepEqual(ids.filter((id) => !trained.has(id) && !acknowledgedByFirst.has(id)), [], 'every entry trained at least once');
    const trainedBySecond = includedEntries(second);
    assert.deepEqual(leftToSecond.filter((id) => !trainedBySecond.has(id)), [], 'the new group trained every entry the first left pending or unread');
    assert.equal(((await redis.xpending(stream, stream)) as unknown[])[0], 0);
  });

  it('Redis restarting mid-run: the replicas retry and finish equal, nothing lost', async () => {
    const stream = 'restart';
    const ids = await addBatchEntries(redis, stream, makeBatches(40, 16, 41).map((b) => batchFromArrays({ ...b, shape: [IN] })));
    const replicas = await inProcessReplicas(2, stream, 'adam', { roundTimeoutMs: 8000, memberTtlMs: 4000 });
    let restarted: Promise<void> | null = null;
    reconnects = 0;
    const slow = tap<ParameterGradients>(() => {
      if (replicas[0]!.model.stepCount === 8) restarted ??= server.restart(300);
    });
    const reports = await Promise.all(
      replicas.map(({ client, model, optimizer, group }) =>
        lastValueFrom(fitReplica(model, group, client, { stream, shape: [IN], classes: 3, blockMs: 20, claimIdleMs: 20_000, fit: { loss: softmaxCrossEntropy(), optimizer, gradientOperators: [slow, allReduceGradients(group)] } }).pipe(toArray())),
      ),
    );
    await restarted;
    assert.ok(reconnects >= 2, `both replicas reconnected (${reconnects} reconnects)`);
    console.log(`Redis restart: ${reconnects} reconnects, ${reports.flat().at(-1)!.redisRetries} command retries by the group, ${reports[0]!.length} + ${reports[1]!.length} steps`);
    const [w0, w1] = replicas.map(({ model }) => model.getWeights());
    for (const [name, v] of w0!) assert.deepEqual(v, w1!.get(name));
    const trained = new Set(reports.flat().filter((r) => r.included).flatMap((r) => r.entries));
    assert.deepEqual(ids.filter((id) => !trained.has(id)), []);
    assert.equal(((await redis.xpending(stream, stream)) as unknown[])[0], 0);
    replicas.forEach(({ model }) => model.dispose());
  });
});
