// SGEMM over raw pointers: C = alpha · op(A) · op(B) + beta · C (contract: workers/kernel-api.ts).
//
// Three paths (workers/generated/micro.ts has the register tiles):
// - packed (BLIS style, the default for wide or transposed B): op(B) packed KC×NC into NR = 8 column
//   panels, op(A) packed MC×KC into PMR-row panels, both in this thread's workspace (JS-provided, see
//   setWorkspace); PMR×8 micro-kernel over two contiguous streams (6×8 FMA in the relaxed build, 5×8 in
//   the SIMD128 build). Wins where B rows are long (ldb > 512: 4 KiB strides thrash cache sets and the
//   TLB in the direct path) and for transposed B (KERNELS.md §2).
// - direct: op(B) = B read in place (row stride ldb), A through strides, 4×8 tiles. Best for the
//   MNIST-scale shapes (ldb ≤ 512), where it needs no packing at all.
// - panel: B copied KC×8 at a time into a zero-padded panel in this thread's scratch, 4×8 tiles. The
//   fallback when no workspace is set, and the direct path's last n % 8 columns (through a 4×8 temp tile).
// The path is chosen once per product (gemmChoosePath; the JS split passes it to every part through
// gemmWith), and every C element is computed by the same sequence of operations whatever its row and
// the row range (k blocked from 0 in fixed KC steps, the element's own dot product in p order, one
// epilogue per block), so a row split across threads is bitwise identical to the single-thread result.

import {
  mk1x8N, mk2x8N, mk3x8N, mk4x8N, mk1x8T, mk2x8T, mk3x8T, mk4x8T, mkp5x8, mkp6x8,
} from '../generated/micro';

/** Rows of k per B panel: the panel is KC × 8 floats = 4 KiB. */
const KC: i32 = 128;
const PANEL_BYTES: usize = <usize>KC * 32;
/** Scratch per thread: panel + one 4×8 temp tile. */
const SCRATCH_BYTES: usize = PANEL_BYTES + 128;
/** Widest B (row stride, floats) read in place by the direct path. */
const DIRECT_MAX_LDB: i32 = 512;

/** Rows of the packed register tile: 6×8 with FMA (15 xmm), 5×8 without (14 xmm incl. the mul temp). */
const PMR: i32 = ASC_FEATURE_RELAXED_SIMD ? 6 : 5;
/** k block of the packed path: a B micro-panel is PKC × 8 floats = 8 KiB (L1). */
const PKC: i32 = 256;
/** Rows of A packed per block: PMC × PKC floats = 96 KiB (6×8) / 80 KiB (5×8), in L2. */
const PMC: i32 = PMR * 16;
/** Columns of B packed per block: PKC × PNC floats = 1 MiB (L2/L3), reused by every row block. */
const PNC: i32 = 1024;
const PACK_A_BYTES: usize = <usize>(PMC * PKC) << 2;
const PACK_B_BYTES: usize = <usize>(PNC * PKC) << 2;
/** Workspace per thread: packed A block, packed B block, one PMR × 8 edge tile (rounded to 64 bytes). */
const WORKSPACE_BYTES: usize = PACK_A_BYTES + PACK_B_BYTES + 256;

// Per-instance (so per-thread) scratch pointer, set once by the JS side after instantiation.
let scratch: usize = 0;
// Per-instance packing workspace ({@link workspaceBytes}), 0 = none (the packed path is then off).
let workspace: usize = 0;
// 0 = choose by shape, 1 = never packed (direct / panel as before), 2 = packed whenever possible.
let gemmPath: i32 = 0;

/** Sets this instance's packing workspace ({@link workspaceBytes} bytes, owned by the JS side; 0 = none). */
export function setWorkspace(ptr: usize): void {
  workspace = ptr;
}

/**
 * This thread's workspace (0 = none). Other kernels borrow it as per-thread scratch between GEMM calls
 * (conv-winograd.ts): a kernel call runs to completion on its thread, so the two uses never overlap.
 */
export function threadWorkspace(): usize {
  return workspace;
}

/** Bytes of {@link threadWorkspace}. */
export const THREAD_WORKSPACE_BYTES: usize = WORKSPACE_BYTES;

