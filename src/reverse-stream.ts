import { concatMap, EMPTY, from, Observable, Subject, tap, type OperatorFunction, type Subscription } from 'rxjs';
import type { Engine } from './engine.ts';
import type { Parameter, StepContext } from './layer.ts';
import type { Tensor } from './tensor.ts';

/**
 * The long-lived reverse stream. Every training step of one `fit` subscription (or one
 * {@link TrainingSession}) pushes its {@link ParameterGradients} into one Subject; the user's
 * gradient operators are composed over it once, so stateful Rx operators (`scan`, `skip`, `filter`,
 * {@link accumulateGradients}) see every step in order; the optimizer is the sink at its end.
 *
 * A step waits for its item's outcome before the next batch's forward:
 * - `applied`: an item covering the step reached the optimizer;
 * - `held`: an operator took the gradients into an accumulator (`g.hold()`) and will release them
 *   later inside a combined item; the next forward uses the weights as they are;
 * - `dropped`: the item went nowhere (`skip`, `filter`, a non-finite step under `nonFinite: 'skip'`).
 * An asynchronous operator (a network round trip) marks the item with `g.pending()` — or is written
 * with {@link asyncGradients}, which does — and the step then awaits the outcome.
 */

/** What happened to a step's gradients on the reverse stream. */
export type UpdateOutcome = 'applied' | 'held' | 'dropped';

/** How a training step treats a NaN or infinite loss or parameter gradient. */
export type NonFinitePolicy = 'error' | 'skip' | 'off';

type State = 'open' | 'pending' | UpdateOutcome;

/**
 * The parameter gradients of one or more training steps, on their way to the optimizer. Each
 * parameter's gradient is in `parameter.grad` (the model's gradient tensor, which the next step's
 * backward overwrites): read or rescale it in place, and copy what you keep past this step.
 *
 * Usage (in a gradient operator): `map((g) => { for (const p of g.parameters) g.engine.kernels.scale(p.grad.ptr, p.grad.size, 0.5); return g; })`
 */
export class ParameterGradients {
  private state: State = 'open';
  private readonly afterApplyCallbacks: (() => void)[] = [];
  private settle: ((outcome: UpdateOutcome) => void) | null = null;
  private fail: ((error: unknown) => void) | null = null;
  /** Resolves with the outcome once it is known (only awaited for a pending item). */
  readonly outcome: Promise<UpdateOutcome>;

