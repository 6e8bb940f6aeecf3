import { glorotUniform, orthogonal, zeros, type Initializer } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import type { Regularizer } from '../src/regularizers.ts';
import { formatShape, Tensor, type Shape } from '../src/tensor.ts';
import { constructLayer, registerLayer, type ConfigReader } from '../src/registry.ts';

/**
 * Shared machinery of the recurrent layers (simpleRnn here, lstm and gru in their own files) and
 * the simple RNN itself.
 *
 * Layout decisions, common to all three:
 * - Inputs are `[B, T, F]` (batch first). Internally everything is **time-major**: x is transposed
 *   once to `[T, B, F]`, so one GEMM projects every step (`[T·B, F]·[F, G·U]`), each step's slice of
 *   the projection, of the states and of their gradients is one contiguous `[B, ·]` block (the
 *   per-step recurrent GEMM needs no strides), and the truncation window is a contiguous row range.
 * - States are kept for every step in `H = [T + 1, B, U]` (`H[0]` the initial state), so the weight
 *   gradients after the backward loop are **one GEMM each over all window steps** (k = steps·B):
 *   dW = Xᵀ·dZ, dU = H[0..T−1]ᵀ·dZ, dX = dZ·Wᵀ. That equals accumulating a beta = 1 GEMM per step
 *   (the textbook BPTT loop) and is fewer, larger kernel calls; only dh_{t−1} = dZ_t·Uᵀ is per step.
 * - Truncated BPTT (`truncate: k`): the backward runs over the last k steps only; the state entering
 *   that window and every output before it are treated as constants (as if the prefix had been a
 *   previous, detached chunk). Earlier positions get dx = 0, and the initial state gets no gradient
 *   when k < T.
 * - Elementwise work per step runs in JS loops over the heap (no allocation: every buffer is taken
 *   from the arena before the loop), with the transcendental functions in the SIMD kernels.
 */

/** Where a recurrent layer's initial state comes from. */
export type InitialStateMode = 'zeros' | 'learned' | 'column';

/** Options shared by {@link simpleRnn}, `lstm` and `gru`. */
export interface RecurrentOptions {
  /** Size of the hidden state. */
  units: number;
  /** true: output every step's state `[T, units]`; false (default): the last state `[units]`. */
  returnSequences?: boolean;
  /**
   * 'zeros' (default); 'learned': a trainable parameter `initialState` (`[units]`, for LSTM `[2, units]`
   * = h then c), shared by every sequence; 'column': per sequence from the batch column
   * {@link RecurrentOptions.initialStateColumn} of the same shape (its gradient: `initialStateGradient(step)`).
   */
  initialState?: InitialStateMode;
  /** Batch column of the initial state when `initialState` is 'column'. Default 'initialState'. */
  initialStateColumn?: string;
  /** Backpropagate through the last `truncate` steps only (default: the whole sequence). */
  truncate?: number;
  /** Input kernel `[F, G·units]`; default Glorot uniform (Keras). */
  kernelInitializer?: Initializer;
  /** Recurrent kernel `[units, G·units]`; default {@link orthogonal} (Keras). */
  recurrentInitializer?: Initializer;
  kernelRegularizer?: Regularizer;
  recurrentRegularizer?: Regularizer;
  biasRegularizer?: Regularizer;
  name?: string;
}

/** A recurrent layer: a {@link Layer} that can also report the gradient of a column initial state. */
export interface RecurrentLayer extends Layer {
  readonly units: number;
  /**
   * dLoss/d(initial state column) computed by the backward of `step`, shape `[B, units]` (LSTM:
   * `[B, 2, units]`), in the step's arena; null before that backward or unless `initialState` is 'column'.
   * Zero when truncation stopped the gradient before step 0.
   */
  initialStateGradient(step: StepContext): Tensor | null;
}


/** Copies `[A, Bd, W]` (float index `src`) to `[Bd, A, W]` at `dst`; the two must not overlap. */
export function swapLeadingAxes(f: Float32Array, src: number, dst: number, a: number, bd: number, w: number): void {
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < bd; j++) {
      const s = src + (i * bd + j) * w;
      const d = dst + (j * a + i) * w;
      for (let k = 0; k < w; k++) f[d + k] = f[s + k]!;
    }
  }
}

