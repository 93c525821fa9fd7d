//===- VariantSelection.h - Choosing the attention block to compile -------===//
//
// A file may hold several attention blocks; a compile takes one. The one
// place that chooses it (by name, or the only one) with the same messages
// for attnc and the runtime, and that removes the others from the module.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_VARIANTSELECTION_H
#define ATTNC_FRONTEND_VARIANTSELECTION_H

#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/ArrayRef.h"

#include <string>

namespace attnc {

/// The block to compile among `names` (in file order): `wanted`, or the
/// only one when `wanted` is empty. False with a one-line `error`: no block
/// of that name in `file` (with a suggestion, or the names it has), no
/// block at all, or several and none wanted (`howToChoose` says how to
/// choose one: "--variant NAME", "the variant option").
bool chooseVariant(llvm::ArrayRef<std::string> names, const std::string &wanted,
                   const std::string &file, const std::string &howToChoose,
                   std::string &chosen, std::string &error);

/// The names of the attn.variant ops of `module`, in order.
std::vector<std::string> variantNames(mlir::ModuleOp module);

/// Erases every op of `module` but the attn.variant named `name`, which it
/// returns (null when there is none).
mlir::attn::VariantOp keepOnlyVariant(mlir::ModuleOp module,
                                      llvm::StringRef name);

} // namespace attnc

#endif // ATTNC_FRONTEND_VARIANTSELECTION_H
