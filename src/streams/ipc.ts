/**
 * Arrow IPC sources (file path, byte array, Node readable stream, TCP socket) as pull sources.
 *
 * apache-arrow's reader is lenient with broken input in ways a training loop cannot afford: a
 * stream cut at a message boundary (a dropped connection) silently reads as a shorter stream,
 * some cuts decode as zero batches, and a flipped bit in a flatbuffer length makes it loop over
 * billions of out-of-range fields (the event loop blocks; no timeout can fire). So the bytes go
 * through our own framing first: each encapsulated message is read whole (continuation marker,
 * metadata length, metadata, body), its flatbuffer metadata is bounds-checked by a small verifier
 * (every table, vector and string inside the buffer, sizes and row counts within limits, buffers
 * inside the body), and only then is the message decoded by Arrow, one batch at a time (schema +
 * dictionaries + that batch as a tiny stream, synchronously, so every failure maps to one
 * message). Truncation anywhere, a missing end-of-stream marker, garbage and undecodable messages
 * all surface as an {@link IpcFormatError} through the iterator (or the Observable).
 */
import { open } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { RecordBatchReader } from 'apache-arrow';
import { floatColumn, labelColumn, tensorColumn, type Batch } from '../batch.ts';
import { sizeOf } from '../tensor.ts';
import { cancellable, observePull, type PullSource } from './pull.ts';
import type { Observable } from 'rxjs';

/**
 * A malformed, truncated or unsupported Arrow IPC input. `offset` is the byte where the bad message starts.
 *
 * Usage: `if (error instanceof IpcFormatError) log('bad input at byte', error.offset)`
 */
