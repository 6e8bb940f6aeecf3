/**
 * What every importer shares: the last step (build the model for its input shape, then set the weights
 * read from the file; a shape that does not chain or a weight that does not fit becomes the importer's
 * error naming the file, and a half-built model is freed), and turning a layer constructor's refusal into
 * the importer's error naming the node or layer.
 */
import type { Engine } from '../engine.ts';
import type { Layer } from '../layer.ts';
import { sequential, type Model } from '../model.ts';
import type { Shape } from '../tensor.ts';

/** Options every importer takes. */
export interface ImportModelOptions {
  /** Seed of the model's later random choices (dropout, shuffling). Default 0. */
  seed?: number;
  engine?: Engine;
  /** Model name. */
  name?: string;
}

/**
 * `sequential(layers)` with the weights `weightsFor(model)` returns; errors rethrown through `wrap`.
 *
 * Usage: `return modelWithWeights(layers, [28, 28, 1], () => weights, options, 'onnx', (m) => new OnnxError(`${path}: ${m}`));`
 */
export function modelWithWeights(
  layers: Layer[], inputShape: Shape, weightsFor: (model: Model) => ReadonlyMap<string, Float32Array>, options: ImportModelOptions, name: string,
  wrap: (message: string, error: unknown) => Error,
): Model {
  let model: Model;
  try {
    model = sequential(layers, { inputShape, seed: options.seed ?? 0, ...(options.engine ? { engine: options.engine } : {}), name: options.name ?? name });
  } catch (error) {
    throw wrap((error as Error).message, error);
  }
  try {
    model.setWeights(weightsFor(model));
    return model;
  } catch (error) {
    model.dispose();
    throw error instanceof RangeError ? wrap(error.message, error) : error;
  }
}

/**
 * Rethrows `error` as the importer's own error class with `where` (file and node or layer) in front, unless
 * it already is one.
 *
 * Usage: `try { … } catch (error) { rethrowNamed(error, OnnxError, `${path}: node 'conv1' (Conv)`); }`
 */
export function rethrowNamed(error: unknown, kind: new (message: string) => Error, where: string): never {
  if (error instanceof kind) throw error;
  throw new kind(`${where}: ${(error as Error).message}`);
}
