/**
 * The kernel contract: every compute kernel the engine calls, by pointer.
 *
 * All pointers are byte offsets into the one shared `WebAssembly.Memory` (see src/heap.ts); all
 * tensors are row-major float32 unless a parameter says i32. Two implementations honour it:
 * the SIMD128 wasm build (workers/assembly, compiled by `npm run build:wasm`) and the float64-accumulating
 * JS reference (workers/reference-kernels.ts), which is the oracle of the kernel properties.
 * Boolean-like flags are numbers (0 / 1) because they cross into wasm as i32.
 */
export interface Kernels {
  /**
   * C = alpha · op(A) · op(B) + beta · C, op(A) m×k, op(B) k×n, C m×n. transA: A is stored k×m
   * (leading dimension lda); transB: B is stored n×k. beta = 0 ignores C's old contents (NaN included).
   */
  gemm(
    transA: number, transB: number, m: number, n: number, k: number, alpha: number,
    a: number, lda: number, b: number, ldb: number, beta: number, c: number, ldc: number,
  ): void;
  /** y[r, c] += bias[c] for a rows×cols matrix. */
  addBias(y: number, bias: number, rows: number, cols: number): void;
  /** out[c] = beta · out[c] + Σ_r x[r, c]  (the bias gradient). */
  sumRows(x: number, out: number, rows: number, cols: number, beta: number): void;

  reluForward(x: number, y: number, n: number): void;
  /** dx = dy · [x > 0] */
  reluBackward(x: number, dy: number, dx: number, n: number): void;
  leakyReluForward(x: number, y: number, n: number, slope: number): void;
  leakyReluBackward(x: number, dy: number, dx: number, n: number, slope: number): void;
  sigmoidForward(x: number, y: number, n: number): void;
  /** dx = dy · y · (1 − y), y the forward output. */
  sigmoidBackward(y: number, dy: number, dx: number, n: number): void;
  tanhForward(x: number, y: number, n: number): void;
  /** dx = dy · (1 − y²), y the forward output. */
  tanhBackward(y: number, dy: number, dx: number, n: number): void;
  /** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  geluForward(x: number, y: number, n: number): void;
  geluBackward(x: number, dy: number, dx: number, n: number): void;
  /** Row-wise softmax of a rows×cols matrix (max-subtracted). */
  softmaxForward(x: number, y: number, rows: number, cols: number): void;
  /** dx[r, c] = y[r, c] · (dy[r, c] − Σ_j dy[r, j] · y[r, j]). */
  softmaxBackward(y: number, dy: number, dx: number, rows: number, cols: number): void;
  /**
   * Fused, numerically stable softmax cross-entropy with integer labels (i32 pointer):
   * lossPerRow[r] = logsumexp(logits[r]) − logits[r, label[r]];
   * dLogits[r, c] = scale · (softmax(logits[r])[c] − [c = label[r]]).
   */
  softmaxCrossEntropy(
    logits: number, labels: number, rows: number, cols: number, lossPerRow: number, dLogits: number, scale: number,
  ): void;

  /**
   * Fused Adam / AdamW step over n parameters, in place on param, m, v:
   * g = grad + (decoupled ? 0 : weightDecay·param); m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
   * param −= lr·( (m/bc1) / (√(v/bc2) + eps) + (decoupled ? weightDecay·param : 0) ),
   * bc1 = 1 − β1^t, bc2 = 1 − β2^t (computed by the caller).
   */
  adamUpdate(
    param: number, grad: number, m: number, v: number, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, decoupled: number, bc1: number, bc2: number,
  ): void;
  /**
   * SGD with momentum, in place: g = grad + weightDecay·param; vel = momentum·vel + g;
   * param −= lr·(nesterov ? g + momentum·vel : vel). momentum = 0 is plain SGD (vel may be 0 pointer then).
   */
  sgdUpdate(
    param: number, grad: number, velocity: number, n: number, lr: number, momentum: number, nesterov: number,
    weightDecay: number,
  ): void;

  /** x[i] = value */
  fill(x: number, n: number, value: number): void;
  /** y[i] = x[i] */
  copy(x: number, y: number, n: number): void;
  /** x[i] *= s */
  scale(x: number, n: number, s: number): void;
  /** y[i] += a · x[i] */
  axpy(n: number, a: number, x: number, y: number): void;
  /**
   * The moving average of the weights, one pass: ema[i] = ema[i]·momentum + a·x[i] (a = 1 − momentum, given
   * so that the f32 operands are those of scale then axpy, whose result it equals bitwise).
   */
  emaUpdate(ema: number, x: number, n: number, momentum: number, a: number): void;

  // ---- recurrent cells (workers/assembly/recurrent.ts). Gates are rows × 4U, blocks i, f, g, o (Keras).

