import { Presets, SingleBar } from 'cli-progress';
import { tap, type MonoTypeOperatorFunction } from 'rxjs';
import type { TrainProgress } from './model.ts';

/** Options of {@link logProgress}. */
export interface LogProgressOptions {
  /** Draw a progress bar per epoch: 'auto' (default) when stdout is a terminal. */
  bar?: boolean | 'auto';
  /** Where epoch lines go (default `console.log`). */
  log?: (line: string) => void;
  /** What the validation set is called in epoch lines (default 'validation'; examples that validate on the test set say 'test'). */
  validationName?: string;
}

const percent = (v: number | undefined) => (v === undefined ? '-' : `${(v * 100).toFixed(2)}%`);

/**
 * Keras-style progress for {@link Model.train}: a bar per epoch with running loss, accuracy and
 * examples/s (in a terminal), and one line per epoch with the validation metrics. A `tap`: the
 * events pass through unchanged.
 *
 * Usage: `await lastValueFrom(model.train(data, options).pipe(logProgress()));`
 */
export function logProgress(options: LogProgressOptions = {}): MonoTypeOperatorFunction<TrainProgress> {
  const log = options.log ?? ((line: string) => console.log(line));
  const interactive = options.bar === 'auto' || options.bar === undefined ? process.stdout.isTTY === true : options.bar;
  const bar = new SingleBar(
    { format: 'epoch {epoch}/{epochs} [{bar}] {value}/{total} batches | loss {loss} | acc {accuracy} | {speed} ex/s', hideCursor: true },
    Presets.shades_classic,
  );
  let epochStart = 0;
  return tap({
    next(event) {
      if (event.kind === 'step') {
        if (!interactive) return;
        if (event.batch === 1) {
          epochStart = performance.now();
          bar.start(event.batches, 0, { epoch: event.epoch, epochs: event.epochs, loss: '-', accuracy: '-', speed: '-' });
        }
        bar.update(event.batch, {
          loss: event.meanLoss.toFixed(4),
          accuracy: percent(event.meanAccuracy),
          speed: Math.round(event.examples / ((performance.now() - epochStart) / 1000)),
        });
        return;
      }
      if (interactive) bar.stop();
      const v = options.validationName ?? 'validation';
      const validation = event.validation
        ? ` | ${v} loss ${event.validation.loss.toFixed(4)}, ${v} accuracy ${percent(event.validation.accuracy)}`
        : '';
      log(
        `epoch ${event.epoch}/${event.epochs}: loss ${event.loss.toFixed(4)}, accuracy ${percent(event.accuracy)}${validation} ` +
          `(${event.seconds.toFixed(1)} s, ${Math.round(event.examplesPerSecond)} ex/s)`,
      );
    },
    error: () => interactive && bar.stop(),
    complete: () => interactive && bar.stop(),
  });
}
