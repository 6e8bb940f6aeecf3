/**
 * Transfer learning: a new model from some layers of a trained one (weights copied), and freezing layers
 * by name, glob or predicate. Frozen layers' parameters keep their values bit for bit, and dense and conv2d
 * skip the work for their own gradients.
 */
import type { Layer, Parameter } from './layer.ts';
import { selectLayers, type LayerSelector } from './layer-match.ts';
import { modelHost, sequential, type Model } from './model.ts';
import { layerFromConfig } from './registry.ts';

/**
 * Parameters that are state, not learnt, and never become trainable: batch norm's moving statistics and
 * pruning masks (recognised by name, as checkpoints name them).
 */
const STATE = /\/(movingMean|movingVariance|kernel_mask)$/;

/** The layer's own parameters in `model` (its name is their prefix). */
function parametersOf(model: Model, layer: Layer): Parameter[] {
  return modelHost(model).parameters.filter((p) => p.name.startsWith(`${layer.name}/`) && !STATE.test(p.name));
}

function setTrainable(model: Model, selector: LayerSelector, trainable: boolean, what: string): string[] {
  const layers = selectLayers(model.layers, selector, what);
  for (const layer of layers) for (const p of parametersOf(model, layer)) p.trainable = trainable;
  return layers.map((l) => l.name);
}

/**
 * Freezes the chosen layers: the optimizer leaves their parameters as they are and their backward skips
 * the gradient work for them. A selector matching no layer is an error naming it. Returns the layers' names.
 *
 * Usage: `freeze(model, 'conv*')`, `freeze(model, (layer, i) => i < 6)`
 */
export function freeze(model: Model, selector: LayerSelector): string[] {
  return setTrainable(model, selector, false, `${model.name}.freeze`);
}

/**
 * Makes the chosen layers trainable again (their state parameters — moving statistics, masks — stay frozen).
 *
 * Usage: `unfreeze(model, 'conv2d_3')`
 */
export function unfreeze(model: Model, selector: LayerSelector): string[] {
  return setTrainable(model, selector, true, `${model.name}.unfreeze`);
}

/** Whether every learnt parameter of `layer` in `model` is frozen (false for a layer without any). */
export function isFrozen(model: Model, layer: Layer): boolean {
  const params = parametersOf(model, layer);
  return params.length > 0 && params.every((p) => !p.trainable);
}

/** Options of {@link transferModel}. */
export interface TransferOptions {
  /** The layers of `source` to keep, in order (default: all but the last layer with parameters, the old head). */
  layers?: LayerSelector;
  /** New layers after them (the new head), built fresh. */
  head: readonly Layer[];
  /**
   * 'copy': the new model gets its own copies of the kept layers' weights; training it leaves `source` as it
   * is. (Sharing one set of weights between two models is not offered: each model owns and frees its memory.)
   */
  weights: 'copy';
  /** Freeze the kept layers (default false; `freeze`/`unfreeze` change it later). */
  freeze?: boolean;
  name?: string;
  seed?: number;
}

/**
 * A new model made of some trained layers of `source` (by default all but its head) followed by `head`,
 * the kept layers' weights copied. Layer names are kept, so checkpoints and parameter groups address them
 * as in `source`.
 *
 * Usage: `const model = transferModel(pretrained, { head: [dense(5)], weights: 'copy', freeze: true });`
 */
export function transferModel(source: Model, options: TransferOptions): Model {
  if (options?.weights !== 'copy') throw new RangeError(`transferModel: weights must be 'copy', got ${JSON.stringify(options?.weights)}`);
  if (!Array.isArray(options.head)) throw new RangeError('transferModel: head must be an array of layers (it may be empty)');
  const lastLearning = source.layers.findLastIndex((l) => l.parameters().length > 0);
  const kept = selectLayers(source.layers, options.layers ?? ((_l, i) => i < lastLearning), 'transferModel.layers');
  // New head layers get the first free name of their kind (dense_2 after a kept dense_1).
  const taken = new Set(kept.map((l) => l.name));
  for (const layer of options.head) {
    for (let n = 1; !layer.name; n++) if (!taken.has(`${layer.kind}_${n}`)) layer.name = `${layer.kind}_${n}`;
    taken.add(layer.name);
  }
  const model = sequential([...kept.map((l) => layerFromConfig(l.kind, l.config(), l.name)), ...options.head], {
    inputShape: source.inputShape, seed: options.seed ?? source.seed, engine: source.engine, name: options.name ?? `${source.name}_transfer`,
  });
  const names = new Set(kept.flatMap((l) => parametersOf(source, l).concat(modelHost(source).parameters.filter((p) => p.name.startsWith(`${l.name}/`))).map((p) => p.name)));
  model.setWeights(new Map([...source.getWeights()].filter(([name]) => names.has(name))));
  if (options.freeze) freeze(model, (l) => kept.some((k) => k.name === l.name));
  return model;
}
