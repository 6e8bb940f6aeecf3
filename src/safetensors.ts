/**
 * safetensors: the tensor file format of the Hugging Face / PyTorch ecosystem.
 *
 * Layout: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { key: string } }`, then the
 * raw little-endian tensor bytes; offsets are relative to the start of that data section. We write the
 * header padded with spaces so the data starts 8-byte aligned (the spec allows trailing whitespace),
 * and we read strictly: a file that is truncated, overlaps, leaves gaps or lies about a shape is refused
 * with an error naming the file and the field, never a crash or a silently wrong tensor.
 */

/** The element types rxgrad reads and writes (every tensor in the engine is 4-byte). */
export type SafetensorsDType = 'F32' | 'I32';

/** One tensor of a safetensors file. `data.length` must equal the product of `shape`. */
export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** What {@link decodeSafetensors} returns: tensors in file order (by offset), and the metadata. */
export interface DecodedSafetensors {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** A malformed or inconsistent safetensors file (or tensor map, when encoding). */
export class SafetensorsError extends Error {
  constructor(
    /** The file (or label) given to the decoder. */
    readonly file: string,
    /** The offending field, e.g. `header length` or `dense_1/kernel.data_offsets`. */
    readonly field: string,
    message: string,
  ) {
    super(`${file}: safetensors ${field}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** Headers larger than this are refused before parsing (the reference implementation's limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;
const ALIGNMENT = 8;
const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = { F32: 4, I32: 4 };
/** Valid safetensors dtypes that rxgrad does not load; named in the error so the user knows it is not corruption. */
const OTHER_DTYPES = new Set(['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'U32', 'F64', 'I64', 'U64']);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const product = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * Serialises tensors (in the map's order) and optional string metadata to safetensors bytes.
 *
 * Usage: `const bytes = encodeSafetensors(new Map([['w', { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]]), { step: '10' });`
 */
export function encodeSafetensors(tensors: ReadonlyMap<string, SafetensorsTensor>, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const label = 'encodeSafetensors';
  // Entries + Object.fromEntries, not `header[name] = …`: a tensor or key named `__proto__` must stay a plain key.
  const header: [string, unknown][] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(label, `__metadata__.${k}`, `metadata values must be strings, got ${typeof v}`);
    }
    header.push(['__metadata__', Object.fromEntries(Object.entries(metadata))]);
  }
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '' || name === '__metadata__') throw new SafetensorsError(label, `tensor name '${name}'`, 'is reserved or empty');
    if (!(t.dtype in BYTES_PER_ELEMENT)) throw new SafetensorsError(label, `${name}.dtype`, `unsupported dtype '${String(t.dtype)}' (F32 or I32)`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(label, `${name}.shape`, `dimensions must be non-negative integers, got [${t.shape.join(', ')}]`);
    const expectedArray = t.dtype === 'F32' ? Float32Array : Int32Array;
    if (!(t.data instanceof expectedArray)) throw new SafetensorsError(label, `${name}.data`, `dtype ${t.dtype} needs a ${expectedArray.name}`);
    if (t.data.length !== product(t.shape)) throw new SafetensorsError(label, `${name}.data`, `${t.data.length} elements for shape [${t.shape.join(', ')}] (${product(t.shape)})`);
    const bytes = t.data.length * BYTES_PER_ELEMENT[t.dtype];
    header.push([name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] }]);
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(Object.fromEntries(header)));
  // Pad with spaces (valid trailing JSON whitespace) so the data section starts 8-byte aligned.
  const headerLength = Math.ceil(json.length / ALIGNMENT) * ALIGNMENT;
  const out = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const t of tensors.values()) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (LITTLE_ENDIAN) out.set(bytes, at);
    else for (let i = 0; i < t.data.length; i++) {
      if (t.dtype === 'F32') view.setFloat32(at + 4 * i, t.data[i]!, true);
      else view.setInt32(at + 4 * i, t.data[i]!, true);
    }
    at += bytes.length;
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses and validates safetensors bytes: header length within the buffer and {@link MAX_HEADER_BYTES},
 * UTF-8 JSON object header, string metadata, and for every tensor a supported dtype, a shape of
 * non-negative integers and `[begin, end]` offsets matching the shape, the offsets contiguous from 0 to
 * the end of the buffer (so no gap, no overlap, no trailing bytes). Tensor data is copied (aligned, and
 * independent of `bytes`). Errors are {@link SafetensorsError}s naming `file` and the field.
 *
 * Usage: `const { tensors, metadata } = decodeSafetensors(await readFile(path), path);`
 */
export function decodeSafetensors(bytes: Uint8Array, file = '<bytes>'): DecodedSafetensors {
  const fail = (field: string, message: string): never => {
    throw new SafetensorsError(file, field, message);
  };
  if (bytes.length < 8) fail('header length', `the file has ${bytes.length} bytes, fewer than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const declared = view.getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) fail('header length', `${declared} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLength = Number(declared);
  if (headerLength < 2) fail('header length', `${headerLength} bytes cannot hold a JSON object`);
  if (8 + headerLength > bytes.length) fail('header length', `${headerLength} bytes, but only ${bytes.length - 8} follow the length (truncated file?)`);

  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch {
    fail('header', 'is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail('header', `must start with '{', got ${JSON.stringify(text.slice(0, 16))}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail('header', `is not valid JSON (${(error as Error).message})`);
  }
  if (!isRecord(parsed)) return fail('header', 'must be a JSON object');

  const metadataEntries: [string, string][] = [];
  const rawMetadata = parsed['__metadata__'];
  if (rawMetadata !== undefined) {
    if (!isRecord(rawMetadata)) fail('__metadata__', 'must be an object of strings');
    for (const [k, v] of Object.entries(rawMetadata as Record<string, unknown>)) {
      if (typeof v !== 'string') fail(`__metadata__.${k}`, `must be a string, got ${JSON.stringify(v)}`);
      metadataEntries.push([k, v as string]);
    }
  }
  const metadata: Record<string, string> = Object.fromEntries(metadataEntries);

  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  interface Entry { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(parsed)) {
    if (name === '__metadata__') continue;
    if (name === '') fail('tensor name', 'is empty');
    if (!isRecord(raw)) fail(name, 'must be an object { dtype, shape, data_offsets }');
    const entry = raw as Record<string, unknown>;
    for (const key of Object.keys(entry)) {
      if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') fail(`${name}.${key}`, 'is not a safetensors field');
    }
    const dtype = entry['dtype'];
    if (typeof dtype !== 'string') return fail(`${name}.dtype`, `must be a string, got ${JSON.stringify(dtype)}`);
    if (!(dtype in BYTES_PER_ELEMENT)) {
      fail(`${name}.dtype`, OTHER_DTYPES.has(dtype) ? `'${dtype}' is valid safetensors but rxgrad loads only F32 and I32` : `unknown dtype '${dtype}'`);
    }
    const shape = entry['shape'];
    if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && (d as number) >= 0)) {
      return fail(`${name}.shape`, `must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    const offsets = entry['data_offsets'];
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o): o is number => Number.isSafeInteger(o) && (o as number) >= 0)) {
      return fail(`${name}.data_offsets`, `must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`${name}.data_offsets`, `end ${end} is before begin ${begin}`);
    if (end > dataLength) fail(`${name}.data_offsets`, `end ${end} is past the data section (${dataLength} bytes; truncated file?)`);
    const elements = product(shape);
    const width = BYTES_PER_ELEMENT[dtype as SafetensorsDType];
    if (!Number.isSafeInteger(elements) || end - begin !== elements * width) {
      fail(`${name}.data_offsets`, `[${begin}, ${end}] spans ${end - begin} bytes, but ${dtype} shape [${shape.join(', ')}] needs ${elements * width}`);
    }
    entries.push({ name, dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end });
  }

  // Contiguity from 0 to the end rules out gaps, overlaps and trailing garbage in one pass.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      fail(`${e.name}.data_offsets`, e.begin < expected ? `[${e.begin}, ${e.end}] overlaps the previous tensor (which ends at ${expected})` : `[${e.begin}, ${e.end}] leaves a gap after byte ${expected}`);
    }
    expected = e.end;
  }
  if (expected !== dataLength) fail('data', `${dataLength} data bytes but the tensors cover ${expected}`);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of entries) {
    const n = (e.end - e.begin) / 4;
    const data = e.dtype === 'F32' ? new Float32Array(n) : new Int32Array(n);
    if (LITTLE_ENDIAN) new Uint8Array(data.buffer).set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    else for (let i = 0; i < n; i++) {
      data[i] = e.dtype === 'F32' ? view.getFloat32(dataStart + e.begin + 4 * i, true) : view.getInt32(dataStart + e.begin + 4 * i, true);
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}
