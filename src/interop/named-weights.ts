/**
 * Named weights in: a safetensors state dict (PyTorch, Hugging Face) loaded into an existing model's
 * parameters by a name map, with the layout conversions PyTorch needs (Linear `[out, in]` transposed,
 * conv OIHW → HWIO, recurrent `weight_ih`/`weight_hh` gate-major → rxgrad, GRU gates r z n → z r h,
 * LSTM/RNN `bias_ih + bias_hh` summed) and a report of what was loaded, missing and left over.
 */
import { readFile } from 'node:fs/promises';
import type { Model } from '../model.ts';
import { decodeSafetensors, type SafetensorsTensor } from '../safetensors.ts';
import { formatShape, sizeOf, type Shape } from '../tensor.ts';
import { layerTree, type LayerNode } from './layer-tree.ts';
import { GATE_ORDER, gateMajorToKernel, gatePermutation, oihwToHwio, permuteGates, transpose2d, type RecurrentKind } from './layouts.ts';

/**
 * Source tensor name → model parameter name (null/undefined: not loaded, reported as left over), or several
 * names: the tensor is split into that many equal parts along its first axis (PyTorch's packed
 * `in_proj_weight` → query, key, value).
 */
export type WeightNameMap = ((source: string) => string | readonly string[] | null | undefined) | Readonly<Record<string, string | readonly string[]>>;

/** Options of {@link loadWeights}. */
export interface LoadWeightsOptions {
  /**
   * Names: a function or a table from the file's tensor names to the model's parameter names
   * (`'fc1.weight' → 'dense_1/kernel'`). Default: the same names. For recurrent biases, PyTorch's two
   * (`bias_ih`, `bias_hh`) may map to one target; they are told apart by `_ih`/`_hh` in the source name,
   * or by a `#input` / `#recurrent` suffix on the target.
   */
  map?: WeightNameMap;
  /** 'pytorch' (default): convert PyTorch layouts; 'rxgrad' (also Keras): copy as is. */
  layout?: 'pytorch' | 'rxgrad';
  /** Throw when some model parameters get no value (default false: listed in the report). */
  strict?: boolean;
}

/** What {@link loadWeights} did. */
export interface LoadWeightsReport {
  /** Each parameter set, with its source tensor(s) and the conversion applied. */
  loaded: { target: string; sources: string[]; conversion: string }[];
  /** Model parameters nothing was loaded into (they keep their values). */
  missing: string[];
  /** Tensors of the file that were not loaded (no mapping). */
  unused: string[];
}

/** A file or map that does not fit the model; names the tensor and parameter. */
export class WeightLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightLoadError';
  }
}

/** The leaf layer owning each parameter (by prefix), for the conversion rules. */
function owners(model: Model): Map<string, LayerNode> {
  const result = new Map<string, LayerNode>();
  const names = model.parameters().map((p) => p.name);
  const visit = (n: LayerNode) => {
    if (n.children.length > 0) return n.children.forEach(visit);
    for (const name of names) if (name.startsWith(n.prefix)) result.set(name, n);
  };
  layerTree(model).forEach(visit);
  return result;
}

interface Source {
  name: string;
  tensor: SafetensorsTensor;
  /** 0 input bias, 1 recurrent bias, null otherwise. */
  half: 0 | 1 | null;
}

