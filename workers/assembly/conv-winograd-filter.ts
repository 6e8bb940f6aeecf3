// Filter gradient of the 3×3, stride-1, dilation-1 convolution as Winograd F(2×2, 3×3) (forward and
// transforms: conv-winograd.ts, conv-winograd-transforms.ts): with the forward's V = Bᵀ d B per input tile
// and E = A e Aᵀ per output-gradient tile e, ∂L/∂U[ξ] = Σ_tiles V[ξ]ᵀ · E[ξ] (16 products of Cin × tiles
// by tiles × Cout, accumulated over blocks of FILTER_TILE_BLOCK tiles) and dw = Gᵀ (∂L/∂U) G: 16
// multiplications per tile and channel pair instead of 36. Everything lives in this thread's workspace.
//
// The tiles are summed in the same order (tile number within the call) wherever the call runs, so a split
// over fixed image chunks (wasm-compute.ts reductionChunks) is bitwise identical on any thread count.

import { dwTap2x16 } from './conv-backward-filter';
import { outputTileOffset, PLANE_PAD, tileCols, tileRows, winogradFits, winogradInputBlock } from './conv-winograd';
import { threadWorkspace } from './gemm';
import { winogradFilterGradient, winogradGradTile } from './conv-winograd-transforms';

/** Tiles per block: the reduction runs over the block (the micro-kernel's k), so longer blocks amortise its loads and stores. */
export const FILTER_TILE_BLOCK: i32 = 64;

/**
 * conv2dBackwardFilter (3×3, stride 1, dilation 1) as Winograd: dw[ky, kx, ci, co] = Σ_{n, oy, ox}
 * x[n, oy − pt + ky, ox − pl + kx, ci] · dy[n, oy, ox, co] (overwritten). Traps unless
 * winogradFits(C, CO, 3, 3, 1, 1, 1, 1, FILTER_TILE_BLOCK). conv2dBackwardFilter calls it for those shapes when
 * winogradPays(OH, OW).
 */
export function conv2dBackwardFilterWinograd(
  x: usize, dy: usize, dw: usize, batch: i32, H: i32, W: i32, C: i32, OH: i32, OW: i32, CO: i32, pt: i32, pl: i32,
): void {
  if (!winogradFits(C, CO, 3, 3, 1, 1, 1, 1, FILTER_TILE_BLOCK)) unreachable();
  const TH = (OH + 1) >> 1, TW = (OW + 1) >> 1;
  const perImage = TH * TW;
  const total = batch * perImage;
  const cinB = <usize>C << 2, coutB = <usize>CO << 2;
  const us = <usize>C * coutB;
  const vs = <usize>FILTER_TILE_BLOCK * cinB + PLANE_PAD, es = <usize>FILTER_TILE_BLOCK * coutB + PLANE_PAD;
  const dU = threadWorkspace();
  const V = dU + 16 * us;
  const E = V + 16 * vs;
  const tile = E + 16 * es;
  const rowY = <usize>OW * coutB;
  memory.fill(dU, 0, 16 * us);
  for (let t0 = 0; t0 < total; t0 += FILTER_TILE_BLOCK) {
    const nb = min(FILTER_TILE_BLOCK, total - t0);
    winogradInputBlock(x, t0, nb, perImage, TW, H, W, C, pt, pl, V, vs, tile);
    for (let j = 0; j < nb; j++) {
      const src = dy + outputTileOffset(t0 + j, perImage, TW, OH, OW, CO);
      winogradGradTile(src, rowY, coutB, tileRows, tileCols, CO, E + <usize>j * coutB, es);
    }
    // ∂L/∂U[ξ, ci, co] += Σ_j V[ξ, j, ci] · E[ξ, j, co]: channel pairs (C % 4 = 0) × 16 output channels.
    for (let xi = 0; xi < 16; xi++) {
      const v = V + <usize>xi * vs, e = E + <usize>xi * es, u = dU + <usize>xi * us;
      for (let ci = 0; ci < C; ci += 2) {
        for (let co = 0; co < CO; co += 16) {
          const acc = u + <usize>(ci * CO + co) * 4;
          dwTap2x16(v + (<usize>ci << 2), 4, 0, cinB, e + (<usize>co << 2), 0, coutB, 1, nb, acc, acc + coutB);
        }
      }
    }
  }
  winogradFilterGradient(dU, dw, C, CO);
}
