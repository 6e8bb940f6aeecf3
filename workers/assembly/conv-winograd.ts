// Winograd F(2×2, 3×3) convolution over NHWC tensors (transforms: conv-winograd-transforms.ts): the 3×3,
// stride-1, dilation-1 forward and input gradient with 16 multiplications per 2×2 output tile and channel
// pair instead of 36 (2.25× fewer), for shapes where that pays (winogradFits, winogradPays; measured: docs/PERFORMANCE.md).
//
// Per block of TILE_BLOCK output tiles (numbered across the batch): input transforms into V (16 planes of
// tiles × Cin), then per plane ξ the product M[ξ] = V[ξ] · U[ξ] (tiles × Cin by Cin × Cout, conv-common's
// 2-pixel × 16-channel micro-kernels: a tile is a "pixel" with one Cin-long run), then the output transforms
// (+ bias, ReLU) into y. U = the transformed filter, computed once per call. Everything lives in this
// thread's workspace (gemm.ts threadWorkspace): no allocation, never shared between threads.
//
// Every output element comes from its own tile by the same operation sequence wherever the tile falls in a
// block (pair and single micro-kernels accumulate alike), so a split over batch images is bitwise identical
// to one thread.

import { channels, convRowP16 } from './conv-common';
import { threadWorkspace, THREAD_WORKSPACE_BYTES } from './gemm';
import { winogradFilter, winogradInputTile, winogradOutputTile } from './conv-winograd-transforms';

/** Output tiles per block: V and M of a block (16·(Cin + Cout) floats per tile) stay in L1/L2. */
const TILE_BLOCK: i32 = 16;
/**
 * Bytes added to every plane stride of V and M: planes a multiple of 4 KiB apart all map to the same L1
 * sets (32 KiB, 8-way), and the transforms touch all 16 planes at once.
 */
export const PLANE_PAD: usize = 64;
/** Fewest input channels for the Winograd path (the per-tile transforms must be shared over enough products). */
const MIN_WINOGRAD_CIN: i32 = 8;

/**
 * Whether Winograd pays for an OH × OW output: its 2×2 tiles may cover at most 1.5× the output (measured,
 * batch 16, 1 thread, against the direct kernels: 1×1 0.19×, 3×3 0.86–1.06×, 5×5 1.06–1.13×, 7×7 1.24–1.58×,
 * 14×14 1.7–1.8×; docs/PERFORMANCE.md).
 */
export function winogradPays(OH: i32, OW: i32): bool {
  return <i64>8 * <i64>((OH + 1) >> 1) * <i64>((OW + 1) >> 1) <= <i64>3 * <i64>OH * <i64>OW;
}

/**
 * Whether a convolution from Cin to Cout channels with this window can run as Winograd on this thread, with
 * `block` tiles per block: 3×3, stride 1, dilation 1, Cin ≥ MIN_WINOGRAD_CIN and a multiple of 4, Cout a
 * multiple of 16, and the workspace holds U (16·Cin·Cout floats), V (16·block·Cin), M (16·block·Cout) and
 * one gathered border tile (16·Cin).
 */
export function winogradFits(Cin: i32, Cout: i32, KH: i32, KW: i32, sh: i32, sw: i32, dh: i32, dw: i32, block: i32 = TILE_BLOCK): bool {
  // In 64 bits: 16·Cin·Cout·4 passes 2³² from 8192 channels on each side.
  const need = <u64>64 * (<u64>Cin * <u64>Cout + <u64>block * <u64>(Cin + Cout) + <u64>Cin) + <u64>(32 * PLANE_PAD);
  return KH == 3 && KW == 3 && sh == 1 && sw == 1 && dh == 1 && dw == 1 && Cin >= MIN_WINOGRAD_CIN && Cin % 4 == 0 &&
    Cout % 16 == 0 && threadWorkspace() != 0 && need <= <u64>THREAD_WORKSPACE_BYTES;
}

// Set by outputTileOffset (per-instance globals: each thread has its own instance, nothing is shared).
export let tileRows: i32 = 0;
export let tileCols: i32 = 0;

/**
 * Byte offset of output tile t's first pixel in a [batch, OH, OW, Cout] tensor (tiles numbered across the
 * batch, perImage per image, TW per row); sets tileRows / tileCols to its size (< 2 at the bottom / right).
 */
export function outputTileOffset(t: i32, perImage: i32, TW: i32, OH: i32, OW: i32, Cout: i32): usize {
  const n = t / perImage;
  const r = t - n * perImage;
  const ty = r / TW;
  const oy0 = 2 * ty, ox0 = 2 * (r - ty * TW);
  tileRows = min(2, OH - oy0);
  tileCols = min(2, OW - ox0);
  return (<usize>((n * OH + oy0) * OW + ox0) * <usize>Cout) << 2;
}

/**
 * Input transforms of tiles t0 .. t0 + nb (numbered across the batch, perImage = TH·TW per image, TW per
 * row) of x [batch, H, W, Cin] into V (tile j of the block at V + j·4·Cin, planes vs bytes apart). Tile
 * (ty, tx) reads rows 2ty − pt .. + 3 and columns 2tx − pl .. + 3, 0 outside x; `tile` holds 16·Cin floats.
 */
