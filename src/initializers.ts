import type { Random } from './random.ts';

/** Fills a parameter's values; `fanIn`/`fanOut` are the layer's input and output connection counts. */
export interface Initializer {
  readonly name: string;
  fill(values: Float32Array, fans: { fanIn: number; fanOut: number }, rng: Random): void;
}

const uniform = (name: string, limit: (fanIn: number, fanOut: number) => number): Initializer => ({
  name,
  fill(values, { fanIn, fanOut }, rng) {
    const a = limit(fanIn, fanOut);
    for (let i = 0; i < values.length; i++) values[i] = (2 * rng.uniform() - 1) * a;
  },
});

const normal = (name: string, stddev: (fanIn: number, fanOut: number) => number): Initializer => ({
  name,
  fill(values, { fanIn, fanOut }, rng) {
    const s = stddev(fanIn, fanOut);
    for (let i = 0; i < values.length; i++) values[i] = rng.normal() * s;
  },
});

/** Glorot/Xavier uniform: U(±√(6/(fanIn+fanOut))). Usage: `dense(64, { kernelInitializer: glorotUniform() })` */
export const glorotUniform = (): Initializer => uniform('glorotUniform', (i, o) => Math.sqrt(6 / (i + o)));
/** Glorot/Xavier normal: N(0, 2/(fanIn+fanOut)), not truncated. Usage: `glorotNormal()` */
export const glorotNormal = (): Initializer => normal('glorotNormal', (i, o) => Math.sqrt(2 / (i + o)));
/** He uniform (for ReLU): U(±√(6/fanIn)). Usage: `heUniform()` */
export const heUniform = (): Initializer => uniform('heUniform', (i) => Math.sqrt(6 / i));
/** He normal (for ReLU): N(0, 2/fanIn), not truncated. Usage: `heNormal()` */
export const heNormal = (): Initializer => normal('heNormal', (i) => Math.sqrt(2 / i));
/** All zeros (the default for biases). Usage: `zeros()` */
export const zeros = (): Initializer => ({ name: 'zeros', fill: (values) => values.fill(0) });
/** All equal to `value`. Usage: `constant(1)` */
export const constant = (value: number): Initializer => ({ name: `constant(${value})`, fill: (values) => values.fill(value) });
