//===- KernelIRBuilder.h - Pieces shared by the kernel generators ---------===//
//
// What the kernel generators (convert-attn-to-loops, -tiled-kernel,
// -gpu-kernel, -mma-kernel) would otherwise each write again: parsing their
// element-type option, small IR-building helpers at one builder and
// location, and the parts the two GPU kernels share: the longest-first
// block numbering, the scale, the tile abstraction's environment and
// closed-form kv-tile range of a q-tile, and the final normalisation of a
// row (sink, LSE).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_CONVERSION_KERNELIRBUILDER_H
#define ATTNC_CONVERSION_KERNELIRBUILDER_H

#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Conversion/ExpandAttnOps.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

#include <cmath>
#include <string>

namespace attnc {

inline constexpr double kLog2e = 1.4426950408889634;
inline constexpr double kLn2 = 0.6931471805599453;

/// The type named by a pass's element-type option if it is one of `allowed`
/// ("f32", "f16", "bf16"), else null.
mlir::Type parseElementType(mlir::Builder &b, llvm::StringRef name,
                            llvm::ArrayRef<llvm::StringRef> allowed);
/// `allowed` for a message: "f32, f16 or bf16".
std::string elementTypeChoices(llvm::ArrayRef<llvm::StringRef> allowed);

/// Constants, casts and arithmetic at one builder and location.
class KernelIRBuilder {
public:
  explicit KernelIRBuilder(mlir::Operation *anchor)
      : b(anchor), loc(mlir::UnknownLoc::get(anchor->getContext())) {}

protected:
  mlir::Value cIdx(int64_t v) {
    return mlir::arith::ConstantIndexOp::create(b, loc, v);
  }
  mlir::Value cI32(int64_t v) {
    return mlir::arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  }
  mlir::Value cI64(int64_t v) {
    return mlir::arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
  }
  mlir::Value cF32(double v) {
    return mlir::arith::ConstantOp::create(
        b, loc, b.getF32FloatAttr(static_cast<float>(v)));
  }
  mlir::Value cBool(bool v) {
    return mlir::arith::ConstantOp::create(b, loc, b.getBoolAttr(v));
  }
  mlir::Value toI32(mlir::Value idx) {
    return mlir::arith::IndexCastOp::create(b, loc, b.getI32Type(), idx);
  }
  mlir::Value toI64(mlir::Value idx) {
    return mlir::arith::IndexCastOp::create(b, loc, b.getI64Type(), idx);
  }
  mlir::Value toIdx(mlir::Value i) {
    return mlir::arith::IndexCastOp::create(b, loc, b.getIndexType(), i);
  }
  mlir::Value add(mlir::Value x, mlir::Value y) {
    return mlir::arith::AddIOp::create(b, loc, x, y);
  }
  mlir::Value mul(mlir::Value x, mlir::Value y) {
    return mlir::arith::MulIOp::create(b, loc, x, y);
  }
  mlir::Value lt(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::slt,
                                       x, y);
  }
  /// 2^x of a softmax weight or rescale factor, marked `afn`: on the GPU
  /// it may flush a denormal result to zero (ex2.approx.ftz), which no row
  /// sum that holds its max term 1 can tell from the true value.
  mlir::Value exp2(mlir::Value x) {
    return mlir::math::Exp2Op::create(
        b, loc, x,
        mlir::arith::FastMathFlagsAttr::get(b.getContext(),
                                            mlir::arith::FastMathFlags::afn));
  }
  void ifThen(mlir::Value cond, llvm::function_ref<void()> body) {
    mlir::scf::IfOp::create(b, loc, cond,
                            [&](mlir::OpBuilder &, mlir::Location) {
                              body();
                              mlir::scf::YieldOp::create(b, loc);
                            });
  }
  /// status[word] += n, atomically (one thread per block calls it).
  void countTiles(int word, mlir::Value n) {
    mlir::memref::AtomicRMWOp::create(b, loc, mlir::arith::AtomicRMWKind::addi,
                                      n, entry.status,
                                      mlir::ValueRange{cIdx(word)});
  }