/** Bytes of packing workspace each thread needs. */
export function workspaceBytes(): i32 {
  return <i32>WORKSPACE_BYTES;
}

/** Measurement / test hook: 0 = paths chosen by shape, 1 = never the packed path, 2 = packed whenever a workspace is set. */
export function setGemmPath(mode: i32): void {
  gemmPath = mode;
}

/** Sets this instance's scratch area ({@link scratchBytes} bytes, owned by the JS side). */
export function setScratch(ptr: usize): void {
  scratch = ptr;
}

/** Bytes of scratch each thread needs. */
export function scratchBytes(): i32 {
  return <i32>SCRATCH_BYTES;
}

/** Empty kernel, for measuring dispatch latency. */
export function nop(): void {}

function microDirect(mr: i32, aT: i32, a: usize, lda: usize, b: usize, ldb: usize, c: usize, ldc: usize, k: i32, alpha: f32, beta: f32): void {
  if (aT) {
    if (mr == 4) mk4x8T(a, lda, b, ldb, c, ldc, k, alpha, beta);
    else if (mr == 3) mk3x8T(a, lda, b, ldb, c, ldc, k, alpha, beta);
    else if (mr == 2) mk2x8T(a, lda, b, ldb, c, ldc, k, alpha, beta);
    else mk1x8T(a, lda, b, ldb, c, ldc, k, alpha, beta);
  } else {
    if (mr == 4) mk4x8N(a, lda, b, ldb, c, ldc, k, alpha, beta);
    else if (mr == 3) mk3x8N(a, lda, b, ldb, c, ldc, k, alpha, beta);
    else if (mr == 2) mk2x8N(a, lda, b, ldb, c, ldc, k, alpha, beta);
    else mk1x8N(a, lda, b, ldb, c, ldc, k, alpha, beta);
  }
}

// Same dispatch with the panel's fixed stride: a second call site per micro-kernel (and a body that
// differs, so binaryen neither merges the two nor inlines the kernels).
function microPanel(mr: i32, aT: i32, a: usize, lda: usize, c: usize, ldc: usize, k: i32, alpha: f32, beta: f32): void {
  const b = scratch;
  if (aT) {
    if (mr == 4) mk4x8T(a, lda, b, 32, c, ldc, k, alpha, beta);
    else if (mr == 3) mk3x8T(a, lda, b, 32, c, ldc, k, alpha, beta);
    else if (mr == 2) mk2x8T(a, lda, b, 32, c, ldc, k, alpha, beta);
    else mk1x8T(a, lda, b, 32, c, ldc, k, alpha, beta);
  } else {
    if (mr == 4) mk4x8N(a, lda, b, 32, c, ldc, k, alpha, beta);
    else if (mr == 3) mk3x8N(a, lda, b, 32, c, ldc, k, alpha, beta);
    else if (mr == 2) mk2x8N(a, lda, b, 32, c, ldc, k, alpha, beta);
    else mk1x8N(a, lda, b, 32, c, ldc, k, alpha, beta);
  }
}

/** Copies op(B)[p0..p0+kc, j0..j0+nr] into the scratch panel (kc × 8, zero-padded right). */
function packB(transB: i32, b: usize, ldb: usize, p0: i32, kc: i32, j0: i32, nr: i32): void {
  let dst = scratch;
  if (!transB) {
    let src = b + <usize>p0 * ldb + (<usize>j0 << 2);
    if (nr == 8) {
      for (let p = 0; p < kc; p++) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
        src += ldb;
        dst += 32;
      }
    } else {
      for (let p = 0; p < kc; p++) {
        v128.store(dst, f32x4.splat(0));
        v128.store(dst, f32x4.splat(0), 16);
        for (let j = 0; j < nr; j++) store<f32>(dst + (<usize>j << 2), load<f32>(src + (<usize>j << 2)));
        src += ldb;
        dst += 32;
      }
    }
  } else {
    // op(B)[p, j] = B[j, p]: row j of B is contiguous in p.
    if (nr < 8) {
      for (let p = 0; p < kc; p++) {
        v128.store(dst + (<usize>p << 5), f32x4.splat(0));
        v128.store(dst + (<usize>p << 5), f32x4.splat(0), 16);
      }
    }
    for (let j = 0; j < nr; j++) {
      let src = b + <usize>(j0 + j) * ldb + (<usize>p0 << 2);
      let d = dst + (<usize>j << 2);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const v = v128.load(src);
        store<f32>(d, f32x4.extract_lane(v, 0));
        store<f32>(d, f32x4.extract_lane(v, 1), 32);
        store<f32>(d, f32x4.extract_lane(v, 2), 64);
        store<f32>(d, f32x4.extract_lane(v, 3), 96);
        src += 16;
        d += 128;
      }
      for (; p < kc; p++) {
        store<f32>(d, load<f32>(src));
        src += 4;
        d += 32;
      }
    }
  }
}

