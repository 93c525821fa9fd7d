//===- ReassociateIndexOffsets.cpp - Constant offsets out of index math ---===//
//
// The GPU kernels evaluate the score and the mask once per accumulator
// element, at kv index `k0 + 2 tig + c` where `c` is a compile-time constant
// per element. A score such as ALiBi's `slopes[h] * f32(kv_idx - q_idx)` then
// costs one integer-to-float conversion per element, and conversions issue
// at an eighth of the rate of float adds on the GPU: as often as the
// softmax's exp2, on the same unit. This pass moves the constants outwards
// through integer adds, subtractions, multiplications and index casts, and
// then through the conversion itself (`sitofp(x + c)` becomes
// `sitofp(x) + c`), so that CSE leaves one conversion per row and tile and a
// float add per element.
//
//===----------------------------------------------------------------------===//

#include "attnc/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNREASSOCIATEINDEXOFFSETS
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {

/// `v` as `rest + offset`, with the integer constant `offset` collected
/// through adds, subtractions, multiplications by constants and index casts
/// to 32 bits or fewer (all exact in two's complement). `rest` is null where
/// `v` is a constant. With a null `rewriter` nothing is built and `rest` is
/// only a marker; otherwise the ops of `rest` are built afresh at the
/// rewriter's insertion point wherever an offset was taken out, and those
/// of `v` stay for their other users.
struct Split {
  Value rest;
  APInt offset;
};

Split splitOffset(PatternRewriter *rewriter, Location loc, Value v,
                  unsigned width, unsigned depth = 0) {
  APInt c;
  if (matchPattern(v, m_ConstantInt(&c)))
    return {Value(), c.sextOrTrunc(width)};
  Split same{v, APInt(width, 0)};
  Operation *def = v.getDefiningOp();
  // Index expressions are a few ops deep; the bound keeps shared
  // subexpressions from being walked exponentially often.
  if (!def || depth >= 8)
    return same;
  if (llvm::isa<arith::AddIOp, arith::SubIOp>(def)) {
    bool isAdd = llvm::isa<arith::AddIOp>(def);
    Split a = splitOffset(rewriter, loc, def->getOperand(0), width, depth + 1);
    Split b = splitOffset(rewriter, loc, def->getOperand(1), width, depth + 1);
    if (a.offset.isZero() && b.offset.isZero())
      return same;
    APInt offset = isAdd ? a.offset + b.offset : a.offset - b.offset;
    if (!b.rest)
      return {a.rest, offset};
    if (!a.rest && isAdd)
      return {b.rest, offset};
    if (!rewriter)
      return {v, offset};
    Value lhs = a.rest ? a.rest
                       : arith::ConstantOp::create(
                             *rewriter, loc, v.getType(),
                             rewriter->getIntegerAttr(v.getType(), 0))
                             .getResult();
    Value rest =
        isAdd ? arith::AddIOp::create(*rewriter, loc, lhs, b.rest).getResult()
              : arith::SubIOp::create(*rewriter, loc, lhs, b.rest).getResult();
    return {rest, offset};
  }
  if (auto mul = llvm::dyn_cast<arith::MulIOp>(def)) {
    for (int side = 0; side < 2; ++side) {
      APInt k;
      Value factor = mul->getOperand(1 - side);
      if (!matchPattern(factor, m_ConstantInt(&k)))
        continue;
      Split a =
          splitOffset(rewriter, loc, mul->getOperand(side), width, depth + 1);
      if (a.offset.isZero() || !a.rest)
        return same;
      APInt offset = a.offset * k.sextOrTrunc(width);
      if (!rewriter)
        return {v, offset};
      return {arith::MulIOp::create(*rewriter, loc, a.rest, factor), offset};
    }
    return same;
  }
  if (auto cast = llvm::dyn_cast<arith::IndexCastOp>(def)) {
    auto type = llvm::dyn_cast<IntegerType>(cast.getType());
    if (!type || type.getWidth() > 32 || !cast.getIn().getType().isIndex())
      return same;
    // Offsets of index values are collected at 64 bits, then truncated.
    Split a = splitOffset(rewriter, loc, cast.getIn(), 64, depth + 1);
    if (a.offset.isZero() || !a.rest)
      return same;
    APInt offset = a.offset.trunc(width);
    if (!rewriter)
      return {v, offset};
    return {arith::IndexCastOp::create(*rewriter, loc, type, a.rest), offset};
  }
  return same;
}

/// sitofp(x + c) -> sitofp(x) + c, for i32 or wider operands, f32 and f64
/// results and |c| <= 2^24, with c gathered from the whole integer
/// expression (splitOffset). Exact wherever x and x + c are below 2^24 in
/// magnitude (2^53 for f64) and x does not wrap where the original did
/// not: every index expression of a sequence shorter than 16M keys.
/// Beyond, the two may differ by a rounding (or, for i32 values near the
/// wrap, by 2^32).
struct SIToFPOfOffset : OpRewritePattern<arith::SIToFPOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::SIToFPOp op,
                                PatternRewriter &rewriter) const override {
    Type type = op.getType();
    auto inType = llvm::dyn_cast<IntegerType>(op.getIn().getType());
    if (!(type.isF32() || type.isF64()) || !inType || inType.getWidth() < 32)
      return failure();
    Location loc = op.getLoc();
    unsigned width = inType.getWidth();
    Split probe = splitOffset(nullptr, loc, op.getIn(), width);
    if (probe.offset.isZero() || !probe.rest ||
        probe.offset.getSignificantBits() > 25)
      return failure();
    rewriter.setInsertionPoint(op);
    Split s = splitOffset(&rewriter, loc, op.getIn(), width);
    Value conv = arith::SIToFPOp::create(rewriter, loc, type, s.rest);
    Value cf = arith::ConstantOp::create(
        rewriter, loc, type,
        rewriter.getFloatAttr(type,
                              static_cast<double>(s.offset.getSExtValue())));
    rewriter.replaceOpWithNewOp<arith::AddFOp>(op, conv, cf);
    return success();
  }
};

