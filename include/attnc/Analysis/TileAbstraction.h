//===- TileAbstraction.h - Interval abstraction of masks over tiles -------===//
//
// Abstract interpretation of an attn.mask region over a tile of score
// entries: q_idx in [q0, q1], kv_idx in [k0, k1], with b, h, the sizes and
// scalar params known. Integers become intervals, booleans the pair
// (may be true, may be false), and every comparison that bounds kv_idx
// (through + - and floor division by a constant, abs, && and ||) also yields
// a closed-form range of admissible kv_idx. The result is emitted as IR that
// computes these facts at run time; with constant inputs every op folds, so
// the same code prints compile-time tile maps. It is target-neutral: the CPU
// kernel and the GPU kernel call it the same way.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_ANALYSIS_TILEABSTRACTION_H
#define ATTNC_ANALYSIS_TILEABSTRACTION_H

#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/Builders.h"

#include <functional>
#include <optional>

namespace attnc {

/// An interval [lo, hi] of i64 values.
struct IntervalValues {
  mlir::Value lo, hi;
};

/// What the abstraction needs from its caller; every value is i64.
struct TileEnv {
  mlir::Value b, h;
  IntervalValues q, kv;
  mlir::Value sizes[7]; // B, H, Hkv, Lq, Lkv, D, Dv
  /// The value of a runtime scalar param as i64 (bools as 0/1), or null
  /// when unknown (then the param is any value of its type).
  std::function<mlir::Value(mlir::attn::ParamOp)> scalarParam;
  /// The range of `param[indices]` over index intervals (i64), or nullopt
  /// when unknown. Called only for i32 and bool tensor params.
  std::function<std::optional<IntervalValues>(mlir::attn::ParamOp,
                                              llvm::ArrayRef<IntervalValues>)>
      tensorRange;
};

/// Facts about the mask over one tile.
struct TileFacts {
  mlir::Value mayBeTrue;  // i1: some entry of the tile may be kept
  mlir::Value mayBeFalse; // i1: some entry of the tile may be masked
  /// i64, inclusive: every kept entry has kv_idx in [kvLo, kvHi] (empty
  /// when kvLo > kvHi). Closed form in q0, q1 and the sizes.
  mlir::Value kvLo, kvHi;
  /// True when the kv range is tighter than [0, Lkv - 1] by construction,
  /// i.e. loop bounds alone skip the all-false tiles of a row of tiles.
  bool boundedKv = false;
  /// True when the facts depend on tensor params (data-dependent masks).
  bool readsTensors = false;
};

/// Emits at the builder's insertion point the IR that computes TileFacts of
/// `mask` (null means the all-true mask) for the tile described by `env`.
TileFacts emitTileFacts(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::attn::MaskOp mask, const TileEnv &env);

} // namespace attnc

#endif // ATTNC_ANALYSIS_TILEABSTRACTION_H
