//===- AttentionKernel.cpp - The attention kernel and its work items ------===//
//
// The attention kernel of convert-attn-to-mma-kernel: the work item of a
// block (b, h, q-tile, longest first within groups of heads whose K and V
// fit in L2) and its prologue (the Q copy first, then the live kv-tiles
// from the closed-form range, the block's own marks or the mark kernel's,
// and the first K copy); a persistent kernel's loop over its items, whose
// next item's prologue overlaps this one's epilogue; then the main loop
// (MmaSyncLoop.cpp or WgmmaLoop.cpp) and the epilogue (Epilogue.cpp).
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

LogicalResult AttentionKernelBuilder::build() {
  if (failed(beginKernel()))
    return failure();
  const int64_t mt = cfg.mTiles;
  beginItems(block);
  q0 = cur.tile.q0;
  rows = cur.tile.rows;
  kt0 = cur.kt0;
  // M-tile t of the warp: tile rows (warp * mt + t) * 16 + [0, 16); the
  // lane holds rows g and g + 8 of it.
  tileRow.resize(mt);
  rowIdx.resize(mt);
  for (int64_t t = 0; t < mt; ++t) {
    tileRow[t] = mul(add(mul(warp, cIdx(mt)), cIdx(t)), cIdx(16));
    rowIdx[t][0] = add(add(q0, tileRow[t]), g);
    rowIdx[t][1] = add(rowIdx[t][0], cIdx(8));
  }
  // The uniform parts of the score and mask, once per item.
  hoistItemRegions();

  nS = cfg.tk / 8;
  nO = cfg.valueDim / 8;
  perTile = 4 + 4 * nO;
  // The final row state: [kt, then per m-tile m[2], l[2], O].
  SmallVector<Value> fin = cfg.wgmma ? wgmmaLoop() : mmaSyncLoop();
  if (cfg.persistent)
    startNextItem();
  epilogue(fin);
  if (cfg.persistent) {
    scf::YieldOp::create(b, loc, nextItem);
    b.setInsertionPointAfter(itemLoop);
  }
  gpu::ReturnOp::create(b, loc);
  finishFunction();
  return success();
}

Item AttentionKernelBuilder::itemTile(Value blockIndex) {
  const int64_t D = cfg.headDim, Dv = cfg.valueDim;
  // Persistent: from copies of the sizes that the compiler cannot hoist
  // out of the item loop (what depends on the sizes alone would
  // otherwise stay in registers across every kv loop).
  Value sizes[7];
  for (int i = 0; i < 7; ++i)
    sizes[i] = entry.sizeIdx[i];
  if (cfg.persistent)
    for (int i : {0, 1, 2, 3, 4})
      sizes[i] = toIdx(pinRegisters({entry.sizeI32[i]})[0]);
  Item it;
  it.tile = emitLongestFirstBlock(b, loc, blockIndex, sizes, cfg.rows(),
                                  2 * (D + Dv));
  return it;
}

Value AttentionKernelBuilder::copyK1V0(Value kt0) {
  const int64_t D = cfg.headDim, Dv = cfg.valueDim, tk = cfg.tk;
  Value kt1 = firstLiveTile(add(kt0, cIdx(1)));
  ifThen(lt(kt1, ktEnd), [&] {
    loadTile(k, hkv, kTile, D, tk, mul(kt1, cIdx(tk)), entry.sizeIdx[4],
             cIdx(kRows), /*commit=*/false);
  });
  NVVM::CpAsyncCommitGroupOp::create(b, loc);
  loadTile(v, hkv, vTile, Dv, tk, mul(kt0, cIdx(tk)), entry.sizeIdx[4],
           cIdx(0));
  return kt1;
}

