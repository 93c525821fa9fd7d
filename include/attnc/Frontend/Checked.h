//===- Checked.h - The checked, resolved form of one attention variant ----===//
//
// The front end's output and MLIR generation's input. Sema turns the surface
// AST of one `attention` block into a CheckedVariant: every name resolved to
// what it denotes, every def call and let inlined (locations of inlined nodes
// point into the def or let body), every implicit conversion made explicit as
// a Cast node, and every node typed. MLIR generation is then a plain tree walk
// with no checks of its own.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_CHECKED_H
#define ATTNC_FRONTEND_CHECKED_H

#include "mlir/IR/Location.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attnc {

/// Scalar types of the language.
enum class ScalarType { Bool, I32, F32 };

/// Spelling of a scalar type as the language writes it ("bool", "i32", "f32").
const char *scalarTypeName(ScalarType t);

/// The named sizes of a problem.
enum class SizeKind { B, H, Hkv, Lq, Lkv, D, Dv };
const char *sizeKindName(SizeKind k);

/// The index variables of the current score entry.
enum class IndexVar { B, H, Q, KV, HKV };

/// Builtin functions of the language (casts are Cast nodes, not calls).
enum class Builtin {
  Exp,
  Log,
  Sqrt,
  Tanh,
  Sigmoid,
  Abs,
  Floor,
  Ceil,
  Min,
  Max,
  Pow
};

enum class UnaryOp { Neg, Not };

/// Binary operators. Div and Mod on I32 are floor division / floor modulo.
enum class BinaryOp {
  Add,
  Sub,
  Mul,
  Div,
  Mod,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,
  And,
  Or
};

/// Spelling of a binary operator as the language writes it ("+", "&&", ...).
const char *binaryOpSpelling(BinaryOp op);

struct TExpr;
using TExprPtr = std::unique_ptr<TExpr>;

/// A typed, resolved expression node.
struct TExpr {
  enum class Kind {
    ConstInt,   // intValue, type I32
    ConstFloat, // floatValue, type F32
    ConstBool,  // boolValue, type Bool
    Index,      // index (b, h, q_idx, kv_idx, hkv), type I32
    Size,       // size, type I32
    Score,      // the scaled dot product, type F32 (only in score)
    Param,      // scalar param `name` (const or runtime), type = its type
    TensorLoad, // tensor param `name` indexed by operands (all I32)
    Unary,      // unaryOp on operands[0]
    Binary,     // binaryOp on operands[0], operands[1] (same type)
    Select,     // operands[0] ? operands[1] : operands[2]
    Call,       // builtin on operands (already converted to the right types)
    Cast,       // operands[0] converted to `type` (F32<->I32, Bool->I32/F32)
  };
  Kind kind;
  ScalarType type;
  mlir::Location loc;
  int64_t intValue = 0;
  double floatValue = 0.0;
  bool boolValue = false;
  IndexVar index = IndexVar::B;
  SizeKind size = SizeKind::B;
  std::string name; // Param, TensorLoad
  UnaryOp unaryOp = UnaryOp::Neg;
  BinaryOp binaryOp = BinaryOp::Add;
  Builtin builtin = Builtin::Exp;
  std::vector<TExprPtr> operands;

  TExpr(Kind kind, ScalarType type, mlir::Location loc)
      : kind(kind), type(type), loc(loc) {}
};

/// One dimension of a tensor param's declared shape.
struct ParamDim {
  enum class Kind { Size, Literal, Dynamic };
  Kind kind = Kind::Dynamic;
  SizeKind size = SizeKind::B; // Kind::Size
  int64_t value = 0;           // Kind::Literal
};

/// A literal value of a param (default or const value), of the param's type.
struct ParamValue {
  ScalarType type = ScalarType::F32;
  int64_t intValue = 0;   // I32
  double floatValue = 0;  // F32
  bool boolValue = false; // Bool
};

struct ParamDecl {
  std::string name;
  mlir::Location loc;
  ScalarType elementType = ScalarType::F32;
  bool isConst = false;
  bool isTensor = false;
  std::vector<ParamDim> dims;      // tensors only
  std::optional<ParamValue> value; // const value, or runtime default

  explicit ParamDecl(mlir::Location loc) : loc(loc) {}
};

enum class Normalization { Softmax, Sigmoid, Relu, Linear };

struct CheckedVariant {
  std::string name;
  mlir::Location loc;
  std::vector<ParamDecl> params; // in declaration order
  TExprPtr scale;                // F32; null when absent (default 1 / sqrt(D))
  TExprPtr score;                // F32; null when absent (identity)
  TExprPtr mask;                 // Bool; null when absent (all true)
  Normalization normalization = Normalization::Softmax;
  TExprPtr sink; // F32 expression of b, h, sizes, params; softmax only
  std::optional<mlir::Location> normalizeLoc;

  explicit CheckedVariant(mlir::Location loc) : loc(loc) {}
};

} // namespace attnc

#endif // ATTNC_FRONTEND_CHECKED_H