/** Per-step geometry of one batch through a recurrent layer. */
export interface Frame {
  batch: number;
  steps: number;
  features: number;
  units: number;
  /** Width of the gate block: gates·units. */
  width: number;
}

/** What a recurrent forward saves for its backward (byte pointers are in the tensors). */
export interface RecurrentSaved {
  frame: Frame;
  /** `[T, B, F]` time-major inputs. */
  xt: Tensor;
  /** `[T + 1, B, U]` hidden states, `H[0]` the initial one. */
  h: Tensor;
}

/**
 * The base of simpleRnn, lstm and gru: options, the shape rule, parameters, the time-major input
 * projection, initial states, outputs, and the whole-window weight-gradient GEMMs. Subclasses
 * supply the cell: the per-step forward and backward loops.
 */
export abstract class Recurrent implements RecurrentLayer {
  abstract readonly kind: string;
  name: string;
  readonly units: number;
  readonly returnSequences: boolean;
  readonly initialState: InitialStateMode;
  readonly initialStateColumn: string;
  readonly truncate: number | null;
  /** Gate blocks in the kernels: 1 (simple RNN), 4 (LSTM: i, f, c, o), 3 (GRU: z, r, h). */
  protected abstract readonly gates: number;
  /** States carried between steps: 1 (h) or 2 (LSTM: h, c). */
  protected readonly states: number = 1;
  protected kernel!: Parameter;
  protected recurrentKernel!: Parameter;
  protected bias!: Parameter;
  protected initial: Parameter | null = null;
  protected steps = 0;
  protected features = 0;
  private readonly stateGradients = new WeakMap<StepContext, Tensor>();

  constructor(protected readonly options: RecurrentOptions, kind: string) {
    const { units } = options;
    if (!Number.isInteger(units) || units < 1) throw new RangeError(`${kind}: units must be a positive integer, got ${units}`);
    this.units = units;
    this.returnSequences = options.returnSequences ?? false;
    this.initialState = options.initialState ?? 'zeros';
    if (!['zeros', 'learned', 'column'].includes(this.initialState)) {
      throw new RangeError(`${kind}: initialState must be 'zeros', 'learned' or 'column', got '${String(this.initialState)}'`);
    }
    this.initialStateColumn = options.initialStateColumn ?? 'initialState';
    const truncate = options.truncate;
    if (truncate !== undefined && (!Number.isInteger(truncate) || truncate < 1)) {
      throw new RangeError(`${kind}: truncate must be a positive integer (steps), got ${truncate}`);
    }
    this.truncate = truncate ?? null;
    this.name = options.name ?? '';
  }

  get sideInputs(): readonly string[] {
    return this.initialState === 'column' ? [this.initialStateColumn] : [];
  }

  /** Per-example shape of the initial state: `[U]`, or `[2, U]` for two states. */
  protected get stateShape(): Shape {
    return this.states === 1 ? [this.units] : [this.states, this.units];
  }

  /** Shape and initialiser of the bias; Keras: `[G·U]` zeros (LSTM: unit forget bias; GRU: `[2, 3U]`). */
  protected abstract biasSpec(): { shape: Shape; init: Initializer };

  protected get label(): string {
    return `${this.name} (${this.kind})`;
  }

