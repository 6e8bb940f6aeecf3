/**
 * The binary messages replicas exchange through Redis (gradients, weights, state snapshots): a
 * fixed 64-byte header, then float32 values, little-endian.
 *
 *   0  magic 'RXGW'        4  version u16, kind u16     8  round f64      16 rows f64
 *  24  fingerprint (8 bytes: the first 8 bytes of the model fingerprint's sha256)
 *  32  replica id (24 bytes, UTF-8, zero padded)       56  payload bytes u32   60  payload CRC-32 u32
 *
 * Decoding checks every field against what the reader expects (kind, round, replica, fingerprint,
 * length, checksum) and throws a {@link WireError} naming the first that differs, so a corrupt or
 * truncated message fails its round before any value reaches the weights.
 */
import { crc32 } from 'node:zlib';

export const WIRE_MAGIC = 0x57475852; // 'RXGW' read little-endian
export const WIRE_VERSION = 1;
export const WIRE_HEADER_BYTES = 64;
const REPLICA_BYTES = 24;

/** What a message carries. */
export type WireKind = 'gradients' | 'weights' | 'state';
const KINDS: readonly WireKind[] = ['gradients', 'weights', 'state'];

/** A message that is not what the round expects: corrupt, truncated, from another model or round. Names the field. */
export class WireError extends Error {
  override name = 'WireError';
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

/** The header fields of one message. */
export interface WireHeader {
  kind: WireKind;
  round: number;
  /** Rows the values were computed from (the weight of a gradient in the mean). */
  rows: number;
  /** 8 bytes identifying the model (see `fingerprintDigest`). */
  fingerprint: Uint8Array;
  replica: string;
}

/**
 * Encodes a header and float32 values (or raw bytes) into one message.
 *
 * Usage: `const bytes = encodeMessage({ kind: 'gradients', round: 3, rows: 64, fingerprint, replica: 'r1' }, values);`
 */
export function encodeMessage(header: WireHeader, payload: Float32Array | Uint8Array): Buffer {
  const replica = Buffer.from(header.replica, 'utf8');
  if (replica.length > REPLICA_BYTES) throw new RangeError(`wire: replica id '${header.replica}' is longer than ${REPLICA_BYTES} bytes`);
  if (header.fingerprint.length !== 8) throw new RangeError('wire: the fingerprint digest must be 8 bytes');
  const body = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = Buffer.alloc(WIRE_HEADER_BYTES + body.length);
  out.writeUInt32LE(WIRE_MAGIC, 0);
  out.writeUInt16LE(WIRE_VERSION, 4);
  out.writeUInt16LE(KINDS.indexOf(header.kind), 6);
  out.writeDoubleLE(header.round, 8);
  out.writeDoubleLE(header.rows, 16);
  out.set(header.fingerprint, 24);
  out.set(replica, 32);
  out.writeUInt32LE(body.length, 56);
  out.set(body, WIRE_HEADER_BYTES);
  out.writeUInt32LE(crc32(body), 60);
  return out;
}

/** What a reader expects of a message; `replica` may be omitted (any sender). */
export interface WireExpectation {
  kind: WireKind;
  round: number;
  fingerprint: Uint8Array;
  replica?: string;
  /** Payload bytes expected (the model's parameter bytes), if known. */
  bytes?: number;
}

/** A decoded, verified message; `payload` is a view into the message's bytes. */
export interface WireMessage extends WireHeader {
  payload: Uint8Array;
}

/**
 * Decodes and verifies one message; throws a {@link WireError} naming the first bad field. `where`
 * prefixes the error (e.g. `round 7, replica r2`).
 *
 * Usage: `const { payload, rows } = decodeMessage(bytes, { kind: 'gradients', round, fingerprint }, 'round 7');`
 */
export function decodeMessage(bytes: Uint8Array, expect: WireExpectation, where: string): WireMessage {
  const fail = (field: string, message: string): never => {
    throw new WireError(field, `${where}: ${message}`);
  };
  if (bytes.length < WIRE_HEADER_BYTES) fail('length', `message truncated: ${bytes.length} bytes, less than the ${WIRE_HEADER_BYTES}-byte header`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.readUInt32LE(0) !== WIRE_MAGIC) fail('magic', `not an rxgrad message (magic 0x${view.readUInt32LE(0).toString(16)})`);
  if (view.readUInt16LE(4) !== WIRE_VERSION) fail('version', `wire version ${view.readUInt16LE(4)}, this build speaks ${WIRE_VERSION}`);
  const kind = KINDS[view.readUInt16LE(6)];
  if (kind !== expect.kind) fail('kind', `expected a ${expect.kind} message, got ${kind ?? `kind ${view.readUInt16LE(6)}`}`);
  const round = view.readDoubleLE(8);
  if (round !== expect.round) fail('round', `message of round ${round}, expected round ${expect.round}`);
  const rows = view.readDoubleLE(16);
  if (!(Number.isInteger(rows) && rows >= 0)) fail('rows', `rows ${rows} is not a non-negative integer`);
  const fingerprint = view.subarray(24, 32);
  if (!fingerprint.equals(expect.fingerprint)) fail('fingerprint', `message from a different model (fingerprint ${fingerprint.toString('hex')}, this group's is ${Buffer.from(expect.fingerprint).toString('hex')})`);
  const replicaBytes = view.subarray(32, 56);
  const end = replicaBytes.indexOf(0);
  const replica = replicaBytes.subarray(0, end < 0 ? REPLICA_BYTES : end).toString('utf8');
  if (expect.replica !== undefined && replica !== expect.replica) fail('replica', `message from replica '${replica}', expected '${expect.replica}'`);
  const length = view.readUInt32LE(56);
  if (view.length - WIRE_HEADER_BYTES !== length) fail('length', `message truncated or padded: header says ${length} payload bytes, ${view.length - WIRE_HEADER_BYTES} arrived`);
  if (expect.bytes !== undefined && length !== expect.bytes) fail('length', `payload of ${length} bytes, the model's parameters take ${expect.bytes}`);
  const payload = view.subarray(WIRE_HEADER_BYTES);
  if (crc32(payload) !== view.readUInt32LE(60)) fail('checksum', `payload checksum mismatch (corrupted in transit or in store)`);
  return { kind: kind!, round, rows, fingerprint: new Uint8Array(fingerprint), replica, payload };
}

/** The payload as float32 values (copied when not 4-byte aligned). Usage: `const values = payloadFloats(message);` */
export function payloadFloats(message: WireMessage): Float32Array {
  const p = message.payload;
  if (p.byteLength % 4 !== 0) throw new WireError('length', `payload of ${p.byteLength} bytes is not whole float32 values`);
  return p.byteOffset % 4 === 0 ? new Float32Array(p.buffer, p.byteOffset, p.byteLength / 4) : new Float32Array(new Uint8Array(p).buffer); // (Buffer#slice would be a view)
}
