/**
 * One round of a replica group on the wire: a replica's contribution and the wait for the round to
 * close, in as few Redis round trips as possible, with the message bytes kept out of Lua.
 *
 * - A replica sends three commands in one write on one connection: a plain SET of its message under
 *   its own key; a Lua script that checks the epoch, renews (or takes) the leader lock, adds the
 *   replica to the round's contributors, reads the live members and, if every live member is in (or
 *   the round timed out), closes the round — `closed` = the sorted contributor list, the group's round
 *   counter moved on; and an MGET of the messages of the replicas it expects (the previous round's
 *   others). The replica that completes a round therefore has every message after one round trip.
 * - The others block (BLPOP on a second connection) on their own wake list, into which the closer
 *   pushes the closed list, with an MGET of the live members' messages queued behind the BLPOP on the
 *   same connection: Redis runs it as soon as the wake is served, so they too have every message
 *   when the wake arrives (two round trips; a message still lacking, a joiner's, is read after).
 * - Why the bytes stay out of the script: Redis 7.0 pays about 1.1 µs per KB for every string that
 *   enters its Lua interpreter (an argument or a `redis.call` reply), against ~1.5 µs for a whole plain
 *   SET of the same bytes (measured: an 82 KB argument to `return 1` costs 97 µs, 407 KB 462 µs). The
 *   former script carried the message in, read the messages back and concatenated them into the wake
 *   values: about five crossings per round, 0.4 ms of Redis time for the CNN and 2.4 ms for the MLP.
 * - The blocking wait is cut into slices of a third of the member TTL: after each, the script runs
 *   again without contributing, so a member that died mid-round (its heartbeat expired) is noticed
 *   and the round closes without it; after `roundTimeoutMs` it closes with whoever is in.
 */
import { createHash } from 'node:crypto';
import { coalesced, retrying, type BinaryRedis, type RetryStats } from './redis-retry.ts';

/**
 * KEYS epoch, leader, members, joining, round counter, this round's contributors, its closed list.
 * ARGV epoch, replica id, '1' to contribute (its message already stored at ARGV[10] .. id) or '' to
 * only look, key TTL ms, leader TTL ms, heartbeat key prefix, wake list prefix, round, '1' to close now
 * whoever is in, round key prefix.
 * Returns {status (1 ok, 0 epoch gone, 2 the caller's message is not stored), leader, joiners waiting, closed list or nil, live members}.
 */
const ROUND = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local id = ARGV[2]
local leader = 0
if redis.call('GET', KEYS[2]) == id then
  redis.call('PEXPIRE', KEYS[2], ARGV[5]); leader = 1
elseif redis.call('SET', KEYS[2], id, 'NX', 'PX', ARGV[5]) then leader = 1 end
local joining = 0
if leader == 1 then joining = redis.call('SCARD', KEYS[4]) end
local closed = redis.call('GET', KEYS[7])
if not closed and ARGV[3] == '1' then
  if redis.call('EXISTS', ARGV[10] .. id) == 0 then return {2} end
  redis.call('SADD', KEYS[6], id)
  redis.call('PEXPIRE', KEYS[6], ARGV[4])
