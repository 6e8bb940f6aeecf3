import { buildChildren, childContext, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
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
 * Base of the combinators whose branches each see the same input (parallel, dot): what the branches
 * decide (input dtype, training behaviour, side inputs, parameters), building them, running them forward
 * in order, and backward with their input gradients summed (the reverse stream fans in where the forward
 * fanned out). Subclasses add the merge and its gradient.
 *
 * Usage: `class Dot extends Branches<[Chain, Chain]> implements Layer { ... }`
 */
export abstract class Branches<B extends readonly Chain[] = readonly Chain[]> {
  constructor(protected readonly branches: B) {}

  get inputDType(): DType | undefined {
    return this.branches[0]!.inputDType;
  }

  get trainingDiffers(): boolean {
    return this.branches.some((b) => b.trainingDiffers);
  }

  get readsFeatures(): boolean {
    return this.branches.some((b) => b.readsFeatures);
  }

  get sideInputs(): readonly string[] {
    return [...new Set(this.branches.flatMap((b) => b.sideInputs))];
  }

  parameters(): Parameter[] {
    return this.branches.flatMap((b) => b.parameters());
  }

  /** Builds every branch on the same input shape; their output shapes, in branch order. */
  protected buildBranches(inputShape: Shape, ctx: BuildContext): Shape[] {
    return this.branches.map((b) => b.build(inputShape, childContext(b, ctx)));
  }

  /** Every branch's output for the same input, in branch order. */
  protected async forwardBranches(x: Tensor, step: StepContext): Promise<Tensor[]> {
    const outputs: Tensor[] = [];
    for (const b of this.branches) outputs.push(await b.forward(x, step));
    return outputs;
  }

  /**
   * Runs branch i's backward on gradientOf(i), in branch order (gradientOf is called just before, so a
   * slice can be made per branch), and returns the sum of the branches' input gradients in a fresh tensor
   * (null when not needed).
   */
  protected async backwardBranches(step: StepContext, needInputGradient: boolean, gradientOf: (branch: number) => Tensor): Promise<Tensor | null> {
    const k = step.engine.kernels;
    let dx: Tensor | null = null;
    for (let i = 0; i < this.branches.length; i++) {
      const g = await this.branches[i]!.backward(gradientOf(i), step, needInputGradient);
      if (!needInputGradient) continue;
      if (!dx) {
        dx = step.alloc(g!.shape);
        k.copy(g!.ptr, dx.ptr, g!.size);
      } else k.axpy(dx.size, 1, g!.ptr, dx.ptr);
    }
    return dx;
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

