/**
 * Bounded, downsampled history of one metric series, so a days-long run keeps a small page and
 * a small server.
 *
 * The last `recent` points are kept as they came. Older points fall into buckets of `span`
 * consecutive points, each kept as (mean x, mean y, min y, max y); when `buckets` buckets exist,
 * neighbours merge pairwise and `span` doubles. Memory is fixed at construction (typed arrays),
 * whatever the number of points pushed; each push is O(1) amortised.
 */

/** Sizes of a {@link SeriesHistory}. */
export interface HistoryLimits {
  /** Points kept at full resolution (default 1000). */
  recent?: number;
  /** Buckets of older points (an even number, default 500). */
  buckets?: number;
}

/** A series as sent to the page: buckets first (oldest), then the recent points; null for non-finite values. */
export interface SeriesData {
  /** Points pushed so far (the client uses it to skip duplicates in deltas). */
  total: number;
  /** Points per bucket. */
  span: number;
  bx: number[];
  by: (number | null)[];
  blo: (number | null)[];
  bhi: (number | null)[];
  x: number[];
  y: (number | null)[];
}

const finiteOrNull = (v: number): number | null => (Number.isFinite(v) ? v : null);

/**
 * One series' bounded history (see the module comment).
 *
 * Usage: `const h = new SeriesHistory({ recent: 1000, buckets: 500 }); h.push(step, loss); h.toJSON();`
 */
export class SeriesHistory {
  readonly recent: number;
  readonly bucketCapacity: number;
  private readonly rx: Float64Array;
  private readonly ry: Float64Array;
  private head = 0;
  private length = 0;
  private readonly bx: Float64Array;
  private readonly bmean: Float64Array;
  private readonly bmin: Float64Array;
  private readonly bmax: Float64Array;
  /** Finite values in each bucket (the weight of its mean when buckets merge). */
  private readonly bfinite: Float64Array;
  private bucketCount = 0;
  private span = 1;
  // The bucket being filled: points evicted from the recent ring accumulate here until `span` of them.
  private openPoints = 0;
  private openX = 0;
  private openSum = 0;
  private openFinite = 0;
  private openMin = Infinity;
  private openMax = -Infinity;
  /** Points pushed so far. */
  total = 0;
  /** The latest value pushed (NaN before any). */
  last = NaN;

  constructor(limits: HistoryLimits = {}) {
    this.recent = limits.recent ?? 1000;
    this.bucketCapacity = limits.buckets ?? 500;
    if (!Number.isInteger(this.recent) || this.recent < 1) throw new RangeError(`SeriesHistory: recent must be a positive integer, got ${this.recent}`);
    if (!Number.isInteger(this.bucketCapacity) || this.bucketCapacity < 2 || this.bucketCapacity % 2 !== 0) {
      throw new RangeError(`SeriesHistory: buckets must be an even integer ≥ 2, got ${this.bucketCapacity}`);
    }
    this.rx = new Float64Array(this.recent);
    this.ry = new Float64Array(this.recent);
    this.bx = new Float64Array(this.bucketCapacity);
    this.bmean = new Float64Array(this.bucketCapacity);
    this.bmin = new Float64Array(this.bucketCapacity);
    this.bmax = new Float64Array(this.bucketCapacity);
    this.bfinite = new Float64Array(this.bucketCapacity);
  }

  /** Bytes held by this series (fixed at construction). */
  get bytes(): number {
    return (this.rx.byteLength + this.ry.byteLength) + 5 * this.bx.byteLength;
  }

  /** Appends a point; x should not decrease (steps, seconds). */
  push(x: number, y: number): void {
    this.total++;
    this.last = y;
    if (this.length === this.recent) {
      this.evict(this.rx[this.head]!, this.ry[this.head]!);
      this.rx[this.head] = x;
      this.ry[this.head] = y;
      this.head = (this.head + 1) % this.recent;
      return;
    }
    const at = (this.head + this.length) % this.recent;
    this.rx[at] = x;
    this.ry[at] = y;
    this.length++;
  }

