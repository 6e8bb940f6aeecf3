// Entry of the kernel module: every export of the Kernels contract (workers/kernel-api.ts) plus the
// pool's helpers (gemmWith, gemmChoosePath, packBWhole, packedBFits, packedBCapacity, gemmPrepacked, setScratch, scratchBytes, setWorkspace, workspaceBytes, setGemmPath, nop).
// Pointer-only code: no managed objects, no data segments.
export {
  gemm, gemmWith, gemmChoosePath, packBWhole, packedBFits, packedBCapacity, gemmPrepacked, setScratch, scratchBytes, setWorkspace, workspaceBytes, setGemmPath, nop,
} from './gemm';
export {
  addBias, sumRows, reluForward, reluBackward, leakyReluForward, leakyReluBackward,
  sigmoidForward, sigmoidBackward, tanhForward, tanhBackward, geluForward, geluBackward,
  softmaxForward, softmaxBackward, softmaxCrossEntropy, adamUpdate, sgdUpdate, fill, copy, scale, axpy, emaUpdate,
} from './elementwise';
export { conv2dForward, conv2dForwardIm2col } from './conv-forward';
export { conv2dTransposeFilter, conv2dBackwardInput } from './conv-backward-input';
export { conv2dBackwardFilter } from './conv-backward-filter';
export { conv2dForwardWinograd, conv2dBackwardInputWinograd } from './conv-winograd';
export { conv2dBackwardFilterWinograd } from './conv-winograd-filter';
export {
  maxPool2dForward, maxPool2dForwardPart, maxPool2dBackward, maxPool2dBackwardPart, avgPool2dForward, avgPool2dBackward, globalAvgPool2dForward,
  globalAvgPool2dBackward, batchNormStats, batchNormForward, batchNormBackward,
} from './pooling';
export { scoreRows, topK } from './ranking';
export { lstmCellForward, lstmCellBackward, gruCellForward, gruCellBackward } from './recurrent';
export { lstmForwardSequence, lstmBackwardSequence, gruForwardSequence, gruBackwardSequence } from './recurrent-sequence';
