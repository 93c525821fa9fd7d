//===- Differentiate.h - The backward form of a variant -------------------===//
//
// attn-differentiate's work as a function, for pipelines and tools that
// differentiate one variant: symbolic reverse-mode differentiation of the
// score (attn.score_grad) and of a sink that reads float runtime params
// (attn.sink_grad). See lib/Transforms/Differentiate.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TRANSFORMS_DIFFERENTIATE_H
#define ATTNC_TRANSFORMS_DIFFERENTIATE_H

#include "dialects/attn/AttnDialect.h"

namespace attnc {

/// Adds attn.score_grad (when the variant has a score) and attn.sink_grad
/// (when its sink reads float runtime params) to `variant`, and warns about
/// float runtime params whose gradient is zero (read only by the mask, or
/// only through comparisons, floor and casts). A variant that already has
/// them is left alone. Fails, with an error at the op, on an op that cannot
/// be differentiated.
mlir::LogicalResult differentiateVariant(mlir::attn::VariantOp variant);

} // namespace attnc

#endif // ATTNC_TRANSFORMS_DIFFERENTIATE_H
