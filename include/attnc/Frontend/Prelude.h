//===- Prelude.h - The standard prelude of the .attn language ---*- C++ -*-===//
//
// The prelude is ordinary .attn source (lib/Frontend/prelude.attn) holding
// only defs, embedded into the compiler at build time. Sema parses it into
// the same SourceMgr as the user's file, under the buffer name `<prelude>`,
// so diagnostics inside prelude defs quote the prelude's own lines.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_PRELUDE_H
#define ATTNC_FRONTEND_PRELUDE_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SourceMgr.h"

namespace attnc {

/// The buffer identifier, and so the file name of locations, of the prelude.
constexpr llvm::StringLiteral kPreludeBufferName = "<prelude>";

/// The prelude's source text.
llvm::StringRef getPreludeSource();

/// Returns the id of the `<prelude>` buffer of `sm`, adding it when missing.
unsigned loadPrelude(llvm::SourceMgr &sm);

} // namespace attnc

#endif // ATTNC_FRONTEND_PRELUDE_H
