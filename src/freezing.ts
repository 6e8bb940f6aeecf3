import type { Layer, Parameter } from './layer.ts';
import { selectLayers, type LayerSelector } from './layer-match.ts';

/**
 * Parameters that are state, not learnt, and never become trainable: batch norm's moving statistics and
 * pruning masks (recognised by name, as checkpoints name them).
 */
const STATE = /(^|\/)(movingMean|movingVariance|kernel_mask)$/;

/** The learnt parameters of `layer` among a model's `parameters` (the layer's name is their prefix). */
export function learntParameters(parameters: readonly Parameter[], layer: Layer): Parameter[] {
  return parameters.filter((p) => p.name.startsWith(`${layer.name}/`) && !STATE.test(p.name));
}

/**
 * Sets `trainable` on the learnt parameters of the layers `selector` chooses (a selector choosing none is an
 * error naming it, from `what`); returns the layers' names.
 *
 * Usage (inside the model): `setTrainable(this.layers, this.params, 'conv*', false, 'freeze')`
 */
export function setTrainable(layers: readonly Layer[], parameters: readonly Parameter[], selector: LayerSelector, trainable: boolean, what: string): string[] {
  const chosen = selectLayers(layers, selector, what);
  for (const layer of chosen) for (const p of learntParameters(parameters, layer)) p.trainable = trainable;
  return chosen.map((l) => l.name);
}

/** 'yes', 'frozen', 'partly' (some learnt parameters frozen) or '' (nothing to learn): the summary's column. */
export function trainableState(parameters: readonly Parameter[], layer: Layer): string {
  const learnt = learntParameters(parameters, layer);
  if (learnt.length === 0) return '';
  const frozen = learnt.filter((p) => !p.trainable).length;
  return frozen === 0 ? 'yes' : frozen === learnt.length ? 'frozen' : 'partly';
}