  /** The shape rule: `[T, F]` → `[T, units]` (returnSequences) or `[units]`. */
  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.length !== 2) {
      throw new ShapeError(this.label, `input shape ${formatShape(inputShape)} must be [steps, features] (batch first: [B, T, F])`);
    }
    [this.steps, this.features] = inputShape as [number, number];
    const U = this.units;
    const width = this.gates * U;
    const o = this.options;
    this.kernel = ctx.addParameter('kernel', [this.features, width], o.kernelInitializer ?? glorotUniform(), { fanIn: this.features, fanOut: width }, o.kernelRegularizer);
    this.recurrentKernel = ctx.addParameter('recurrentKernel', [U, width], o.recurrentInitializer ?? orthogonal(), { fanIn: U, fanOut: width }, o.recurrentRegularizer);
    const bias = this.biasSpec();
    this.bias = ctx.addParameter('bias', bias.shape, bias.init, { fanIn: U, fanOut: width }, o.biasRegularizer);
    if (this.initialState === 'learned') this.initial = ctx.addParameter('initialState', this.stateShape, zeros(), { fanIn: U, fanOut: U });
    return this.returnSequences ? [this.steps, U] : [U];
  }

  parameters(): Parameter[] {
    return [this.kernel, this.recurrentKernel, this.bias, ...(this.initial ? [this.initial] : [])];
  }

  abstract forward(x: Tensor, step: StepContext): Tensor | Promise<Tensor>;
  abstract backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Tensor | null | Promise<Tensor | null>;

  initialStateGradient(step: StepContext): Tensor | null {
    return this.stateGradients.get(step) ?? null;
  }

  config(): Record<string, unknown> {
    const o = this.options;
    return {
      units: this.units,
      returnSequences: this.returnSequences,
      initialState: this.initialState,
      initialStateColumn: this.initialStateColumn,
      truncate: this.truncate,
      kernelInitializer: (o.kernelInitializer ?? glorotUniform()).name,
      recurrentInitializer: (o.recurrentInitializer ?? orthogonal()).name,
      kernelRegularizer: o.kernelRegularizer?.config() ?? null,
      recurrentRegularizer: o.recurrentRegularizer?.config() ?? null,
      biasRegularizer: o.biasRegularizer?.config() ?? null,
    };
  }

  // ---------------------------------------------------------------- forward helpers

  /** The batch geometry; checks x against the built shape. */
  protected frame(x: Tensor): Frame {
    const [batch, steps, features] = x.shape as [number, number, number];
    if (x.shape.length !== 3 || steps !== this.steps || features !== this.features) {
      throw new ShapeError(this.label, `input shape ${formatShape(x.shape.slice(1))} does not match the built [${this.steps}, ${this.features}]`);
    }
    if (x.dtype !== 'float32') throw new TypeError(`${this.label}: input is ${x.dtype}; a recurrent layer takes float32 (put an embedding first for token ids)`);
    return { batch, steps, features, units: this.units, width: this.gates * this.units };
  }

  /** x `[B, T, F]` as `[T, B, F]` (the same memory when B or T is 1). */
  protected timeMajor(step: StepContext, x: Tensor, fr: Frame): Tensor {
    if (fr.batch === 1 || fr.steps === 1) return x.reshape([fr.steps, fr.batch, fr.features]);
    const xt = step.alloc([fr.steps, fr.batch, fr.features]);
    swapLeadingAxes(step.engine.heap.f32, x.ptr >> 2, xt.ptr >> 2, fr.batch, fr.steps, fr.features);
    return xt;
  }

  /** z = X·W (+ bias row `biasPtr`, 0 for none) for every step at once: `[T·B, F]·[F, G·U]` → `[T, B, G·U]`. */
  protected async projectInputs(step: StepContext, xt: Tensor, z: Tensor, fr: Frame, biasPtr: number): Promise<void> {
    const rows = fr.steps * fr.batch;
    // Packed: with k = F small (28 for image rows) the direct path spends its time in tile epilogues.
    await step.engine.compute.gemm(0, 0, rows, fr.width, fr.features, 1, xt.ptr, fr.features, this.kernel.value.ptr, fr.width, 0, z.ptr, fr.width, 'packed');
    if (biasPtr) step.engine.kernels.addBias(z.ptr, biasPtr, rows, fr.width);
  }

  /**
   * Writes the initial state of each state slot s into `slots[s]` (`[B, U]` each): zeros, the learned
   * parameter broadcast over rows, or the batch column (`[B, U]` or `[B, S, U]`).
   */
  protected writeInitialState(step: StepContext, fr: Frame, slots: readonly number[]): void {
    const f = step.engine.heap.f32;
    const { batch: B, units: U } = fr;
    const S = this.states;
    if (this.initialState === 'zeros') {
      for (const p of slots) f.fill(0, p >> 2, (p >> 2) + B * U);
      return;
    }
    let src: number;
    let rowStride: number;
    if (this.initialState === 'learned') {
      src = this.initial!.value.ptr >> 2;
      rowStride = 0;
    } else {
      const column = step.columns.get(this.initialStateColumn);
      if (!column) throw new TypeError(`${this.label}: the batch has no '${this.initialStateColumn}' column (initialState: 'column')`);
      const expected = [B, ...this.stateShape];
      if (column.dtype !== 'float32' || column.size !== B * S * U) {
        throw new ShapeError(this.label, `initial state column '${this.initialStateColumn}' has shape ${formatShape(column.shape)} (${column.dtype}), expected ${formatShape(expected)} float32`);
      }
      src = column.ptr >> 2;
      rowStride = S * U;
    }
    slots.forEach((p, s) => {
      const dst = p >> 2;
      for (let b = 0; b < B; b++) f.copyWithin(dst + b * U, src + b * rowStride + s * U, src + b * rowStride + (s + 1) * U);
    });
  }

  /** The layer output from the states: `[B, T, U]` (a transposed copy) or a view of the last state `[B, U]`. */
  protected output(step: StepContext, h: Tensor, fr: Frame): Tensor {
    const { batch: B, steps: T, units: U } = fr;
    if (!this.returnSequences) return new Tensor(h.heap, h.ptr + 4 * T * B * U, [B, U]);
    const y = step.alloc([B, T, U]);
    swapLeadingAxes(step.engine.heap.f32, (h.ptr >> 2) + B * U, y.ptr >> 2, T, B, U);
    return y;
  }

  // ---------------------------------------------------------------- backward helpers

  /** First step of the backward window. */
  protected windowStart(steps: number): number {
    return this.truncate === null ? 0 : Math.max(0, steps - this.truncate);
  }

  /**
   * dy as a time-major pointer per step: `[T, B, U]` (returnSequences, transposed into the arena) or
   * the one `[B, U]` block of the last step. Call before taking a heap view (it may allocate).
   */
  protected timeMajorGradient(step: StepContext, dy: Tensor, fr: Frame): Tensor {
    const { batch: B, steps: T, units: U } = fr;
    if (!this.returnSequences) return dy;
    if (B === 1 || T === 1) return dy.reshape([T, B, U]);
    const dyt = step.alloc([T, B, U]);
    swapLeadingAxes(step.engine.heap.f32, dy.ptr >> 2, dyt.ptr >> 2, B, T, U);
    return dyt;
  }

  /** Float index of dy at step t (time-major), or −1 when step t's output has no gradient. */
  protected dyIndex(dyt: Tensor, fr: Frame, t: number): number {
    if (this.returnSequences) return (dyt.ptr >> 2) + t * fr.batch * fr.units;
    return t === fr.steps - 1 ? dyt.ptr >> 2 : -1;
  }

  /**
   * The weight gradients over the window `[t0, T)` in one GEMM each, and dX:
   * dW = X[t0:]ᵀ·dZ, dU = H[t0:T]ᵀ·dRec (dRec = dZ unless the cell's recurrent pre-activation differs,
   * as in GRU), dX[t0:] = dZ·Wᵀ (zero before t0), transposed back to `[B, T, F]`.
   */
  protected async weightGradients(
    step: StepContext, saved: RecurrentSaved, t0: number, dz: Tensor, dRec: Tensor, dx: Tensor | null, dxt: Tensor | null,
  ): Promise<void> {
    const { frame: fr, xt, h } = saved;
    const { batch: B, steps: T, features: F, units: U, width: W } = fr;
    const rows = (T - t0) * B;
    const { compute } = step.engine;
    // Packed: k = steps·B is long, and the direct path re-reads dZ's columns from far caches once per
    // 4 rows of dW (measured 28 vs 42–50 GFLOP/s at 28×512 / 128×512 with k = 1792, docs/PERFORMANCE.md).
    await compute.gemm(1, 0, F, W, rows, 1, xt.ptr + 4 * t0 * B * F, F, dz.ptr, W, 0, this.kernel.grad.ptr, W, 'packed');
    await compute.gemm(1, 0, U, W, rows, 1, h.ptr + 4 * t0 * B * U, U, dRec.ptr, W, 0, this.recurrentKernel.grad.ptr, W, 'packed');
    if (!dx || !dxt) return;
    const f = step.engine.heap.f32;
    if (t0 > 0) f.fill(0, dxt.ptr >> 2, (dxt.ptr >> 2) + t0 * B * F);
    await compute.gemm(0, 1, rows, F, W, 1, dz.ptr, W, this.kernel.value.ptr, W, 0, dxt.ptr + 4 * t0 * B * F, F);
    if (dx !== dxt) swapLeadingAxes(step.engine.heap.f32, dxt.ptr >> 2, dx.ptr >> 2, T, B, F);
  }

  /** The recurrent kernel transposed, `[G·U, U]`, in the step's arena (for dh = dZ·Uᵀ read in place). */
  protected transposedRecurrentKernel(step: StepContext, fr: Frame): number {
    const rkT = step.alloc([fr.width, fr.units]);
    // A one-tap filter transpose is the matrix transpose: rkT[j, i] = rk[i, j].
    step.engine.kernels.conv2dTransposeFilter(this.recurrentKernel.value.ptr, rkT.ptr, 1, fr.units, fr.width);
    return rkT.ptr;
  }

  /** dX `[B, T, F]` and its time-major working copy (the same tensor when B or T is 1). */
  protected allocInputGradient(step: StepContext, fr: Frame): { dx: Tensor; dxt: Tensor } {
    const dx = step.alloc([fr.batch, fr.steps, fr.features]);
    const dxt = fr.batch === 1 || fr.steps === 1 ? dx : step.alloc([fr.steps, fr.batch, fr.features]);
    return { dx, dxt };
  }

  /** Whether the backward must carry the state gradient past step t0 down to the initial state. */
  protected wantsInitialGradient(t0: number): boolean {
    return t0 === 0 && this.initialState !== 'zeros';
  }

  /**
   * Routes dLoss/d(initial state) (`slots[s]`, `[B, U]` each, valid when the window reached step 0)
   * to the learned parameter (summed over rows) or to {@link initialStateGradient} (the column).
   */
  protected initialGradient(step: StepContext, fr: Frame, t0: number, slots: readonly number[]): void {
    if (this.initialState === 'zeros') return;
    const { batch: B, units: U } = fr;
    const S = this.states;
    const reached = t0 === 0;
    if (this.initialState === 'learned') {
      const g = this.initial!.grad.ptr;
      slots.forEach((p, s) => {
        if (reached) step.engine.kernels.sumRows(p, g + 4 * s * U, B, U, 0);
        else step.engine.kernels.fill(g + 4 * s * U, U, 0);
      });
      return;
    }
    const grad = step.alloc([B, ...this.stateShape]);
    const f = step.engine.heap.f32;
    const dst = grad.ptr >> 2;
    if (!reached) f.fill(0, dst, dst + B * S * U);
    else {
      slots.forEach((p, s) => {
        for (let b = 0; b < B; b++) f.copyWithin(dst + b * S * U + s * U, (p >> 2) + b * U, (p >> 2) + (b + 1) * U);
      });
    }
    this.stateGradients.set(step, grad);
  }
}

