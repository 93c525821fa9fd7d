//===- Pipelines.h - attnc's pass pipelines -------------------------------===//
//
// The pass pipelines from the attn dialect down to the LLVM dialect, and the
// registration of every dialect and pass that attnc and attn-opt use.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_PIPELINES_PIPELINES_H
#define ATTNC_PIPELINES_PIPELINES_H

#include "attnc/Conversion/GpuKernelPlanner.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringRef.h"

#include <string>

namespace attnc {

/// Adds every dialect that attnc's IR and pipelines produce.
void registerDialects(mlir::DialectRegistry &registry);

/// Registers attnc's passes, the upstream passes its pipelines use, and the
/// pipelines themselves (`attn-reference-loops`, `attn-lower-to-llvm`).
void registerAllPassesAndPipelines();

/// attn -> reference scf loops (convert-attn-to-loops) -> cleanups.
/// `elementType` is "f32" or "f16".
void buildReferenceLoopsPipeline(mlir::OpPassManager &pm,
                                 llvm::StringRef elementType);

struct TiledPipelineOptions {
  std::string elementType = "f32";
  int64_t headDim = 64, valueDim = 64, tileQ = 128, tileKV = 64;
  int64_t vectorWidth = 16;
};

/// attn -> tiled, vectorised work-item kernels (convert-attn-to-tiled-kernel)
/// -> cleanups.
void buildTiledKernelPipeline(mlir::OpPassManager &pm,
                              const TiledPipelineOptions &options);

/// scf/arith/math/memref/func -> LLVM dialect.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);

/// attn -> the gpu.module/gpu.func kernel that `plan` (planGpuKernel)
/// describes, for the module's one variant (convert-attn-to-mma-kernel or
/// convert-attn-to-gpu-kernel) -> polynomial math -> cleanups.
void buildGpuKernelPipeline(mlir::OpPassManager &pm, const GpuKernelPlan &plan);
/// The same for every variant of a module, each planned from `options`
/// (attn-opt's attn-gpu-kernel). Options that the planner rejects give a
/// pipeline that fails with its message.
void buildGpuKernelPipeline(mlir::OpPassManager &pm,
                            const GpuKernelOptions &options);

/// gpu.module kernels of scf/arith/math/memref -> the LLVM and NVVM dialects
/// (convert-gpu-to-nvvm); math ops that NVPTX implements natively (exp2,
/// sqrt, fma) become LLVM intrinsics, so libdevice is never needed.
void buildGpuLowerToNVVMPipeline(mlir::OpPassManager &pm);

/// NVVM-dialect gpu.modules -> gpu.binary holding PTX text for `chip` (a
/// plan's: sm_90a for wgmma) at LLVM's `optLevel` (nvvm-attach-target,
/// gpu-module-to-binary{format=isa}).
void buildGpuToPtxPipeline(mlir::OpPassManager &pm, llvm::StringRef chip,
                           unsigned optLevel = 3);

/// The PTX text of the gpu.binary ops of `module` (after
/// buildGpuToPtxPipeline), concatenated; empty when there is none.
std::string extractPtx(mlir::ModuleOp module);

/// The PTX `.target`/`.version` features for an `sm_XY` chip.
std::string ptxFeaturesFor(llvm::StringRef chip);

} // namespace attnc

#endif // ATTNC_PIPELINES_PIPELINES_H
