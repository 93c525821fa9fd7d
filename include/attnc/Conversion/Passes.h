//===- Passes.h - attnc conversion passes ---------------------------------===//
#ifndef ATTNC_CONVERSION_PASSES_H
#define ATTNC_CONVERSION_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir::vector {
class VectorDialect;
}

namespace attnc {
#define GEN_PASS_DECL
#include "attnc/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "attnc/Conversion/Passes.h.inc"

struct GpuKernelPlan;
/// convert-attn-to-mma-kernel and convert-attn-to-gpu-kernel for a module
/// with one variant whose kernel `plan` describes (planGpuKernel), instead
/// of planning it from their options.
std::unique_ptr<mlir::Pass>
createConvertAttnToMMAKernel(const GpuKernelPlan &plan);
std::unique_ptr<mlir::Pass>
createConvertAttnToGPUKernel(const GpuKernelPlan &plan);
} // namespace attnc

#endif // ATTNC_CONVERSION_PASSES_H
