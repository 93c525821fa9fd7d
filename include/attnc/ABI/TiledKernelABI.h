//===- TiledKernelABI.h - How the launcher calls a tiled CPU kernel -------===//
//
// The contract between convert-attn-to-tiled-kernel and launchTiledKernel
// (lib/Target/TiledLaunch.cpp, which ahead-of-time programs link without
// MLIR or LLVM). A tiled kernel takes the leading arguments of KernelABI.h
// followed by:
//
//   b, h, qt          index: the work item (one q-tile of one head)
//   K^T               memref<?xf32>: flat [B, Hkv, kvTiles, DP, Tk], each
//                     kv-tile's K^T one block, filled by the kernels
//   V rows, K rows    memref<?x?x?x?xf32> with a unit inner stride:
//                     [B, Hkv, >= Lkv, DvP or DP], the head dims rounded up
//                     to the vector width
//   K^T tile states   memref<?xi32>: one word per kv-tile of K^T, zero on
//                     entry
//   summaries         per rank-1 i32 or bool tensor param, in declaration
//                     order: its (min, max) per q-tile and per kv-tile, two
//                     memref<?x2xi32>
//
// The tiled backward kernel (convert-attn-to-tiled-backward-kernel, run by
// launchTiledBackwardKernel) is two functions taking the backward leading
// arguments of KernelABI.h followed by:
//
//   @<name>_bwd_rows  b, h (index); rowA, rowD (memref<?xf32>, flat
//                     [B, H, Lq]): it writes D = dO . O into rowD and the
//                     row statistic as the tiles use it into rowA
//   @<name>_bwd       b, hkv, k0, k1 (index: the kv-tiles [k0, k1) of a KV
//                     head); rowA, rowD; Q, dO, K, V, dQ, dK, dV as
//                     memref<?x?x?x?xf32> with a unit inner stride, head
//                     dims rounded up to the vector width (dQ: rows the
//                     item zeroes and accumulates; dK, dV: rows it writes
//                     for its kv-tiles); the summaries as above
//
// Both add param gradients into the gradient buffers of the leading
// arguments, which the launcher makes per worker slot.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_ABI_TILEDKERNELABI_H
#define ATTNC_ABI_TILEDKERNELABI_H

#include <cstdint>

namespace attnc {

/// The calling convention between tiled kernels and launchTiledKernel:
/// raised whenever the arguments the launcher passes change, and carried
/// in the kernel description of ahead-of-time headers ("tiled abi=N ..."),
/// so that an object built by another attnc is refused, not misread.
/// 2: K and V as rows, a K^T buffer the kernels fill and its tile states.
constexpr int64_t kTiledKernelAbi = 2;

/// What a tiled kernel was compiled for (the backward kernel too).
struct TiledKernelShape {
  int64_t tileQ = 128;
  int64_t tileKV = 64;
  int64_t vectorWidth = 16;
  int64_t headDim = 0;
  int64_t valueDim = 0;
};

} // namespace attnc

#endif // ATTNC_ABI_TILEDKERNELABI_H
