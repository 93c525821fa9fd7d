//===- AttnToMMAKernel.cpp - convert-attn-to-mma-kernel -------------------===//
//
// The pass: each attn.variant becomes a gpu.module with the tensor-core
// attention kernel of its GpuKernelPlan (the plan given, or planned here
// from the pass's options) and, for a data-dependent mask, its mark
// kernel. The builders are in this folder (MmaKernelBuilder.h).
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "attnc/Conversion/GpuKernelPlanner.h"
#include "attnc/Conversion/Passes.h"

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOMMAKERNEL
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

namespace {

struct ConvertAttnToMMAKernelPass
    : public attnc::impl::ConvertAttnToMMAKernelBase<
          ConvertAttnToMMAKernelPass> {
  using Base::Base;
  explicit ConvertAttnToMMAKernelPass(const GpuKernelPlan &plan)
      : givenPlan(plan) {}

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    GpuKernelOptions options;
    if (givenPlan) {
      if (givenPlan->kind == GpuKernelKind::Simt || variants.size() > 1) {
        module.emitError() << "convert-attn-to-mma-kernel: a kernel plan "
                              "takes one variant and a tensor-core kernel";
        return signalPassFailure();
      }
    } else {
      static constexpr llvm::StringRef kTypes[] = {"f16", "bf16"};
      if (!parseElementType(b, elementType, kTypes)) {
        module.emitError()
            << "convert-attn-to-mma-kernel: element-type must be "
            << elementTypeChoices(kTypes) << ", got '" << elementType << "'";
        return signalPassFailure();
      }
      options.elementType = elementType == "bf16" ? DType::BF16 : DType::F16;
      options.headDim = headDim;
      options.valueDim = valueDim;
      options.tileKV = tileKV;
      options.kernel = wgmma ? GpuKernelKind::Wgmma : GpuKernelKind::MmaSync;
      options.chip = wgmma ? "sm_90" : "sm_80";
      options.persistent = persistent;
      options.markKernel = markKernel;
      // The options' errors, whether or not there is a variant to plan.
      GpuKernelPlan unused;
      std::string error;
      if (!planGpuKernel(GpuVariantTraits(), options, unused, error)) {
        module.emitError() << "convert-attn-to-mma-kernel: " << error;
        return signalPassFailure();
      }
    }
    if (!variants.empty())
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                      b.getUnitAttr());
    for (attn::VariantOp variant : variants) {
      // The plan given, or each variant's own from the options.
      GpuKernelPlan plan;
      std::string error;
      if (givenPlan)
        plan = *givenPlan;
      else if (!planGpuKernel(gpuVariantTraits(variant), options, plan,
                              error)) {
        variant.emitError() << "convert-attn-to-mma-kernel: " << error;
        return signalPassFailure();
      }
      Type elemType =
          plan.elementType == DType::BF16 ? b.getBF16Type() : b.getF16Type();
      AttentionKernelBuilder kernel(variant, elemType, plan);
      if (failed(kernel.build()) ||
          (plan.marks.present &&
           failed(MarkKernelBuilder(variant, elemType, plan, kernel.module())
                      .build())))
        return signalPassFailure();
      variant.erase();
    }
  }

  std::optional<GpuKernelPlan> givenPlan;
};

} // namespace

std::unique_ptr<Pass>
attnc::createConvertAttnToMMAKernel(const GpuKernelPlan &plan) {
  return std::make_unique<ConvertAttnToMMAKernelPass>(plan);
}
