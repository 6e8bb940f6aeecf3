/**
 * What the `rxgrad` commands share: where output goes, option parsers that reject bad values with
 * one line, the data options, and model specs (JSON) → models.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
// The public API only (src/index.ts): the CLI is an application of the library.
import {
  adam, adamw, formatShape, layerFromConfig, loadDataFile, sequential, sgd, sizeOf,
  type DataFormat, type Model, type Optimizer, type TabularDataset,
} from '../index.ts';

/** Where a command writes: lines for people (`out`), diagnostics (`err`). */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
  /** Whether `out` is a terminal (progress bars). */
  interactive: boolean;
}

/** A user error: bad arguments, a bad file. Printed as one line; the process exits with status 2. */
export class CliError extends Error {
  override name = 'CliError';
}

/** Commander parser: a positive integer. Usage: `.option('--epochs <n>', 'epochs', positiveInt('--epochs'))` */
export const positiveInt = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'`);
  return n;
};

/** Commander parser: an integer ≥ 0. */
export const nonNegativeInt = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be an integer ≥ 0, got '${value}'`);
  return n;
};

/** Commander parser: a number ≥ 0. */
export const nonNegativeNumber = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!(n >= 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number ≥ 0, got '${value}'`);
  return n;
};

/** Commander parser: a number > 0. */
export const positiveNumber = (name: string) => (value: string): number => {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a positive number, got '${value}'`);
  return n;
};

/** Commander parser: a shape such as `28,28,1`. */
export const shapeList = (name: string) => (value: string): number[] => {
  const dims = value.split(',').map((d) => Number(d.trim()));
  if (dims.length === 0 || !dims.every((d) => Number.isInteger(d) && d > 0)) throw new InvalidArgumentError(`${name} must be positive integers separated by commas, got '${value}'`);
  return dims;
};

/** The data options every data-reading command takes. */
export interface DataOptions {
  data: string;
  labels?: string;
  label?: string;
  noLabel?: boolean;
  features?: string;
  shape?: number[];
  format?: DataFormat;
}

/** Adds `--data`, `--labels`, `--label`, `--features`, `--shape`, `--format` to a command. */
export function addDataOptions(command: Command, what: string, required = true): Command {
  const data = new Option('--data <file>', `${what}: .csv, .arrow/.feather (Arrow IPC), .parquet, or IDX images (.idx, -ubyte, optionally .gz)`);
  return command
    .addOption(required ? data.makeOptionMandatory() : data)
    .option('--labels <file>', 'IDX only: the labels file')
    .option('--label <column>', "table column holding the class labels (default 'label' or 'labels' if present)")
    .option('--features <columns>', 'table columns to use as features, comma separated (default: every other column)')
    .option('--shape <dims>', 'per-example shape, e.g. 28,28,1 (default: the number of feature values)', shapeList('--shape'))
    .addOption(new Option('--format <format>', 'data format (default: from the extension)').choices(['idx', 'csv', 'arrow', 'parquet']));
}

/** Loads `--data` (with `--labels`, or a second file given as `path`, e.g. `--validation`). */
export async function loadData(options: DataOptions, path = options.data, labels = options.labels): Promise<TabularDataset> {
  return loadDataFile(path, {
    ...(options.format ? { format: options.format } : {}),
    ...(labels !== undefined ? { labels } : {}),
    ...(options.label !== undefined ? { label: options.label } : {}),
    ...(options.features !== undefined ? { features: options.features.split(',').map((c) => c.trim()) } : {}),
    ...(options.shape ? { shape: options.shape } : {}),
  });
}

/** Checks a dataset fits a model's input (and, with labels required, its classes). */
export function checkFits(data: TabularDataset, model: Model, needLabels: boolean): void {
  if (sizeOf(data.shape) !== sizeOf(model.inputShape)) {
    throw new CliError(`${data.name}: examples have ${sizeOf(data.shape)} values (shape ${formatShape(data.shape)}); the model takes ${formatShape(model.inputShape)}`);
  }
  if (!needLabels) return;
  if (!data.labels) throw new CliError(`${data.name}: no label column (name it with --label, or --labels for IDX)`);
  const outputs = sizeOf(model.outputShape);
  if (data.classes > outputs) throw new CliError(`${data.name}: label ${data.classes - 1} is out of range for the model's ${outputs} outputs`);
}

