//===- GpuKernelPlan.h - The shape of a GPU kernel, decided once ----------===//
//
// Everything about a compiled GPU kernel that its builder and its launcher
// must agree on: the kernel kind, the block's rows, threads, warps and
// kv-tile, the pipeline stages, the dynamic shared memory, whether the
// kernel is persistent, the mark kernel that runs before it, and whether
// they are launched as programmatic dependents. planGpuKernel
// (attnc/Conversion/GpuKernelPlanner.h) decides it once per variant; the
// kernel builders take it as it is, the compiled artifact carries it and
// the launcher reads it. Free of MLIR and LLVM.
//
// The text form (toText, fromText) is stored next to the kernel signature
// in kernel cache entries. One `key value...` line per field, in this
// order, after the magic line and before `end`:
//
//   attn-gpu-plan 1
//   kind wgmma                 simt, mma or wgmma
//   element f16                f16, bf16 or f32
//   head-dims 128 128          D and Dv
//   chip sm_90a                the PTX target
//   block 128 256 8 1          rows, threads, warps, m16 tiles per warp
//   tile-kv 128 2              keys per kv-tile, K and V buffers
//   min-blocks-per-sm 0        .minnctapersm (0: none)
//   summary-tables 1           data-dependent mask: tables of summaries
//   shared-bytes 166024        dynamic shared memory per block
//   persistent 0               0 or 1
//   marks 1 0 0 34 8328        present, per batch, per head, words per
//                              item, dynamic shared memory per block
//   dependent-launch 1         0 or 1
//   why-kind <text>            why this kernel (the rest of the line)
//   why-persistent <text>
//   why-marks <text>
//   end
//
// The number after the magic is raised whenever a field changes; a reader
// refuses other numbers.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_ABI_GPUKERNELPLAN_H
#define ATTNC_ABI_GPUKERNELPLAN_H

#include "attnc/Support/Npy.h"

#include <cstdint>
#include <string>

namespace attnc {

enum class GpuKernelKind {
  /// One thread per query row on CUDA cores (any element type and head
  /// dims; convert-attn-to-gpu-kernel).
  Simt,
  /// Tensor cores through mma.sync m16n8k16 (sm_80 and later;
  /// convert-attn-to-mma-kernel).
  MmaSync,
  /// Hopper's warpgroup MMA, wgmma.mma_async (sm_90a; the same pass with
  /// wgmma=true).
  Wgmma,
};

/// "simt", "mma", "wgmma".
const char *gpuKernelKindName(GpuKernelKind kind);
/// The kind named `name` (gpuKernelKindName's spelling); false if none.
bool parseGpuKernelKind(const std::string &name, GpuKernelKind &out);

/// The mark kernel (`@<variant>_marks`) of a data-dependent mask: it runs
/// first on the attention kernel's arguments plus the marks buffer, one
/// block per item, and writes `words` i32 words per item. Items are the
/// q-tiles, times the batches (perBatch) and the heads (perHead) where the
/// mask reads b and h: item = (b' * H' + h') * numQTiles + qt.
struct GpuMarkKernelPlan {
  bool present = false;
  bool perBatch = false, perHead = false;
  int64_t words = 0;
  int64_t sharedBytes = 0; // dynamic shared memory per block
};

struct GpuKernelPlan {
  GpuKernelKind kind = GpuKernelKind::MmaSync;
  DType elementType = DType::F16; // of Q, K, V and O: F16, BF16 or F32
  int64_t headDim = 0, valueDim = 0;
  /// The PTX target: the requested chip, or sm_90a for wgmma on sm_90.
  std::string chip;
  /// A block: the query rows of its work item and its threads (SIMT: one
  /// per row); tensor-core kernels: its warps (wgmma: 4 per warpgroup) and
  /// the m16 tiles of each warp.
  int64_t rowsPerBlock = 0, threadsPerBlock = 0;
  int64_t warps = 0, mTiles = 0;
  /// Keys per kv-tile, and the K and V buffers in shared memory (2: the
  /// wgmma kernel's software pipeline).
  int64_t tileKV = 0, kvStages = 1;
  /// Blocks that must fit on one SM at once (ptxas .minnctapersm; 0: no
  /// bound).
  int64_t minBlocksPerSM = 0;
  /// Data-dependent masks: the rank-1 integer tensor params whose
  /// per-kv-tile (min, max) tables the kernel (or its mark kernel) keeps in
  /// shared memory.
  int64_t summaryTables = 0;
  /// Dynamic shared memory per block (0 for SIMT, whose tiles are static).
  int64_t sharedBytes = 0;
  /// The kernel loops over its work items: the launcher starts at most as
  /// many blocks as fit on the GPU at once.
  bool persistent = false;
  GpuMarkKernelPlan marks;
  /// The kernels hold griddepcontrol instructions: launch them as
  /// programmatic dependents of the kernel before them on the stream.
  bool dependentLaunch = false;
  /// Why this kind, persistence and mark kernel (one line each).
  std::string whyKind, whyPersistent, whyMarks;

  /// The versioned text form (see the file comment).
  std::string toText() const;
  /// Parses toText()'s output; on malformed or out-of-range text returns
  /// false with a one-line `error`.
  static bool fromText(const std::string &text, GpuKernelPlan &out,
                       std::string &error);
  /// The plan for people: what the kernel is and why, several lines.
  std::string describe() const;
};

/// The element type's name in plans and options: "f16", "bf16", "f32".
const char *gpuElementTypeName(DType type);

} // namespace attnc

#endif // ATTNC_ABI_GPUKERNELPLAN_H
