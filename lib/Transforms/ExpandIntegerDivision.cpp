//===- ExpandIntegerDivision.cpp - Floor and ceil division for LLVM -------===//
//
// The GPU pipeline's replacement for `arith-expand`: it expands only the
// integer divisions that have no LLVM counterpart (floordivsi, ceildivsi,
// ceildivui) and leaves the float min/max ops to arith-to-llvm, which maps
// them to llvm.maxnum / llvm.maximum and so to PTX's single max.f32 and
// max.NaN.f32. `arith-expand` rewrites each of those into two compares and
// two selects, four instructions per softmax entry in the hot loop.
//
//===----------------------------------------------------------------------===//

#include "attnc/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNEXPANDINTEGERDIVISION
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {
struct AttnExpandIntegerDivisionPass
    : public attnc::impl::AttnExpandIntegerDivisionBase<
          AttnExpandIntegerDivisionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    arith::populateCeilFloorDivExpandOpsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
