import type { Layer } from './layer.ts';

/** Layers chosen by name (exact), a glob (`'conv*'`, `'dense_?'`), a RegExp or a predicate. */
export type LayerSelector = string | RegExp | ((layer: Layer, index: number) => boolean);

/** Raised when a selector matches no layer; names the selector and the layers there are. */
export class LayerSelectionError extends Error {
  constructor(what: string, selector: LayerSelector, layers: readonly Layer[]) {
    super(`${what}: ${describeSelector(selector)} matches no layer (layers: ${layers.map((l) => l.name).join(', ')})`);
    this.name = 'LayerSelectionError';
  }
}

function describeSelector(selector: LayerSelector): string {
  return typeof selector === 'function' ? 'the predicate' : typeof selector === 'string' ? `'${selector}'` : String(selector);
}

/** Whether `layer` is chosen by `selector`. Usage: `matchesLayer(layer, 'conv*')` */
export function matchesLayer(layer: Layer, index: number, selector: LayerSelector): boolean {
  if (typeof selector === 'function') return selector(layer, index);
  if (selector instanceof RegExp) return selector.test(layer.name);
  if (typeof selector !== 'string') throw new TypeError(`layer selector must be a name, glob, RegExp or predicate, got ${JSON.stringify(selector)}`);
  return globToRegExp(selector).test(layer.name);
}

/** A glob (`*` any run, `?` one character, everything else literal) as an anchored RegExp. Usage: `globToRegExp('conv*').test('conv2d_1')` */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

/**
 * The layers `selector` chooses, in order; a selector choosing none is an error naming it (`what` says who asked).
 *
 * Usage: `selectLayers(model.layers, 'conv*', 'freeze')`
 */
export function selectLayers(layers: readonly Layer[], selector: LayerSelector, what: string): Layer[] {
  const chosen = layers.filter((l, i) => matchesLayer(l, i, selector));
  if (chosen.length === 0) throw new LayerSelectionError(what, selector, layers);
  return chosen;
}
