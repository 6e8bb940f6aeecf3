/**
 * How split kernels are cut into chunks: contiguous ranges of rows, columns, images or elements, aligned
 * to the kernels' register tiles and cache lines.
 */

/** Floats per split unit of the elementwise kernels: 64-byte cache lines, no line shared by two threads. */
export const LINE_FLOATS = 16;
/** Rows per register tile: split boundaries are multiples of it so every tile is computed alike. */
export const MR = 4;
/** Columns per register tile. */
export const NR = 8;

/**
 * Chunks of a split GEMM: contiguous ranges of rows (multiples of `rowTile`) or of columns (multiples of 8)
 * of C, along the longer side (so the operand packed or re-read per chunk is the smaller one). Every C
 * element is computed by the same instruction sequence whatever the range it falls in, so any chunking
 * equals one thread bitwise. `chunks` is the most wanted; each chunk keeps at least one tile.
 */
export function partitionGemm(m: number, n: number, chunks: number, rowTile = MR): { rows: boolean; ranges: [number, number][] } {
  const rows = m >= 2 * MR && (m >= n || n < 2 * NR);
  const len = rows ? m : n;
  const tile = rows ? rowTile : NR;
  const chunk = Math.max(tile, Math.ceil(len / Math.max(1, chunks) / tile) * tile);
  return { rows, ranges: ranges(len, chunk) };
}

/**
 * Rows of a job whose chunks are long and few (a whole-sequence recurrent kernel: every step of its rows), for
 * `threads` threads claiming them in order: guided sizes, each about the remaining rows over twice the threads,
 * in multiples of `tile` (the last takes the rest), so the chunks claimed last are small and the threads finish
 * together. Equal chunks of two tiles cut the LSTM bench's 64 rows into 12, 12, 12, 12, 12, 4: one thread ran 36
 * rows and the other 28, at most 1.78× (measured 1.65× forward); these are 18, 12, 12, 6, 6, 6, 4 (34 and 30).
 *
 * Usage: `partitionGuided(64, 2, 6) // [[0, 18], [18, 30], …, [60, 64]]`
 */
export function partitionGuided(len: number, threads: number, tile: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0; s < len;) {
    const size = Math.max(tile, Math.ceil((len - s) / (2 * Math.max(1, threads)) / tile) * tile);
    const e = Math.min(len, s + size);
    out.push([s, e]);
    s = e;
  }
  return out.length ? out : [[0, len]];
}

/** Contiguous [start, end) ranges of `chunk` elements covering [0, len). */
function ranges(len: number, chunk: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0; s < len; s += chunk) out.push([s, Math.min(len, s + chunk)]);
  return out.length ? out : [[0, len]];
}

/** `chunks` contiguous image ranges of ⌈batch / chunks⌉ images (fewer when the batch is small). */
export function partitionBatch(batch: number, chunks: number): [number, number][] {
  return ranges(batch, Math.ceil(batch / Math.max(1, Math.min(chunks, batch))));
}

/**
 * Element ranges of an elementwise split: about `chunks` contiguous ranges in multiples of 16 floats (64-byte
 * lines, no line shared by two threads). Elementwise results do not depend on the split.
 */
export function partitionElements(n: number, chunks: number): [number, number][] {
  return ranges(n, Math.max(LINE_FLOATS, Math.ceil(n / Math.max(1, chunks) / LINE_FLOATS) * LINE_FLOATS));
}

