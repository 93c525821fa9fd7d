//===- Sema.h - Semantic checks of .attn files ------------------*- C++ -*-===//
//
// Turns a parsed file into one CheckedVariant per attention block: resolves
// names, inlines defs and lets, types every expression and inserts implicit
// conversions, and enforces the item rules of the language contract. Every
// problem is reported as a located diagnostic in the user's terms.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_SEMA_H
#define ATTNC_FRONTEND_SEMA_H

#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Checked.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/LLVM.h"
#include "llvm/Support/SourceMgr.h"

#include <vector>

namespace attnc {

/// Checks every def and attention block of `file` against the prelude, which
/// it loads into `sm` as the buffer `<prelude>` (see Prelude.h). Returns the
/// variants in source order, or failure after reporting every error found.
mlir::FailureOr<std::vector<CheckedVariant>>
checkFile(const ast::File &file, llvm::SourceMgr &sm, mlir::MLIRContext *ctx);

/// Parses buffer `bufferId` of `sm` and checks it: parseFile then checkFile.
mlir::FailureOr<std::vector<CheckedVariant>>
parseAndCheck(llvm::SourceMgr &sm, unsigned bufferId, mlir::MLIRContext *ctx);

} // namespace attnc

#endif // ATTNC_FRONTEND_SEMA_H
