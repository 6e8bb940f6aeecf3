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

/** Uniform in ±limit, whatever the fans (Keras `RandomUniform`; embeddings default to ±0.05). Usage: `randomUniform(0.05)` */
export const randomUniform = (limit: number): Initializer => uniform(`randomUniform(${limit})`, () => limit);

/**
 * Orthogonal initialiser as Keras does it for a `[rows, cols]` matrix: a Gaussian matrix of shape
 * `[max, min]`, its QR decomposition (modified Gram–Schmidt in float64, diagonal of R made positive,
 * which makes Q Haar-distributed), transposed when rows < cols; scaled by `gain`. For a recurrent
 * kernel `[U, G·U]` the rows are orthonormal (each gate block alone is not), exactly as in Keras.
 *
 * Usage: `lstm({ units: 64, recurrentInitializer: orthogonal() })`
 */
export function orthogonal(gain = 1): Initializer {
  return {
    name: gain === 1 ? 'orthogonal' : `orthogonal(${gain})`,
    fill(values, { fanIn }, rng) {
      // The recurrent kernels pass fanIn = rows; a 1-D or mismatched request falls back to one row.
      const rows = fanIn > 0 && values.length % fanIn === 0 ? fanIn : 1;
      const cols = values.length / rows;
      const tall = Math.max(rows, cols);
      const narrow = Math.min(rows, cols);
      // q: tall × narrow, column-major (each column a contiguous Float64Array).
      const q = Array.from({ length: narrow }, () => {
        const column = new Float64Array(tall);
        for (let i = 0; i < tall; i++) column[i] = rng.normal();
        return column;
      });
      for (let j = 0; j < narrow; j++) {
        const v = q[j]!;
        for (let p = 0; p < j; p++) {
          const u = q[p]!;
          let dot = 0;
          for (let i = 0; i < tall; i++) dot += u[i]! * v[i]!;
          for (let i = 0; i < tall; i++) v[i] -= dot * u[i]!;
        }
        let norm = 0;
        for (let i = 0; i < tall; i++) norm += v[i]! * v[i]!;
        norm = Math.sqrt(norm) || 1;
        for (let i = 0; i < tall; i++) v[i] /= norm;
      }
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          // rows ≥ cols: element (r, c) of Q; rows < cols: element (r, c) of Qᵀ.
          values[r * cols + c] = gain * (rows >= cols ? q[c]![r]! : q[r]![c]!);
        }
      }
    },
  };
}


/** Initializers by name, for configs read back from checkpoints: `name` or `name(number)`. */
const byName: Record<string, (arg?: number) => Initializer> = {
  glorotUniform, glorotNormal, heUniform, heNormal, zeros,
  constant: (v = 0) => constant(v),
  randomUniform: (limit = 0.05) => randomUniform(limit),
  orthogonal: (gain = 1) => orthogonal(gain),
};

/**
 * The initializer an `Initializer.name` denotes (`glorotUniform`, `constant(0.5)`, `orthogonal(2)`),
 * for configs read back from checkpoints; throws naming the known ones otherwise.
 *
 * Usage: `initializerFromName('heNormal')`
 */
export function initializerFromName(name: string): Initializer {
  const match = /^([A-Za-z]+)(?:\((.+)\))?$/.exec(name);
  const make = match && Object.hasOwn(byName, match[1]!) ? byName[match[1]!]! : null;
  const arg = match?.[2] === undefined ? undefined : Number(match[2]);
  if (!make || (arg !== undefined && !Number.isFinite(arg))) {
    throw new RangeError(`unknown initializer '${name}' (known: ${Object.keys(byName).join(', ')}; with an argument as name(value))`);
  }
  return make(arg);
}
