/**
 * The IPC source on hostile input: random bytes, valid streams and files cut anywhere, and valid
 * ones with bytes overwritten (in the flatbuffer metadata most of all). Every run must end — with
 * batches that pass `validateBatch`, or with an Error through the iterator or the Observable —
 * within a time bound, and never crash the process. Arrow alone fails this (a flipped length
 * byte in a schema makes it loop over billions of fields with the event loop blocked); see
 * src/streams/ipc-framing.ts.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Table, tableToIPC } from 'apache-arrow';
import { lastValueFrom, toArray } from 'rxjs';
import { batchFromArrays, type Batch } from '../src/batch.ts';
import { ipcSource, ipcSource$ } from '../src/streams/ipc-sources.ts';
import { validateBatch } from '../src/streams/ipc-decode.ts';
import { IpcFormatError } from '../src/streams/ipc-framing.ts';

const RUN_TIMEOUT_MS = 2000;
const seed = Number(process.env['FC_SEED'] ?? Date.now() % 2 ** 31);
console.log(`ipc-garbage: fast-check seed ${seed} (replay with FC_SEED=${seed})`);

const batch = (rows: number, width: number, start: number) =>
  batchFromArrays({ features: new Float32Array(rows * width).map((_, i) => start + i / 7), shape: [width], labels: new Int32Array(rows).map((_, i) => i % 3) });
const table = new Table([batch(5, 3, 0), batch(7, 3, 100), batch(2, 3, 200)]);
const STREAM = tableToIPC(table, 'stream');
const FILE = tableToIPC(table, 'file');

type Outcome = { kind: 'batches'; batches: Batch[] } | { kind: 'error'; error: unknown };

/** Reads everything, bounded in time: a hang fails the property instead of the whole run. */
async function readAll(source: () => Promise<Batch[]>): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`HANG: no result in ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS);
  });
  try {
    const batches = await Promise.race([source(), timeout]);
    return { kind: 'batches', batches };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('HANG')) throw error;
    return { kind: 'error', error };
  } finally {
    clearTimeout(timer);
  }
}

async function iterate(bytes: Uint8Array, chunk: number): Promise<Batch[]> {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += chunk) chunks.push(bytes.slice(at, at + chunk));
  const out: Batch[] = [];
  for await (const b of ipcSource(Readable.from(chunks, { objectMode: false }))) out.push(b);
  return out;
}

/** Clean: an Error (an IpcFormatError for anything about the bytes), or batches that are usable. */
function assertClean(outcome: Outcome): void {
  if (outcome.kind === 'error') {
    assert.ok(outcome.error instanceof IpcFormatError, `expected an IpcFormatError, got ${String(outcome.error)}`);
    assert.ok(outcome.error.message.length > 0);
    return;
  }
  for (const b of outcome.batches) validateBatch(b);
}

describe('ipcSource on garbage (fast-check)', () => {
  it('random bytes: an IpcFormatError through the iterator, never a hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.integer({ min: 1, max: 700 }), async (bytes, chunk) => {
        const outcome = await readAll(() => iterate(bytes, chunk));
        assert.equal(outcome.kind, 'error', 'random bytes are not an Arrow stream');
        assertClean(outcome);
      }),
      { seed, numRuns: 300 },
    );
  });

  it('random bytes after a continuation marker and a plausible length (reaches the metadata verifier)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 8, max: 600 }), fc.uint8Array({ minLength: 0, maxLength: 1200 }), async (length, rest) => {
        const bytes = new Uint8Array(8 + rest.length);
        new DataView(bytes.buffer).setUint32(0, 0xffffffff, true);
        new DataView(bytes.buffer).setInt32(4, length, true);
        bytes.set(rest, 8);
        const outcome = await readAll(() => iterate(bytes, 64));
        assert.equal(outcome.kind, 'error');
        assertClean(outcome);
      }),
      { seed, numRuns: 300 },
    );
  });

  for (const [name, valid] of [['stream', STREAM], ['file', FILE]] as const) {
    it(`a valid IPC ${name} cut anywhere: an error unless nothing is missing`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: valid.length - 1 }), fc.integer({ min: 1, max: 300 }), async (cut, chunk) => {
          const outcome = await readAll(() => iterate(valid.subarray(0, cut), chunk));
          assert.equal(outcome.kind, 'error', `a ${name} cut at ${cut} of ${valid.length} bytes must not read as a shorter one`);
          assertClean(outcome);
        }),
        { seed, numRuns: 300 },
      );
    });

    it(`a valid IPC ${name} with bytes overwritten: usable batches or an IpcFormatError, never a hang`, async () => {
      // Biased to the first 400 bytes, where the schema and the first batch's metadata live.
      const position = fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: valid.length - 1 }));
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(position, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (edits) => {
          const bytes = valid.slice();
          for (const [at, value] of edits) bytes[at] = value;
          assertClean(await readAll(() => iterate(bytes, 97)));
        }),
        { seed, numRuns: 600 },
      );
    });
  }

  it('errors reach Observable subscribers too', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: STREAM.length - 1 }), async (cut) => {
        const outcome = await readAll(() => lastValueFrom(ipcSource$(STREAM.subarray(0, cut)).pipe(toArray())));
        assert.equal(outcome.kind, 'error');
        assertClean(outcome);
      }),
      { seed, numRuns: 100 },
    );
  });

  it('the valid inputs themselves read completely', async () => {
    for (const valid of [STREAM, FILE]) {
      const outcome = await readAll(() => iterate(valid, 50));
      assert.equal(outcome.kind, 'batches');
      assert.deepEqual(outcome.kind === 'batches' && outcome.batches.map((b) => b.numRows), [5, 7, 2]);
    }
  });
});
