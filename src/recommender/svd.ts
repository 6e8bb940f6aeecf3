/**
 * Batch baselines on a ratings matrix: the biases-only model (μ + b_u + b_i, regularised means) and
 * truncated SVD of the residual matrix by randomised SVD (Halko, Martinsson & Tropp 2011: a
 * Gaussian sketch, power iterations, QR, and the SVD of the small projected matrix), with every
 * large product on the engine's GEMM. Missing ratings are zeros of the residual (imputed by the
 * biases), the classical "SVD" of a ratings matrix.
 */
import { defaultEngine, type Engine } from '../engine.ts';
import { Random } from '../random.ts';
import type { Interactions } from './recommend.ts';

/** A fitted biases-only model: r̂ = μ + b_u + b_i. */
export interface BiasModel {
  mean: number;
  userBias: Float64Array;
  itemBias: Float64Array;
  predict(user: number, item: number): number;
}

/**
 * Fits μ, b_u, b_i by alternating regularised means (`lambda` shrinks rare ids toward 0).
 *
 * Usage: `const base = fitBiases(train, { users: 943, items: 1682 }); base.predict(0, 5);`
 */
export function fitBiases(data: Interactions, size: { users: number; items: number }, options: { lambda?: number; iterations?: number } = {}): BiasModel {
  const lambda = options.lambda ?? 5;
  const n = data.ratings.length;
  if (n === 0) throw new RangeError('fitBiases: no ratings');
  let mean = 0;
  for (let r = 0; r < n; r++) mean += data.ratings[r]!;
  mean /= n;
  const userBias = new Float64Array(size.users);
  const itemBias = new Float64Array(size.items);
  const sumU = new Float64Array(size.users);
  const cntU = new Float64Array(size.users);
  const sumI = new Float64Array(size.items);
  const cntI = new Float64Array(size.items);
  for (let it = 0; it < (options.iterations ?? 5); it++) {
    sumI.fill(0);
    cntI.fill(0);
    for (let r = 0; r < n; r++) {
      sumI[data.items[r]!] += data.ratings[r]! - mean - userBias[data.users[r]!]!;
      cntI[data.items[r]!]++;
    }
    for (let i = 0; i < size.items; i++) itemBias[i] = sumI[i]! / (lambda + cntI[i]!);
    sumU.fill(0);
    cntU.fill(0);
    for (let r = 0; r < n; r++) {
      sumU[data.users[r]!] += data.ratings[r]! - mean - itemBias[data.items[r]!]!;
      cntU[data.users[r]!]++;
    }
    for (let u = 0; u < size.users; u++) userBias[u] = sumU[u]! / (lambda + cntU[u]!);
  }
  return { mean, userBias, itemBias, predict: (u, i) => mean + (userBias[u] ?? 0) + (itemBias[i] ?? 0) };
}

/** A fitted truncated SVD: r̂ = baseline + ⟨left[u], right[i]⟩ (rank k). */
export interface TruncatedSvd {
  rank: number;
  baseline: BiasModel;
  /** users × rank (U_k·Σ_k). */
  left: Float32Array;
  /** items × rank (V_k). */
  right: Float32Array;
  /** The k largest singular values of the residual matrix, descending. */
  singularValues: Float64Array;
  predict(user: number, item: number): number;
}

/**
 * Orthonormalises the columns of a rows × cols row-major matrix in place: Gram–Schmidt in float64
 * with a second projection pass ("twice is enough"), and columns that fall to rounding noise
 * (a rank-deficient sketch) set to zero instead of normalised, so Q stays orthonormal on its support.
 */
function orthonormalizeColumns(a: Float32Array, rows: number, cols: number): void {
  const q = Float64Array.from(a);
  for (let c = 0; c < cols; c++) {
    let before = 0;
    for (let r = 0; r < rows; r++) before += q[r * cols + c]! ** 2;
    for (let pass = 0; pass < 2; pass++) {
      for (let prev = 0; prev < c; prev++) {
        let d = 0;
        for (let r = 0; r < rows; r++) d += q[r * cols + c]! * q[r * cols + prev]!;
        for (let r = 0; r < rows; r++) q[r * cols + c] -= d * q[r * cols + prev]!;
      }
    }
    let norm = 0;
    for (let r = 0; r < rows; r++) norm += q[r * cols + c]! ** 2;
    const keep = norm > 1e-10 * before && norm > 0;
    const scale = keep ? 1 / Math.sqrt(norm) : 0;
    for (let r = 0; r < rows; r++) q[r * cols + c] *= scale;
  }
  a.set(q);
}

/** Eigen-decomposition of a symmetric n × n matrix (cyclic Jacobi, float64): values descending, vectors as columns. */
export function symmetricEigen(m: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(m);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = [...Array(n).keys()].sort((x, y) => a[y * n + y]! - a[x * n + x]!);
  const values = Float64Array.from(order, (i) => a[i * n + i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src]!;
  });
  return { values, vectors };
}

/** Options of {@link truncatedSvd}. */
export interface TruncatedSvdOptions {
  users: number;
  items: number;
  rank: number;
  /** Extra sketch columns (default 10). */
  oversample?: number;
  /** Power iterations (default 2): sharpen the spectrum when it decays slowly. */
  powerIterations?: number;
  /** Shrinkage of the biases (see {@link fitBiases}). */
  lambda?: number;
  seed?: number;
  engine?: Engine;
}

