/**
 * Checkpoints: a model's weights, optimizer state, step count, RNG state and stream offsets, saved
 * so that training resumes bit for bit where it stopped, and written so that a crash at any moment
 * leaves the previous checkpoint loadable. Format: docs/CHECKPOINTS.md.
 *
 * A checkpoint at base path `dir/run` is two files:
 *   - `run.<hash16>.safetensors`: weights (`dense_1/kernel`) and optimizer slots (`optimizer/dense_1/kernel/m`).
 *     The name carries the first 16 hex digits of the file's sha256, so a new checkpoint never
 *     overwrites the weights the current `run.json` points to (two renames cannot be atomic together;
 *     a content-addressed name makes the JSON rename the single commit point).
 *   - `run.json`: the manifest (architecture, optimizer, step count, RNG, stream offsets) naming the
 *     weights file and its full sha256.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Observable, type OperatorFunction } from 'rxjs';
import { layerFromConfig } from '../operators/index.ts';
import type { Engine } from './engine.ts';
import type { Layer } from './layer.ts';
import { sequential, type Model, type StepReport } from './model.ts';
import { adam, adamw, sgd, type Optimizer } from './optimizers.ts';
import { scheduleFromConfig } from './schedules.ts';
import { decodeSafetensors, encodeSafetensors, SafetensorsError, type SafetensorsTensor } from './safetensors.ts';

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

/** Extra state saved with a model. */
export interface SaveExtra {
  /** Positions in the input streams (Kafka offsets, file positions…): returned by {@link loadModel}. Must be JSON-serialisable. */
  streamOffsets?: Record<string, unknown>;
}

/** Where a save went. */
export interface SavedCheckpoint {
  /** The manifest path (`<base>.json`). */
  json: string;
  /** The weights path (`<base>.<hash16>.safetensors`). */
  weights: string;
  sha256: string;
  bytes: number;
  stepCount: number;
}

/** What {@link loadModel} resolves. */
export interface LoadedCheckpoint {
  /** The rebuilt model with weights, step count, RNG state and frozen flags restored. */
  model: Model;
  /** The optimizer with its config, iterations and slots restored (null if the model had never trained): pass it to `fit`. */
  optimizer: Optimizer | null;
  /** As given to the save ({} when none). */
  streamOffsets: Record<string, unknown>;
  manifest: CheckpointManifest;
}

/** Options of {@link loadModel}. */
export interface LoadOptions {
  /** The engine whose heap holds the model; default the default engine. */
  engine?: Engine;
}

// ---------------------------------------------------------------- paths

interface Paths {
  dir: string;
  /** File name prefix: `run` for `dir/run.json`. */
  base: string;
  json: string;
}

/** The name used inside a directory given as the checkpoint path. */
const DIRECTORY_BASE = 'checkpoint';

/** `dir/` or an existing directory → `dir/checkpoint`; `x.json` / `x.safetensors` → `x`; else `path` is the base. */
async function resolvePaths(path: string, create: boolean): Promise<Paths> {
  let dir: string;
  let base: string;
  const isDir = /[\\/]$/.test(path) || (await stat(path).then((s) => s.isDirectory(), () => false));
  if (isDir) {
    dir = path.replace(/[\\/]+$/, '') || '/';
    base = DIRECTORY_BASE;
  } else {
    dir = dirname(path);
    base = basename(path).replace(/\.(json|safetensors)$/, '');
  }
  if (create) await mkdir(dir, { recursive: true });
  return { dir, base, json: join(dir, `${base}.json`) };
}

const WEIGHTS_NAME = /^(.*)\.([0-9a-f]{16})\.safetensors$/;
const weightsName = (base: string, sha256: string) => `${base}.${sha256.slice(0, 16)}.safetensors`;

// ---------------------------------------------------------------- snapshot (synchronous)

/** Everything a save writes, copied out of the heap in one synchronous call. */
interface Snapshot {
  weights: Uint8Array;
  manifest: Omit<CheckpointManifest, 'weights'>;
}

/**
 * Copies the model's whole state. Synchronous on purpose: no step can run in the middle, so the
 * weights, optimizer slots, step count and RNG state all belong to the same step.
 */
