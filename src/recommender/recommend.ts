/**
 * Top-k recommendation and ranking metrics. {@link Recommender} reads a factorisation model's
 * tables by parameter name (`userFactors/embeddings`, `itemFactors/embeddings`, `itemBias/…`), so
 * it serves a model just trained or one loaded from a checkpoint; the scores of every item come from
 * one SIMD kernel pass over the item table (`scoreRows`) and the best k from a heap kernel (`topK`).
 * Models without factor tables (the neural variant) are scored by a forward pass over all items.
 */
import { lastValueFrom, of } from 'rxjs';
import { batchFromColumns, floatColumn } from '../batch.ts';
import type { Parameter } from '../layer.ts';
import { modelHost, type Model } from '../model.ts';

/** Options of {@link Recommender.recommend}. */
export interface RecommendOptions {
  /** Item ids never to recommend (e.g. those the user already rated). */
  exclude?: Iterable<number>;
  /** Also rank items never learnt from (they score by the global terms only). Default false. */
  includeUnseen?: boolean;
}

/** The best items for a user, best first. */
export interface Recommendation {
  items: Int32Array;
  /** Predicted ratings of `items`. */
  scores: Float32Array;
}

/** The model's parameters as heap tensors (the kernels read the tables in place). */
function parameterTensorsOf(model: Model): readonly Parameter[] {
  return modelHost(model).parameters;
}

function findParameter(model: Model, suffix: string): Parameter | null {
  return parameterTensorsOf(model).find((p) => p.name === suffix || p.name.endsWith(`/${suffix}`)) ?? null;
}

/**
 * Recommends items to users from a recommender model (see `biasedMatrixFactorization`).
 * Call `dispose()` to free its scratch memory.
 *
 * Usage: `const rec = new Recommender(model); const { items } = await rec.recommend(42, 10, { exclude: rated });`
 */
export class Recommender {
  private readonly userFactors: Parameter | null;
  private readonly itemFactors: Parameter | null;
  private readonly userBias: Parameter | null;
  private readonly itemBias: Parameter | null;
  private readonly globalMean: Parameter | null;
  private readonly itemSeen: Parameter | null;
  /** Items in the item table (its reserved rows). */
  readonly maxItems: number;
  readonly maxUsers: number;
  private scratch = 0;
  private scratchItems = 0;
  private scratchK = 0;

  constructor(readonly model: Model, private readonly columns: { user?: string; item?: string } = {}) {
    this.userFactors = findParameter(model, 'userFactors/embeddings');
    this.itemFactors = findParameter(model, 'itemFactors/embeddings');
    this.userBias = findParameter(model, 'userBias/embeddings');
    this.itemBias = findParameter(model, 'itemBias/embeddings');
    this.globalMean = findParameter(model, 'globalMean/bias');
    this.itemSeen = findParameter(model, 'itemFactors/seen');
    if (!this.userFactors || !this.itemFactors) throw new TypeError(`Recommender: model '${model.name}' has no 'userFactors/embeddings' and 'itemFactors/embeddings' parameters (build it with biasedMatrixFactorization or neuralRecommender)`);
    this.maxItems = this.itemFactors.shape[0]!;
    this.maxUsers = this.userFactors.shape[0]!;
  }

  /** True when scores come from the factor tables alone (biased MF); false: a forward pass (neural). */
  get factorized(): boolean {
    return this.itemBias !== null && this.globalMean !== null && this.userBias !== null && this.model.layers.length === 2;
  }

  /** Scratch in the shared heap: scores and mask (maxItems each), the top-k index and score buffers. */
  private buffers(k: number): { scores: number; mask: number; index: number; score: number } {
    const heap = this.model.engine.heap;
    if (this.scratch === 0 || this.scratchItems !== this.maxItems || this.scratchK < k) {
      if (this.scratch !== 0) heap.free(this.scratch);
      this.scratchK = Math.max(k, 16);
      this.scratchItems = this.maxItems;
      this.scratch = heap.alloc((2 * this.maxItems + 2 * this.scratchK + this.userFactors!.shape[1]!) * 4);
    }
    const scores = this.scratch;
    const mask = scores + this.maxItems * 4;
    const index = mask + this.maxItems * 4;
    return { scores, mask, index, score: index + this.scratchK * 4 };
  }

