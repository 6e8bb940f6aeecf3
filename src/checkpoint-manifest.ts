/**
 * The checkpoint manifest (format version 1, docs/CHECKPOINTS.md): its schema, the optimizers it can
 * name, and a parser that checks every field and names the file and field of the first bad one.
 */
import { adam, adamw, checkGroups, sgd, type Optimizer } from './optimizers.ts';
import { scheduleFromConfig } from './schedules.ts';

/** `format` field of every checkpoint manifest. */
export const CHECKPOINT_FORMAT = 'rxgrad-checkpoint';
/** Manifest version written by this code; loading refuses others. */
export const CHECKPOINT_VERSION = 1;

/** A checkpoint that cannot be written or loaded; names the file and the field. */
export class CheckpointError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    message: string,
  ) {
    super(`${file}: ${field}: ${message}`);
    this.name = 'CheckpointError';
  }
}

/** What the sidecar JSON holds (format version 1). */
export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  weights: { file: string; sha256: string; bytes: number };
  model: {
    name: string;
    inputShape: number[];
    seed: number;
    layers: { kind: string; name: string; config: Record<string, unknown> }[];
    /** Parameters with `trainable = false`. */
    frozen: string[];
  };
  stepCount: number;
  /** xoshiro128** state words and the cached Box–Muller value (null when none). */
  rng: { state: [number, number, number, number]; spareNormal: number | null };
  optimizer: null | {
    name: string;
    config: Record<string, unknown>;
    iterations: number;
    /** Parameters that have state slots (slots are created on a parameter's first step). */
    parameters: string[];
    slots: string[];
  };
  streamOffsets: Record<string, unknown>;
  savedAt: string;
}


/** `<base>.<hash16>.safetensors`: the weights file name a manifest may name. */
export const WEIGHTS_NAME = /^(.*)\.([0-9a-f]{16})\.safetensors$/;
/** The weights file name for a base name and the file's sha256. */
export const weightsName = (base: string, sha256: string) => `${base}.${sha256.slice(0, 16)}.safetensors`;

type OptimizerFactory = (config: Record<string, unknown>) => Optimizer;
/** 'rate': a number or a learning-rate schedule's config (rebuilt by scheduleFromConfig); 'groups': parameter groups. */
type OptimizerField = 'number' | 'boolean' | 'rate' | 'groups';
/** The manifest keeps a schedule as its config; the optimizer gets the schedule. */
const withSchedule = (c: Record<string, unknown>) =>
  typeof c['learningRate'] === 'object' ? { ...c, learningRate: scheduleFromConfig(c['learningRate']) } : c;
/** The optimizers a checkpoint can restore, with the type of each config field. */
export const OPTIMIZERS: Record<string, { fields: Record<string, OptimizerField>; make: OptimizerFactory }> = {
  sgd: { fields: { learningRate: 'rate', momentum: 'number', nesterov: 'boolean', weightDecay: 'number', emaMomentum: 'number', parameterGroups: 'groups', lazy: 'boolean' }, make: (c) => sgd(withSchedule(c)) },
  adam: { fields: { learningRate: 'rate', beta1: 'number', beta2: 'number', epsilon: 'number', weightDecay: 'number', emaMomentum: 'number', parameterGroups: 'groups', lazy: 'boolean' }, make: (c) => adam(withSchedule(c)) },
  adamw: { fields: { learningRate: 'rate', beta1: 'number', beta2: 'number', epsilon: 'number', weightDecay: 'number', emaMomentum: 'number', parameterGroups: 'groups', lazy: 'boolean' }, make: (c) => adamw(withSchedule(c)) },
};