/**
 * Randomised truncated SVD of the residual ratings matrix (ratings minus the biases, zeros where
 * missing), products on the engine's GEMM.
 *
 * Usage: `const svd = await truncatedSvd(train, { users: 2000, items: 4000, rank: 10 }); svd.predict(u, i);`
 */
export async function truncatedSvd(data: Interactions, options: TruncatedSvdOptions): Promise<TruncatedSvd> {
  const { users: m, items: n, rank } = options;
  const l = Math.min(rank + (options.oversample ?? 10), m, n);
  if (!Number.isInteger(rank) || rank < 1 || rank > Math.min(m, n)) throw new RangeError(`truncatedSvd: rank must be an integer in [1, ${Math.min(m, n)}], got ${rank}`);
  const engine = options.engine ?? defaultEngine();
  const heap = engine.heap;
  const baseline = fitBiases(data, { users: m, items: n }, options.lambda === undefined ? {} : { lambda: options.lambda });
  const A = heap.alloc(m * n * 4);
  const Y = heap.alloc(m * l * 4);
  const Z = heap.alloc(n * l * 4);
  const B = heap.alloc(l * n * 4);
  const G = heap.alloc(l * l * 4);
  try {
    // The residual matrix (a repeated (user, item) keeps the last rating).
    heap.f32.fill(0, A >> 2, (A >> 2) + m * n);
    for (let r = 0; r < data.ratings.length; r++) {
      const u = data.users[r]!;
      const i = data.items[r]!;
      heap.f32[(A >> 2) + u * n + i] = data.ratings[r]! - baseline.predict(u, i);
    }
    const rng = new Random(options.seed ?? 0);
    const omega = heap.f32.subarray(Z >> 2, (Z >> 2) + n * l);
    for (let i = 0; i < omega.length; i++) omega[i] = rng.normal();
    const orthonormalize = (ptr: number, rows: number) => {
      const copy = heap.f32.slice(ptr >> 2, (ptr >> 2) + rows * l);
      orthonormalizeColumns(copy, rows, l);
      heap.f32.set(copy, ptr >> 2);
    };
    await engine.compute.gemm(0, 0, m, l, n, 1, A, n, Z, l, 0, Y, l); // Y = A·Ω
    for (let q = 0; q < (options.powerIterations ?? 2); q++) {
      orthonormalize(Y, m);
      await engine.compute.gemm(1, 0, n, l, m, 1, A, n, Y, l, 0, Z, l); // Z = Aᵀ·Y
      orthonormalize(Z, n);
      await engine.compute.gemm(0, 0, m, l, n, 1, A, n, Z, l, 0, Y, l); // Y = A·Z
    }
    orthonormalize(Y, m); // Q
    await engine.compute.gemm(1, 0, l, n, m, 1, Y, l, A, n, 0, B, n); // B = Qᵀ·A
    await engine.compute.gemm(0, 1, l, l, n, 1, B, n, B, n, 0, G, l); // B·Bᵀ
    const gram = Float64Array.from(heap.f32.subarray(G >> 2, (G >> 2) + l * l));
    const { values, vectors } = symmetricEigen(gram, l);
    // A_k = Q·Ũ_k·Ũ_kᵀ·B: left = Q·Ũ_k (users × k), right = (Ũ_kᵀ·B)ᵀ (items × k).
    const Q = heap.f32.slice(Y >> 2, (Y >> 2) + m * l);
    const Bm = heap.f32.slice(B >> 2, (B >> 2) + l * n);
    const left = new Float32Array(m * rank);
    const right = new Float32Array(n * rank);
    for (let u = 0; u < m; u++) {
      for (let k = 0; k < rank; k++) {
        let s = 0;
        for (let j = 0; j < l; j++) s += Q[u * l + j]! * vectors[j * l + k]!;
        left[u * rank + k] = s;
      }
    }
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < rank; k++) {
        let s = 0;
        for (let j = 0; j < l; j++) s += vectors[j * l + k]! * Bm[j * n + i]!;
        right[i * rank + k] = s;
      }
    }
    const singularValues = Float64Array.from(values.subarray(0, rank), (v) => Math.sqrt(Math.max(0, v)));
    return {
      rank, baseline, left, right, singularValues,
      predict(u, i) {
        let s = baseline.predict(u, i);
        for (let k = 0; k < rank; k++) s += left[u * rank + k]! * right[i * rank + k]!;
        return s;
      },
    };
  } finally {
    for (const p of [A, Y, Z, B, G]) heap.free(p);
  }
}

/** RMSE and MAE of `predict` on interactions. */
export function regressionErrors(data: Interactions, predict: (user: number, item: number) => number): { rmse: number; mae: number } {
  let se = 0;
  let ae = 0;
  for (let r = 0; r < data.ratings.length; r++) {
    const e = predict(data.users[r]!, data.items[r]!) - data.ratings[r]!;
    se += e * e;
    ae += Math.abs(e);
  }
  return { rmse: Math.sqrt(se / data.ratings.length), mae: ae / data.ratings.length };
}
