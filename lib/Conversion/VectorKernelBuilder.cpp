//===- VectorKernelBuilder.cpp - Vector pieces of the tiled CPU kernels ---===//

#include "attnc/Conversion/VectorKernelBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace attnc;

llvm::DenseSet<Value> attnc::varyingValues(Region &region) {
  Block &block = region.front();
  llvm::DenseSet<Value> varying;
  for (unsigned i = 3; i < block.getNumArguments(); ++i)
    varying.insert(block.getArgument(i));
  for (Operation &op : block.without_terminator()) {
    bool v = false;
    op.walk([&](Operation *inner) {
      for (Value operand : inner->getOperands())
        v |= varying.contains(operand);
    });
    if (v)
      for (Value r : op.getResults())
        varying.insert(r);
  }
  return varying;
}

bool attnc::isVectorizable(Region &region) {
  llvm::DenseSet<Value> varying = varyingValues(region);
  for (Operation &op : region.front().without_terminator()) {
    if (op.getNumResults() == 0 || !varying.contains(op.getResult(0)))
      continue;
    if (op.getNumRegions() != 0)
      return false;
    if (llvm::isa<attn::FloorDivOp, attn::FloorModOp>(op)) {
      APInt c;
      if (matchPattern(op.getOperand(1), m_ConstantInt(&c)) && !c.isZero())
        continue;
      return false;
    }
    Dialect *d = op.getDialect();
    if (d && (d->getNamespace() == "arith" || d->getNamespace() == "math") &&
        op.hasTrait<OpTrait::Elementwise>())
      continue;
    return false;
  }
  return true;
}

Value VectorKernelBuilder::vexp2(Value x) {
  // Cephes exp2f: x = n + f, f in [-0.5, 0.5], 2^f = 1 + f P(f).
  static const double p[] = {1.535336188319500e-4, 1.339887440266574e-3,
                             9.618437357674640e-3, 5.550332471162809e-2,
                             2.402264791363012e-1, 6.931472028550421e-1};
  Value xc = arith::MaximumFOp::create(b, loc, x, splatF(-127.0));
  xc = arith::MinimumFOp::create(b, loc, xc, splatF(127.0));
  Value n = math::FloorOp::create(
      b, loc, arith::AddFOp::create(b, loc, xc, splatF(0.5)));
  Value f = arith::SubFOp::create(b, loc, xc, n);
  Value poly = splatF(p[0]);
  for (int i = 1; i < 6; ++i)
    poly = math::FmaOp::create(b, loc, poly, f, splatF(p[i]));
  poly = math::FmaOp::create(b, loc, poly, f, splatF(1.0));
  Value ni = arith::FPToSIOp::create(b, loc, vi, n);
  Value bias = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(vi, b.getI32IntegerAttr(127)));
  Value sh = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(vi, b.getI32IntegerAttr(23)));
  Value bits = arith::ShLIOp::create(
      b, loc, arith::AddIOp::create(b, loc, ni, bias), sh);
  Value scale = arith::BitcastOp::create(b, loc, vf, bits);
  Value r = arith::MulFOp::create(b, loc, poly, scale);
  Value tiny = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x,
                                     splatF(-126.0));
  return arith::SelectOp::create(b, loc, tiny, splatF(0.0), r);
}

