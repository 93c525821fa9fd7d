//===- Passes.h - attnc transformation and analysis passes ----------------===//
#ifndef ATTNC_TRANSFORMS_PASSES_H
#define ATTNC_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"

namespace attnc {
#define GEN_PASS_DECL
#include "attnc/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

#endif // ATTNC_TRANSFORMS_PASSES_H
