import type { Batch } from './batch.ts';
import type { Loss } from './losses.ts';
import { regularize, type TrainingHost } from './training.ts';

/** Options of {@link Model.computeGradients}. */
export interface ComputeGradientsOptions {
  /** Default: the loss of the latest fit, else softmax cross-entropy for labels / MSE for targets. */
  loss?: Loss;
  /** Run the forward as in training (dropout, batch statistics; draws from the model's generator). Default false. */
  training?: boolean;
}

/** What {@link Model.computeGradients} resolves. */
export interface ComputedGradients {
  /** Mean loss of the batch, regularisation penalties included (what a training step would optimise). */
  loss: number;
  accuracy?: number;
  rows: number;
  /** Each parameter's gradient (a copy), by name. */
  gradients: Map<string, Float32Array>;
}

/**
 * Each parameter's gradient for one batch and the loss, copied out; the weights, the optimizer
 * and the step count are untouched (the forward runs in inference mode unless asked otherwise).
 */
export function computeGradients(host: TrainingHost, batch: Batch, loss: Loss, training: boolean): Promise<ComputedGradients> {
  const runner = host.runner;
  return runner
    .exclusive(async () => {
      const { step, x } = runner.begin(batch, training, host.steps);
      try {
        const y = await runner.forward(x, step);
        const result = loss.compute(y, step, true);
        step.loss = result.loss;
        await runner.backward(result.grad!, step);
        regularize(host.parameters, step);
        return {
          loss: step.loss,
          ...(result.accuracy !== null ? { accuracy: result.accuracy } : {}),
          rows: step.rows,
          gradients: new Map(host.parameters.map((p) => [p.name, p.grad.toFloat32Array()])),
        };
      } finally {
        runner.end(step);
      }
    })
    .then((r) => r!);
}
