import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scaledLearningRate } from '../src/distributed/index.ts';

describe('scaledLearningRate (rate scaling for N replicas)', () => {
  it('warms up linearly from the base rate to N× (linear) or √N× (sqrt), then stays there', () => {
    const linear = scaledLearningRate(0.1, { replicas: 4, rule: 'linear', warmupSteps: 10 });
    const sqrt = scaledLearningRate(1e-3, { replicas: 4, rule: 'sqrt', warmupSteps: 0 });
    assert.ok(typeof linear !== 'number' && typeof sqrt !== 'number');
    assert.ok(Math.abs(linear.rateAt(0) - 0.1) < 1e-12);
    assert.ok(Math.abs(linear.rateAt(5) - 0.25) < 1e-12);
    for (const step of [10, 11, 1000, 1e6]) assert.ok(Math.abs(linear.rateAt(step) - 0.4) < 1e-12, `step ${step}: ${linear.rateAt(step)}`);
    for (const step of [0, 500]) assert.ok(Math.abs(sqrt.rateAt(step) - 2e-3) < 1e-15);
    assert.equal(scaledLearningRate(0.1, { replicas: 1, rule: 'linear', warmupSteps: 10 }), 0.1);
  });

  it('refuses bad options naming them', () => {
    assert.throws(() => scaledLearningRate(0.1, { replicas: 0, rule: 'linear', warmupSteps: 1 }), /replicas must be a positive integer, got 0/);
    assert.throws(() => scaledLearningRate(0.1, { replicas: 2, rule: 'cube' as 'linear', warmupSteps: 1 }), /rule must be 'linear' or 'sqrt', got 'cube'/);
    assert.throws(() => scaledLearningRate(-1, { replicas: 2, rule: 'sqrt', warmupSteps: 1 }), /baseRate must be a positive number, got -1/);
  });
});
