/**
 * Every built-in operator, imported here so that each registers its kind with the layer registry
 * (src/registry.ts) and checkpoints can rebuild any model made of them.
 *
 * Usage: `import { dense, relu, layerFromConfig } from '../operators/index.ts';`
 */
export { ConfigReader, LayerConfigError, constructLayer, layerFromConfig, layerKinds, registerLayer } from '../src/registry.ts';
export type { LayerFactory } from '../src/registry.ts';
export { avgPool2d } from './avg-pool2d.ts';
export { bias } from './bias.ts';
export { dot } from './dot.ts';
export { idEmbedding } from './id-embedding.ts';
export { input } from './input.ts';
export { batchNorm } from './batch-norm.ts';
export { chain } from './chain.ts';
export { conv2d } from './conv2d.ts';
export { dense } from './dense.ts';
export type { DenseOptions } from './dense.ts';
export { dropout } from './dropout.ts';
export { embedding } from './embedding.ts';
export { flatten } from './flatten.ts';
export { gelu } from './gelu.ts';
export { globalAvgPool2d } from './global-avg-pool2d.ts';
export { gru } from './gru.ts';
export { layerNorm } from './layer-norm.ts';
export { leakyRelu } from './leaky-relu.ts';
export { lstm } from './lstm.ts';
export { maxPool2d } from './max-pool2d.ts';
export { multiHeadAttention } from './multi-head-attention.ts';
export { parallel } from './parallel.ts';
export { positionalEncoding } from './positional-encoding.ts';
export { pruneLayer, PruneLowMagnitude } from './prune-low-magnitude.ts';
export { randomCrop } from './random-crop.ts';
export { randomFlip } from './random-flip.ts';
export { randomRotate } from './random-rotate.ts';
export { randomTranslate } from './random-translate.ts';
export { relu } from './relu.ts';
export { residual } from './residual.ts';
export { sigmoid } from './sigmoid.ts';
export { simpleRnn } from './simple-rnn.ts';
export { softmax } from './softmax.ts';
export { spatialDropout2d } from './spatial-dropout2d.ts';
export { tanh } from './tanh.ts';
export { encoderDecoder, transformerDecoderBlock, transformerEncoderBlock } from './transformer.ts';
