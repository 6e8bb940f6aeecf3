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
 *
 * This module turns a model into a snapshot and back; src/checkpoint-manifest.ts holds the manifest's
 * schema and parser, src/checkpoint-files.ts the file I/O, src/checkpoint-every.ts the periodic operator.
 */
import { layerFromConfig } from '../operators/index.ts';
import { CheckpointError, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, ManifestReader, OPTIMIZERS, type CheckpointManifest } from './checkpoint-manifest.ts';
import { readManifest, resolvePaths, writeSnapshot, type SavedCheckpoint, type Snapshot } from './checkpoint-files.ts';
import type { Engine } from './engine.ts';
import type { Layer } from './layer.ts';
import { modelHost, sequential, type Model } from './model.ts';
import type { Optimizer } from './optimizers.ts';
import { decodeSafetensors, encodeSafetensors, SafetensorsError, type SafetensorsTensor } from './safetensors.ts';

export { CheckpointError, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, type CheckpointManifest } from './checkpoint-manifest.ts';
export type { SavedCheckpoint } from './checkpoint-files.ts';

/** Extra state saved with a model. */
export interface SaveExtra {
  /** Positions in the input streams (Kafka offsets, file positions…): returned by {@link loadModel}. Must be JSON-serialisable. */
  streamOffsets?: Record<string, unknown>;
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


// ---------------------------------------------------------------- snapshot (synchronous)


/**
 * Copies the model's whole state. Synchronous on purpose: no step can run in the middle, so the
 * weights, optimizer slots, step count and RNG state all belong to the same step.
 */
export function snapshot(model: Model, extra: SaveExtra, where: string): Snapshot {
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
  for (const p of modelHost(model).parameters) tensors.set(p.name, { dtype: 'F32', shape: [...p.shape], data: p.value.data() });

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
      frozen: modelHost(model).parameters.filter((p) => !p.trainable).map((p) => p.name),
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
  for (const p of modelHost(model).parameters) weights.set(p.name, take(p.name, p.shape, `the model parameter '${p.name}'`));

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
      const p = modelHost(model).parameters.find((q) => q.name === name);
      if (!p) r.fail('optimizer.parameters', `names '${name}', which the model does not have`);
      const record: Record<string, Float32Array> = {};
      for (const slot of o.slots) record[slot] = take(`optimizer/${name}/${slot}`, p!.shape, `the ${o.name} slot '${slot}' of '${name}'`);
      slots.set(name, record);
    }
  }
  const extra = [...tensors.keys()].filter((name) => !used.has(name));
  if (extra.length > 0) throw new SafetensorsError(weightsPath, extra[0]!, `is not a parameter of the model nor a slot the manifest names (${extra.length} such tensors)`);
  for (const name of manifest.model.frozen) {
    if (!modelHost(model).parameters.some((p) => p.name === name)) r.fail('model.frozen', `names '${name}', which the model does not have`);
  }

  if (optimizer) {
    try {
      optimizer.restoreState!(modelHost(model).parameters, model.engine, o!.iterations, slots);
    } catch (error) {
      return r.fail('optimizer', (error as Error).message);
    }
    modelHost(model).adopt(optimizer, null);
  }
  model.setWeights(weights);
  for (const p of modelHost(model).parameters) p.trainable = !manifest.model.frozen.includes(p.name);
  modelHost(model).steps = manifest.stepCount;
  model.rng.setState([...manifest.rng.state, manifest.rng.spareNormal ?? Number.NaN]);
  return optimizer;
}

