//===- Signature.h - What a compiled variant takes and checks -------------===//
//
// The host-side description of a variant's kernel: its parameters with
// declared shapes and defaults, and its normalisation. It is read off the
// attn.variant before lowering, is free of MLIR types, and is what the run
// checks tensors and params against.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_SIGNATURE_H
#define ATTNC_TARGET_SIGNATURE_H

#include "attnc/Support/Npy.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlir::attn {
class VariantOp;
}

namespace attnc {

/// Element type of a parameter.
enum class ParamType { F32, I32, Bool };
const char *paramTypeName(ParamType t); // "f32", "i32", "bool"

struct SignatureDim {
  enum class Kind { Size, Literal, Dynamic } kind = Kind::Dynamic;
  int size = 0;       // index into Sizes::names for Kind::Size
  int64_t value = 0;  // Kind::Literal
};

struct SignatureParam {
  std::string name;
  ParamType type = ParamType::F32;
  bool isConst = false;
  bool isTensor = false;
  std::vector<SignatureDim> dims;
  /// Default of a runtime scalar, value of a const (as double; ints exact).
  std::optional<double> value;
};

struct KernelSignature {
  std::string name;
  std::string normalization; // softmax, sigmoid, relu, linear
  bool hasSink = false;
  std::vector<SignatureParam> params; // declaration order, const ones too

  static KernelSignature fromVariant(mlir::attn::VariantOp variant);
  bool definesLSE() const { return normalization == "softmax"; }
};

/// The problem's sizes in SizeKind order: B, H, Hkv, Lq, Lkv, D, Dv.
struct Sizes {
  static constexpr const char *names[7] = {"B",   "H", "Hkv", "Lq",
                                           "Lkv", "D", "Dv"};
  int64_t value[7] = {0, 0, 0, 0, 0, 0, 0};
};

} // namespace attnc

#endif // ATTNC_TARGET_SIGNATURE_H