export function winogradInputBlock(
  x: usize, t0: i32, nb: i32, perImage: i32, TW: i32, H: i32, W: i32, Cin: i32, pt: i32, pl: i32, V: usize, vs: usize, tile: usize,
): void {
  const cinB = <usize>Cin << 2;
  const rowX = <usize>W * cinB;
  for (let j = 0; j < nb; j++) {
    const t = t0 + j;
    const n = t / perImage;
    const r = t - n * perImage;
    const ty = r / TW;
    const iy0 = 2 * ty - pt, ix0 = 2 * (r - ty * TW) - pl;
    const xn = x + <usize>(n * H) * rowX;
    const dst = V + <usize>j * cinB;
    if (iy0 >= 0 && iy0 + 4 <= H && ix0 >= 0 && ix0 + 4 <= W) {
      winogradInputTile(xn + <usize>iy0 * rowX + <usize>ix0 * cinB, rowX, cinB, Cin, dst, vs);
      continue;
    }
    // Border tile: gathered with zeros outside the image, then transformed like the others.
    for (let a = 0; a < 4; a++) {
      const iy = iy0 + a;
      for (let b = 0; b < 4; b++) {
        const ix = ix0 + b;
        const d = tile + <usize>(a * 4 + b) * cinB;
        // Vector copies: memory.copy / fill of 64 bytes cost a call each in V8.
        if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
          for (let o: usize = 0; o < cinB; o += 16) v128.store(d + o, f32x4.splat(0));
        } else {
          const s = xn + <usize>iy * rowX + <usize>ix * cinB;
          for (let o: usize = 0; o < cinB; o += 16) v128.store(d + o, v128.load(s + o));
        }
      }
    }
    winogradInputTile(tile, 4 * cinB, cinB, Cin, dst, vs);
  }
}

/**
 * y[n, oy, ox, co] = bias[co] + Σ_{ky, kx, ci} x[n, oy − pt + ky, ox − pl + kx, ci] · g[ky, kx, ci, co] (0
 * outside x), ReLU when act = 1, with U = the transformed g at the start of this thread's workspace.
 */
function winogradConv(
  x: usize, U: usize, bias: usize, y: usize, batch: i32, H: i32, W: i32, Cin: i32, OH: i32, OW: i32, Cout: i32,
  pt: i32, pl: i32, act: i32,
): void {
  const TH = (OH + 1) >> 1, TW = (OW + 1) >> 1;
  const perImage = TH * TW;
  const total = batch * perImage;
  const cinB = <usize>Cin << 2, coutB = <usize>Cout << 2;
  const vs = <usize>TILE_BLOCK * cinB + PLANE_PAD, ms = <usize>TILE_BLOCK * coutB + PLANE_PAD;
  const us = <usize>Cin * coutB;
  const V = U + 16 * us;
  const M = V + 16 * vs;
  const tile = M + 16 * ms;
  const rowY = <usize>OW * coutB;
  for (let t0 = 0; t0 < total; t0 += TILE_BLOCK) {
    const nb = min(TILE_BLOCK, total - t0);
    winogradInputBlock(x, t0, nb, perImage, TW, H, W, Cin, pt, pl, V, vs, tile);
    const pairs = nb >> 1;
    for (let xi = 0; xi < 16; xi++) {
      const v = V + <usize>xi * vs, u = U + <usize>xi * us, m = M + <usize>xi * ms;
      if (pairs > 0) {
        for (let co = 0; co < Cout; co += 16) {
          const o = <usize>co << 2;
          convRowP16(v, cinB, u + o, coutB, Cin, 1, 0, 0, 1, 0, 0, 0, m + o, coutB, pairs);
        }
      }
      if (nb & 1) {
        const last = <usize>(nb - 1);
        channels(false, v + last * cinB, 0, u, coutB, Cin, 1, 0, 0, 1, 0, 0, 0, m + last * coutB, 0, Cout);
      }
    }
    for (let j = 0; j < nb; j++) {
      const yo = y + outputTileOffset(t0 + j, perImage, TW, OH, OW, Cout);
      winogradOutputTile(M + <usize>j * coutB, ms, bias, act, yo, rowY, coutB, tileRows, tileCols, Cout);
    }
  }
}

/**
 * conv2dForward (3×3, stride 1, dilation 1) as Winograd F(2×2, 3×3): same contract and arguments minus the
 * fixed ones, any output size; traps unless winogradFits(C, CO, 3, 3, 1, 1, 1, 1). conv2dForward calls it for
 * those shapes when winogradPays(OH, OW).
 */
export function conv2dForwardWinograd(
  x: usize, w: usize, bias: usize, y: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32,
  pt: i32, pl: i32, activation: i32,
): void {
  if (!winogradFits(C, CO, 3, 3, 1, 1, 1, 1)) unreachable();
  const U = threadWorkspace();
  winogradFilter(w, U, C, CO, false);
  winogradConv(x, U, bias, y, batch, H, W, C, OH, OW, CO, pt, pl, activation);
}

/**
 * conv2dBackwardInput (3×3, stride 1, dilation 1) as Winograd: dx is the forward convolution of dy (padding
 * 2 − pt, 2 − pl; 0 outside dy) with the rotated, transposed filter g[ky, kx, co, ci] = wt[2 − ky, 2 − kx, co, ci].
 * Traps unless winogradFits(CO, C, 3, 3, 1, 1, 1, 1). conv2dBackwardInput calls it for those shapes when
 * winogradPays(H, W).
 */
export function conv2dBackwardInputWinograd(
  dy: usize, wt: usize, dx: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32, pt: i32, pl: i32,
): void {
  if (!winogradFits(CO, C, 3, 3, 1, 1, 1, 1)) unreachable();
  const U = threadWorkspace();
  winogradFilter(wt, U, CO, C, true);
  winogradConv(dy, U, 0, dx, batch, OH, OW, CO, H, W, C, 2 - pt, 2 - pl, 0);
}
