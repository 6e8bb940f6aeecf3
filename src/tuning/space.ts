import type { Random } from '../random.ts';

/** A value a hyper-parameter takes. */
export type ConfigValue = number | string | boolean;
/** One configuration: a value per hyper-parameter name. */
export type Config = Record<string, ConfigValue>;

/** A hyper-parameter's domain: a list of choices, a real range or an integer range (linear or log scale). */
export type ParameterSpec =
  | { readonly type: 'choice'; readonly values: readonly ConfigValue[] }
  | { readonly type: 'range'; readonly min: number; readonly max: number; readonly scale: 'linear' | 'log' }
  | { readonly type: 'integer'; readonly min: number; readonly max: number; readonly scale: 'linear' | 'log' };

/** A search space: hyper-parameter name → domain. Keys are sampled in their insertion order. */
export type Space = Readonly<Record<string, ParameterSpec>>;

/** Raised for a malformed space, strategy or budget; names the field. */
export class SearchConfigError extends Error {
  constructor(readonly field: string, message: string) {
    super(`search: ${field}: ${message}`);
    this.name = 'SearchConfigError';
  }
}

/** One of the listed values. Usage: `{ optimizer: choice(['adam', 'sgd']) }` */
export const choice = (values: readonly ConfigValue[]): ParameterSpec => ({ type: 'choice', values: [...values] });
/** A real number drawn uniformly in [min, max]. Usage: `{ dropout: uniform(0, 0.5) }` */
export const uniform = (min: number, max: number): ParameterSpec => ({ type: 'range', min, max, scale: 'linear' });
/** A positive real drawn uniformly in log space (learning rates). Usage: `{ learningRate: logUniform(1e-4, 1e-1) }` */
export const logUniform = (min: number, max: number): ParameterSpec => ({ type: 'range', min, max, scale: 'log' });
/** An integer in [min, max], uniform or (`{ log: true }`) log-uniform. Usage: `{ width: integer(32, 512, { log: true }) }` */
export const integer = (min: number, max: number, options: { log?: boolean } = {}): ParameterSpec => ({
  type: 'integer', min, max, scale: options.log ? 'log' : 'linear',
});

/** Checks a space, throwing a {@link SearchConfigError} naming the first bad field. */
export function validateSpace(space: Space): void {
  if (typeof space !== 'object' || space === null) throw new SearchConfigError('space', `must be an object of hyper-parameters, got ${String(space)}`);
  const names = Object.keys(space);
  if (names.length === 0) throw new SearchConfigError('space', 'is empty: give at least one hyper-parameter (choice, uniform, logUniform, integer)');
  for (const name of names) {
    const spec = space[name]!;
    const field = `space.${name}`;
    if (spec.type === 'choice') {
      if (!Array.isArray(spec.values) || spec.values.length === 0) throw new SearchConfigError(`${field}.values`, 'a choice needs at least one value');
      for (const v of spec.values) {
        if (!['number', 'string', 'boolean'].includes(typeof v)) throw new SearchConfigError(`${field}.values`, `values must be numbers, strings or booleans, got ${JSON.stringify(v)}`);
      }
    } else if (spec.type === 'range' || spec.type === 'integer') {
      if (!Number.isFinite(spec.min)) throw new SearchConfigError(`${field}.min`, `must be a finite number, got ${spec.min}`);
      if (!Number.isFinite(spec.max)) throw new SearchConfigError(`${field}.max`, `must be a finite number, got ${spec.max}`);
      if (spec.min > spec.max) throw new SearchConfigError(`${field}.min`, `min ${spec.min} is greater than max ${spec.max}`);
      if (spec.type === 'integer' && !(Number.isInteger(spec.min) && Number.isInteger(spec.max))) {
        throw new SearchConfigError(field, `an integer range needs integer bounds, got [${spec.min}, ${spec.max}]`);
      }
      if (spec.scale === 'log' && !(spec.min > 0)) throw new SearchConfigError(`${field}.min`, `a log-scale range needs min > 0, got ${spec.min}`);
      if (spec.scale !== 'log' && spec.scale !== 'linear') throw new SearchConfigError(`${field}.scale`, `must be 'linear' or 'log', got ${JSON.stringify(spec.scale)}`);
    } else {
      throw new SearchConfigError(`${field}.type`, `must be 'choice', 'range' or 'integer', got ${JSON.stringify((spec as { type?: unknown }).type)}`);
    }
  }
}

/** A value at position u ∈ [0, 1] of a numeric range (u = 1 gives max). */
function at(spec: Extract<ParameterSpec, { type: 'range' | 'integer' }>, u: number): number {
  if (spec.type === 'integer') {
    if (spec.scale === 'log') {
      const v = Math.round(Math.exp(Math.log(spec.min) + u * (Math.log(spec.max) - Math.log(spec.min))));
      return Math.min(spec.max, Math.max(spec.min, v));
    }
    return Math.min(spec.max, spec.min + Math.floor(u * (spec.max - spec.min + 1)));
  }
  if (spec.scale === 'log') return Math.exp(Math.log(spec.min) + u * (Math.log(spec.max) - Math.log(spec.min)));
  return spec.min + u * (spec.max - spec.min);
}

/** Draws one configuration, one generator draw per hyper-parameter in key order. Usage: `sampleConfig(space, rng)` */
export function sampleConfig(space: Space, rng: Random): Config {
  const config: Config = {};
  for (const [name, spec] of Object.entries(space)) {
    if (spec.type === 'choice') config[name] = spec.values[rng.int(spec.values.length)]!;
    else config[name] = at(spec, rng.uniform());
  }
  return config;
}

/**
 * Every configuration of a grid: choices as listed; a numeric range as `points` values evenly spaced
 * (geometrically for log scale) from min to max; an integer range as all its integers when there are at most
 * `points`, else `points` of them. The last key varies fastest.
 *
 * Usage: `gridConfigs({ lr: logUniform(1e-3, 1e-1), width: choice([64, 128]) }, 3)` → 6 configurations
 */
export function gridConfigs(space: Space, points: number): Config[] {
  const axes = Object.entries(space).map(([name, spec]): [string, ConfigValue[]] => {
    if (spec.type === 'choice') return [name, [...spec.values]];
    if (spec.type === 'integer' && spec.scale === 'linear' && spec.max - spec.min + 1 <= points) {
      return [name, Array.from({ length: spec.max - spec.min + 1 }, (_, i) => spec.min + i)];
    }
    if (spec.min === spec.max) return [name, [spec.min]];
    const values: number[] = [];
    for (let i = 0; i < points; i++) {
      const u = points === 1 ? 0.5 : i / (points - 1);
      let v: number;
      if (spec.scale === 'log') v = Math.exp(Math.log(spec.min) + u * (Math.log(spec.max) - Math.log(spec.min)));
      else v = spec.min + u * (spec.max - spec.min);
      if (spec.type === 'integer') v = Math.round(v);
      if (!values.includes(v)) values.push(v);
    }
    return [name, values];
  });
  let configs: Config[] = [{}];
  for (const [name, values] of axes) configs = configs.flatMap((c) => values.map((v) => ({ ...c, [name]: v })));
  return configs;
}
