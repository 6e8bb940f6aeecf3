/**
 * An independent float64 reference of every operator and loss, written plainly over arrays of
 * numbers. It deliberately does not call the engine, the heap or the kernels: it is the oracle the
 * properties compare the engine against, and the function whose central differences stand in for
 * the true gradient. Where the code under test documents a formula (workers/kernel-api.ts,
 * src/losses.ts), the reference restates it from the math, not from the implementation; where a
 * mathematically equal but differently derived form exists (log-sigmoid for BCE), it uses that one
 * so that a shared algebra slip in the code would not also be in the oracle.
 *
 * All tensors are row-major; `rows` is the product of every axis but the last.
 */

/** Anything indexable by number: Float32Array views of the heap, Float64Array, number[]. */
export type Values = ArrayLike<number>;

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

// ---------------------------------------------------------------- operators

/** Dense: y[r, u] = Σ_i x[r, i]·W[i, u] + b[u], W stored [inputs, units] (Keras layout). */
export function dense(x: Values, rows: number, inputs: number, kernel: Values, units: number, bias: Values | null): Float64Array {
  const y = new Float64Array(rows * units);
  for (let r = 0; r < rows; r++) {
    for (let u = 0; u < units; u++) {
      let sum = bias ? bias[u]! : 0;
      for (let i = 0; i < inputs; i++) sum += x[r * inputs + i]! * kernel[i * units + u]!;
      y[r * units + u] = sum;
    }
  }
  return y;
}

function elementwise(x: Values, fn: (v: number) => number): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = fn(x[i]!);
  return y;
}

/** max(x, 0). */
export const relu = (x: Values): Float64Array => elementwise(x, (v) => (v > 0 ? v : 0));

/** x for x > 0, else slope·x. */
export const leakyRelu = (x: Values, slope: number): Float64Array => elementwise(x, (v) => (v > 0 ? v : slope * v));

/** 1 / (1 + e^(−x)); for x < 0 as e^x / (1 + e^x), which keeps full relative precision in the left tail. */
export const sigmoid = (x: Values): Float64Array =>
  elementwise(x, (v) => (v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v))));

/** tanh(x). */
export const tanh = (x: Values): Float64Array => elementwise(x, (v) => Math.tanh(v));

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export const gelu = (x: Values): Float64Array =>
  elementwise(x, (v) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v))));

/** Softmax over the last axis of a rows×cols matrix: e^(x − logsumexp(x)) per row. */
export function softmax(x: Values, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const lse = logSumExp(x, r * cols, cols);
    for (let c = 0; c < cols; c++) y[r * cols + c] = Math.exp(x[r * cols + c]! - lse);
  }
  return y;
}

/** Inverted dropout with a given mask (each entry 0 or 1/(1 − rate)): y = x ⊙ mask. */
export function dropout(x: Values, mask: Values): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * mask[i]!;
  return y;
}

// ---------------------------------------------------------------- losses

/** log Σ_c e^(x[start + c]), shifted by the maximum so that ±1e4 logits stay finite. */
export function logSumExp(x: Values, start: number, n: number): number {
  let max = -Infinity;
  for (let c = 0; c < n; c++) max = Math.max(max, x[start + c]!);
  let sum = 0;
  for (let c = 0; c < n; c++) sum += Math.exp(x[start + c]! - max);
  return max + Math.log(sum);
}

/** Mean over rows of −log softmax(logits[r])[label[r]] = logsumexp(logits[r]) − logits[r, label[r]]. */
export function softmaxCrossEntropy(logits: Values, labels: Values, rows: number, classes: number): number {
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    // Subtracting the picked logit from the shift first keeps the difference exact for large logits.
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]!);
    let s = 0;
    for (let c = 0; c < classes; c++) s += Math.exp(logits[r * classes + c]! - max);
    sum += max - logits[r * classes + labels[r]!]! + Math.log(s);
  }
  return sum / rows;
}

/** Rows whose first maximal logit is the label (the accuracy numerator). */
export function argmaxCorrect(logits: Values, labels: Values, rows: number, classes: number): number {
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c]! > logits[r * classes + best]!) best = c;
    if (best === labels[r]) correct++;
  }
  return correct;
}

/** Mean over every element of (y − t)². */
export function meanSquaredError(y: Values, t: Values): number {
  let sum = 0;
  for (let i = 0; i < y.length; i++) sum += (y[i]! - t[i]!) ** 2;
  return sum / y.length;
}

/** log σ(x), stable on both sides. */
function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/**
 * Binary cross-entropy on logits, mean over every element, written as the textbook
 * −t·log σ(x) − (1 − t)·log σ(−x) (mathematically equal to the code's max(x,0) − x·t + log(1+e^(−|x|))).
 */
export function binaryCrossEntropyWithLogits(x: Values, t: Values): number {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += -t[i]! * logSigmoid(x[i]!) - (1 - t[i]!) * logSigmoid(-x[i]!);
  return sum / x.length;
}

// ---------------------------------------------------------------- gradient-check helpers

/** Σ_i w[i]·y[i]: the scalar L = Σ dy ⊙ f(x) whose gradient is the layer's backward given dy. */
export function weightedSum(w: Values, y: Values): number {
  let sum = 0;
  for (let i = 0; i < y.length; i++) sum += w[i]! * y[i]!;
  return sum;
}

/**
 * Central differences of a scalar function at `at`, one coordinate at a time:
 * (f(v + eps·e_i) − f(v − eps·e_i)) / (2·eps). `at` is copied to float64 and never modified.
 */
export function centralDifferences(f: (v: Float64Array) => number, at: Values, eps: number): Float64Array {
  const v = Float64Array.from(at);
  const grad = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const keep = v[i]!;
    v[i] = keep + eps;
    const plus = f(v);
    v[i] = keep - eps;
    const minus = f(v);
    v[i] = keep;
    grad[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}