/** Field-by-field checks of the parsed manifest, each failure naming the JSON file and the field path. */
export class ManifestReader {
  constructor(readonly file: string) {}
  fail(field: string, message: string): never {
    throw new CheckpointError(this.file, field, message);
  }
  object(v: unknown, field: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.fail(field, `must be an object, got ${JSON.stringify(v)}`);
    return v as Record<string, unknown>;
  }
  string(v: unknown, field: string): string {
    if (typeof v !== 'string') return this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }
  integer(v: unknown, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return this.fail(field, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return v;
  }
  finite(v: unknown, field: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.fail(field, `must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  }
  array(v: unknown, field: string): unknown[] {
    if (!Array.isArray(v)) return this.fail(field, `must be an array, got ${JSON.stringify(v)}`);
    return v;
  }
  strings(v: unknown, field: string): string[] {
    return this.array(v, field).map((s, i) => this.string(s, `${field}[${i}]`));
  }
}

/**
 * Parses and validates a manifest's JSON text; throws a {@link CheckpointError} naming `file` and the field.
 *
 * Usage: `const manifest = parseManifest(await readFile(path, 'utf8'), path);`
 */
export function parseManifest(text: string, file: string): CheckpointManifest {
  const r = new ManifestReader(file);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return r.fail('(json)', `is not valid JSON (${(error as Error).message}); truncated or corrupt`);
  }
  const m = r.object(raw, '(root)');
  if (m['format'] !== CHECKPOINT_FORMAT) r.fail('format', `expected '${CHECKPOINT_FORMAT}', got ${JSON.stringify(m['format'])}`);
  if (m['version'] !== CHECKPOINT_VERSION) r.fail('version', `this rxgrad reads version ${CHECKPOINT_VERSION}, got ${JSON.stringify(m['version'])}`);

  const w = r.object(m['weights'], 'weights');
  const weightsFile = r.string(w['file'], 'weights.file');
  if (!WEIGHTS_NAME.test(weightsFile) || weightsFile.includes('/') || weightsFile.includes('\\')) r.fail('weights.file', `must be a '<base>.<hash16>.safetensors' name in the same directory, got '${weightsFile}'`);
  const digest = r.string(w['sha256'], 'weights.sha256');
  if (!/^[0-9a-f]{64}$/.test(digest)) r.fail('weights.sha256', `must be 64 lowercase hex digits, got '${digest}'`);
  const bytes = r.integer(w['bytes'], 'weights.bytes', 8);

  const mo = r.object(m['model'], 'model');
  const inputShape = r.array(mo['inputShape'], 'model.inputShape').map((d, i) => r.integer(d, `model.inputShape[${i}]`, 1));
  const layers = r.array(mo['layers'], 'model.layers').map((l, i) => {
    const o = r.object(l, `model.layers[${i}]`);
    return { kind: r.string(o['kind'], `model.layers[${i}].kind`), name: r.string(o['name'], `model.layers[${i}].name`), config: r.object(o['config'], `model.layers[${i}].config`) };
  });
  if (layers.length === 0) r.fail('model.layers', 'is empty');
  const model = {
    name: r.string(mo['name'], 'model.name'), inputShape, seed: r.finite(mo['seed'], 'model.seed'), layers,
    frozen: r.strings(mo['frozen'] ?? [], 'model.frozen'),
  };

  const rng = r.object(m['rng'], 'rng');
  const words = r.array(rng['state'], 'rng.state');
  if (words.length !== 4) r.fail('rng.state', `must hold 4 words, got ${words.length}`);
  const state = words.map((x, i) => r.integer(x, `rng.state[${i}]`, 0, 2 ** 32 - 1)) as [number, number, number, number];
  if (state.every((x) => x === 0)) r.fail('rng.state', 'is all zeros (xoshiro128** would only ever return 0)');
  const spare = rng['spareNormal'];
  if (spare !== null && (typeof spare !== 'number' || !Number.isFinite(spare))) r.fail('rng.spareNormal', `must be null or a finite number, got ${JSON.stringify(spare)}`);

  let optimizer: CheckpointManifest['optimizer'] = null;
  if (m['optimizer'] !== null && m['optimizer'] !== undefined) {
    const o = r.object(m['optimizer'], 'optimizer');
    const name = r.string(o['name'], 'optimizer.name');
    const known = OPTIMIZERS[name];
    if (!known || !Object.hasOwn(OPTIMIZERS, name)) r.fail('optimizer.name', `unknown optimizer '${name}' (known: ${Object.keys(OPTIMIZERS).join(', ')})`);
    const config = r.object(o['config'], 'optimizer.config');
    for (const [key, value] of Object.entries(config)) {
      const type = known!.fields[key];
      if (!type || !Object.hasOwn(known!.fields, key)) r.fail(`optimizer.config.${key}`, `is not a config field of ${name}`);
      if (type === 'groups') {
        try {
          checkGroups(name, value);
        } catch (error) {
          r.fail(`optimizer.config.${key}`, (error as Error).message);
        }
        continue;
      }
      if (type === 'rate' && typeof value === 'object') {
        try {
          scheduleFromConfig(value);
        } catch (error) {
          r.fail(`optimizer.config.${key}`, (error as Error).message);
        }
        continue;
      }
      const expected = type === 'rate' ? 'number' : type;
      if (typeof value !== expected || (expected === 'number' && !Number.isFinite(value))) {
        r.fail(`optimizer.config.${key}`, `must be a ${expected === 'number' ? 'finite number' : expected}${type === 'rate' ? ' or a schedule' : ''}, got ${JSON.stringify(value)}`);
      }
    }
    optimizer = {
      name, config, iterations: r.integer(o['iterations'], 'optimizer.iterations'),
      parameters: r.strings(o['parameters'], 'optimizer.parameters'), slots: r.strings(o['slots'], 'optimizer.slots'),
    };
  }
  return {
    format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION,
    weights: { file: weightsFile, sha256: digest, bytes },
    model,
    stepCount: r.integer(m['stepCount'], 'stepCount'),
    rng: { state, spareNormal: spare as number | null },
    optimizer,
    streamOffsets: r.object(m['streamOffsets'] ?? {}, 'streamOffsets'),
    savedAt: typeof m['savedAt'] === 'string' ? m['savedAt'] : '',
  };
}