  private evict(x: number, y: number): void {
    this.openPoints++;
    this.openX += x;
    if (Number.isFinite(y)) {
      this.openFinite++;
      this.openSum += y;
      if (y < this.openMin) this.openMin = y;
      if (y > this.openMax) this.openMax = y;
    }
    if (this.openPoints < this.span) return;
    const i = this.bucketCount++;
    this.bx[i] = this.openX / this.openPoints;
    this.bfinite[i] = this.openFinite;
    this.bmean[i] = this.openFinite > 0 ? this.openSum / this.openFinite : NaN;
    this.bmin[i] = this.openFinite > 0 ? this.openMin : NaN;
    this.bmax[i] = this.openFinite > 0 ? this.openMax : NaN;
    this.openPoints = this.openFinite = this.openX = this.openSum = 0;
    this.openMin = Infinity;
    this.openMax = -Infinity;
    if (this.bucketCount === this.bucketCapacity) this.mergePairs();
  }

  /** Halves the buckets: each pair becomes one (weighted mean, min of mins, max of maxes); span doubles. */
  private mergePairs(): void {
    const half = this.bucketCount / 2;
    for (let i = 0; i < half; i++) {
      const a = 2 * i;
      const b = a + 1;
      const fa = this.bfinite[a]!;
      const fb = this.bfinite[b]!;
      this.bx[i] = (this.bx[a]! + this.bx[b]!) / 2;
      this.bfinite[i] = fa + fb;
      this.bmean[i] = fa + fb > 0 ? ((fa > 0 ? this.bmean[a]! * fa : 0) + (fb > 0 ? this.bmean[b]! * fb : 0)) / (fa + fb) : NaN;
      this.bmin[i] = fa === 0 ? this.bmin[b]! : fb === 0 ? this.bmin[a]! : Math.min(this.bmin[a]!, this.bmin[b]!);
      this.bmax[i] = fa === 0 ? this.bmax[b]! : fb === 0 ? this.bmax[a]! : Math.max(this.bmax[a]!, this.bmax[b]!);
    }
    this.bucketCount = half;
    this.span *= 2;
  }

  /** The whole series for a page (buckets, then recent points). */
  toJSON(): SeriesData {
    const x: number[] = new Array(this.length);
    const y: (number | null)[] = new Array(this.length);
    for (let i = 0; i < this.length; i++) {
      const at = (this.head + i) % this.recent;
      x[i] = this.rx[at]!;
      y[i] = finiteOrNull(this.ry[at]!);
    }
    const n = this.bucketCount;
    return {
      total: this.total,
      span: this.span,
      bx: Array.from(this.bx.subarray(0, n)),
      by: Array.from(this.bmean.subarray(0, n), finiteOrNull),
      blo: Array.from(this.bmin.subarray(0, n), finiteOrNull),
      bhi: Array.from(this.bmax.subarray(0, n), finiteOrNull),
      x,
      y,
    };
  }
}

/** A bounded list that keeps an even spread over the whole run: when full, every other entry is dropped. */
export class ThinningList<T> {
  private items: T[] = [];
  /** Entries offered so far. */
  offered = 0;
  private stride = 1;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 2) throw new RangeError(`ThinningList: capacity must be an integer ≥ 2, got ${capacity}`);
  }

  /** Offers an entry; it is kept if it falls on the current stride (the newest is always kept as `latest`). */
  push(item: T): boolean {
    const keep = this.offered % this.stride === 0;
    this.offered++;
    if (!keep) return false;
    this.items.push(item);
    if (this.items.length > this.capacity) {
      this.items = this.items.filter((_, i) => i % 2 === 0);
      this.stride *= 2;
    }
    return true;
  }

  get values(): readonly T[] {
    return this.items;
  }
}
