import type { StepContext } from './layer.ts';
import { formatShape, type Tensor } from './tensor.ts';

/** What a loss computes for one batch. */
export interface LossResult {
  /** Mean loss over the `count` terms it averages. */
  loss: number;
  /** dLoss/dOutput (in the batch's arena), or null when not asked for. */
  grad: Tensor | null;
  /** Fraction of the `count` predictions that are right, for losses that define accuracy. */
  accuracy: number | null;
  /**
   * How many terms `loss` and `accuracy` average over: rows, or positions for per-position labels (without
   * ignored ones), or output elements. Means over several batches weight each batch by it.
   */
  count: number;
}

/**
 * A loss: turns the model output and the batch's labels or targets into a mean loss and
 * dLoss/dOutput, the head of the reverse stream.
 */
export interface Loss {
  readonly name: string;
  /** 'labels' (Int32 class indices) or 'targets' (Float32, same shape as the output). */
  readonly needs: 'labels' | 'targets' | 'labelsOrTargets';
  compute(output: Tensor, step: StepContext, withGradient: boolean): LossResult;
}

function requireLabels(loss: string, step: StepContext): Tensor {
  if (!step.labels) throw new TypeError(`${loss}: the batch has no Int32 'labels' column`);
  return step.labels;
}

function requireTargets(loss: string, output: Tensor, step: StepContext): Tensor {
  if (!step.targets) throw new TypeError(`${loss}: the batch has no Float32 'targets' column`);
  if (step.targets.size !== output.size) {
    throw new RangeError(`${loss}: targets shape ${formatShape(step.targets.shape)} does not match output shape ${formatShape(output.shape)}`);
  }
  return step.targets;
}

/** Options of {@link softmaxCrossEntropy}. */
export interface SoftmaxCrossEntropyOptions {
  /** Rows whose label equals this (e.g. padding positions of a sequence) add no loss and no gradient; the mean is over the other rows. */
  ignoreIndex?: number;
}

/**
 * Softmax cross-entropy over the last axis with integer class labels, fused and numerically
 * stable (log-sum-exp): expects logits, not probabilities. Mean over rows; with per-position labels
 * (`[B, T]` labels for `[B, T, V]` logits) every position is a row. Accuracy: argmax.
 *
 * Usage: `model.fit({ loss: softmaxCrossEntropy(), optimizer: adam() })`
 */
export function softmaxCrossEntropy(options: SoftmaxCrossEntropyOptions = {}): Loss {
  const name = 'softmaxCrossEntropy';
  const ignore = options.ignoreIndex;
  return {
    name,
    needs: 'labels',
    compute(output, step, withGradient) {
      const labels = requireLabels(name, step);
      const classes = output.shape[output.shape.length - 1]!;
      const rows = output.size / classes;
      if (rows !== labels.size) {
        throw new RangeError(`${name}: output shape ${formatShape(output.shape)} has ${rows} rows of ${classes} classes but labels have shape ${formatShape(labels.shape)} (${labels.size} labels)`);
      }
      const labelValues = labels.int32();
      let ignored = 0;
      for (let r = 0; r < rows; r++) {
        const label = labelValues[r]!;
        if (label === ignore) {
          ignored++;
          continue;
        }
        if (!(label >= 0 && label < classes)) {
          throw new RangeError(`${name}: label ${label} at row ${r} is out of range for ${classes} classes (output shape ${formatShape(output.shape)})`);
        }
      }
      const counted = rows - ignored;
      const lossPerRow = step.alloc([rows]);
      const grad = withGradient ? step.alloc(output.shape) : null;
      // The kernel needs a valid class everywhere: ignored rows borrow class 0, then are zeroed.
      let kernelLabels = labels;
      if (ignored > 0) {
        kernelLabels = step.alloc(labels.shape, 'int32');
        const patched = kernelLabels.int32();
        for (let r = 0; r < rows; r++) patched[r] = labelValues[r] === ignore ? 0 : labelValues[r]!;
      }
      step.engine.kernels.softmaxCrossEntropy(output.ptr, kernelLabels.ptr, rows, classes, lossPerRow.ptr, grad ? grad.ptr : 0, counted > 0 ? 1 / counted : 0);
      const perRow = lossPerRow.data();
      const values = labels.int32();
      const heap = step.engine.heap.f32;
      let sum = 0;
      let correct = 0;
      for (let r = 0; r < rows; r++) {
        if (values[r] === ignore) {
          if (grad) heap.fill(0, (grad.ptr >> 2) + r * classes, (grad.ptr >> 2) + (r + 1) * classes);
          continue;
        }
        sum += perRow[r]!;
        const base = (output.ptr >> 2) + r * classes;
        let best = 0;
        for (let c = 1; c < classes; c++) if (heap[base + c]! > heap[base + best]!) best = c;
        if (best === values[r]) correct++;
      }
      return { loss: counted > 0 ? sum / counted : 0, grad, accuracy: counted > 0 ? correct / counted : 0, count: counted };
    },
  };
}

