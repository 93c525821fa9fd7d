//===- VectorKernelBuilder.h - Vector pieces of the tiled CPU kernels -----===//
//
// What the tiled forward kernel (convert-attn-to-tiled-kernel) and the tiled
// backward kernel (convert-attn-to-tiled-backward-kernel) share: a builder
// for vectors of `vw` f32 lanes with small IR helpers, the exp2 polynomial,
// vw x vw register transposes, the register-blocked rank-1 update loop of
// every micro-kernel, and item regions evaluated for the lanes of a vector
// (the per-row uniform part kept scalar).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_CONVERSION_VECTORKERNELBUILDER_H
#define ATTNC_CONVERSION_VECTORKERNELBUILDER_H

#include "attnc/Conversion/KernelIRBuilder.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseSet.h"

namespace attnc {

/// Values of an item region that vary across the lanes of a row: those that
/// depend on kv_idx (argument 3) or on the later arguments (score, and dt
/// in attn.score_grad). Everything else is uniform per row and is computed
/// once as a scalar.
llvm::DenseSet<mlir::Value> varyingValues(mlir::Region &region);

/// True when every lane-varying op of the region maps elementwise onto
/// vectors (uniform ops may be anything: they stay scalar). Gradient
/// accumulations (no results) are allowed: see accumulateLanes.
bool isVectorizable(mlir::Region &region);

class VectorKernelBuilder : public KernelIRBuilder {
public:
  /// Vectors of `vw` f32 lanes; micro-kernels block `blockRows` rows.
  VectorKernelBuilder(mlir::Operation *anchor, int64_t vw, int64_t blockRows)
      : KernelIRBuilder(anchor), vw(vw), blockRows(blockRows) {
    vf = mlir::VectorType::get({vw}, b.getF32Type());
    vi = mlir::VectorType::get({vw}, b.getI32Type());
    vb = mlir::VectorType::get({vw}, b.getI1Type());
  }
  virtual ~VectorKernelBuilder() = default;

protected:
  using Value = mlir::Value;
  using ValueRange = mlir::ValueRange;
  template <typename T> using SmallVector = llvm::SmallVector<T>;
  template <typename T> using ArrayRef = llvm::ArrayRef<T>;

  Value splatF(double v) {
    return mlir::arith::ConstantOp::create(
        b, loc,
        mlir::DenseElementsAttr::get(vf,
                                     b.getF32FloatAttr(static_cast<float>(v))));
  }
  Value minIdx(Value x, Value y) {
    return mlir::arith::MinSIOp::create(b, loc, x, y);
  }
  Value loadF32(Value memref, ValueRange idx) {
    Value x = mlir::memref::LoadOp::create(b, loc, memref, idx);
    return x.getType().isF32()
               ? x
               : mlir::arith::ExtFOp::create(b, loc, b.getF32Type(), x)
                     .getResult();
  }
  Value vload(Value buf, Value offset) {
    return mlir::vector::LoadOp::create(b, loc, vf, buf, ValueRange{offset});
  }
  void vstore(Value v, Value buf, Value offset) {
    mlir::vector::StoreOp::create(b, loc, v, buf, ValueRange{offset});
  }
  Value offset(Value base, int64_t mul, Value idx, int64_t add = 0) {
    // base + idx * mul + add, on index values
    Value r = mlir::arith::MulIOp::create(b, loc, idx, cIdx(mul));
    if (base)
      r = mlir::arith::AddIOp::create(b, loc, base, r);
    if (add)
      r = mlir::arith::AddIOp::create(b, loc, r, cIdx(add));
    return r;
  }
  /// for (iv = lb; iv < ub; iv += step) body(iv), with the builder inside.
  void forLoop(Value lb, Value ub, int64_t step,
               llvm::function_ref<void(Value)> body) {
    mlir::scf::ForOp::create(
        b, loc, lb, ub, cIdx(step), ValueRange{},
        [&](mlir::OpBuilder &, mlir::Location, Value iv, ValueRange) {
          body(iv);
          mlir::scf::YieldOp::create(b, loc);
        });
  }
  /// 2^x for a vector of f32, by a degree-6 polynomial on x - round(x);
  /// exactly 0 below -126 (and so for -inf).
  Value vexp2(Value x);
  /// The scalar clones (and their broadcasts) of a region's uniform ops,
  /// kept across the vectors of one row.
  struct UniformCache {
    mlir::IRMapping scalars;
    llvm::DenseMap<Value, Value> broadcasts;
  };
  /// The region evaluated for the vw lanes of a row: `scalarArgs` are its
  /// uniform arguments (b, h, q_idx), `vectorArgs` the rest (kv_idx, score,
  /// ...). Uniform ops stay scalar, computed once per `cache` (a row's
  /// vectors share them) or per call without one; attn.accumulate_grad
  /// goes to accumulateLanes.
  Value vectorizedRegion(mlir::Region &region, ValueRange scalarArgs,
                         ValueRange vectorArgs, UniformCache *cache = nullptr);
  /// Emits the gradient accumulation `op` for the lanes of a vector:
  /// `value` is a vector, each index a scalar (uniform) or a vector of i32.
  /// Kernels that vectorise attn.score_grad implement it.
  virtual void accumulateLanes(mlir::attn::AccumulateGradOp op, Value value,
                               ArrayRef<Value> indices) {
    llvm_unreachable("this kernel has no gradient accumulation");
  }
  /// How rank1Block recognises the scalars a(k, r) of masked entries, whose
  /// terms it then skips: `kept` (none are masked), `zero` (softmax
  /// weights: 0.0) or `negativeZero` (plain weights: the bits of -0.0).
  enum class MaskedWeights { kept, zero, negativeZero };
  /// The register block of both micro-kernels: for k in [lb, ub),
  /// acc[r][c] += a(k, r) * bvec(k, c) for R = blockRows rows and n
  /// vectors, the n vectors loaded once per k and each a(k, r) broadcast;
  /// returns the accumulators, row-major. With `masked` other than `kept`,
  /// a scalar a(k, r) that marks a masked entry leaves its row's
  /// accumulators as they are, so that whatever bvec holds there (a NaN or
  /// an infinity in V) never reaches them.
  SmallVector<Value> rank1Block(Value lb, Value ub, ArrayRef<Value> init,
                                int64_t n,
                                llvm::function_ref<Value(Value, int64_t)> bvec,
                                llvm::function_ref<Value(Value, int64_t)> a,
                                MaskedWeights masked = MaskedWeights::kept);
  /// The vw x vw transpose of vw vectors of vw lanes.
  SmallVector<Value> transposeSquare(SmallVector<Value> rows);

  int64_t vw, blockRows;
  mlir::VectorType vf, vi, vb;
};

} // namespace attnc

#endif // ATTNC_CONVERSION_VECTORKERNELBUILDER_H
