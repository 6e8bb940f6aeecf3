/**
 * The layer registry: rebuilds a layer from the `{ kind, name, config }` a model's JSON records
 * (checkpoints). Each operator file registers its own kind next to its forward, backward and shape
 * rule, so a layer's `config()` and the factory that reads it back stand side by side:
 * `layerFromConfig(l.kind, l.config(), l.name)` builds an equal layer (weights aside).
 */
import { initializerFromName, type Initializer } from './initializers.ts';
import type { Layer } from './layer.ts';
import { l1l2, type Regularizer } from './regularizers.ts';

/** A layer config that cannot be rebuilt; names the layer and the field. */
export class LayerConfigError extends Error {
  constructor(
    readonly layer: string,
    readonly field: string,
    message: string,
  ) {
    super(`layer '${layer}': ${field}: ${message}`);
    this.name = 'LayerConfigError';
  }
}

/** Builds a layer of one kind from its config and name; throws {@link LayerConfigError} on a bad field. */
export type LayerFactory = (config: ConfigReader, name: string) => Layer;

/**
 * Typed, checked access to a config object: each getter names the layer and field when the value is
 * missing or of the wrong type, and {@link ConfigReader.done} refuses fields nobody read (a typo in a
 * hand-written JSON, or a config from a newer version, must not be silently ignored).
 */
export class ConfigReader {
  private readonly read = new Set<string>();
  constructor(
    readonly layer: string,
    private readonly config: Readonly<Record<string, unknown>>,
    /** Path of a nested reader's fields in messages: `cross.`. */
    private readonly prefix = '',
  ) {}

  fail(field: string, message: string): never {
    throw new LayerConfigError(this.layer, `${this.prefix}${field}`, message);
  }

  private get(field: string): unknown {
    this.read.add(field);
    return this.config[field];
  }

