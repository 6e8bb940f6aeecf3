/**
 * Magnitude masks: the k-th smallest magnitude found by selection (Floyd–Rivest-style quickselect on a
 * copy, O(n) on average) instead of a full sort, then one pass that writes the 0/1 mask.
 */

/** The value that would be at position `k` (0-based) if `values` were sorted; reorders `values`. */
export function selectKth(values: Float32Array, k: number): number {
  if (!(k >= 0 && k < values.length)) throw new RangeError(`selectKth: k ${k} is outside [0, ${values.length})`);
  let lo = 0;
  let hi = values.length - 1;
  while (hi > lo) {
    // Median of three as the pivot keeps sorted and constant inputs linear.
    const mid = (lo + hi) >>> 1;
    const a = values[lo]!, b = values[mid]!, c = values[hi]!;
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i]! < pivot) i++;
      while (values[j]! > pivot) j--;
      if (i <= j) {
        const t = values[i]!;
        values[i] = values[j]!;
        values[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k]!;
  }
  return values[k]!;
}

/** Magnitudes of several arrays, concatenated into one new array. */
function magnitudes(arrays: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) out[at + i] = Math.abs(a[i]!);
    at += a.length;
  }
  return out;
}

/**
 * Writes into each `masks[i]` 0 for the `round(sparsity · n)` smallest magnitudes over all `weights` together
 * (n their total size) and 1 elsewhere; ties at the threshold are pruned in order. One array: per-layer
 * pruning; several: global pruning (one threshold for all). Returns how many were pruned.
 *
 * Usage: `magnitudeMasks([kernel], [mask], 0.8)`
 */
export function magnitudeMasks(weights: readonly Float32Array[], masks: readonly Float32Array[], sparsity: number): number {
  const all = magnitudes(weights);
  const prune = Math.min(all.length, Math.round(sparsity * all.length));
  for (const m of masks) m.fill(1);
  if (prune === 0) return 0;
  const threshold = selectKth(all, prune - 1);
  // Everything strictly below the threshold goes; of the values equal to it, as many as are still needed.
  let below = 0;
  for (const w of weights) for (let i = 0; i < w.length; i++) if (Math.abs(w[i]!) < threshold) below++;
  let ties = prune - below;
  weights.forEach((w, n) => {
    const m = masks[n]!;
    for (let i = 0; i < w.length; i++) {
      const a = Math.abs(w[i]!);
      if (a < threshold) m[i] = 0;
      else if (a === threshold && ties > 0) {
        m[i] = 0;
        ties--;
      }
    }
  });
  return prune;
}

/** values ← values ⊙ mask. Usage: `applyMask(kernel, mask)` */
export function applyMask(values: Float32Array, mask: Float32Array): void {
  for (let i = 0; i < values.length; i++) values[i]! *= mask[i]!;
}

/** Fraction of exact zeros. Usage: `sparsityOf(model.getWeights().get('dense_1/kernel')!)` */
export function sparsityOf(values: Float32Array): number {
  let zeros = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) zeros++;
  return values.length === 0 ? 0 : zeros / values.length;
}