/** A model spec file: layers by kind and config (as checkpoints record them), plus training defaults. */
export interface ModelSpec {
  name?: string;
  inputShape?: number[];
  seed?: number;
  layers: { kind: string; name?: string; config?: Record<string, unknown> }[];
  optimizer?: { name: string } & Record<string, unknown>;
}

const OPTIMIZER_FIELDS = new Set(['learningRate', 'beta1', 'beta2', 'epsilon', 'weightDecay', 'momentum', 'nesterov', 'emaMomentum']);

/** An optimizer from its name and options (`{"name": "adam", "learningRate": 0.01}`), each field checked. */
export function optimizerFromSpec(spec: { name: string } & Record<string, unknown>, where: string): Optimizer {
  const { name, ...config } = spec;
  for (const [key, value] of Object.entries(config)) {
    if (!OPTIMIZER_FIELDS.has(key)) throw new CliError(`${where}: optimizer field '${key}' is unknown (known: ${[...OPTIMIZER_FIELDS].join(', ')})`);
    if (typeof value !== (key === 'nesterov' ? 'boolean' : 'number')) throw new CliError(`${where}: optimizer field '${key}' must be a ${key === 'nesterov' ? 'boolean' : 'number'}, got ${JSON.stringify(value)}`);
  }
  try {
    if (name === 'adam') return adam(config);
    if (name === 'adamw') return adamw(config);
    if (name === 'sgd') return sgd(config);
  } catch (error) {
    throw new CliError(`${where}: optimizer: ${(error as Error).message}`);
  }
  throw new CliError(`${where}: optimizer name must be 'adam', 'adamw' or 'sgd', got ${JSON.stringify(name)}`);
}

/**
 * Reads a model spec (JSON) and builds the model; `inputShape` defaults to the data's shape.
 *
 * Usage: `const { model, spec } = await modelFromSpecFile('mlp.json', [4]);`
 */
export async function modelFromSpecFile(path: string, dataShape: number[]): Promise<{ model: Model; spec: ModelSpec }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new CliError(`${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON: ${(error as Error).message}`}`);
  }
  const spec = parsed as ModelSpec;
  if (typeof spec !== 'object' || spec === null || !Array.isArray(spec.layers) || spec.layers.length === 0) throw new CliError(`${path}: a model spec needs "layers": [{"kind": "dense", "config": {"units": 10}}, …]`);
  if (spec.inputShape !== undefined && (!Array.isArray(spec.inputShape) || !spec.inputShape.every((d) => Number.isInteger(d) && d > 0))) throw new CliError(`${path}: "inputShape" must be a list of positive integers`);
  if (spec.seed !== undefined && !Number.isInteger(spec.seed)) throw new CliError(`${path}: "seed" must be an integer`);
  const counts = new Map<string, number>();
  try {
    const layers = spec.layers.map((layer, i) => {
      if (typeof layer !== 'object' || layer === null || typeof layer.kind !== 'string') throw new CliError(`${path}: layers[${i}] needs a "kind"`);
      const n = (counts.get(layer.kind) ?? 0) + 1;
      counts.set(layer.kind, n);
      return layerFromConfig(layer.kind, layer.config ?? {}, layer.name ?? `${layer.kind}_${n}`);
    });
    const model = sequential(layers, { inputShape: spec.inputShape ?? dataShape, seed: spec.seed ?? 0, name: spec.name ?? 'model' });
    return { model, spec };
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`${path}: ${(error as Error).message}`);
  }
}
