import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  adam, batchFromArrays, cosineDecay, createEngine, dense, exponentialDecay, piecewiseConstant, Random, relu, scheduleFromConfig, sequential, sgd,
  softmaxCrossEntropy, type Batch, type LearningRateSchedule, type Optimizer,
} from '../src/index.ts';

const engine = createEngine({ threads: 1 });
after(() => engine.close());

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

describe('learning-rate schedules (Keras formulas)', () => {
  it('exponentialDecay: continuous and staircase', () => {
    const smooth = exponentialDecay({ initialRate: 0.1, decaySteps: 10, decayRate: 0.5 });
    close(smooth.rateAt(0), 0.1, 'step 0');
    close(smooth.rateAt(15), 0.1 * 0.5 ** 1.5, 'step 15');
    close(smooth.rateAt(20), 0.025, 'step 20');
    const stairs = exponentialDecay({ initialRate: 0.1, decaySteps: 10, decayRate: 0.5, staircase: true });
    close(stairs.rateAt(9), 0.1, 'staircase step 9');
    close(stairs.rateAt(15), 0.05, 'staircase step 15');
  });

  it('cosineDecay: from the peak to alpha × peak over decaySteps, then flat; linear warm-up first', () => {
    const plain = cosineDecay({ initialRate: 1e-3, decaySteps: 100, alpha: 0.1 });
    close(plain.rateAt(0), 1e-3, 'start');
    close(plain.rateAt(50), 1e-3 * (0.9 * 0.5 + 0.1), 'half way');
    close(plain.rateAt(100), 1e-4, 'end');
    close(plain.rateAt(1000), 1e-4, 'after the end');
    const warm = cosineDecay({ initialRate: 0, warmupSteps: 10, warmupTarget: 2e-3, decaySteps: 100 });
    close(warm.rateAt(0), 0, 'warm-up start');
    close(warm.rateAt(5), 1e-3, 'warm-up middle');
    close(warm.rateAt(10), 2e-3, 'peak');
    close(warm.rateAt(60), 1e-3, 'half way through the decay');
    close(warm.rateAt(110), 0, 'end');
  });

  it('piecewiseConstant: values[i] up to and including boundaries[i]', () => {
    const s = piecewiseConstant({ boundaries: [10, 20], values: [1, 0.5, 0.1] });
    assert.deepEqual([0, 10, 11, 20, 21, 1e6].map((k) => s.rateAt(k)), [1, 1, 0.5, 0.5, 0.1, 0.1]);
  });

  it('config() round-trips through scheduleFromConfig (JSON included)', () => {
    const schedules: LearningRateSchedule[] = [
      exponentialDecay({ initialRate: 0.1, decaySteps: 7, decayRate: 0.9, staircase: true }),
      cosineDecay({ initialRate: 1e-4, decaySteps: 50, alpha: 0.05, warmupSteps: 5, warmupTarget: 1e-3 }),
      cosineDecay({ initialRate: 1e-3, decaySteps: 50 }),
      piecewiseConstant({ boundaries: [3, 9], values: [0.3, 0.2, 0.1] }),
    ];
    for (const s of schedules) {
      const rebuilt = scheduleFromConfig(JSON.parse(JSON.stringify(s.config())));
      assert.deepEqual(rebuilt.config(), s.config());
      for (const k of [0, 4, 6, 20, 60]) assert.equal(rebuilt.rateAt(k), s.rateAt(k), `${s.kind} step ${k}`);
    }
  });

  it('bad options are errors naming the schedule and the option', () => {
    assert.throws(() => exponentialDecay({ initialRate: 0.1, decaySteps: 0, decayRate: 0.5 }), /exponentialDecay: decaySteps must be an integer ≥ 1, got 0/);
    assert.throws(() => exponentialDecay({ initialRate: 0.1, decaySteps: 10, decayRate: 0 }), /exponentialDecay: decayRate must be > 0/);
    assert.throws(() => cosineDecay({ initialRate: 0, decaySteps: 10, warmupSteps: 5 }), /cosineDecay: warmupSteps 5 needs a warmupTarget/);
    assert.throws(() => cosineDecay({ initialRate: 1e-3, decaySteps: 10, alpha: 2 }), /cosineDecay: alpha must be in \[0, 1\], got 2/);
    assert.throws(() => cosineDecay({ initialRate: Number.NaN, decaySteps: 10 }), /cosineDecay: initialRate must be a finite number ≥ 0/);
    assert.throws(() => piecewiseConstant({ boundaries: [10, 5], values: [1, 2, 3] }), /piecewiseConstant: boundaries must increase, got 10 then 5/);
    assert.throws(() => piecewiseConstant({ boundaries: [10], values: [1] }), /piecewiseConstant: needs one more value than boundaries/);
    assert.throws(() => adam({ learningRate: 'fast' as unknown as number }), /adam: learningRate must be a number or a schedule/);
    assert.throws(() => scheduleFromConfig({ kind: 'cyclic' }), /kind: unknown schedule "cyclic"/);
  });
});

describe('an optimizer with a schedule', () => {
  const IN = 6;
  const data = (): Batch[] => {
    const rng = new Random(3);
    return Array.from({ length: 12 }, () => {
      const features = new Float32Array(8 * IN).map(() => rng.normal());
      return batchFromArrays({ features, shape: [IN], labels: new Int32Array(8).map((_, r) => (features[r * IN]! > 0 ? 1 : 0)) });
    });
  };
  const model = () => sequential([dense(5), relu(), dense(2)], { inputShape: [IN], seed: 2, engine });

  for (const [label, schedule, make] of [
    ['adam, warm-up + cosine', cosineDecay({ initialRate: 0, warmupSteps: 4, warmupTarget: 0.02, decaySteps: 6, alpha: 0.1 }), (lr: number | LearningRateSchedule) => adam({ learningRate: lr })],
    ['sgd momentum, piecewise', piecewiseConstant({ boundaries: [2, 7], values: [0.3, 0.1, 0.01] }), (lr: number | LearningRateSchedule) => sgd({ learningRate: lr, momentum: 0.9 })],
  ] as const) {
    it(`${label}: trains bit for bit like a loop that sets the rate before each step`, async () => {
      const batches = data();
      const scheduled = model();
      const optimizer: Optimizer = make(schedule);
      const seen: number[] = [];
      for (const batch of batches) {
        await lastValueFrom(from([batch]).pipe(scheduled.fit({ loss: softmaxCrossEntropy(), optimizer })));
        seen.push(optimizer.learningRate);
      }
      assert.deepEqual(seen, batches.map((_, k) => schedule.rateAt(k)), 'learningRate reports the rate of the latest step');

      const manual = model();
      const constant: Optimizer = make(schedule.rateAt(0));
      for (const [k, batch] of batches.entries()) {
        constant.learningRate = schedule.rateAt(k);
        await lastValueFrom(from([batch]).pipe(manual.fit({ loss: softmaxCrossEntropy(), optimizer: constant }), toArray()));
      }
      for (const [name, values] of manual.getWeights()) assert.deepEqual(scheduled.getWeights().get(name), values, name);
      assert.equal(optimizer.schedule, schedule);
      assert.deepEqual(optimizer.config()['learningRate'], schedule.config());
      scheduled.dispose();
      manual.dispose();
    });
  }
});
