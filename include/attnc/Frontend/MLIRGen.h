//===- MLIRGen.h - Lowering checked variants to the attn dialect ----------===//
//
// Turns the front end's CheckedVariants into `attn.variant` ops in a module.
// Every op carries the FileLineColLoc of the source construct it came from.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_MLIRGEN_H
#define ATTNC_FRONTEND_MLIRGEN_H

#include "attnc/Frontend/Checked.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/ArrayRef.h"

namespace attnc {

/// Registers in `ctx` the dialects that generated IR uses.
void loadFrontendDialects(mlir::MLIRContext &ctx);

/// Builds a module holding one `attn.variant` per entry of `variants`.
mlir::OwningOpRef<mlir::ModuleOp>
genModule(mlir::MLIRContext &ctx, llvm::ArrayRef<CheckedVariant> variants,
          mlir::Location moduleLoc);

} // namespace attnc

#endif // ATTNC_FRONTEND_MLIRGEN_H
