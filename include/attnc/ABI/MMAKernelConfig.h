//===- MMAKernelConfig.h - Shape of the tensor-core kernels ---------------===//
//
// The geometry of the kernels that convert-attn-to-mma-kernel emits (the
// mma.sync and wgmma kernels and their mark kernel): the tile shape and the
// layout of their dynamic shared memory, as functions of the GpuKernelPlan.
// The planner sizes a block's shared memory with them and the kernel
// builder places its views with them, so the two always agree.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_ABI_MMAKERNELCONFIG_H
#define ATTNC_ABI_MMAKERNELCONFIG_H

#include "attnc/ABI/GpuKernelPlan.h"

#include <algorithm>
#include <cstdint>

namespace attnc {

/// The most dynamic shared memory a block may ask for on the chips the
/// kernels target (227 KiB on sm_90; sm_80 allows 163 KiB, and the
/// non-persistent layouts stay under 200 KiB).
inline constexpr int64_t kMaxDynamicSharedBytes = 227 * 1024;
/// kv-tiles per row that the shared-memory mask summaries cover (longer
/// rows fall back to reading each tile's entries).
inline constexpr int64_t kMaxSummaryTiles = 512;
/// Words of a q-tile's marks (the mark kernel's output, and their shared
/// memory in the attention kernel): the live and the all-kept bitmaps, the
/// first and the last live kv-tile.
inline constexpr int64_t kMarkWords = 2 * (kMaxSummaryTiles / 32) + 2;

struct MmaKernelConfig {
  int64_t headDim = 128, valueDim = 128;
  /// Hopper's warpgroup MMA (wgmma, sm_90a) instead of mma.sync: two
  /// warpgroups of 64 query rows each, tiles in 128-byte-swizzled shared
  /// memory that wgmma reads directly.
  bool wgmma = false;
  int64_t warps = 4;
  int64_t mTiles = 2; // m16 tiles per warp: 16 * mTiles query rows each
  int64_t tk = 64;    // keys per kv-tile
  /// Blocks that must fit on one SM at once (ptxas .minnctapersm; 0: no
  /// bound), which caps the registers per thread.
  int64_t minBlocksPerSM = 0;
  /// (wgmma only) A persistent kernel whose O staging tile has shared
  /// memory of its own, so that the next work item's Q, K and V copies fly
  /// while this item's O is written (see stagingOffset()).
  bool persistent = false;
  /// Data-dependent masks (not persistent): a mark kernel works out each
  /// q-tile's live kv-tiles once per launch, and a block reads them
  /// instead of summarising the row itself.
  bool markKernel = false;

  /// The configuration a plan of kind mma or wgmma describes.
  static MmaKernelConfig fromPlan(const GpuKernelPlan &plan) {
    MmaKernelConfig c;
    c.headDim = plan.headDim;
    c.valueDim = plan.valueDim;
    c.wgmma = plan.kind == GpuKernelKind::Wgmma;
    c.warps = plan.warps;
    c.mTiles = plan.mTiles;
    c.tk = plan.tileKV;
    c.minBlocksPerSM = plan.minBlocksPerSM;
    c.persistent = plan.persistent;
    c.markKernel = plan.marks.present;
    return c;
  }

  int64_t rows() const { return 16 * mTiles * warps; }
  int64_t threads() const { return 32 * warps; }
  /// Row pitch of the shared tiles, in elements: 8 elements (16 bytes) of
  /// padding make the 8 row addresses of an ldmatrix hit 8 bank quads.
  /// wgmma tiles are unpadded (the swizzle spreads the banks instead).
  int64_t rowElements(int64_t width) const {
    return wgmma ? width : pitch(width);
  }
  static int64_t pitch(int64_t width) { return width + 8; }
  /// K and V buffers: two for the wgmma kernel's software pipeline.
  int64_t kvStages() const { return wgmma ? 2 : 1; }
  int64_t qOffset() const { return 0; }
  int64_t kOffset() const { return 2 * rows() * rowElements(headDim); }
  /// The second K buffer (wgmma).
  int64_t secondKOffset() const {
    return kOffset() + 2 * tk * rowElements(headDim);
  }
  int64_t vOffset() const {
    return kOffset() + kvStages() * 2 * tk * rowElements(headDim);
  }
  /// Swizzled tiles must start 1024-byte aligned: the slack that the kernel
  /// aligns the dynamic shared memory's start with.
  int64_t alignSlack() const { return wgmma ? 1024 : 0; }
  /// The O tile that the epilogue stages before writing it out: rows() rows
  /// of Dv 2-byte elements padded by 8, over the Q (and K) tiles, or after
  /// the V tiles in a persistent kernel.
  int64_t stagingBytes() const { return rows() * pitch(valueDim) * 2; }
  int64_t tilesEnd() const {
    return vOffset() + kvStages() * 2 * tk * rowElements(valueDim);
  }
  int64_t stagingOffset() const { return persistent ? tilesEnd() : 0; }
  /// Dynamic shared memory of a block's tiles: Q, K and V tiles of 2-byte
  /// elements, or the O staging tile where it is larger (Dv > 3 D + 16 or
  /// so); both in a persistent kernel.
  int64_t sharedBytes() const {
    if (persistent)
      return tilesEnd() + stagingBytes() + alignSlack();
    return std::max(tilesEnd(), stagingBytes()) + alignSlack();
  }
};

/// Where a block keeps a data-dependent mask's summaries and marks, after
/// (or, for the wgmma kernel, inside) its tiles.
struct MmaSharedLayout {
  /// The tables (kMaxSummaryTiles x 2 i32 each, one after the other) lie in
  /// the wgmma kernel's second K buffer and its V buffers, which no copy
  /// reaches before the live tiles are marked: their offset then counts
  /// from the 1024-byte-aligned start of the tiles, else from the start of
  /// the dynamic shared memory.
  bool tablesInTiles = false;
  int64_t tablesOffset = 0;
  /// The live and the all-kept bitmaps (kMaxSummaryTiles / 8 bytes each)
  /// and the first and last live tile (8 bytes), one after the other:
  /// kMarkWords words, the marks' copy in a kernel with a mark kernel.
  int64_t bitmapsOffset = 0;
  /// The block's dynamic shared memory.
  int64_t totalBytes = 0;
};

/// The layout of a block with `summaryTables` tables (0: a mask that is
/// not data-dependent, nothing after the tiles); `markKernel`: the mark
/// kernel's block, which has no tiles.
inline MmaSharedLayout mmaSharedLayout(const MmaKernelConfig &c,
                                       int64_t summaryTables, bool markKernel) {
  MmaSharedLayout l;
  const int64_t tableBytes = summaryTables * kMaxSummaryTiles * 8;
  const int64_t base = markKernel ? 0 : c.sharedBytes();
  l.tablesInTiles =
      !markKernel && c.wgmma && tableBytes <= c.tilesEnd() - c.secondKOffset();
  l.tablesOffset = l.tablesInTiles ? c.secondKOffset() : base;
  l.bitmapsOffset = base + (l.tablesInTiles ? 0 : tableBytes);
  l.totalBytes = summaryTables ? l.bitmapsOffset + 4 * kMarkWords : base;
  return l;
}

} // namespace attnc

#endif // ATTNC_ABI_MMAKERNELCONFIG_H
