//===- AttnDialect.h - The attn dialect -----------------------------------===//
//
// Declarations of the `attn` dialect and its ops, generated from AttnOps.td.
// Included as "dialects/attn/AttnDialect.h"; its C++ namespace is mlir::attn.
// (The runtime's public API is another thing: "attn/attn.hpp", namespace
// ::attn. Code that sees both spells the dialect mlir::attn::.)
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_DIALECTS_ATTN_ATTNDIALECT_H
#define ATTNC_DIALECTS_ATTN_ATTNDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/RegionKindInterface.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/attn/AttnDialect.h.inc"
#include "dialects/attn/AttnEnums.h.inc"

namespace mlir::attn {
class ScaleOp;
class ScoreOp;
class MaskOp;
class NormalizeOp;
class ParamOp;

/// Number of block arguments of the score region (b, h, q_idx, kv_idx, score)
/// and of the mask region (b, h, q_idx, kv_idx).
constexpr unsigned kScoreArgs = 5;
constexpr unsigned kMaskArgs = 4;
constexpr unsigned kSinkArgs = 2;
} // namespace mlir::attn

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.h.inc"

#endif // ATTNC_DIALECTS_ATTN_ATTNDIALECT_H
