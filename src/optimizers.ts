import type { Engine } from './engine.ts';
import { globToRegExp } from './layer-match.ts';
import type { Parameter } from './layer.ts';
import type { LearningRateSchedule } from './schedules.ts';
import { Tensor } from './tensor.ts';
import type { ElementwiseCall } from '../workers/compute-api.ts';

/**
 * Updates parameters from their gradients; its per-parameter state (moments, velocity) lives in
 * the heap's persistent region and the update is one fused kernel per parameter.
 */
export interface Optimizer {
  readonly name: string;
  /** The rate of the latest step (with a schedule: set from it before each step; without: yours to change between steps). */
  learningRate: number;
  /** The schedule the rate follows; null or absent for a constant rate. */
  readonly schedule?: LearningRateSchedule | null;
  /** Momentum of the exponential moving average of the weights it keeps (0 or absent: none). */
  readonly emaMomentum?: number;
  /**
   * Exchanges the values of `parameters` with their moving averages (its own inverse: call it again
   * to swap back). Throws when the optimizer keeps no averages.
   */
  swapAverages?(parameters: readonly Parameter[]): void;
  /** Steps applied so far. */
  iterations: number;
  /** Applies one step to the trainable parameters, from their `grad`. */
  apply(parameters: readonly Parameter[], engine: Engine): void;
  /** Named state tensors per parameter, for checkpoints: `{ 'dense_1/kernel': { m, v } }`. */
  state(): Map<string, Record<string, Tensor>>;
  /** Frees the state of `parameters` in the heap (the model is being disposed); a later step recreates it, zeroed. */
  release(parameters: readonly Parameter[], engine: Engine): void;
  config(): Record<string, unknown>;
  /**
   * Checkpoint loading: sets `iterations` and recreates the state slots of `parameters` (matched by
   * name) from saved values, so the next step continues exactly where the saved run stopped.
   * Validates slot names and sizes, naming the parameter and slot. Optional so that third-party
   * optimizers without state still satisfy the interface.
   */
  restoreState?(parameters: readonly Parameter[], engine: Engine, iterations: number, slots: ReadonlyMap<string, Readonly<Record<string, Float32Array>>>): void;
}

/** Runs fused update calls: split across the engine's pool when its backend can, else one by one. */
function runElementwise(engine: Engine, calls: readonly ElementwiseCall[]): void {
  if (calls.length === 0) return;
  if (engine.compute.elementwiseMany) return engine.compute.elementwiseMany(calls);
  const k = engine.kernels as unknown as Record<string, (...args: number[]) => void>;
  for (const c of calls) k[c.name]!(...c.pointers, c.n, ...(c.tail ?? []));
}

/**
 * Parameters whose names match `parameters` (a glob over parameter names such as `'conv2d_1/kernel'`, e.g.
 * `'conv*'`) train at `learningRateScale` times the optimizer's rate (schedule included): discriminative
 * fine-tuning. The first matching group wins; other parameters use the rate as it is.
 */
export interface ParameterGroup {
  parameters: string;
  learningRateScale: number;
}

/** Checks parameter groups (an optimizer's option or a checkpoint's config field), naming the bad field. */
export function checkGroups(name: string, groups: unknown): ParameterGroup[] {
  if (groups === undefined) return [];
  if (!Array.isArray(groups)) throw new RangeError(`${name}: parameterGroups must be an array of { parameters, learningRateScale }, got ${JSON.stringify(groups)}`);
  return groups.map((g: unknown, i) => {
    const group = g as Partial<ParameterGroup> | null;
    if (typeof group?.parameters !== 'string' || group.parameters === '') throw new RangeError(`${name}: parameterGroups[${i}].parameters must be a non-empty name or glob, got ${JSON.stringify(group?.parameters)}`);
    const scale = group.learningRateScale;
    if (typeof scale !== 'number' || !(Number.isFinite(scale) && scale >= 0)) throw new RangeError(`${name}: parameterGroups[${i}].learningRateScale must be a finite number ≥ 0, got ${JSON.stringify(scale)}`);
    return { parameters: group.parameters, learningRateScale: scale };
  });
}

