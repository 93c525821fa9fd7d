//===- Checked.cpp - Names of the checked form's enumerations -------------===//
//
// Spellings of scalar types, sizes and operators as the language writes them,
// shared by diagnostics, the AST printer and MLIR generation.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/Checked.h"

namespace attnc {

const char *scalarTypeName(ScalarType t) {
  switch (t) {
  case ScalarType::Bool:
    return "bool";
  case ScalarType::I32:
    return "i32";
  case ScalarType::F32:
    return "f32";
  }
  return "?";
}

const char *sizeKindName(SizeKind k) {
  switch (k) {
  case SizeKind::B:
    return "B";
  case SizeKind::H:
    return "H";
  case SizeKind::Hkv:
    return "Hkv";
  case SizeKind::Lq:
    return "Lq";
  case SizeKind::Lkv:
    return "Lkv";
  case SizeKind::D:
    return "D";
  case SizeKind::Dv:
    return "Dv";
  }
  return "?";
}

const char *binaryOpSpelling(BinaryOp op) {
  static const char *const spellings[] = {
      "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||"};
  return spellings[static_cast<int>(op)];
}

} // namespace attnc
