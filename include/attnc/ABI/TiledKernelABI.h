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

/// What a tiled kernel was compiled for.
struct TiledKernelShape {
  int64_t tileQ = 128;
  int64_t tileKV = 64;
  int64_t vectorWidth = 16;
  int64_t headDim = 0;
  int64_t valueDim = 0;
};

} // namespace attnc

#endif // ATTNC_ABI_TILEDKERNELABI_H
