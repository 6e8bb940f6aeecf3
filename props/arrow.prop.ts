/**
 * Arrow properties of src/batch.ts: round trips through Arrow IPC, slices, gathering in an order,
 * errors for malformed input, and garbage bytes that must throw (never hang or crash).
 *
 * The garbage fuzz runs in a child process (this same file with ARROW_FUZZ_CHILD=1) under a
 * watchdog, because a decoder that loops or aborts cannot be caught in-process. Replay a failure
 * with the seed and path fast-check prints: `FC_SEED=<seed> FC_PATH=<path> node --import tsx --test props/arrow.prop.ts`
 * (for the fuzz: `ARROW_FUZZ_CHILD=1 FC_SEED=<seed> node --import tsx props/arrow.prop.ts`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import fc, { type Arbitrary } from 'fast-check';
import {
  Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table, tableToIPC, type Data, type DataType,
} from 'apache-arrow';
import {
  batchesFromArrays, batchFromArrays, floatColumn, gatherBatch, labelColumn, SHAPE_METADATA_KEY,
  type Batch, type BatchArrays,
} from '../src/batch.ts';
import { batchesFromIpc } from '../src/streams/ipc-decode.ts';
import { IpcFormatError } from '../src/streams/ipc-framing.ts';
import { sizeOf, type Shape } from '../src/tensor.ts';

/** Runs per property: round trips are cheap, ~100 keeps the file at a few seconds. */
const NUM_RUNS = 100;
/** Inputs decoded by each fuzz child: well under 1 ms each (a few up to ~60 ms). */
const FUZZ_RUNS = 400;
/**
 * A fuzz child is killed after this long: a decoder stuck in a loop fails the test instead of hanging
 * CI. A healthy child takes ~1 s (tsx start-up included) and ~7 s was seen on a loaded 2-core
 * machine, hence the margin.
 */
const FUZZ_TIMEOUT_MS = 20_000;
/**
 * apache-arrow's own IPC reader trusts lengths in corrupted flatbuffer metadata and can loop for
 * minutes (apache/arrow-js#315); batchesFromIpc reads through our verified framing (src/streams/ipc-framing.ts)
 * so corrupted bytes must fail fast, and this fuzz runs on every test run.
 */
/** Largest garbage input: big enough to hold a schema and a record batch message. */
const GARBAGE_MAX_BYTES = 1024;

const FC_PARAMS: fc.Parameters<unknown> = {
  numRuns: NUM_RUNS,
  // Put the failing assertion in the report next to the seed.
  includeErrorInReport: true,
  ...(process.env['FC_SEED'] ? { seed: Number(process.env['FC_SEED']) } : {}),
  ...(process.env['FC_PATH'] ? { path: process.env['FC_PATH'] } : {}),
};

// ---------------------------------------------------------------- arbitraries and helpers

const SHAPE: Arbitrary<number[]> = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 });
/** Every float32 bit pattern class: NaN, ±Infinity, −0, subnormals; IPC must carry them unchanged. */
const ANY_F32 = fc.float();

interface Dataset {
  arrays: BatchArrays;
  rows: number;
  features: Float32Array;
  labels: Int32Array | undefined;
  targets: Float32Array | undefined;
  targetShape: Shape | undefined;
}

