/**
 * A replica group: N processes training one model, coordinated through Redis.
 *
 * Keys (prefix `rxgrad:{<group>}`: the hash tag keeps a group's keys in one Redis Cluster slot, so
 * its scripts run on one node):
 *   `:fingerprint` the model every member must have (set by the first, compared by the others);
 *   `:alive:<id>` each replica's heartbeat (expires after `memberTtlMs` without renewal);
 *   `:members` the replicas a round waits for; `:candidates` replicas starting together; `:joining`;
 *   `:leader` the leader lock (SET NX PX, renewed each round while held);
 *   `:epoch` the current run of the group (a new one after every replica died); `:round` its next round;
 *   `:snapshot` the group's state (weights, optimizer state) for joiners, with `:snapshot:round`;
 *   `:e:<epoch>:r:<round>:…` one round: each contribution, the set of contributors, the `closed` list
 *   and each waiting replica's wake list.
 *
 * A round (src/distributed/round.ts): each replica stores its message (a plain SET) and one script closes the round
 * when every live member is in (or `roundTimeoutMs` has passed), writing the sorted contributor list
 * once, so every replica, late ones included, averages exactly the same messages in the same order and
 * the replicas' weights stay bitwise equal. A member whose heartbeat expired is not waited for.
 * Founding an epoch is a compare-and-set on the epoch the founder saw. With `payloadShards` > 1 a
 * round's message is cut into pieces stored under keys of other hash tags (`rxgrad:{<group>#k}:…`,
 * other slots, so other nodes of a cluster carry the bytes) and the message key holds a short
 * reference to them. See docs/DISTRIBUTED.md.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { saveModel } from '../checkpoint.ts';
import type { Model } from '../model.ts';
import type { Optimizer } from '../optimizers.ts';
import { fingerprintDifference, fingerprintDigest, FingerprintMismatchError, modelFingerprint, type ModelFingerprint } from './fingerprint.ts';
import { applyState, captureState, decodeState, encodeState, stateFromCheckpoint, type TrainingState } from './model-state.ts';
import { retrying, type BinaryRedis, type RetryStats } from './redis-retry.ts';
import { contributeAndWait, EpochGoneError, type RoundReply } from './round.ts';
import { decodeMessage, encodeMessage, payloadFloats, WireError, type WireKind } from './wire.ts';

/** Options of {@link joinGroup}. */
export interface ReplicaGroupOptions {
  /** An ioredis client (anything with `call` and `callBuffer`). */
  redis: BinaryRedis;
  /** The group's name: replicas with the same name train together. */
  group: string;
  /** This replica's id, unique in the group (≤ 24 bytes). Default `<hostname>-<pid>`. */
  replica?: string;
  model: Model;
  /** The optimizer the replica trains with (part of the fingerprint; its state is shared with joiners). */
  optimizer: Optimizer;
  /** Longest wait for a missing replica in a round, ms (default 10,000); then the round goes on without it. */
  roundTimeoutMs?: number;
  /** A replica whose heartbeat is this old is dead (default 3,000 ms; renewed every third of it). */
  memberTtlMs?: number;
  /** A new group waits (at most `startTimeoutMs`, default 30,000) for this many replicas before its first round (default 1). */
  minReplicas?: number;
  startTimeoutMs?: number;
  /** The leader saves a checkpoint here every `every` rounds; a new group (every replica had died) resumes from it. */
  checkpoint?: { path: string; every: number };
  /** How long Redis may be unreachable before commands fail (default 30,000 ms). */
  retryForMs?: number;
  /** Round keys expire after this long (default 120,000 ms). */
  keyTtlMs?: number;
  /**
   * Cut each round's message into this many pieces on keys of different hash slots (default 1: the
   * message is stored whole under the replica's round key). On a Redis Cluster, the number of masters spreads the
   * parameter bytes over the nodes; it costs two more round trips per round (write the pieces, read the others').
   */
  payloadShards?: number;
}

