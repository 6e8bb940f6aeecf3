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
}

/** Names of every kernel, for loaders and tests that iterate the contract. */
export const KERNEL_NAMES = [
  'gemm', 'addBias', 'sumRows',
  'reluForward', 'reluBackward', 'leakyReluForward', 'leakyReluBackward',
  'sigmoidForward', 'sigmoidBackward', 'tanhForward', 'tanhBackward', 'geluForward', 'geluBackward',
  'softmaxForward', 'softmaxBackward', 'softmaxCrossEntropy',
  'adamUpdate', 'sgdUpdate', 'fill', 'copy', 'scale', 'axpy',
] as const satisfies readonly (keyof Kernels)[];
