//===- MathToNVVMIntrinsics.cpp - f32 math as NVPTX instructions ----------===//
//
// Rewrites the f32 math ops that NVPTX implements in one instruction into
// calls of the NVVM intrinsics, before convert-gpu-to-nvvm would turn them
// into libdevice calls: kernels then need no libdevice (and so no CUDA
// toolkit) at compile time. Other math ops are left alone.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNMATHTONVVMINTRINSICS
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {

/// op on f32 -> llvm.call_intrinsic `name`, or `afnName` where the op
/// allows approximate functions (`fastmath<afn>`) and one is given: exp2
/// becomes ex2.approx.ftz there (one MUFU.EX2, without the compare and two
/// multiplies that keep denormal results), as the kernels' softmax weights
/// ask for.
template <typename Op> struct ToIntrinsic : public OpRewritePattern<Op> {
  ToIntrinsic(MLIRContext *ctx, StringRef name, StringRef afnName = {})
      : OpRewritePattern<Op>(ctx), name(name), afnName(afnName) {}
  LogicalResult matchAndRewrite(Op op,
                                PatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return rewriter.notifyMatchFailure(op, "only f32 maps onto NVPTX");
    StringRef chosen = name;
    if (!afnName.empty() &&
        arith::bitEnumContainsAll(op.getFastmath(), arith::FastMathFlags::afn))
      chosen = afnName;
    rewriter.replaceOpWithNewOp<LLVM::CallIntrinsicOp>(
        op, op.getType(), rewriter.getStringAttr(chosen), op->getOperands());
    return success();
  }
  std::string name, afnName;
};

/// |x| for i32 as arith (NVPTX selects abs.s32); convert-gpu-to-nvvm would
/// call libdevice's __nv_abs.
struct AbsIToArith : public OpRewritePattern<math::AbsIOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(math::AbsIOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getOperand();
    Value zero = arith::ConstantOp::create(rewriter, loc,
                                           rewriter.getZeroAttr(x.getType()));
    Value neg = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::slt,
                                      x, zero);
    Value minus = arith::SubIOp::create(rewriter, loc, zero, x);
    rewriter.replaceOpWithNewOp<arith::SelectOp>(op, neg, minus, x);
    return success();
  }
};

/// powf(x, y) for f32 as 2^(y log2 |x|) on ex2.approx and lg2.approx, with
/// C's special cases: pow(x, 0) = pow(1, y) = 1; a negative base gives the
/// signed result for integral y and NaN otherwise; zero and infinite bases
/// follow from the IEEE arithmetic of log2 and exp2.
struct PowFToExp2 : public OpRewritePattern<math::PowFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(math::PowFOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return rewriter.notifyMatchFailure(op, "only f32 maps onto NVPTX");
    Location loc = op.getLoc();
    Type f32 = rewriter.getF32Type();
    auto c = [&](double v) -> Value {
      return arith::ConstantOp::create(rewriter, loc,
                                       rewriter.getF32FloatAttr(v));
    };
    auto call = [&](StringRef name, Value v) -> Value {
      return LLVM::CallIntrinsicOp::create(rewriter, loc, f32,
                                           rewriter.getStringAttr(name),
                                           ValueRange{v})
          .getResult(0);
    };
    auto cmp = [&](arith::CmpFPredicate p, Value a, Value b) -> Value {
      return arith::CmpFOp::create(rewriter, loc, p, a, b);
    };
    Value x = op.getLhs(), y = op.getRhs();
    Value ax = call("llvm.fabs.f32", x);
    Value r = call("llvm.nvvm.ex2.approx.f32",
                   arith::MulFOp::create(rewriter, loc, y,
                                         call("llvm.nvvm.lg2.approx.f", ax)));
    // y integral: floor(y) == y; odd: floor(y / 2) * 2 != y.
    Value yInt =
        cmp(arith::CmpFPredicate::OEQ, call("llvm.nvvm.floor.f", y), y);
    Value half = call("llvm.nvvm.floor.f",
                      arith::MulFOp::create(rewriter, loc, y, c(0.5)));
    Value yOdd = arith::AndIOp::create(
        rewriter, loc, yInt,
        cmp(arith::CmpFPredicate::UNE,
            arith::MulFOp::create(rewriter, loc, half, c(2.0)), y));
    Value negBase = cmp(arith::CmpFPredicate::OLT, x, c(0.0));
    Value signed_ = arith::SelectOp::create(
        rewriter, loc, yOdd, arith::NegFOp::create(rewriter, loc, r), r);
    Value forNeg =
        arith::SelectOp::create(rewriter, loc, yInt, signed_, c(std::nan("")));
    Value res = arith::SelectOp::create(rewriter, loc, negBase, forNeg, r);
    Value one = arith::OrIOp::create(rewriter, loc,
                                     cmp(arith::CmpFPredicate::OEQ, y, c(0.0)),
                                     cmp(arith::CmpFPredicate::OEQ, x, c(1.0)));
    rewriter.replaceOpWithNewOp<arith::SelectOp>(op, one, c(1.0), res);
    return success();
  }
};

struct ConvertAttnMathToNVVMIntrinsicsPass
    : public attnc::impl::ConvertAttnMathToNVVMIntrinsicsBase<
          ConvertAttnMathToNVVMIntrinsicsPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add<ToIntrinsic<math::Exp2Op>>(ctx, "llvm.nvvm.ex2.approx.f32",
                                            "llvm.nvvm.ex2.approx.ftz.f");
    // convert-gpu-to-nvvm would call libdevice's __nv_fmaxf / __nv_fminf.
    patterns.add<ToIntrinsic<arith::MaxNumFOp>>(ctx, "llvm.maxnum.f32");
    patterns.add<ToIntrinsic<arith::MinNumFOp>>(ctx, "llvm.minnum.f32");
    patterns.add<ToIntrinsic<math::Log2Op>>(ctx, "llvm.nvvm.lg2.approx.f");
    patterns.add<ToIntrinsic<math::SqrtOp>>(ctx, "llvm.nvvm.sqrt.rn.f");
    patterns.add<ToIntrinsic<math::FloorOp>>(ctx, "llvm.nvvm.floor.f");
    patterns.add<ToIntrinsic<math::CeilOp>>(ctx, "llvm.nvvm.ceil.f");
    patterns.add<ToIntrinsic<math::TruncOp>>(ctx, "llvm.nvvm.trunc.f");
    patterns.add<ToIntrinsic<math::RoundEvenOp>>(ctx, "llvm.nvvm.round.f");
    patterns.add<ToIntrinsic<math::FmaOp>>(ctx, "llvm.fma.f32");
    patterns.add<ToIntrinsic<math::AbsFOp>>(ctx, "llvm.fabs.f32");
    patterns.add<AbsIToArith, PowFToExp2>(ctx);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