/** Random features (rows × shape), optional Int32 labels, optional targets with an optional explicit shape. */
function dataset(minRows: number, maxRows: number): Arbitrary<Dataset> {
  return fc.record({
    rows: fc.integer({ min: minRows, max: maxRows }),
    shape: SHAPE,
    withLabels: fc.boolean(),
    targetShape: fc.option(SHAPE, { nil: undefined }),
    withTargets: fc.boolean(),
  }).chain(({ rows, shape, withLabels, targetShape, withTargets }) => {
    const width = sizeOf(shape);
    const targetWidth = targetShape ? sizeOf(targetShape) : 1 + (width % 3);
    return fc.record({
      features: fc.float32Array({ minLength: rows * width, maxLength: rows * width }),
      labels: withLabels ? fc.int32Array({ minLength: rows, maxLength: rows }) : fc.constant(undefined),
      targets: withTargets ? fc.array(ANY_F32, { minLength: rows * targetWidth, maxLength: rows * targetWidth }) : fc.constant(undefined),
    }).map(({ features, labels, targets }): Dataset => {
      const t = targets ? Float32Array.from(targets) : undefined;
      const arrays: BatchArrays = {
        features, shape,
        ...(labels ? { labels } : {}),
        ...(t ? { targets: t, ...(targetShape ? { targetShape } : {}) } : {}),
      };
      // Without an explicit targetShape the width is inferred as targets / rows, and documented as 1 for 0 rows.
      const expectedTargetShape = targetShape ?? [rows === 0 ? 1 : targetWidth];
      return { arrays, rows, features, labels, targets: t, targetShape: t ? expectedTargetShape : undefined };
    });
  });
}