/**
 * Elman RNN (Keras SimpleRNN): h_t = tanh(x_t·W + h_{t−1}·U + b). Parameters: kernel `[F, U]`
 * (Glorot uniform), recurrentKernel `[U, U]` (orthogonal), bias `[U]` (zeros).
 * Backward: dz_t = (dh_t + dy_t)·(1 − h_t²), dh_{t−1} = dz_t·Uᵀ.
 */
class SimpleRnn extends Recurrent {
  readonly kind = 'simpleRnn';
  protected readonly gates = 1;

  constructor(options: RecurrentOptions) {
    super(options, 'simpleRnn');
  }

  protected biasSpec(): { shape: Shape; init: Initializer } {
    return { shape: [this.units], init: zeros() };
  }

  async forward(x: Tensor, step: StepContext): Promise<Tensor> {
    const fr = this.frame(x);
    const { batch: B, steps: T, units: U } = fr;
    const xt = this.timeMajor(step, x, fr);
    const z = step.alloc([T, B, U]);
    const h = step.alloc([T + 1, B, U]);
    await this.projectInputs(step, xt, z, fr, this.bias.value.ptr);
    this.writeInitialState(step, fr, [h.ptr]);
    const { compute, kernels } = step.engine;
    const rk = this.recurrentKernel.value.ptr;
    const block = 4 * B * U;
    for (let t = 0; t < T; t++) {
      const zt = z.ptr + t * block;
      // With a zero initial state the first recurrent product is zero: skip it.
      if (t > 0 || this.initialState !== 'zeros') await compute.gemm(0, 0, B, U, U, 1, h.ptr + t * block, U, rk, U, 1, zt, U);
      kernels.tanhForward(zt, h.ptr + (t + 1) * block, B * U);
    }
    step.save(this, x, xt, h);
    return this.output(step, h, fr);
  }