/** Columns [j0, j0 + nr) of C (nr ≤ 8) through the B panel, k in blocks of KC. */
function panelColumns(
  transA: i32, transB: i32, m: i32, k: i32, alpha: f32, a: usize, lda: usize, b: usize, ldb: usize,
  beta: f32, c: usize, ldc: usize, j0: i32, nr: i32,
): void {
  const tile = scratch + PANEL_BYTES;
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    const bEff: f32 = p0 == 0 ? beta : 1;
    packB(transB, b, ldb, p0, kc, j0, nr);
    const aP = transA ? a + <usize>p0 * lda : a + (<usize>p0 << 2);
    for (let i = 0; i < m; i += 4) {
      const mr = min(4, m - i);
      const ai = transA ? aP + (<usize>i << 2) : aP + <usize>i * lda;
      const ci = c + <usize>i * ldc + (<usize>j0 << 2);
      if (nr == 8) {
        microPanel(mr, transA, ai, lda, ci, ldc, kc, alpha, bEff);
      } else {
        // Tile = alpha·acc, then C = tile + beta·C: the same operations as the full-tile epilogue.
        microPanel(mr, transA, ai, lda, tile, 32, kc, alpha, 0);
        for (let r = 0; r < mr; r++) {
          const cr = ci + <usize>r * ldc;
          const tr = tile + (<usize>r << 5);
          if (bEff == 0) {
            for (let j = 0; j < nr; j++) store<f32>(cr + (<usize>j << 2), load<f32>(tr + (<usize>j << 2)));
          } else {
            for (let j = 0; j < nr; j++) {
              const at = cr + (<usize>j << 2);
              store<f32>(at, load<f32>(tr + (<usize>j << 2)) + bEff * load<f32>(at));
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- packed path

/**
 * Packs op(A)[i0 .. i0+mc, p0 .. p0+kc] into PMR-row panels at dst: panel q holds rows i0 + q·PMR + r
 * as kc groups of PMR floats (A(r, p) at 4·(p·PMR + r)); rows past mc are zero.
 */
function packA(transA: i32, a: usize, lda: usize, i0: i32, mc: i32, p0: i32, kc: i32, dst: usize): void {
  const step = <usize>PMR << 2;
  for (let ir = 0; ir < mc; ir += PMR) {
    const mr = min(PMR, mc - ir);
    if (!transA) {
      // Row r is contiguous in p: read it along, write every PMR floats.
      for (let r = 0; r < mr; r++) {
        let src = a + <usize>(i0 + ir + r) * lda + (<usize>p0 << 2);
        let d = dst + (<usize>r << 2);
        let p = 0;
        for (; p + 4 <= kc; p += 4) {
          const v = v128.load(src);
          store<f32>(d, f32x4.extract_lane(v, 0));
          store<f32>(d + step, f32x4.extract_lane(v, 1));
          store<f32>(d + 2 * step, f32x4.extract_lane(v, 2));
          store<f32>(d + 3 * step, f32x4.extract_lane(v, 3));
          src += 16;
          d += 4 * step;
        }
        for (; p < kc; p++) {
          store<f32>(d, load<f32>(src));
          src += 4;
          d += step;
        }
      }
    } else {
      // A(i, p) at a + p·lda + 4i: the PMR rows of one p are contiguous.
      let src = a + <usize>p0 * lda + (<usize>(i0 + ir) << 2);
      let d = dst;
      if (mr == PMR) {
        for (let p = 0; p < kc; p++) {
          v128.store(d, v128.load(src));
          if (PMR == 6) store<u64>(d, load<u64>(src, 16), 16);
          else store<f32>(d, load<f32>(src, 16), 16);
          src += lda;
          d += step;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          for (let r = 0; r < mr; r++) store<f32>(d + (<usize>r << 2), load<f32>(src + (<usize>r << 2)));
          src += lda;
          d += step;
        }
      }
    }
    if (mr < PMR) {
      for (let r = mr; r < PMR; r++) {
        let d = dst + (<usize>r << 2);
        for (let p = 0; p < kc; p++) {
          store<f32>(d, 0);
          d += step;
        }
      }
    }
    dst += <usize>kc * step;
  }
}

/**
 * Packs op(B)[p0 .. p0+kc, j0 .. j0+nc] into 8-column panels at dst: panel q holds columns j0 + 8q .. +8
 * as kc rows of 8 floats (32 bytes); columns past nc are zero.
 */
function packBPanels(transB: i32, b: usize, ldb: usize, p0: i32, kc: i32, j0: i32, nc: i32, dst: usize): void {
  for (let jr = 0; jr < nc; jr += 8) {
    const nr = min(8, nc - jr);
    const j = j0 + jr;
    let d = dst;
    if (!transB) {
      let src = b + <usize>p0 * ldb + (<usize>j << 2);
      if (nr == 8) {
        for (let p = 0; p < kc; p++) {
          v128.store(d, v128.load(src));
          v128.store(d, v128.load(src, 16), 16);
          src += ldb;
          d += 32;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          v128.store(d, f32x4.splat(0));
          v128.store(d, f32x4.splat(0), 16);
          for (let q = 0; q < nr; q++) store<f32>(d + (<usize>q << 2), load<f32>(src + (<usize>q << 2)));
          src += ldb;
          d += 32;
        }
      }
    } else if (nr == 8) {
      // op(B)[p, q] = B[j + q, p]: eight rows contiguous in p, transposed 4×4 at a time.
      let src = b + <usize>j * ldb + (<usize>p0 << 2);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        transpose4(src, ldb, d);
        transpose4(src + 4 * ldb, ldb, d + 16);
        src += 16;
        d += 128;
      }
      for (; p < kc; p++) {
        for (let q = 0; q < 8; q++) store<f32>(d + (<usize>q << 2), load<f32>(src + <usize>q * ldb));
        src += 4;
        d += 32;
      }
    } else {
      let src = b + <usize>j * ldb + (<usize>p0 << 2);
      for (let p = 0; p < kc; p++) {
        v128.store(d, f32x4.splat(0));
        v128.store(d, f32x4.splat(0), 16);
        for (let q = 0; q < nr; q++) store<f32>(d + (<usize>q << 2), load<f32>(src + <usize>q * ldb));
        src += 4;
        d += 32;
      }
    }
    dst += <usize>kc << 5;
  }
}

/** Rows r0..r3 at src + q·ld (4 floats each) → columns: 4 vectors stored at dst, dst + 32, +64, +96. */
// @ts-ignore: decorator
@inline function transpose4(src: usize, ld: usize, dst: usize): void {
  const r0 = v128.load(src), r1 = v128.load(src + ld), r2 = v128.load(src + 2 * ld), r3 = v128.load(src + 3 * ld);
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
  v128.store(dst, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), 32);
  v128.store(dst, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), 64);
  v128.store(dst, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), 96);
}

// The build's packed micro-kernel (the other one is constant-folded away). Two call sites in
// macroKernel keep it out of line (KERNELS.md §1: inlined into the driver, V8 spills it).
// @ts-ignore: decorator
@inline function microPacked(a: usize, b: usize, t: usize, k: i32): void {
  if (PMR == 6) mkp6x8(a, b, t, k);
  else mkp5x8(a, b, t, k);
}

/**
 * C[0..mr, 0..nr] = alpha · tile + beta · C (beta = 0: C not read), the tile's rows 32 bytes apart: the
 * same operations as the direct kernels' epilogue (alpha·acc rounded, beta·C rounded, then the sum).
 */
function mergeTile(t: usize, c: usize, ldc: usize, mr: i32, nr: i32, alpha: f32, beta: f32): void {
  if (nr == 8) {
    const va = f32x4.splat(alpha);
    if (beta == 0) {
      for (let r = 0; r < mr; r++) {
        v128.store(c, f32x4.mul(va, v128.load(t)));
        v128.store(c, f32x4.mul(va, v128.load(t, 16)), 16);
        t += 32;
        c += ldc;
      }
    } else {
      const vb = f32x4.splat(beta);
      for (let r = 0; r < mr; r++) {
        v128.store(c, f32x4.add(f32x4.mul(va, v128.load(t)), f32x4.mul(vb, v128.load(c))));
        v128.store(c, f32x4.add(f32x4.mul(va, v128.load(t, 16)), f32x4.mul(vb, v128.load(c, 16))), 16);
        t += 32;
        c += ldc;
      }
    }
    return;
  }
  for (let r = 0; r < mr; r++) {
    for (let j = 0; j < nr; j++) {
      const at = c + (<usize>j << 2);
      const v = alpha * load<f32>(t + (<usize>j << 2));
      store<f32>(at, beta == 0 ? v : v + beta * load<f32>(at));
    }
    t += 32;
    c += ldc;
  }
}

/** C[0..mc, 0..nc] (+)= alpha · packed A block · packed B block, one PMR × 8 tile at a time. */
function macroKernel(mc: i32, nc: i32, kc: i32, alpha: f32, beta: f32, pa: usize, pb: usize, c: usize, ldc: usize): void {
  const tile = workspace + PACK_A_BYTES + PACK_B_BYTES;
  const aPanel = <usize>(kc * PMR) << 2;
  const bPanel = <usize>kc << 5;
  for (let jr = 0; jr < nc; jr += 8) {
    const nr = min(8, nc - jr);
    const bp = pb + <usize>(jr >> 3) * bPanel;
    let ap = pa;
    let ir = 0;
    // Full-height tiles, then the zero-padded last panel (two call sites: the kernel stays out of line).
    for (; ir + PMR <= mc; ir += PMR) {
      microPacked(ap, bp, tile, kc);
      mergeTile(tile, c + <usize>ir * ldc + (<usize>jr << 2), ldc, PMR, nr, alpha, beta);
      ap += aPanel;
    }
    if (ir < mc) {
      microPacked(ap, bp, tile, kc);
      mergeTile(tile, c + <usize>ir * ldc + (<usize>jr << 2), ldc, mc - ir, nr, alpha, beta);
    }
  }
}

/**
 * The packed path (k ≥ 1): B blocks PKC × PNC, A blocks PMC × PKC, in this thread's workspace; or, when
 * `prepacked` ≠ 0, B's blocks read from there as {@link packBOnce} laid them out (the same floats, so the
 * same bits) and only A packed per call.
 */
function gemmPacked(
  transA: i32, transB: i32, m: i32, n: i32, k: i32, alpha: f32,
  a: usize, lda: usize, b: usize, ldb: usize, beta: f32, c: usize, ldc: usize, prepacked: usize,
): void {
  const pa = workspace;
  for (let jc = 0; jc < n; jc += PNC) {
    const nc = min(PNC, n - jc);
    for (let pc = 0; pc < k; pc += PKC) {
      const kc = min(PKC, k - pc);
      const bEff: f32 = pc == 0 ? beta : 1;
      let pb = workspace + PACK_A_BYTES;
      if (prepacked != 0) pb = prepacked + packedBlockOffset(jc, pc, k, nc);
      else packBPanels(transB, b, ldb, pc, kc, jc, nc, pb);
      for (let ic = 0; ic < m; ic += PMC) {
        const mc = min(PMC, m - ic);
        packA(transA, a, lda, ic, mc, pc, kc, pa);
        macroKernel(mc, nc, kc, alpha, bEff, pa, pb, c + <usize>ic * ldc + (<usize>jc << 2), ldc);
      }
    }
  }
}

/** Byte offset of B's block (jc, pc) in a whole packed op(B): jc-major, each block kc × nc rounded up to 8 columns. */
// @ts-ignore: decorator
@inline function packedBlockOffset(jc: i32, pc: i32, k: i32, nc: i32): usize {
  return (<usize>jc * <usize>k + <usize>pc * <usize>((nc + 7) & ~7)) << 2;
}

/**
 * Whether a whole op(B) (k × n) packed by {@link packBWhole} (k rows of n columns rounded up to 8) fits
 * {@link packedBCapacity}: counted in 64 bits, so no shape overflows into a false yes.
 */
export function packedBFits(k: i32, n: i32): bool {
  return k > 0 && n > 0 && (<i64>k * <i64>((n + 7) & ~7)) << 2 <= <i64>PACK_B_BYTES;
}

/** Largest whole op(B) (bytes) the packed path may be given packed: what one thread's workspace holds. */
export function packedBCapacity(): i32 {
  return <i32>PACK_B_BYTES;
}

/**
 * Packs the whole op(B) (k × n, row stride ldb floats) at dst (of {@link packedBCapacity} bytes, when
 * {@link packedBFits}) in the blocks the packed path reads ({@link gemmPrepacked}): the same floats it packs per
 * call, so the same bits.
 */
export function packBWhole(transB: i32, k: i32, n: i32, b: usize, ldb: i32, dst: usize): void {
  for (let jc = 0; jc < n; jc += PNC) {
    const nc = min(PNC, n - jc);
    for (let pc = 0; pc < k; pc += PKC) {
      packBPanels(transB, b, <usize>ldb << 2, pc, min(PKC, k - pc), jc, nc, dst + packedBlockOffset(jc, pc, k, nc));
    }
  }
}

/**
 * Packs the whole B (k × n, row stride ldb floats, not transposed) into this thread's workspace for
 * {@link gemmPrepacked}, and returns where; 0 (nothing packed: use another path) when it does not fit, the
 * thread has no workspace, or the test hook forbids packing. For a B that many products share (a recurrent
 * kernel, used at every time step): packed once instead of once per product. Deterministic in k and n alone,
 * so every thread decides alike.
 */
export function packBOnce(k: i32, n: i32, b: usize, ldb: i32): usize {
  if (workspace == 0 || gemmPath == 1 || !packedBFits(k, n)) return 0;
  const dst = workspace + PACK_A_BYTES;
  packBWhole(0, k, n, b, ldb, dst);
  return dst;
}

/**
 * C = alpha · op(A) · op(B) + beta · C (m, n, k ≥ 1) on the packed path with op(B) already packed at `pb` (by
 * {@link packBOnce} on this thread, or {@link packBWhole} anywhere): bitwise the packed path's result, for any rows
 * of C. A row split of a product shares one packed B this way instead of packing it again per chunk.
 */
export function gemmPrepacked(
  transA: i32, m: i32, n: i32, k: i32, alpha: f32, a: usize, lda: i32, pb: usize, beta: f32, c: usize, ldc: i32,
): void {
  gemmPacked(transA, 0, m, n, k, alpha, a, <usize>lda << 2, 0, 0, beta, c, <usize>ldc << 2, pb);
}

/** Fewest rows for the packed path: below it packing B costs more than it saves (and 6-row tiles idle). */
const PACKED_MIN_M: i32 = 16;

/**
 * The path for a whole product: 2 = packed, 1 = direct / panel. Measured on this machine (workers/README.md,
 * interleaved A/B in CPU time): packing wins for transposed or wide B (ldb > 512: 4 KiB strides) and, in
 * the relaxed build, for large square-ish shapes (+4% at 256³, +7–13% at 512³) while the direct 4×8 FMA
 * wins for the MNIST-scale shapes (64×784·784×128: −6% packed; n = 10: −20%); in the SIMD128 build
 * packed 5×8 wins almost everywhere. Small m stays direct (packing B would dominate). The JS split computes it once for the
 * whole shape and passes it to every part ({@link gemmWith}), so a row split takes the same path as one
 * thread and stays bitwise identical to it.
 */
export function gemmChoosePath(transB: i32, m: i32, n: i32, k: i32, ldb: i32): i32 {
  if (workspace == 0 || gemmPath == 1) return 1;
  if (gemmPath == 2) return 2;
  if (m < PACKED_MIN_M || k <= 0) return 1;
  if (transB != 0 || ldb > DIRECT_MAX_LDB) return 2;
  // SIMD128 build: packed 5×8 beats the direct 4×8 (8 accumulators + a mul temp) by 5–20% on every
  // measured shape but n < 16 (n = 10: −12%) and tiny k (the per-tile epilogue dominates).
  if (PMR == 5) return n >= 16 && k >= 32 ? 2 : 1;
  // Relaxed build: the direct 4×8 FMA kernel is as fast as packed 6×8 up to ~256 (no packing), slower beyond.
  return m >= 128 && n >= 256 && k >= 256 ? 2 : 1;
}

/**
 * C = alpha · op(A) · op(B) + beta · C through a given path: 0 = {@link gemmChoosePath} of this shape,
 * 1 = direct / panel, 2 = packed (1 when this thread has no workspace). The test hook setGemmPath wins.
 */
export function gemmWith(
  path: i32, transA: i32, transB: i32, m: i32, n: i32, k: i32, alpha: f32,
  a: usize, lda: i32, b: usize, ldb: i32, beta: f32, c: usize, ldc: i32,
): void {
  if (path == 0 || gemmPath != 0) path = gemmChoosePath(transB, m, n, k, ldb);
  if (workspace == 0) path = 1;
  gemmImpl(path == 2, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/**
 * C = alpha · op(A) · op(B) + beta · C; op(A) m×k, op(B) k×n, leading dimensions in floats.
 * beta = 0 never reads C.
 */
export function gemm(
  transA: i32, transB: i32, m: i32, n: i32, k: i32, alpha: f32,
  a: usize, lda: i32, b: usize, ldb: i32, beta: f32, c: usize, ldc: i32,
): void {
  gemmImpl(gemmChoosePath(transB, m, n, k, ldb) == 2, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

function gemmImpl(
  packed: bool, transA: i32, transB: i32, m: i32, n: i32, k: i32, alpha: f32,
  a: usize, lda: i32, b: usize, ldb: i32, beta: f32, c: usize, ldc: i32,
): void {
  if (m <= 0 || n <= 0) return;
  const ldaB = <usize>lda << 2;
  const ldbB = <usize>ldb << 2;
  const ldcB = <usize>ldc << 2;
  if (k <= 0) {
    // Empty sum: C = beta · C (0 when beta = 0, whatever C held).
    for (let i = 0; i < m; i++) {
      const ci = c + <usize>i * ldcB;
      for (let j = 0; j < n; j++) {
        const at = ci + (<usize>j << 2);
        store<f32>(at, beta == 0 ? 0 : beta * load<f32>(at));
      }
    }
    return;
  }
  if (packed) {
    gemmPacked(transA, transB, m, n, k, alpha, a, ldaB, b, ldbB, beta, c, ldcB, 0);
  } else if (!transB && ldb <= DIRECT_MAX_LDB) {
    const nFull = n & ~7;
    for (let j = 0; j < nFull; j += 8) {
      const bj = b + (<usize>j << 2);
      for (let i = 0; i < m; i += 4) {
        const mr = min(4, m - i);
        const ai = transA ? a + (<usize>i << 2) : a + <usize>i * ldaB;
        microDirect(mr, transA, ai, ldaB, bj, ldbB, c + <usize>i * ldcB + (<usize>j << 2), ldcB, k, alpha, beta);
      }
    }
    if (nFull < n) panelColumns(transA, transB, m, k, alpha, a, ldaB, b, ldbB, beta, c, ldcB, nFull, n - nFull);
  } else {
    for (let j = 0; j < n; j += 8) {
      panelColumns(transA, transB, m, k, alpha, a, ldaB, b, ldbB, beta, c, ldcB, j, min(8, n - j));
    }
  }
}
