//===- Pipelines.h - attnc's pass pipelines -------------------------------===//
//
// The pass pipelines from the attn dialect down to the LLVM dialect, and the
// registration of every dialect and pass that attnc and attn-opt use.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_PIPELINES_PIPELINES_H
#define ATTNC_PIPELINES_PIPELINES_H

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

/// attn -> differentiated attn -> reference backward scf loops
/// (convert-attn-to-backward-loops) -> cleanups.
void buildReferenceBackwardPipeline(mlir::OpPassManager &pm,
                                    llvm::StringRef elementType);

/// attn -> attn with each variant's backward form (attn-differentiate),
/// then canonicalize and cse: what `attnc --emit=grad-mlir` prints.
void buildDifferentiatePipeline(mlir::OpPassManager &pm);

struct TiledPipelineOptions {
  std::string elementType = "f32";
  int64_t headDim = 64, valueDim = 64, tileQ = 128, tileKV = 64;
  int64_t vectorWidth = 16;
};

/// attn -> tiled, vectorised work-item kernels (convert-attn-to-tiled-kernel)
/// -> cleanups.
void buildTiledKernelPipeline(mlir::OpPassManager &pm,
                              const TiledPipelineOptions &options);

/// attn -> differentiated attn -> tiled backward work items
/// (convert-attn-to-tiled-backward-kernel) -> polynomial math -> cleanups.
void buildTiledBackwardPipeline(mlir::OpPassManager &pm,
                                const TiledPipelineOptions &options);

/// scf/arith/math/memref/func -> LLVM dialect.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);

struct GpuPipelineOptions {
  std::string elementType = "f16"; // f16, bf16 or f32
  int64_t headDim = 64, valueDim = 64, tileQ = 128, tileKV = 0;
  /// "mma" (tensor cores, convert-attn-to-mma-kernel), "wgmma" (the same
  /// on Hopper's warpgroup MMA, sm_90 only), "simt" (one thread
  /// per row, convert-attn-to-gpu-kernel) or "auto": wgmma on sm_90 for
  /// head dims 64, 128, 192 and 256, else mma where it applies (f16 or bf16,
  /// head dims multiples of 16 up to 256), else simt.
  std::string kernel = "auto";
  std::string chip = "sm_80"; // sm_80 or later
  /// The wgmma kernel is persistent for data-dependent masks (see
  /// convert-attn-to-mma-kernel's `persistent`; off by default: measured
  /// slower on the H100); false: never.
  bool persistent = false;
  /// Data-dependent masks: a mark kernel, run first, works out each
  /// q-tile's live kv-tiles once per launch (convert-attn-to-mma-kernel's
  /// `mark-kernel`); false: every block of the attention kernel does.
  bool markKernel = true;
  unsigned optLevel = 3;
};

/// The launch shape of the kernel that `options` selects: the kernel kind
/// ("mma", "wgmma" or "simt"), the query rows per block and the threads per
/// block.
struct GpuLaunchShape {
  std::string kernel;
  int64_t rowsPerBlock = 0, threadsPerBlock = 0;
  int64_t sharedBytes = 0; // dynamic shared memory per block
};
/// Resolves options.kernel; false (with `error`) when the requested kernel
/// cannot take these options.
bool resolveGpuKernel(const GpuPipelineOptions &options, GpuLaunchShape &shape,
                      std::string &error);
/// Whether `chip` is a Hopper GPU (sm_90 or sm_90a), where wgmma exists.
bool isHopperChip(llvm::StringRef chip);

/// attn -> gpu.module/gpu.func kernels (convert-attn-to-mma-kernel or
/// convert-attn-to-gpu-kernel, see resolveGpuKernel) -> polynomial math ->
/// cleanups. Options that resolveGpuKernel rejects give a pipeline that
/// fails with its message.
void buildGpuKernelPipeline(mlir::OpPassManager &pm,
                            const GpuPipelineOptions &options);

/// gpu.module kernels of scf/arith/math/memref -> the LLVM and NVVM dialects
/// (convert-gpu-to-nvvm); math ops that NVPTX implements natively (exp2,
/// sqrt, fma) become LLVM intrinsics, so libdevice is never needed.
void buildGpuLowerToNVVMPipeline(mlir::OpPassManager &pm);

/// NVVM-dialect gpu.modules -> gpu.binary holding PTX text
/// (nvvm-attach-target, gpu-module-to-binary{format=isa}).
void buildGpuToPtxPipeline(mlir::OpPassManager &pm,
                           const GpuPipelineOptions &options);

/// The PTX text of the gpu.binary ops of `module` (after
/// buildGpuToPtxPipeline), concatenated; empty when there is none.
std::string extractPtx(mlir::ModuleOp module);

/// The PTX `.target`/`.version` features for an `sm_XY` chip.
std::string ptxFeaturesFor(llvm::StringRef chip);

} // namespace attnc

#endif // ATTNC_PIPELINES_PIPELINES_H