end
local live = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('EXISTS', ARGV[6] .. m) == 1 then live[#live + 1] = m else redis.call('SREM', KEYS[3], m) end
end
if not closed then
  local contributors = redis.call('SMEMBERS', KEYS[6])
  local present = {}
  for _, m in ipairs(contributors) do present[m] = true end
  local everyone = true
  for _, m in ipairs(live) do if not present[m] then everyone = false end end
  if everyone or ARGV[9] == '1' then
    table.sort(contributors)
    closed = #contributors == 0 and '[]' or cjson.encode(contributors)
    redis.call('SET', KEYS[7], closed, 'PX', ARGV[4])
    if tonumber(redis.call('GET', KEYS[5]) or '0') <= tonumber(ARGV[8]) then redis.call('SET', KEYS[5], tonumber(ARGV[8]) + 1) end
    -- Wake each waiting contributor with the closed list (the messages it reads itself).
    for _, m in ipairs(contributors) do
      if m ~= id then
        redis.call('RPUSH', ARGV[7] .. m, closed)
        redis.call('PEXPIRE', ARGV[7] .. m, ARGV[4])
      end
    end
  end
end
return {1, leader, joining, closed or false, live}`;
const ROUND_SHA = createHash('sha1').update(ROUND).digest('hex');

/** What the group tells a round: who it is, its keys and its timing. */
export interface RoundContext {
  redis: BinaryRedis;
  /** A second connection for the blocking wait (null: poll instead). */
  blocking: BinaryRedis | null;
  id: string;
  /** `rxgrad:<group>`. */
  prefix: string;
  epoch: string;
  keyTtlMs: number;
  memberTtlMs: number;
  roundTimeoutMs: number;
  retryForMs: number;
  retries: RetryStats;
  /** Replicas whose messages to fetch with the contribution (the previous round's others): a guess, never trusted. */
  expectedOthers: readonly string[];
}

/** A round's outcome on the wire, before any value is decoded. */
export interface RoundReply {
  /** The closed list: whose messages the round averages, in order. */
  closed: string[];
  /** The messages of `closed` other than the caller's (null: gone). */
  messages: Map<string, Buffer | null>;
  /** Live members when the caller contributed (who the round waited for). */
  expected: string[];
  /** Whether the caller holds the leader lock, and whether joiners wait for a snapshot. */
  leader: boolean;
  joinersWaiting: boolean;
}

/** Thrown when the group's epoch in Redis is not the replica's (Redis lost its data, or a new group replaced it). */
export class EpochGoneError extends Error {}

/** The closed list in a wake value (see the script). */
function parseClosed(value: Buffer, id: string): string[] {
  let closed: unknown;
  try {
    closed = JSON.parse(value.toString());
  } catch {
    closed = null;
  }
  if (!Array.isArray(closed) || !closed.every((m): m is string => typeof m === 'string')) {
    throw new Error(`round wake value of ${value.length} bytes for replica '${id}' is malformed`);
  }
  return closed;
}

type ScriptReply = [status: number, leader: number, joining: number, closed: Buffer | null, live: Buffer[]];

/**
 * Contributes `message` to `round` and waits until the round closes (see the module comment).
 *
 * Usage: `const { closed, messages } = await contributeAndWait(context, 7, encodedGradients);`
 */
export async function contributeAndWait(context: RoundContext, round: number, message: Buffer): Promise<RoundReply> {
  const { prefix, epoch, id, redis } = context;
  const roundPrefix = `${prefix}:e:${epoch}:r:${round}:`;
  const keys = [`${prefix}:epoch`, `${prefix}:leader`, `${prefix}:members`, `${prefix}:joining`, `${prefix}:round`, `${roundPrefix}in`, `${roundPrefix}closed`];
  const wakeKey = `${roundPrefix}wake:${id}`;
  const messageKey = (replica: string) => `${roundPrefix}${replica}`;
  const retry = <T>(what: string, command: () => Promise<T>, client: unknown = redis) => retrying(command, context.retryForMs, what, context.retries, client);
  const store = () => retry('SET message', () => redis.callBuffer('SET', [messageKey(id), message, 'PX', context.keyTtlMs]));
  const fetch = async (replicas: readonly string[]) =>
    replicas.length === 0 ? [] : ((await retry('MGET messages', () => redis.callBuffer('MGET', replicas.map(messageKey)))) as (Buffer | null)[]);
  const script = async (contribute: boolean, closeNow: boolean) => {
    const args = [keys.length, ...keys, epoch, id, contribute ? '1' : '', context.keyTtlMs, context.memberTtlMs, `${prefix}:alive:`, `${roundPrefix}wake:`, round, closeNow ? '1' : '0', roundPrefix];
    // EVALSHA: the script's text travels (and is hashed by Redis) only when Redis does not know it yet.
    const reply = (await retry('EVALSHA round', async () => {
      try {
        return await redis.callBuffer('EVALSHA', [ROUND_SHA, ...args]);
      } catch (error) {
        if (!/NOSCRIPT/.test((error as Error).message)) throw error;
        return await redis.callBuffer('EVAL', [ROUND, ...args]);
      }
    })) as ScriptReply;
    if (reply[0] === 0) throw new EpochGoneError(epoch);
    if (reply[0] === 2) return null;
    return { leader: reply[1] === 1, joining: Number(reply[2]), closed: reply[3] ? parseClosed(reply[3], id) : null, live: reply[4].map(String) };
  };
  // Store, contribute and fetch the expected others' messages in one pipelined round trip (one connection: in order).
  const guessed = context.expectedOthers.filter((m) => m !== id);
  let [, first, early] = await coalesced(redis, () => Promise.all([store(), script(true, false), fetch(guessed)]));
  // The message was not there when the script ran (a reconnect reordered the retried commands): store it again first.
  for (let attempt = 1; first === null; attempt++) {
    if (attempt > 3) throw new Error(`group round ${round}: replica '${id}' stored its message ${attempt} times and Redis still does not hold it (evicted at once? check maxmemory-policy)`);
    await store();
    first = await script(true, false);
  }
  const have = new Map<string, Buffer | null>(guessed.map((m, i) => [m, early[i] ?? null]));
  const outcome = async (closed: string[]): Promise<RoundReply> => {
    const lacking = closed.filter((m) => m !== id && !have.get(m));
    const fetched = await fetch(lacking);
    lacking.forEach((m, i) => have.set(m, fetched[i] ?? null));
    return {
      closed, messages: new Map(closed.filter((m) => m !== id).map((m) => [m, have.get(m) ?? null])),
      expected: first.live, leader: first.leader, joinersWaiting: first.joining > 0,
    };
  };
  let current = first;
  const waitStarted = performance.now();
  let poll = 0.5;
  while (current.closed === null) {
    const elapsed = performance.now() - waitStarted;
    const slice = Math.max(10, Math.min(context.memberTtlMs / 3, context.roundTimeoutMs - elapsed));
    if (context.blocking) {
      const blocking = context.blocking;
      // The MGET queued behind the BLPOP runs the moment the wake arrives, in the same Redis turn as the
      // closing script's push: the waiter has the messages without another round trip.
      const wanted = current.live.filter((m) => m !== id && !have.get(m));
      const [woken, arrived] = await coalesced(blocking, () => Promise.all([
        retry('BLPOP', () => blocking.callBuffer('BLPOP', [wakeKey, (slice / 1000).toFixed(3)]), blocking) as Promise<[Buffer, Buffer] | null>,
        wanted.length === 0 ? [] : (retry('MGET messages', () => blocking.callBuffer('MGET', wanted.map(messageKey)), blocking) as Promise<(Buffer | null)[]>),
      ]));
      wanted.forEach((m, i) => arrived[i] && have.set(m, arrived[i]!));
      if (woken) return outcome(parseClosed(woken[1], id));
    } else {
      await new Promise((resolve) => setTimeout(resolve, Math.min(poll, slice)));
      poll = Math.min(poll * 2, 10);
    }
    const looked = await script(false, performance.now() - waitStarted >= context.roundTimeoutMs);
    if (looked) current = looked;
  }
  return outcome(current.closed);
}
