//===- AST.h - Surface syntax tree of .attn files ---------------*- C++ -*-===//
//
// The parser's output: top-level defs and attention blocks with their items
// and expressions, exactly as written (no names resolved, no types). Every
// node carries the FileLineColLoc of the token that identifies it: the name or
// literal, the operator of a unary or binary expression, the '?' of a
// conditional, the '[' of an indexing, the keyword of an item. Sema turns one
// attention block of this tree into a CheckedVariant.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_AST_H
#define ATTNC_FRONTEND_AST_H

#include "attnc/Frontend/Checked.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attnc::ast {

/// A name together with where it is written.
struct Ident {
  std::string name;
  mlir::Location loc;
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Int,     // intValue; text is the spelling
    Float,   // floatValue; text is the spelling
    Bool,    // boolValue
    Name,    // text
    Unary,   // unaryOp on operands[0]
    Binary,  // binaryOp on operands[0], operands[1]
    Ternary, // operands[0] ? operands[1] : operands[2]
    Index,   // operands[0] indexed by operands[1...]
    Call,    // function `text` applied to operands
  };
  Kind kind;
  mlir::Location loc;
  std::string text;
  int64_t intValue = 0;
  double floatValue = 0.0;
  bool boolValue = false;
  UnaryOp unaryOp = UnaryOp::Neg;
  BinaryOp binaryOp = BinaryOp::Add;
  std::vector<ExprPtr> operands;
  /// Height of the tree rooted here (1 for a leaf); the parser bounds it.
  unsigned depth = 1;
  /// Nesting as a reader sees it (1 for a leaf): the height, except that
  /// the left operand of a left-associative chain (`a + b + c`) is not
  /// nested in it; the parser bounds it too.
  unsigned nesting = 1;

  Expr(Kind kind, mlir::Location loc) : kind(kind), loc(loc) {}
};

/// One dimension of a tensor type as written: a size name, a literal or '?'.
struct Dim {
  enum class Kind { Name, Literal, Dynamic };
  Kind kind;
  mlir::Location loc;
  std::string name;  // Kind::Name
  int64_t value = 0; // Kind::Literal
};

/// `f32`, `i32`, `bool` or a tensor of them (`f32[H, ?]`).
struct TypeRef {
  ScalarType elementType = ScalarType::F32;
  bool isTensor = false;
  std::vector<Dim> dims;
  mlir::Location loc;

  explicit TypeRef(mlir::Location loc) : loc(loc) {}
};

/// `NAME = EXPR` inside `normalize KIND(...)`.
struct NamedArg {
  Ident name;
  ExprPtr value;
};

struct Item {
  enum class Kind { Param, Let, Scale, Score, Mask, Normalize };
  Kind kind;
  mlir::Location loc;          // the first token of the item
  Ident name;                  // Param, Let; Normalize: the normalization
  bool isConst = false;        // Param
  std::optional<TypeRef> type; // Param
  ExprPtr value; // Param: default or const value; Let, Scale, Score, Mask
  bool hasArgList = false;    // Normalize: `KIND(...)` was written
  std::vector<NamedArg> args; // Normalize

  Item(Kind kind, mlir::Location loc) : kind(kind), loc(loc), name{"", loc} {}
};

struct Attention {
  Ident name;
  mlir::Location loc; // the `attention` keyword
  std::vector<Item> items;
};

struct Def {
  Ident name;
  mlir::Location loc; // the `def` keyword
  std::vector<Ident> params;
  ExprPtr body;
};

struct File {
  std::vector<Def> defs;
  std::vector<Attention> attentions;
};

/// Line and column of a location made by the parser ({0, 0} for others).
std::pair<unsigned, unsigned> lineAndColumn(mlir::Location loc);

/// "; did you mean 'X'?" for the first candidate closest to `name` within two
/// edits (insertion, deletion, replacement or swap of adjacent characters;
/// fewer edits than either name has characters), or "".
std::string didYouMean(llvm::StringRef name,
                       llvm::ArrayRef<llvm::StringRef> candidates);

} // namespace attnc::ast

namespace attnc {

/// Prints `file` as an indented tree, one node per line, each node followed by
/// `@LINE:COL`; defs and attention blocks appear in source order.
void printAST(const ast::File &file, llvm::raw_ostream &os);

} // namespace attnc

#endif // ATTNC_FRONTEND_AST_H