  /**
   * One LSTM step after z = x·W + h·U + b: z ← activations in place (i, f, o = σ, g = tanh); then
   * c = f·cPrev + i·g, tanhC = tanh(c), h = o·tanhC (rows × U each).
   */
  lstmCellForward(z: number, cPrev: number, c: number, tanhC: number, h: number, rows: number, units: number): void;
  /**
   * Its gradient, from the forward's activations z, cPrev and tanhC: gradH = dh + dy (dy = 0: none),
   * gradC = dc + gradH·o·(1 − tanhC²); dz = (gradC·g·i(1−i), gradC·cPrev·f(1−f), gradC·i·(1−g²),
   * gradH·tanhC·o(1−o)) (rows × 4U); dc ← gradC·f in place.
   */
  lstmCellBackward(
    z: number, cPrev: number, tanhC: number, dh: number, dy: number, dc: number, dz: number, rows: number, units: number,
  ): void;

  /**
   * One GRU step (reset after, gate blocks z, r, h) after a = x·W + b_x and q = h·U + b_h (rows × 3U each):
   * a ← (z, r, ĥ) in place, z = σ(a_z + q_z), r = σ(a_r + q_r), ĥ = tanh(a_h + r·q_h); h = z·hPrev + (1 − z)·ĥ.
   */
  gruCellForward(a: number, q: number, hPrev: number, h: number, rows: number, units: number): void;
  /**
   * Its gradient from the saved (z, r, ĥ), q and hPrev: gradH = dh + dy (dy = 0: none); dPreH = gradH·(1 − z)·(1 − ĥ²),
   * dPreZ = gradH·(hPrev − ĥ)·z(1−z), dPreR = dPreH·q_h·r(1−r); da = (dPreZ, dPreR, dPreH), dq = (dPreZ, dPreR,
   * dPreH·r); dh ← gradH·z in place.
   */
  gruCellBackward(
    a: number, q: number, hPrev: number, dh: number, dy: number, da: number, dq: number, rows: number, units: number,
  ): void;

  // ---- 2-D convolution, NHWC (workers/assembly/conv.ts). Geometry, in this order everywhere:
  // batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, padTop, padLeft, dilationH, dilationW.
  // Input position of output (oy, ox), tap (ky, kx): (oy·strideH − padTop + ky·dilationH,
  // ox·strideW − padLeft + kx·dilationW); taps outside the input read 0 (zero padding; bottom/right
  // padding is implied by outH/outW). Filters are [kH, kW, inC, outC] (Keras layout).

  /**
   * y[n, oy, ox, co] = bias[co] + Σ_{ky, kx, ci} x[n, iy, ix, ci] · w[ky, kx, ci, co]; bias = 0: none. Direct SIMD.
   * activation: 0 (default) none, 1 ReLU (y = max(y, 0) with reluForward's rule: NaN and −0 give +0).
   */
  conv2dForward(
    x: number, w: number, bias: number, y: number, batch: number, inH: number, inW: number, inC: number,
    outH: number, outW: number, outC: number, kH: number, kW: number, strideH: number, strideW: number,
    padTop: number, padLeft: number, dilationH: number, dilationW: number, activation?: number,
  ): void;
  /**
   * The same result as {@link conv2dForward} (no activation) through im2col + GEMM: chunks of ⌊workFloats / (kH·kW·inC)⌋
   * output pixels are unrolled into `work` (≥ kH·kW·inC floats) and multiplied by the filter.
   */
  conv2dForwardIm2col(
    x: number, w: number, bias: number, y: number, work: number, workFloats: number, batch: number, inH: number,
    inW: number, inC: number, outH: number, outW: number, outC: number, kH: number, kW: number, strideH: number,
    strideW: number, padTop: number, padLeft: number, dilationH: number, dilationW: number,
  ): void;
  /** wt[t, co, ci] = w[t, ci, co] for t < taps (= kH·kW): the filter layout conv2dBackwardInput reads. */
  conv2dTransposeFilter(w: number, wt: number, taps: number, inC: number, outC: number): void;
  /**
   * dx[n, iy, ix, ci] = Σ over the (oy, ox, ky, kx) that map to (iy, ix) of dy[n, oy, ox, co] · w[ky, kx, ci, co],
   * with wt = conv2dTransposeFilter(w). Every element of dx is written.
   */
  conv2dBackwardInput(
    dy: number, wt: number, dx: number, batch: number, inH: number, inW: number, inC: number,
    outH: number, outW: number, outC: number, kH: number, kW: number, strideH: number, strideW: number,
    padTop: number, padLeft: number, dilationH: number, dilationW: number,
  ): void;
  /**
   * dw[ky, kx, ci, co] = Σ_{n, oy, ox} x[n, iy, ix, ci] · dy[n, oy, ox, co] (overwritten). `work` holds
   * ≥ kH·kW·inC floats (im2col chunks of ⌊workFloats / (kH·kW·inC)⌋ pixels; more is faster).
   */
  conv2dBackwardFilter(
    x: number, dy: number, dw: number, work: number, workFloats: number, batch: number, inH: number, inW: number,
    inC: number, outH: number, outW: number, outC: number, kH: number, kW: number, strideH: number, strideW: number,
    padTop: number, padLeft: number, dilationH: number, dilationW: number,
  ): void;