export class IpcFormatError extends Error {
  override name = 'IpcFormatError';
  constructor(message: string, readonly offset: number, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Options of {@link ipcSource} and {@link tcpIpcSource}. */
export interface IpcSourceOptions {
  /**
   * Require the end-of-stream marker of the stream format (default true): a stream that stops at a
   * message boundary without it (a dropped connection, a cut file) is an error, not a shorter stream.
   */
  requireEndMarker?: boolean;
  /** Largest metadata or body of one message, in bytes (default 256 MiB). */
  maxMessageBytes?: number;
  /** Largest batch, in rows (default 2^24). */
  maxRows?: number;
  /**
   * Check each batch is usable for training or inference (default true): a `features`
   * FixedSizeList<Float32> column whose buffers hold every row, Int32 `labels` and `targets` likewise.
   */
  validate?: boolean;
  /** The file format is read whole (its footer is at the end): largest file, in bytes (default 1 GiB). */
  maxFileBytes?: number;
  /** Cancels the read (the iterator rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** What {@link ipcSource} reads: a file path, bytes, a Node readable stream, or chunks of bytes. */
export type IpcInput = string | URL | Uint8Array | Readable | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

const CONTINUATION = 0xffffffff;
const MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // "ARROW1"
const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/**
 * Batches of an Arrow IPC stream or file, read at the consumer's pace (a pull source for
 * `model.fitFrom`). A path is re-read on each iteration; a stream can be iterated once. Malformed
 * or truncated input rejects with an {@link IpcFormatError}; `return()` closes the file or stream.
 *
 * Usage: `model.fitFrom(ipcSource('/data/train.arrows'), { loss: softmaxCrossEntropy(), optimizer: adam() })`
 */
export function ipcSource(input: IpcInput, options: IpcSourceOptions = {}): PullSource<Batch> {
  let used = false;
  return cancellable<Batch>(() => {
    if (typeof input === 'string' || input instanceof URL) {
      let handle: Awaited<ReturnType<typeof open>> | null = null;
      let cancelled = false;
      async function* fileBytes(): AsyncGenerator<Uint8Array> {
        handle = await open(input as string | URL, 'r');
        if (cancelled) return void (await handle.close());
        try {
          const buffer = new Uint8Array(1 << 16);
          for (;;) {
            const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
            if (bytesRead === 0 || cancelled) return;
            yield buffer.slice(0, bytesRead);
          }
        } finally {
          await handle.close().catch(() => {});
        }
      }
      return {
        iterator: decodeIpc(fileBytes(), options),
        cancel: () => {
          cancelled = true;
        },
      };
    }
    if (input instanceof Uint8Array) return { iterator: decodeIpc([input], options), cancel: () => {} };
    if (used) throw new Error('ipcSource: a stream can be iterated only once');
    used = true;
    const destroyable = input as { destroy?: () => void; destroyed?: boolean };
    return {
      iterator: decodeIpc(input as AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options),
      cancel: () => {
        if (typeof destroyable.destroy === 'function' && !destroyable.destroyed) destroyable.destroy();
      },
    };
  }, options.signal ? { signal: options.signal } : {});
}

/**
 * Batches of an Arrow IPC stream read from a TCP connection, opened on each iteration and closed
 * when the iteration ends, fails or is cancelled. A connection that ends before the
 * end-of-stream marker is an error; `idleTimeoutMs` bounds silence from the peer.
 *
 * Usage: `model.fitFrom(tcpIpcSource({ host: '127.0.0.1', port: 9000 }), fit).subscribe(console.log)`
 */
export function tcpIpcSource(options: IpcSourceOptions & { port: number; host?: string; idleTimeoutMs?: number }): PullSource<Batch> {
  return cancellable<Batch>(() => {
    const socket: Socket = connect({ port: options.port, host: options.host ?? '127.0.0.1' });
    if (options.idleTimeoutMs !== undefined) {
      socket.setTimeout(options.idleTimeoutMs, () => socket.destroy(new Error(`tcpIpcSource: no data for ${options.idleTimeoutMs} ms from ${options.host ?? '127.0.0.1'}:${options.port}`)));
    }
    return { iterator: decodeIpc(socket, options), cancel: () => void socket.destroy() };
  }, options.signal ? { signal: options.signal } : {});
}

/**
 * The Observable form of {@link ipcSource}: emits as fast as the subscriber takes batches;
 * unsubscribing closes the input.
 *
 * Usage: `ipcSource$('/data/test.arrows').pipe(model.predict()).subscribe(show)`
 */
export function ipcSource$(input: IpcInput, options: IpcSourceOptions = {}): Observable<Batch> {
  return observePull(ipcSource(input, options));
}

// ------------------------------------------------------------------ byte framing

/** Exact-size reads over a stream of chunks; `offset` counts consumed bytes (for messages). */
class ByteReader {
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  offset = 0;
  constructor(private readonly iterator: AsyncIterator<unknown> | Iterator<unknown>) {}

  /** True if at least n bytes are available (reads more as needed). */
  async fill(n: number): Promise<boolean> {
    while (this.buffered < n && !this.ended) this.accept(await this.iterator.next());
    return this.buffered >= n;
  }

  /** `fill` for a synchronous iterator (bytes in memory): never waits. */
  fillSync(n: number): boolean {
    while (this.buffered < n && !this.ended) {
      const next = this.iterator.next();
      if (next instanceof Promise) throw new TypeError('ByteReader.fillSync: the input is asynchronous');
      this.accept(next);
    }
    return this.buffered >= n;
  }

  private accept(next: IteratorResult<unknown>): void {
    if (next.done) {
      this.ended = true;
      return;
    }
    const chunk = next.value;
    if (!(chunk instanceof Uint8Array)) {
      throw new IpcFormatError(`Arrow IPC: the input yielded ${typeof chunk === 'string' ? 'a string' : typeof chunk}, not bytes (is the stream in object mode or has an encoding?)`, this.offset + this.buffered);
    }
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
  }

  get available(): number {
    return this.buffered;
  }

  /** The first n buffered bytes, not consumed (call after `fill(n)`). */
  peek(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    for (const chunk of this.chunks) {
      if (filled === n) break;
      const part = Math.min(chunk.length, n - filled);
      out.set(chunk.subarray(0, part), filled);
      filled += part;
    }
    return out;
  }

  /** Takes n buffered bytes (a view when they sit in one chunk). */
  take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    this.offset += n;
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const part = Math.min(chunk.length, n - filled);
      out.set(chunk.subarray(0, part), filled);
      filled += part;
      if (part === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(part);
    }
    return out;
  }


  /** Reads everything left (bounded). */
  async rest(limit: number): Promise<Uint8Array> {
    while (await this.fill(this.buffered + 1)) {
      if (this.buffered > limit) throw new IpcFormatError(`Arrow IPC: more than ${limit} bytes after the messages of a file`, this.offset);
    }
    return this.take(this.buffered);
  }
}

const u32At = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, true);
const i32At = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset + at, 4).getInt32(0, true);

