//===- Parser.h - Recursive-descent parser for .attn files ------*- C++ -*-===//
//
// Parses one buffer of a SourceMgr into the surface AST. The parser stops at
// the first error, which it reports as a located diagnostic through the
// context's diagnostic engine. Expressions nested deeper than
// kMaxExprNesting are rejected, so no input makes it recurse without bound.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_PARSER_H
#define ATTNC_FRONTEND_PARSER_H

#include "attnc/Frontend/AST.h"

#include "llvm/Support/SourceMgr.h"

#include <memory>

namespace attnc {

/// The deepest expression nesting (parentheses, operators, arguments) the
/// parser accepts.
constexpr unsigned kMaxExprNesting = 256;

/// Parses buffer `bufferId` of `sm`; locations use the buffer's identifier as
/// file name. Returns null after reporting an error.
std::unique_ptr<ast::File> parseFile(llvm::SourceMgr &sm, unsigned bufferId,
                                     mlir::MLIRContext *ctx);

} // namespace attnc

#endif // ATTNC_FRONTEND_PARSER_H