/** Converts PyTorch-layout sources for one parameter into rxgrad layout; returns the values and a description. */
function convert(target: string, shape: Shape, owner: LayerNode | undefined, sources: Source[], layout: 'pytorch' | 'rxgrad', file: string): { values: Float32Array; conversion: string } {
  const fail = (message: string): never => {
    throw new WeightLoadError(`${file}: ${sources.map((s) => `'${s.name}' ${formatShape(s.tensor.shape)}`).join(' + ')} → '${target}' ${formatShape(shape)}: ${message}`);
  };
  const data = sources.map((s) => s.tensor.data as Float32Array);
  const local = owner ? target.slice(owner.prefix.length) : target;
  const kind = owner?.kind ?? '';
  const recurrent = (kind === 'lstm' || kind === 'gru' || kind === 'simpleRnn') ? (kind as RecurrentKind) : null;
  if (sources.length > 1 && !(recurrent && local === 'bias' && layout === 'pytorch')) fail('several tensors map to one parameter (only PyTorch recurrent biases combine)');
  const sizeMatches = (n: number) => (n === sizeOf(shape) ? true : fail(`${n} values for ${sizeOf(shape)}`));
  const first = sources[0]!.tensor.shape;
  if (layout === 'rxgrad') {
    sizeMatches(data[0]!.length);
    return { values: data[0]!.slice(), conversion: 'copied' };
  }
  if (recurrent) {
    const perm = gatePermutation(GATE_ORDER.pytorch[recurrent], GATE_ORDER.rxgrad[recurrent]);
    const units = owner!.config['units'] as number;
    const G = perm.length;
    if (local === 'kernel' || local === 'recurrentKernel') {
      if (first.length !== 2 || first[0] !== G * units || first[1] !== shape[0]) fail(`expected PyTorch's [${G * units}, ${shape[0]}] (gate-major ${GATE_ORDER.pytorch[recurrent].join(' ')})`);
      return { values: gateMajorToKernel(data[0]!, shape[0]!, units, perm), conversion: `gate-major ${GATE_ORDER.pytorch[recurrent].join('')} → [in, gates·units] ${GATE_ORDER.rxgrad[recurrent].join('')}` };
    }
    if (local === 'bias') {
      const halves: (Float32Array | null)[] = [null, null];
      for (const [i, s] of sources.entries()) {
        if (data[i]!.length !== G * units) fail(`each recurrent bias has ${G * units} values`);
        const half = s.half ?? (sources.length === 1 ? 0 : fail(`cannot tell '${s.name}' input from recurrent bias: name it *_ih / *_hh or map to '${target}#input' / '${target}#recurrent'`));
        if (halves[half]) fail(`two ${half === 0 ? 'input' : 'recurrent'} biases`);
        halves[half] = permuteGates(data[i]!, units, perm);
      }
      const zero = new Float32Array(G * units);
      const [input, rec] = [halves[0] ?? zero, halves[1] ?? zero];
      if (recurrent === 'gru') return { values: Float32Array.from([...input, ...rec]), conversion: 'rows [input; recurrent], gates r z n → z r h' };
      return { values: input.map((v, i) => v + rec[i]!), conversion: 'bias_ih + bias_hh' };
    }
  }
  if (local.endsWith('kernel') && shape.length === 2) {
    if (first.join() === [shape[1], shape[0]].join()) return { values: transpose2d(data[0]!, shape[1]!, shape[0]!), conversion: 'transposed [out, in] → [in, out]' };
    fail(`expected PyTorch's [${shape[1]}, ${shape[0]}] ([out, in])`);
  }
  if (kind === 'conv2d' && local === 'kernel') {
    const [kh, kw, cin, cout] = shape as [number, number, number, number];
    if (first.join() !== [cout, cin, kh, kw].join()) fail(`expected PyTorch's OIHW [${cout}, ${cin}, ${kh}, ${kw}]`);
    return { values: oihwToHwio(data[0]!, cout, cin, kh, kw), conversion: 'OIHW → HWIO' };
  }
  if (first.join() !== shape.join() && sizeOf(first) === sizeOf(shape) && first.length > 1) fail('same size but a different shape; give layout: "rxgrad" if the values are already in rxgrad order');
  sizeMatches(data[0]!.length);
  return { values: data[0]!.slice(), conversion: 'copied' };
}

/**
 * Loads named tensors into a model's parameters (see {@link loadWeights}); `file` names the source in errors.
 * Either everything is set or, on an error, nothing is.
 *
 * Usage: `const report = loadWeightsFrom(model, decodeSafetensors(bytes).tensors, { map: { 'fc.weight': 'dense_1/kernel' } });`
 */