interface Message {
  kind: 'schema' | 'dictionary' | 'batch' | 'end';
  /** The message re-framed with a continuation marker: prefix, metadata, body. */
  bytes: Uint8Array;
  offset: number;
}

/** What the message parser asks its driver for: at least `bytes` buffered (or the input's end). */
interface Need {
  kind: 'need';
  bytes: number;
}
const need = (bytes: number): Need => ({ kind: 'need', bytes });

/** `n` bytes, asked for from the driver; the input ending first is a truncation error. */
function* exact(reader: ByteReader, n: number, what: string, messageStart: number): Generator<Need, Uint8Array> {
  yield need(n);
  if (reader.available < n) {
    throw new IpcFormatError(`Arrow IPC: truncated input: the stream ended inside ${what} (message at byte ${messageStart}: needed ${n} more bytes, got ${reader.available})`, messageStart);
  }
  return reader.take(n);
}

/**
 * Reads whole encapsulated messages, verifying each metadata flatbuffer before anything decodes it.
 * It never reads input itself: it yields a {@link Need} and its driver fills the reader, awaiting
 * ({@link messages}) or not ({@link messagesSync}), so both share one parser.
 */
function* parseMessages(reader: ByteReader, options: IpcSourceOptions): Generator<Need | Message> {
  const maxBytes = options.maxMessageBytes ?? 256 * 1024 * 1024;
  const limits = { maxBytes, maxRows: options.maxRows ?? 1 << 24 };
  for (let index = 0; ; index++) {
    const start = reader.offset;
    yield need(4);
    if (reader.available < 4) {
      if (reader.available > 0) throw new IpcFormatError(`Arrow IPC: truncated input: ${reader.available} stray bytes at byte ${start}, where a message or the end-of-stream marker should start`, start);
      if (options.requireEndMarker === false && index > 0) return;
      throw new IpcFormatError(
        index === 0
          ? 'Arrow IPC: empty input (no schema message)'
          : `Arrow IPC: truncated input: the stream ended at byte ${start} after ${index} messages without the end-of-stream marker (pass requireEndMarker: false to accept this)`,
        start,
      );
    }
    const head = reader.take(4);
    let length: number;
    if (u32At(head, 0) === CONTINUATION) length = i32At(yield* exact(reader, 4, 'a message length', start), 0);
    else length = i32At(head, 0); // pre-1.0 framing: the length without the continuation marker
    if (length === 0) {
      if (index === 0) throw new IpcFormatError(`Arrow IPC: an end-of-stream marker at byte ${start}, before any schema: no Arrow IPC schema here`, start);
      yield { kind: 'end', bytes: EOS, offset: start };
      return;
    }
    if (length < 8 || length > maxBytes) {
      throw new IpcFormatError(`Arrow IPC: message ${index} at byte ${start} declares ${length} bytes of metadata (expected 8 … ${maxBytes}); this is not an Arrow IPC stream or it is corrupt`, start);
    }
    const metadata = yield* exact(reader, length, `the metadata of message ${index}`, start);
    let verified: VerifiedMessage;
    try {
      verified = verifyMessage(metadata, limits);
    } catch (error) {
      throw new IpcFormatError(`Arrow IPC: message ${index} at byte ${start}: corrupt metadata: ${(error as Error).message}`, start, { cause: error });
    }
    if (index === 0 && verified.kind !== 'schema') throw new IpcFormatError(`Arrow IPC: message 0 at byte ${start} is a ${verified.kind}, expected the schema`, start);
    if (index > 0 && verified.kind === 'schema') throw new IpcFormatError(`Arrow IPC: message ${index} at byte ${start} is a second schema (two streams concatenated without an end-of-stream marker?)`, start);
    const body = yield* exact(reader, verified.bodyLength, `the body of message ${index}`, start);
    const bytes = new Uint8Array(8 + length + body.length);
    new DataView(bytes.buffer).setUint32(0, CONTINUATION, true);
    new DataView(bytes.buffer).setInt32(4, length, true);
    bytes.set(metadata, 8);
    bytes.set(body, 8 + length);
    yield { kind: verified.kind, bytes, offset: start };
  }
}

