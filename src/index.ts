/**
 * rxgrad: deep learning for TypeScript on Node.js where a model is an RxJS operator pipeline.
 *
 * Usage: `import { sequential, dense, relu, adam, softmaxCrossEntropy } from 'rxgrad';`
 */
export { sequential, Model } from './model.ts';
export { logProgress } from './progress.ts';
export type { LogProgressOptions } from './progress.ts';
export type { SequentialOptions, FitOptions, StepReport, EvaluationResult, TrainOptions, TrainProgress, ParameterInfo, GradientReport, UpdateReport } from './model.ts';
export {
  batchFromArrays, batchesFromArrays, batchesFromIpc, batchesFromTable, floatColumn, gatherBatch, labelColumn, outputBatch,
  SHAPE_METADATA_KEY,
} from './batch.ts';
export type { Batch, BatchArrays, FloatColumn } from './batch.ts';
export { createEngine, defaultEngine, setDefaultEngine, closeDefaultEngine, Engine } from './engine.ts';
export type { EngineOptions } from './engine.ts';
export { SharedHeap, Arena } from './heap.ts';
export { Tensor, sizeOf, formatShape } from './tensor.ts';
export type { Shape, DType } from './tensor.ts';
export { Random } from './random.ts';
export { ShapeError, StepContext } from './layer.ts';
export type { Layer, Parameter, BuildContext } from './layer.ts';
export { softmaxCrossEntropy, meanSquaredError, binaryCrossEntropyWithLogits } from './losses.ts';
export type { Loss, LossResult, SoftmaxCrossEntropyOptions } from './losses.ts';
export { sgd, adam, adamw } from './optimizers.ts';
export type { Optimizer, SgdOptions, AdamOptions } from './optimizers.ts';
export { glorotUniform, glorotNormal, heUniform, heNormal, zeros, constant, randomUniform, orthogonal, initializerFromName } from './initializers.ts';
export type { Initializer } from './initializers.ts';
export { l1, l2, l1l2 } from './regularizers.ts';
export type { Regularizer } from './regularizers.ts';
export { clipGradientNorm, gradientNorm, tapGradients } from './gradients.ts';
export { forwardOperator, backwardOperator, lossOperator, mapInOrder } from './protocol.ts';
export type { ForwardFlow, ReverseFlow, ParameterGradients, GradientOperator } from './protocol.ts';
export { dense } from '../operators/dense.ts';
export type { DenseOptions } from '../operators/dense.ts';
export { relu } from '../operators/relu.ts';
export { leakyRelu } from '../operators/leaky-relu.ts';
export { sigmoid } from '../operators/sigmoid.ts';
export { tanh } from '../operators/tanh.ts';
export { gelu } from '../operators/gelu.ts';
export { softmax } from '../operators/softmax.ts';
export { dropout } from '../operators/dropout.ts';
export { chain } from '../operators/chain.ts';
export { residual } from '../operators/residual.ts';
export { parallel } from '../operators/parallel.ts';
export type { Merge } from '../operators/parallel.ts';
export { encodeSafetensors, decodeSafetensors, SafetensorsError, MAX_HEADER_BYTES } from './safetensors.ts';
export type { SafetensorsDType, SafetensorsTensor, DecodedSafetensors } from './safetensors.ts';
export { saveModel, loadModel, checkpointEvery, CheckpointError, CHECKPOINT_FORMAT, CHECKPOINT_VERSION } from './checkpoint.ts';
export type { CheckpointManifest, SaveExtra, SavedCheckpoint, LoadedCheckpoint, LoadOptions, CheckpointEveryOptions } from './checkpoint.ts';
export { layerFromConfig, registerLayer, layerKinds, LayerConfigError, ConfigReader, constructLayer } from '../operators/index.ts';
export type { LayerFactory } from '../operators/index.ts';
export { embedding } from '../operators/embedding.ts';
export type { EmbeddingOptions } from '../operators/embedding.ts';
export { simpleRnn } from '../operators/simple-rnn.ts';
export type { RecurrentOptions, RecurrentLayer, InitialStateMode } from '../operators/simple-rnn.ts';
export { lstm } from '../operators/lstm.ts';
export type { LstmOptions } from '../operators/lstm.ts';
export { gru } from '../operators/gru.ts';
export { layerNorm } from '../operators/layer-norm.ts';
export type { LayerNormOptions } from '../operators/layer-norm.ts';
export { multiHeadAttention, MultiHeadAttention, MASKED_SCORE, openColumnGradient, columnGradient } from '../operators/multi-head-attention.ts';
export type { MultiHeadAttentionOptions, CrossAttentionSource } from '../operators/multi-head-attention.ts';
export { positionalEncoding, sinusoidalTable } from '../operators/positional-encoding.ts';
export type { PositionalEncodingOptions } from '../operators/positional-encoding.ts';
export { transformerEncoderBlock, transformerDecoderBlock, encoderDecoder } from '../operators/transformer.ts';
export type { TransformerBlockOptions, TransformerDecoderBlockOptions, EncoderDecoderOptions } from '../operators/transformer.ts';
export { Vocabulary, nextTokenData, splitText } from './text.ts';
export type { VocabularyJSON, VocabularyLevel, VocabularyOptions, NextTokenOptions } from './text.ts';
export { conv2d, resolveWindow } from '../operators/conv2d.ts';
export type { Conv2dOptions, Padding2d, ExplicitPadding, Pair, Window2d } from '../operators/conv2d.ts';
export { maxPool2d } from '../operators/max-pool2d.ts';
export type { Pool2dOptions } from '../operators/max-pool2d.ts';
export { avgPool2d } from '../operators/avg-pool2d.ts';
export { globalAvgPool2d } from '../operators/global-avg-pool2d.ts';
export { flatten } from '../operators/flatten.ts';
export { batchNorm } from '../operators/batch-norm.ts';
export type { BatchNormOptions } from '../operators/batch-norm.ts';
export { spatialDropout2d } from '../operators/spatial-dropout2d.ts';
export { randomFlip } from '../operators/random-flip.ts';
export type { RandomFlipOptions } from '../operators/random-flip.ts';
export { randomRotate } from '../operators/random-rotate.ts';
export type { RandomRotateOptions } from '../operators/random-rotate.ts';
export { randomCrop } from '../operators/random-crop.ts';
export type { RandomCropOptions } from '../operators/random-crop.ts';
export { randomTranslate } from '../operators/random-translate.ts';
export type { RandomTranslateOptions } from '../operators/random-translate.ts';
export * from './streams/index.ts';
