//===- MMAKernelConfig.h - Launch shape of the tensor-core kernel ---------===//
//
// The one place that derives the tile shape, the threads and the dynamic
// shared memory of the kernel that convert-attn-to-mma-kernel emits, so
// that the pass and the launcher that runs its output always agree.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_ABI_MMAKERNELCONFIG_H
#define ATTNC_ABI_MMAKERNELCONFIG_H

#include <algorithm>
#include <cstdint>
#include <string>

namespace attnc {

/// The gpu.func attribute (i64) with the dynamic shared memory a block of
/// the tensor-core kernel needs: sharedBytes() plus the mask summaries.
inline constexpr const char *kDynamicSharedBytesAttr =
    "attnc.dynamic_shared_bytes";
/// The gpu.func unit attribute of a persistent kernel: it loops over the
/// B * H * ceil(Lq / rows) work items itself, item blockIdx.x, then
/// blockIdx.x + gridDim.x, ..., so the launcher may start fewer blocks
/// (as many as fit on the GPU at once).
inline constexpr const char *kPersistentAttr = "attnc.persistent";
/// The gpu.func attribute (array<i64: perBatch, perHead, words>) of the
/// mark kernel that convert-attn-to-mma-kernel adds beside a kernel with a
/// data-dependent mask (`mark-kernel`): it takes the same arguments as that
/// kernel and runs first, one block per (b', h', q-tile) item with b' in
/// [0, B) if perBatch else 0 (the mask does not read b), h' likewise,
/// q-tile fastest, and writes `words` i32 words per item to the marks
/// buffer, the last argument of both: the q-tile's live kv-tiles (bitmap),
/// its all-kept kv-tiles (bitmap), the first and the last live one.
/// With wgmma both kernels hold griddepcontrol instructions, so that the
/// launcher may start the attention kernel as a programmatic dependent of
/// the mark kernel (its Q copy then overlaps the marking).
inline constexpr const char *kMarkKernelAttr = "attnc.mark_kernel";
/// The most dynamic shared memory a block may ask for on the chips the
/// kernels target (227 KiB on sm_90; sm_80 allows 163 KiB, and the
/// non-persistent layouts stay under 200 KiB).
inline constexpr int64_t kMaxDynamicSharedBytes = 227 * 1024;

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
  /// q-tile's live kv-tiles once per launch (kMarkKernelAttr), and a block
  /// reads them instead of summarising the row itself.
  bool markKernel = false;
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
  /// Dynamic shared memory of a block: Q, K and V tiles of 2-byte elements,
  /// or the O staging tile where it is larger (Dv > 3 D + 16 or so); both
  /// in a persistent kernel.
  int64_t sharedBytes() const {
    if (persistent)
      return tilesEnd() + stagingBytes() + alignSlack();
    return std::max(tilesEnd(), stagingBytes()) + alignSlack();
  }
};

/// Whether the wgmma kernel takes head dims D and Dv: multiples of 64 (the
/// 128-byte swizzle atom is 64 elements wide) up to 256.
inline bool wgmmaTakesHeadDims(int64_t headDim, int64_t valueDim) {
  auto ok = [](int64_t d) { return d > 0 && d % 64 == 0 && d <= 256; };
  return ok(headDim) && ok(valueDim);
}

/// The configuration for head dims D and Dv: 4 warps; 32 rows per warp
/// where the accumulators fit in registers (Dv <= 128), else 16; `tileKV`
/// keys per tile, or when 0, 64 (D + Dv <= 256) or 32; three blocks per SM
/// when D and Dv are at most 64. Returns false with
/// `error` when the dims or the tile are not multiples of 16 or the tiles
/// need more than 200 KiB of shared memory.
inline bool chooseMmaKernelConfig(int64_t headDim, int64_t valueDim,
                                  int64_t tileKV, MmaKernelConfig &c,
                                  std::string &error, bool wgmma = false) {
  c.headDim = headDim;
  c.valueDim = valueDim;
  if (wgmma) {
    // Two warpgroups, each 64 rows (16 per warp); 128-key tiles where the
    // S and O accumulators (tk / 2 + Dv / 2 registers) leave room, else 64.
    // Small heads take 64-key tiles: at 128 registers two blocks fit on an
    // SM (on the H100, D=64 causal 295 TF/s against 248 with 128 keys).
    c.wgmma = true;
    c.warps = 8;
    c.mTiles = 1;
    const bool small = headDim <= 64 && valueDim <= 64;
    c.tk = tileKV ? tileKV
                  : (!small && headDim <= 128 && valueDim <= 128 ? 128 : 64);
    c.minBlocksPerSM = small && c.tk <= 64 ? 2 : 0;
    if (!wgmmaTakesHeadDims(headDim, valueDim)) {
      error = "the wgmma kernel needs head dims that are multiples of 64 up "
              "to 256";
      return false;
    }
    if (c.tk <= 0 || c.tk % 16 || c.tk > 256) {
      error = "the wgmma kernel's tile-kv must be a multiple of 16 up to 256";
      return false;
    }
  } else {
    c.warps = 4;
    c.mTiles = valueDim <= 128 ? 2 : 1;
    c.tk = tileKV ? tileKV : (headDim + valueDim <= 256 ? 64 : 32);
    // Small heads with 64-key tiles leave room for three blocks per SM at
    // 168 registers; 128-key tiles need their S accumulators.
    c.minBlocksPerSM = headDim <= 64 && valueDim <= 64 && c.tk <= 64 ? 3 : 0;
    if (headDim <= 0 || headDim % 16 || valueDim <= 0 || valueDim % 16 ||
        c.tk <= 0 || c.tk % 16) {
      error = "the head dims and tile-kv must be positive multiples of 16";
      return false;
    }
  }
  if (c.sharedBytes() > 200 * 1024) {
    error = "the Q, K and V tiles need " + std::to_string(c.sharedBytes()) +
            " bytes of shared memory, more than 200 KiB";
    return false;
  }
  return true;
}

} // namespace attnc

#endif // ATTNC_ABI_MMAKERNELCONFIG_H
