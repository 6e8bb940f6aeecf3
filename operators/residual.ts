import { ShapeError, type BuildContext, type Layer, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';
import { Chain } from './chain.ts';
import { registerLayer } from '../src/registry.ts';

/**
 * A residual connection around a block: y = x + block(x).
 * Shape rule: the block must keep the shape. Backward: the reverse stream splits at the sum —
 * dy flows into the block's backward and straight past it, and the two input gradients add:
 * dx = dy + block.backward(dy).
 */
class Residual extends Chain {
  override readonly kind = 'residual';

  override build(inputShape: Shape, ctx: BuildContext): Shape {
    const out = super.build(inputShape, ctx);
    if (out.length !== inputShape.length || out.some((d, i) => d !== inputShape[i])) {
      throw new ShapeError(`${this.name} (residual)`, `the block maps ${formatShape(inputShape)} to ${formatShape(out)}; a residual block must keep the shape`);
    }
    return out;
  }

  override async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const blockOut = await super.forward(x, step);
    const y = step.alloc(x.shape);
    const k = step.engine.kernels;
    k.copy(x.ptr, y.ptr, x.size);
    k.axpy(x.size, 1, blockOut.ptr, y.ptr);
    return y;
  }

  override async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const dBlock = await super.backward(dy, step, needInputGradient);
    if (!needInputGradient) return null;
    const dx = step.alloc(dy.shape);
    const k = step.engine.kernels;
    k.copy(dy.ptr, dx.ptr, dy.size);
    k.axpy(dy.size, 1, dBlock!.ptr, dx.ptr);
    return dx;
  }
}

/**
 * y = x + block(x), the block given as layers.
 *
 * Usage: `sequential([dense(64), residual([layerNorm(), dense(64), relu()]), dense(10)], { inputShape: [32] })`
 */
export function residual(block: readonly Layer[], options: { name?: string } = {}): Layer {
  return new Residual(block, options.name ?? '');
}

registerLayer('residual', (c, name) => {
  const layers = c.layers('layers');
  c.done();
  return residual(layers, { name });
});
