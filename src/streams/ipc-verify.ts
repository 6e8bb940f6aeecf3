/**
 * Flatbuffer verifier for Arrow IPC metadata (messages and the file footer), run before Arrow
 * reads any of it. Every check throws a plain Error saying what is out of range; the framing
 * (ipc-framing.ts) or the file decoder (ipc-decode.ts) wraps it in an IpcFormatError naming the
 * message and byte.
 */

export interface VerifiedMessage {
  kind: 'schema' | 'dictionary' | 'batch';
  bodyLength: number;
}

/**
 * Bounds-checked flatbuffer reads. Arrow's generated accessors read out-of-range offsets as 0 and
 * trust vector lengths, which turns garbage into endless loops; here every table, vector and
 * string is checked against the buffer before Arrow sees it.
 */
export class Flatbuffer {
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

/** Verifies one message's metadata flatbuffer; its kind and body length, or a plain Error saying what is out of range. */
export function verifyMessage(bytes: Uint8Array, limits: { maxBytes: number; maxRows: number }): VerifiedMessage {
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

/** Verifies a Schema table (in a message or the file footer): fields, types, children, metadata. */
export function verifySchema(fb: Flatbuffer, schema: number): void {
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