function snapshot(model: Model, extra: SaveExtra, where: string): Snapshot {
  const layers = model.layers.map((layer: Layer) => ({ kind: layer.kind, name: layer.name, config: jsonClone(layer.config(), where, `model.layers.${layer.name}.config`) }));
  // Fail at save time, not months later at load time, if a layer could not be rebuilt.
  for (const l of layers) {
    try {
      layerFromConfig(l.kind, l.config, l.name);
    } catch (error) {
      throw new CheckpointError(where, `model.layers.${l.name}`, `cannot be rebuilt from its config (${(error as Error).message})`);
    }
  }
  const tensors = new Map<string, SafetensorsTensor>();
  for (const p of model.parameterTensors) tensors.set(p.name, { dtype: 'F32', shape: [...p.shape], data: p.value.data() });

  const optimizer = model.optimizer;
  let optimizerManifest: CheckpointManifest['optimizer'] = null;
  if (optimizer) {
    if (!Object.hasOwn(OPTIMIZERS, optimizer.name) || !optimizer.restoreState) {
      throw new CheckpointError(where, 'optimizer', `'${optimizer.name}' cannot be restored by loadModel (known: ${Object.keys(OPTIMIZERS).join(', ')})`);
    }
    const state = optimizer.state();
    const slotNames = new Set<string>();
    for (const [param, slots] of state) {
      for (const [slot, t] of Object.entries(slots)) {
        slotNames.add(slot);
        tensors.set(`optimizer/${param}/${slot}`, { dtype: 'F32', shape: [...t.shape], data: t.data() });
      }
    }
    optimizerManifest = {
      name: optimizer.name, config: jsonClone(optimizer.config(), where, 'optimizer.config'), iterations: optimizer.iterations,
      parameters: [...state.keys()], slots: [...slotNames].sort(),
    };
  }
  const [s0, s1, s2, s3, spare] = model.rng.getState() as [number, number, number, number, number];
  const manifest: Snapshot['manifest'] = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    model: {
      name: model.name, inputShape: [...model.inputShape], seed: model.seed, layers,
      frozen: model.parameterTensors.filter((p) => !p.trainable).map((p) => p.name),
    },
    stepCount: model.stepCount,
    rng: { state: [s0, s1, s2, s3], spareNormal: Number.isNaN(spare) ? null : spare },
    optimizer: optimizerManifest,
    streamOffsets: jsonClone(extra.streamOffsets ?? {}, where, 'streamOffsets'),
    savedAt: new Date().toISOString(),
  };
  // encodeSafetensors copies the heap views into a fresh buffer: after this line the model may step.
  const weights = encodeSafetensors(tensors, { format: CHECKPOINT_FORMAT, stepCount: String(model.stepCount) });
  return { weights, manifest };
}

function jsonClone<T>(value: T, where: string, field: string): T {
  try {
    return JSON.parse(JSON.stringify(value)) as T;
  } catch (error) {
    throw new CheckpointError(where, field, `must be JSON-serialisable (${(error as Error).message})`);
  }
}

// ---------------------------------------------------------------- atomic writes

let tempCounter = 0;
const TEMP = /^\.(.+)\.tmp-(\d+)-\d+$/;

