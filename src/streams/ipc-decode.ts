/**
 * Arrow IPC decoding: verified messages (ipc-framing.ts) into batches, one at a time, by Arrow
 * (schema + dictionaries + that batch as a tiny stream, synchronously, so every failure maps to
 * one message); the file format (footer verified first); batches held in memory
 * ({@link batchesFromIpc}); and the check that a batch's training columns hold every row
 * ({@link validateBatch}). Undecodable messages surface as an {@link IpcFormatError}.
 */
import { RecordBatchReader } from 'apache-arrow';
import { floatColumn, labelColumn, tensorColumn, type Batch } from '../batch.ts';
import { sizeOf } from '../tensor.ts';
import { ByteReader, EOS, i32At, IpcFormatError, MAGIC, messages, messagesSync, type IpcSourceOptions, type Message } from './ipc-framing.ts';
import { Flatbuffer, verifyMessage, verifySchema } from './ipc-verify.ts';

/** Decodes verified messages into batches: schema + dictionaries + one batch at a time, synchronously. */
export async function* decodeIpc(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | NodeJS.ReadableStream, options: IpcSourceOptions): AsyncGenerator<Batch> {
  const iterable = input as AsyncIterable<unknown> | Iterable<unknown>;
  const iterator = Symbol.asyncIterator in iterable ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
  const reader = new ByteReader(iterator);
  try {
    if (await reader.fill(6)) {
      const peek = reader.peek(6);
      if (MAGIC.every((b, i) => peek[i] === b)) {
        // File format: "ARROW1", padding, the stream-format messages, footer, footer length, "ARROW1".
        // Files are read whole (they are bounded), so the end can be checked before any batch is used.
        const whole = await reader.rest(options.maxFileBytes ?? 1 << 30);
        yield* decodeFile(whole, options);
        return;
      }
    }
    yield* decodeMessages(reader, options);
  } finally {
    await Promise.resolve(iterator.return?.()).catch(() => {});
  }
}

/**
 * The file format: "ARROW1", padding, messages, footer (schema + the blocks locating each
 * message), footer length, "ARROW1". The footer and every message it points to are verified,
 * then Arrow's file reader decodes batch by batch.
 */
function* decodeFile(bytes: Uint8Array, options: IpcSourceOptions): Generator<Batch> {
  const end = bytes.length;
  if (end < 18 || !MAGIC.every((b, i) => bytes[end - 6 + i] === b)) {
    throw new IpcFormatError(`Arrow IPC file: truncated or corrupt: it does not end with the "ARROW1" magic (${end} bytes)`, end);
  }
  const footerLength = i32At(bytes, end - 10);
  const footerStart = end - 10 - footerLength;
  if (footerLength <= 0 || footerStart < 8) throw new IpcFormatError(`Arrow IPC file: corrupt footer length ${footerLength} (${end} bytes)`, end);
  const limits = { maxBytes: options.maxMessageBytes ?? 256 * 1024 * 1024, maxRows: options.maxRows ?? 1 << 24 };
  let batches: number;
  try {
    const fb = new Flatbuffer(bytes.subarray(footerStart, end - 10));
    const footer = fb.table(fb.deref(0, 'root'), 'Footer');
    const schema = fb.tableField(footer, 1, 'schema');
    if (schema === 0) throw new Error('the footer has no schema');
    verifySchema(fb, schema);
    const blocks = (index: number, what: string, check: (offset: number, metadata: number, body: number) => void): number => {
      const at = fb.field(footer, index);
      if (at === 0) return 0;
      const { start, length } = fb.vector(fb.deref(at, what), 24, what, 1 << 20);
      for (let i = 0; i < length; i++) check(fb.i64(start + 24 * i, 'block offset'), fb.i32(start + 24 * i + 8), fb.i64(start + 24 * i + 16, 'block body length'));
      return length;
    };
    const checkBlock = (offset: number, metadata: number, body: number): void => {
      if (offset < 8 || metadata < 8 || body < 0 || offset + metadata + body > footerStart) throw new Error(`block at ${offset} (${metadata} + ${body} bytes) lies outside the messages`);
      let at = offset;
      let length = i32At(bytes, at);
      if (length === -1) length = i32At(bytes, (at += 4));
      if (length <= 0 || at + 4 + length > offset + metadata) throw new Error(`message at ${offset} declares ${length} bytes of metadata; its block holds ${metadata}`);
      const verified = verifyMessage(bytes.subarray(at + 4, at + 4 + length), limits);
      if (verified.kind === 'schema' || verified.bodyLength > body) throw new Error(`message at ${offset} is not the ${body}-byte batch its block describes`);
    };
    blocks(2, 'dictionary blocks', checkBlock);
    batches = blocks(3, 'record batch blocks', checkBlock);
  } catch (error) {
    if (error instanceof IpcFormatError) throw error;
    throw new IpcFormatError(`Arrow IPC file: corrupt footer or block: ${(error as Error).message}`, footerStart, { cause: error });
  }
  let reader: Iterator<Batch>;
  try {
    reader = RecordBatchReader.from(bytes) as unknown as Iterator<Batch>;
  } catch (error) {
    throw new IpcFormatError(`Arrow IPC file: cannot be decoded: ${(error as Error).message}`, 0, { cause: error });
  }
  for (let index = 0; index < batches; index++) {
    let batch: Batch;
    try {
      const next = reader.next() as IteratorResult<Batch>;
      if (next.done) throw new Error('Arrow decoded fewer batches than the footer lists');
      batch = next.value;
      if (options.validate ?? true) validateBatch(batch);
    } catch (error) {
      throw new IpcFormatError(`Arrow IPC file: batch ${index}: ${(error as Error).message}`, 0, { cause: error });
    }
    yield batch;
  }
}