  async backward(dy: Tensor, step: StepContext, needInputGradient: boolean): Promise<Tensor | null> {
    const [x, xt, h] = step.restore(this) as [Tensor, Tensor, Tensor];
    const fr = this.frame(x);
    const saved: RecurrentSaved = { frame: fr, xt, h };
    const { batch: B, steps: T, units: U } = fr;
    const t0 = this.windowStart(T);
    const dyt = this.timeMajorGradient(step, dy, fr);
    const dz = step.alloc([T - t0, B, U]);
    const dh = step.alloc([B, U]);
    const grads = needInputGradient ? this.allocInputGradient(step, fr) : null;
    const f = step.engine.heap.f32;
    const n = B * U;
    f.fill(0, dh.ptr >> 2, (dh.ptr >> 2) + n);
    const rk = this.recurrentKernel.value.ptr;
    const carry = this.wantsInitialGradient(t0);
    for (let t = T - 1; t >= t0; t--) {
      const dyAt = this.dyIndex(dyt, fr, t);
      const ht = (h.ptr >> 2) + (t + 1) * n;
      const dzt = (dz.ptr >> 2) + (t - t0) * n;
      const dhp = dh.ptr >> 2;
      for (let i = 0; i < n; i++) {
        const g = f[dhp + i]! + (dyAt >= 0 ? f[dyAt + i]! : 0);
        const y = f[ht + i]!;
        f[dzt + i] = g * (1 - y * y);
      }
      if (t > t0 || carry) await step.engine.compute.gemm(0, 1, B, U, U, 1, dzt * 4, U, rk, U, 0, dh.ptr, U);
    }
    step.engine.kernels.sumRows(dz.ptr, this.bias.grad.ptr, (T - t0) * B, U, 0);
    await this.weightGradients(step, saved, t0, dz, dz, grads?.dx ?? null, grads?.dxt ?? null);
    this.initialGradient(step, fr, t0, [dh.ptr]);
    return grads?.dx ?? null;
  }
}

