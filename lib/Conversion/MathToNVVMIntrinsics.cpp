//===- MathToNVVMIntrinsics.cpp - f32 math as NVPTX instructions ----------===//
//
// Rewrites the f32 math ops that NVPTX implements in one instruction into
// calls of the NVVM intrinsics, before convert-gpu-to-nvvm would turn them
// into libdevice calls: kernels then need no libdevice (and so no CUDA
// toolkit) at compile time. Other math ops are left alone.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"

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

/// math op on f32 -> llvm.call_intrinsic `name`.
template <typename MathOp>
struct ToIntrinsic : public OpRewritePattern<MathOp> {
  ToIntrinsic(MLIRContext *ctx, StringRef name)
      : OpRewritePattern<MathOp>(ctx), name(name) {}
  LogicalResult matchAndRewrite(MathOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return rewriter.notifyMatchFailure(op, "only f32 maps onto NVPTX");
    rewriter.replaceOpWithNewOp<LLVM::CallIntrinsicOp>(
        op, op.getType(), rewriter.getStringAttr(name),
        op->getOperands());
    return success();
  }
  std::string name;
};

struct ConvertAttnMathToNVVMIntrinsicsPass
    : public attnc::impl::ConvertAttnMathToNVVMIntrinsicsBase<
          ConvertAttnMathToNVVMIntrinsicsPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add<ToIntrinsic<math::Exp2Op>>(ctx, "llvm.nvvm.ex2.approx.f32");
    patterns.add<ToIntrinsic<math::Log2Op>>(ctx, "llvm.nvvm.lg2.approx.f");
    patterns.add<ToIntrinsic<math::SqrtOp>>(ctx, "llvm.nvvm.sqrt.rn.f");
    patterns.add<ToIntrinsic<math::FloorOp>>(ctx, "llvm.nvvm.floor.f");
    patterns.add<ToIntrinsic<math::CeilOp>>(ctx, "llvm.nvvm.ceil.f");
    patterns.add<ToIntrinsic<math::TruncOp>>(ctx, "llvm.nvvm.trunc.f");
    patterns.add<ToIntrinsic<math::RoundEvenOp>>(ctx, "llvm.nvvm.round.f");
    patterns.add<ToIntrinsic<math::FmaOp>>(ctx, "llvm.fma.f32");
    patterns.add<ToIntrinsic<math::AbsFOp>>(ctx, "llvm.fabs.f32");
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
