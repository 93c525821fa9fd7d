//===- Parser.h - Recursive-descent parser for .attn files ------*- C++ -*-===//
//
// Parses one buffer of a SourceMgr into the surface AST. The parser stops at
// the first error, which it reports as a located diagnostic through the
// context's diagnostic engine. Expressions nested deeper than
// kMaxExprNesting, and syntax trees higher than kMaxExprTreeDepth (long
// chains of operators), are rejected, so that no input makes the parser or
// the passes after it recurse without bound.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_PARSER_H
#define ATTNC_FRONTEND_PARSER_H

#include "attnc/Frontend/AST.h"

#include "llvm/Support/SourceMgr.h"

#include <memory>

namespace attnc {

/// The deepest expression nesting (parentheses, operators, arguments) the
/// parser accepts. A chain of a left-associative operator (`a + b + c`)
/// is one level, however long.
constexpr unsigned kMaxExprNesting = 256;

/// The highest syntax tree of one expression the parser accepts: each
/// operator of a chain is one level of the tree, which every pass after
/// the parser walks recursively.
constexpr unsigned kMaxExprTreeDepth = 1024;

/// Parses buffer `bufferId` of `sm`; locations use the buffer's identifier as
/// file name. Returns null after reporting an error.
std::unique_ptr<ast::File> parseFile(llvm::SourceMgr &sm, unsigned bufferId,
                                     mlir::MLIRContext *ctx);

} // namespace attnc

#endif // ATTNC_FRONTEND_PARSER_H
