/**
 * Transfer learning: a new model from some layers of a trained one (weights copied), and freezing layers
 * by name, glob or predicate. Frozen layers' parameters keep their values bit for bit, and dense and conv2d
 * skip the work for their own gradients.
 */
import { trainableState } from './freezing.ts';
import type { Layer } from './layer.ts';
import { selectLayers, type LayerSelector } from './layer-match.ts';
import { modelHost, sequential, type Model } from './model.ts';
import { layerFromConfig } from './registry.ts';

/**
 * Freezes the chosen layers (see `Model.freeze`). Usage: `freeze(model, 'conv*')`, `freeze(model, (layer, i) => i < 6)`
 */
export function freeze(model: Model, selector: LayerSelector): string[] {
  return model.freeze(selector);
}

/** Makes the chosen layers trainable again (see `Model.unfreeze`). Usage: `unfreeze(model, 'conv2d_3')` */
export function unfreeze(model: Model, selector: LayerSelector): string[] {
  return model.unfreeze(selector);
}

/** Whether every learnt parameter of `layer` in `model` is frozen (false for a layer without any). */
export function isFrozen(model: Model, layer: Layer): boolean {
  return trainableState(modelHost(model).parameters, layer) === 'frozen';
}

/** Options of {@link transferModel}. */
export interface TransferOptions {
  /** The layers of `source` to keep, in order (default: all but the last layer with parameters, the old head). */
  layers?: LayerSelector;
  /** New layers after them (the new head), built fresh. */
  head: readonly Layer[];
  /**
   * 'copy': the new model gets its own copies of the kept layers' weights; training it leaves `source` as it
   * is. 'share': the kept layers use `source`'s weight memory (gradients and optimizer state stay per model),
   * so training one changes the other; dispose the new model before `source`.
   */
  weights: 'copy' | 'share';
  /** Freeze the kept layers (default false; `freeze`/`unfreeze` change it later). */
  freeze?: boolean;
  name?: string;
  seed?: number;
}

/**
 * A new model made of some trained layers of `source` (by default all but its head) followed by `head`,
 * the kept layers' weights copied or shared, as `weights` says. Layer names are kept, so checkpoints and parameter groups address them
 * as in `source`.
 *
 * Usage: `const model = transferModel(pretrained, { head: [dense(5)], weights: 'copy', freeze: true });`
 */
export function transferModel(source: Model, options: TransferOptions): Model {
  if (options?.weights !== 'copy' && options?.weights !== 'share') throw new RangeError(`transferModel: weights must be 'copy' or 'share', got ${JSON.stringify(options?.weights)}`);
  if (!Array.isArray(options.head)) throw new RangeError('transferModel: head must be an array of layers (it may be empty)');
  const lastLearning = source.layers.findLastIndex((l) => l.parameters().length > 0);
  const kept = selectLayers(source.layers, options.layers ?? ((_l, i) => i < lastLearning), 'transferModel.layers');
  // New head layers get the first name of their kind that no layer of `source` has (dense_3 after its
  // dense_1 and old head dense_2), so nothing of the old head is shared or mistaken for it.
  const taken = new Set(source.layers.map((l) => l.name));
  for (const layer of options.head) {
    for (let n = 1; !layer.name; n++) if (!taken.has(`${layer.kind}_${n}`)) layer.name = `${layer.kind}_${n}`;
    taken.add(layer.name);
  }
  const model = sequential([...kept.map((l) => layerFromConfig(l.kind, l.config(), l.name)), ...options.head], {
    inputShape: source.inputShape, seed: options.seed ?? source.seed, engine: source.engine, name: options.name ?? `${source.name}_transfer`,
    ...(options.weights === 'share' ? { shareWeightsFrom: source } : {}),
  });
  const names = new Set(kept.flatMap((l) => modelHost(source).parameters.filter((p) => p.name.startsWith(`${l.name}/`)).map((p) => p.name)));
  if (options.weights === 'copy') model.setWeights(new Map([...source.getWeights()].filter(([name]) => names.has(name))));
  if (options.freeze) freeze(model, (l) => kept.some((k) => k.name === l.name));
  return model;
}