  /**
   * The k items with the highest predicted rating for `user`, skipping `exclude` (and items never
   * learnt from unless `includeUnseen`). An unseen user gets the items with the highest biases.
   */
  async recommend(user: number, k: number, options: RecommendOptions = {}): Promise<Recommendation> {
    if (!Number.isInteger(user) || user < 0 || user >= this.maxUsers) throw new RangeError(`recommend: user ${user} is not an id in [0, ${this.maxUsers})`);
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`recommend: k must be a positive integer, got ${k}`);
    const heap = this.model.engine.heap;
    const kernels = this.model.engine.kernels;
    const b = this.buffers(k);
    const dim = this.userFactors!.shape[1]!;
    const query = b.score + this.scratchK * 4;
    // Mask: excluded ids and (by default) rows never learnt from.
    const mask = heap.i32.subarray(b.mask >> 2, (b.mask >> 2) + this.maxItems);
    mask.fill(0);
    if (!options.includeUnseen && this.itemSeen) {
      const seen = this.itemSeen.value.data();
      for (let i = 0; i < this.maxItems; i++) if (seen[i] === 0) mask[i] = 1;
    }
    for (const item of options.exclude ?? []) if (item >= 0 && item < this.maxItems) mask[item] = 1;
    let offset = 0;
    if (this.factorized) {
      heap.f32.copyWithin(query >> 2, (this.userFactors!.value.ptr >> 2) + user * dim, (this.userFactors!.value.ptr >> 2) + (user + 1) * dim);
      kernels.scoreRows(this.itemFactors!.value.ptr, this.maxItems, dim, query, this.itemBias!.value.ptr, b.scores);
      offset = heap.f32[this.globalMean!.value.ptr >> 2]! + heap.f32[(this.userBias!.value.ptr >> 2) + user]!;
    } else {
      const users = new Int32Array(this.maxItems).fill(user);
      const items = new Int32Array(this.maxItems).map((_, i) => i);
      const batch = batchFromColumns({ columns: { [this.columns.user ?? 'user']: { values: users }, [this.columns.item ?? 'item']: { values: items } } });
      const out = await lastValueFrom(of(batch).pipe(this.model.predict()));
      heap.f32.set(floatColumn(out, 'output').values, b.scores >> 2);
    }
    kernels.topK(b.scores, this.maxItems, k, b.mask, b.index, b.score);
    const found = heap.i32.subarray(b.index >> 2, (b.index >> 2) + k);
    let n = 0;
    while (n < k && found[n]! >= 0) n++;
    const scores = heap.f32.slice(b.score >> 2, (b.score >> 2) + n);
    for (let i = 0; i < n; i++) scores[i] = scores[i]! + offset;
    return { items: found.slice(0, n), scores };
  }

  /** Frees the scratch memory (the model is not touched). */
  dispose(): void {
    if (this.scratch !== 0) this.model.engine.heap.free(this.scratch);
    this.scratch = 0;
  }
}

/** Held-out interactions for ranking metrics. */
export interface Interactions {
  users: Int32Array;
  items: Int32Array;
  ratings: Float32Array;
}

/** What {@link rankingMetrics} resolves: means over the users with at least one relevant held-out item. */
export interface RankingMetrics {
  k: number;
  users: number;
  precision: number;
  recall: number;
  ndcg: number;
}

/** Items per user, from interaction arrays. */
export function itemsByUser(data: Pick<Interactions, 'users' | 'items'>, keep: (row: number) => boolean = () => true): Map<number, Set<number>> {
  const byUser = new Map<number, Set<number>>();
  for (let r = 0; r < data.users.length; r++) {
    if (!keep(r)) continue;
    let set = byUser.get(data.users[r]!);
    if (!set) byUser.set(data.users[r]!, (set = new Set()));
    set.add(data.items[r]!);
  }
  return byUser;
}

/**
 * precision@k, recall@k and NDCG@k (binary relevance: a held-out rating ≥ `threshold`), excluding
 * each user's training items from their recommendations.
 *
 * Usage: `const m = await rankingMetrics(rec, test, { k: 10, threshold: 4, train });`
 */
export async function rankingMetrics(
  recommender: Recommender, heldOut: Interactions, options: { k: number; threshold?: number; train?: Pick<Interactions, 'users' | 'items'>; maxUsers?: number },
): Promise<RankingMetrics> {
  const { k } = options;
  const threshold = options.threshold ?? 4;
  const relevant = itemsByUser(heldOut, (r) => heldOut.ratings[r]! >= threshold);
  const seen = options.train ? itemsByUser(options.train) : new Map<number, Set<number>>();
  let precision = 0;
  let recall = 0;
  let ndcg = 0;
  let users = 0;
  for (const [user, items] of relevant) {
    if (options.maxUsers !== undefined && users >= options.maxUsers) break;
    const { items: top } = await recommender.recommend(user, k, { exclude: seen.get(user) ?? [] });
    let hits = 0;
    let dcg = 0;
    top.forEach((item, rank) => {
      if (items.has(item)) {
        hits++;
        dcg += 1 / Math.log2(rank + 2);
      }
    });
    let ideal = 0;
    for (let rank = 0; rank < Math.min(k, items.size); rank++) ideal += 1 / Math.log2(rank + 2);
    precision += hits / k;
    recall += hits / items.size;
    ndcg += dcg / ideal;
    users++;
  }
  if (users === 0) throw new RangeError(`rankingMetrics: no held-out rating ≥ ${threshold}`);
  return { k, users, precision: precision / users, recall: recall / users, ndcg: ndcg / users };
}
