import { Observable, type OperatorFunction } from 'rxjs';
import { writeSnapshot, type SavedCheckpoint, type Snapshot } from './checkpoint-files.ts';
import { snapshot } from './checkpoint.ts';
import type { Model, StepReport } from './model.ts';

/** Options of {@link checkpointEvery}. */
export interface CheckpointEveryOptions {
  /** The model whose step reports pass through. */
  model: Model;
  /** As for {@link saveModel}. */
  path: string;
  /** Save when the step count reaches a multiple of `steps`. */
  steps?: number;
  /** Save when at least `seconds` have passed since the last save (checked at each step). */
  seconds?: number;
  /** Called at each save, at the step being saved: the stream positions consistent with these weights. */
  streamOffsets?: () => Record<string, unknown>;
  /** Called after each save is durable. */
  onSave?: (saved: SavedCheckpoint) => void;
}

/**
 * Saves the model every `steps` steps and/or every `seconds` seconds, as an operator on the step
 * reports of `model.fit(...)`/`fitFrom(...)`: put it directly after them.
 *
 * Semantics: when a report arrives and a save is due, the state is copied synchronously at that
 * step boundary (the report is emitted by the step itself, so no other step can be half done); the
 * files are then written asynchronously while the model keeps training. Reports are held back until
 * the save that precedes them is durable, so when a report for step N has passed, every save due at
 * or before N is on disk (write errors surface as this stream's error). At most one write runs at a
 * time; if saves come due faster than the disk, the pending copy is replaced by the newest one
 * (memory stays at two copies). Completion waits for the last write. A save never lands on a step
 * whose update is held (`accumulateGradients`): it waits for the step that applies the sum.
 *
 * Usage: `model.fitFrom(source, { loss, optimizer }).pipe(checkpointEvery({ model, path: 'runs/live', steps: 500, streamOffsets: () => offsets }))`
 */
export function checkpointEvery<T extends StepReport>(options: CheckpointEveryOptions): OperatorFunction<T, T> {
  const { model, path, steps, seconds } = options;
  if (steps === undefined && seconds === undefined) throw new RangeError('checkpointEvery: give steps and/or seconds');
  if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1)) throw new RangeError(`checkpointEvery: steps must be a positive integer, got ${steps}`);
  if (seconds !== undefined && !(Number.isFinite(seconds) && seconds > 0)) throw new RangeError(`checkpointEvery: seconds must be a positive number, got ${seconds}`);
  return (source) =>
    new Observable<T>((subscriber) => {
      let lastSaveTime = performance.now();
      let lastSaveStep = steps ? Math.floor(model.stepCount / steps) * steps : model.stepCount;
      // Writes in order; `queued` is a snapshot waiting for the running write and is superseded by newer ones.
      let writing: Promise<void> | null = null;
      let queued: { snap: Snapshot; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | null = null;
      // Emissions waiting for a write; when empty and no write is due, reports pass synchronously.
      let held: Promise<void> | null = null;
      let failed = false;

      const fail = (error: unknown) => {
        if (failed) return;
        failed = true;
        subscriber.error(error);
      };
      const startWrite = (snap: Snapshot): Promise<void> =>
        writeSnapshot(path, snap).then((saved) => {
          options.onSave?.(saved);
        });
      const schedule = (snap: Snapshot): Promise<void> => {
        if (!writing) {
          const run = startWrite(snap);
          // `writing` only sequences writes; the error reaches the stream through `run`, which a held report awaits.
          writing = run.then(drain, drain);
          return run;
        }
        if (queued) {
          // Superseded: whoever waited for the older copy is satisfied by the newer, later state.
          queued.snap = snap;
          return queued.done;
        }
        let resolve!: () => void;
        let reject!: (e: unknown) => void;
        const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
        queued = { snap, done, resolve, reject };
        return done;
      };
      const drain = (): void => {
        writing = null;
        const next = queued;
        queued = null;
        if (next) schedule(next.snap).then(next.resolve, next.reject);
      };
      const hold = (after: Promise<void>, emit: () => void) => {
        // Marked handled here: once the chain has failed, later links never await `after`, and its rejection is already reported.
        after.catch(() => {});
        const chained: Promise<void> = (held ?? Promise.resolve()).then(() => after).then(() => {
          if (failed) return;
          emit();
          if (held === chained) held = null;
        });
        held = chained;
        chained.catch(fail);
      };

      const subscription = source.subscribe({
        next: (report) => {
          if (failed) return;
          const now = performance.now();
          // Not while a gradient operator holds steps back (accumulation): their sums are not part of a
          // checkpoint, so a save waits for the next step whose update is applied or dropped.
          const due = report.update !== 'held' &&
            ((steps !== undefined && report.step - lastSaveStep >= steps) || (seconds !== undefined && now - lastSaveTime >= seconds * 1000));
          if (!due) {
            if (held) hold(Promise.resolve(), () => subscriber.next(report));
            else subscriber.next(report);
            return;
          }
          if (model.stepCount !== report.step) {
            // The report was delayed (an async operator in between): the model has moved on and the copy would not match it.
            return fail(new Error(`checkpointEvery: report of step ${report.step} arrived when ${model.name} is at step ${model.stepCount}; put checkpointEvery directly after fit/fitFrom`));
          }
          let snap: Snapshot;
          try {
            snap = snapshot(model, options.streamOffsets ? { streamOffsets: options.streamOffsets() } : {}, path);
          } catch (error) {
            return fail(error);
          }
          lastSaveTime = now;
          lastSaveStep = steps ? Math.floor(report.step / steps) * steps : report.step;
          hold(schedule(snap), () => subscriber.next(report));
        },
        error: (error: unknown) => (held ? hold(Promise.resolve(), () => fail(error)) : fail(error)),
        complete: () => {
          const finish = async () => {
            while (writing) await writing;
            if (!failed) subscriber.complete();
          };
          if (held) hold(Promise.resolve(), () => void finish());
          else void finish();
        },
      });
      return () => subscription.unsubscribe();
    });
}
