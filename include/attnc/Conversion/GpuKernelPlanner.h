//===- GpuKernelPlanner.h - Deciding a variant's GPU kernel ---------------===//
//
// planGpuKernel is the one place that decides what GPU kernel a variant
// gets (GpuKernelPlan, attnc/ABI/GpuKernelPlan.h): from what the user asks
// (GpuKernelOptions), the chip, and what the kernel needs to know of the
// variant (GpuVariantTraits: its data-dependent mask). The kernel passes
// take the plan as it is, the pipelines choose their passes from it, and
// the launcher runs the kernel it describes.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_CONVERSION_GPUKERNELPLANNER_H
#define ATTNC_CONVERSION_GPUKERNELPLANNER_H

#include "attnc/ABI/GpuKernelPlan.h"

#include "dialects/attn/AttnDialect.h"

#include "llvm/ADT/SmallVector.h"

#include <optional>
#include <string>

namespace attnc {

/// What the user asks of a GPU kernel (attn::CompileOptions, attnc's
/// --gpu-* options, the attn-gpu-kernel pipeline's options).
struct GpuKernelOptions {
  DType elementType = DType::F16; // F16, BF16 or F32
  int64_t headDim = 64, valueDim = 64;
  /// SIMT: rows (= threads) per block; the tensor-core kernels' shapes are
  /// the planner's.
  int64_t tileQ = 128;
  /// Keys per kv-tile; 0: the planner's choice.
  int64_t tileKV = 0;
  /// The kernel kind; none: the planner's choice (wgmma on Hopper for head
  /// dims 64, 128, 192 and 256, else mma.sync for f16 and bf16 where it
  /// applies, else SIMT).
  std::optional<GpuKernelKind> kernel;
  std::string chip = "sm_80"; // sm_80 or later
  /// A persistent wgmma kernel for data-dependent masks, where it fits
  /// (off by default: measured slower on the H100).
  bool persistent = false;
  /// Data-dependent masks: a mark kernel works out each q-tile's live
  /// kv-tiles once per launch.
  bool markKernel = true;

  /// "dtype=f16 lowering=gpu kernel=auto d=64 ...": every field, for cache
  /// keys and manifests.
  std::string describe() const;
};

/// What a plan needs to know of the variant.
struct GpuVariantTraits {
  /// The rank-1 integer tensor params the mask reads (data-dependent
  /// masks): their per-kv-tile summaries decide the live kv-tiles at run
  /// time.
  int64_t summaryTables = 0;
  /// Whether the mask reads b and h.
  bool maskReadsBatch = false, maskReadsHead = false;
};

/// The runtime params of `variant` that maskSummaryParams's tables
/// summarise, in the order the mask first reads them.
llvm::SmallVector<mlir::attn::ParamOp>
maskSummaryParams(mlir::attn::VariantOp variant);
GpuVariantTraits gpuVariantTraits(mlir::attn::VariantOp variant);

/// Whether the GPU kernels can target `chip`: sm_XY with XY >= 80, or an
/// architecture-specific sm_XYa.
bool isSupportedGpuChip(const std::string &chip);
/// Whether `chip` is a Hopper GPU (sm_90 or sm_90a), where wgmma exists.
bool isHopperChip(const std::string &chip);

/// The kernel kind `options` select (the same for every variant), with why
/// in `why`; false with `error` when the requested kind cannot take them.
bool chooseGpuKernelKind(const GpuKernelOptions &options, GpuKernelKind &kind,
                         std::string &why, std::string &error);

/// The PTX target for a kernel of `kind` on `chip`: sm_90a for wgmma on
/// sm_90 (wgmma exists only there), else the chip.
std::string ptxChipFor(GpuKernelKind kind, const std::string &chip);

/// The plan of the kernel for a variant with `traits`; false with a
/// one-line `error` when the options cannot be honoured.
bool planGpuKernel(const GpuVariantTraits &traits,
                   const GpuKernelOptions &options, GpuKernelPlan &plan,
                   std::string &error);

} // namespace attnc

#endif // ATTNC_CONVERSION_GPUKERNELPLANNER_H