  constructor(
    /** The model's parameters, gradients in `grad`. */
    readonly parameters: readonly Parameter[],
    readonly engine: Engine,
    /** The first and last model step covered (step numbers as in the step reports: 1 is the first step ever). */
    readonly firstStep: number,
    readonly lastStep: number,
    /** How many training steps it covers (steps whose update was dropped are not among them). */
    readonly steps: number,
    /** Rows of the batches it covers. */
    readonly rows: number,
    /** Terms the losses averaged over (rows, or counted positions): what accumulation weights by. */
    readonly lossCount: number,
    /** Mean loss over those terms (regularisation included). */
    readonly loss: number,
    /** The items it combines (an accumulator's release): their outcome follows this one's. */
    readonly members: readonly ParameterGradients[] = [],
  ) {
    this.outcome = new Promise<UpdateOutcome>((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    this.outcome.catch(() => {});
  }

  /** The live gradient of parameter `name` (a view of its `grad` tensor; valid during this step). */
  gradient(name: string): Float32Array {
    const p = this.parameters.find((q) => q.name === name);
    if (!p) throw new RangeError(`ParameterGradients.gradient: no parameter '${name}' (have ${this.parameters.map((q) => q.name).join(', ')})`);
    return p.grad.data();
  }

  /**
   * Marks the item as held: an accumulator has taken (copied or summed) its gradients and will
   * release them later inside a combined item. The step reports `update: 'held'` and the next
   * batch's forward uses the weights as they are.
   */
  hold(): void {
    this.decide('held');
  }

  /** Marks the item as dropped (an asynchronous operator that decided not to pass it on). */
  drop(): void {
    this.decide('dropped');
  }

  /**
   * Marks the item as in flight in an asynchronous operator: the training step waits until it is
   * applied, held or dropped (or the stream errors) before the next batch's forward.
   */
  pending(): void {
    if (this.state !== 'open') throw new Error(`ParameterGradients.pending: the gradients of steps ${this.describe()} are already ${this.state}`);
    this.state = 'pending';
  }

  /**
   * Registers `callback` to run right after the optimizer applied the update this item is part of
   * (e.g. pruning re-applies its masks to the weights there). Not called if the item is dropped.
   */
  afterApply(callback: () => void): void {
    this.afterApplyCallbacks.push(callback);
  }

  /** True once the outcome is known (applied, held or dropped). */
  get decided(): boolean {
    return this.state !== 'open' && this.state !== 'pending';
  }

  /** True while an asynchronous operator has it (see {@link pending}). */
  get isPending(): boolean {
    return this.state === 'pending';
  }

  /** The outcome so far: 'applied', 'held', 'dropped', or null while undecided. */
  get decision(): UpdateOutcome | null {
    return this.decided ? (this.state as UpdateOutcome) : null;
  }

  /** `"5"` or `"5–8"`. */
  describe(): string {
    return this.firstStep === this.lastStep ? String(this.lastStep) : `${this.firstStep}–${this.lastStep}`;
  }

  /** Internal (the sink): the update was applied; runs the callbacks of this item and of its undecided members. */
  markApplied(): void {
    this.decide('applied');
  }

  /**
   * Internal: this item's gradients went on inside `other`, an item an operator made from them without
   * listing it among its members: it shares `other`'s outcome (and its callbacks run if applied).
   */
  follow(other: ParameterGradients): void {
    if (this.decided || other === this) return;
    const settle = (outcome: UpdateOutcome) => {
      if (this.decided) return;
      if (outcome === 'applied') for (const callback of this.collectAfterApply()) callback();
      this.decide(outcome);
    };
    const decided = other.decision;
    if (decided) settle(decided);
    else other.outcome.then(settle, (error: unknown) => this.markFailed(error));
  }

  /** Internal: the stream failed while this item was pending. */
  markFailed(error: unknown): void {
    this.fail?.(error);
    this.fail = this.settle = null;
  }

  /** Callbacks of this item and its members, in registration order (members first). */
  collectAfterApply(into: (() => void)[] = []): (() => void)[] {
    for (const m of this.members) m.collectAfterApply(into);
    into.push(...this.afterApplyCallbacks);
    return into;
  }

  private decide(outcome: UpdateOutcome): void {
    if (this.decided) throw new Error(`ParameterGradients: the gradients of steps ${this.describe()} are already ${this.state}, cannot mark them ${outcome}`);
    this.state = outcome;
    this.settle?.(outcome);
    this.fail = this.settle = null;
    // Members still undecided (the step whose arrival released the accumulator) share the outcome.
    for (const m of this.members) if (!m.decided) m.decide(outcome);
  }
}

/** A gradient operator on the reverse side: `clipGradientNorm(1)`, `accumulateGradients(4)`, `skip(100)`, … */
export type GradientOperator = OperatorFunction<ParameterGradients, ParameterGradients>;

/**
 * An asynchronous gradient operator: `work` may take its time (average the gradients across
 * processes over the network, …) and resolves the item to pass on, or null to drop it. The
 * training step waits for it: exact synchronous semantics are kept. Items are handled one at a time, in order.
 *
 * Usage: `gradientOperators: [asyncGradients(async (g) => { await allReduce(g); return g; })]`
 */
export function asyncGradients(work: (g: ParameterGradients) => Promise<ParameterGradients | null>): GradientOperator {
  return concatMap((g: ParameterGradients): Observable<ParameterGradients> => {
    g.pending();
    return from(work(g)).pipe(
      concatMap((out) => {
        if (!out) {
          g.drop();
          return EMPTY;
        }
        return new Observable<ParameterGradients>((subscriber) => {
          subscriber.next(out);
          // A new item made from g's gradients (not listing g): g ends as it does.
          g.follow(out);
          subscriber.complete();
        });
      }),
    );
  });
}

/** What the sink does with an item: the optimizer step (may throw). */
export type GradientSink = (g: ParameterGradients) => void;

/**
 * One reverse stream: a Subject, the user's operators composed over it once, the sink at the end.
 * {@link push} sends one step's gradients and tells (or promises) the outcome.
 */
export class ReverseStream {
  private readonly input = new Subject<ParameterGradients>();
  private readonly subscription: Subscription;
  private error: { reason: unknown } | null = null;
  private readonly inFlight = new Set<ParameterGradients>();
  private completed = false;
  /** The item the sink applied during the current push, if any. */
  private applied: ParameterGradients | null = null;

  constructor(operators: readonly GradientOperator[], sink: GradientSink) {
    const stream = operators.reduce<Observable<ParameterGradients>>((s, op) => op(s), this.input);
    // The sink is an operator (not the subscriber's next) so that its errors become the stream's error.
    const applied = stream.pipe(
      tap((g) => {
        if (g.decided) {
          throw new Error(`gradientOperators: the gradients of steps ${g.describe()} reached the optimizer after their step ended as '${g.decision}'; an asynchronous operator must mark them with g.pending() (or be written with asyncGradients)`);
        }
        sink(g);
        g.markApplied();
        this.applied = g;
      }),
    );
    this.subscription = applied.subscribe({
      error: (reason: unknown) => {
        this.error = { reason };
        for (const g of this.inFlight) g.markFailed(reason);
        this.inFlight.clear();
      },
      complete: () => (this.completed = true),
    });
  }

  /**
   * Sends one step's gradients through the operators. Resolves synchronously when the outcome is
   * known at once (the usual case), else returns a Promise of it (an asynchronous operator).
   * Throws (or rejects) with the stream's error if an operator or the optimizer failed.
   */
  push(g: ParameterGradients): UpdateOutcome | Promise<UpdateOutcome> {
    if (this.error) throw this.error.reason;
    if (this.completed) {
      g.drop();
      return 'dropped';
    }
    this.applied = null;
    this.input.next(g);
    // An operator or the optimizer may have failed during next().
    const failed = this.error as { reason: unknown } | null;
    if (failed) throw failed.reason;
    // An operator may have passed on a new item made from g's gradients without listing g: g went with it.
    const applied = this.applied as ParameterGradients | null;
    if (!g.decided && !g.isPending && applied) g.follow(applied);
    const decided = g.decision;
    if (decided) return decided;
    if (!g.isPending) {
      g.drop();
      return 'dropped';
    }
    this.inFlight.add(g);
    return g.outcome.finally(() => this.inFlight.delete(g));
  }

  /** Tears the operators down (their finalizers free what they hold, e.g. accumulators). */
  close(): void {
    this.subscription.unsubscribe();
    this.input.complete();
  }
}

/**
 * The first parameter whose gradient holds a NaN or an infinity, or null. A SIMD column sum over
 * each gradient (one pass at memory speed, into a 64-float scratch) finds candidates: any NaN or
 * infinity makes its column's sum non-finite; a sum that overflowed from huge finite values is
 * then cleared by an exact scan.
 */
export function firstNonFinite(parameters: readonly Parameter[], step: StepContext): Parameter | null {
  const COLS = 64;
  let scratch: Tensor | null = null;
  const k = step.engine.kernels;
  for (const p of parameters) {
    // A frozen parameter's gradient is never applied (and may be stale); a sparse one is zero outside its rows.
    if (!p.trainable) continue;
    if (p.sparseRows && p.shape.length > 0) {
      if (!rowsFinite(step.engine.heap.f32, p.grad.ptr >> 2, p.sparseRows, p.grad.size / p.shape[0]!)) return p;
      continue;
    }
    scratch ??= step.alloc([COLS]);
    const n = p.grad.size;
    const rows = Math.floor(n / COLS);
    if (rows > 0) k.sumRows(p.grad.ptr, scratch.ptr, rows, COLS, 0);
    const heap = step.engine.heap.f32;
    let suspect = false;
    const s0 = scratch.ptr >> 2;
    for (let c = 0; c < COLS && rows > 0; c++) if (!Number.isFinite(heap[s0 + c]!)) suspect = true;
    const g0 = p.grad.ptr >> 2;
    for (let i = rows * COLS; i < n; i++) if (!Number.isFinite(heap[g0 + i]!)) suspect = true;
    if (suspect && !p.grad.data().every(Number.isFinite)) return p;
  }
  return null;
}

/** True when every value of the listed rows (of `width` floats from float index `base`) is finite. */
function rowsFinite(heap: Float32Array, base: number, rows: Int32Array, width: number): boolean {
  for (const row of rows) {
    const start = base + row * width;
    for (let i = start; i < start + width; i++) if (!Number.isFinite(heap[i]!)) return false;
  }
  return true;
}

/** Index and value of the first non-finite element of `values`. */
export function firstNonFiniteElement(values: Float32Array): { index: number; value: number } | null {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return { index: i, value: values[i]! };
  return null;
}
