import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { map } from 'rxjs';
import { PruneLowMagnitude, pruneLayer, type PruningScope } from '../../operators/prune-low-magnitude.ts';
import { layerFromConfig } from '../registry.ts';
import type { Layer } from '../layer.ts';
import { selectLayers, type LayerSelector } from '../layer-match.ts';
import { modelHost, sequential, type Model } from '../model.ts';
import type { GradientOperator, ParameterGradients } from '../reverse-stream.ts';
import type { SavedCheckpoint } from '../checkpoint.ts';
import { magnitudeMasks, sparsityOf } from './masks.ts';
import { PruningConfigError, type PruningSchedule } from './schedules.ts';

/** Options of {@link pruneLowMagnitude} for a model. */
export interface PruneModelOptions {
  schedule: PruningSchedule;
  /** Which layers (default: every dense and conv2d layer). */
  layers?: LayerSelector;
  /** 'layer' (default): each layer reaches the sparsity on its own; 'global': one magnitude threshold over all of them. */
  scope?: PruningScope;
}

const PRUNABLE = new Set(['dense', 'conv2d']);

/** A copy of `layer` (same kind, config and name), unbuilt. */
const cloneLayer = (layer: Layer): Layer => layerFromConfig(layer.kind, layer.config(), layer.name);

/** A new model of `layers` with `model`'s input shape, seed and engine, and its weights where names match. */
function rebuild(model: Model, layers: Layer[], name: string): Model {
  const copy = sequential(layers, { inputShape: model.inputShape, seed: model.seed, engine: model.engine, name });
  const names = new Set(copy.parameters().map((p) => p.name));
  copy.setWeights(new Map([...model.getWeights()].filter(([n]) => names.has(n))));
  modelHost(copy).steps = model.stepCount;
  return copy;
}

/**
 * Magnitude pruning (TF Model Optimization's `prune_low_magnitude`): a copy of `model` whose chosen layers
 * are wrapped in {@link PruneLowMagnitude}, same weights and parameter names (plus a `kernel_mask` each).
 * Train it with `gradientOperators: [updatePruning(pruned)]`; export with {@link stripPruning}. Sparsity
 * outside [0, 1) and a selector matching no layer are errors naming the field.
 *
 * Usage: `const pruned = pruneLowMagnitude(model, { schedule: polynomialDecay({ initialSparsity: 0, finalSparsity: 0.8, beginStep: 0, endStep: 1000 }) });`
 */
export function pruneLowMagnitude(model: Model, options: PruneModelOptions): Model {
  if (!options?.schedule || typeof options.schedule.at !== 'function') throw new PruningConfigError('pruneLowMagnitude.schedule', 'give constantSparsity(…) or polynomialDecay(…)');
  const scope = options.scope ?? 'layer';
  const candidates = model.layers.filter((l) => PRUNABLE.has(l.kind));
  const chosen = new Set(selectLayers(candidates.length > 0 ? candidates : model.layers, options.layers ?? (() => true), 'pruneLowMagnitude.layers'));
  for (const l of chosen) {
    if (!PRUNABLE.has(l.kind)) throw new PruningConfigError('pruneLowMagnitude.layers', `${l.name} (${l.kind}) cannot be pruned: only dense and conv2d kernels`);
  }
  const layers = model.layers.map((l) => (chosen.has(l) ? pruneLayer(cloneLayer(l), options.schedule, scope) : cloneLayer(l)));
  return rebuild(model, layers, model.name);
}

/** The model's pruned layers. */
export function prunedLayers(model: Model): PruneLowMagnitude[] {
  return model.layers.filter((l): l is PruneLowMagnitude => l instanceof PruneLowMagnitude);
}


/**
 * The reverse-stream operator of pruning (TF-MOT's `UpdatePruningStep` callback): on the schedule's steps
 * it recomputes each mask from the weights' magnitudes (per layer, or one threshold for the 'global'
 * layers); on every step, right after the optimizer applied the update, it multiplies the weights by their
 * masks, so a pruned weight stays exactly zero (its gradient is masked by the layer's backward, and
 * momentum or weight decay cannot revive it).
 *
 * Usage: `pruned.train(data, { …, gradientOperators: [updatePruning(pruned)] })`
 */
export function updatePruning(model: Model): GradientOperator {
  const layers = prunedLayers(model);
  if (layers.length === 0) throw new PruningConfigError('updatePruning', `${model.name} has no pruned layers (make it with pruneLowMagnitude)`);
  const global = layers.filter((l) => l.scope === 'global');
  const groups = [...layers.filter((l) => l.scope === 'layer').map((l) => [l]), ...(global.length > 0 ? [global] : [])];
  for (const g of global) {
    if (JSON.stringify(g.schedule.config()) !== JSON.stringify(global[0]!.schedule.config())) {
      throw new PruningConfigError('pruneLowMagnitude.schedule', `global pruning needs one schedule; ${g.name} and ${global[0]!.name} differ`);
    }
  }
  const owner = {};
  for (const l of layers) l.updater = owner;
  let lastPruned = -1;
  const reapply = () => {
    for (const l of layers) l.applyMask();
  };
  return map((g: ParameterGradients) => {
    // Model steps before the item (its first step is numbered 1): the step the schedule's numbers count.
    const step = g.firstStep - 1;
    if (step !== lastPruned) {
      for (const group of groups) {
        const { prune, sparsity } = group[0]!.schedule.at(step);
        if (!prune) continue;
        magnitudeMasks(group.map((l) => l.kernel.value.data()), group.map((l) => l.mask.value.data()), sparsity);
        lastPruned = step;
      }
    }
    g.afterApply(reapply);
    return g;
  });
}

/**
 * A plain model for export: each pruned layer replaced by the layer it wraps, the masks applied to the
 * weights and dropped. `model` itself is left as it is.
 *
 * Usage: `await stripPruning(pruned).save('runs/pruned')`
 */
export function stripPruning(model: Model): Model {
  for (const l of prunedLayers(model)) l.applyMask();
  return rebuild(model, model.layers.map((l) => cloneLayer(l instanceof PruneLowMagnitude ? l.layer : l)), model.name);
}

/** Sparsity of one layer's kernel. */
export interface LayerSparsity {
  layer: string;
  parameter: string;
  size: number;
  zeros: number;
  sparsity: number;
}

/**
 * The fraction of exactly-zero values of every kernel (`<layer>/kernel`) in a model, pruned or not.
 *
 * Usage: `console.table(sparsityReport(model))`
 */
export function sparsityReport(model: Model): LayerSparsity[] {
  return model.parameters().filter((p) => p.name.endsWith('/kernel')).map((p) => {
    const values = p.values();
    const sparsity = sparsityOf(values);
    return { layer: p.name.slice(0, -'/kernel'.length), parameter: p.name, size: p.size, zeros: Math.round(sparsity * p.size), sparsity };
  });
}

/**
 * Bytes of a saved checkpoint's weights file as written and gzip-compressed (level 9): what pruning buys
 * on disk (zeros compress; float32 noise hardly does).
 *
 * Usage: `const { bytes, gzipBytes } = await compressedSize(await stripPruning(pruned).save('runs/p'))`
 */
export async function compressedSize(saved: SavedCheckpoint): Promise<{ bytes: number; gzipBytes: number }> {
  const bytes = await readFile(saved.weights);
  return { bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length };
}