/** Turns verified messages into batches: keeps the schema and dictionaries, decodes each batch with them. */
class MessageDecoder {
  private schema: Uint8Array | null = null;
  private readonly dictionaries: Uint8Array[] = [];
  private batchIndex = 0;
  constructor(private readonly options: IpcSourceOptions) {}

  /** The batch a message completes; null for a schema or dictionary; 'end' at the end-of-stream marker. */
  accept(message: Message): Batch | null | 'end' {
    if (message.kind === 'end') return 'end';
    if (message.kind === 'schema') {
      this.schema = message.bytes;
      // Decode the schema alone now so a bad schema fails before the first batch is awaited.
      decodeOne(this.schema, [], null, message.offset, 'schema');
      return null;
    }
    if (message.kind === 'dictionary') {
      this.dictionaries.push(message.bytes);
      return null;
    }
    const batch = decodeOne(this.schema!, this.dictionaries, message.bytes, message.offset, `batch ${this.batchIndex}`)!;
    if (this.options.validate ?? true) {
      try {
        validateBatch(batch);
      } catch (error) {
        throw new IpcFormatError(`Arrow IPC: batch ${this.batchIndex} at byte ${message.offset}: ${(error as Error).message}`, message.offset, { cause: error });
      }
    }
    this.batchIndex++;
    return batch;
  }
}

async function* decodeMessages(reader: ByteReader, options: IpcSourceOptions): AsyncGenerator<Batch> {
  const decoder = new MessageDecoder(options);
  for await (const message of messages(reader, options)) {
    const batch = decoder.accept(message);
    if (batch === 'end') return;
    if (batch) yield batch;
  }
}

/**
 * Every batch of Arrow IPC bytes held in memory (stream or file format), read through the same
 * verified framing as {@link ipcSource}: malformed, truncated or corrupt bytes throw an
 * {@link IpcFormatError} naming the message and byte, and never hang (Arrow's own reader can loop
 * on a corrupt length, apache/arrow-js#315).
 *
 * Usage: `const batches = batchesFromIpc(await readFile('train.arrow'));`
 */
export function batchesFromIpc(bytes: Uint8Array, options: Omit<IpcSourceOptions, 'signal'> = {}): Batch[] {
  try {
    if (bytes.length >= 6 && MAGIC.every((b, i) => bytes[i] === b)) {
      if (bytes.length > (options.maxFileBytes ?? 1 << 30)) throw new IpcFormatError(`Arrow IPC: more than ${options.maxFileBytes ?? 1 << 30} bytes in a file`, 0);
      return [...decodeFile(bytes, options)];
    }
    const reader = new ByteReader([bytes][Symbol.iterator]());
    const decoder = new MessageDecoder(options);
    const batches: Batch[] = [];
    for (const message of messagesSync(reader, options)) {
      const batch = decoder.accept(message);
      if (batch === 'end') break;
      if (batch) batches.push(batch);
    }
    return batches;
  } catch (error) {
    if (!(error instanceof IpcFormatError)) throw error;
    throw new IpcFormatError(`batchesFromIpc: ${error.message}`, error.offset, { cause: error });
  }
}

function decodeOne(schema: Uint8Array, dictionaries: readonly Uint8Array[], batch: Uint8Array | null, offset: number, what: string): Batch | null {
  const parts = [schema, ...dictionaries, ...(batch ? [batch] : []), EOS];
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  try {
    const reader = RecordBatchReader.from(bytes);
    const first = reader.next() as IteratorResult<Batch>;
    if (batch && first.done) throw new Error('Arrow decoded no batch from it');
    return first.done ? null : first.value;
  } catch (error) {
    if (error instanceof IpcFormatError) throw error;
    throw new IpcFormatError(`Arrow IPC: ${what} at byte ${offset} cannot be decoded: ${(error as Error).message}`, offset, { cause: error });
  }
}

/**
 * Checks a decoded batch's training columns hold every row (Arrow builds short views over short
 * buffers without complaint): `features` FixedSizeList<Float32>, optional Int32 `labels` and
 * `targets`. Throws a TypeError/RangeError naming the column.
 *
 * Usage: `validateBatch(batch);`
 */
export function validateBatch(batch: Batch): void {
  const rows = batch.numRows;
  for (const name of ['features', 'labels', 'targets']) {
    if (name !== 'features' && !batch.schema.fields.some((f) => f.name === name)) continue;
    const column = name === 'labels' ? labelColumn(batch)! : name === 'targets' ? floatColumn(batch, name) : tensorColumn(batch, name);
    // Plain (non-list) columns are sliced to `rows` without a length check: check it here.
    const need = rows * sizeOf(column.shape);
    if (column.values.length < need) throw new RangeError(`column '${name}' holds ${column.values.length} values for ${rows} rows`);
  }
}