function checkRate(name: string, value: number, what: string, max = Infinity): number {
  if (!(Number.isFinite(value) && value >= 0 && value < max)) throw new RangeError(`${name}: ${what} must be in [0, ${max}), got ${value}`);
  return value;
}

/** A constant rate (checked) or a schedule. */
function learningRateOf(name: string, value: number | LearningRateSchedule): number | LearningRateSchedule {
  if (typeof value === 'number') return checkRate(name, value, 'learningRate');
  if (typeof value?.rateAt !== 'function') throw new RangeError(`${name}: learningRate must be a number or a schedule (exponentialDecay, cosineDecay, piecewiseConstant), got ${JSON.stringify(value)}`);
  return value;
}

abstract class StatefulOptimizer implements Optimizer {
  iterations = 0;
  learningRate: number;
  readonly schedule: LearningRateSchedule | null;
  private readonly slots = new Map<Parameter, Record<string, Tensor>>();
  private readonly slotNames: readonly string[];
  /** The rate of the parameter being updated (the step's rate times its group's scale). */
  protected rate = 0;
  private readonly scales = new Map<Parameter, number>();
  abstract readonly name: string;
  constructor(
    learningRate: number | LearningRateSchedule, updateSlots: readonly string[], readonly emaMomentum: number,
    readonly parameterGroups: readonly ParameterGroup[] = [],
    /** Update only the rows a layer reported in `Parameter.sparseRows` (lazy moments); see {@link SgdOptions.lazy}. */
    protected readonly lazy = false,
  ) {
    this.schedule = typeof learningRate === 'number' ? null : learningRate;
    this.learningRate = this.schedule ? this.schedule.rateAt(0) : (learningRate as number);
    this.slotNames = emaMomentum > 0 ? [...updateSlots, 'ema'] : updateSlots;
  }

  /** The options every optimizer shares, for `config()`: the rate (or the schedule's config), and the EMA momentum when on. */
  protected get sharedConfig(): Record<string, unknown> {
    return {
      learningRate: this.schedule ? this.schedule.config() : this.learningRate, ...(this.emaMomentum > 0 ? { emaMomentum: this.emaMomentum } : {}),
      ...(this.parameterGroups.length > 0 ? { parameterGroups: this.parameterGroups.map((g) => ({ ...g })) } : {}),
      ...(this.lazy ? { lazy: true } : {}),
    };
  }

  /**
   * With `lazy`: the rows to update and the row width when the parameter reports few enough of
   * them, else null (one dense update).
   */
  protected lazyRows(p: Parameter): { rows: Int32Array; width: number } | null {
    const rows = this.lazy ? p.sparseRows : null;
    if (!rows || p.shape.length === 0 || rows.length * 4 > p.shape[0]!) return null;
    return { rows, width: p.value.size / p.shape[0]! };
  }

  /** Each parameter's learning-rate scale from the groups; a group matching no parameter is an error naming it. */
  private scaleOf(parameters: readonly Parameter[], p: Parameter): number {
    if (this.parameterGroups.length === 0) return 1;
    if (!this.scales.has(p)) {
      const patterns = this.parameterGroups.map((g) => globToRegExp(g.parameters));
      patterns.forEach((re, i) => {
        if (!parameters.some((q) => re.test(q.name))) {
          throw new RangeError(`${this.name}: parameterGroups[${i}].parameters '${this.parameterGroups[i]!.parameters}' matches no parameter (parameters: ${parameters.map((q) => q.name).join(', ')})`);
        }
      });
      for (const q of parameters) {
        const i = patterns.findIndex((re) => re.test(q.name));
        this.scales.set(q, i < 0 ? 1 : this.parameterGroups[i]!.learningRateScale);
      }
    }
    return this.scales.get(p)!;
  }

