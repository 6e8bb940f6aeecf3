import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { balancedCuts } from '../src/distributed/index.ts';

describe('balancedCuts (where to cut a model into pipeline stages)', () => {
  it('minimises the largest stage cost, checked against every possible cut', () => {
    const costs = [9, 1, 2, 71, 3, 2, 0, 1];
    assert.deepEqual(balancedCuts(costs, 2), { cuts: [3], stageCosts: [12, 77] });
    const uneven = [4, 1, 1, 1, 1, 4, 2, 2];
    for (const stages of [2, 3, 4]) {
      const { cuts, stageCosts } = balancedCuts(uneven, stages);
      assert.equal(cuts.length, stages - 1);
      assert.equal(stageCosts.reduce((a, b) => a + b, 0), 16);
      // Brute force over every set of cuts.
      let bestMax = Infinity;
      const search = (from: number, left: number, worst: number) => {
        if (left === 1) return void (bestMax = Math.min(bestMax, Math.max(worst, uneven.slice(from).reduce((a, b) => a + b, 0))));
        for (let cut = from + 1; cut <= uneven.length - left + 1; cut++) search(cut, left - 1, Math.max(worst, uneven.slice(from, cut).reduce((a, b) => a + b, 0)));
      };
      search(0, stages, 0);
      assert.equal(Math.max(...stageCosts), bestMax, `${stages} stages: cuts ${cuts}`);
    }
  });

  it('refuses impossible or bad requests naming them', () => {
    assert.throws(() => balancedCuts([1, 2], 3), /2 layers cannot make 3 non-empty stages/);
    assert.throws(() => balancedCuts([1, Number.NaN, 2], 2), /cost of layer 1 must be a finite number ≥ 0, got NaN/);
    assert.throws(() => balancedCuts([1, 2], 1), /stages must be an integer ≥ 2, got 1/);
  });
});