/** Byte-exact equality of two typed arrays (NaN payloads and −0 included). */
function assertSameBytes(actual: Float32Array | Int32Array, expected: Float32Array | Int32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const a = new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength);
  const e = new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength);
  for (let i = 0; i < e.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: value ${i >> 2} differs: got ${actual[i >> 2]}, expected ${expected[i >> 2]}`);
  }
}

/** Rows [from, to) of a dataset as the batch must read them back. */
function expectRows(batch: Batch, d: Dataset, rowIndex: (i: number) => number, n: number, what: string): void {
  const width = sizeOf(d.arrays.shape);
  const pick = <T extends Float32Array | Int32Array>(values: T, w: number): T => {
    const out = new (values.constructor as new (length: number) => T)(n * w);
    for (let i = 0; i < n; i++) out.set(values.subarray(rowIndex(i) * w, (rowIndex(i) + 1) * w), i * w);
    return out;
  };
  assert.equal(batch.numRows, n, `${what}: numRows`);
  const f = floatColumn(batch, 'features');
  assert.equal(f.rows, n, `${what}: features rows`);
  assert.deepEqual([...f.shape], [...d.arrays.shape], `${what}: features shape metadata`);
  assertSameBytes(f.values, pick(d.features, width), `${what}: features`);
  const labels = labelColumn(batch);
  if (d.labels) {
    assert.ok(labels, `${what}: the labels column is missing`);
    assertSameBytes(labels.values, pick(d.labels, 1), `${what}: labels`);
  } else {
    assert.equal(labels, null, `${what}: a labels column appeared`);
  }
  const hasTargets = batch.schema.fields.some((field) => field.name === 'targets');
  assert.equal(hasTargets, d.targets !== undefined, `${what}: targets column presence`);
  if (d.targets && d.targetShape) {
    const t = floatColumn(batch, 'targets');
    assert.deepEqual([...t.shape], [...d.targetShape], `${what}: targets shape metadata`);
    assertSameBytes(t.values, pick(d.targets, sizeOf(d.targetShape)), `${what}: targets`);
  }
}

const toIpc = (batch: Batch, format: 'stream' | 'file'): Uint8Array => tableToIPC(new Table(batch), format);

/** A batch assembled column by column, for inputs batchFromArrays refuses to build. */
function handBatch(rows: number, columns: readonly { field: Field; data: Data<DataType> }[]): Batch {
  const fields = columns.map((c) => c.field);
  return new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: columns.map((c) => c.data) }));
}

/** A FixedSizeList<Float32> 'features' column of `width` per row whose shape metadata is `raw`. */
function featuresWithMetadata(rows: number, width: number, raw: string | null): { field: Field; data: Data<DataType> } {
  const item = new Field('item', new Float32(), false);
  const type = new FixedSizeList(width, item);
  const child = makeData({ type: new Float32(), length: rows * width, data: new Float32Array(rows * width) });
  const metadata = raw === null ? new Map<string, string>() : new Map([[SHAPE_METADATA_KEY, raw]]);
  return { field: new Field('features', type, false, metadata), data: makeData({ type, length: rows, nullCount: 0, child }) };
}

/** Asserts that `fn` throws `type` whose message contains every part. */
function assertThrowsNaming(fn: () => unknown, type: abstract new (...args: never[]) => Error, parts: readonly string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    for (const part of parts) assert.ok(error.message.includes(part), `message "${error.message}" does not name "${part}"`);
    return true;
  });
}

// ---------------------------------------------------------------- garbage fuzz (child process)

/** A valid IPC encoding of a small random batch, then corrupted: bytes overwritten and/or truncated. */
const CORRUPTED_IPC: Arbitrary<Uint8Array> = fc.record({
  d: dataset(0, 4),
  format: fc.constantFrom<'stream' | 'file'>('stream', 'file'),
  edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 8 }),
  keep: fc.option(fc.nat(), { nil: undefined }),
}).map(({ d, format, edits, keep }) => {
  const bytes = toIpc(batchFromArrays(d.arrays), format).slice();
  for (const { at, value } of edits) bytes[at % bytes.length] = value;
  return keep === undefined ? bytes : bytes.subarray(0, keep % (bytes.length + 1));
});

/** Arrow magic or the stream continuation marker followed by garbage: gets past the first checks. */
const PREFIXED_GARBAGE: Arbitrary<Uint8Array> = fc.record({
  prefix: fc.constantFrom([0x41, 0x52, 0x52, 0x4f, 0x57, 0x31, 0, 0], [0xff, 0xff, 0xff, 0xff]),
  rest: fc.uint8Array({ maxLength: GARBAGE_MAX_BYTES }),
}).map(({ prefix, rest }) => Uint8Array.from([...prefix, ...rest]));


/** The fuzz inputs, by child mode: unstructured garbage, or corrupted valid IPC. */
const FUZZ_MODES = {
  garbage: fc.oneof(fc.uint8Array({ maxLength: GARBAGE_MAX_BYTES }), PREFIXED_GARBAGE),
  corrupted: CORRUPTED_IPC,
} as const;
type FuzzMode = keyof typeof FUZZ_MODES;

/** Either throws an Error (not a string, not a crash) or returns batches whose reading does the same. */
function decodeGarbage(bytes: Uint8Array): void {
  const isError = (e: unknown, where: string) => assert.ok(e instanceof Error, `${where} threw a non-Error: ${String(e)}`);
  let batches: Batch[];
  try {
    batches = batchesFromIpc(bytes);
  } catch (error) {
    isError(error, 'batchesFromIpc');
    return;
  }
  assert.ok(Array.isArray(batches), 'batchesFromIpc returned a non-array');
  for (const batch of batches) {
    for (const field of batch.schema.fields) {
      try {
        if (field.name === 'labels') labelColumn(batch);
        else floatColumn(batch, field.name);
      } catch (error) {
        isError(error, `reading column '${field.name}'`);
      }
    }
  }
}

function runFuzzChild(mode: FuzzMode, lastInputFile: string | undefined): void {
  // The seed is printed first, and each input saved before it is decoded, so that a run killed by
  // the watchdog can still be replayed and the input that hung inspected.
  const seed = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : (Date.now() ^ (process.pid << 16)) | 0;
  console.log(`arrow fuzz (${mode}) seed ${seed}`);
  const check = (bytes: Uint8Array) => {
    if (lastInputFile) writeFileSync(lastInputFile, bytes);
    decodeGarbage(bytes);
  };
  fc.assert(fc.property(FUZZ_MODES[mode], check), { ...FC_PARAMS, numRuns: FUZZ_RUNS, seed });
  console.log('arrow fuzz ok');
}

/** Runs the fuzz child for `mode` under the watchdog; fails with the seed and, if it hung, the input. */
function fuzzInChild(mode: FuzzMode): void {
  const dir = mkdtempSync(join(tmpdir(), 'rxgrad-arrow-fuzz-'));
  const lastInput = join(dir, 'last-input.bin');
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, ARROW_FUZZ_CHILD: mode, ARROW_FUZZ_LAST: lastInput };
    // The child is a plain script, not a test-runner subprocess.
    delete env['NODE_TEST_CONTEXT'];
    const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env, encoding: 'utf8', timeout: FUZZ_TIMEOUT_MS, maxBuffer: 16 << 20,
    });
    const output = `${child.stdout}\n${child.stderr}`.trim();
    if (child.signal !== null) {
      const hex = existsSync(lastInput) ? Buffer.from(readFileSync(lastInput)).toString('hex') : '(none saved)';
      assert.fail(`the fuzz child was killed by ${child.signal} after ${FUZZ_TIMEOUT_MS} ms (hang or crash)\n${output}\nlast input (hex): ${hex}`);
    }
    assert.equal(child.status, 0, `the fuzz child failed\n${output}`);
    assert.match(child.stdout, /arrow fuzz ok/, output);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- the properties

const fuzzMode = process.env['ARROW_FUZZ_CHILD'];
if (fuzzMode) {
  if (!(fuzzMode in FUZZ_MODES)) throw new RangeError(`ARROW_FUZZ_CHILD must be one of ${Object.keys(FUZZ_MODES).join(', ')}, got ${fuzzMode}`);
  runFuzzChild(fuzzMode as FuzzMode, process.env['ARROW_FUZZ_LAST']);
} else {

  describe('src/batch.ts: Arrow batches', () => {
    it('batchFromArrays → floatColumn / labelColumn reads back the same values and shape metadata', () => {
      fc.assert(fc.property(dataset(0, 6), (d) => {
        expectRows(batchFromArrays(d.arrays), d, (i) => i, d.rows, 'in-memory batch');
      }), FC_PARAMS);
    });

    it('batchFromArrays → tableToIPC → batchesFromIpc round trip (stream and file format)', () => {
      fc.assert(fc.property(dataset(0, 6), fc.constantFrom<'stream' | 'file'>('stream', 'file'), (d, format) => {
        const decoded = batchesFromIpc(toIpc(batchFromArrays(d.arrays), format));
        assert.equal(decoded.length, 1, `${format}: one batch in, ${decoded.length} out`);
        expectRows(decoded[0]!, d, (i) => i, d.rows, `${format} round trip`);
      }), FC_PARAMS);
    });

    it('batch.slice(a, b) reads rows a … b−1', () => {
      const arb = dataset(0, 8).chain((d) => fc.record({
        d: fc.constant(d), a: fc.integer({ min: 0, max: d.rows }), b: fc.integer({ min: 0, max: d.rows }),
      }));
      fc.assert(fc.property(arb, ({ d, a, b }) => {
        const [from, to] = a <= b ? [a, b] : [b, a];
        expectRows(batchFromArrays(d.arrays).slice(from, to), d, (i) => from + i, to - from, `slice(${from}, ${to})`);
      }), FC_PARAMS);
    });

    it('slices of an IPC-decoded batch read correctly', () => {
      const arb = dataset(1, 8).chain((d) => fc.record({
        d: fc.constant(d), a: fc.integer({ min: 0, max: d.rows }), b: fc.integer({ min: 0, max: d.rows }),
      }));
      fc.assert(fc.property(arb, ({ d, a, b }) => {
        const [from, to] = a <= b ? [a, b] : [b, a];
        const [decoded] = batchesFromIpc(toIpc(batchFromArrays(d.arrays), 'stream'));
        expectRows(decoded!.slice(from, to), d, (i) => from + i, to - from, `decoded slice(${from}, ${to})`);
      }), FC_PARAMS);
    });

    it('batchesFromArrays with an order yields every row once, in that order, in batches of batchSize', () => {
      const arb = dataset(1, 12).chain((d) => fc.record({
        d: fc.constant(d),
        order: fc.option(fc.shuffledSubarray([...Array(d.rows).keys()], { minLength: d.rows, maxLength: d.rows }), { nil: undefined }),
        batchSize: fc.integer({ min: 1, max: 7 }),
      }));
      fc.assert(fc.property(arb, ({ d, order, batchSize }) => {
        const batches = batchesFromArrays(d.arrays, batchSize, order);
        assert.equal(batches.length, Math.ceil(d.rows / batchSize), 'number of batches');
        // The batches own copies: overwriting the source afterwards must not change them.
        const snapshot: Dataset = {
          ...d, features: d.features.slice(), labels: d.labels?.slice(), targets: d.targets?.slice(),
          arrays: { ...d.arrays },
        };
        d.features.fill(Number.NaN);
        d.labels?.fill(-1);
        d.targets?.fill(Number.NaN);
        batches.forEach((batch, k) => {
          const start = k * batchSize;
          const n = Math.min(batchSize, d.rows - start);
          expectRows(batch, snapshot, (i) => (order ? order[start + i]! : start + i), n, `batch ${k}`);
        });
      }), FC_PARAMS);
    });

    it('gatherBatch(data, order, start, n) copies rows order[start … start+n)', () => {
      const arb = dataset(1, 12).chain((d) => fc.record({
        d: fc.constant(d),
        order: fc.shuffledSubarray([...Array(d.rows).keys()], { minLength: d.rows, maxLength: d.rows }),
        start: fc.integer({ min: 0, max: d.rows - 1 }),
        n: fc.integer({ min: 1, max: d.rows }),
        withOrder: fc.boolean(),
      }));
      fc.assert(fc.property(arb, ({ d, order, start, n: wanted, withOrder }) => {
        const n = Math.min(wanted, d.rows - start);
        const batch = gatherBatch(d.arrays, withOrder ? order : null, start, n);
        expectRows(batch, d, (i) => (withOrder ? order[start + i]! : start + i), n, `gatherBatch(start ${start}, n ${n})`);
      }), FC_PARAMS);
    });

    // ---- errors

    it('batchFromArrays rejects lengths that do not fit the shape, with a RangeError', () => {
      const arb = fc.record({
        rows: fc.integer({ min: 1, max: 6 }), shape: SHAPE, off: fc.integer({ min: 1, max: 50 }),
        which: fc.constantFrom('features', 'labels', 'targets'),
      });
      fc.assert(fc.property(arb, ({ rows, shape, off, which }) => {
        const width = sizeOf(shape);
        const features = new Float32Array(rows * width + (which === 'features' ? off % width : 0));
        fc.pre(which !== 'features' || off % width !== 0);
        const arrays: BatchArrays = {
          features, shape,
          ...(which === 'labels' ? { labels: new Int32Array(rows + off) } : {}),
          ...(which === 'targets' ? { targets: new Float32Array(rows * 2 + off), targetShape: [2] } : {}),
        };
        assertThrowsNaming(() => batchFromArrays(arrays), RangeError, ['batchFromArrays']);
      }), FC_PARAMS);
      for (const shape of [[0], [2, 0], [-1], [1.5]]) {
        assertThrowsNaming(() => batchFromArrays({ features: new Float32Array(4), shape }), RangeError, ['batchFromArrays', 'shape']);
      }
    });

    it('shape metadata that is not JSON, or does not describe the list size, is a TypeError naming the column', () => {
      const notJson = fc.string().filter((s) => {
        try {
          JSON.parse(s);
          return false;
        } catch {
          return true;
        }
      });
      const wrongShape = (width: number): Arbitrary<string> => fc.oneof(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }).filter((s) => sizeOf(s) !== width).map((s) => JSON.stringify(s)),
        fc.constantFrom('[0]', `[${width}, 0]`, `[-${width}]`, `[${width} ,1.5]`, '{}', '"x"', 'null', `${width}`, `["${width}"]`),
      );
      const arb = fc.record({ rows: fc.integer({ min: 0, max: 4 }), width: fc.integer({ min: 1, max: 12 }) }).chain(({ rows, width }) =>
        fc.record({ rows: fc.constant(rows), width: fc.constant(width), bad: fc.oneof(notJson.map((raw) => ({ raw, json: false })), wrongShape(width).map((raw) => ({ raw, json: true }))) }));
      fc.assert(fc.property(arb, ({ rows, width, bad }) => {
        const batch = handBatch(rows, [featuresWithMetadata(rows, width, bad.raw)]);
        assertThrowsNaming(() => floatColumn(batch, 'features'), TypeError, ["'features'", SHAPE_METADATA_KEY, bad.json ? 'does not describe' : 'not JSON']);
      }), FC_PARAMS);
      // Without metadata the shape is the list size.
      assert.deepEqual(floatColumn(handBatch(2, [featuresWithMetadata(2, 5, null)]), 'features').shape, [5]);
    });

    it('bad shape metadata arriving through IPC fails the decode naming the column (unvalidated: a TypeError when read)', () => {
      for (const raw of ['not json', '[3]', '[0, 2]']) {
        const bytes = toIpc(handBatch(2, [featuresWithMetadata(2, 2, raw)]), 'stream');
        assertThrowsNaming(() => batchesFromIpc(bytes), IpcFormatError, ['batchesFromIpc', 'batch 0', "'features'", SHAPE_METADATA_KEY]);
        const [decoded] = batchesFromIpc(bytes, { validate: false });
        assertThrowsNaming(() => floatColumn(decoded!, 'features'), TypeError, ["'features'", SHAPE_METADATA_KEY]);
      }
    });

    it('wrong column types: Int32 features, Float32 labels, missing features, null rows', () => {
      // Int32 features (token ids) are a valid batch, but not a Float32 column.
      const ints = batchFromArrays({ features: new Int32Array([1, 2, 3, 4]), shape: [2] });
      assertThrowsNaming(() => floatColumn(ints, 'features'), TypeError, ["'features'"]);
      const plainInt = handBatch(2, [{ field: new Field('features', new Int32(), false), data: makeData({ type: new Int32(), length: 2, data: new Int32Array(2) }) }]);
      assertThrowsNaming(() => floatColumn(plainInt, 'features'), TypeError, ["'features'"]);
      // Float32 labels.
      const floatLabels = handBatch(2, [
        featuresWithMetadata(2, 3, '[3]'),
        { field: new Field('labels', new Float32(), false), data: makeData({ type: new Float32(), length: 2, data: new Float32Array([0, 1]) }) },
      ]);
      assertThrowsNaming(() => labelColumn(floatLabels), TypeError, ["'labels'", 'Int32']);
      // No 'features' column: the message lists what there is.
      const noFeatures = handBatch(2, [{ field: new Field('labels', new Int32(), false), data: makeData({ type: new Int32(), length: 2, data: new Int32Array(2) }) }]);
      assertThrowsNaming(() => floatColumn(noFeatures, 'features'), TypeError, ["no 'features' column", 'labels']);
      assert.equal(labelColumn(batchFromArrays({ features: new Float32Array(2), shape: [1] })), null, 'no labels column reads as null');
      // A features column with a null row.
      const item = new Field('item', new Float32(), true);
      const type = new FixedSizeList(2, item);
      const child = makeData({ type: new Float32(), length: 4, data: new Float32Array(4) });
      const nulls = makeData({ type, length: 2, nullCount: 1, nullBitmap: Uint8Array.from([0b01]), child });
      const withNull = handBatch(2, [{ field: new Field('features', type, true), data: nulls }]);
      assertThrowsNaming(() => floatColumn(withNull, 'features'), TypeError, ["'features'", 'null']);
    });

    it('bytes holding no IPC message (empty, all zeros) are an error, not an empty list of batches', () => {
      assert.throws(() => batchesFromIpc(new Uint8Array(0)), /batchesFromIpc: Arrow IPC: empty input \(no schema message\)/);
      assert.throws(() => batchesFromIpc(new Uint8Array(64)), /batchesFromIpc: Arrow IPC: an end-of-stream marker at byte 0, before any schema/);
    });

    it(`random garbage bytes make batchesFromIpc throw an Error or return batches, never hang or crash (child process, ${FUZZ_RUNS} inputs)`, () => {
      fuzzInChild('garbage');
    });

    it(`corrupted valid IPC bytes make batchesFromIpc throw an Error or return batches, never hang or crash (child process, ${FUZZ_RUNS} inputs)`, () => {
      fuzzInChild('corrupted');
    });
  });
}
