import { buildChildren, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import type { DType, Shape, Tensor } from '../src/tensor.ts';
import { registerLayer } from '../src/registry.ts';
import { backwardThrough, forwardThrough } from '../src/step-runner.ts';

/**
 * Layers applied in order, as one layer: the building block of the combinators (residual blocks,
 * branches). Its children run through the model's own step runner (src/step-runner.ts): forward in
 * order, backward in reverse feeding each the gradient of the next — the same reverse stream one
 * level down, not a second autograd or a second sequencing loop. Children are named inside the chain (`block_1/dense_1/kernel`).
 */
export class Chain implements Layer {
  readonly kind: string = 'chain';
  get trainingDiffers(): boolean {
    return this.children.some((c) => c.trainingDiffers === true);
  }
  constructor(readonly children: readonly Layer[], public name: string) {
    if (children.length === 0) throw new RangeError('chain: needs at least one layer');
  }

  get inputDType(): DType | undefined {
    return this.children[0]!.inputDType;
  }

  get readsFeatures(): boolean {
    return this.children[0]!.readsFeatures !== false;
  }

  get sideInputs(): readonly string[] {
    return [...new Set(this.children.flatMap((c) => c.sideInputs ?? []))];
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    return buildChildren(this.children, inputShape, ctx).at(-1)!;
  }

  parameters(): Parameter[] {
    return this.children.flatMap((c) => c.parameters());
  }

  forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor> {
    return forwardThrough(this.children, x, step);
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null | Promise<Tensor | null> {
    return backwardThrough(this.children, dy, step, needInputGradient);
  }

  config(): Record<string, unknown> {
    return { layers: this.children.map((c) => ({ kind: c.kind, name: c.name, config: c.config() })) };
  }
}

/**
 * Several layers as one.
 *
 * Usage: `residual([dense(64), relu(), dense(64)])` is built on `chain`; `chain([dense(8), relu()])` can stand anywhere a layer can.
 */
export function chain(layers: readonly Layer[], options: { name?: string } = {}): Layer {
  return new Chain(layers, options.name ?? '');
}

registerLayer('chain', (c, name) => {
  const layers = c.layers('layers');
  c.done();
  return chain(layers, { name });
});