  /** A finite number (`undefined` → `fallback`, when given). */
  number(field: string, fallback?: number): number {
    const v = this.get(field);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.fail(field, `must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  }

  boolean(field: string, fallback?: boolean): boolean {
    const v = this.get(field);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'boolean') return this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** An initializer by its `name` (`glorotUniform`, `constant(0.5)`, `orthogonal`, …; see `initializerFromName`). */
  initializer(field: string, fallback: Initializer): Initializer {
    const v = this.get(field);
    if (v === undefined) return fallback;
    if (typeof v !== 'string') return this.fail(field, `must be an initializer name, got ${JSON.stringify(v)}`);
    try {
      return initializerFromName(v);
    } catch (error) {
      return this.fail(field, (error as Error).message);
    }
  }

  /** One of the `allowed` strings (`undefined` → `fallback`, when given). */
  choice<T extends string>(field: string, allowed: readonly T[], fallback?: T): T {
    const v = this.get(field);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) return this.fail(field, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  }

  /** A string (`undefined` → `fallback`, when given). */
  string(field: string, fallback?: string): string {
    const v = this.get(field);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string') return this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A positive integer (`undefined` → `fallback`, when given). */
  positiveInteger(field: string, fallback?: number): number {
    const v = this.number(field, fallback);
    if (!Number.isInteger(v) || v < 1) return this.fail(field, `must be a positive integer, got ${v}`);
    return v;
  }

  /** A string, or null/undefined → null. */
  stringOrNull(field: string): string | null {
    const v = this.get(field);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') return this.fail(field, `must be a string or null, got ${JSON.stringify(v)}`);
    return v;
  }

  /** An array of positive integers (a shape). */
  shape(field: string): number[] {
    const v = this.get(field);
    if (!Array.isArray(v) || !v.every((d) => Number.isInteger(d) && d > 0)) return this.fail(field, `must be an array of positive integers, got ${JSON.stringify(v)}`);
    return v as number[];
  }

  /** A nested config object read with its own reader (errors name `field.sub`), or null/undefined → null. */
  nested(field: string): ConfigReader | null {
    const v = this.get(field);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) return this.fail(field, `must be an object or null, got ${JSON.stringify(v)}`);
    return new ConfigReader(this.layer, v as Record<string, unknown>, `${this.prefix}${field}.`);
  }

  /** A finite number, or null/undefined → null. */
  numberOrNull(field: string): number | null {
    const v = this.get(field);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.fail(field, `must be a finite number or null, got ${JSON.stringify(v)}`);
    return v;
  }

  /** `null` or `{ l1, l2 }` (what `Regularizer.config()` returns). */
  regularizer(field: string): Regularizer | undefined {
    const v = this.get(field);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) return this.fail(field, `must be null or { l1, l2 }, got ${JSON.stringify(v)}`);
    const r = v as Record<string, unknown>;
    for (const key of Object.keys(r)) if (key !== 'l1' && key !== 'l2') this.fail(`${field}.${key}`, 'is not a regularizer field (l1, l2)');
    const coefficient = (key: 'l1' | 'l2'): number => {
      const c = r[key] ?? 0;
      if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) return this.fail(`${field}.${key}`, `must be a finite number ≥ 0, got ${JSON.stringify(c)}`);
      return c;
    };
    return l1l2({ l1: coefficient('l1'), l2: coefficient('l2') });
  }

  /** Child layers, `[{ kind, name, config }]` (combinators), each rebuilt by {@link layerFromConfig}. */
  layers(field: string, value: unknown = this.get(field)): Layer[] {
    if (!Array.isArray(value) || value.length === 0) return this.fail(field, `must be a non-empty array of { kind, name, config }, got ${JSON.stringify(value)}`);
    return value.map((child: unknown, i) => {
      const where = `${field}[${i}]`;
      if (typeof child !== 'object' || child === null || Array.isArray(child)) return this.fail(where, `must be { kind, name, config }, got ${JSON.stringify(child)}`);
      const { kind, name, config, ...rest } = child as Record<string, unknown>;
      const unknownKey = Object.keys(rest)[0];
      if (unknownKey !== undefined) this.fail(`${where}.${unknownKey}`, 'is not a field of a child layer (kind, name, config)');
      if (typeof kind !== 'string') this.fail(`${where}.kind`, `must be a string, got ${JSON.stringify(kind)}`);
      if (typeof name !== 'string') this.fail(`${where}.name`, `must be a string, got ${JSON.stringify(name)}`);
      try {
        return layerFromConfig(kind as string, (config ?? {}) as Record<string, unknown>, name as string);
      } catch (error) {
        // Keep the path from the top: "layer 'res': layers[1]: layer 'dense_1': units: …".
        return this.fail(where, (error as Error).message);
      }
    });
  }

  /** The raw value of a field, marked as read (for fields a factory checks itself). */
  raw(field: string): unknown {
    return this.get(field);
  }

  /** Refuses config fields that no getter asked for. */
  done(): void {
    for (const key of Object.keys(this.config)) if (!this.read.has(key)) this.fail(key, 'is not a config field of this layer');
  }
}

/** Runs a layer constructor, turning its RangeError (e.g. a negative rate) into an error naming the layer and field. */
export function constructLayer(config: ConfigReader, field: string, make: () => Layer): Layer {
  try {
    return make();
  } catch (error) {
    return config.fail(field, (error as Error).message);
  }
}

const registry = new Map<string, LayerFactory>();

/**
 * Rebuilds a layer from its `kind`, `config()` and name (as a model's JSON records them). Throws a
 * {@link LayerConfigError} naming the layer and field for an unknown kind, a missing, mistyped or
 * unknown field.
 *
 * Usage: `const layer = layerFromConfig('dense', { units: 10, useBias: true }, 'dense_2');`
 */
export function layerFromConfig(kind: string, config: Readonly<Record<string, unknown>>, name: string): Layer {
  const factory = registry.get(kind);
  if (!factory) throw new LayerConfigError(name, 'kind', `unknown layer kind '${kind}' (known: ${[...registry.keys()].join(', ')}; register custom kinds with registerLayer)`);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new LayerConfigError(name, 'config', `must be an object, got ${JSON.stringify(config)}`);
  return factory(new ConfigReader(name, config), name);
}

/**
 * Adds (or replaces) the factory of a layer kind, so models with custom operators can be loaded.
 *
 * Usage: `registerLayer('scale', (c, name) => { const k = c.number('k'); c.done(); return scale(k, { name }); });`
 */
export function registerLayer(kind: string, factory: LayerFactory): void {
  registry.set(kind, factory);
}

/** The kinds {@link layerFromConfig} can rebuild. Usage: `layerKinds().includes('dense')` */
export function layerKinds(): string[] {
  return [...registry.keys()];
}
