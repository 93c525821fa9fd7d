//===- MarkKernel.cpp - The mark kernel of a data-dependent mask ----------===//
//
// `@<variant>_marks` runs before the attention kernel on the same
// arguments plus the marks buffer: one block per item (b', h', q-tile)
// summarises the row's kv-tiles and marks the live and the all-kept ones,
// as an attention block would for itself, and writes the item's kMarkWords
// words, in the order of their shared memory. Items differ in b and h only
// where the mask reads them (GpuMarkKernelPlan), so a document mask is
// worked out once per q-tile for all the heads.
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

LogicalResult MarkKernelBuilder::build() {
  if (failed(beginKernel()))
    return failure();
  // Block -> item (b', h', q-tile), q-tile fastest (markItem); its
  // summaries and marks as an attention block would work them out,
  // then the kMarkWords words out, in the order of their shared memory.
  Value numQTiles =
      arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[3], cIdx(cfg.rows()));
  Value qt = arith::RemUIOp::create(b, loc, block, numQTiles);
  Value rest = arith::DivUIOp::create(b, loc, block, numQTiles);
  Value hIdx =
      marksPerHead
          ? arith::RemUIOp::create(b, loc, rest, entry.sizeIdx[1]).getResult()
          : cIdx(0);
  Value bIdx =
      !marksPerBatch ? cIdx(0)
      : marksPerHead
          ? arith::DivUIOp::create(b, loc, rest, entry.sizeIdx[1]).getResult()
          : rest;
  Item it;
  it.tile = emitBlockTile(b, loc, bIdx, hIdx, qt, entry.sizeIdx, cfg.rows());
  it.ktEnd = numKvTiles;
  setItem(it);
  computeSummaries();
  markLiveTiles();
  Value base = mul(block, cIdx(kMarkWords));
  ifThen(andI(useSummaries, lt(tid, cIdx(kMarkWords))), [&] {
    Value word = memref::LoadOp::create(b, loc, markWords, ValueRange{tid});
    memref::StoreOp::create(b, loc, word, marksArg, ValueRange{add(base, tid)});
  });
  gpu::ReturnOp::create(b, loc);
  finishFunction();
  return success();
}