  // ---- pooling, NHWC (workers/assembly/pooling.ts). Geometry: batch, inH, inW, C, outH, outW, kH, kW,
  // strideH, strideW, padTop, padLeft; padding taps never take part (max) and are not counted (average).

  /**
   * y = max over the window's taps inside the input; argmax (i32) = index of the winning element of x
   * (counted over the whole batch), not written when argmax = 0 (inference). Ties: the first tap in (ky, kx)
   * order. No tap inside: −∞ and −1.
   */
  maxPool2dForward(
    x: number, y: number, argmax: number, batch: number, inH: number, inW: number, C: number, outH: number,
    outW: number, kH: number, kW: number, strideH: number, strideW: number, padTop: number, padLeft: number,
  ): void;
  /** dx = 0 (xCount floats), then dx[argmax[i]] += dy[i] for i < yCount (argmax −1 skipped). */
  maxPool2dBackward(dy: number, argmax: number, dx: number, xCount: number, yCount: number): void;
  /** y = mean of the window's taps inside the input (0 if none). */
  avgPool2dForward(
    x: number, y: number, batch: number, inH: number, inW: number, C: number, outH: number, outW: number,
    kH: number, kW: number, strideH: number, strideW: number, padTop: number, padLeft: number,
  ): void;
  /** dx = 0, then every output adds dy / (its tap count) to each of its taps inside the input. */
  avgPool2dBackward(
    dy: number, dx: number, batch: number, inH: number, inW: number, C: number, outH: number, outW: number,
    kH: number, kW: number, strideH: number, strideW: number, padTop: number, padLeft: number,
  ): void;
  /** y[n, c] = mean over the `pixels` positions p of x[n, p, c]. */
  globalAvgPool2dForward(x: number, y: number, batch: number, pixels: number, C: number): void;
  /** dx[n, p, c] = dy[n, c] / pixels. */
  globalAvgPool2dBackward(dy: number, dx: number, batch: number, pixels: number, C: number): void;

  // ---- batch normalisation over the rows of a rows × C matrix (NHWC flattened: rows = batch·H·W).

  /** Per-channel mean and biased variance (two-pass; float64 across blocks of rows). */
  batchNormStats(x: number, mean: number, variance: number, rows: number, C: number): void;
  /** y = (x − mean)·invStd·gamma + beta, per channel; gamma = 0 means 1, beta = 0 means 0 (pointers). */
  batchNormForward(x: number, y: number, mean: number, invStd: number, gamma: number, beta: number, rows: number, C: number): void;
  /**
   * Batch-statistics backward, x̂ = (x − mean)·invStd: dbeta = Σ_r dy, dgamma = Σ_r dy·x̂ (each written when
   * its pointer is non-zero); dx = gamma·invStd·(dy − dbeta/rows − x̂·dgamma/rows) when dx ≠ 0 (gamma = 0: 1).
   */
  batchNormBackward(
    x: number, dy: number, dx: number, mean: number, invStd: number, gamma: number, dgamma: number, dbeta: number,
    rows: number, C: number,
  ): void;

  // ---- ranking (workers/assembly/ranking.ts)
  /** scores[i] = (bias ? bias[i] : 0) + Σ_d table[i·dim + d] · query[d] for i < rows (bias = 0: none). */
  scoreRows(table: number, rows: number, dim: number, query: number, bias: number, scores: number): void;
  /**
   * The k best of scores[0..n) in descending order (ties: lower index first) into outIndex (i32) and
   * outScore, skipping i with mask[i] ≠ 0 (i32; mask = 0: none) and NaN scores; missing places: −1, −∞.
   */
  topK(scores: number, n: number, k: number, mask: number, outIndex: number, outScore: number): void;
}

/** Names of every kernel, for loaders and tests that iterate the contract. */
export const KERNEL_NAMES = [
  'gemm', 'addBias', 'sumRows',
  'reluForward', 'reluBackward', 'leakyReluForward', 'leakyReluBackward',
  'sigmoidForward', 'sigmoidBackward', 'tanhForward', 'tanhBackward', 'geluForward', 'geluBackward',
  'softmaxForward', 'softmaxBackward', 'softmaxCrossEntropy',
  'adamUpdate', 'sgdUpdate', 'fill', 'copy', 'scale', 'axpy', 'emaUpdate', 'lstmCellForward', 'lstmCellBackward', 'gruCellForward', 'gruCellBackward',
  'conv2dForward', 'conv2dForwardIm2col', 'conv2dTransposeFilter', 'conv2dBackwardInput', 'conv2dBackwardFilter',
  'maxPool2dForward', 'maxPool2dBackward', 'avgPool2dForward', 'avgPool2dBackward',
  'globalAvgPool2dForward', 'globalAvgPool2dBackward', 'batchNormStats', 'batchNormForward', 'batchNormBackward',
  'scoreRows', 'topK',
] as const satisfies readonly (keyof Kernels)[];