/**
 * Mean squared error over every output element: mean((y − t)²), with Float32 `targets`.
 *
 * Usage: `model.fit({ loss: meanSquaredError(), optimizer: sgd({ learningRate: 0.01 }) })`
 */
export function meanSquaredError(): Loss {
  const name = 'meanSquaredError';
  return {
    name,
    needs: 'targets',
    compute(output, step, withGradient) {
      const targets = requireTargets(name, output, step);
      const y = output.data();
      const t = targets.data();
      const grad = withGradient ? step.alloc(output.shape) : null;
      const g = grad?.data();
      const scale = 2 / output.size;
      let sum = 0;
      for (let i = 0; i < y.length; i++) {
        const d = y[i]! - t[i]!;
        sum += d * d;
        if (g) g[i] = scale * d;
      }
      return { loss: sum / output.size, grad, accuracy: null, count: output.size };
    },
  };
}

/**
 * Binary cross-entropy on logits, stable form max(x,0) − x·t + log(1 + e^(−|x|)), mean over all
 * elements. Targets are Float32 probabilities of the output's shape, or Int32 labels 0/1 for a
 * one-unit output. Accuracy: sign of the logit against t ≥ 0.5.
 *
 * Usage: `sequential([dense(1)], …).fit({ loss: binaryCrossEntropyWithLogits(), optimizer: adam() })`
 */
export function binaryCrossEntropyWithLogits(): Loss {
  const name = 'binaryCrossEntropyWithLogits';
  return {
    name,
    needs: 'labelsOrTargets',
    compute(output, step, withGradient) {
      const x = output.data();
      let targetAt: (i: number) => number;
      if (step.targets) {
        const t = requireTargets(name, output, step).data();
        targetAt = (i) => t[i]!;
      } else {
        const labels = requireLabels(name, step).int32();
        if (labels.length !== output.size) {
          throw new RangeError(`${name}: ${labels.length} labels for output shape ${formatShape(output.shape)}; Int32 labels need a one-unit output`);
        }
        for (let r = 0; r < labels.length; r++) {
          if (labels[r] !== 0 && labels[r] !== 1) throw new RangeError(`${name}: label ${labels[r]} at row ${r} is not 0 or 1`);
        }
        targetAt = (i) => labels[i]!;
      }
      const grad = withGradient ? step.alloc(output.shape) : null;
      const g = grad?.data();
      let sum = 0;
      let correct = 0;
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        const t = targetAt(i);
        sum += Math.max(v, 0) - v * t + Math.log1p(Math.exp(-Math.abs(v)));
        if (g) g[i] = (1 / (1 + Math.exp(-v)) - t) / x.length;
        if (v > 0 === t >= 0.5) correct++;
      }
      // Per element: for a one-unit output that is per row; for multi-label outputs, per label.
      return { loss: sum / x.length, grad, accuracy: correct / x.length, count: x.length };
    },
  };
}