/** Writes `data` to a temp file beside `name`, fsyncs it and renames it over `name`. */
async function writeAtomic(dir: string, name: string, data: Uint8Array | string): Promise<void> {
  const temp = join(dir, `.${name}.tmp-${process.pid}-${tempCounter++}`);
  try {
    const handle = await open(temp, 'w', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(dir, name));
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}

/** Makes the renames in `dir` durable (a rename is only on disk once its directory is). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a directory; the rename is still atomic there.
    if (!['EINVAL', 'EISDIR', 'EPERM', 'ENOTSUP'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle.close();
  }
}

/** sha256 in 4 MiB slices with an event-loop turn between them, so a large model does not freeze the host. */
async function sha256(bytes: Uint8Array): Promise<string> {
  const hash = createHash('sha256');
  const slice = 4 << 20;
  for (let at = 0; at < bytes.length; at += slice) {
    hash.update(bytes.subarray(at, at + slice));
    if (at + slice < bytes.length) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return hash.digest('hex');
}

const processAlive = (pid: number): boolean => {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes weights files the manifest no longer names, and temp files of writers that died. */
async function collectGarbage(paths: Paths, keep: string): Promise<void> {
  for (const entry of await readdir(paths.dir)) {
    const weights = WEIGHTS_NAME.exec(entry);
    const temp = TEMP.exec(entry);
    const stale =
      (weights !== null && weights[1] === paths.base && entry !== keep) ||
      (temp !== null && (temp[1] === `${paths.base}.json` || WEIGHTS_NAME.exec(temp[1]!)?.[1] === paths.base) && !processAlive(Number(temp[2])));
    if (stale) await unlink(join(paths.dir, entry)).catch(() => {});
  }
}

/** Saves to one path never overlap within this process (the garbage collection of one must not race the other's files). */
const pathLocks = new Map<string, Promise<unknown>>();

async function writeSnapshot(path: string, snap: Snapshot): Promise<SavedCheckpoint> {
  const paths = await resolvePaths(path, true);
  const previous = pathLocks.get(paths.json) ?? Promise.resolve();
  const work = previous.catch(() => {}).then(async (): Promise<SavedCheckpoint> => {
    const digest = await sha256(snap.weights);
    const file = weightsName(paths.base, digest);
    // 1. The weights under a new name; the current manifest still points at the old file.
    await writeAtomic(paths.dir, file, snap.weights);
    await syncDirectory(paths.dir);
    // 2. The manifest: its rename is the commit point.
    const manifest: CheckpointManifest = { ...snap.manifest, weights: { file, sha256: digest, bytes: snap.weights.length } };
    await writeAtomic(paths.dir, basename(paths.json), `${JSON.stringify(manifest, null, 1)}\n`);
    await syncDirectory(paths.dir);
    // 3. Only now is the old weights file unreferenced.
    await collectGarbage(paths, file);
    return { json: paths.json, weights: join(paths.dir, file), sha256: digest, bytes: snap.weights.length, stepCount: snap.manifest.stepCount };
  });
  pathLocks.set(paths.json, work);
  try {
    return await work;
  } finally {
    if (pathLocks.get(paths.json) === work) pathLocks.delete(paths.json);
  }
}

/**
 * Saves a model: weights and optimizer slots as safetensors, architecture, optimizer config and
 * iterations, step count, RNG state and `streamOffsets` in the JSON sidecar. `path` is a directory
 * (→ `path/checkpoint.*`) or a base name (→ `path.json` + `path.<hash>.safetensors`). The state is
 * copied synchronously when called, then written asynchronously and atomically (temp file, fsync,
 * rename, directory fsync; the weights first, the manifest last), so a crash at any point leaves the
 * previous checkpoint loadable. Call it between steps (after `fit` completes, or use {@link checkpointEvery}).
 *
 * Usage: `await saveModel(model, 'runs/mnist', { streamOffsets: { 'events:0': 1234 } });`
 */
export async function saveModel(model: Model, path: string, extra: SaveExtra = {}): Promise<SavedCheckpoint> {
  return writeSnapshot(path, snapshot(model, extra, path));
}

// ---------------------------------------------------------------- loading

type OptimizerFactory = (config: Record<string, unknown>) => Optimizer;
/** 'rate': a number or a learning-rate schedule's config (rebuilt by scheduleFromConfig). */
type OptimizerField = 'number' | 'boolean' | 'rate';
/** The manifest keeps a schedule as its config; the optimizer gets the schedule. */
const withSchedule = (c: Record<string, unknown>) =>
  typeof c['learningRate'] === 'object' ? { ...c, learningRate: scheduleFromConfig(c['learningRate']) } : c;
const OPTIMIZERS: Record<string, { fields: Record<string, OptimizerField>; make: OptimizerFactory }> = {
  sgd: { fields: { learningRate: 'rate', momentum: 'number', nesterov: 'boolean', weightDecay: 'number', emaMomentum: 'number', lazy: 'boolean' }, make: (c) => sgd(withSchedule(c)) },
  adam: { fields: { learningRate: 'rate', beta1: 'number', beta2: 'number', epsilon: 'number', weightDecay: 'number', emaMomentum: 'number', lazy: 'boolean' }, make: (c) => adam(withSchedule(c)) },
  adamw: { fields: { learningRate: 'rate', beta1: 'number', beta2: 'number', epsilon: 'number', weightDecay: 'number', emaMomentum: 'number', lazy: 'boolean' }, make: (c) => adamw(withSchedule(c)) },
};

/** Field-by-field checks of the parsed manifest, each failure naming the JSON file and the field path. */
class ManifestReader {
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

function parseManifest(text: string, file: string): CheckpointManifest {
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

async function readManifest(paths: Paths): Promise<{ manifest: CheckpointManifest; weights: Uint8Array; weightsPath: string }> {
  let text: string;
  try {
    text = await readFile(paths.json, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CheckpointError(paths.json, '(file)', code === 'ENOENT' ? 'no checkpoint here (the manifest does not exist)' : `cannot be read (${(error as Error).message})`);
  }
  const manifest = parseManifest(text, paths.json);
  const weightsPath = join(paths.dir, manifest.weights.file);
  let weights: Uint8Array;
  try {
    weights = await readFile(weightsPath);
  } catch (error) {
    throw new CheckpointError(paths.json, 'weights.file', `'${manifest.weights.file}' cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (weights.length !== manifest.weights.bytes) {
    throw new CheckpointError(weightsPath, 'size', `${weights.length} bytes, but ${basename(paths.json)} records ${manifest.weights.bytes}: truncated, or not the pair of this manifest`);
  }
  const digest = createHash('sha256').update(weights).digest('hex');
  if (digest !== manifest.weights.sha256) {
    throw new CheckpointError(weightsPath, 'sha256', `is ${digest}, but ${basename(paths.json)} records ${manifest.weights.sha256}: corrupt, or not the pair of this manifest`);
  }
  return { manifest, weights, weightsPath };
}

/**
 * Loads a checkpoint written by {@link saveModel}: validates the manifest field by field, checks the
 * weights file's size and sha256 against it, decodes the safetensors strictly, rebuilds the layers,
 * and restores weights, frozen flags, step count, RNG state and the optimizer (config, iterations,
 * slots). Every error is a {@link CheckpointError} (or `SafetensorsError`) naming the file and field.
 * Continue training with the returned optimizer: `fit({ loss, optimizer })`.
 *
 * Usage: `const { model, optimizer, streamOffsets } = await loadModel('runs/mnist', { engine });`
 */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<LoadedCheckpoint> {
  const paths = await resolvePaths(path, false);
  let read: Awaited<ReturnType<typeof readManifest>>;
  try {
    read = await readManifest(paths);
  } catch (error) {
    // A writer may have committed a new checkpoint (and removed the old weights) between our two
    // reads: the manifest then names a newer file. Read once more before reporting.
    if (!(error instanceof CheckpointError) || error.field !== 'weights.file') throw error;
    read = await readManifest(paths);
  }
  const { manifest, weights, weightsPath } = read;
  const { tensors } = decodeSafetensors(weights, weightsPath);
  const r = new ManifestReader(paths.json);

  const layers = manifest.model.layers.map((l, i) => {
    try {
      return layerFromConfig(l.kind, l.config, l.name);
    } catch (error) {
      return r.fail(`model.layers[${i}]`, (error as Error).message);
    }
  });
  let model: Model;
  try {
    model = sequential(layers, {
      inputShape: manifest.model.inputShape, seed: manifest.model.seed, name: manifest.model.name, ...(options.engine ? { engine: options.engine } : {}),
    });
  } catch (error) {
    return r.fail('model', `cannot be built (${(error as Error).message})`);
  }
  try {
    const optimizer = restoreInto(model, manifest, tensors, weightsPath, r);
    return { model, optimizer, streamOffsets: manifest.streamOffsets, manifest };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

function restoreInto(model: Model, manifest: CheckpointManifest, tensors: Map<string, SafetensorsTensor>, weightsPath: string, r: ManifestReader): Optimizer | null {
  const used = new Set<string>();
  const take = (name: string, shape: readonly number[], owner: string): Float32Array => {
    const t = tensors.get(name);
    if (!t) throw new SafetensorsError(weightsPath, name, `is missing (needed by ${owner})`);
    if (t.dtype !== 'F32') throw new SafetensorsError(weightsPath, `${name}.dtype`, `must be F32, got ${t.dtype}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new SafetensorsError(weightsPath, `${name}.shape`, `is [${t.shape.join(', ')}], but ${owner} needs [${shape.join(', ')}]`);
    }
    used.add(name);
    return t.data as Float32Array;
  };
  const weights = new Map<string, Float32Array>();
  for (const p of model.parameterTensors) weights.set(p.name, take(p.name, p.shape, `the model parameter '${p.name}'`));

  let optimizer: Optimizer | null = null;
  const slots = new Map<string, Record<string, Float32Array>>();
  const o = manifest.optimizer;
  if (o) {
    try {
      optimizer = OPTIMIZERS[o.name]!.make(o.config);
    } catch (error) {
      return r.fail('optimizer.config', (error as Error).message);
    }
    for (const name of o.parameters) {
      const p = model.parameterTensors.find((q) => q.name === name);
      if (!p) r.fail('optimizer.parameters', `names '${name}', which the model does not have`);
      const record: Record<string, Float32Array> = {};
      for (const slot of o.slots) record[slot] = take(`optimizer/${name}/${slot}`, p!.shape, `the ${o.name} slot '${slot}' of '${name}'`);
      slots.set(name, record);
    }
  }
  const extra = [...tensors.keys()].filter((name) => !used.has(name));
  if (extra.length > 0) throw new SafetensorsError(weightsPath, extra[0]!, `is not a parameter of the model nor a slot the manifest names (${extra.length} such tensors)`);
  for (const name of manifest.model.frozen) {
    if (!model.parameterTensors.some((p) => p.name === name)) r.fail('model.frozen', `names '${name}', which the model does not have`);
  }

  if (optimizer) {
    try {
      optimizer.restoreState!(model.parameterTensors, model.engine, o!.iterations, slots);
    } catch (error) {
      return r.fail('optimizer', (error as Error).message);
    }
    model.adoptOptimizer(optimizer);
  }
  model.setWeights(weights);
  for (const p of model.parameterTensors) p.trainable = !manifest.model.frozen.includes(p.name);
  model.restoreStepCount(manifest.stepCount);
  model.rng.setState([...manifest.rng.state, manifest.rng.spareNormal ?? Number.NaN]);
  return optimizer;
}

// ---------------------------------------------------------------- periodic checkpoints

/** Options of {@link checkpointEvery}. */
export interface CheckpointEveryOptions {
  /** The model whose step reports pass through. */
  model: Model;
  /** As for {@link saveModel}. */
  path: string;
  /** Save when the step count reaches a multiple of `steps`. */
  steps?: number;
  /** Save when at least `seconds` have passed since the last save (checked at each step). */
  seconds?: number;
  /** Called at each save, at the step being saved: the stream positions consistent with these weights. */
  streamOffsets?: () => Record<string, unknown>;
  /** Called after each save is durable. */
  onSave?: (saved: SavedCheckpoint) => void;
}

/**
 * Saves the model every `steps` steps and/or every `seconds` seconds, as an operator on the step
 * reports of `model.fit(...)`/`fitFrom(...)`: put it directly after them.
 *
 * Semantics: when a report arrives and a save is due, the state is copied synchronously at that
 * step boundary (the report is emitted by the step itself, so no other step can be half done); the
 * files are then written asynchronously while the model keeps training. Reports are held back until
 * the save that precedes them is durable, so when a report for step N has passed, every save due at
 * or before N is on disk (write errors surface as this stream's error). At most one write runs at a
 * time; if saves come due faster than the disk, the pending copy is replaced by the newest one
 * (memory stays at two copies). Completion waits for the last write.
 *
 * Usage: `model.fitFrom(source, { loss, optimizer }).pipe(checkpointEvery({ model, path: 'runs/live', steps: 500, streamOffsets: () => offsets }))`
 */
export function checkpointEvery<T extends StepReport>(options: CheckpointEveryOptions): OperatorFunction<T, T> {
  const { model, path, steps, seconds } = options;
  if (steps === undefined && seconds === undefined) throw new RangeError('checkpointEvery: give steps and/or seconds');
  if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1)) throw new RangeError(`checkpointEvery: steps must be a positive integer, got ${steps}`);
  if (seconds !== undefined && !(Number.isFinite(seconds) && seconds > 0)) throw new RangeError(`checkpointEvery: seconds must be a positive number, got ${seconds}`);
  return (source) =>
    new Observable<T>((subscriber) => {
      let lastSaveTime = performance.now();
      let lastSaveStep = steps ? Math.floor(model.stepCount / steps) * steps : model.stepCount;
      // Writes in order; `queued` is a snapshot waiting for the running write and is superseded by newer ones.
      let writing: Promise<void> | null = null;
      let queued: { snap: Snapshot; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | null = null;
      // Emissions waiting for a write; when empty and no write is due, reports pass synchronously.
      let held: Promise<void> | null = null;
      let failed = false;

      const fail = (error: unknown) => {
        if (failed) return;
        failed = true;
        subscriber.error(error);
      };
      const startWrite = (snap: Snapshot): Promise<void> =>
        writeSnapshot(path, snap).then((saved) => {
          options.onSave?.(saved);
        });
      const schedule = (snap: Snapshot): Promise<void> => {
        if (!writing) {
          const run = startWrite(snap);
          // `writing` only sequences writes; the error reaches the stream through `run`, which a held report awaits.
          writing = run.then(drain, drain);
          return run;
        }
        if (queued) {
          // Superseded: whoever waited for the older copy is satisfied by the newer, later state.
          queued.snap = snap;
          return queued.done;
        }
        let resolve!: () => void;
        let reject!: (e: unknown) => void;
        const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
        queued = { snap, done, resolve, reject };
        return done;
      };
      const drain = (): void => {
        writing = null;
        const next = queued;
        queued = null;
        if (next) schedule(next.snap).then(next.resolve, next.reject);
      };
      const hold = (after: Promise<void>, emit: () => void) => {
        // Marked handled here: once the chain has failed, later links never await `after`, and its rejection is already reported.
        after.catch(() => {});
        const chained: Promise<void> = (held ?? Promise.resolve()).then(() => after).then(() => {
          if (failed) return;
          emit();
          if (held === chained) held = null;
        });
        held = chained;
        chained.catch(fail);
      };

      const subscription = source.subscribe({
        next: (report) => {
          if (failed) return;
          const now = performance.now();
          const due = (steps !== undefined && report.step - lastSaveStep >= steps) || (seconds !== undefined && now - lastSaveTime >= seconds * 1000);
          if (!due) {
            if (held) hold(Promise.resolve(), () => subscriber.next(report));
            else subscriber.next(report);
            return;
          }
          if (model.stepCount !== report.step) {
            // The report was delayed (an async operator in between): the model has moved on and the copy would not match it.
            return fail(new Error(`checkpointEvery: report of step ${report.step} arrived when ${model.name} is at step ${model.stepCount}; put checkpointEvery directly after fit/fitFrom`));
          }
          let snap: Snapshot;
          try {
            snap = snapshot(model, options.streamOffsets ? { streamOffsets: options.streamOffsets() } : {}, path);
          } catch (error) {
            return fail(error);
          }
          lastSaveTime = now;
          lastSaveStep = steps ? Math.floor(report.step / steps) * steps : report.step;
          hold(schedule(snap), () => subscriber.next(report));
        },
        error: (error: unknown) => (held ? hold(Promise.resolve(), () => fail(error)) : fail(error)),
        complete: () => {
          const finish = async () => {
            while (writing) await writing;
            if (!failed) subscriber.complete();
          };
          if (held) hold(Promise.resolve(), () => void finish());
          else void finish();
        },
      });
      return () => subscription.unsubscribe();
    });
}
