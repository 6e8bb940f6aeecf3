import { childContext, ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type DType, type Shape, type Tensor } from '../src/tensor.ts';
import { Chain } from './chain.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/**
 * Two branches over the same input, merged by the dot product along their last axis:
 * y[..., 0] = Σ_k a[..., k] · b[..., k]. Shape rule: equal branch shapes `[..., K]` → `[..., 1]`.
 * Backward: da = dy · b and db = dy · a go down each branch's own backward (the reverse stream fans
 * out where the forward fanned in), and the branches' input gradients are summed.
 */
class Dot implements Layer {
  readonly kind = 'dot';
  private readonly branches: [Chain, Chain];
  private width = 0;

  constructor(left: readonly Layer[], right: readonly Layer[], public name: string) {
    this.branches = [new Chain(left, 'left'), new Chain(right, 'right')];
  }

  get inputDType(): DType | undefined {
    return this.branches[0].inputDType;
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
    const [a, b] = this.branches.map((branch) => branch.build(inputShape, childContext(branch, ctx))) as [Shape, Shape];
    if (a.length === 0 || formatShape(a) !== formatShape(b)) {
      throw new ShapeError(`${this.name} (dot)`, `needs two equal branch shapes with a last axis, got ${formatShape(a)} and ${formatShape(b)}`);
    }
    this.width = a[a.length - 1]!;
    return [...a.slice(0, -1), 1];
  }

  parameters(): Parameter[] {
    return this.branches.flatMap((b) => b.parameters());
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const a = await this.branches[0].forward(x, step);
    const b = await this.branches[1].forward(x, step);
    const rows = a.size / this.width;
    const y = step.alloc([...a.shape.slice(0, -1), 1]);
    const h = step.engine.heap.f32;
    const pa = a.ptr >> 2;
    const pb = b.ptr >> 2;
    const w = this.width;
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let k = 0; k < w; k++) sum += h[pa + r * w + k]! * h[pb + r * w + k]!;
      h[(y.ptr >> 2) + r] = sum;
    }
    step.save(this, a, b);
    return y;
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const [a, b] = step.restore(this) as [Tensor, Tensor];
    const rows = a.size / this.width;
    const w = this.width;
    const h = step.engine.heap.f32;
    const da = step.alloc(a.shape);
    const db = step.alloc(b.shape);
    const g = dy.ptr >> 2;
    for (let r = 0; r < rows; r++) {
      const d = h[g + r]!;
      for (let k = 0; k < w; k++) {
        const i = r * w + k;
        h[(da.ptr >> 2) + i] = d * h[(b.ptr >> 2) + i]!;
        h[(db.ptr >> 2) + i] = d * h[(a.ptr >> 2) + i]!;
      }
    }
    const ga = await this.branches[0].backward(da, step, needInputGradient);
    const gb = await this.branches[1].backward(db, step, needInputGradient);
    if (!needInputGradient) return null;
    step.engine.kernels.axpy(ga!.size, 1, gb!.ptr, ga!.ptr);
    return ga;
  }

  config(): Record<string, unknown> {
    return { left: this.branches[0].config()['layers'], right: this.branches[1].config()['layers'] };
  }
}

/**
 * The dot product of two branches over the same input along their last axis (`[..., K]` → `[..., 1]`):
 * the interaction term ⟨p_u, q_i⟩ of matrix factorisation.
 *
 * Usage: `dot([input('user'), embedding(943, 16)], [input('item'), embedding(1682, 16)])`
 */
export function dot(left: readonly Layer[], right: readonly Layer[], options: { name?: string } = {}): Layer {
  return new Dot(left, right, options.name ?? '');
}

registerLayer('dot', (c, name) => {
  const left = c.layers('left');
  const right = c.layers('right');
  c.done();
  return constructLayer(c, 'left', () => dot(left, right, { name }));
});
