/**
 * Weight layout conversions between rxgrad (Keras layouts: dense `[in, out]`, conv `[kh, kw, cin, cout]`
 * HWIO, recurrent gate blocks along the last axis) and ONNX/PyTorch (`[out, in]`, OIHW, gate blocks
 * along the first axis in each format's own order). See docs/INTEROP.md.
 */

/** `[rows, cols]` → `[cols, rows]`. Usage: `transpose2d(kernel, inputs, units)` gives PyTorch's `[out, in]`. */
export function transpose2d(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  return out;
}

/** Conv kernel HWIO `[kh, kw, cin, cout]` → OIHW `[cout, cin, kh, kw]`. */
export function hwioToOihw(values: Float32Array, kh: number, kw: number, cin: number, cout: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) {
    out[((o * cin + i) * kh + y) * kw + x] = values[((y * kw + x) * cin + i) * cout + o]!;
  }
  return out;
}

/** Conv kernel OIHW `[cout, cin, kh, kw]` → HWIO `[kh, kw, cin, cout]`. */
export function oihwToHwio(values: Float32Array, cout: number, cin: number, kh: number, kw: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let o = 0; o < cout; o++) for (let i = 0; i < cin; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    out[((y * kw + x) * cin + i) * cout + o] = values[((o * cin + i) * kh + y) * kw + x]!;
  }
  return out;
}

/** Gate order of the recurrent layers in each convention (names of the blocks, in storage order). */
export const GATE_ORDER = {
  rxgrad: { lstm: ['i', 'f', 'c', 'o'], gru: ['z', 'r', 'h'], simpleRnn: ['h'] },
  onnx: { lstm: ['i', 'o', 'f', 'c'], gru: ['z', 'r', 'h'], simpleRnn: ['h'] },
  pytorch: { lstm: ['i', 'f', 'c', 'o'], gru: ['r', 'z', 'h'], simpleRnn: ['h'] },
} as const;

export type RecurrentKind = keyof typeof GATE_ORDER.rxgrad;

/** For each target gate block, the index of the source block holding it. */
export function gatePermutation(from: readonly string[], to: readonly string[]): number[] {
  return to.map((g) => from.indexOf(g));
}

/**
 * Recurrent kernel in rxgrad layout `[inputs, G·U]` (gate blocks along columns) → gate-major `[G·U, inputs]`
 * with the blocks in `order` (ONNX W/R without the direction axis, PyTorch weight_ih/weight_hh).
 */
export function kernelToGateMajor(values: Float32Array, inputs: number, units: number, permutation: readonly number[]): Float32Array {
  const G = permutation.length;
  const out = new Float32Array(values.length);
  for (let g = 0; g < G; g++) {
    const src = permutation[g]!;
    for (let u = 0; u < units; u++) for (let f = 0; f < inputs; f++) out[(g * units + u) * inputs + f] = values[f * G * units + src * units + u]!;
  }
  return out;
}

/** Inverse of {@link kernelToGateMajor}: gate-major `[G·U, inputs]` with blocks in the source order → `[inputs, G·U]` rxgrad. */
export function gateMajorToKernel(values: Float32Array, inputs: number, units: number, permutation: readonly number[]): Float32Array {
  const G = permutation.length;
  const out = new Float32Array(values.length);
  for (let g = 0; g < G; g++) {
    const src = permutation[g]!;
    for (let u = 0; u < units; u++) for (let f = 0; f < inputs; f++) out[f * G * units + g * units + u] = values[(src * units + u) * inputs + f]!;
  }
  return out;
}

/** Reorders gate blocks of a bias vector `[G·U]`: block g of the result is block `permutation[g]` of the input. */
export function permuteGates(values: Float32Array, units: number, permutation: readonly number[]): Float32Array {
  const out = new Float32Array(values.length);
  permutation.forEach((src, g) => out.set(values.subarray(src * units, (src + 1) * units), g * units));
  return out;
}

/**
 * Images `[N, C, H, W]` (PyTorch, ONNX) → `[N, H, W, C]` (rxgrad, Keras), for feeding an imported model.
 *
 * Usage: `const features = nchwToNhwc(pixels, batch, 3, 32, 32);`
 */
export function nchwToNhwc(values: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    out[((b * h + y) * w + x) * c + ch] = values[((b * c + ch) * h + y) * w + x]!;
  }
  return out;
}

/**
 * ONNX's recurrent bias `[Wb, Rb]` (each `[G·U]` in ONNX gate order) as rxgrad's: GRU keeps both rows
 * (`[2, G·U]`), lstm and simpleRnn one bias, Wb + Rb (Wb alone when Rb is zero, so values round-trip bitwise).
 */
export function recurrentBiasFromOnnx(kind: RecurrentKind, b: Float32Array, units: number): Float32Array {
  const perm = gatePermutation(GATE_ORDER.onnx[kind], GATE_ORDER.rxgrad[kind]);
  const G = perm.length;
  const wb = permuteGates(b.subarray(0, G * units), units, perm);
  const rb = permuteGates(b.subarray(G * units), units, perm);
  if (kind === 'gru') return Float32Array.from([...wb, ...rb]);
  return rb.every((v) => v === 0) ? wb : wb.map((v, i) => v + rb[i]!);
}
