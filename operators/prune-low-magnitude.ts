import { constant } from '../src/initializers.ts';
import type { BuildContext, Layer, Parameter, StepContext } from '../src/layer.ts';
import { PruningConfigError, pruningScheduleFromConfig, type PruningSchedule } from '../src/pruning/schedules.ts';
import { registerLayer } from '../src/registry.ts';
import type { DType, Shape, Tensor } from '../src/tensor.ts';

/** How a pruned layer's threshold is chosen: from its own weights, or one for all 'global' layers of the model. */
export type PruningScope = 'layer' | 'global';

/**
 * Magnitude pruning around a layer with a kernel (dense, conv2d), as TF Model Optimization's
 * `prune_low_magnitude` wrapper: the layer itself computes as before; its kernel has a 0/1 mask, a
 * non-trainable parameter (`<name>/kernel_mask`, so checkpoints carry it). The gradient operator
 * `updatePruning(model)` recomputes the masks on the schedule's steps, zeroes the pruned weights'
 * gradients and re-applies the masks right after every update, so pruned weights stay exactly zero.
 * It computes the wrapped layer's function of (kernel ⊙ mask): forward is the layer's own (the kernel is kept
 * masked), backward the layer's with the kernel's gradient masked.
 */
export class PruneLowMagnitude implements Layer {
  readonly kind = 'pruneLowMagnitude';
  kernel!: Parameter;
  mask!: Parameter;
  /** Set by `updatePruning` when it takes charge of this layer: training without it is an error. */
  updater: object | null = null;

  constructor(readonly layer: Layer, readonly schedule: PruningSchedule, readonly scope: PruningScope) {}

  get name(): string {
    return this.layer.name;
  }
  set name(value: string) {
    this.layer.name = value;
  }
  get trainingDiffers(): boolean {
    return this.layer.trainingDiffers === true;
  }
  get inputDType(): DType | undefined {
    return this.layer.inputDType;
  }
  get sideInputs(): readonly string[] {
    return this.layer.sideInputs ?? [];
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    // The wrapped layer's parameters are created first with the same context, so a pruned model starts from
    // the same initial weights (and parameter names) as the plain one with the same seed.
    const output = this.layer.build(inputShape, ctx);
    const kernel = this.layer.parameters().find((p) => p.name.split('/').at(-1) === 'kernel');
    if (!kernel) throw new PruningConfigError(`pruneLowMagnitude(${this.name} (${this.layer.kind}))`, 'the layer has no kernel to prune (dense and conv2d have one)');
    this.kernel = kernel;
    this.mask = ctx.addParameter('kernel_mask', kernel.shape, constant(1), { fanIn: 1, fanOut: 1 });
    this.mask.trainable = false;
    return output;
  }

  parameters(): Parameter[] {
    return [...this.layer.parameters(), this.mask];
  }

  /** kernel ← kernel ⊙ mask. */
  applyMask(): void {
    const w = this.kernel.value.data();
    const m = this.mask.value.data();
    for (let i = 0; i < w.length; i++) w[i]! *= m[i]!;
  }

  forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor> {
    if (step.training && !this.updater) {
      throw new Error(`${this.name} (pruneLowMagnitude): a pruned model trains with gradientOperators: [updatePruning(model)] (it updates and applies the masks)`);
    }
    return this.layer.forward(x, step);
  }

  /** The wrapped layer's backward, then dKernel ⊙ mask: a pruned weight gets no gradient (the mask itself none either). */
  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const dx = await this.layer.backward(dy, step, needInputGradient);
    const grad = this.kernel.grad.data();
    const mask = this.mask.value.data();
    for (let i = 0; i < grad.length; i++) grad[i]! *= mask[i]!;
    step.engine.kernels.fill(this.mask.grad.ptr, this.mask.grad.size, 0);
    return dx;
  }

  config(): Record<string, unknown> {
    return { layer: { kind: this.layer.kind, name: this.layer.name, config: this.layer.config() }, schedule: this.schedule.config(), scope: this.scope };
  }
}

/**
 * Wraps one layer for magnitude pruning with `schedule` (see {@link PruneLowMagnitude}); for a whole model
 * and global pruning use `pruneLowMagnitude(model, …)` from src/pruning.
 *
 * Usage: `sequential([pruneLayer(dense(128), constantSparsity({ targetSparsity: 0.8 })), relu(), dense(10)], { inputShape: [784] })`
 */
export function pruneLayer(layer: Layer, schedule: PruningSchedule, scope: PruningScope = 'layer'): PruneLowMagnitude {
  if (scope !== 'layer' && scope !== 'global') throw new PruningConfigError('pruneLowMagnitude.scope', `must be 'layer' or 'global', got ${JSON.stringify(scope)}`);
  return new PruneLowMagnitude(layer, schedule, scope);
}

registerLayer('pruneLowMagnitude', (c, name) => {
  const [layer] = c.layers('layer', [c.raw('layer')]) as [Layer];
  const schedule = c.raw('schedule');
  const scope = c.string('scope', 'layer');
  c.done();
  if (typeof schedule !== 'object' || schedule === null) return c.fail('schedule', `must be a schedule's config, got ${JSON.stringify(schedule)}`);
  layer.name = name;
  return pruneLayer(layer, pruningScheduleFromConfig(schedule as Record<string, unknown>), scope as PruningScope);
});
