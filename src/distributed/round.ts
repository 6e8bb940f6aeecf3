/**
 * One round of a replica group on the wire: a replica's contribution and the wait for the round to
 * close, in as few Redis round trips as possible.
 *
 * - One Lua script per contribution checks the epoch, renews (or takes) the leader lock, stores the
 *   message, adds the replica to the round's contributors, reads the live members and, if every live
 *   member is in (or the round timed out), closes the round — `closed` = the sorted contributor list,
 *   the group's round counter moved on — and returns the other contributors' messages. The replica
 *   that completes a round therefore pays one round trip.
 * - The others block (BLPOP on a second connection) on their own wake list, into which the closer
 *   pushes the closed list with the other contributors' messages: two round trips in all.
 * - The blocking wait is cut into slices of a third of the member TTL: after each, the script runs
 *   again without a message, so a member that died mid-round (its heartbeat expired) is noticed and
 *   the round closes without it; after `roundTimeoutMs` it closes with whoever is in.
 */
import { retrying, type BinaryRedis, type RetryStats } from './redis-retry.ts';

/**
 * KEYS epoch, leader, members, joining, round counter, this round's contributors, its closed list.
 * ARGV epoch, replica id, message ('' = none: only look), key TTL ms, leader TTL ms, heartbeat key
 * prefix, wake list prefix, round, '1' to close now whoever is in, round key prefix.
 * Returns {status (1 ok, 0 epoch gone), leader, joiners waiting, closed list or nil, live members, messages of `closed` but the caller}.
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
if not closed and ARGV[3] ~= '' then
  redis.call('SET', ARGV[10] .. id, ARGV[3], 'PX', ARGV[4])
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
    -- Wake each waiting contributor with the closed list and the others' messages in one value:
    -- u32 length + closed list, then u32 length + message for each of the list but the recipient.
    local stored = {}
    for _, m in ipairs(contributors) do stored[m] = redis.call('GET', ARGV[10] .. m) or '' end
    for _, m in ipairs(contributors) do
      if m ~= id then
        local parts = {struct.pack('>I4', #closed), closed}
        for _, other in ipairs(contributors) do
          if other ~= m then parts[#parts + 1] = struct.pack('>I4', #stored[other]); parts[#parts + 1] = stored[other] end
        end
        redis.call('RPUSH', ARGV[7] .. m, table.concat(parts))
        redis.call('PEXPIRE', ARGV[7] .. m, ARGV[4])
      end
    end
  end
end
local messages = {}
if closed then
  for _, m in ipairs(cjson.decode(closed)) do
    if m ~= id then messages[#messages + 1] = redis.call('GET', ARGV[10] .. m) or false end
  end
end
return {1, leader, joining, closed or false, live, messages}`;

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

/** The closed list and the messages of its members but `id`, from a wake value (see the script). */
function unpackWake(value: Buffer, id: string): [string[], (Buffer | null)[]] {
  const malformed = () => new Error(`round wake value of ${value.length} bytes for replica '${id}' is malformed`);
  let at = 0;
  const take = () => {
    if (at + 4 > value.length) throw malformed();
    const length = value.readUInt32BE(at);
    if (at + 4 + length > value.length) throw malformed();
    at += 4 + length;
    return value.subarray(at - length, at);
  };
  const closed = JSON.parse(take().toString()) as string[];
  const messages = closed.filter((m) => m !== id).map(() => {
    const message = take();
    return message.length > 0 ? message : null;
  });
  if (at !== value.length) throw malformed();
  return [closed, messages];
}

type ScriptReply = [status: number, leader: number, joining: number, closed: Buffer | null, live: Buffer[], messages: (Buffer | null)[]];

/**
 * Contributes `message` to `round` and waits until the round closes (see the module comment).
 *
 * Usage: `const { closed, messages } = await contributeAndWait(context, 7, encodedGradients);`
 */
export async function contributeAndWait(context: RoundContext, round: number, message: Buffer): Promise<RoundReply> {
  const { prefix, epoch, id } = context;
  const roundPrefix = `${prefix}:e:${epoch}:r:${round}:`;
  const keys = [`${prefix}:epoch`, `${prefix}:leader`, `${prefix}:members`, `${prefix}:joining`, `${prefix}:round`, `${roundPrefix}in`, `${roundPrefix}closed`];
  const wakeKey = `${roundPrefix}wake:${id}`;
  const retry = <T>(what: string, command: () => Promise<T>, client: unknown = context.redis) => retrying(command, context.retryForMs, what, context.retries, client);
  const run = async (payload: Buffer | '', closeNow: boolean) => {
    const args = [ROUND, keys.length, ...keys, epoch, id, payload, context.keyTtlMs, context.memberTtlMs, `${prefix}:alive:`, `${roundPrefix}wake:`, round, closeNow ? '1' : '0', roundPrefix];
    const reply = (await retry('EVAL round', () => context.redis.callBuffer('EVAL', args))) as ScriptReply;
    if (reply[0] !== 1) throw new EpochGoneError(epoch);
    return { leader: reply[1] === 1, joining: Number(reply[2]), closed: reply[3] ? (JSON.parse(reply[3].toString()) as string[]) : null, live: reply[4].map(String), messages: reply[5] };
  };
  const first = await run(message, false);
  const outcome = (closed: string[], messages: (Buffer | null)[]): RoundReply => ({
    closed, messages: new Map(closed.filter((m) => m !== id).map((m, i) => [m, messages[i] ?? null])),
    expected: first.live, leader: first.leader, joinersWaiting: first.joining > 0,
  });
  let current = first;
  const waitStarted = performance.now();
  let poll = 0.5;
  while (current.closed === null) {
    const elapsed = performance.now() - waitStarted;
    const slice = Math.max(10, Math.min(context.memberTtlMs / 3, context.roundTimeoutMs - elapsed));
    if (context.blocking) {
      const blocking = context.blocking;
      const woken = (await retry('BLPOP', () => blocking.callBuffer('BLPOP', [wakeKey, (slice / 1000).toFixed(3)]), blocking)) as [Buffer, Buffer] | null;
      if (woken) return outcome(...unpackWake(woken[1], id));
    } else {
      await new Promise((resolve) => setTimeout(resolve, Math.min(poll, slice)));
      poll = Math.min(poll * 2, 10);
    }
    current = await run('', performance.now() - waitStarted >= context.roundTimeoutMs);
  }
  return outcome(current.closed, current.messages);
}
