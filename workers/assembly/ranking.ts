// Ranking kernels for recommendation (contract: workers/kernel-api.ts): scores of every row of a
// table against one query vector (SIMD dot products), and the top k of a score vector.

/** scores[i] = (bias ? bias[i] : 0) + Σ_d table[i·dim + d] · query[d], for i < rows. */
export function scoreRows(table: usize, rows: i32, dim: i32, query: usize, bias: usize, scores: usize): void {
  const body = dim & ~3;
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < rows; i++) {
    const row = table + <usize>i * rowBytes;
    let acc = f32x4.splat(0);
    let d = 0;
    for (; d < body; d += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(row + (<usize>d << 2)), v128.load(query + (<usize>d << 2))));
    let s = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
    for (; d < dim; d++) s += load<f32>(row + (<usize>d << 2)) * load<f32>(query + (<usize>d << 2));
    if (bias != 0) s += load<f32>(bias + (<usize>i << 2));
    store<f32>(scores + (<usize>i << 2), s);
  }
}

// @ts-ignore: decorator
@inline function better(sa: f32, ia: i32, sb: f32, ib: i32): bool {
  return sa > sb || (sa == sb && ia < ib);
}

/** Sifts entry `at` of the min-heap (worst candidate on top) of `size` entries down. */
function siftDown(index: usize, score: usize, at: i32, size: i32): void {
  while (true) {
    const l = 2 * at + 1;
    if (l >= size) return;
    let worst = l;
    const r = l + 1;
    if (r < size && better(load<f32>(score + (<usize>worst << 2)), load<i32>(index + (<usize>worst << 2)), load<f32>(score + (<usize>r << 2)), load<i32>(index + (<usize>r << 2)))) worst = r;
    const sa = load<f32>(score + (<usize>at << 2));
    const ia = load<i32>(index + (<usize>at << 2));
    const sw = load<f32>(score + (<usize>worst << 2));
    const iw = load<i32>(index + (<usize>worst << 2));
    if (!better(sa, ia, sw, iw)) return;
    store<f32>(score + (<usize>at << 2), sw);
    store<i32>(index + (<usize>at << 2), iw);
    store<f32>(score + (<usize>worst << 2), sa);
    store<i32>(index + (<usize>worst << 2), ia);
    at = worst;
  }
}

/**
 * The k best of scores[0..n) (higher first; equal scores: lower index first), skipping i with
 * mask[i] ≠ 0 (mask = 0: none) and NaN scores, into outIndex (i32) and outScore in descending order.
 * Fewer than k candidates: the rest is index −1, score −∞.
 */
export function topK(scores: usize, n: i32, k: i32, mask: usize, outIndex: usize, outScore: usize): void {
  let size = 0;
  for (let i = 0; i < n; i++) {
    if (mask != 0 && load<i32>(mask + (<usize>i << 2)) != 0) continue;
    const s = load<f32>(scores + (<usize>i << 2));
    if (s != s) continue;
    if (size < k) {
      // Append and sift up.
      let at = size++;
      store<f32>(outScore + (<usize>at << 2), s);
      store<i32>(outIndex + (<usize>at << 2), i);
      while (at > 0) {
        const parent = (at - 1) >> 1;
        const sp = load<f32>(outScore + (<usize>parent << 2));
        const ip = load<i32>(outIndex + (<usize>parent << 2));
        if (!better(sp, ip, s, i)) break;
        store<f32>(outScore + (<usize>at << 2), sp);
        store<i32>(outIndex + (<usize>at << 2), ip);
        store<f32>(outScore + (<usize>parent << 2), s);
        store<i32>(outIndex + (<usize>parent << 2), i);
        at = parent;
      }
    } else if (k > 0 && better(s, i, load<f32>(outScore), load<i32>(outIndex))) {
      store<f32>(outScore, s);
      store<i32>(outIndex, i);
      siftDown(outIndex, outScore, 0, size);
    }
  }
  // Heap sort: move the worst to the end repeatedly, leaving the best first.
  for (let end = size - 1; end > 0; end--) {
    const s0 = load<f32>(outScore);
    const i0 = load<i32>(outIndex);
    store<f32>(outScore, load<f32>(outScore + (<usize>end << 2)));
    store<i32>(outIndex, load<i32>(outIndex + (<usize>end << 2)));
    store<f32>(outScore + (<usize>end << 2), s0);
    store<i32>(outIndex + (<usize>end << 2), i0);
    siftDown(outIndex, outScore, 0, end);
  }
  for (let j = size; j < k; j++) {
    store<i32>(outIndex + (<usize>j << 2), -1);
    store<f32>(outScore + (<usize>j << 2), -Infinity);
  }
}
