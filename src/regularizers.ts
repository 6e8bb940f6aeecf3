/**
 * A penalty on a parameter's values, added to the loss; its gradient is added to the parameter's
 * gradient after each backward.
 */
export interface Regularizer {
  readonly name: string;
  /** The penalty for these values. */
  penalty(values: Float32Array): number;
  /** grad += dPenalty/dValues. */
  addGradient(values: Float32Array, grad: Float32Array): void;
  /** The coefficients, so a saved model can rebuild it with {@link l1l2} (checkpoints, `layerFromConfig`). */
  config(): { l1: number; l2: number };
}

/**
 * L1 and/or L2 penalty: l1·Σ|w| + l2·Σw². Usage: `dense(64, { kernelRegularizer: l1l2({ l1: 1e-5, l2: 1e-4 }) })`
 */
export function l1l2({ l1 = 0, l2 = 0 }: { l1?: number; l2?: number }): Regularizer {
  if (!(l1 >= 0) || !(l2 >= 0)) throw new RangeError(`l1l2: coefficients must be ≥ 0, got l1=${l1}, l2=${l2}`);
  return {
    name: l1 && l2 ? `l1l2(${l1}, ${l2})` : l1 ? `l1(${l1})` : `l2(${l2})`,
    config: () => ({ l1, l2 }),
    penalty(values) {
      let abs = 0;
      let squares = 0;
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        abs += Math.abs(v);
        squares += v * v;
      }
      return l1 * abs + l2 * squares;
    },
    addGradient(values, grad) {
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        grad[i] += l1 * Math.sign(v) + 2 * l2 * v;
      }
    },
  };
}

/** L1 penalty l·Σ|w|. Usage: `l1(1e-5)` */
export const l1 = (coefficient: number): Regularizer => l1l2({ l1: coefficient });
/** L2 penalty l·Σw² (gradient 2·l·w, as in Keras). Usage: `l2(1e-4)` */
export const l2 = (coefficient: number): Regularizer => l1l2({ l2: coefficient });
