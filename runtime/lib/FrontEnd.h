//===- FrontEnd.h - From .attn source to the IR a kernel is keyed on ------===//
//
// Private to the runtime. Runs the front end on a source buffer, keeps the
// chosen variant only, applies const-param overrides, canonicalises (so
// that whitespace, comments and let-names leave no trace but every change
// of meaning does) and prints the result in generic form without
// locations: the text that the kernel cache key hashes.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_RUNTIME_FRONTEND_H
#define ATTN_RUNTIME_FRONTEND_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <memory>
#include <string>

namespace attn::detail {

enum class FrontEndStatus { Ok, LanguageError, InvalidArgument, Internal };

struct KeyedModule {
  std::unique_ptr<mlir::MLIRContext> context;
  mlir::OwningOpRef<mlir::ModuleOp> module; // the chosen variant only
  std::string variant;                      // its name
  std::string canonicalIR;                  // generic form, no locations
};

/// Parses and checks `source` (diagnostics name it `bufferName`), chooses
/// `variant` (empty: the only one), applies `consts` and canonicalises.
/// On failure `error` holds the located diagnostics or a one-line message.
FrontEndStatus buildKeyedModule(const std::string &source,
                                const std::string &bufferName,
                                const std::string &variant,
                                const std::map<std::string, double> &consts,
                                KeyedModule &out, std::string &error);

} // namespace attn::detail

#endif // ATTN_RUNTIME_FRONTEND_H
