/**
 * Corrupted ONNX files (src/interop/onnx-import.ts): valid exports and the PyTorch fixtures, truncated at
 * random lengths or with random bytes overwritten, either still import (the damage hit a float or a name)
 * or fail with an OnnxError / layer-config error that names the file — never a TypeError from deep inside,
 * never a hang. 300 inputs, a few seconds.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { closeDefaultEngine } from '../src/engine.ts';
import { ShapeError } from '../src/layer.ts';
import { sequential } from '../src/model.ts';
import { LayerConfigError } from '../src/registry.ts';
import * as op from '../operators/index.ts';
import { toOnnx } from '../src/interop/onnx-export.ts';
import { fromOnnx } from '../src/interop/onnx-import.ts';
import { OnnxError } from '../src/interop/onnx-proto.ts';

const seedParam = process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {};

describe('corrupted ONNX files give clear errors', () => {
  after(() => closeDefaultEngine());

  const model = sequential([op.conv2d(2, 3, { padding: 'same' }), op.batchNorm(), op.relu(), op.flatten(), op.dense(3)], { inputShape: [4, 4, 1], seed: 1 });
  const files: [string, Uint8Array][] = [
    ['export.onnx', toOnnx(model)],
    ['torch_cnn.onnx', readFileSync(new URL('../test/fixtures/torch_cnn.onnx', import.meta.url))],
    ['torch_lstm.onnx', readFileSync(new URL('../test/fixtures/torch_lstm.onnx', import.meta.url))],
  ];
  model.dispose();

  it('truncated or overwritten bytes: an OnnxError naming the file, or a model', () => {
    const damage = fc.record({
      file: fc.integer({ min: 0, max: files.length - 1 }),
      cut: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
      writes: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    });
    fc.assert(fc.property(damage, ({ file, cut, writes }) => {
      const [name, original] = files[file]!;
      const bytes = Uint8Array.from(original.subarray(0, cut === null ? original.length : Math.floor(cut * original.length)));
      for (const [at, value] of writes) if (bytes.length > 0) bytes[Math.floor(at * bytes.length)] = value;
      try {
        fromOnnx(bytes, name).dispose();
      } catch (error) {
        const known = error instanceof OnnxError || error instanceof LayerConfigError || error instanceof ShapeError;
        assert.ok(known, `${name}: ${(error as Error).name}: ${(error as Error).message}`);
        if (error instanceof OnnxError) assert.match(error.message, new RegExp(name.replace('.', '\\.')));
      }
    }), { numRuns: 300, ...seedParam });
  });
});
