/**
 * Composite activations in foreign ONNX graphs, recognised by what they compute rather than by their
 * node order: exporters spell layer normalisation (PyTorch below opset 17: ReduceMean, Sub, Pow,
 * ReduceMean, Add, Sqrt, Div, Mul, Add) and the tanh-form GELU (below opset 20: a string of Mul/Add/Tanh)
 * in several arrangements. The reader takes the region of elementwise and last-axis-mean nodes that
 * starts at the chain's value and ends in one value, evaluates it in float64 on probe rows, and matches
 * the result against gelu(x), or layerNorm(x)·gain + bias with gain, bias solved from two probes and
 * checked on two more (gain and bias then snap to the graph's own constants when they equal them). The
 * largest matching region wins.
 */
import type { NodeProto, TensorValue } from './onnx-proto.ts';
import { Attributes, shortestFloat32 } from './onnx-proto.ts';

/** Operators a composite region may contain. */
export const COMPOSITE_OPS = ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sqrt', 'Tanh', 'ReduceMean'] as const;

/** What a region computes, when it is one of the activations rxgrad has. */
export type Composite =
  | { kind: 'gelu'; nodes: Set<NodeProto>; output: string }
  | { kind: 'layerNorm'; nodes: Set<NodeProto>; output: string; epsilon: number; gain: Float32Array; bias: Float32Array };

const ROWS = 4;

/**
 * Regions of composite nodes fed by `x` (from node index `start`), smallest first: each time exactly one
 * value made inside is still needed outside (or is the graph output) and nothing outside reads `x`.
 */
function* regionsFrom(nodes: readonly NodeProto[], start: number, x: string, constants: ReadonlyMap<string, TensorValue>, consumers: ReadonlyMap<string, NodeProto[]>, graphOutput: string): Generator<{ nodes: NodeProto[]; output: string }> {
  const inside = new Set([x]);
  const region = new Set<NodeProto>();
  for (let i = start; i < nodes.length; i++) {
    const node = nodes[i]!;
    const computed = (node.input ?? []).filter((n) => n && !constants.has(n));
    if (computed.length === 0) continue;
    if (!computed.every((n) => inside.has(n)) || !(COMPOSITE_OPS as readonly string[]).includes(node.opType ?? '')) {
      if (computed.some((n) => inside.has(n))) return;
      continue;
    }
    region.add(node);
    for (const o of node.output ?? []) inside.add(o);
    const outside = (v: string) => v === graphOutput || (consumers.get(v) ?? []).some((c) => !region.has(c));
    const live = [...inside].filter((v) => v !== x && outside(v));
    if (live.length === 1 && !(consumers.get(x) ?? []).some((c) => !region.has(c))) yield { nodes: [...region], output: live[0]! };
  }
}

/** Evaluates the region on probe rows `[ROWS, D]` (row-major), constants broadcast from scalars or `[D]`. */
function evaluate(region: readonly NodeProto[], x: string, probe: Float64Array, D: number, lastAxis: number, constants: ReadonlyMap<string, TensorValue>, output: string): Float64Array | null {
  const values = new Map<string, Float64Array>([[x, probe]]);
  const read = (name: string): Float64Array | null => {
    const v = values.get(name);
    if (v) return v;
    const c = constants.get(name);
    const data = c?.floats ?? (c?.ints ? Float64Array.from(c.ints) : null);
    if (!data || (data.length !== 1 && data.length !== D)) return null;
    return Float64Array.from({ length: ROWS * D }, (_, i) => data[data.length === 1 ? 0 : i % D]!);
  };
  for (const node of region) {
    const [a, b] = (node.input ?? []).map((n) => (n ? read(n) : null));
    if (!a) return null;
    const out = new Float64Array(ROWS * D);
    const op = node.opType;
    if (op === 'ReduceMean') {
      const attrs = new Attributes(node);
      const axes = node.input?.[1] ? (constants.get(node.input[1])?.ints ?? []) : attrs.ints('axes', []);
      if (axes.length !== 1 || (axes[0] !== -1 && axes[0] !== lastAxis) || attrs.int('keepdims', 1) !== 1) return null;
      for (let r = 0; r < ROWS; r++) {
        let s = 0;
        for (let j = 0; j < D; j++) s += a[r * D + j]!;
        out.fill(s / D, r * D, (r + 1) * D);
      }
    } else if (op === 'Sqrt' || op === 'Tanh') {
      for (let i = 0; i < out.length; i++) out[i] = op === 'Sqrt' ? Math.sqrt(a[i]!) : Math.tanh(a[i]!);
    } else {
      if (!b) return null;
      const f = { Add: (p: number, q: number) => p + q, Sub: (p: number, q: number) => p - q, Mul: (p: number, q: number) => p * q, Div: (p: number, q: number) => p / q, Pow: (p: number, q: number) => p ** q }[op as 'Add'];
      for (let i = 0; i < out.length; i++) out[i] = f(a[i]!, b[i]!);
    }
    values.set(node.output![0]!, out);
  }
  return values.get(output) ?? null;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number): boolean => {
  for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i]! - b[i]!) <= tol * Math.max(1, Math.abs(b[i]!)))) return false;
  return true;
};

