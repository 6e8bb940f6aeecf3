import { concatMap, defer, finalize, from, map, Observable, type OperatorFunction } from 'rxjs';
import type { Batch } from '../batch.ts';
import type { FitOptions, Model, StepReport } from '../model.ts';
import { streamCounters } from '../streams/backpressure.ts';
import { ackEntries, redisStreamSource, type RedisBatch, type RedisCaller, type RedisStreamOptions } from '../streams/redis.ts';
import type { GradientAllReduce } from './all-reduce.ts';
import type { WeightAveraging } from './average-weights.ts';
import type { ReplicaGroup, RoundResult } from './group.ts';

/** Options of {@link fitReplica}: the stream, its consumer group, how records become batches, and the fit. */
export interface ReplicaOptions extends Omit<RedisStreamOptions, 'consumer' | 'group'> {
  /**
   * Entries per read (default 1: one Arrow entry is one batch; for JSON records, the batch size).
   * `claimIdleMs` (default 30,000) must exceed a step plus the round timeout, or live replicas' entries get claimed too.
   */
  count?: number;
  /** The stream's consumer group (default: the replica group's name). The consumer is the replica's id. */
  consumerGroup?: string;
  fit: FitOptions;
}

/** A step report of {@link fitReplica}. */
export interface ReplicaStepReport extends StepReport {
  replica: string;
  /** Stream entry ids of this step's batch. */
  entries: string[];
  /** The latest round this replica completed (null before any). */
  round: number | null;
  /** That round's contributors, and the live members it went on without (after the round timeout). */
  contributors: string[];
  missing: string[];
  /** Whether this replica's batch made it into the round; if not, its entries stay pending and are trained again. */
  included: boolean;
  /** Entries acknowledged after this step. */
  acked: number;
  redelivered: number;
  /** Time in the round and bytes on the wire for it. */
  syncMs: number;
  bytesSent: number;
  bytesReceived: number;
  leader: boolean;
  /** Redis command retries so far (a server restart shows here). */
  redisRetries: number;
}

/**
 * Trains one replica of a data-parallel group: batches come from a Redis Stream through a consumer
 * group (each entry to one replica; entries pending on a dead replica are claimed after
 * `claimIdleMs`), the gradient operators in `fit` synchronise the replicas ({@link allReduceGradients}
 * or {@link averageWeights}), and each entry is acknowledged only after the update that used it was
 * applied *and* agreed by the group (a batch left out of a round stays pending and is trained again).
 * Ends (by default) when the stream and the group's pending list are drained; then leaves the group.
 *
 * Usage: `fitReplica(model, group, redis, { stream: 'fmnist', shape: [28, 28, 1], classes: 10, fit: { loss, optimizer, gradientOperators: [allReduceGradients(group)] } }).subscribe(log)`
 */