export function loadWeightsFrom(model: Model, tensors: ReadonlyMap<string, SafetensorsTensor>, options: LoadWeightsOptions = {}, file = '<tensors>'): LoadWeightsReport {
  const layout = options.layout ?? 'pytorch';
  const map = options.map ?? ((name: string) => name);
  const targetOf = typeof map === 'function' ? map : (name: string) => map[name];
  const shapes = new Map(model.parameters().map((p) => [p.name, p.shape]));
  const byTarget = new Map<string, Source[]>();
  const unused: string[] = [];
  const take = (name: string, mapped: string, tensor: SafetensorsTensor) => {
    const [target, suffix] = mapped.split('#') as [string, string | undefined];
    if (!shapes.has(target)) throw new WeightLoadError(`${file}: '${name}' maps to '${target}', which the model does not have (its parameters: ${[...shapes.keys()].join(', ')})`);
    const half = suffix === 'input' ? 0 : suffix === 'recurrent' ? 1 : /(^|[._])(weight|bias)_ih/.test(name) ? 0 : /(^|[._])(weight|bias)_hh/.test(name) ? 1 : null;
    byTarget.set(target, [...(byTarget.get(target) ?? []), { name, tensor, half }]);
  };
  for (const [name, tensor] of tensors) {
    const mapped = targetOf(name);
    if (mapped === null || mapped === undefined) {
      unused.push(name);
      continue;
    }
    if (tensor.dtype !== 'F32') throw new WeightLoadError(`${file}: '${name}' is ${tensor.dtype}; parameters are float32`);
    const bad = (tensor.data as Float32Array).findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new WeightLoadError(`${file}: '${name}' holds ${tensor.data[bad]} at element ${bad}: weights must be finite`);
    if (typeof mapped === 'string') {
      take(name, mapped, tensor);
      continue;
    }
    // One tensor, several parameters: equal parts along the first axis.
    const parts = mapped.length;
    const rows = tensor.shape[0] ?? 0;
    if (parts === 0 || rows % parts !== 0) throw new WeightLoadError(`${file}: '${name}' ${formatShape(tensor.shape)} cannot be split into ${parts} equal parts along its first axis`);
    const size = tensor.data.length / parts;
    mapped.forEach((target, i) => take(`${name}[${i}/${parts}]`, target, { dtype: 'F32', shape: [rows / parts, ...tensor.shape.slice(1)], data: tensor.data.subarray(i * size, (i + 1) * size) }));
  }
  const owner = owners(model);
  const weights = new Map<string, Float32Array>();
  const loaded: LoadWeightsReport['loaded'] = [];
  for (const [target, sources] of byTarget) {
    const { values, conversion } = convert(target, shapes.get(target)!, owner.get(target), sources, layout, file);
    weights.set(target, values);
    loaded.push({ target, sources: sources.map((s) => s.name), conversion });
  }
  const missing = [...shapes.keys()].filter((n) => !weights.has(n));
  if (options.strict && missing.length > 0) throw new WeightLoadError(`${file}: no tensor for ${missing.join(', ')} (strict)`);
  model.setWeights(weights);
  return { loaded, missing, unused };
}

/**
 * Loads a safetensors file (a PyTorch / Hugging Face state dict) into a model's parameters: names mapped
 * by a function or table, PyTorch layouts converted. Returns what was loaded, what the model still lacks,
 * and what the file had left over. Nothing is changed when an error is thrown.
 *
 * Usage: `const { missing, unused } = await loadWeights(model, 'model.safetensors', { map: (n) => n.replace('fc1.weight', 'dense_1/kernel') });`
 */
export async function loadWeights(model: Model, path: string, options: LoadWeightsOptions = {}): Promise<LoadWeightsReport> {
  return loadWeightsFrom(model, decodeSafetensors(await readFile(path), path).tensors, options, path);
}