  protected slotsFor(p: Parameter, engine: Engine): Record<string, Tensor> {
    let s = this.slots.get(p);
    if (!s) {
      s = {};
      for (const slot of this.slotNames) {
        const t = new Tensor(engine.heap, engine.heap.alloc(p.value.size * 4), p.shape);
        // The moving average starts at the weights as they are; moments and velocity start at zero.
        if (slot === 'ema') engine.kernels.copy(p.value.ptr, t.ptr, t.size);
        else engine.kernels.fill(t.ptr, t.size, 0);
        s[slot] = t;
      }
      this.slots.set(p, s);
    }
    return s;
  }

  state(): Map<string, Record<string, Tensor>> {
    return new Map([...this.slots].map(([p, s]) => [p.name, s]));
  }

  release(parameters: readonly Parameter[], engine: Engine): void {
    for (const p of parameters) {
      const s = this.slots.get(p);
      if (!s) continue;
      for (const t of Object.values(s)) engine.heap.free(t.ptr);
      this.slots.delete(p);
    }
  }

  restoreState(parameters: readonly Parameter[], engine: Engine, iterations: number, slots: ReadonlyMap<string, Readonly<Record<string, Float32Array>>>): void {
    if (!Number.isSafeInteger(iterations) || iterations < 0) throw new RangeError(`${this.name}.restoreState: iterations must be a non-negative integer, got ${iterations}`);
    const byName = new Map(parameters.map((p) => [p.name, p]));
    // Validate everything before touching the heap, so a bad checkpoint leaves the optimizer as it was.
    for (const [name, saved] of slots) {
      const p = byName.get(name);
      if (!p) throw new RangeError(`${this.name}.restoreState: the model has no parameter '${name}'`);
      const names = Object.keys(saved).sort();
      const expected = [...this.slotNames].sort();
      if (names.join() !== expected.join()) throw new RangeError(`${this.name}.restoreState: '${name}' has slots [${names.join(', ')}], expected [${expected.join(', ')}]`);
      for (const slot of names) {
        const values = saved[slot]!;
        if (values.length !== p.value.size) throw new RangeError(`${this.name}.restoreState: '${name}' slot '${slot}' has ${values.length} values, the parameter ${p.value.size}`);
      }
    }
    for (const [name, saved] of slots) {
      const s = this.slotsFor(byName.get(name)!, engine);
      for (const slot of this.slotNames) s[slot]!.data().set(saved[slot]!);
    }
    this.iterations = iterations;
    if (this.schedule) this.learningRate = this.schedule.rateAt(Math.max(0, iterations - 1));
  }

  apply(parameters: readonly Parameter[], engine: Engine): void {
    if (this.schedule) this.learningRate = this.schedule.rateAt(this.iterations);
    this.iterations++;
    const averaging = this.emaMomentum > 0;
    // Every parameter's update as one split across the pool (when large enough), then every average.
    const updates: ElementwiseCall[] = [];
    for (const p of parameters) {
      if (!p.trainable) continue;
      if (averaging) this.slotsFor(p, engine); // a new average starts at the weights before the step
      this.rate = this.learningRate * this.scaleOf(parameters, p);
      updates.push(...this.update(p, engine));
    }
    runElementwise(engine, updates);
    if (averaging) {
      // TensorFlow's ExponentialMovingAverage with num_updates: a smaller momentum early on, so the
      // average does not dwell on the initial weights.
      const t = this.iterations;
      const momentum = Math.min(this.emaMomentum, (1 + t) / (10 + t));
      const averages: ElementwiseCall[] = [];
      for (const p of parameters) {
        if (!p.trainable) continue;
        const ema = this.slotsFor(p, engine)['ema']!;
        // One pass (scale + axpy fused, the same bits): the EMA reads each slot once.
        averages.push({ name: 'emaUpdate', pointers: [ema.ptr, p.value.ptr], n: ema.size, tail: [momentum, 1 - momentum] });
      }
      runElementwise(engine, averages);
    }
  }

