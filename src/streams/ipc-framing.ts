/**
 * Arrow IPC message framing: reads whole encapsulated messages from a stream of byte chunks.
 *
 * apache-arrow's reader is lenient with broken input in ways a training loop cannot afford: a
 * stream cut at a message boundary (a dropped connection) silently reads as a shorter stream,
 * some cuts decode as zero batches, and a flipped bit in a flatbuffer length makes it loop over
 * billions of out-of-range fields (the event loop blocks; no timeout can fire). So the bytes go
 * through our own framing first: each encapsulated message is read whole (continuation marker,
 * metadata length, metadata, body), its flatbuffer metadata is bounds-checked by a small verifier
 * (ipc-verify.ts: every table, vector and string inside the buffer, sizes and row counts within
 * limits, buffers inside the body), and only then is the message decoded by Arrow (ipc-decode.ts).
 * Truncation anywhere, a missing end-of-stream marker and garbage all surface as an
 * {@link IpcFormatError} naming the message and the byte where it starts.
 */
import { verifyMessage, type VerifiedMessage } from './ipc-verify.ts';

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

const CONTINUATION = 0xffffffff;
/** The file format starts and ends with it. */
export const MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // "ARROW1"
/** The end-of-stream marker: a continuation marker and a zero metadata length. */
export const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/** Exact-size reads over a stream of chunks; `offset` counts consumed bytes (for messages). */
export class ByteReader {
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
/** The little-endian int32 at byte `at` (Arrow lengths and offsets). */
export const i32At = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset + at, 4).getInt32(0, true);

export interface Message {
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
export async function* messages(reader: ByteReader, options: IpcSourceOptions): AsyncGenerator<Message> {
  const parser = parseMessages(reader, options);
  for (let step = parser.next(); !step.done; step = parser.next()) {
    if (step.value.kind === 'need') await reader.fill(step.value.bytes);
    else yield step.value;
  }
}

/** The parser driven by bytes in memory. */
export function* messagesSync(reader: ByteReader, options: IpcSourceOptions): Generator<Message> {
  for (const step of parseMessages(reader, options)) {
    if (step.kind === 'need') reader.fillSync(step.bytes);
    else yield step;
  }
}