/// Whether `v` is `x + c` with `c` a scalar integer constant (either side).
bool matchAddConstant(Value v, Value &x, APInt &c) {
  auto add = v.getDefiningOp<arith::AddIOp>();
  if (!add)
    return false;
  if (matchPattern(add.getRhs(), m_ConstantInt(&c))) {
    x = add.getLhs();
    return true;
  }
  if (matchPattern(add.getLhs(), m_ConstantInt(&c))) {
    x = add.getRhs();
    return true;
  }
  return false;
}

bool isConstant(Value v) { return matchPattern(v, m_Constant()); }

Value constantLike(PatternRewriter &rewriter, Location loc, Type type,
                   const APInt &c) {
  return arith::ConstantOp::create(rewriter, loc, type,
                                   rewriter.getIntegerAttr(type, c));
}

/// (x + c) + y -> (x + y) + c, for y not a constant.
struct AddOfAddConstant : OpRewritePattern<arith::AddIOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::AddIOp op,
                                PatternRewriter &rewriter) const override {
    for (int side = 0; side < 2; ++side) {
      Value inner = op->getOperand(side), other = op->getOperand(1 - side);
      Value x;
      APInt c;
      if (!op.getType().isIntOrIndex() || isConstant(other) ||
          !matchAddConstant(inner, x, c))
        continue;
      Location loc = op.getLoc();
      Value sum = arith::AddIOp::create(rewriter, loc, x, other);
      rewriter.replaceOpWithNewOp<arith::AddIOp>(
          op, sum, constantLike(rewriter, loc, op.getType(), c));
      return success();
    }
    return failure();
  }
};

/// (x + c) - y -> (x - y) + c and y - (x + c) -> (y - x) + (-c).
struct SubOfAddConstant : OpRewritePattern<arith::SubIOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::SubIOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x;
    APInt c;
    if (!op.getType().isIntOrIndex())
      return failure();
    if (!isConstant(op.getRhs()) && matchAddConstant(op.getLhs(), x, c)) {
      Value diff = arith::SubIOp::create(rewriter, loc, x, op.getRhs());
      rewriter.replaceOpWithNewOp<arith::AddIOp>(
          op, diff, constantLike(rewriter, loc, op.getType(), c));
      return success();
    }
    if (!isConstant(op.getLhs()) && matchAddConstant(op.getRhs(), x, c)) {
      Value diff = arith::SubIOp::create(rewriter, loc, op.getLhs(), x);
      rewriter.replaceOpWithNewOp<arith::AddIOp>(
          op, diff, constantLike(rewriter, loc, op.getType(), -c));
      return success();
    }
    return failure();
  }
};

/// index_cast(x + c) -> index_cast(x) + c, to i32 or narrower.
struct CastOfAddConstant : OpRewritePattern<arith::IndexCastOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::IndexCastOp op,
                                PatternRewriter &rewriter) const override {
    auto type = llvm::dyn_cast<IntegerType>(op.getType());
    Value x;
    APInt c;
    if (!type || type.getWidth() > 32 || !op.getIn().getType().isIndex() ||
        !matchAddConstant(op.getIn(), x, c))
      return failure();
    Location loc = op.getLoc();
    Value cast = arith::IndexCastOp::create(rewriter, loc, type, x);
    rewriter.replaceOpWithNewOp<arith::AddIOp>(
        op, cast,
        constantLike(rewriter, loc, type, c.sextOrTrunc(type.getWidth())));
    return success();
  }
};

struct AttnReassociateIndexOffsetsPass
    : public attnc::impl::AttnReassociateIndexOffsetsBase<
          AttnReassociateIndexOffsetsPass> {
  using Base::Base;

  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add<SIToFPOfOffset>(ctx);
    if (integer) {
      patterns.add<AddOfAddConstant, SubOfAddConstant, CastOfAddConstant>(ctx);
      // Folds the constants that meet: (x + c1) + c2 -> x + (c1 + c2).
      arith::AddIOp::getCanonicalizationPatterns(patterns, ctx);
      arith::SubIOp::getCanonicalizationPatterns(patterns, ctx);
    }
    // An optimisation: where the driver stops before a fixed point, what it
    // has rewritten is still correct.
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
