import type { Kernels } from './kernel-api.ts';

/**
 * Plain JS implementation of the kernel contract with float64 accumulation: the oracle that the
 * wasm kernels are checked against, and a readable statement of what each kernel computes.
 * Too slow for training (about 1.5 GFLOP/s for GEMM); the engine uses the wasm build.
 *
 * Usage: `const k = referenceKernels(() => heap.f32, () => heap.i32); k.gemm(0, 0, m, n, k, 1, a, k, b, n, 0, c, n);`
 */
export function referenceKernels(f32: () => Float32Array, i32: () => Int32Array): Kernels {
  const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
  const unary = (fn: (v: number) => number) => (x: number, y: number, n: number) => {
    const h = f32();
    const xi = x >> 2;
    const yi = y >> 2;
    for (let i = 0; i < n; i++) h[yi + i] = fn(h[xi + i]!);
  };
  const binary = (fn: (a: number, dy: number) => number) => (a: number, dy: number, dx: number, n: number) => {
    const h = f32();
    const ai = a >> 2;
    const di = dy >> 2;
    const oi = dx >> 2;
    for (let i = 0; i < n; i++) h[oi + i] = fn(h[ai + i]!, h[di + i]!);
  };
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
  const kernels: Kernels = {
    gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      const h = f32();
      const A = a >> 2;
      const B = b >> 2;
      const C = c >> 2;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let sum = 0;
          for (let p = 0; p < k; p++) {
            const av = transA ? h[A + p * lda + i]! : h[A + i * lda + p]!;
            const bv = transB ? h[B + j * ldb + p]! : h[B + p * ldb + j]!;
            sum += av * bv;
          }
          const at = C + i * ldc + j;
          h[at] = alpha * sum + (beta === 0 ? 0 : beta * h[at]!);
        }
      }
    },
    addBias(y, bias, rows, cols) {
      const h = f32();
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) h[(y >> 2) + r * cols + c] += h[(bias >> 2) + c]!;
    },
    sumRows(x, out, rows, cols, beta) {
      const h = f32();
      for (let c = 0; c < cols; c++) {
        let sum = 0;
        for (let r = 0; r < rows; r++) sum += h[(x >> 2) + r * cols + c]!;
        const at = (out >> 2) + c;
        h[at] = (beta === 0 ? 0 : beta * h[at]!) + sum;
      }
    },
    reluForward: unary((v) => (v > 0 ? v : 0)),
    reluBackward: binary((x, dy) => (x > 0 ? dy : 0)),
    leakyReluForward(x, y, n, slope) {
      unary((v) => (v > 0 ? v : slope * v))(x, y, n);
    },
    leakyReluBackward(x, dy, dx, n, slope) {
      binary((v, d) => (v > 0 ? d : slope * d))(x, dy, dx, n);
    },
    sigmoidForward: unary(sigmoid),
    sigmoidBackward: binary((y, dy) => dy * y * (1 - y)),
    tanhForward: unary(Math.tanh),
    tanhBackward: binary((y, dy) => dy * (1 - y * y)),
    geluForward: unary((v) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)))),
    geluBackward: binary((v, dy) => {
      const inner = SQRT_2_OVER_PI * (v + 0.044715 * v * v * v);
      const t = Math.tanh(inner);
      const dInner = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v);
      return dy * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * dInner);
    }),
    softmaxForward(x, y, rows, cols) {
      const h = f32();
      for (let r = 0; r < rows; r++) {
        const xi = (x >> 2) + r * cols;
        const yi = (y >> 2) + r * cols;
        let max = -Infinity;
        for (let c = 0; c < cols; c++) max = Math.max(max, h[xi + c]!);
        let sum = 0;
        for (let c = 0; c < cols; c++) sum += Math.exp(h[xi + c]! - max);
        for (let c = 0; c < cols; c++) h[yi + c] = Math.exp(h[xi + c]! - max) / sum;
      }
    },
    softmaxBackward(y, dy, dx, rows, cols) {
      const h = f32();
      for (let r = 0; r < rows; r++) {
        const yi = (y >> 2) + r * cols;
        const di = (dy >> 2) + r * cols;
        const oi = (dx >> 2) + r * cols;
        let dot = 0;
        for (let c = 0; c < cols; c++) dot += h[di + c]! * h[yi + c]!;
        for (let c = 0; c < cols; c++) h[oi + c] = h[yi + c]! * (h[di + c]! - dot);
      }
    },
    softmaxCrossEntropy(logits, labels, rows, cols, lossPerRow, dLogits, scale) {
      const h = f32();
      const L = i32();
      for (let r = 0; r < rows; r++) {
        const xi = (logits >> 2) + r * cols;
        const label = L[(labels >> 2) + r]!;
        let max = -Infinity;
        for (let c = 0; c < cols; c++) max = Math.max(max, h[xi + c]!);
        let sum = 0;
        for (let c = 0; c < cols; c++) sum += Math.exp(h[xi + c]! - max);
        const logSum = max + Math.log(sum);
        h[(lossPerRow >> 2) + r] = logSum - h[xi + label]!;
        if (dLogits !== 0) {
          const gi = (dLogits >> 2) + r * cols;
          for (let c = 0; c < cols; c++) h[gi + c] = scale * (Math.exp(h[xi + c]! - logSum) - (c === label ? 1 : 0));
        }
      }
    },
    adamUpdate(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, decoupled, bc1, bc2) {
      const h = f32();
      for (let i = 0; i < n; i++) {
        const p = (param >> 2) + i;
        const g = h[(grad >> 2) + i]! + (decoupled ? 0 : weightDecay * h[p]!);
        const mi = (m >> 2) + i;
        const vi = (v >> 2) + i;
        h[mi] = beta1 * h[mi]! + (1 - beta1) * g;
        h[vi] = beta2 * h[vi]! + (1 - beta2) * g * g;
        const update = h[mi]! / bc1 / (Math.sqrt(h[vi]! / bc2) + eps) + (decoupled ? weightDecay * h[p]! : 0);
        h[p] = h[p]! - lr * update;
      }
    },
    sgdUpdate(param, grad, velocity, n, lr, momentum, nesterov, weightDecay) {
      const h = f32();
      for (let i = 0; i < n; i++) {
        const p = (param >> 2) + i;
        const g = h[(grad >> 2) + i]! + weightDecay * h[p]!;
        if (momentum === 0) {
          h[p] = h[p]! - lr * g;
          continue;
        }
        const vi = (velocity >> 2) + i;
        h[vi] = momentum * h[vi]! + g;
        h[p] = h[p]! - lr * (nesterov ? g + momentum * h[vi]! : h[vi]!);
      }
    },
    fill(x, n, value) {
      f32().fill(value, x >> 2, (x >> 2) + n);
    },
    copy(x, y, n) {
      const h = f32();
      h.copyWithin(y >> 2, x >> 2, (x >> 2) + n);
    },
    scale(x, n, s) {
      const h = f32();
      for (let i = 0; i < n; i++) h[(x >> 2) + i] *= s;
    },
    axpy(n, a, x, y) {
      const h = f32();
      for (let i = 0; i < n; i++) h[(y >> 2) + i] += a * h[(x >> 2) + i]!;
    },
    lstmCellForward(z, cPrev, c, tanhC, h, rows, U) {
      const f = f32();
      const sig = (v: number) => 1 / (1 + Math.exp(-v));
      for (let b = 0; b < rows; b++) {
        const r = (z >> 2) + b * 4 * U;
        for (let u = 0; u < U; u++) {
          const i = sig(f[r + u]!), g = Math.tanh(f[r + 2 * U + u]!), fg = sig(f[r + U + u]!), o = sig(f[r + 3 * U + u]!);
          f[r + u] = i;
          f[r + U + u] = fg;
          f[r + 2 * U + u] = g;
          f[r + 3 * U + u] = o;
          const k = b * U + u;
          const cn = fg * f[(cPrev >> 2) + k]! + i * g;
          f[(c >> 2) + k] = cn;
          f[(tanhC >> 2) + k] = Math.tanh(cn);
          f[(h >> 2) + k] = o * Math.tanh(cn);
        }
      }
    },
    lstmCellBackward(z, cPrev, tanhC, dh, dy, dc, dz, rows, U) {
      const f = f32();
      for (let b = 0; b < rows; b++) {
        const r = (z >> 2) + b * 4 * U;
        const d = (dz >> 2) + b * 4 * U;
        for (let u = 0; u < U; u++) {
          const k = b * U + u;
          const i = f[r + u]!, fg = f[r + U + u]!, g = f[r + 2 * U + u]!, o = f[r + 3 * U + u]!;
          const th = f[(tanhC >> 2) + k]!;
          const gradH = f[(dh >> 2) + k]! + (dy ? f[(dy >> 2) + k]! : 0);
          const gradC = f[(dc >> 2) + k]! + gradH * o * (1 - th * th);
          f[d + u] = gradC * g * i * (1 - i);
          f[d + U + u] = gradC * f[(cPrev >> 2) + k]! * fg * (1 - fg);
          f[d + 2 * U + u] = gradC * i * (1 - g * g);
          f[d + 3 * U + u] = gradH * th * o * (1 - o);
          f[(dc >> 2) + k] = gradC * fg;
        }
      }
    },
    gruCellForward(a, q, hPrev, h, rows, U) {
      const f = f32();
      const sig = (v: number) => 1 / (1 + Math.exp(-v));
      for (let b = 0; b < rows; b++) {
        const ra = (a >> 2) + b * 3 * U, rq = (q >> 2) + b * 3 * U;
        for (let u = 0; u < U; u++) {
          const z = sig(f[ra + u]! + f[rq + u]!), r = sig(f[ra + U + u]! + f[rq + U + u]!);
          const hh = Math.tanh(f[ra + 2 * U + u]! + r * f[rq + 2 * U + u]!);
          f[ra + u] = z;
          f[ra + U + u] = r;
          f[ra + 2 * U + u] = hh;
          f[(h >> 2) + b * U + u] = z * f[(hPrev >> 2) + b * U + u]! + (1 - z) * hh;
        }
      }
    },
    gruCellBackward(a, q, hPrev, dh, dy, da, dq, rows, U) {
      const f = f32();
      for (let b = 0; b < rows; b++) {
        const ra = (a >> 2) + b * 3 * U, rq = (q >> 2) + b * 3 * U, rda = (da >> 2) + b * 3 * U, rdq = (dq >> 2) + b * 3 * U;
        for (let u = 0; u < U; u++) {
          const k = b * U + u;
          const z = f[ra + u]!, r = f[ra + U + u]!, hh = f[ra + 2 * U + u]!;
          const gradH = f[(dh >> 2) + k]! + (dy ? f[(dy >> 2) + k]! : 0);
          const dPreH = gradH * (1 - z) * (1 - hh * hh);
          const dPreZ = gradH * (f[(hPrev >> 2) + k]! - hh) * z * (1 - z);
          const dPreR = dPreH * f[rq + 2 * U + u]! * r * (1 - r);
          f[rda + u] = dPreZ;
          f[rda + U + u] = dPreR;
          f[rda + 2 * U + u] = dPreH;
          f[rdq + u] = dPreZ;
          f[rdq + U + u] = dPreR;
          f[rdq + 2 * U + u] = dPreH * r;
          f[(dh >> 2) + k] = gradH * z;
        }
      }
    },
    emaUpdate(ema, x, n, momentum, a) {
      const h = f32();
      for (let i = 0; i < n; i++) h[(ema >> 2) + i] = h[(ema >> 2) + i]! * momentum + a * h[(x >> 2) + i]!;
    },
    conv2dForward(x, w, bias, y, batch, H, W, C, OH, OW, CO, KH, KW, sh, sw, pt, pl, dh, dw, activation = 0) {
      const h = f32();
      const X = x >> 2, Wt = w >> 2, B = bias >> 2, Y = y >> 2;
      for (let n = 0; n < batch; n++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            for (let co = 0; co < CO; co++) {
              let sum = 0;
              for (let ky = 0; ky < KH; ky++) {
                const iy = oy * sh - pt + ky * dh;
                if (iy < 0 || iy >= H) continue;
                for (let kx = 0; kx < KW; kx++) {
                  const ix = ox * sw - pl + kx * dw;
                  if (ix < 0 || ix >= W) continue;
                  for (let ci = 0; ci < C; ci++) sum += h[X + ((n * H + iy) * W + ix) * C + ci]! * h[Wt + ((ky * KW + kx) * C + ci) * CO + co]!;
                }
              }
              const v = Math.fround(sum + (bias ? h[B + co]! : 0));
              // activation 1: ReLU after the float32 rounding (NaN and −0 give +0, as reluForward).
              h[Y + ((n * OH + oy) * OW + ox) * CO + co] = activation === 1 ? (v > 0 ? v : 0) : v;
            }
          }
        }
      }
    },
    conv2dForwardIm2col(x, w, bias, y, _work, _workFloats, batch, H, W, C, OH, OW, CO, KH, KW, sh, sw, pt, pl, dh, dw) {
      kernels.conv2dForward(x, w, bias, y, batch, H, W, C, OH, OW, CO, KH, KW, sh, sw, pt, pl, dh, dw);
    },
    conv2dTransposeFilter(w, wt, taps, C, CO) {
      const h = f32();
      for (let t = 0; t < taps; t++) {
        for (let ci = 0; ci < C; ci++) for (let co = 0; co < CO; co++) h[(wt >> 2) + (t * CO + co) * C + ci] = h[(w >> 2) + (t * C + ci) * CO + co]!;
      }
    },
    conv2dBackwardInput(dy, wt, dx, batch, H, W, C, OH, OW, CO, KH, KW, sh, sw, pt, pl, dh, dw) {
      const h = f32();
      const acc = new Float64Array(batch * H * W * C);
      for (let n = 0; n < batch; n++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * sh - pt + ky * dh;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * sw - pl + kx * dw;
                if (ix < 0 || ix >= W) continue;
                for (let ci = 0; ci < C; ci++) {
                  let sum = 0;
                  for (let co = 0; co < CO; co++) sum += h[(dy >> 2) + ((n * OH + oy) * OW + ox) * CO + co]! * h[(wt >> 2) + ((ky * KW + kx) * CO + co) * C + ci]!;
                  acc[((n * H + iy) * W + ix) * C + ci] += sum;
                }
              }
            }
          }
        }
      }
      h.set(acc, dx >> 2);
    },
    conv2dBackwardFilter(x, dy, dw_, _work, _workFloats, batch, H, W, C, OH, OW, CO, KH, KW, sh, sw, pt, pl, dh, dw) {
      const h = f32();
      const acc = new Float64Array(KH * KW * C * CO);
      for (let n = 0; n < batch; n++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            const g = (dy >> 2) + ((n * OH + oy) * OW + ox) * CO;
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * sh - pt + ky * dh;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * sw - pl + kx * dw;
                if (ix < 0 || ix >= W) continue;
                for (let ci = 0; ci < C; ci++) {
                  const xv = h[(x >> 2) + ((n * H + iy) * W + ix) * C + ci]!;
                  const o = ((ky * KW + kx) * C + ci) * CO;
                  for (let co = 0; co < CO; co++) acc[o + co] += xv * h[g + co]!;
                }
              }
            }
          }
        }
      }
      h.set(acc, dw_ >> 2);
    },
    maxPool2dForward(x, y, argmax, batch, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl) {
      const h = f32();
      const I = i32();
      for (let n = 0; n < batch; n++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            for (let c = 0; c < C; c++) {
              let best = -Infinity;
              let at = -1;
              for (let ky = 0; ky < KH; ky++) {
                const iy = oy * sh - pt + ky;
                if (iy < 0 || iy >= H) continue;
                for (let kx = 0; kx < KW; kx++) {
                  const ix = ox * sw - pl + kx;
                  if (ix < 0 || ix >= W) continue;
                  const e = ((n * H + iy) * W + ix) * C + c;
                  const v = h[(x >> 2) + e]!;
                  // The first tap in range always wins (so an all-NaN window gives NaN); later ones only when greater.
                  if (at < 0 || v > best) {
                    best = v;
                    at = e;
                  }
                }
              }
              const o = ((n * OH + oy) * OW + ox) * C + c;
              h[(y >> 2) + o] = best;
              if (argmax) I[(argmax >> 2) + o] = at;
            }
          }
        }
      }
    },
    maxPool2dBackward(dy, argmax, dx, xCount, yCount) {
      const h = f32();
      const I = i32();
      const acc = new Float64Array(xCount);
      for (let i = 0; i < yCount; i++) {
        const e = I[(argmax >> 2) + i]!;
        if (e >= 0) acc[e] += h[(dy >> 2) + i]!;
      }
      h.set(acc, dx >> 2);
    },
    avgPool2dForward(x, y, batch, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl) {
      const h = f32();
      for (let n = 0; n < batch; n++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            for (let c = 0; c < C; c++) {
              let sum = 0;
              let count = 0;
              for (let ky = 0; ky < KH; ky++) {
                const iy = oy * sh - pt + ky;
                if (iy < 0 || iy >= H) continue;
                for (let kx = 0; kx < KW; kx++) {
                  const ix = ox * sw - pl + kx;
                  if (ix < 0 || ix >= W) continue;
                  sum += h[(x >> 2) + ((n * H + iy) * W + ix) * C + c]!;
                  count++;
                }
              }
              h[(y >> 2) + ((n * OH + oy) * OW + ox) * C + c] = count ? sum / count : 0;
            }
          }
        }
      }
    },
    avgPool2dBackward(dy, dx, batch, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl) {
      const h = f32();
      const acc = new Float64Array(batch * H * W * C);
      for (let n = 0; n < batch; n++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            const taps: number[] = [];
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * sh - pt + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * sw - pl + kx;
                if (ix >= 0 && ix < W) taps.push(((n * H + iy) * W + ix) * C);
              }
            }
            for (let c = 0; c < C; c++) {
              const g = h[(dy >> 2) + ((n * OH + oy) * OW + ox) * C + c]! / taps.length;
              for (const t of taps) acc[t + c] += g;
            }
          }
        }
      }
      h.set(acc, dx >> 2);
    },
    globalAvgPool2dForward(x, y, batch, pixels, C) {
      const h = f32();
      for (let n = 0; n < batch; n++) {
        for (let c = 0; c < C; c++) {
          let sum = 0;
          for (let p = 0; p < pixels; p++) sum += h[(x >> 2) + (n * pixels + p) * C + c]!;
          h[(y >> 2) + n * C + c] = pixels ? sum / pixels : 0;
        }
      }
    },
    globalAvgPool2dBackward(dy, dx, batch, pixels, C) {
      const h = f32();
      for (let n = 0; n < batch; n++) {
        for (let p = 0; p < pixels; p++) for (let c = 0; c < C; c++) h[(dx >> 2) + (n * pixels + p) * C + c] = h[(dy >> 2) + n * C + c]! / pixels;
      }
    },
    batchNormStats(x, mean, variance, rows, C) {
      const h = f32();
      for (let c = 0; c < C; c++) {
        let sum = 0;
        for (let r = 0; r < rows; r++) sum += h[(x >> 2) + r * C + c]!;
        const m = rows ? sum / rows : 0;
        let v = 0;
        for (let r = 0; r < rows; r++) v += (h[(x >> 2) + r * C + c]! - m) ** 2;
        h[(mean >> 2) + c] = m;
        h[(variance >> 2) + c] = rows ? v / rows : 0;
      }
    },
    batchNormForward(x, y, mean, invStd, gamma, beta, rows, C) {
      const h = f32();
      for (let c = 0; c < C; c++) {
        const m = h[(mean >> 2) + c]!;
        const s = h[(invStd >> 2) + c]! * (gamma ? h[(gamma >> 2) + c]! : 1);
        const b = beta ? h[(beta >> 2) + c]! : 0;
        for (let r = 0; r < rows; r++) h[(y >> 2) + r * C + c] = (h[(x >> 2) + r * C + c]! - m) * s + b;
      }
    },
    batchNormBackward(x, dy, dx, mean, invStd, gamma, dgamma, dbeta, rows, C) {
      const h = f32();
      for (let c = 0; c < C; c++) {
        const m = h[(mean >> 2) + c]!;
        const is = h[(invStd >> 2) + c]!;
        let sg = 0;
        let sgx = 0;
        for (let r = 0; r < rows; r++) {
          const g = h[(dy >> 2) + r * C + c]!;
          sg += g;
          sgx += g * (h[(x >> 2) + r * C + c]! - m) * is;
        }
        if (dbeta) h[(dbeta >> 2) + c] = sg;
        if (dgamma) h[(dgamma >> 2) + c] = sgx;
        if (!dx) continue;
        const k = (gamma ? h[(gamma >> 2) + c]! : 1) * is;
        for (let r = 0; r < rows; r++) {
          const xh = (h[(x >> 2) + r * C + c]! - m) * is;
          h[(dx >> 2) + r * C + c] = k * (h[(dy >> 2) + r * C + c]! - sg / rows - xh * sgx / rows);
        }
      }
    },
    scoreRows(table, rows, dim, query, bias, scores) {
      const h = f32();
      for (let i = 0; i < rows; i++) {
        let sum = bias ? h[(bias >> 2) + i]! : 0;
        for (let d = 0; d < dim; d++) sum += h[(table >> 2) + i * dim + d]! * h[(query >> 2) + d]!;
        h[(scores >> 2) + i] = sum;
      }
    },
    topK(scores, n, k, mask, outIndex, outScore) {
      const h = f32();
      const m = i32();
      const candidates: number[] = [];
      for (let i = 0; i < n; i++) if (!(mask && m[(mask >> 2) + i]) && !Number.isNaN(h[(scores >> 2) + i]!)) candidates.push(i);
      candidates.sort((a, b) => h[(scores >> 2) + b]! - h[(scores >> 2) + a]! || a - b);
      for (let j = 0; j < k; j++) {
        m[(outIndex >> 2) + j] = j < candidates.length ? candidates[j]! : -1;
        h[(outScore >> 2) + j] = j < candidates.length ? h[(scores >> 2) + candidates[j]!]! : -Infinity;
      }
    },
  };
  return kernels;
}
