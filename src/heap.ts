/**
 * The shared heap: one SharedArrayBuffer-backed `WebAssembly.Memory` that holds every tensor.
 *
 * Layout:
 * - `[0, CONTROL_BYTES)` is the control region: worker-pool dispatch slots used with Atomics.
 * - Above it, a persistent region (parameters, optimizer state) managed by a first-fit free list,
 *   and arenas: per-batch bump allocators whose blocks come from the same free list and are kept
 *   across `reset()`, so a stream of equal-sized batches allocates nothing after warm-up.
 *
 * All pointers are byte offsets into the memory, 64-byte aligned (cache line, SIMD friendly).
 */

export const PAGE_BYTES = 65536;
/** Bytes reserved at the bottom of the memory for the worker pool's Atomics slots. */
export const CONTROL_BYTES = PAGE_BYTES;
const ALIGN = 64;
/** Maximum pages the memory (and the wasm module) declare: 4 GiB. */
export const MAX_PAGES = 65536;

const alignUp = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

interface FreeBlock {
  ptr: number;
  bytes: number;
}

/** Options for {@link SharedHeap}. */
export interface HeapOptions {
  /** Initial size in bytes (rounded up to 64 KiB pages). Default 16 MiB. */
  initialBytes?: number;
  /** Maximum size in bytes. Default 4 GiB. */
  maximumBytes?: number;
}

/**
 * Owner of the shared memory and its allocator.
 *
 * Usage: `const heap = new SharedHeap(); const p = heap.alloc(1024); heap.f32[p >> 2] = 1; heap.free(p);`
 */
export class SharedHeap {
  readonly memory: WebAssembly.Memory;
  /** Float32 view of the whole memory; refreshed when the memory grows. Index with `ptr >> 2`. */
  f32!: Float32Array;
  /** Int32 view of the whole memory; refreshed when the memory grows. Index with `ptr >> 2`. */
  i32!: Int32Array;
  /** Uint8 view of the whole memory; refreshed when the memory grows. */
  u8!: Uint8Array;
  private free_: FreeBlock[] = [];
  private readonly sizes = new Map<number, number>();
  private readonly maxPages: number;
  /** Bytes handed out and not yet freed. */
  allocatedBytes = 0;

  constructor(options: HeapOptions = {}) {
    const initialPages = Math.max(2, Math.ceil((options.initialBytes ?? 16 << 20) / PAGE_BYTES));
    this.maxPages = Math.min(MAX_PAGES, Math.ceil((options.maximumBytes ?? MAX_PAGES * PAGE_BYTES) / PAGE_BYTES));
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: this.maxPages, shared: true });
    this.refreshViews();
    this.free_.push({ ptr: CONTROL_BYTES, bytes: initialPages * PAGE_BYTES - CONTROL_BYTES });
  }

  /** Current size of the memory in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  private refreshViews(): void {
    const buffer = this.memory.buffer;
    this.f32 = new Float32Array(buffer);
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
  }

  /** Allocates `bytes` (64-byte aligned) and returns the pointer. Grows the memory when needed. */
  alloc(bytes: number): number {
    if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`SharedHeap.alloc: invalid size ${bytes}`);
    const size = alignUp(Math.max(bytes, 1));
    for (let i = 0; i < this.free_.length; i++) {
      const block = this.free_[i]!;
      if (block.bytes >= size) {
        const ptr = block.ptr;
        if (block.bytes === size) this.free_.splice(i, 1);
        else {
          block.ptr += size;
          block.bytes -= size;
        }
        this.sizes.set(ptr, size);
        this.allocatedBytes += size;
        return ptr;
      }
    }
    this.grow(size);
    return this.alloc(bytes);
  }

  /** Returns a block from {@link alloc} to the free list. */
  free(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) throw new Error(`SharedHeap.free: ${ptr} is not an allocated block`);
    this.sizes.delete(ptr);
    this.allocatedBytes -= size;
    this.insertFree(ptr, size);
  }

  private insertFree(ptr: number, bytes: number): void {
    const list = this.free_;
    let i = 0;
    while (i < list.length && list[i]!.ptr < ptr) i++;
    list.splice(i, 0, { ptr, bytes });
    // Coalesce with the next and the previous block.
    const next = list[i + 1];
    if (next && ptr + bytes === next.ptr) {
      list[i]!.bytes += next.bytes;
      list.splice(i + 1, 1);
    }
    const prev = list[i - 1];
    if (prev && prev.ptr + prev.bytes === ptr) {
      prev.bytes += list[i]!.bytes;
      list.splice(i, 1);
    }
  }

  private grow(minBytes: number): void {
    const oldBytes = this.byteLength;
    const current = oldBytes / PAGE_BYTES;
    // Grow geometrically so that a growing workload does not grow page by page.
    const wanted = Math.max(Math.ceil(minBytes / PAGE_BYTES) + 1, Math.ceil(current / 2));
    const pages = Math.min(wanted, this.maxPages - current);
    if (pages <= 0 || current + pages < current + Math.ceil(minBytes / PAGE_BYTES)) {
      throw new RangeError(
        `SharedHeap: out of memory: need ${minBytes} more bytes, heap is ${oldBytes} of at most ${this.maxPages * PAGE_BYTES}`,
      );
    }
    this.memory.grow(pages);
    this.refreshViews();
    // Touch the new pages once so kernels never run on never-written pages (slow first touch).
    this.u8.fill(0, oldBytes);
    this.insertFree(oldBytes, pages * PAGE_BYTES);
  }

  /** Creates an arena that allocates from this heap. */
  arena(): Arena {
    return new Arena(this);
  }
}

/**
 * A bump allocator for one batch in flight. `reset()` reuses its blocks, so equal-sized batches
 * allocate nothing new after the first; `dispose()` gives the blocks back to the heap.
 *
 * Usage: `const a = heap.arena(); const p = a.alloc(256); a.reset();`
 */
export class Arena {
  private readonly blocks: { ptr: number; bytes: number }[] = [];
  private block = 0;
  private offset = 0;
  constructor(readonly heap: SharedHeap, private readonly blockBytes = 1 << 20) {}

  /** Allocates `bytes` (64-byte aligned) from this arena. Contents are not cleared. */
  alloc(bytes: number): number {
    const size = alignUp(Math.max(bytes, 1));
    while (this.block < this.blocks.length) {
      const b = this.blocks[this.block]!;
      if (this.offset + size <= b.bytes) {
        const ptr = b.ptr + this.offset;
        this.offset += size;
        return ptr;
      }
      this.block++;
      this.offset = 0;
    }
    const blockBytes = Math.max(this.blockBytes, size);
    this.blocks.push({ ptr: this.heap.alloc(blockBytes), bytes: blockBytes });
    this.offset = size;
    return this.blocks[this.block]!.ptr;
  }

  /** Forgets every allocation, keeping the blocks for reuse. */
  reset(): void {
    this.block = 0;
    this.offset = 0;
  }

  /** Bytes held from the heap. */
  get reservedBytes(): number {
    return this.blocks.reduce((sum, b) => sum + b.bytes, 0);
  }

  /** Returns every block to the heap. The arena may be used again afterwards. */
  dispose(): void {
    for (const b of this.blocks) this.heap.free(b.ptr);
    this.blocks.length = 0;
    this.reset();
  }
}
