/**
 * Properties of the safetensors codec: random tensor maps round-trip bit for bit (NaN payloads and
 * -0 included), and corrupted files (truncated, header bytes flipped, offsets moved, arbitrary bytes
 * or JSON) are refused with a SafetensorsError, never another exception and never a silently wrong
 * result. fast-check prints the seed of a failure for replay.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeSafetensors, encodeSafetensors, SafetensorsError, type SafetensorsTensor } from '../src/safetensors.ts';

const RUNS = Number(process.env['RXGRAD_PROP_RUNS'] ?? 300);

/** A tensor whose elements are arbitrary 32-bit patterns (viewed as float32 for F32: NaNs, infinities, subnormals, -0). */
const tensorArb: fc.Arbitrary<SafetensorsTensor> = fc
  .tuple(fc.constantFrom<'F32' | 'I32'>('F32', 'I32'), fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }))
  .chain(([dtype, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { minLength: n, maxLength: n }).map((bits): SafetensorsTensor => {
      const ints = Int32Array.from(bits);
      return { dtype, shape, data: dtype === 'F32' ? new Float32Array(ints.buffer) : ints };
    });
  });

// `__proto__` on purpose: a codec that assigns `obj[name] = …` would silently drop it.
const nameArb = fc.oneof(fc.constant('__proto__'), fc.string({ minLength: 1, maxLength: 12, unit: 'binary' })).filter((s) => s !== '__metadata__');
const tensorsArb = fc.uniqueArray(fc.tuple(nameArb, tensorArb), { maxLength: 6, selector: ([name]) => name }).map((entries) => new Map(entries));
const metadataArb = fc.option(fc.dictionary(fc.oneof(fc.constant('__proto__'), fc.string({ maxLength: 8, unit: 'binary' })), fc.string({ maxLength: 12, unit: 'binary' }), { maxKeys: 4, noNullPrototype: true }), { nil: undefined });
const fileArb = fc.record({ tensors: tensorsArb, metadata: metadataArb });

const bitsOf = (t: SafetensorsTensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** Decodes, accepting only success or a SafetensorsError naming the file; any other exception fails the property. */
function decodeOrRefuse(bytes: Uint8Array): ReturnType<typeof decodeSafetensors> | SafetensorsError {
  try {
    const decoded = decodeSafetensors(bytes, 'prop.safetensors');
    // A successful decode must account for every data byte.
    const header = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const covered = [...decoded.tensors.values()].reduce((sum, t) => sum + t.data.byteLength, 0);
    assert.equal(covered, bytes.length - 8 - header);
    return decoded;
  } catch (error) {
    if (!(error instanceof SafetensorsError)) throw error;
    assert.ok(error.message.startsWith('prop.safetensors: safetensors '), error.message);
    return error;
  }
}

const headerLengthOf = (bytes: Uint8Array) => Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));

/** Re-encodes a file with its header JSON edited (the data section kept). */
function withHeader(bytes: Uint8Array, edit: (header: Record<string, { data_offsets: [number, number] }>) => void): Uint8Array {
  const n = headerLengthOf(bytes);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { data_offsets: [number, number] }>;
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(bytes.subarray(8 + n), 8 + json.length);
  return out;
}

