import { zeros } from '../src/initializers.ts';
import { ShapeError, type BuildContext, type Layer, type Parameter, type StepContext } from '../src/layer.ts';
import { formatShape, type DType, type Shape, type Tensor } from '../src/tensor.ts';
import { constructLayer, registerLayer } from '../src/registry.ts';

/** What {@link idEmbedding} does with an id at or past its `maxIds`. */
export type IdOverflowPolicy = 'error' | 'hash';

/** Options of {@link idEmbedding}. */
export interface IdEmbeddingOptions {
  /**
   * Standard deviation of the normal draw that starts a row when its id is first learnt from
   * (default 0.1; 0 keeps new rows at zero, right for biases).
   */
  initStd?: number;
  /**
   * L2 on the rows looked up (each occurrence adds λ·‖row‖²/rows to the batch loss and 2λ·row/rows
   * to the row's gradient): matrix factorisation's regularisation, which leaves rows not in the
   * batch untouched (a penalty on the whole table would shrink rarely seen ids to zero). Default 0.
   */
  l2?: number;
  /**
   * An id ≥ maxIds: 'error' (default) fails the batch naming the id, before anything changes;
   * 'hash' folds it into [0, maxIds) by a fixed integer hash (ids then share rows).
   */
  onOverflow?: IdOverflowPolicy;
  /**
   * Keep the table's gradient zero outside the rows of the step by clearing only the rows the
   * previous backward wrote, instead of the whole table: per-step cost follows the batch, not the
   * table (pair it with a `lazy` optimizer). It assumes nothing else writes the gradient outside
   * those rows between steps (scaling, as clipping does, is fine; accumulating gradients over steps
   * is not). Default false: the whole gradient is written every step.
   */
  sparse?: boolean;
  name?: string;
}

/** A fixed 32-bit integer hash (murmur3's finaliser): spreads consecutive ids over the table. */
export function hashId(id: number, buckets: number): number {
  let h = id >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) % buckets;
}

/**
 * An embedding of open-ended ids (users, items) that learns online: row `id` of a `[maxIds, dim]`
 * table, whose rows come into use as their ids arrive. A row stays exactly zero until its id is
 * first learnt from, so an id never trained on contributes nothing (a recommender predicts an unseen
 * user or item from the other terms: the biases); at its first backward the row starts from a seeded
 * normal draw (`initStd`) and the per-id count `seen` goes up. Both live in parameters (`seen` is not
 * trainable), so a checkpoint carries the rows in use and a resumed model continues bit for bit.
 * The table is reserved at its configured maximum; `onOverflow` says what an id past it does.
 * Shape rule: int32 ids `[...]` → `[..., dim]`. Backward: scatter-add of dy (plus the L2 term) into
 * the rows of the batch's ids; ids have no gradient.
 */
class IdEmbedding implements Layer {
  readonly kind = 'idEmbedding';
  readonly inputDType: DType = 'int32';
  name: string;
  private table!: Parameter;
  private seen!: Parameter;
  private readonly initStd: number;
  private readonly l2: number;
  private readonly onOverflow: IdOverflowPolicy;
  private readonly sparse: boolean;
  /** Sparse mode: rows the last backward wrote (cleared by the next), and whether the gradient was ever cleared whole. */
  private lastRows: Int32Array = new Int32Array(0);
  private cleared = false;
  /** Marks rows already listed in this backward (generation counter per row). */
  private marks = new Int32Array(0);
  private generation = 0;
  private readonly rowBuffers = [new Int32Array(16), new Int32Array(16)];
  private turn = 0;