/** Probe rows with varied spread per row, from a fixed sequence (no randomness in the reader). */
function probe(D: number, k: number): Float64Array {
  return Float64Array.from({ length: ROWS * D }, (_, i) => Math.sin(1.7 * i + 3.1 * k) * (1 + Math.floor(i / D)) + 0.3 * k);
}

/**
 * The activation that the composite region starting at node `start` (fed by `x`, `D` features on the last
 * axis) computes, or null when it is not one rxgrad has.
 *
 * Usage (inside the ONNX reader): `const c = recogniseComposite(nodes, i, current, D, constants, consumers, output);`
 */
export function recogniseComposite(
  nodes: readonly NodeProto[], start: number, x: string, D: number, lastAxis: number, constants: ReadonlyMap<string, TensorValue>, consumers: ReadonlyMap<string, NodeProto[]>, graphOutput: string,
): Composite | null {
  // The largest region that matches: a layer norm's region is also one (gain 1, bias 0) before its Mul and Add.
  let best: Composite | null = null;
  for (const region of regionsFrom(nodes, start, x, constants, consumers, graphOutput)) {
    const outputs = [0, 1, 2, 3].map((k) => evaluate(region.nodes, x, probe(D, k), D, lastAxis, constants, region.output));
    if (outputs.some((o) => o === null)) continue;
    const found = match(outputs as Float64Array[], region.nodes, D, constants);
    if (found) best = { ...found, nodes: new Set(region.nodes), output: region.output } as Composite;
  }
  return best;
}

/** gelu, or layerNorm with its epsilon, gain and bias, from a region's outputs on the four probes. */
function match(outputs: Float64Array[], region: readonly NodeProto[], D: number, constants: ReadonlyMap<string, TensorValue>): { kind: 'gelu' } | { kind: 'layerNorm'; epsilon: number; gain: Float32Array; bias: Float32Array } | null {
  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  if ([0, 1].every((k) => close(outputs[k]!, probe(D, k).map(gelu), 1e-6))) return { kind: 'gelu' };
  if (D < 2) return null;
  // layerNorm: y = n·g + b per feature; try each small scalar constant of the region (and the usual values) as epsilon.
  const inputsOf = (length: number) => region.flatMap((n) => (n.input ?? []).map((i) => constants.get(i ?? '')?.floats).filter((f): f is Float32Array => f?.length === length));
  const scalars = inputsOf(1).map((f) => f[0]!);
  for (const epsilon of [...new Set([...scalars.filter((s) => s > 0 && s < 0.1), 1e-5, 1e-3, 1e-6, 1e-12])]) {
    const normed = [0, 1, 2, 3].map((k) => normalise(probe(D, k), D, epsilon));
    const gain = new Float64Array(D);
    const bias = new Float64Array(D);
    for (let j = 0; j < D; j++) {
      gain[j] = (outputs[0]![j]! - outputs[1]![j]!) / (normed[0]![j]! - normed[1]![j]!);
      bias[j] = outputs[0]![j]! - normed[0]![j]! * gain[j]!;
    }
    if (![2, 3].every((k) => close(normed[k]!.map((v, i) => v * gain[i % D]! + bias[i % D]!), outputs[k]!, 1e-6))) continue;
    const snap = (solved: Float64Array) => inputsOf(D).find((v) => close(solved, v, 1e-5)) ?? Float32Array.from(solved);
    return { kind: 'layerNorm', epsilon: shortestFloat32(epsilon), gain: Float32Array.from(snap(gain)), bias: Float32Array.from(snap(bias)) };
  }
  return null;
}

/** Rows of `[ROWS, D]` normalised to zero mean and unit variance (+ epsilon), in float64. */
function normalise(p: Float64Array, D: number, epsilon: number): Float64Array {
  const n = new Float64Array(p.length);
  for (let r = 0; r < ROWS; r++) {
    const row = p.subarray(r * D, (r + 1) * D);
    const mean = row.reduce((s, v) => s + v, 0) / D;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / D;
    for (let j = 0; j < D; j++) n[r * D + j] = (row[j]! - mean) / Math.sqrt(variance + epsilon);
  }
  return n;
}
