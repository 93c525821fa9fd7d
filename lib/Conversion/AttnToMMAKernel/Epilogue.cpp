//===- Epilogue.cpp - The attention kernel's epilogue ---------------------===//
//
// Per row: the lane's partial sums joined across its quad, the sink
// folded in, O = acc / l (0 for an empty row) and LSE (softmax, written by
// the quad's first lane where the flag word asks for it). O leaves the
// block through shared memory in 16-byte chunks of rows, as vectors when
// the host allows it for this O (kFlagVectorO), else element by element.
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

void AttentionKernelBuilder::epilogue(SmallVectorImpl<Value> &fin) {
  // Per row, the lane's partial sums joined across the quad, the sink
  // folded in, LSE written by the first lane of the quad; then O / l
  // staged in shared memory and written in 16-byte chunks (storeO).
  const int64_t mt = cfg.mTiles;
  Value wantLse = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ne,
      arith::AndIOp::create(b, loc, entry.flags, cI32(kFlagWriteLSE)), cI32(0));
  Value firstOfQuad =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tig, cIdx(0));
  Value sinkLog2 = emitSinkLog2(b, loc, variant, b32, h32);
  if (rawScores) // the row maxima in the scaled units of the scores
    for (int64_t t = 0; t < mt; ++t)
      for (int r = 0; r < 2; ++r)
        fin[1 + t * perTile + r] = fmul(fin[1 + t * perTile + r], qscale);
  SmallVector<std::array<Value, 2>> factor(mt);
  for (int64_t t = 0; t < mt; ++t)
    for (int r = 0; r < 2; ++r) {
      unsigned base = 1 + t * perTile;
      Value mRow = fin[base + r];
      Value lRow = quadReduce(fin[base + 2 + r], /*isMax=*/false);
      RowNormalization rn = emitRowNormalization(
          b, loc, norm, norm == attn::NormKind::softmax ? mRow : Value(), lRow,
          sinkLog2);
      factor[t][r] = rn.factor;
      if (norm == attn::NormKind::softmax) {
        Value lseValue = select(rn.empty, cF32(-INFINITY), rn.lse);
        ifThen(andI(lt(rowIdx[t][r], entry.sizeIdx[3]),
                    andI(wantLse, firstOfQuad)),
               [&] {
                 memref::StoreOp::create(b, loc, lseValue, entry.lse,
                                         ValueRange{bi, hi, rowIdx[t][r]});
               });
      }
    }
  storeO(fin, factor);
}

void AttentionKernelBuilder::storeO(ArrayRef<Value> fin,
                                    ArrayRef<std::array<Value, 2>> factor) {
  const int64_t Dv = cfg.valueDim, mt = cfg.mTiles;
  // O's element (row, colBase + 8 j + e2) of m-tile t, in the element type.
  Value colBase = mul(tig, cIdx(2));
  auto outValue = [&](int64_t t, int r, int64_t j, int e2) {
    Value x = fmul(fin[1 + t * perTile + 4 + 4 * j + 2 * r + e2], factor[t][r]);
    return arith::TruncFOp::create(b, loc, elementType, x).getResult();
  };
  // The staged store: the block's O tile in shared memory over the Q and K
  // tiles (a persistent kernel's has its own, at cfg.stagingOffset()), rows
  // padded by 16 bytes (the quad's pairs of a row and the 8 rows of a lane
  // group land in distinct banks), then rows of 16-byte
  // chunks, consecutive threads on consecutive chunks of a row. A chunk
  // goes out as one 16-byte vector when the host allows it for this O
  // (kFlagVectorO), else element by element; either way the accumulators
  // are spent in one place (two copies of their stores cost registers).
  // MmaKernelConfig::sharedBytes() makes room for it.
  const int64_t stagePitch = MmaKernelConfig::pitch(Dv);
  auto stageType = MemRefType::get({cfg.rows(), stagePitch}, elementType,
                                   MemRefLayoutAttrInterface(), workgroup);
  Value stage = memref::ViewOp::create(
                    b, loc, stageType, shared,
                    cfg.persistent ? add(pad, cIdx(cfg.stagingOffset())) : pad,
                    ValueRange{})
                    .getResult();
  // Every warp is done with the Q, K and V tiles, and no copy into them
  // is in flight (persistent: the staging tile is its own, and the
  // barrier before the next item's prologue ordered its last reads).
  if (!cfg.persistent) {
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
    gpu::BarrierOp::create(b, loc);
  }
  auto pairType = VectorType::get({2}, elementType);
  for (int64_t t = 0; t < mt; ++t)
    for (int r = 0; r < 2; ++r) {
      Value localRow = add(add(tileRow[t], g), cIdx(8 * r));
      for (int64_t j = 0; j < nO; ++j) {
        Value pairValue = vector::FromElementsOp::create(
            b, loc, pairType,
            ValueRange{outValue(t, r, j, 0), outValue(t, r, j, 1)});
        vector::StoreOp::create(b, loc, pairValue, stage,
                                ValueRange{localRow, add(colBase, cIdx(8 * j))},
                                /*nontemporal=*/false, llvm::Align(4));
      }
    }
  gpu::BarrierOp::create(b, loc);
  Value vectorO = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ne,
      arith::AndIOp::create(b, loc, entry.flags, cI32(kFlagVectorO)), cI32(0));
  Value oVec = unitInner(entry.o);
  auto chunkType = VectorType::get({8}, elementType);
  const int64_t perRow = Dv / 8;
  auto copyChunk = [&](Value row, Value chunk) {
    ifThen(lt(row, rows), [&] {
      Value col = mul(chunk, cIdx(8));
      Value x =
          vector::LoadOp::create(b, loc, chunkType, stage, ValueRange{row, col},
                                 /*nontemporal=*/false, llvm::Align(16));
      Value qRow = add(q0, row);
      scf::IfOp::create(
          b, loc, vectorO,
          [&](OpBuilder &, Location) {
            vector::StoreOp::create(b, loc, x, oVec,
                                    ValueRange{bi, hi, qRow, col},
                                    /*nontemporal=*/false, llvm::Align(16));
            scf::YieldOp::create(b, loc);
          },
          [&](OpBuilder &, Location) {
            for (int64_t e = 0; e < 8; ++e)
              memref::StoreOp::create(
                  b, loc, vector::ExtractOp::create(b, loc, x, e), entry.o,
                  ValueRange{bi, hi, qRow, add(col, cIdx(e))});
            scf::YieldOp::create(b, loc);
          });
    });
  };
  forThreadChunks(cfg.rows(), perRow, copyChunk);
}
