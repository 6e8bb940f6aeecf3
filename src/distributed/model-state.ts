/**
 * A model's training state as bytes — weights, optimizer slots and iterations, step count — for
 * handing the group's current state to a joining replica, and for starting a group from a checkpoint.
 */
import { loadModel } from '../checkpoint.ts';
import { modelHost, type Model } from '../model.ts';
import type { Optimizer } from '../optimizers.ts';
import { decodeSafetensors, encodeSafetensors, type SafetensorsTensor } from '../safetensors.ts';

/** Weights, optimizer state and counters of a model at a round boundary. */
export interface TrainingState {
  /** The next round the group runs from this state. */
  round: number;
  stepCount: number;
  iterations: number;
  weights: Map<string, Float32Array>;
  /** Optimizer slots by parameter name (absent for parameters that never stepped). */
  slots: Map<string, Record<string, Float32Array>>;
}

/**
 * Copies the current state of `model` and `optimizer`.
 *
 * Usage: `const state = captureState(model, optimizer, round);`
 */
export function captureState(model: Model, optimizer: Optimizer, round: number): TrainingState {
  const slots = new Map<string, Record<string, Float32Array>>();
  for (const [name, record] of optimizer.state()) slots.set(name, Object.fromEntries(Object.entries(record).map(([slot, t]) => [slot, t.toFloat32Array()])));
  return { round, stepCount: model.stepCount, iterations: optimizer.iterations, weights: model.getWeights(), slots };
}

/**
 * Overwrites `model`'s weights, step count and `optimizer`'s state with `state` (validated first by
 * `setWeights`/`restoreState`, which name the parameter that does not fit).
 *
 * Usage: `applyState(model, optimizer, state);`
 */
export function applyState(model: Model, optimizer: Optimizer, state: TrainingState): void {
  model.setWeights(state.weights);
  if (!optimizer.restoreState) throw new Error(`optimizer '${optimizer.name}' cannot restore state (no restoreState)`);
  const host = modelHost(model);
  optimizer.restoreState(host.parameters, model.engine, state.iterations, state.slots);
  host.steps = state.stepCount;
  host.adopt(optimizer, host.loss);
}

/** Encodes a state as safetensors (`w/<name>`, `o/<name>/<slot>`; counters in the metadata). Usage: `encodeState(state)` */
export function encodeState(state: TrainingState): Uint8Array {
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, values] of state.weights) tensors.set(`w/${name}`, { dtype: 'F32', shape: [values.length], data: values });
  for (const [name, record] of state.slots) for (const [slot, values] of Object.entries(record)) tensors.set(`o/${name}/${slot}`, { dtype: 'F32', shape: [values.length], data: values });
  return encodeSafetensors(tensors, { round: String(state.round), stepCount: String(state.stepCount), iterations: String(state.iterations) });
}

/** Decodes {@link encodeState}'s bytes. Usage: `const state = decodeState(bytes, 'snapshot');` */
export function decodeState(bytes: Uint8Array, label: string): TrainingState {
  const { tensors, metadata } = decodeSafetensors(bytes, label);
  const number = (key: string): number => {
    const v = Number(metadata[key]);
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${label}: metadata ${key} '${metadata[key]}' is not a non-negative integer`);
    return v;
  };
  const weights = new Map<string, Float32Array>();
  const slots = new Map<string, Record<string, Float32Array>>();
  for (const [key, tensor] of tensors) {
    if (!(tensor.data instanceof Float32Array)) throw new TypeError(`${label}: tensor '${key}' is not float32`);
    if (key.startsWith('w/')) weights.set(key.slice(2), tensor.data);
    else if (key.startsWith('o/')) {
      const cut = key.lastIndexOf('/');
      const name = key.slice(2, cut);
      slots.set(name, { ...slots.get(name), [key.slice(cut + 1)]: tensor.data });
    } else throw new RangeError(`${label}: unexpected tensor '${key}'`);
  }
  return { round: number('round'), stepCount: number('stepCount'), iterations: number('iterations'), weights, slots };
}

/**
 * The state saved in a checkpoint by a group's leader (its round is in the stream offsets), or null
 * if there is no checkpoint at `path`.
 *
 * Usage: `const state = await stateFromCheckpoint('runs/dp', model.engine);`
 */
export async function stateFromCheckpoint(path: string, model: Model): Promise<TrainingState | null> {
  let loaded: Awaited<ReturnType<typeof loadModel>>;
  try {
    loaded = await loadModel(path, { engine: model.engine });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || /ENOENT|no checkpoint|does not exist/i.test((error as Error).message)) return null;
    throw error;
  }
  try {
    const round = Number(loaded.streamOffsets['round'] ?? loaded.model.stepCount);
    const slots = new Map<string, Record<string, Float32Array>>();
    for (const [name, record] of loaded.optimizer?.state() ?? []) slots.set(name, Object.fromEntries(Object.entries(record).map(([slot, t]) => [slot, t.toFloat32Array()])));
    return { round, stepCount: loaded.model.stepCount, iterations: loaded.optimizer?.iterations ?? 0, weights: loaded.model.getWeights(), slots };
  } finally {
    if (loaded.optimizer) loaded.optimizer.release(modelHost(loaded.model).parameters, model.engine);
    loaded.model.dispose();
  }
}
