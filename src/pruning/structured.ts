/**
 * Structured pruning: whole dense units and conv filters with the smallest L2 norms removed, giving a
 * physically smaller model. The layer after a pruned one loses the matching inputs (through activations,
 * pooling, batch norm and flatten), so the model computes the same function with those units' outputs
 * forced to zero — up to the bias of removed units, which is why it is fine-tuned after.
 */
import { layerFromConfig } from '../registry.ts';
import type { Layer } from '../layer.ts';
import { matchesLayer, type LayerSelector } from '../layer-match.ts';
import { sequential, type Model } from '../model.ts';
import { PruningConfigError } from './schedules.ts';

/** Options of {@link pruneStructured}. */
export interface StructuredPruningOptions {
  /** Fraction of units/filters to remove from each chosen layer, in [0, 1). */
  fraction: number;
  /** Which dense/conv2d layers (default: all but the output layer, whose units are the model's outputs). */
  layers?: LayerSelector;
}

/** What {@link pruneStructured} removed. */
export interface StructuredPruningResult {
  model: Model;
  /** Per pruned layer: units/filters before and after. */
  layers: { layer: string; before: number; after: number }[];
}

/** Layers that act on each channel separately: channel indices pass through them unchanged. */
const CHANNELWISE = new Set([
  'relu', 'leakyRelu', 'sigmoid', 'tanh', 'gelu', 'dropout', 'spatialDropout2d', 'maxPool2d', 'avgPool2d', 'globalAvgPool2d',
  'randomFlip', 'randomRotate', 'randomCrop', 'randomTranslate',
]);

/** Keeps `indices` along `axis` of a row-major array of `shape`. */
function slice(values: Float32Array, shape: readonly number[], axis: number, indices: readonly number[]): { values: Float32Array; shape: number[] } {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const n = shape[axis]!;
  const out = new Float32Array(outer * indices.length * inner);
  for (let o = 0; o < outer; o++) {
    indices.forEach((k, j) => out.set(values.subarray((o * n + k) * inner, (o * n + k + 1) * inner), (o * indices.length + j) * inner));
  }
  const newShape = [...shape];
  newShape[axis] = indices.length;
  return { values: out, shape: newShape };
}

/** Indices of the `keep` output channels (last axis) with the largest L2 norms, ascending. */
function strongest(kernel: Float32Array, outputs: number, keep: number): number[] {
  const norms = new Float64Array(outputs);
  for (let i = 0; i < kernel.length; i++) norms[i % outputs] += kernel[i]! * kernel[i]!;
  return [...norms.keys()].sort((a, b) => norms[b]! - norms[a]! || a - b).slice(0, keep).sort((a, b) => a - b);
}

/**
 * Removes the weakest `fraction` of units (dense) or filters (conv2d) of the chosen layers by the L2
 * norm of their kernel slice, and the matching inputs of the layer that follows. Returns a new model (the
 * original is untouched) with the remaining weights; fine-tune it afterwards.
 *
 * Usage: `const { model: small } = pruneStructured(model, { fraction: 0.5 });`
 */
export function pruneStructured(model: Model, options: StructuredPruningOptions): StructuredPruningResult {
  const fraction = options?.fraction;
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction < 1)) throw new PruningConfigError('pruneStructured.fraction', `must be in [0, 1), got ${JSON.stringify(fraction)}`);
  const weights = model.getWeights();
  const shapes = new Map(model.parameters().map((p) => [p.name, [...p.shape]]));
  const learning = model.layers.map((l, i) => ({ l, i })).filter(({ l }) => l.kind === 'dense' || l.kind === 'conv2d');
  const last = learning.at(-1)?.l;
  const selector = options.layers ?? ((l: Layer) => l !== last);
  const chosen = new Set(learning.filter(({ l, i }) => matchesLayer(l, i, selector)).map(({ l }) => l));
  if (chosen.size === 0) throw new PruningConfigError('pruneStructured.layers', 'matches no dense or conv2d layer');
  if (last && chosen.has(last)) throw new PruningConfigError('pruneStructured.layers', `${last.name} is the output layer: its units are the model's outputs`);

  const layers: Layer[] = [];
  const newWeights = new Map<string, Float32Array>();
  const report: StructuredPruningResult['layers'] = [];
  /** Channels of the current activation's last axis that remain (null: all), and how many there were. */
  let kept: number[] | null = null;
  let channels = 0;
  const take = (name: string, axis: number, indices: number[] | null): void => {
    let values = newWeights.get(name) ?? weights.get(name)!;
    let shape = shapes.get(name)!;
    if (indices) ({ values, shape } = slice(values, shape, axis < 0 ? shape.length + axis : axis, indices));
    newWeights.set(name, values);
    shapes.set(name, shape);
  };
  for (const layer of model.layers) {
    const config = { ...layer.config() };
    const params = model.parameters().filter((p) => p.name.startsWith(`${layer.name}/`)).map((p) => p.name);
    if (layer.kind === 'dense' || layer.kind === 'conv2d') {
      const kernel = `${layer.name}/kernel`;
      const kShape = shapes.get(kernel)!;
      const inputAxis = kShape.length - 2;
      // After a flatten, each kept channel appears once per spatial position.
      let inputs = kept;
      if (kept && kShape[inputAxis] !== channels) {
        const positions = kShape[inputAxis]! / channels;
        inputs = [];
        for (let p = 0; p < positions; p++) for (const k of kept) inputs.push(p * channels + k);
      }
      take(kernel, inputAxis, inputs);
      const outputs = kShape.at(-1)!;
      let own: number[] | null = null;
      if (chosen.has(layer)) {
        const keep = Math.max(1, Math.round(outputs * (1 - fraction)));
        own = strongest(newWeights.get(kernel)!, outputs, keep);
        take(kernel, -1, own);
        config[layer.kind === 'dense' ? 'units' : 'filters'] = keep;
        report.push({ layer: layer.name, before: outputs, after: keep });
      }
      if (params.includes(`${layer.name}/bias`)) take(`${layer.name}/bias`, 0, own);
      kept = own;
      channels = outputs;
    } else if (layer.kind === 'batchNorm') {
      for (const name of params) take(name, 0, kept);
    } else if (layer.kind === 'flatten' || CHANNELWISE.has(layer.kind)) {
      // flatten: the next dense layer expands the kept channels over the spatial positions (above).
    } else if (kept) {
      throw new PruningConfigError('pruneStructured', `cannot carry removed channels through ${layer.name} (${layer.kind})`);
    } else {
      for (const name of params) take(name, 0, null);
    }
    layers.push(layerFromConfig(layer.kind, config, layer.name));
  }
  const small = sequential(layers, { inputShape: model.inputShape, seed: model.seed, engine: model.engine, name: model.name });
  small.setWeights(newWeights);
  return { model: small, layers: report };
}
