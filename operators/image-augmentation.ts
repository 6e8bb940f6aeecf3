import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type Shape, type Tensor } from '../src/tensor.ts';

/**
 * What every augmentation operator shares (randomFlip, randomRotate, randomTranslate, randomCrop): the
 * shape rule (identity on [H, W, C]), training only (inference and disabled layers are the identity),
 * features only (labels are never touched), per-example parameters drawn from `step.rng` in example order
 * and saved for backward, and a backward that is the exact adjoint of the transform — so the layer may
 * sit anywhere in a model. A subclass says how to draw and how to transform; nothing else.
 */
export abstract class ImageAugmentation implements Layer {
  abstract readonly kind: string;
  get trainingDiffers(): boolean {
    return this.active;
  }
  protected H = 0;
  protected W = 0;
  protected C = 0;
  constructor(public name: string) {}

  /** False makes the layer the identity (e.g. a flip with both axes off). */
  protected get active(): boolean {
    return true;
  }

  /** Draws this batch's per-example parameters into the step's arena. */
  protected abstract draw(step: StepContext, batch: number): Tensor;

  /**
   * dst = T(src) for each example with its parameters (element indices into the heap views); with
   * `adjoint`, dst = Tᵀ(src) instead, the gradient of the transform.
   */
  protected abstract transform(heap: { f32: Float32Array; i32: Int32Array }, src: number, dst: number, params: Tensor, batch: number, adjoint: boolean): void;

  abstract config(): Record<string, unknown>;

  build(inputShape: Shape, _ctx: BuildContext): Shape {
    if (inputShape.length !== 3) throw new ShapeError(`${this.name} (${this.kind})`, `input shape ${formatShape(inputShape)} must be [height, width, channels]`);
    [this.H, this.W, this.C] = inputShape as [number, number, number];
    return inputShape;
  }

  parameters(): Parameter[] {
    return [];
  }

  forward(x: Tensor, step: StepContext): Tensor {
    if (!step.training || !this.active) return x;
    const batch = x.shape[0]!;
    const params = this.draw(step, batch);
    const y = step.alloc(x.shape);
    this.transform(step.engine.heap, x.ptr >> 2, y.ptr >> 2, params, batch, false);
    step.save(this, params);
    return y;
  }

  backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null {
    if (!needInputGradient) return null;
    if (!step.training || !this.active) return dy;
    const [params] = step.restore(this) as [Tensor];
    const dx = step.alloc(dy.shape);
    this.transform(step.engine.heap, dy.ptr >> 2, dx.ptr >> 2, params, dy.shape[0]!, true);
    return dx;
  }
}
