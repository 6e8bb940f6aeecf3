// SGEMM over raw pointers: C = alpha · op(A) · op(B) + beta · C (contract: workers/kernel-api.ts).
//
// Two paths, both on 4×8 register tiles (workers/generated/micro.ts):
// - direct: op(B) = B read in place (row stride ldb), A through strides. Best up to ldb ≈ 512, where
//   B rows stay in distinct cache sets (KERNELS.md §2).
// - panel: B copied KC×8 at a time into a zero-padded panel in this thread's scratch (transposes B,
//   avoids the 4 KiB-stride cache-set conflicts of wide B). Also used for the last n % 8 columns of
//   the direct path, writing through a 4×8 temp tile.
// Every C element is always computed by the same sequence of operations whatever the row range, so a
// row split across threads is bitwise identical to the single-thread result.

import {
  mk1x8N, mk2x8N, mk3x8N, mk4x8N, mk1x8T, mk2x8T, mk3x8T, mk4x8T,
} from '../generated/micro';

/** Rows of k per B panel: the panel is KC × 8 floats = 4 KiB. */
const KC: i32 = 128;
const PANEL_BYTES: usize = <usize>KC * 32;
/** Scratch per thread: panel + one 4×8 temp tile. */
const SCRATCH_BYTES: usize = PANEL_BYTES + 128;
/** Widest B (row stride, floats) read in place by the direct path. */
const DIRECT_MAX_LDB: i32 = 512;

// Per-instance (so per-thread) scratch pointer, set once by the JS side after instantiation.
let scratch: usize = 0;

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

/**
 * C = alpha · op(A) · op(B) + beta · C; op(A) m×k, op(B) k×n, leading dimensions in floats.
 * beta = 0 never reads C.
 */
export function gemm(
  transA: i32, transB: i32, m: i32, n: i32, k: i32, alpha: f32,
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
  if (!transB && ldb <= DIRECT_MAX_LDB) {
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