  swapAverages(parameters: readonly Parameter[]): void {
    if (!(this.emaMomentum > 0)) throw new Error(`${this.name}: keeps no weight averages (create it with emaMomentum, e.g. ${this.name}({ emaMomentum: 0.99 }))`);
    for (const p of parameters) {
      const ema = this.slots.get(p)?.['ema'];
      if (!ema) continue; // never trained by this optimizer: its average is its value
      const values = p.value.data();
      const average = ema.data();
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        values[i] = average[i]!;
        average[i] = v;
      }
    }
  }

  /** The fused update kernel calls of one parameter: one, or one per row in use with `lazy` (run with the others' by apply). */
  protected abstract update(p: Parameter, engine: Engine): ElementwiseCall[];
  abstract config(): Record<string, unknown>;
}

/** Options of {@link sgd}. */
export interface SgdOptions {
  /** A constant rate (default 0.01) or a schedule ({@link exponentialDecay}, {@link cosineDecay}, {@link piecewiseConstant}). */
  learningRate?: number | LearningRateSchedule;
  momentum?: number;
  nesterov?: boolean;
  /** Coupled weight decay (added to the gradient), as in PyTorch's SGD. */
  weightDecay?: number;
  /** Keep an exponential moving average of the weights with this momentum (Keras's `ema_momentum`; 0, the default: none). */
  emaMomentum?: number;
  /** Learning-rate scales for groups of parameters (a lower rate for a pre-trained base). */
  parameterGroups?: readonly ParameterGroup[];
  /**
   * Update only the rows of a parameter that its layer reports as touched this step
   * (`Parameter.sparseRows`, set by `idEmbedding`): per-step cost follows the batch, not the table.
   * Plain SGD is then exactly the dense update; with momentum or weight decay, rows not in the batch
   * keep their velocity and are not decayed until they return (TensorFlow's "lazy" semantics).
   * Default false.
   */
  lazy?: boolean;
}

class Sgd extends StatefulOptimizer {
  readonly name = 'sgd';
  constructor(
    learningRate: number | LearningRateSchedule, private readonly momentum: number, private readonly nesterov: boolean, private readonly weightDecay: number,
    emaMomentum: number, parameterGroups: readonly ParameterGroup[], lazy: boolean,
  ) {
    super(learningRate, momentum > 0 ? ['velocity'] : [], emaMomentum, parameterGroups, lazy);
  }
  protected update(p: Parameter, engine: Engine): ElementwiseCall[] {
    const velocity = this.momentum > 0 ? this.slotsFor(p, engine)['velocity']!.ptr : 0;
    // Tail: lr, momentum (f32), nesterov (i32), weightDecay (f32).
    const call = (offset: number, n: number): ElementwiseCall => ({
      name: 'sgdUpdate', pointers: [p.value.ptr + offset, p.grad.ptr + offset, velocity ? velocity + offset : 0], n,
      tail: [this.rate, this.momentum, this.nesterov ? 1 : 0, this.weightDecay], tailFloatMask: 0b1011,
    });
    const sparse = this.lazyRows(p);
    if (!sparse) return [call(0, p.value.size)];
    return Array.from(sparse.rows, (r) => call(r * sparse.width * 4, sparse.width));
  }
  config() {
    return { ...this.sharedConfig, momentum: this.momentum, nesterov: this.nesterov, weightDecay: this.weightDecay };
  }
}

/**
 * Stochastic gradient descent, optionally with (Nesterov) momentum.
 *
 * Usage: `sgd({ learningRate: 0.1, momentum: 0.9, nesterov: true })`
 */
export function sgd(options: SgdOptions = {}): Optimizer {
  const momentum = checkRate('sgd', options.momentum ?? 0, 'momentum', 1);
  if (options.nesterov && momentum === 0) throw new RangeError('sgd: nesterov needs momentum > 0');
  return new Sgd(
    learningRateOf('sgd', options.learningRate ?? 0.01), momentum, options.nesterov ?? false, checkRate('sgd', options.weightDecay ?? 0, 'weightDecay'),
    checkRate('sgd', options.emaMomentum ?? 0, 'emaMomentum', 1), checkGroups('sgd', options.parameterGroups), options.lazy ?? false,
  );
}

