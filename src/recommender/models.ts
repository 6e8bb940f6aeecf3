/**
 * Recommenders composed from public layers: `input` columns, `idEmbedding` tables, `dot`,
 * `parallel` and `bias`. Nothing here is a special model class: both builders return an ordinary
 * `Model` (fit, testThenTrain, predict, evaluate, save/load all apply), and {@link Recommender}
 * reads the trained tables back by parameter name, so it works as well on a model loaded from a
 * checkpoint.
 */
import { bias } from '../../operators/bias.ts';
import { dense } from '../../operators/dense.ts';
import { dot } from '../../operators/dot.ts';
import { idEmbedding, type IdOverflowPolicy } from '../../operators/id-embedding.ts';
import { input } from '../../operators/input.ts';
import { parallel } from '../../operators/parallel.ts';
import { relu } from '../../operators/relu.ts';
import type { Engine } from '../engine.ts';
import { constant } from '../initializers.ts';
import { sequential, type Model } from '../model.ts';

/** Options shared by the recommender builders. */
export interface RecommenderOptions {
  /** Largest user id + 1 (the user table's reserved rows). */
  maxUsers: number;
  /** Largest item id + 1. */
  maxItems: number;
  /** Latent factors per user and item (default 16). */
  factors?: number;
  /** Starting value of the global mean (e.g. the mean of the first ratings; default 3.5). */
  globalMean?: number;
  /** L2 on each looked-up factor vector (default 0.02). */
  l2?: number;
  /** L2 on each looked-up bias (default 0.005). */
  biasL2?: number;
  /** Standard deviation of a new factor row (default 0.1). */
  initStd?: number;
  /** What an id past maxUsers/maxItems does (default 'error': the batch fails, the stream's bad-record policy decides before that). */
  onOverflow?: IdOverflowPolicy;
  /**
   * Tables clear only the rows they wrote (`idEmbedding`'s `sparse`), so that with a lazy optimizer
   * (`adam({ lazy: true })`) a step costs what its batch touches, not the tables. Not with gradient
   * accumulation over steps. Default true.
   */
  sparse?: boolean;
  /** Column names (default 'user' and 'item'). */
  userColumn?: string;
  itemColumn?: string;
  seed?: number;
  engine?: Engine;
}

function defaults(o: RecommenderOptions) {
  return {
    K: o.factors ?? 16, mean: o.globalMean ?? 3.5, l2: o.l2 ?? 0.02, biasL2: o.biasL2 ?? 0.005, initStd: o.initStd ?? 0.1,
    onOverflow: o.onOverflow ?? 'error', sparse: o.sparse ?? true, user: o.userColumn ?? 'user', item: o.itemColumn ?? 'item',
    model: { seed: o.seed ?? 0, ...(o.engine ? { engine: o.engine } : {}) },
  } as const;
}

/**
 * Biased matrix factorisation r̂ = μ + b_u + b_i + ⟨p_u, q_i⟩ (Koren's "SVD"), as layers:
 * `parallel([dot(user factors, item factors), user bias, item bias], 'add') → bias(μ)`. An id not
 * learnt yet has zero factors and bias, so a new user or item is predicted from the other terms.
 * Train with `meanSquaredError()` on a `targets` column (the rating), best with `adam({ lazy: true })`.
 *
 * Usage: `const model = biasedMatrixFactorization({ maxUsers: 943, maxItems: 1682, factors: 16 });`
 */
export function biasedMatrixFactorization(options: RecommenderOptions): Model {
  const d = defaults(options);
  const table = (n: number, dim: number, name: string, l2: number, initStd: number) => idEmbedding(n, dim, { l2, initStd, onOverflow: d.onOverflow, sparse: d.sparse, name });
  return sequential([
    parallel([
      [dot([input(d.user), table(options.maxUsers, d.K, 'userFactors', d.l2, d.initStd)], [input(d.item), table(options.maxItems, d.K, 'itemFactors', d.l2, d.initStd)], { name: 'interaction' })],
      [input(d.user), table(options.maxUsers, 1, 'userBias', d.biasL2, 0)],
      [input(d.item), table(options.maxItems, 1, 'itemBias', d.biasL2, 0)],
    ], 'add', { name: 'terms' }),
    bias({ initial: d.mean, name: 'globalMean' }),
  ], { ...d.model, name: 'biasedMF' });
}

/** Options of {@link neuralRecommender}. */
export interface NeuralRecommenderOptions extends RecommenderOptions {
  /** Hidden layer widths of the MLP (default [64, 32]). */
  hidden?: readonly number[];
}

/**
 * The neural variant: an MLP over the concatenated user and item embeddings (NCF's "MLP" tower),
 * composed the same way: `parallel([[input('user'), idEmbedding], [input('item'), idEmbedding]], 'concat') → dense… → dense(1)`.
 *
 * Usage: `const model = neuralRecommender({ maxUsers: 943, maxItems: 1682, factors: 16, hidden: [64, 32] });`
 */
export function neuralRecommender(options: NeuralRecommenderOptions): Model {
  const d = defaults(options);
  const hidden = options.hidden ?? [64, 32];
  return sequential([
    parallel([
      [input(d.user), idEmbedding(options.maxUsers, d.K, { l2: d.l2, initStd: d.initStd, onOverflow: d.onOverflow, sparse: d.sparse, name: 'userFactors' })],
      [input(d.item), idEmbedding(options.maxItems, d.K, { l2: d.l2, initStd: d.initStd, onOverflow: d.onOverflow, sparse: d.sparse, name: 'itemFactors' })],
    ], 'concat', { name: 'embeddings' }),
    ...hidden.flatMap((units) => [dense(units), relu()]),
    dense(1, { biasInitializer: constant(d.mean), name: 'rating' }),
  ], { ...d.model, name: 'neuralMF' });
}
