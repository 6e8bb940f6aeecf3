/**
 * Synthetic ratings with a known best RMSE: r = μ + b_u + b_i + ⟨p_u, q_i⟩ + ε, ε ~ N(0, σ²), so no
 * model can beat σ on average and a good one approaches it. Factors are N(0, 1/K) (⟨p, q⟩ has
 * variance ~1/K·…), biases N(0, 0.3²). Users and items are drawn by popularity ∝ rank^-0.5 (users)
 * and rank^-0.8 (items), the ranks a seeded permutation of the ids; a growing share of users and
 * items exists as time goes on (new ids keep arriving); an optional drift re-draws part of the item
 * factors mid-stream.
 */
import { Random } from '../random.ts';

/** Options of {@link syntheticRatings}. */
export interface SyntheticRatingsOptions {
  users: number;
  items: number;
  ratings: number;
  /** Rank K of the interaction term (default 10). */
  rank?: number;
  /** Noise standard deviation σ: the best achievable RMSE (default 0.5). */
  noise?: number;
  /** Global mean μ (default 3.5). */
  mean?: number;
  /** Share of users and items present from the start (default 0.5); the rest arrive uniformly over the stream. */
  initialShare?: number;
  /** From this fraction of the stream on (e.g. 0.5), item factors move: q ← √(1−s)·q + √s·q', q' fresh (default: no drift). */
  drift?: { at: number; strength: number };
  seed?: number;
}

/** What {@link syntheticRatings} returns, in stream order. */
export interface SyntheticRatings {
  users: Int32Array;
  items: Int32Array;
  ratings: Float32Array;
  /** The noise-free value of each rating (its RMSE against `ratings` is ≈ σ). */
  expected: Float32Array;
  rank: number;
  noise: number;
}

/** Inverse-CDF sampler over weights ∝ rank^-exponent, ranks a permutation of the ids. */
function powerLawSampler(n: number, exponent: number, rng: Random): () => number {
  const order = new Int32Array(n).map((_, i) => i);
  rng.shuffle(order);
  const cumulative = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) cumulative[r] = total += (r + 1) ** -exponent;
  return () => {
    const u = rng.uniform() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return order[lo]!;
  };
}

/**
 * Generates a stream of ratings from a low-rank model with biases and Gaussian noise.
 *
 * Usage: `const { users, items, ratings } = syntheticRatings({ users: 2000, items: 4000, ratings: 1_000_000, noise: 0.5, seed: 1 });`
 */
export function syntheticRatings(options: SyntheticRatingsOptions): SyntheticRatings {
  const { users: U, items: I, ratings: n } = options;
  for (const [name, v] of [['users', U], ['items', I], ['ratings', n]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`syntheticRatings: ${name} must be a positive integer, got ${v}`);
  }
  const K = options.rank ?? 10;
  const sigma = options.noise ?? 0.5;
  const mu = options.mean ?? 3.5;
  const share = options.initialShare ?? 0.5;
  if (!Number.isInteger(K) || K < 1) throw new RangeError(`syntheticRatings: rank must be a positive integer, got ${K}`);
  if (!(sigma >= 0)) throw new RangeError(`syntheticRatings: noise must be ≥ 0, got ${sigma}`);
  if (!(share > 0 && share <= 1)) throw new RangeError(`syntheticRatings: initialShare must be in (0, 1], got ${share}`);
  const rng = new Random(options.seed ?? 0);
  const scale = 1 / Math.sqrt(K);
  const p = Float64Array.from({ length: U * K }, () => scale * rng.normal());
  const q = Float64Array.from({ length: I * K }, () => scale * rng.normal());
  const bu = Float64Array.from({ length: U }, () => 0.3 * rng.normal());
  const bi = Float64Array.from({ length: I }, () => 0.3 * rng.normal());
  const pickUser = powerLawSampler(U, 0.5, rng);
  const pickItem = powerLawSampler(I, 0.8, rng);
  // Arrival: id a exists from time max(0, (a/N − share)/(1 − share)) (ids arrive in id order).
  const present = (id: number, count: number, t: number) => share >= 1 || id < Math.ceil(count * (share + (1 - share) * t));
  const users = new Int32Array(n);
  const items = new Int32Array(n);
  const ratings = new Float32Array(n);
  const expected = new Float32Array(n);
  const driftAt = options.drift ? Math.floor(options.drift.at * n) : -1;
  for (let j = 0; j < n; j++) {
    if (j === driftAt) {
      const s = options.drift!.strength;
      for (let i = 0; i < q.length; i++) q[i] = Math.sqrt(1 - s) * q[i]! + Math.sqrt(s) * scale * rng.normal();
    }
    const t = j / n;
    let u: number;
    do u = pickUser(); while (!present(u, U, t));
    let i: number;
    do i = pickItem(); while (!present(i, I, t));
    let value = mu + bu[u]! + bi[i]!;
    for (let k = 0; k < K; k++) value += p[u * K + k]! * q[i * K + k]!;
    users[j] = u;
    items[j] = i;
    expected[j] = value;
    ratings[j] = value + sigma * rng.normal();
  }
  return { users, items, ratings, expected, rank: K, noise: sigma };
}
