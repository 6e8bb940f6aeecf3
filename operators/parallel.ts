import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, sizeOf, type DType, type Shape, type Tensor } from '../src/tensor.ts';
import { childContext } from '../src/layer.ts';
import { Chain } from './chain.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** How {@link parallel} merges its branches. */
export type Merge = 'concat' | 'add';

/**
 * Branches that each see the same input, merged by concatenation along the last axis or by sum.
 * Shape rule: 'add' needs equal branch shapes; 'concat' needs equal shapes but for the last axis.
 * Backward: the merge's gradient is split per branch (a column slice for concat, dy itself for add),
 * each branch's backward runs on its part, and the branches' input gradients are summed — the
 * reverse stream fans out where the forward fanned in, and fans in where it fanned out.
 */
class Parallel implements Layer {
  readonly kind = 'parallel';
  private readonly branches: Chain[];
  private widths: number[] = [];
  constructor(branches: readonly (readonly Layer[])[], private readonly merge: Merge, public name: string) {
    if (branches.length < 2) throw new RangeError(`parallel: needs at least two branches, got ${branches.length}`);
    if (merge !== 'concat' && merge !== 'add') throw new RangeError(`parallel: merge must be 'concat' or 'add', got '${String(merge)}'`);
    this.branches = branches.map((b, i) => new Chain(b, `branch_${i + 1}`));
  }

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

  build(inputShape: Shape, ctx: BuildContext): Shape {
    const shapes = this.branches.map((b) => b.build(inputShape, childContext(b, ctx)));
    const [first, ...rest] = shapes as [Shape, ...Shape[]];
    const operator = `${this.name} (parallel)`;
    if (this.merge === 'add') {
      for (const s of rest) if (formatShape(s) !== formatShape(first)) throw new ShapeError(operator, `'add' needs equal branch shapes, got ${shapes.map(formatShape).join(' and ')}`);
      this.widths = shapes.map(sizeOf);
      return first;
    }
    if (first.length === 0) throw new ShapeError(operator, `'concat' needs an axis to concatenate, branch shape is ${formatShape(first)}`);
    for (const s of rest) {
      if (s.length !== first.length || s.slice(0, -1).some((d, i) => d !== first[i])) {
        throw new ShapeError(operator, `'concat' needs branch shapes equal but for the last axis, got ${shapes.map(formatShape).join(' and ')}`);
      }
    }
    this.widths = shapes.map((s) => s[s.length - 1]!);
    return [...first.slice(0, -1), this.widths.reduce((a, b) => a + b, 0)];
  }

  parameters(): Parameter[] {
    return this.branches.flatMap((b) => b.parameters());
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const outputs: Tensor[] = [];
    for (const b of this.branches) outputs.push(await b.forward(x, step));
    const k = step.engine.kernels;
    if (this.merge === 'add') {
      const y = step.alloc(outputs[0]!.shape);
      k.copy(outputs[0]!.ptr, y.ptr, y.size);
      for (const o of outputs.slice(1)) k.axpy(y.size, 1, o.ptr, y.ptr);
      return y;
    }
    const total = this.widths.reduce((a, b) => a + b, 0);
    const rows = outputs[0]!.size / this.widths[0]!;
    const y = step.alloc([...outputs[0]!.shape.slice(0, -1), total]);
    let offset = 0;
    outputs.forEach((o, i) => {
      const w = this.widths[i]!;
      for (let r = 0; r < rows; r++) k.copy(o.ptr + r * w * 4, y.ptr + (r * total + offset) * 4, w);
      offset += w;
    });
    return y;
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const k = step.engine.kernels;
    const total = this.widths.reduce((a, b) => a + b, 0);
    const rows = this.merge === 'concat' ? dy.size / total : 0;
    let dx: Tensor | null = null;
    let offset = 0;
    for (let i = 0; i < this.branches.length; i++) {
      let part = dy;
      if (this.merge === 'concat') {
        const w = this.widths[i]!;
        part = step.alloc([...dy.shape.slice(0, -1), w]);
        for (let r = 0; r < rows; r++) k.copy(dy.ptr + (r * total + offset) * 4, part.ptr + r * w * 4, w);
        offset += w;
      }
      const g = await this.branches[i]!.backward(part, step, needInputGradient);
      if (!needInputGradient) continue;
      if (!dx) {
        dx = step.alloc(g!.shape);
        k.copy(g!.ptr, dx.ptr, g!.size);
      } else k.axpy(dx.size, 1, g!.ptr, dx.ptr);
    }
    return dx;
  }

  config(): Record<string, unknown> {
    return { merge: this.merge, branches: this.branches.map((b) => b.config()['layers']) };
  }
}

/**
 * Parallel branches over the same input, merged by 'concat' (last axis) or 'add'.
 *
 * Usage: `parallel([[dense(32), relu()], [dense(16), tanh()]], 'concat')`
 */
export function parallel(branches: readonly (readonly Layer[])[], merge: Merge = 'concat', options: { name?: string } = {}): Layer {
  return new Parallel(branches, merge, options.name ?? '');
}

registerLayer('parallel', (c, name) => {
  const merge = c.choice('merge', ['concat', 'add'] as const);
  const branches = c.raw('branches');
  if (!Array.isArray(branches) || branches.length < 2) c.fail('branches', `must be an array of at least two layer lists, got ${JSON.stringify(branches)}`);
  const layers = (branches as unknown[]).map((b, i) => c.layers(`branches[${i}]`, b));
  c.done();
  return constructLayer(c, 'branches', () => parallel(layers, merge, { name }));
});
