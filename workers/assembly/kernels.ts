// Entry of the kernel module: every export of the Kernels contract (workers/kernel-api.ts) plus the
// pool's helpers (setScratch, scratchBytes, nop). Pointer-only code: no managed objects, no data segments.
export { gemm, setScratch, scratchBytes, nop } from './gemm';
export {
  addBias, sumRows, reluForward, reluBackward, leakyReluForward, leakyReluBackward,
  sigmoidForward, sigmoidBackward, tanhForward, tanhBackward, geluForward, geluBackward,
  softmaxForward, softmaxBackward, softmaxCrossEntropy, adamUpdate, sgdUpdate, fill, copy, scale, axpy,
} from './elementwise';