/** The outcome of one round. */
export interface RoundResult {
  round: number;
  kind: WireKind;
  /** Replicas whose messages were averaged, in averaging order. */
  contributors: string[];
  /** Live members that were expected but missed the round (waited for at most the timeout). */
  missing: string[];
  /** Whether this replica's own message was part of the average (false: it arrived after the round closed). */
  included: boolean;
  /** Rows behind the average (sum of the contributors' rows). */
  rows: number;
  /** The rows-weighted mean of the contributors' values. */
  mean: Float32Array;
  /** Time spent in the round (writing, waiting, reading), ms. */
  syncMs: number;
  bytesSent: number;
  bytesReceived: number;
}

/** How a round script's message says "my message is in pieces": the mark, then `<pieces>:<bytes>`. */
const PIECES = 'rxgrad-pieces:';
const PIECES_BYTES = Buffer.from(PIECES);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Renews a lock only if we still hold it. */
const RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/**
 * Founds an epoch if the group is still in the one the founder saw (compare-and-set: of two founders
 * that saw the same dead epoch, exactly one wins): sets the members, the round, the epoch and the
 * start snapshot together. KEYS members, candidates, round, epoch, snapshot, snapshot:round, joining;
 * ARGV epoch seen ('' for none), new epoch, round, snapshot, founders…. Returns 1, or 0 if it lost.
 */
const FOUND = `if (redis.call('GET', KEYS[4]) or '') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[7])
for i = 5, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]); redis.call('SREM', KEYS[2], ARGV[i]) end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], ARGV[2])
redis.call('SET', KEYS[5], ARGV[4])
redis.call('SET', KEYS[6], ARGV[3])
return 1`;
/**
 * The group as one read: the epoch and its live members (members whose heartbeat expired are removed).
 * KEYS epoch, members; ARGV the heartbeat keys' prefix.
 */
const VIEW = `local live = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. m) == 1 then live[#live + 1] = m else redis.call('SREM', KEYS[2], m) end
end
return {redis.call('GET', KEYS[1]) or '', live}`;
/** The snapshot, if the epoch is still ARGV[1] (else nil). KEYS epoch, snapshot. */
const SNAPSHOT = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
return redis.call('GET', KEYS[2]) or ''`;
/** Publishes the leader's snapshot for joiners if the epoch is still ARGV[1]. KEYS epoch, snapshot, snapshot:round; ARGV epoch, snapshot, round. */
const PUBLISH = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return 1`;
/** Releases a lock only if we hold it. */
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/**
 * Joins (or founds) a replica group: checks the model's fingerprint against the group's, registers
 * with a heartbeat, and loads the group's current state (weights and optimizer state) so that this
 * replica starts equal to the others. A new group (no live member) resumes from its checkpoint if
 * there is one.
 *
 * Usage: `const group = await joinGroup({ redis, group: 'fmnist', model, optimizer, minReplicas: 3 });`
 */
export async function joinGroup(options: ReplicaGroupOptions): Promise<ReplicaGroup> {
  const group = new ReplicaGroup(options);
  try {
    await group.start();
  } catch (error) {
    await group.leave().catch(() => {});
    throw error;
  }
  return group;
}

/** sum = Σ rows·values over `parts` in their order (float64, the first part assigned, then added). */
function weightedSum(sum: Float64Array, parts: readonly { rows: number; values: Float32Array }[]): void {
  const first = parts[0]!;
  const w0 = first.rows;
  const v0 = first.values;
  for (let i = 0; i < sum.length; i++) sum[i] = w0 * v0[i]!;
  for (let p = 1; p < parts.length; p++) {
    const w = parts[p]!.rows;
    const v = parts[p]!.values;
    for (let i = 0; i < sum.length; i++) sum[i]! += w * v[i]!;
  }
}