describe('safetensors properties', () => {
  it('round-trips random tensors and metadata bit for bit, with an 8-byte aligned data section', () => {
    fc.assert(
      fc.property(fileArb, ({ tensors, metadata }) => {
        const bytes = encodeSafetensors(tensors, metadata);
        assert.equal((8 + headerLengthOf(bytes)) % 8, 0);
        const decoded = decodeSafetensors(bytes, 'prop.safetensors');
        assert.deepEqual(decoded.metadata, metadata ?? {});
        assert.deepEqual([...decoded.tensors.keys()].sort(), [...tensors.keys()].sort());
        for (const [name, t] of tensors) {
          const d = decoded.tensors.get(name)!;
          assert.equal(d.dtype, t.dtype);
          assert.deepEqual(d.shape, t.shape);
          assert.ok(bitsOf(d).equals(bitsOf(t)), name);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses every truncation', () => {
    fc.assert(
      fc.property(fileArb, fc.nat(), ({ tensors, metadata }, cut) => {
        const bytes = encodeSafetensors(tensors, metadata);
        const result = decodeOrRefuse(bytes.subarray(0, cut % bytes.length));
        assert.ok(result instanceof SafetensorsError);
      }),
      { numRuns: RUNS },
    );
  });

  it('flipped header bytes: a clean error or a decode that still accounts for every byte', () => {
    fc.assert(
      fc.property(fileArb, fc.nat(), fc.integer({ min: 1, max: 255 }), ({ tensors, metadata }, at, mask) => {
        const bytes = encodeSafetensors(tensors, metadata);
        const corrupt = bytes.slice();
        corrupt[at % (8 + headerLengthOf(bytes))]! ^= mask;
        decodeOrRefuse(corrupt);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('refuses a moved or resized tensor region', () => {
    const nonEmpty = tensorsArb.filter((m) => [...m.values()].some((t) => t.data.length > 0));
    fc.assert(
      fc.property(nonEmpty, fc.nat(), fc.integer({ min: -64, max: 64 }).filter((d) => d !== 0), fc.boolean(), (tensors, pick, delta, both) => {
        const bytes = encodeSafetensors(tensors);
        const names = [...tensors].filter(([, t]) => t.data.length > 0).map(([name]) => name);
        const victim = names[pick % names.length]!;
        const corrupt = withHeader(bytes, (header) => {
          const [begin, end] = header[victim]!.data_offsets;
          header[victim]!.data_offsets = both ? [begin + delta, end + delta] : [begin, end + delta];
        });
        const result = decodeOrRefuse(corrupt);
        assert.ok(result instanceof SafetensorsError);
        assert.match(result.message, /data_offsets|data:/);
      }),
      { numRuns: RUNS },
    );
  });

  it('arbitrary bytes and arbitrary JSON headers never crash the decoder', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => void decodeOrRefuse(bytes)), { numRuns: RUNS });
    fc.assert(
      fc.property(fc.jsonValue(), fc.uint8Array({ maxLength: 64 }), (header, data) => {
        const json = new TextEncoder().encode(JSON.stringify(header) ?? 'null');
        const bytes = new Uint8Array(8 + json.length + data.length);
        new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
        bytes.set(json, 8);
        bytes.set(data, 8 + json.length);
        decodeOrRefuse(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it('names the file and field of classic corruptions', () => {
    const good = encodeSafetensors(new Map([['w', { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]]));
    const huge = good.slice();
    new DataView(huge.buffer).setBigUint64(0, 2n ** 60n, true);
    assert.throws(() => decodeSafetensors(huge, 'a.safetensors'), /^SafetensorsError: a\.safetensors: safetensors header length: \d+ bytes exceeds/);
    assert.throws(() => decodeSafetensors(good.subarray(0, 5), 'b.st'), /b\.st: safetensors header length: the file has 5 bytes/);
    assert.throws(() => decodeSafetensors(withHeader(good, (h) => ((h['w'] as unknown as Record<string, unknown>)['dtype'] = 'BF16')), 'c.st'), /c\.st: safetensors w\.dtype: 'BF16' is valid safetensors but rxgrad loads only F32 and I32/);
    assert.throws(() => decodeSafetensors(withHeader(good, (h) => ((h['w'] as unknown as Record<string, unknown>)['shape'] = [3])), 'd.st'), /d\.st: safetensors w\.data_offsets: \[0, 8\] spans 8 bytes, but F32 shape \[3\] needs 12/);
    assert.throws(() => encodeSafetensors(new Map([['w', { dtype: 'F32', shape: [3], data: new Float32Array(2) }]])), /encodeSafetensors: safetensors w\.data: 2 elements for shape \[3\]/);
    assert.throws(() => encodeSafetensors(new Map([['w', { dtype: 'I32', shape: [2], data: new Float32Array(2) }]])), /w\.data: dtype I32 needs a Int32Array/);
  });
});