Value VectorKernelBuilder::vectorizedRegion(Region &region,
                                            ValueRange scalarArgs,
                                            ValueRange vectorArgs,
                                            UniformCache *cache) {
  // scalarArgs: b, h, q_idx (uniform); vectorArgs: kv_idx[, score[, dt]].
  Block &block = region.front();
  llvm::DenseSet<Value> varying = varyingValues(region);
  UniformCache local;
  UniformCache &uniform = cache ? *cache : local;
  IRMapping &scalars = uniform.scalars;
  DenseMap<Value, Value> &broadcasts = uniform.broadcasts;
  DenseMap<Value, Value> vectors;
  for (unsigned i = 0; i < 3; ++i)
    scalars.map(block.getArgument(i), scalarArgs[i]);
  for (unsigned i = 3; i < block.getNumArguments(); ++i)
    vectors[block.getArgument(i)] = vectorArgs[i - 3];
  auto vec = [&](Value orig) -> Value {
    if (varying.contains(orig))
      return vectors.lookup(orig);
    Value &bc = broadcasts[orig];
    if (!bc) {
      Value x = scalars.lookup(orig);
      bc = vector::BroadcastOp::create(b, loc,
                                       VectorType::get({vw}, x.getType()), x);
    }
    return bc;
  };
  for (Operation &op : block.without_terminator()) {
    if (auto acc = llvm::dyn_cast<attn::AccumulateGradOp>(op)) {
      SmallVector<Value> indices;
      for (Value i : acc.getIndices())
        indices.push_back(varying.contains(i) ? vec(i) : scalars.lookup(i));
      accumulateLanes(acc, vec(acc.getValue()), indices);
      continue;
    }
    if (op.getNumResults() == 0 || !varying.contains(op.getResult(0))) {
      // Uniform: once per row, as a scalar (once per cache when cached).
      bool done = op.getNumResults() > 0 &&
                  llvm::all_of(op.getResults(),
                               [&](Value r) { return scalars.contains(r); });
      if (!done)
        b.clone(op, scalars);
      continue;
    }
    if (llvm::isa<attn::FloorDivOp, attn::FloorModOp>(op)) {
      Value lhs = vec(op.getOperand(0)), rhs = vec(op.getOperand(1));
      Value quot = arith::FloorDivSIOp::create(b, loc, lhs, rhs);
      Value r = quot;
      if (llvm::isa<attn::FloorModOp>(op)) // a - floor(a / c) * c
        r = arith::SubIOp::create(b, loc, lhs,
                                  arith::MulIOp::create(b, loc, quot, rhs));
      vectors[op.getResult(0)] = r;
      continue;
    }
    IRMapping map;
    for (Value operand : op.getOperands())
      map.map(operand, vec(operand));
    Operation *clone = b.clone(op, map);
    for (auto [orig, res] : llvm::zip(op.getResults(), clone->getResults())) {
      res.setType(VectorType::get({vw}, res.getType()));
      vectors[orig] = res;
    }
  }
  return vec(llvm::cast<attn::YieldOp>(block.getTerminator()).getValue());
}

SmallVector<Value> VectorKernelBuilder::rank1Block(
    Value lb, Value ub, ArrayRef<Value> init, int64_t n,
    llvm::function_ref<Value(Value, int64_t)> bvec,
    llvm::function_ref<Value(Value, int64_t)> a, MaskedWeights masked) {
  int64_t R = blockRows;
  auto loop = scf::ForOp::create(
      b, loc, lb, ub, cIdx(1), init,
      [&](OpBuilder &, Location, Value k, ValueRange acc) {
        SmallVector<Value> vecs, next(acc.begin(), acc.end());
        for (int64_t c = 0; c < n; ++c)
          vecs.push_back(bvec(k, c));
        for (int64_t r = 0; r < R; ++r) {
          Value ar = a(k, r);
          Value ab = vector::BroadcastOp::create(b, loc, vf, ar);
          Value skip;
          if (masked == MaskedWeights::zero)
            skip = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, ar,
                                         cF32(0.0));
          else if (masked == MaskedWeights::negativeZero)
            skip = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::eq,
                arith::BitcastOp::create(b, loc, b.getI32Type(), ar),
                cI32(static_cast<int32_t>(0x80000000u)));
          for (int64_t c = 0; c < n; ++c) {
            Value fma =
                vector::FMAOp::create(b, loc, ab, vecs[c], next[r * n + c]);
            next[r * n + c] = skip ? arith::SelectOp::create(
                                         b, loc, skip, next[r * n + c], fma)
                                         .getResult()
                                   : fma;
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  return SmallVector<Value>(loop.getResults());
}

SmallVector<Value> VectorKernelBuilder::transposeSquare(SmallVector<Value> r) {
  // Round `d` swaps bit d of the row index with bit d of the lane index:
  // rows i and i + d (bit d of i clear) exchange the lanes whose bit d
  // differs from the row's, with two two-input shuffles. log2(vw) rounds.
  int64_t n = vw;
  for (int64_t d = 1; d < n; d *= 2) {
    SmallVector<int64_t> lo(n), hi(n);
    for (int64_t c = 0; c < n; ++c) {
      bool bit = c & d;
      lo[c] = bit ? n + (c - d) : c;
      hi[c] = bit ? n + c : c + d;
    }
    SmallVector<Value> next(n);
    for (int64_t i = 0; i < n; ++i) {
      if (i & d)
        continue;
      next[i] = vector::ShuffleOp::create(b, loc, r[i], r[i + d], lo);
      next[i + d] = vector::ShuffleOp::create(b, loc, r[i], r[i + d], hi);
    }
    r = next;
  }
  return r;
}