/** A member of a replica group (see the module comment); made by {@link joinGroup}. */
export class ReplicaGroup {
  readonly id: string;
  readonly name: string;
  readonly fingerprint: ModelFingerprint;
  readonly digest: Uint8Array;
  /** The next round this replica takes part in. */
  round = 0;
  /** The current epoch (a group run); set by `start`. */
  epoch = '';
  /** Redis retries so far (server restarts). */
  readonly retries: RetryStats = { retries: 0, lastError: null };
  /** The most recent round (read by the replica driver for its step reports). */
  lastRound: RoundResult | null = null;
  private leader = false;
  private left = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private checkpointWrite: Promise<unknown> = Promise.resolve();
  private joinersWaiting = false;
  private pendingSnapshot: TrainingState | null = null;
  /** The connection a round's wait blocks on (made at the first round; null: the client cannot duplicate, poll). */
  private blocking: (BinaryRedis & { disconnect(): void }) | null | undefined = undefined;
  /** Float64 sums of a round's weighted messages, reused between rounds. */
  private sumScratch: Float64Array | undefined;
  /** The one leave (a second call returns it: fitReplica leaves as it ends, and so may its caller). */
  private leaving: Promise<void> | null = null;
  private lastCheckpointRound = -1;
  private readonly prefix: string;
  private readonly redis: BinaryRedis;
  private readonly options: ReplicaGroupOptions;
  private readonly roundTimeoutMs: number;
  private readonly memberTtlMs: number;
  private readonly retryForMs: number;
  private readonly keyTtlMs: number;
  private readonly payloadShards: number;

  constructor(options: ReplicaGroupOptions) {
    this.options = options;
    this.redis = options.redis;
    this.name = options.group;
    this.id = options.replica ?? `${hostname()}-${process.pid}`.slice(0, 24);
    if (!/^[\w.:-]{1,24}$/.test(this.id)) throw new RangeError(`joinGroup: replica id '${this.id}' must be 1-24 characters of [A-Za-z0-9_.:-]`);
    this.prefix = `rxgrad:{${options.group}}`;
    this.fingerprint = modelFingerprint(options.model, options.optimizer);
    this.digest = fingerprintDigest(this.fingerprint);
    this.roundTimeoutMs = options.roundTimeoutMs ?? 10_000;
    this.memberTtlMs = options.memberTtlMs ?? 3_000;
    this.retryForMs = options.retryForMs ?? 30_000;
    this.keyTtlMs = options.keyTtlMs ?? 120_000;
    const positive = (name: string, v: number) => {
      if (!(v > 0 && Number.isFinite(v))) throw new RangeError(`joinGroup: ${name} must be a positive number, got ${v}`);
    };
    positive('roundTimeoutMs', this.roundTimeoutMs);
    positive('memberTtlMs', this.memberTtlMs);
    positive('retryForMs', this.retryForMs);
    this.payloadShards = options.payloadShards ?? 1;
    if (!(Number.isInteger(this.payloadShards) && this.payloadShards >= 1 && this.payloadShards <= 256)) throw new RangeError(`joinGroup: payloadShards must be an integer in [1, 256], got ${options.payloadShards}`);
    if (options.checkpoint && !(Number.isInteger(options.checkpoint.every) && options.checkpoint.every >= 1)) throw new RangeError(`joinGroup: checkpoint.every must be a positive integer, got ${options.checkpoint.every}`);
  }

  /** Whether this replica holds the leader lock (as of its latest round). */
  get isLeader(): boolean {
    return this.leader;
  }

  private call(command: string, args: (string | number | Buffer)[]): Promise<unknown> {
    return retrying(() => this.redis.call(command, args), this.retryForMs, command, this.retries, this.redis);
  }

  private callBuffer(command: string, args: (string | number | Buffer)[]): Promise<unknown> {
    return retrying(() => this.redis.callBuffer(command, args), this.retryForMs, command, this.retries, this.redis);
  }

  private key(...parts: (string | number)[]): string {
    return [this.prefix, ...parts].join(':');
  }