Item AttentionKernelBuilder::prologue(Value blockIndex) {
  const int64_t D = cfg.headDim, tk = cfg.tk;
  Item it = itemTile(blockIndex);
  setItem(it);
  Value q0 = it.tile.q0, rows = it.tile.rows;
  // The Q tile in flight first: it does not depend on which kv-tiles are
  // live, so its copy overlaps the mask summaries and the kv range below.
  loadTile(q, hi, qTile, D, cfg.rows(), q0, entry.sizeIdx[3]);
  Value ktBegin64, ktEnd64;
  if (summaries.empty()) {
    KvTileRange range =
        emitKvTileRange(b, loc, variant.getMaskOp(), env, q0, rows, tk);
    ktBegin64 = range.begin;
    ktEnd64 = range.end;
  } else {
    // Data-dependent: the live tiles are marked once per item; their
    // first and last bound the loop (a row of more than kMaxSummaryTiles
    // tiles takes the row facts instead, reading the whole row).
    if (marksArg) {
      loadMarks(it.tile);
    } else {
      computeSummaries();
      markLiveTiles();
    }
    auto ifOp = scf::IfOp::create(
        b, loc, useSummaries,
        [&](OpBuilder &, Location) {
          Value lo =
              memref::LoadOp::create(b, loc, liveEnds, ValueRange{cIdx(0)});
          Value hi =
              memref::LoadOp::create(b, loc, liveEnds, ValueRange{cIdx(1)});
          Value any =
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, lo, hi);
          Value begin = arith::ExtSIOp::create(
              b, loc, b.getI64Type(),
              arith::SelectOp::create(b, loc, any, lo, cI32(0)));
          Value end = arith::ExtSIOp::create(
              b, loc, b.getI64Type(),
              arith::SelectOp::create(
                  b, loc, any, arith::AddIOp::create(b, loc, hi, cI32(1)),
                  cI32(0)));
          scf::YieldOp::create(b, loc, ValueRange{begin, end});
        },
        [&](OpBuilder &, Location) {
          TileEnv rowEnv = env;
          KvTileRange range = emitKvTileRange(b, loc, variant.getMaskOp(),
                                              rowEnv, q0, rows, tk);
          scf::YieldOp::create(b, loc, ValueRange{range.begin, range.end});
        });
    ktBegin64 = ifOp.getResult(0);
    ktEnd64 = ifOp.getResult(1);
  }
  Value ktBegin = toIdx(ktBegin64);
  ktEnd = it.ktEnd = toIdx(ktEnd64);
  ifThen(leader, [&] {
    countTiles(kStatusTilesInRange,
               arith::TruncIOp::create(
                   b, loc, b.getI32Type(),
                   arith::SubIOp::create(b, loc, ktEnd64, ktBegin64)));
  });
  // K of the first live tile in flight, after Q (above).
  Value kt0 = it.kt0 = firstLiveTile(ktBegin);
  ifThen(lt(kt0, ktEnd), [&] {
    loadTile(k, hkv, kTile, D, tk, mul(kt0, cIdx(tk)), entry.sizeIdx[4]);
  });
  if (cfg.persistent) {
    // K of the second live tile (one group, empty when there is none)
    // and V of the first, as the wgmma prologue below would issue them.
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getIndexType()},
                                  lt(kt0, ktEnd), /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, loc, copyK1V0(kt0));
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, loc, ktEnd);
    it.kt1 = ifOp.getResult(0);
  } else {
    it.kt1 = kt0; // unused
  }
  return it;
}

SmallVector<Value> AttentionKernelBuilder::prologueIf(Value item) {
  Type idxType = b.getIndexType();
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{idxType, idxType, idxType},
                                lt(item, nItems), /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  Item it = prologue(item);
  scf::YieldOp::create(b, loc, ValueRange{it.ktEnd, it.kt0, it.kt1});
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{cIdx(0), cIdx(0), cIdx(0)});
  SmallVector<Value> r = {item};
  r.append(ifOp.getResults().begin(), ifOp.getResults().end());
  return r;
}

Item AttentionKernelBuilder::itemAgain(Value item, ValueRange ranges) {
  Type idxType = b.getIndexType();
  Value n =
      pinRegisters({arith::IndexCastOp::create(b, loc, b.getI32Type(), item)
                        .getResult()})[0];
  Item it = itemTile(arith::IndexCastOp::create(b, loc, idxType, n));
  it.ktEnd = ranges[0];
  it.kt0 = ranges[1];
  it.kt1 = ranges[2];
  return it;
}

void AttentionKernelBuilder::beginItems(Value block) {
  // Persistent: a loop over items blockIdx.x, + gridDim.x, ..., each
  // item's prologue issued by the previous iteration (the first before the
  // loop). The loop state: the item and its [kt0, ktEnd) and kt1; its
  // tile is worked out again from its number where needed (cheaper than
  // registers held across the kv loop).
  Type idxType = b.getIndexType();
  if (cfg.persistent) {
    gridDim = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
    nItems = mul(
        mul(entry.sizeIdx[0], entry.sizeIdx[1]),
        arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[3], cIdx(cfg.rows())));
    SmallVector<Value> init = prologueIf(block);
    SmallVector<Type> types(4, idxType);
    itemLoop = scf::WhileOp::create(b, loc, types, init);
    SmallVector<Location> locs(types.size(), loc);
    Block *before = b.createBlock(&itemLoop.getBefore(), {}, types, locs);
    scf::ConditionOp::create(b, loc, lt(before->getArgument(0), nItems),
                             before->getArguments());
    Block *after = b.createBlock(&itemLoop.getAfter(), {}, types, locs);
    item = after->getArgument(0);
    cur = itemAgain(item, after->getArguments().drop_front());
    setItem(cur);
    // The q-tile's side of the mask's reads, cached for this item's tiles.
    if (!summaries.empty())
      tileFacts(cIdx(0));
  } else {
    cur = prologue(block);
  }
}

void AttentionKernelBuilder::startNextItem() {
  // Every warp is done with this item's tiles, summaries and marks (and no
  // copy into them is in flight), so the next item's prologue runs now and
  // its copies overlap this item's epilogue.
  const int64_t mt = cfg.mTiles;
  NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
  gpu::BarrierOp::create(b, loc);
  nextItem = prologueIf(add(item, gridDim));
  cur = itemAgain(item, {cur.ktEnd, cur.kt0, cur.kt1});
  setItem(cur);
  q0 = cur.tile.q0;
  rows = cur.tile.rows;
  for (int64_t t = 0; t < mt; ++t) {
    rowIdx[t][0] = add(add(q0, tileRow[t]), g);
    rowIdx[t][1] = add(rowIdx[t][0], cIdx(8));
  }
}