/**
 * A simple (Elman) recurrent layer over `[B, T, F]` sequences: h_t = tanh(x_t·W + h_{t−1}·U + b).
 * Output `[B, units]` (the last state) or `[B, T, units]` with `returnSequences`.
 *
 * Usage: `sequential([simpleRnn({ units: 32 }), dense(10)], { inputShape: [28, 28] })`
 */
export function simpleRnn(options: RecurrentOptions): RecurrentLayer {
  return new SimpleRnn(options);
}

/** Reads the options every recurrent layer shares back from its config (checkpoints). */
export function readRecurrentOptions(c: ConfigReader, name: string): RecurrentOptions {
  const kernelRegularizer = c.regularizer('kernelRegularizer');
  const recurrentRegularizer = c.regularizer('recurrentRegularizer');
  const biasRegularizer = c.regularizer('biasRegularizer');
  const truncate = c.numberOrNull('truncate');
  return {
    name,
    units: c.positiveInteger('units'),
    returnSequences: c.boolean('returnSequences', false),
    initialState: c.choice('initialState', ['zeros', 'learned', 'column'] as const, 'zeros'),
    initialStateColumn: c.string('initialStateColumn', 'initialState'),
    ...(truncate !== null ? { truncate } : {}),
    kernelInitializer: c.initializer('kernelInitializer', glorotUniform()),
    recurrentInitializer: c.initializer('recurrentInitializer', orthogonal()),
    ...(kernelRegularizer ? { kernelRegularizer } : {}),
    ...(recurrentRegularizer ? { recurrentRegularizer } : {}),
    ...(biasRegularizer ? { biasRegularizer } : {}),
  };
}

registerLayer('simpleRnn', (c, name) => {
  const options = readRecurrentOptions(c, name);
  c.done();
  return constructLayer(c, 'units', () => simpleRnn(options));
});
