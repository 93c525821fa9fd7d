//===- ExpandAttnOps.h - Expanding attn expression ops inside kernels -----===//
//
// Kernel generators clone a variant's regions into their loops and then call
// expandAttnOps to replace what those regions still hold of the dialect:
// attn.size by the kernel's sizes, attn.param_get by arguments or folded
// constants, attn.param_load by a bounds-checked memref load, and
// attn.floordiv / attn.floormod by checked integer arithmetic. Run-time
// errors are written to the status memref (see KernelABI.h).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_CONVERSION_EXPANDATTNOPS_H
#define ATTNC_CONVERSION_EXPANDATTNOPS_H

#include "attnc/Analysis/TileAbstraction.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"

namespace attnc {

/// A runtime parameter as a kernel argument.
struct KernelParamArg {
  mlir::Value arg; // memref (tensor) or i32/f32 (scalar; bools as i32)
  int ordinal = 0; // position among the runtime params (for errors)
};

struct KernelContext {
  mlir::attn::VariantOp variant;
  mlir::Value sizeI32[7]; // B, H, Hkv, Lq, Lkv, D, Dv as i32
  llvm::StringMap<KernelParamArg> params;
  mlir::Value status; // memref<kStatusWords x i32>
};

/// The kernel argument type of a runtime param (KernelABI.h).
mlir::Type kernelParamType(mlir::Builder &b, mlir::attn::ParamOp param);

/// The leading argument types of every kernel (KernelABI.h): Q, K, V, O
/// (strided rank-4 memrefs of `elementType`), LSE, the runtime params of
/// `variant` in declaration order, the flag word and the status memref.
/// `runtimeParams` receives those params.
llvm::SmallVector<mlir::Type>
kernelArgumentTypes(mlir::Builder &b, mlir::attn::VariantOp variant,
                    mlir::Type elementType,
                    llvm::SmallVectorImpl<mlir::attn::ParamOp> &runtimeParams);

/// The leading arguments of a kernel's entry block, in kernelArgumentTypes
/// order, and the problem's sizes read off Q, K and V.
struct KernelEntry {
  mlir::Value q, k, v, o, lse, flags, status;
  mlir::Value sizeIdx[7], sizeI32[7]; // B, H, Hkv, Lq, Lkv, D, Dv
  unsigned numLeading = 0;            // arguments up to the status memref
};

/// Binds the leading arguments of `entry`, emits the sizes at the builder's
/// insertion point and fills `ctx` (variant, runtime params, status, sizes).
KernelEntry bindKernelEntry(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::attn::VariantOp variant, mlir::Block *entry,
                            llvm::ArrayRef<mlir::attn::ParamOp> runtimeParams,
                            KernelContext &ctx);

/// A strided memref of dynamic shape, as kernels take every tensor.
mlir::MemRefType stridedMemRef(mlir::Type elementType, unsigned rank);

/// Clones the single block of `region` at the builder's insertion point with
/// its arguments bound to `args`; returns the value it yields.
mlir::Value inlineItemRegion(mlir::OpBuilder &b, mlir::Region &region,
                             mlir::ValueRange args);

/// The range of the elements of `tensor` (a memref of i32, or of i8 holding
/// bools when `isBool`) over an index box (i64 bounds), read with nested
/// loops when the box lies inside the tensor and holds at most `maxEntries`
/// entries, and the whole range of the type otherwise. Emitted at the
/// builder's insertion point; the tile abstraction's tensorRange hook.
IntervalValues emitTensorBoxRange(mlir::OpBuilder &b, mlir::Location loc,
                                  mlir::Value tensor, bool isBool,
                                  llvm::ArrayRef<IntervalValues> box,
                                  int64_t maxEntries = 4096);

/// Replaces every attn expression op nested in `root`.
void expandAttnOps(mlir::Operation *root, const KernelContext &ctx);

} // namespace attnc

#endif // ATTNC_CONVERSION_EXPANDATTNOPS_H
