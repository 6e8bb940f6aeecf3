/**
 * A bag-of-words logistic regression: the baseline a text classifier must beat. Features are the
 * presence (0/1) of each vocabulary id in a token sequence (padding left out); the weights are fit
 * by Adam on the mean log-loss with L2, in float64, over sparse rows. Small enough to state in
 * full, and what spam filters of the 2000s ran.
 */
import { Random } from './random.ts';

/** A fitted model: P(class 1 | tokens). */
export interface BagOfWordsModel {
  weights: Float64Array;
  bias: number;
  probability(ids: ArrayLike<number>): number;
}

/** Options of {@link bagOfWordsLogisticRegression}. */
export interface BagOfWordsOptions {
  /** Vocabulary size (ids are < it). */
  vocabSize: number;
  /** The padding id (not a feature); default 0. */
  padId?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** L2 strength on the weights (default 1e-4). */
  l2?: number;
  seed?: number;
}

/** The distinct non-padding ids of each row of a `[rows, length]` id matrix. */
function presence(ids: Int32Array, rows: number, padId: number): Int32Array[] {
  const length = ids.length / rows;
  return Array.from({ length: rows }, (_, r) => Int32Array.from(new Set(ids.subarray(r * length, (r + 1) * length))).filter((id) => id !== padId));
}

/**
 * Fits a logistic regression on token presence.
 *
 * Usage: `const lr = bagOfWordsLogisticRegression(trainIds, trainLabels, { vocabSize: vocab.size }); lr.probability(testIds.subarray(0, 200))`
 */
export function bagOfWordsLogisticRegression(ids: Int32Array, labels: Int32Array, options: BagOfWordsOptions): BagOfWordsModel {
  const rows = labels.length;
  if (rows === 0 || ids.length % rows !== 0) throw new RangeError(`bagOfWordsLogisticRegression: ${ids.length} ids do not make ${rows} equal rows`);
  const V = options.vocabSize;
  const padId = options.padId ?? 0;
  const sets = presence(ids, rows, padId);
  for (const s of sets) for (const id of s) if (!(id >= 0 && id < V)) throw new RangeError(`bagOfWordsLogisticRegression: id ${id} is outside the vocabulary (size ${V})`);
  const epochs = options.epochs ?? 30;
  const batchSize = options.batchSize ?? 32;
  const lr = options.learningRate ?? 0.01;
  const l2 = options.l2 ?? 1e-4;
  const w = new Float64Array(V);
  const m = new Float64Array(V + 1);
  const v = new Float64Array(V + 1);
  const g = new Float64Array(V + 1);
  let b = 0;
  let t = 0;
  const rng = new Random(options.seed ?? 0);
  const order = new Int32Array(rows).map((_, i) => i);
  const touched = new Set<number>();
  for (let epoch = 0; epoch < epochs; epoch++) {
    rng.shuffle(order);
    for (let start = 0; start < rows; start += batchSize) {
      const end = Math.min(rows, start + batchSize);
      touched.clear();
      g[V] = 0;
      for (let j = start; j < end; j++) {
        const r = order[j]!;
        let z = b;
        for (const id of sets[r]!) z += w[id]!;
        const err = 1 / (1 + Math.exp(-z)) - labels[r]!;
        for (const id of sets[r]!) {
          if (!touched.has(id)) {
            touched.add(id);
            g[id] = 0;
          }
          g[id] += err / (end - start);
        }
        g[V] += err / (end - start);
      }
      // Lazy Adam: only the weights present in the batch (and the bias) move; L2 on those.
      t++;
      const c1 = 1 - 0.9 ** t;
      const c2 = 1 - 0.999 ** t;
      const step = (i: number, grad: number): number => {
        m[i] = 0.9 * m[i]! + 0.1 * grad;
        v[i] = 0.999 * v[i]! + 0.001 * grad * grad;
        return (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + 1e-8);
      };
      for (const id of touched) w[id] -= step(id, g[id]! + 2 * l2 * w[id]!);
      b -= step(V, g[V]!);
    }
  }
  return {
    weights: w, bias: b,
    probability(row) {
      let z = b;
      for (const id of new Set(Array.from(row))) if (id !== padId && id >= 0 && id < V) z += w[id]!;
      return 1 / (1 + Math.exp(-z));
    },
  };
}

/** Accuracy, precision and recall of the positive class, from predicted and true 0/1 labels. */
export function binaryClassificationMetrics(predicted: ArrayLike<number>, actual: ArrayLike<number>): { accuracy: number; precision: number; recall: number; f1: number; examples: number } {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let correct = 0;
  for (let i = 0; i < actual.length; i++) {
    const p = predicted[i]!;
    const a = actual[i]!;
    if (p === a) correct++;
    if (p === 1 && a === 1) tp++;
    else if (p === 1) fp++;
    else if (a === 1) fn++;
  }
  const precision = tp + fp > 0 ? tp / (tp + fp) : 0;
  const recall = tp + fn > 0 ? tp / (tp + fn) : 0;
  return { accuracy: correct / actual.length, precision, recall, f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0, examples: actual.length };
}