  mlir::OpBuilder b;
  mlir::Location loc;
  /// The kernel's leading arguments and sizes (bindKernelEntry).
  KernelEntry entry;
};

/// A GPU block's work item: (b, h) with its K/V head, and its q-tile.
struct BlockTile {
  mlir::Value bi, hi, hkv; // index
  mlir::Value b32, h32;    // i32, for the item regions
  mlir::Value q0, rows;    // first row and rows of the q-tile (index)
};

/// The work item (b, h, q-tile qt) as a BlockTile: its K/V head, i32
/// copies of b and h, and the rows of the q-tile (fewer in the last).
BlockTile emitBlockTile(mlir::OpBuilder &b, mlir::Location loc, mlir::Value bi,
                        mlir::Value hi, mlir::Value qt,
                        const mlir::Value sizeIdx[7], int64_t rowsPerBlock);

/// K and V bytes of the heads that one group of blocks works on at once
/// (emitLongestFirstBlock): a third of the H100's 50 MB L2.
inline constexpr int64_t kHeadGroupKVBytes = 16 << 20;

/// Block `block` -> (b, h, q-tile), longest first within groups of heads.
/// The B * H heads (h fastest) fall into groups of G consecutive heads,
/// G = max(1, kHeadGroupKVBytes / (Lkv * kvBytesPerKey)): the K and V of a
/// group fit in the L2 cache, so the blocks that run at once share them
/// instead of each head's K and V being read from memory again and again.
/// Group after group; inside a group, the last q-tiles first (the longest
/// under a triangular mask), head fastest:
///   block = g * G * numQTiles + (numQTiles - 1 - qt) * Gg + (bh - g * G)
/// where Gg is the group's head count (the last group may be smaller).
/// kvBytesPerKey = 0 puts every head in one group.
BlockTile emitLongestFirstBlock(mlir::OpBuilder &b, mlir::Location loc,
                                mlir::Value block, const mlir::Value sizeIdx[7],
                                int64_t rowsPerBlock, int64_t kvBytesPerKey);

/// The scale of `variant` (its scale item, else 1 / sqrt(D)), with log2(e)
/// folded in when there is no score modifier and the normalisation is
/// softmax (then `foldLog2e` is set): scores come out in log2 units.
mlir::Value emitQScale(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::attn::VariantOp variant, mlir::Value headDimI32,
                       bool &foldLog2e);

/// The tile abstraction's environment for (bi, hi): sizes and the runtime
/// scalar params as the kernel sees them (tensorRange is the caller's).
void initTileEnv(TileEnv &env, mlir::OpBuilder &b, mlir::Location loc,
                 mlir::Value bi, mlir::Value hi, const mlir::Value sizeI64[7],
                 const KernelContext &kctx);

/// Sets env.q to the q-tile [q0, q0 + rows) and env.kv to all keys, and
/// returns the closed-form range [begin, end) of kv-tiles of `tk` keys that
/// the mask may keep for it (i64; empty when begin == end).
struct KvTileRange {
  mlir::Value begin, end;
};
KvTileRange emitKvTileRange(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::attn::MaskOp mask, TileEnv &env,
                            mlir::Value q0, mlir::Value rows, int64_t tk);

/// The sink of `variant` in log2 units, or null when it has none.
mlir::Value emitSinkLog2(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::attn::VariantOp variant, mlir::Value b32,
                         mlir::Value h32);

/// How a row ends: O = acc * factor, LSE (softmax only), and whether the
/// row is empty (every entry masked: O = 0, LSE = -inf).
struct RowNormalization {
  mlir::Value factor, lse, empty;
};
/// `m` is the running max (log2 units; softmax only), `l` the sum of the
/// weights, `sinkLog2` the sink (null: none). `factor` is already 0 for
/// empty rows.
RowNormalization emitRowNormalization(mlir::OpBuilder &b, mlir::Location loc,
                                      mlir::attn::NormKind norm, mlir::Value m,
                                      mlir::Value l, mlir::Value sinkLog2);

} // namespace attnc

#endif // ATTNC_CONVERSION_KERNELIRBUILDER_H