  constructor(readonly maxIds: number, readonly dim: number, options: IdEmbeddingOptions) {
    if (!Number.isInteger(maxIds) || maxIds < 1) throw new RangeError(`idEmbedding: maxIds must be a positive integer, got ${maxIds}`);
    if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`idEmbedding: dim must be a positive integer, got ${dim}`);
    this.initStd = options.initStd ?? 0.1;
    this.l2 = options.l2 ?? 0;
    this.onOverflow = options.onOverflow ?? 'error';
    this.sparse = options.sparse ?? false;
    if (!(this.initStd >= 0 && Number.isFinite(this.initStd))) throw new RangeError(`idEmbedding: initStd must be a finite number ≥ 0, got ${this.initStd}`);
    if (!(this.l2 >= 0 && Number.isFinite(this.l2))) throw new RangeError(`idEmbedding: l2 must be a finite number ≥ 0, got ${this.l2}`);
    if (this.onOverflow !== 'error' && this.onOverflow !== 'hash') throw new RangeError(`idEmbedding: onOverflow must be 'error' or 'hash', got ${JSON.stringify(this.onOverflow)}`);
    this.name = options.name ?? '';
  }

  build(inputShape: Shape, ctx: BuildContext): Shape {
    if (inputShape.some((d) => !Number.isInteger(d) || d < 1)) throw new ShapeError(`${this.name} (idEmbedding)`, `input shape ${formatShape(inputShape)} must be positive integers`);
    this.table = ctx.addParameter('embeddings', [this.maxIds, this.dim], zeros(), { fanIn: this.maxIds, fanOut: this.dim });
    this.seen = ctx.addParameter('seen', [this.maxIds], zeros(), { fanIn: 1, fanOut: 1 });
    this.seen.trainable = false;
    return [...inputShape, this.dim];
  }

  parameters(): Parameter[] {
    return [this.table, this.seen];
  }

  /** The table: `[maxIds, dim]`, row `id` for id `id` (zero while unseen). */
  get embeddings(): Parameter {
    return this.table;
  }

  /** How many times each row was learnt from (0: never seen). */
  get counts(): Parameter {
    return this.seen;
  }

  /** Rows learnt from at least once. */
  rowsInUse(): number {
    const counts = this.seen.value.data();
    let n = 0;
    for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) n++;
    return n;
  }

  /** The table row of `id` (applying the overflow policy), or throws naming the id. */
  rowOf(id: number): number {
    if (id >= 0 && id < this.maxIds) return id;
    if (!(Number.isInteger(id) && id >= 0)) throw new RangeError(`${this.name} (idEmbedding): id ${id} is not a non-negative integer`);
    if (this.onOverflow === 'hash') return hashId(id, this.maxIds);
    throw new RangeError(`${this.name} (idEmbedding): id ${id} is past the configured maximum (maxIds ${this.maxIds}; onOverflow: 'hash' would share rows)`);
  }

  forward(x: Tensor, step: StepContext): Tensor {
    if (x.dtype !== 'int32') throw new TypeError(`${this.name} (idEmbedding): input is ${x.dtype}; ids must be an Int32 column`);
    const { f32, i32 } = step.engine.heap;
    const ids = x.ptr >> 2;
    // Validate every id first: a bad batch fails before anything is written.
    const rows = step.alloc(x.shape, 'int32');
    const r = rows.ptr >> 2;
    for (let i = 0; i < x.size; i++) {
      const id = i32[ids + i]!;
      try {
        i32[r + i] = this.rowOf(id);
      } catch (error) {
        throw new RangeError(`${(error as Error).message} (row ${Math.floor(i / (x.size / x.shape[0]!))} of the batch)`);
      }
    }
    const y = step.alloc([...x.shape, this.dim]);
    const table = this.table.value.ptr >> 2;
    const out = y.ptr >> 2;
    const dim = this.dim;
    for (let i = 0; i < x.size; i++) {
      const row = i32[r + i]!;
      f32.copyWithin(out + i * dim, table + row * dim, table + (row + 1) * dim);
    }
    step.save(this, rows);
    return y;
  }

  backward(dy: Tensor, step: StepContext): null {
    const [rows] = step.restore(this) as [Tensor];
    const { f32, i32 } = step.engine.heap;
    const grad = this.table.grad.ptr >> 2;
    const table = this.table.value.ptr >> 2;
    const counts = this.seen.value.ptr >> 2;
    const dim = this.dim;
    const r = rows.ptr >> 2;
    const touched = this.distinctRows(i32.subarray(r, r + rows.size));
    if (this.sparse && this.cleared) {
      for (const row of this.lastRows) f32.fill(0, grad + row * dim, grad + (row + 1) * dim);
    } else {
      f32.fill(0, grad, grad + this.maxIds * dim);
      f32.fill(0, this.seen.grad.ptr >> 2, (this.seen.grad.ptr >> 2) + this.maxIds);
      this.cleared = this.sparse;
    }
    this.lastRows = touched;
    this.table.sparseRows = touched;
    const g = dy.ptr >> 2;
    const decay = (2 * this.l2) / step.rows;
    let penalty = 0;
    for (let i = 0; i < rows.size; i++) {
      const row = i32[r + i]!;
      const dst = grad + row * dim;
      const src = g + i * dim;
      const value = table + row * dim;
      for (let d = 0; d < dim; d++) f32[dst + d] = f32[dst + d]! + f32[src + d]!;
      if (decay > 0) {
        for (let d = 0; d < dim; d++) {
          const v = f32[value + d]!;
          f32[dst + d] = f32[dst + d]! + decay * v;
          penalty += v * v;
        }
      }
    }
    if (decay > 0) step.loss += (this.l2 * penalty) / step.rows;
    // First sight: start the row from a seeded draw now that it is learnt from (the forward read zeros).
    for (let i = 0; i < rows.size; i++) {
      const row = i32[r + i]!;
      if (f32[counts + row] === 0 && step.training && this.initStd > 0) {
        for (let d = 0; d < dim; d++) f32[table + row * dim + d] = this.initStd * step.rng.normal();
      }
      if (step.training) f32[counts + row] = f32[counts + row]! + 1;
    }
    return null;
  }

  /**
   * The distinct rows among `rows`, in first-seen order: a view of one of two buffers used in turn
   * (this step's list and the previous step's `lastRows` never share one), so a one-row step allocates nothing.
   */
  private distinctRows(rows: Int32Array): Int32Array {
    if (this.marks.length !== this.maxIds) this.marks = new Int32Array(this.maxIds);
    this.generation = (this.generation + 1) | 0 || 1;
    const turn = (this.turn ^= 1);
    if (this.rowBuffers[turn]!.length < rows.length) this.rowBuffers[turn] = new Int32Array(Math.max(rows.length, 2 * this.rowBuffers[turn]!.length));
    const out = this.rowBuffers[turn]!;
    let n = 0;
    for (const row of rows) {
      if (this.marks[row] === this.generation) continue;
      this.marks[row] = this.generation;
      out[n++] = row;
    }
    return out.subarray(0, n);
  }

  config(): Record<string, unknown> {
    return { maxIds: this.maxIds, dim: this.dim, initStd: this.initStd, l2: this.l2, onOverflow: this.onOverflow, sparse: this.sparse };
  }
}

/**
 * An embedding for ids that keep arriving (users, items): rows come into use on first sight,
 * unseen ids read zeros, ids past `maxIds` fail the batch or are hashed (`onOverflow`).
 *
 * Usage: `chain([input('user'), idEmbedding(100_000, 32, { l2: 0.02 })])`
 */
export function idEmbedding(maxIds: number, dim: number, options: IdEmbeddingOptions = {}): Layer {
  return new IdEmbedding(maxIds, dim, options);
}

/** The concrete class, for code that reads the table (top-k recommendation). */
export { IdEmbedding };

registerLayer('idEmbedding', (c, name) => {
  const maxIds = c.positiveInteger('maxIds');
  const dim = c.positiveInteger('dim');
  const initStd = c.number('initStd', 0.1);
  const l2 = c.number('l2', 0);
  const onOverflow = c.string('onOverflow', 'error');
  const sparse = c.boolean('sparse', false);
  c.done();
  return constructLayer(c, 'maxIds', () => idEmbedding(maxIds, dim, { name, initStd, l2, onOverflow: onOverflow as IdOverflowPolicy, sparse }));
});
