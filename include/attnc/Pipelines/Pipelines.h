//===- Pipelines.h - attnc's pass pipelines -------------------------------===//
//
// The pass pipelines from the attn dialect down to the LLVM dialect, and the
// registration of every dialect and pass that attnc and attn-opt use.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_PIPELINES_PIPELINES_H
#define ATTNC_PIPELINES_PIPELINES_H

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

} // namespace attnc

#endif // ATTNC_PIPELINES_PIPELINES_H
