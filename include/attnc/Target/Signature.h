//===- Signature.h - What a compiled variant takes and checks -------------===//
//
// The host-side description of a variant's kernel: its parameters with
// declared shapes and defaults, and its normalisation. It is read off the
// attn.variant before lowering, is free of MLIR types, and is what the run
// checks tensors and params against. It round-trips through a small line
// based text format so that a compiled object can be stored (kernel cache)
// or linked ahead of time (generated C headers) together with it; the text
// part lives in SignatureText.cpp, which needs neither MLIR nor LLVM.
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
  int size = 0;      // index into Sizes::names for Kind::Size
  int64_t value = 0; // Kind::Literal
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

  /// The text form: one `key value...` line per field, params in order,
  /// names and the normalisation as they are (they are identifiers), values
  /// as exact hexadecimal floats. See SignatureText.cpp for the grammar.
  std::string toText() const;
  /// Parses toText()'s output; on malformed text returns false with a
  /// one-line `error` naming the offending line.
  static bool fromText(const std::string &text, KernelSignature &out,
                       std::string &error);
};

/// A param's declared type as the language writes it: "f32", "f32[H, ?, 4]".
std::string declaredType(const SignatureParam &p);

/// The problem's sizes in SizeKind order: B, H, Hkv, Lq, Lkv, D, Dv.
struct Sizes {
  static constexpr const char *names[7] = {"B",   "H", "Hkv", "Lq",
                                           "Lkv", "D", "Dv"};
  int64_t value[7] = {0, 0, 0, 0, 0, 0, 0};
};

} // namespace attnc

#endif // ATTNC_TARGET_SIGNATURE_H