export function fitReplica(model: Model, group: ReplicaGroup, client: RedisCaller & { duplicate?(): RedisCaller & { disconnect(): void } }, options: ReplicaOptions): Observable<ReplicaStepReport> {
  return defer(() => {
    const consumerGroup = options.consumerGroup ?? group.name;
    const counters = options.counters ?? streamCounters();
    const claimIdleMs = options.claimIdleMs ?? 30_000;
    // One entry per read by default (an Arrow entry is a whole batch): a replica holds only the entries it trains now.
    const averaging = (options.fit.gradientOperators ?? []).filter((op): op is WeightAveraging => typeof (op as Partial<WeightAveraging>).afterStep === 'function');
    const allReduce = (options.fit.gradientOperators ?? []).find((op): op is GradientAllReduce => typeof (op as Partial<GradientAllReduce>).idleRound === 'function' && !averaging.includes(op as WeightAveraging));
    // While this replica has nothing to read but others still train, it takes part in their rounds
    // (zero rows of gradient; or its weights, a model like the others'), so the rounds do not wait for
    // it and every replica applies the same updates to the end.
    const idleAverage = averaging[0];
    const onIdle = allReduce
      ? () => allReduce.idleRound(model, options.fit.optimizer)
      : idleAverage
        ? async () => {
            // Entries trained since the last average are settled by this one.
            ackedBetweenSteps += await settle(await idleAverage.idleRound(model, options.fit.optimizer));
            await new Promise((resolve) => setTimeout(resolve, 20)); // no busy loop while everyone idles
          }
        : undefined;
    // The next entry is read while the current step trains (prefetch, one entry ahead): the reads go
    // on a connection of their own, so a blocking XREADGROUP never holds up a round's script.
    const reader = client.duplicate?.() ?? null;
    (reader as { on?: (event: string, listener: () => void) => void } | null)?.on?.('error', () => {}); // reconnects are retried, not printed
    // An idle round must not run beside a training step's round: a read that finds nothing while a
    // step trains waits for the step to end before taking part in the others' rounds.
    let stepDone: Promise<void> = Promise.resolve();
    let endStep = () => {};
    const gatedIdle = onIdle ? async () => {
      await stepDone;
      await onIdle();
    } : undefined;
    const source = redisStreamSource(reader ?? client, {
      stopWhenIdle: 'drained', claimEveryMs: Math.max(100, claimIdleMs / 2), count: 1, ...(gatedIdle ? { onIdle: gatedIdle } : {}), ...options, claimIdleMs, counters, group: consumerGroup, consumer: group.id,
    });
    const ack = (ids: readonly string[]) => ackEntries(client, options.stream, consumerGroup, ids);
    const inFlight: RedisBatch[] = [];
    // Entries trained locally but not yet agreed by a round (model averaging between syncs).
    let unsynced: string[] = [];
    let lastSeen: RoundResult | null = group.lastRound;
    /** A round finished: acknowledge what it included, leave what it did not pending for retraining. */
    const settle = async (result: RoundResult): Promise<number> => {
      const ids = unsynced;
      unsynced = [];
      return result.included ? ack(ids) : 0;
    };
    const runAveraging = async (): Promise<number> => {
      let acked = 0;
      for (const op of averaging) {
        const result = await op.afterStep(model, options.fit.optimizer);
        if (result) acked += await settle(result);
      }
      return acked;
    };
    let ackedBetweenSteps = 0;
    let stepReported: Promise<void> = Promise.resolve();
    let reported = () => {};
    async function* batches(): AsyncGenerator<Batch> {
      const reads = source[Symbol.asyncIterator]();
      try {
        let next = reads.next();
        for (;;) {
          const result = await next;
          if (result.done) break;
          const read = result.value;
          ackedBetweenSteps += await runAveraging();
          if (read.batch === null) {
            await ack(read.ids); // every entry was bad and skipped
            next = reads.next();
            continue;
          }
          inFlight.push(read);
          stepDone = new Promise((resolve) => (endStep = resolve));
          // Prefetch: the next entry is read (and decoded) while this step trains. It is pending on this
          // consumer until acknowledged after its own step, so if this replica dies it is claimed like any other.
          next = reads.next();
          next.catch(() => {}); // surfaces at the await above
          yield read.batch;
          // Resumed: that step is applied; with model averaging its entries wait for the next round.
          endStep();
          if (averaging.length > 0) unsynced.push(...read.ids);
          // The next step starts once this one is acknowledged and reported (the read of its entry is already done):
          // a report never trails the steps, so what a replica reports is what it acknowledged.
          await stepReported;
        }
      } finally {
        endStep();
        await reads.return?.();
      }
      // A last average over the steps since the previous one (idle replicas join it), then leave.
      for (const op of averaging) {
        const result = await op.afterStep(model, options.fit.optimizer, true);
        if (result) ackedBetweenSteps += await settle(result);
      }
      // Left out of that round (it closed without us): still trained into this model; acknowledged as it leaves.
      ackedBetweenSteps += await ack(unsynced.splice(0));
    }
    // The step's round is taken as the report comes out (synchronously, before the next batch is pulled):
    // an idle round run after this step, while its acknowledgement is still on the wire, must not stand in for it.
    const capture = map((report: StepReport) => {
      const read = inFlight.shift()!;
      const round = group.lastRound !== lastSeen ? group.lastRound : null;
      lastSeen = group.lastRound;
      stepReported = new Promise((resolve) => (reported = resolve));
      return { report, read, round, last: group.lastRound, reported };
    });
    const acknowledge: OperatorFunction<StepReport, ReplicaStepReport> = (reports) => reports.pipe(capture, concatMap(({ report, read, round, last, reported }) =>
      from(
        (async () => {
          let acked = ackedBetweenSteps;
          ackedBetweenSteps = 0;
          // A per-step round (allReduce): acknowledged if the round included this batch, else left pending.
          if (round && round.kind === 'gradients') acked += round.included ? await ack(read.ids) : 0;
          else if (averaging.length === 0) acked += await ack(read.ids);
          return acked;
        })(),
      ).pipe(
        map((acked): ReplicaStepReport => {
          reported();
          return {
          ...report, replica: group.id, entries: read.ids, round: last?.round ?? null, contributors: last?.contributors ?? [], missing: last?.missing ?? [],
          included: round ? round.included : true, acked, redelivered: read.redelivered, syncMs: round?.syncMs ?? 0,
          bytesSent: round?.bytesSent ?? 0, bytesReceived: round?.bytesReceived ?? 0, leader: group.isLeader, redisRetries: group.retries.retries,
          };
        }),
      ),
    ));
    return model.fitFrom(batches(), options.fit).pipe(
      acknowledge,
      finalize(() => {
        reader?.disconnect();
        void group.leave().catch(() => {});
      }),
    );
  });
}