/** The parser driven by an input that may have to be waited for (files, sockets, streams). */
async function* messages(reader: ByteReader, options: IpcSourceOptions): AsyncGenerator<Message> {
  const parser = parseMessages(reader, options);
  for (let step = parser.next(); !step.done; step = parser.next()) {
    if (step.value.kind === 'need') await reader.fill(step.value.bytes);
    else yield step.value;
  }
}

/** The parser driven by bytes in memory. */
function* messagesSync(reader: ByteReader, options: IpcSourceOptions): Generator<Message> {
  for (const step of parseMessages(reader, options)) {
    if (step.kind === 'need') reader.fillSync(step.bytes);
    else yield step;
  }
}

/** Decodes verified messages into batches: schema + dictionaries + one batch at a time, synchronously. */
async function* decodeIpc(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | NodeJS.ReadableStream, options: IpcSourceOptions): AsyncGenerator<Batch> {
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

// ------------------------------------------------------------------ flatbuffer verifier

interface VerifiedMessage {
  kind: 'schema' | 'dictionary' | 'batch';
  bodyLength: number;
}

/**
 * Bounds-checked flatbuffer reads. Arrow's generated accessors read out-of-range offsets as 0 and
 * trust vector lengths, which turns garbage into endless loops; here every table, vector and
 * string is checked against the buffer before Arrow sees it.
 */
class Flatbuffer {
  private readonly view: DataView;
  budget = 100_000;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private check(at: number, size: number, what: string): void {
    if (!Number.isInteger(at) || at < 0 || at + size > this.bytes.length) throw new Error(`${what} at ${at} (+${size}) is outside the ${this.bytes.length}-byte metadata`);
  }
  u8(at: number): number {
    this.check(at, 1, 'byte');
    return this.view.getUint8(at);
  }
  u16(at: number): number {
    this.check(at, 2, 'u16');
    return this.view.getUint16(at, true);
  }
  i32(at: number): number {
    this.check(at, 4, 'i32');
    return this.view.getInt32(at, true);
  }
  u32(at: number): number {
    this.check(at, 4, 'u32');
    return this.view.getUint32(at, true);
  }
  /** An int64 that must fit a safe integer. */
  i64(at: number, what: string): number {
    this.check(at, 8, what);
    const value = this.view.getBigInt64(at, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`${what} ${value} is out of range`);
    return Number(value);
  }
  /** Checks a table at `at`: its vtable and the fields it declares lie inside the buffer. */
  table(at: number, what: string): number {
    if (--this.budget < 0) throw new Error('too many tables (cyclic or oversized metadata)');
    this.check(at, 4, what);
    if (at % 4 !== 0) throw new Error(`${what} at ${at} is misaligned`);
    const vtable = at - this.i32(at);
    this.check(vtable, 4, `${what} vtable`);
    const vtableSize = this.u16(vtable);
    const tableSize = this.u16(vtable + 2);
    if (vtableSize < 4 || vtableSize % 2 !== 0) throw new Error(`${what} has a vtable of ${vtableSize} bytes`);
    this.check(vtable, vtableSize, `${what} vtable`);
    this.check(at, tableSize, what);
    for (let f = 4; f < vtableSize; f += 2) {
      const o = this.u16(vtable + f);
      if (o !== 0 && o >= tableSize) throw new Error(`${what} field ${(f - 4) / 2} lies outside its table`);
    }
    return at;
  }
  /** Absolute position of field `index` of a table, or 0 when absent. */
  field(table: number, index: number): number {
    const vtable = table - this.i32(table);
    const entry = 4 + 2 * index;
    if (entry >= this.u16(vtable)) return 0;
    const o = this.u16(vtable + entry);
    return o === 0 ? 0 : table + o;
  }
  /** Follows the offset stored at `at` (a reference to a table, vector or string). */
  deref(at: number, what: string): number {
    const target = at + this.u32(at);
    this.check(target, 4, what);
    return target;
  }
  /** A vector at `at`: its length, checked against the buffer for elements of `size` bytes. */
  vector(at: number, size: number, what: string, maxLength = Number.MAX_SAFE_INTEGER): { start: number; length: number } {
    const length = this.u32(at);
    if (length > maxLength) throw new Error(`${what} has ${length} elements (at most ${maxLength})`);
    this.check(at + 4, length * size, what);
    return { start: at + 4, length };
  }
  /** Optional table field → table position or 0. */
  tableField(table: number, index: number, what: string): number {
    const at = this.field(table, index);
    return at === 0 ? 0 : this.table(this.deref(at, what), what);
  }
  /** Optional vector-of-tables field: checks each element. */
  tables(table: number, index: number, what: string, each: (t: number, i: number) => void, maxLength?: number): number {
    const at = this.field(table, index);
    if (at === 0) return 0;
    const { start, length } = this.vector(this.deref(at, what), 4, what, maxLength);
    for (let i = 0; i < length; i++) each(this.table(this.deref(start + 4 * i, `${what}[${i}]`), `${what}[${i}]`), i);
    return length;
  }
  string(table: number, index: number, what: string): void {
    const at = this.field(table, index);
    if (at === 0) return;
    const { start, length } = this.vector(this.deref(at, what), 1, what);
    this.check(start, length + 1, what); // strings are NUL terminated
  }
}

const HEADER_KINDS: Record<number, VerifiedMessage['kind'] | string> = { 1: 'schema', 2: 'dictionary', 3: 'batch', 4: 'tensor', 5: 'sparse tensor' };
/** Arrow's Type union: 10 = Timestamp (timezone string), 14 = Union (typeIds vector). */
const TYPE_TIMESTAMP = 10;
const TYPE_UNION = 14;
const MAX_TYPE_ID = 26;

function verifyMessage(bytes: Uint8Array, limits: { maxBytes: number; maxRows: number }): VerifiedMessage {
  const fb = new Flatbuffer(bytes);
  const root = fb.table(fb.deref(0, 'root'), 'Message');
  const versionAt = fb.field(root, 0);
  const version = versionAt ? fb.u16(versionAt) : 0;
  if (version > 4) throw new Error(`unknown metadata version ${version}`);
  const typeAt = fb.field(root, 1);
  const headerType = typeAt ? fb.u8(typeAt) : 0;
  const kind = HEADER_KINDS[headerType];
  if (kind !== 'schema' && kind !== 'dictionary' && kind !== 'batch') throw new Error(kind ? `${kind} messages are not supported` : `unknown message type ${headerType}`);
  const header = fb.tableField(root, 2, 'header');
  if (header === 0) throw new Error(`the ${kind} message has no header`);
  const bodyAt = fb.field(root, 3);
  const bodyLength = bodyAt ? fb.i64(bodyAt, 'body length') : 0;
  if (bodyLength < 0 || bodyLength > limits.maxBytes) throw new Error(`body length ${bodyLength} is outside 0 … ${limits.maxBytes}`);
  fb.tables(root, 4, 'custom_metadata', (kv) => keyValue(fb, kv));
  if (kind === 'schema') verifySchema(fb, header);
  else if (kind === 'batch') verifyRecordBatch(fb, header, bodyLength, limits.maxRows);
  else {
    const data = fb.tableField(header, 1, 'dictionary data');
    if (data === 0) throw new Error('dictionary batch without data');
    verifyRecordBatch(fb, data, bodyLength, limits.maxRows);
  }
  return { kind, bodyLength };
}

function keyValue(fb: Flatbuffer, kv: number): void {
  fb.string(kv, 0, 'key');
  fb.string(kv, 1, 'value');
}

function verifySchema(fb: Flatbuffer, schema: number): void {
  let fields = 0;
  const field = (f: number, depth: number): void => {
    if (++fields > 10_000) throw new Error('more than 10,000 fields');
    if (depth > 64) throw new Error('fields nested more than 64 deep');
    fb.string(f, 0, 'field name');
    const typeTypeAt = fb.field(f, 2);
    const typeType = typeTypeAt ? fb.u8(typeTypeAt) : 0;
    if (typeType === 0 || typeType > MAX_TYPE_ID) throw new Error(`field type ${typeType} is unknown`);
    const type = fb.tableField(f, 3, 'field type');
    if (type === 0) throw new Error('a field has no type table');
    if (typeType === TYPE_TIMESTAMP) fb.string(type, 1, 'timezone');
    if (typeType === TYPE_UNION) {
      const at = fb.field(type, 1);
      if (at) fb.vector(fb.deref(at, 'union type ids'), 4, 'union type ids', 128);
    }
    const dictionary = fb.tableField(f, 4, 'dictionary encoding');
    if (dictionary) fb.tableField(dictionary, 1, 'dictionary index type');
    fb.tables(f, 5, 'children', (child) => field(child, depth + 1), 10_000);
    fb.tables(f, 6, 'field metadata', (kv) => keyValue(fb, kv));
  };
  fb.tables(schema, 1, 'fields', (f) => field(f, 0), 10_000);
  fb.tables(schema, 2, 'schema metadata', (kv) => keyValue(fb, kv));
  const features = fb.field(schema, 3);
  if (features) fb.vector(fb.deref(features, 'features'), 8, 'features', 64);
}

function verifyRecordBatch(fb: Flatbuffer, batch: number, bodyLength: number, maxRows: number): void {
  const lengthAt = fb.field(batch, 0);
  const rows = lengthAt ? fb.i64(lengthAt, 'row count') : 0;
  if (rows < 0 || rows > maxRows) throw new Error(`row count ${rows} is outside 0 … ${maxRows}`);
  const nodesAt = fb.field(batch, 1);
  if (nodesAt) {
    const { start, length } = fb.vector(fb.deref(nodesAt, 'nodes'), 16, 'nodes', 10_000);
    for (let i = 0; i < length; i++) {
      const n = fb.i64(start + 16 * i, 'node length');
      const nulls = fb.i64(start + 16 * i + 8, 'node null count');
      // A node may hold more values than rows (list children), but never more than the body could.
      if (n < 0 || n > Math.max(maxRows, bodyLength * 8)) throw new Error(`node ${i} has length ${n}`);
      if (nulls < -1 || nulls > n) throw new Error(`node ${i} has null count ${nulls} for length ${n}`);
    }
  }
  const buffersAt = fb.field(batch, 2);
  if (buffersAt) {
    const { start, length } = fb.vector(fb.deref(buffersAt, 'buffers'), 16, 'buffers', 30_000);
    for (let i = 0; i < length; i++) {
      const offset = fb.i64(start + 16 * i, 'buffer offset');
      const size = fb.i64(start + 16 * i + 8, 'buffer length');
      if (offset < 0 || size < 0 || offset + size > bodyLength) throw new Error(`buffer ${i} (${offset} +${size}) lies outside the ${bodyLength}-byte body`);
    }
  }
  const compression = fb.tableField(batch, 3, 'compression');
  if (compression) throw new Error('compressed record batches are not supported');
  const variadic = fb.field(batch, 4);
  if (variadic) fb.vector(fb.deref(variadic, 'variadic buffer counts'), 8, 'variadic buffer counts', 10_000);
}
