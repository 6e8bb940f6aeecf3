import { concatMap, from, of, type ObservableInput, type OperatorFunction } from 'rxjs';
import type { Layer, StepContext } from './layer.ts';
import type { Loss } from './losses.ts';
import type { Tensor } from './tensor.ts';

/**
 * The stream protocol. Forward, a batch travels as a {@link ForwardFlow} through each layer's
 * forward operator; the loss turns it into a {@link ReverseFlow} carrying dLoss/dOutput, which
 * travels through each layer's backward operator in reverse order; the parameter gradients then
 * join the long-lived reverse stream (src/reverse-stream.ts). Every item carries its
 * {@link StepContext}, so a layer's backward for batch k finds what its forward saved for batch k.
 * These per-layer operators let users compose layers as Rx operators; models and combinators
 * sequence layers with the step runner (src/step-runner.ts), which runs the same forward/backward.
 */
export interface ForwardFlow {
  readonly step: StepContext;
  readonly x: Tensor;
}

/** dLoss/d(activation) flowing back; `grad` is null past the first layer. */
export interface ReverseFlow {
  readonly step: StepContext;
  readonly grad: Tensor | null;
}

const isPromise = <T>(v: T | Promise<T>): v is Promise<T> => typeof (v as { then?: unknown })?.then === 'function';

/**
 * Ordered map whose function may answer synchronously or with a Promise (a kernel split across
 * the worker pool). Synchronous answers are emitted synchronously.
 *
 * Usage: `source.pipe(mapInOrder((x) => compute(x)))`
 */
export function mapInOrder<T, R>(fn: (value: T) => R | Promise<R>): OperatorFunction<T, R> {
  return concatMap((value): ObservableInput<R> => {
    const result = fn(value);
    return isPromise(result) ? from(result) : of(result);
  });
}

/**
 * A layer's forward as an RxJS operator.
 *
 * Usage: `of(flow).pipe(forwardOperator(layer))`
 */
export function forwardOperator(layer: Layer): OperatorFunction<ForwardFlow, ForwardFlow> {
  return mapInOrder((flow: ForwardFlow) => {
    const y = layer.forward(flow.x, flow.step);
    return isPromise(y) ? y.then((x) => ({ step: flow.step, x })) : { step: flow.step, x: y };
  });
}

/**
 * A layer's backward as an RxJS operator on the reverse stream.
 *
 * Usage: `reverse$.pipe(backwardOperator(layer, true))`
 */
export function backwardOperator(layer: Layer, needInputGradient: boolean): OperatorFunction<ReverseFlow, ReverseFlow> {
  return mapInOrder((flow: ReverseFlow) => {
    if (!flow.grad) throw new Error(`${layer.name}: no gradient arrived on the reverse stream`);
    const dx = layer.backward(flow.grad, flow.step, needInputGradient);
    return isPromise(dx) ? dx.then((grad) => ({ step: flow.step, grad })) : { step: flow.step, grad: dx };
  });
}

/**
 * The turning point: computes the loss of the forward output and emits dLoss/dOutput as the head
 * of the reverse stream (the loss and accuracy are recorded on the step).
 *
 * Usage: `forward$.pipe(lossOperator(softmaxCrossEntropy()))`
 */
export function lossOperator(loss: Loss, withGradient = true): OperatorFunction<ForwardFlow, ReverseFlow> {
  return mapInOrder((flow: ForwardFlow) => {
    const result = loss.compute(flow.x, flow.step, withGradient);
    flow.step.loss = result.loss;
    flow.step.accuracy = result.accuracy;
    flow.step.lossCount = result.count;
    return { step: flow.step, grad: result.grad };
  });
}
