/**
 * MovieLens ratings files: `u.data` (ML-100K: `user \t item \t rating \t timestamp`, no header) and
 * `ratings.csv` (ML-latest, ML-20M/25M: header `userId,movieId,rating,timestamp`). Ids are kept as
 * in the file (MovieLens counts from 1); ratings come out in time order (stable for equal times),
 * which is the order an online learner would have seen them.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Interactions } from './recommend.ts';

/** MovieLens ratings in time order. */
export interface MovieLensRatings extends Interactions {
  timestamps: Float64Array;
  /** Largest user and item id + 1 (table sizes). */
  maxUsers: number;
  maxItems: number;
}

/** The two layouts. */
export type MovieLensFormat = 'u.data' | 'ratings.csv';

/** Raised for a malformed line: names the file, line and field. */
export class MovieLensFormatError extends Error {
  override name = 'MovieLensFormatError';
}

/**
 * Parses the text of a MovieLens ratings file.
 *
 * Usage: `const data = parseMovieLens(text, 'u.data');`
 */
export function parseMovieLens(text: string, format: MovieLensFormat, source: string = format): MovieLensRatings {
  const lines = text.split(/\r?\n/);
  const separator = format === 'u.data' ? '\t' : ',';
  const fields = ['user', 'item', 'rating', 'timestamp'] as const;
  let first = 0;
  if (format === 'ratings.csv') {
    const header = lines[0]?.trim().toLowerCase() ?? '';
    if (!header.startsWith('userid,movieid,rating')) throw new MovieLensFormatError(`${source} line 1: expected the header 'userId,movieId,rating,timestamp', got '${lines[0]?.slice(0, 80) ?? ''}'`);
    first = 1;
  }
  const rows: [number, number, number, number][] = [];
  for (let l = first; l < lines.length; l++) {
    const line = lines[l]!;
    if (line.trim() === '') continue;
    const parts = line.split(separator);
    if (parts.length < 3) throw new MovieLensFormatError(`${source} line ${l + 1}: expected ${format === 'u.data' ? 'tab' : 'comma'}-separated user, item, rating, timestamp; got '${line.slice(0, 80)}'`);
    const values = fields.map((field, i) => {
      if (i === 3 && parts[3] === undefined) return 0;
      const v = Number(parts[i]!.trim());
      if (parts[i]!.trim() === '' || !Number.isFinite(v)) throw new MovieLensFormatError(`${source} line ${l + 1}: field '${field}' is '${parts[i]}', not a number`);
      if (i < 2 && (!Number.isInteger(v) || v < 0 || v > 0x7fffffff)) throw new MovieLensFormatError(`${source} line ${l + 1}: field '${field}' is ${v}, not a non-negative integer id`);
      return v;
    }) as [number, number, number, number];
    rows.push(values);
  }
  const order = rows.map((_, i) => i).sort((a, b) => rows[a]![3] - rows[b]![3] || a - b);
  const n = rows.length;
  const out: MovieLensRatings = {
    users: new Int32Array(n), items: new Int32Array(n), ratings: new Float32Array(n), timestamps: new Float64Array(n), maxUsers: 0, maxItems: 0,
  };
  order.forEach((src, dst) => {
    const [u, i, r, t] = rows[src]!;
    out.users[dst] = u;
    out.items[dst] = i;
    out.ratings[dst] = r;
    out.timestamps[dst] = t;
    out.maxUsers = Math.max(out.maxUsers, u + 1);
    out.maxItems = Math.max(out.maxItems, i + 1);
  });
  return out;
}

/**
 * Reads a MovieLens ratings file; the format follows from the name (`u.data`, `*.data` → tab
 * separated; `*.csv` → ratings.csv) unless given.
 *
 * Usage: `const data = await readMovieLens('ml-100k/u.data');`
 */
export async function readMovieLens(path: string, format?: MovieLensFormat): Promise<MovieLensRatings> {
  const chosen = format ?? (path.endsWith('.csv') ? 'ratings.csv' : 'u.data');
  return parseMovieLens(await readFile(path, 'utf8'), chosen, basename(path));
}
