import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  avgPool2d, batchNorm, chain, conv2d, dense, dropout, embedding, encoderDecoder, flatten, gelu, globalAvgPool2d, gru, l1l2, layerFromConfig,
  layerKinds, layerNorm, leakyRelu, lstm, maxPool2d, multiHeadAttention, parallel, positionalEncoding, randomCrop, randomFlip,
  randomRotate, randomTranslate, relu, residual, sigmoid, simpleRnn, softmax, spatialDropout2d, tanh, transformerDecoderBlock,
  transformerEncoderBlock, type Layer,
} from '../src/index.ts';

const operatorsDir = new URL('../operators/', import.meta.url);

describe('layer registry (checkpoints rebuild layers from their config)', () => {
  it('every layer kind declared in operators/ is registered', () => {
    const declared = new Set<string>();
    for (const file of readdirSync(operatorsDir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(new URL(file, operatorsDir), 'utf8');
      for (const match of text.matchAll(/readonly kind(?::\s*string)?\s*=\s*'(\w+)'/g)) declared.add(match[1]!);
      for (const match of text.matchAll(/kind:\s*'(\w+)',\s*\n?\s*saves:/g)) declared.add(match[1]!);
    }
    assert.ok(declared.size >= 15, `found only ${declared.size} kinds: ${[...declared].join(', ')}`);
    const missing = [...declared].filter((k) => !layerKinds().includes(k));
    assert.deepEqual(missing, [], `kinds without a registry entry: ${missing.join(', ')}`);
  });

  const samples: Layer[] = [
    dense(7, { useBias: false, kernelRegularizer: l1l2({ l1: 1e-5, l2: 1e-4 }) }),
    dropout(0.25), relu(), leakyRelu({ slope: 0.2 }), sigmoid(), tanh(), gelu(), softmax(),
    chain([dense(3), relu()]), residual([dense(4), tanh()]), parallel([[dense(2)], [dense(3), relu()]], 'concat'),
    embedding(50, 8, { paddingIndex: 0 }),
    simpleRnn({ units: 3, returnSequences: true, truncate: 2 }),
    lstm({ units: 4, initialState: 'learned', unitForgetBias: false }),
    gru({ units: 5, initialState: 'column', initialStateColumn: 'h0' }),
    layerNorm({ epsilon: 1e-6 }),
    multiHeadAttention({ heads: 2, keyDim: 4, causal: true, mask: 'mask' }), multiHeadAttention({ heads: 2, keyDim: 4, cross: { column: 'memory', dim: 6, mask: 'memoryMask' } }),
    positionalEncoding({ kind: 'learned', maxLength: 16 }), positionalEncoding({ kind: 'sinusoidal', maxLength: 8 }),
    transformerEncoderBlock({ heads: 2, dim: 8, ffDim: 16, norm: 'post', activation: 'relu' }),
    transformerDecoderBlock({ heads: 2, dim: 8, ffDim: 16, cross: { column: 'memory' } }),
    encoderDecoder({ source: 'source', sourceShape: [5], encoder: [embedding(9, 8), layerNorm()], decoder: [embedding(9, 8), transformerDecoderBlock({ heads: 2, dim: 8, ffDim: 16, cross: { column: 'memory' } })] }),
    conv2d(4, 3, { strides: 2, padding: 'same' }), maxPool2d(2), avgPool2d(2), globalAvgPool2d(), flatten(), batchNorm(), spatialDropout2d(0.1),
    randomFlip({ horizontal: true, vertical: false }), randomRotate({ degrees: 10 }), randomCrop({ padding: 2 }), randomTranslate({ height: 0.1, width: 0.1 }),
  ];
  for (const layer of samples) {
    it(`${layer.kind}: layerFromConfig(kind, config()) rebuilds an equal config`, () => {
      layer.name ||= `${layer.kind}_1`;
      const config = JSON.parse(JSON.stringify(layer.config())) as Record<string, unknown>;
      const rebuilt = layerFromConfig(layer.kind, config, layer.name);
      assert.equal(rebuilt.kind, layer.kind);
      assert.deepEqual(JSON.parse(JSON.stringify(rebuilt.config())), config);
    });
  }

  it('an unknown field or kind is an error naming the layer and the field', () => {
    assert.throws(() => layerFromConfig('dense', { units: 3, unitz: 4 }, 'd'), /layer 'd': unitz: is not a config field/);
    assert.throws(() => layerFromConfig('lstm', { units: 3, initialState: 'random' }, 'l'), /layer 'l': initialState: must be one of 'zeros', 'learned', 'column'/);
    assert.throws(() => layerFromConfig('conv9d', {}, 'c'), /layer 'c': kind: unknown layer kind 'conv9d'/);
    assert.throws(() => layerFromConfig('dense', { units: 3, kernelInitializer: 'magic' }, 'd'), /kernelInitializer: unknown initializer 'magic'/);
  });
});