  /** Registers, checks the fingerprint, and takes the group's state. Called by {@link joinGroup}. */
  async start(): Promise<void> {
    const mine = JSON.stringify(this.fingerprint);
    await this.call('SET', [this.key('fingerprint'), mine, 'NX']);
    const theirs = JSON.parse(String(await this.call('GET', [this.key('fingerprint')]))) as ModelFingerprint;
    const difference = fingerprintDifference(this.fingerprint, theirs);
    if (difference) throw new FingerprintMismatchError(`replica '${this.id}' refused by group '${this.name}': ${difference}`);
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat().catch(() => {}), Math.max(50, this.memberTtlMs / 3));
    this.heartbeat.unref();
    await this.call('SADD', [this.key('candidates'), this.id]);
    const timeoutMs = this.options.startTimeoutMs ?? 30_000;
    const deadline = performance.now() + timeoutMs;
    // Each pass reads the group once (epoch and live members together) and acts on that view; a step
    // that finds the view outdated (another founder won, the epoch changed) goes round again.
    for (;;) {
      if (performance.now() > deadline) throw new Error(`replica '${this.id}': could not join group '${this.name}' within ${timeoutMs} ms`);
      const [epoch, live] = (await this.call('EVAL', [VIEW, 2, this.key('epoch'), this.key('members'), this.key('alive', '')])) as [string, string[]];
      if (epoch !== '' && live.some((m) => m !== this.id)) {
        // Named a founder of this epoch, or joining it while it runs.
        if (live.includes(this.id) ? await this.takeSnapshot(epoch, -1) : await this.joinRunning(epoch, deadline)) return;
      } else if ((await this.call('SET', [this.key('leader'), this.id, 'NX', 'PX', this.memberTtlMs])) === 'OK') {
        this.leader = true;
        if (await this.found(epoch, deadline)) return;
        // Another replica founded first: give up the lock and join its epoch.
        await this.call('EVAL', [RELEASE, 1, this.key('leader'), this.id]);
        this.leader = false;
        continue;
      }
      await sleep(20);
    }
  }

  /**
   * Founds a new epoch as its leader, replacing `seen` (the dead epoch, '' for none): waits for
   * `minReplicas`, starts from the checkpoint or this model. False if another replica founded first
   * (the epoch is no longer `seen`, or this replica lost the leader lock while waiting).
   */
  private async found(seen: string, deadline: number): Promise<boolean> {
    const { model, optimizer } = this.options;
    const want = this.options.minReplicas ?? 1;
    let founders: string[] = [];
    for (;;) {
      await this.renewLeadership();
      if (!this.leader || ((await this.call('GET', [this.key('epoch')])) ?? '') !== seen) return false;
      founders = await this.alive((await this.call('SMEMBERS', [this.key('candidates')])) as string[]);
      if (founders.length >= want) break;
      if (performance.now() > deadline) throw new Error(`group '${this.name}': ${founders.length} of the ${want} replicas asked for (minReplicas) arrived within ${this.options.startTimeoutMs ?? 30_000} ms`);
      await sleep(20);
    }
    const state = (this.options.checkpoint ? await stateFromCheckpoint(this.options.checkpoint.path, model) : null) ?? captureState(model, optimizer, 0);
    const epoch = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const snapshot = this.snapshotMessage(state);
    const keys = [this.key('members'), this.key('candidates'), this.key('round'), this.key('epoch'), this.key('snapshot'), this.key('snapshot', 'round'), this.key('joining')];
    // One compare-and-set script: the epoch, its members, round and snapshot appear together, and only
    // if no other founder replaced `seen` meanwhile.
    if (Number(await this.call('EVAL', [FOUND, keys.length, ...keys, seen, epoch, state.round, snapshot, ...founders])) !== 1) return false;
    this.adopt(epoch, state);
    return true;
  }

  /**
   * Joins a running epoch: asks the leader for a snapshot and waits for one at least as new as the
   * group's round now. False if the epoch ended or was replaced meanwhile (the caller looks again).
   */
  private async joinRunning(epoch: string, deadline: number): Promise<boolean> {
    const since = Number((await this.call('GET', [this.key('round')])) ?? 0);
    await this.call('SADD', [this.key('joining'), this.id]);
    try {
      for (;;) {
        const [current, live] = (await this.call('EVAL', [VIEW, 2, this.key('epoch'), this.key('members'), this.key('alive', '')])) as [string, string[]];
        if (current !== epoch || !live.some((m) => m !== this.id)) return false; // replaced, or everyone left
        const snapshotRound = Number((await this.call('GET', [this.key('snapshot', 'round')])) ?? -1);
        if (snapshotRound >= since) {
          if (!(await this.takeSnapshot(epoch, since))) return false;
          await this.call('SADD', [this.key('members'), this.id]);
          return true;
        }
        if (performance.now() > deadline) throw new Error(`replica '${this.id}': no snapshot from group '${this.name}' (is a leader alive?)`);
        await sleep(20);
      }
    } finally {
      await this.call('SREM', [this.key('joining'), this.id]);
    }
  }

  /** Loads the group's snapshot if the group is still in `epoch` (false if not). */
  private async takeSnapshot(epoch: string, since: number): Promise<boolean> {
    const bytes = (await this.callBuffer('EVAL', [SNAPSHOT, 2, this.key('epoch'), this.key('snapshot'), epoch])) as Buffer | null;
    if (!bytes) return false;
    if (bytes.length === 0) throw new Error(`group '${this.name}': the snapshot is missing`);
    const header = bytes.length >= 16 ? bytes.readDoubleLE(8) : -1;
    const message = decodeMessage(bytes, { kind: 'state', round: header, fingerprint: this.digest }, `group '${this.name}' snapshot`);
    const state = decodeState(message.payload, `group '${this.name}' snapshot`);
    if (state.round < since) throw new Error(`group '${this.name}': snapshot of round ${state.round} is older than round ${since}`);
    this.adopt(epoch, state);
    await this.call('SREM', [this.key('candidates'), this.id]);
    return true;
  }

  private adopt(epoch: string, state: TrainingState): void {
    applyState(this.options.model, this.options.optimizer, state);
    this.epoch = epoch;
    this.round = state.round;
    this.lastCheckpointRound = state.round;
  }

  private snapshotMessage(state: TrainingState): Buffer {
    return encodeMessage({ kind: 'state', round: state.round, rows: 0, fingerprint: this.digest, replica: this.id }, encodeState(state));
  }

  private async publishSnapshot(state: TrainingState): Promise<void> {
    await this.call('EVAL', [PUBLISH, 3, this.key('epoch'), this.key('snapshot'), this.key('snapshot', 'round'), this.epoch, this.snapshotMessage(state), state.round]);
  }

  private async beat(): Promise<void> {
    if (this.left) return;
    await this.redis.call('SET', [this.key('alive', this.id), '1', 'PX', this.memberTtlMs]);
  }

  private async alive(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const flags = (await this.call('EXISTS', [this.key('alive', ids[0]!)]).then(async (first) => [first, ...(await Promise.all(ids.slice(1).map((id) => this.call('EXISTS', [this.key('alive', id)]))))])) as number[];
    return ids.filter((_, i) => Number(flags[i]) === 1).sort();
  }

  private async renewLeadership(): Promise<void> {
    if (this.leader) this.leader = Number(await this.call('EVAL', [RENEW, 1, this.key('leader'), this.id, this.memberTtlMs])) === 1;
    if (!this.leader) this.leader = (await this.call('SET', [this.key('leader'), this.id, 'NX', 'PX', this.memberTtlMs])) === 'OK';
  }

  /**
   * Called right after the update of a round was applied (the operators register it with
   * `afterApply`): the leader copies the state for waiting joiners and saves a checkpoint when due —
   * synchronously, so the copy is exactly the state after this round (published and written later).
   */
  afterUpdate(): void {
    if (!this.leader) return;
    const { model, optimizer } = this.options;
    if (this.joinersWaiting) this.pendingSnapshot = captureState(model, optimizer, this.round);
    this.joinersWaiting = false;
    const every = this.options.checkpoint?.every;
    if (every && this.round - this.lastCheckpointRound >= every) {
      this.lastCheckpointRound = this.round;
      const write = saveModel(model, this.options.checkpoint!.path, { streamOffsets: { group: this.name, round: this.round } });
      this.checkpointWrite = Promise.all([this.checkpointWrite, write]);
    }
  }

  /**
   * One round: contributes `values` (computed from `rows` rows), waits for the live members (at most
   * the round timeout), and returns the rows-weighted mean of the messages the round closed with.
   * A corrupt, truncated or foreign message fails the round with a {@link WireError}; nothing is returned to write into the weights.
   *
   * Usage: `const { mean } = await group.exchange('gradients', flatGradients, batchRows);`
   */
  async exchange(kind: WireKind, values: Float32Array, rows: number): Promise<RoundResult> {
    if (this.left) throw new Error(`replica '${this.id}' has left group '${this.name}'`);
    const started = performance.now();
    // Leader duties at the round boundary (the model holds the state after the previous round).
    await this.checkpointWrite; // surfaces a failed write; at most one in flight
    if (this.leader && this.pendingSnapshot) await this.publishSnapshot(this.pendingSnapshot);
    this.pendingSnapshot = null;
    const round = this.round;
    const message = encodeMessage({ kind, round, rows, fingerprint: this.digest, replica: this.id }, values);
    if (this.blocking === undefined) {
      this.blocking = this.redis.duplicate?.() ?? null;
      (this.blocking as { on?: (event: string, listener: () => void) => void } | null)?.on?.('error', () => {}); // reconnects are retried, not printed
    }
    let reply: RoundReply;
    try {
      const carried = this.payloadShards > 1 ? await this.storePieces(round, message) : message;
      reply = await contributeAndWait({ redis: this.redis, blocking: this.blocking, id: this.id, prefix: this.prefix, epoch: this.epoch, keyTtlMs: this.keyTtlMs, memberTtlMs: this.memberTtlMs, roundTimeoutMs: this.roundTimeoutMs, retryForMs: this.retryForMs, retries: this.retries, expectedOthers: this.lastRound?.contributors ?? [] }, round, carried);
    } catch (error) {
      if (!(error instanceof EpochGoneError)) throw error;
      const epoch = (await this.call('GET', [this.key('epoch')])) as string | null;
      throw new Error(`group '${this.name}': its state in Redis is gone or replaced (epoch ${epoch ?? 'missing'}, ours ${this.epoch}): was Redis restarted without persistence (appendonly yes)?`);
    }
    const { closed } = reply;
    this.leader = reply.leader;
    this.joinersWaiting = reply.joinersWaiting;
    const included = closed.includes(this.id);
    let bytesReceived = 0;
    const fetched = await Promise.all(closed.map((id) => (id === this.id ? null : this.loadPieces(round, id, reply.messages.get(id) ?? null))));
    const parts = closed.map((id, i) => {
      if (id === this.id) return { rows, values };
      const bytes = fetched[i];
      if (!bytes) throw new WireError('missing', `group '${this.name}' round ${round}: the message of replica '${id}' is gone (expired?)`);
      bytesReceived += bytes.length;
      const decoded = decodeMessage(bytes, { kind, round, fingerprint: this.digest, replica: id, bytes: values.byteLength }, `group '${this.name}' round ${round}, replica '${id}'`);
      return { rows: decoded.rows, values: payloadFloats(decoded) };
    });
    const total = parts.reduce((s, p) => s + p.rows, 0);
    const mean = new Float32Array(values.length);
    const weighted = parts.filter((p) => p.rows > 0);
    if (weighted.length === 1) {
      // One contributor with rows: (w·v)/w is v exactly in float64 (w < 2^24, v a float32).
      mean.set(weighted[0]!.values);
    } else if (total > 0) {
      // Summed in float64 in the closed list's order: every replica computes the same bits. The sum buffer is
      // kept between rounds (a fresh 8·P bytes each round was most of a round's JS time for the MLP).
      const sum = (this.sumScratch = this.sumScratch?.length === values.length ? this.sumScratch : new Float64Array(values.length));
      weightedSum(sum, weighted);
      for (let i = 0; i < sum.length; i++) mean[i] = sum[i]! / total;
    }
    this.round = round + 1;
    const result: RoundResult = {
      round, kind, contributors: closed, missing: reply.expected.filter((m) => !closed.includes(m)), included, rows: total, mean,
      syncMs: performance.now() - started, bytesSent: message.length, bytesReceived,
    };
    this.lastRound = result;
    return result;
  }

  private pieceKey(piece: number, round: number, id: string): string {
    return `rxgrad:{${this.name}#${piece}}:e:${this.epoch}:r:${round}:m:${id}`;
  }

  /** Stores `message` as `payloadShards` pieces (in parallel: on a cluster, on several nodes); returns the reference stored under the replica's round key instead of the message. */
  private async storePieces(round: number, message: Buffer): Promise<Buffer> {
    const n = this.payloadShards;
    const size = Math.ceil(message.length / n);
    await Promise.all(Array.from({ length: n }, (_, k) => this.callBuffer('SET', [this.pieceKey(k, round, this.id), message.subarray(k * size, Math.min(message.length, (k + 1) * size)), 'PX', this.keyTtlMs])));
    return Buffer.from(`${PIECES}${n}:${message.length}`);
  }

  /** The whole message of replica `id`: `carried` itself, or its pieces read back (null if any is gone). */
  private async loadPieces(round: number, id: string, carried: Buffer | null): Promise<Buffer | null> {
    if (!carried || carried.length > 64 || !carried.subarray(0, PIECES.length).equals(PIECES_BYTES)) return carried;
    const [count, length] = carried.subarray(PIECES.length).toString().split(':').map(Number) as [number, number];
    if (!(Number.isInteger(count) && count >= 1 && count <= 256)) throw new WireError('missing', `group '${this.name}' round ${round}: replica '${id}' sent a malformed piece reference`);
    const pieces = (await Promise.all(Array.from({ length: count }, (_, k) => this.callBuffer('GET', [this.pieceKey(k, round, id)])))) as (Buffer | null)[];
    if (pieces.some((p) => p === null)) return null;
    const whole = Buffer.concat(pieces as Buffer[]);
    // A wrong length is caught here; wrong bytes by the message's checksum.
    if (whole.length !== length) throw new WireError('length', `group '${this.name}' round ${round}: replica '${id}' message pieces hold ${whole.length} bytes, expected ${length}`);
    return whole;
  }

  /**
   * Leaves the group: stops the heartbeat, leaves the members (rounds stop waiting for this
   * replica at once), releases the leader lock, and waits for a checkpoint being written.
   *
   * Usage: `await group.leave();`
   */
  leave(): Promise<void> {
    this.leaving ??= this.leaveOnce();
    return this.leaving;
  }

  private async leaveOnce(): Promise<void> {
    this.left = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.blocking?.disconnect(); // no round runs after leaving
    try {
      await this.checkpointWrite;
    } finally {
      await this.call('SREM', [this.key('members'), this.id]);
      await this.call('SREM', [this.key('candidates'), this.id]);
      await this.call('DEL', [this.key('alive', this.id)]);
      await this.call('EVAL', [RELEASE, 1, this.key('leader'), this.id]);
    }
  }
}
