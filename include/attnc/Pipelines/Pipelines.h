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

namespace attnc {

/// Adds every dialect that attnc's IR and pipelines produce.
void registerDialects(mlir::DialectRegistry &registry);

/// Registers attnc's passes, the upstream passes its pipelines use, and the
/// pipelines themselves (`attn-reference-cpu`, `attn-lower-to-llvm`).
void registerAllPassesAndPipelines();

/// attn -> reference scf loops (convert-attn-to-loops) -> cleanups.
/// `elementType` is "f32" or "f16".
void buildReferenceLoopsPipeline(mlir::OpPassManager &pm,
                                 llvm::StringRef elementType);

/// scf/arith/math/memref/func -> LLVM dialect.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);

} // namespace attnc

#endif // ATTNC_PIPELINES_PIPELINES_H
