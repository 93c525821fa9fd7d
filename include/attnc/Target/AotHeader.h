//===- AotHeader.h - C headers for ahead-of-time compiled kernels ---------===//
//
// `attnc FILE.attn --emit=header` writes a C header with a typed entry point
// for one variant; together with the object from `--emit=obj` and the
// attn_launcher library (runtime/include/attn/attn_launch.h) a program runs
// the kernel with no compiler in the process. Free of MLIR and LLVM.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_AOTHEADER_H
#define ATTNC_TARGET_AOTHEADER_H

#include "attnc/Target/Signature.h"

#include <string>

namespace attnc {

/// How the object's kernel was built (what attn_launch must know).
struct AotKernelShape {
  bool tiled = false; // else the reference kernel
  int64_t tileQ = 0, headDim = 0, valueDim = 0, tileKV = 64, vectorWidth = 16;

  /// attn_launch's kernel description: "reference" or
  /// "tiled tile_q=64 d=64 dv=64".
  std::string spec() const;
};

/// The header for `sig` compiled for `elementType` tensors as `shape`. It
/// declares the object's packed entry point `_mlir_<name>`, embeds the
/// signature text and defines
///
///   static inline attn_status attn_<name>(const attn_tensor *q,
///       const attn_tensor *k, const attn_tensor *v, const attn_tensor *o,
///       const attn_tensor *lse, <one argument per runtime param>,
///       int threads, char *err, size_t errlen);
///
/// with tensor params as `const attn_tensor *`, f32 as float, i32 as int32_t
/// and bool as int. `origin` (file name, target) goes into the comment.
std::string emitAotHeader(const KernelSignature &sig, DType elementType,
                          const AotKernelShape &shape,
                          const std::string &origin);

} // namespace attnc

#endif // ATTNC_TARGET_AOTHEADER_H
