/**
 * Where to cut a sequential model into pipeline stages: a pipeline runs at the pace of its slowest
 * stage, so the cuts should minimise the largest stage's cost (the linear partition problem, solved
 * exactly by dynamic programming over the layers' measured costs).
 */

/**
 * The cuts (indices of the first layer of stages 1…K−1) that split layers with these costs into
 * `stages` contiguous, non-empty stages with the smallest possible largest stage cost; ties go to
 * the earliest cut. Also returns each stage's cost.
 *
 * Usage: `const { cuts } = balancedCuts([0.9, 0.1, 0.2, 7.1, 0.3, 0.2, 0, 0.1], 2); // cuts [3]`
 */
export function balancedCuts(costs: readonly number[], stages: number): { cuts: number[]; stageCosts: number[] } {
  const n = costs.length;
  if (!(Number.isInteger(stages) && stages >= 2)) throw new RangeError(`balancedCuts: stages must be an integer ≥ 2, got ${stages}`);
  if (n < stages) throw new RangeError(`balancedCuts: ${n} layers cannot make ${stages} non-empty stages`);
  costs.forEach((c, i) => {
    if (!(Number.isFinite(c) && c >= 0)) throw new RangeError(`balancedCuts: cost of layer ${i} must be a finite number ≥ 0, got ${c}`);
  });
  const prefix = [0];
  for (const c of costs) prefix.push(prefix.at(-1)! + c);
  const span = (from: number, to: number) => prefix[to]! - prefix[from]!;
  // best[k][i]: the smallest largest-stage cost of layers 0..i−1 in k stages; from[k][i] the last cut.
  const best = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const from = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(0));
  for (let i = 1; i <= n; i++) best[1]![i] = span(0, i);
  for (let k = 2; k <= stages; k++) {
    for (let i = k; i <= n; i++) {
      for (let j = k - 1; j < i; j++) {
        const cost = Math.max(best[k - 1]![j]!, span(j, i));
        if (cost < best[k]![i]!) {
          best[k]![i] = cost;
          from[k]![i] = j;
        }
      }
    }
  }
  const cuts: number[] = [];
  for (let k = stages, i = n; k >= 2; k--) {
    i = from[k]![i]!;
    cuts.unshift(i);
  }
  const bounds = [0, ...cuts, n];
  return { cuts, stageCosts: cuts.concat(n).map((end, s) => span(bounds[s]!, end)) };
}