/** Options of {@link adam} and {@link adamw}. */
export interface AdamOptions {
  /** A constant rate (default 1e-3) or a schedule ({@link exponentialDecay}, {@link cosineDecay}, {@link piecewiseConstant}). */
  learningRate?: number | LearningRateSchedule;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  weightDecay?: number;
  /** Keep an exponential moving average of the weights with this momentum (Keras's `ema_momentum`; 0, the default: none). */
  emaMomentum?: number;
  /** Learning-rate scales for groups of parameters (a lower rate for a pre-trained base). */
  parameterGroups?: readonly ParameterGroup[];
  /**
   * Lazy Adam (TensorFlow Addons' LazyAdam): for a parameter whose layer reports the rows touched
   * this step (`Parameter.sparseRows`, set by `idEmbedding`), only those rows' moments and values
   * move; the bias correction follows the global step. Dense Adam would keep moving every row on its
   * stale momentum and costs the whole table per step. Default false.
   */
  lazy?: boolean;
}

class Adam extends StatefulOptimizer {
  constructor(
    readonly name: 'adam' | 'adamw', learningRate: number | LearningRateSchedule, private readonly beta1: number, private readonly beta2: number,
    private readonly epsilon: number, private readonly weightDecay: number, emaMomentum: number, parameterGroups: readonly ParameterGroup[],
    lazy: boolean,
  ) {
    super(learningRate, ['m', 'v'], emaMomentum, parameterGroups, lazy);
  }
  protected update(p: Parameter, engine: Engine): ElementwiseCall[] {
    const { m, v } = this.slotsFor(p, engine) as { m: Tensor; v: Tensor };
    const t = this.iterations;
    // Tail: lr, beta1, beta2, eps, weightDecay (f32), decoupled (i32), bc1, bc2 (f32).
    const call = (offset: number, n: number): ElementwiseCall => ({
      name: 'adamUpdate', pointers: [p.value.ptr + offset, p.grad.ptr + offset, m.ptr + offset, v.ptr + offset], n,
      tail: [this.rate, this.beta1, this.beta2, this.epsilon, this.weightDecay, this.name === 'adamw' ? 1 : 0, 1 - this.beta1 ** t, 1 - this.beta2 ** t],
      tailFloatMask: 0b11011111,
    });
    const sparse = this.lazyRows(p);
    if (!sparse) return [call(0, p.value.size)];
    return Array.from(sparse.rows, (r) => call(r * sparse.width * 4, sparse.width));
  }
  config() {
    return { ...this.sharedConfig, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon, weightDecay: this.weightDecay };
  }
}

function makeAdam(name: 'adam' | 'adamw', options: AdamOptions, defaultDecay: number): Optimizer {
  return new Adam(
    name,
    learningRateOf(name, options.learningRate ?? 1e-3),
    checkRate(name, options.beta1 ?? 0.9, 'beta1', 1),
    checkRate(name, options.beta2 ?? 0.999, 'beta2', 1),
    checkRate(name, options.epsilon ?? 1e-7, 'epsilon'),
    checkRate(name, options.weightDecay ?? defaultDecay, 'weightDecay'),
    checkRate(name, options.emaMomentum ?? 0, 'emaMomentum', 1), checkGroups(name, options.parameterGroups), options.lazy ?? false,
  );
}

/**
 * Adam (Kingma & Ba) with bias correction; epsilon 1e-7 as in Keras. `weightDecay` here is the
 * coupled L2 kind (added to the gradient); use {@link adamw} for decoupled decay.
 *
 * Usage: `model.fit({ loss: softmaxCrossEntropy(), optimizer: adam({ learningRate: 1e-3 }) })`
 */
export const adam = (options: AdamOptions = {}): Optimizer => makeAdam('adam', options, 0);

/**
 * AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), default decay 0.01.
 *
 * Usage: `adamw({ learningRate: 1e-3, weightDecay: 0.01 })`
 */
export const adamw = (options: AdamOptions = {}): Optimizer => makeAdam('adamw', options, 0.01);
