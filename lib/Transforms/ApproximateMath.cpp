//===- ApproximateMath.cpp - Vectorisable approximations of math ops ------===//
//
// A thin pass over MLIR's polynomial approximation patterns, so that the
// score modifiers of tiled kernels (softcap's tanh, exp, log, ...) stay in
// vector registers instead of calling libm once per lane.
//
//===----------------------------------------------------------------------===//

#include "attnc/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Approximation.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNAPPROXIMATEMATH
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {
struct AttnApproximateMathPass
    : public attnc::impl::AttnApproximateMathBase<AttnApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
