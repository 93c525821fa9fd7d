//===- TileSummaries.cpp - Live kv-tiles of a data-dependent mask ---------===//
//
// The tile abstraction as the tensor-core kernels ask it: the facts of a
// kv-tile for the current q-tile, with a data-dependent mask's tensor reads
// answered from per-kv-tile (min, max) summaries in shared memory (all the
// block's threads fill them at once), from ranges worked out once per
// block, or by the lanes of a warp together. Each thread then classifies
// kv-tiles of its own and marks the live and the all-kept ones in two
// shared bitmaps that the kv loop walks, or (with a mark kernel) the block
// copies its q-tile's marks from the marks buffer.
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

std::optional<IntervalValues>
MmaKernelBuilder::tensorRange(attn::ParamOp p, ArrayRef<IntervalValues> idx) {
  auto it = kctx.params.find(p.getSymName());
  if (it == kctx.params.end())
    return std::nullopt;
  bool isBool = p.getElementType().isInteger(1);
  if (idx.size() != 1)
    return emitTensorBoxRange(b, loc, it->second.arg, isBool, idx);
  auto sum = summaries.find(p.getSymName());
  if (sum != summaries.end() && curKt && idx[0].lo == curKv.lo &&
      idx[0].hi == curKv.hi) {
    // The box is exactly the current kv-tile: its summary.
    Value table = sum->second.table;
    Value tensor = it->second.arg;
    auto ifOp = scf::IfOp::create(
        b, loc, useSummaries,
        [&](OpBuilder &, Location) {
          SmallVector<Value> r;
          for (int64_t c = 0; c < 2; ++c)
            r.push_back(arith::ExtSIOp::create(
                b, loc, b.getI64Type(),
                memref::LoadOp::create(b, loc, table,
                                       ValueRange{curKt, cIdx(c)})));
          scf::YieldOp::create(b, loc, r);
        },
        [&](OpBuilder &, Location) {
          IntervalValues r =
              threadReads ? emitTensorBoxRange(b, loc, tensor, isBool, idx)
                          : warpBoxRange(tensor, isBool, idx[0]);
          scf::YieldOp::create(b, loc, ValueRange{r.lo, r.hi});
        });
    return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
  }
  auto key = std::make_tuple(p.getOperation(), idx[0].lo.getAsOpaquePointer(),
                             idx[0].hi.getAsOpaquePointer());
  auto cached = rangeCache.find(key);
  if (cached != rangeCache.end())
    return cached->second;
  if (threadReads)
    return emitTensorBoxRange(b, loc, it->second.arg, isBool, idx);
  IntervalValues r = warpBoxRange(it->second.arg, isBool, idx[0]);
  if (b.getInsertionBlock() == entryBlock)
    rangeCache[key] = r;
  return r;
}

void MmaKernelBuilder::computeSummaries() {
  // The whole block at once: groups of `group` lanes take one kv-tile each
  // (tk / 16 lanes, a power of two up to 32), so that a round covers
  // threads / group tiles. Every lane issues all its loads (about 16
  // entries, clamped into the tile) before using any, and the group
  // reduces with log2(group) shuffles. Rounds are uniform (every lane
  // shuffles); a lane of a group past the last tile re-reads the last
  // tile and does not store.
  int64_t group = 1;
  while (group * 2 <= std::min<int64_t>(32, cfg.tk / 16))
    group *= 2;
  const int64_t perRound = cfg.threads() / group;
  const int64_t perLane = (cfg.tk + group - 1) / group;
  // The q-tile's side of every tensor read, once, at function level and
  // uniform over the block (the range cache then serves it to markLiveTiles
  // and the kv loop); its loads overlap the summaries' below. (Its kv side,
  // tile 0, is not used: the table is not filled yet.)
  tileFacts(cIdx(0));
  Value sub = arith::RemUIOp::create(b, loc, tid, cIdx(group));
  Value slot = arith::DivUIOp::create(b, loc, tid, cIdx(group));
  Value rounds = arith::CeilDivUIOp::create(b, loc, numKvTiles, cIdx(perRound));
  // The live-tile marks start empty (markLiveTiles sets them after the
  // barrier below).
  ifThen(lt(tid, cIdx(kMaxSummaryTiles / 32)), [&] {
    memref::StoreOp::create(b, loc, cI32(0), liveBits, ValueRange{tid});
    memref::StoreOp::create(b, loc, cI32(0), fullBits, ValueRange{tid});
  });
  ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, cIdx(0)),
         [&] {
           memref::StoreOp::create(b, loc, cI32(INT32_MAX), liveEnds,
                                   ValueRange{cIdx(0)});
           memref::StoreOp::create(b, loc, cI32(-1), liveEnds,
                                   ValueRange{cIdx(1)});
         });
  ifThen(useSummaries, [&] {
    scf::ForOp::create(
        b, loc, cIdx(0), rounds, cIdx(1), ValueRange{},
        [&](OpBuilder &, Location, Value r, ValueRange) {
          Value t = add(mul(r, cIdx(perRound)), slot);
          Value inRange = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, t, numKvTiles);
          Value tc = arith::MinUIOp::create(
              b, loc, t, arith::SubIOp::create(b, loc, numKvTiles, cIdx(1)));
          Value k0 = mul(tc, cIdx(cfg.tk));
          Value last = arith::SubIOp::create(
              b, loc,
              arith::MinUIOp::create(b, loc, add(k0, cIdx(cfg.tk)),
                                     entry.sizeIdx[4]),
              cIdx(1));
          for (auto &named : summaries) {
            Value tensor = named.second.tensor;
            bool isBool = named.second.isBool;
            int64_t topLo = isBool ? 0 : INT32_MIN,
                    topHi = isBool ? 1 : INT32_MAX;
            Value dim = memref::DimOp::create(b, loc, tensor, 0);
            Value fits = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::ult, last, dim);
            auto ifOp = scf::IfOp::create(
                b, loc, fits,
                [&](OpBuilder &, Location) {
                  SmallVector<Value> xs;
                  for (int64_t j = 0; j < perLane; ++j) {
                    Value i = arith::MinUIOp::create(
                        b, loc, add(k0, add(sub, cIdx(j * group))), last);
                    Value x =
                        memref::LoadOp::create(b, loc, tensor, ValueRange{i});
                    if (isBool) // i8 bytes: any non-zero is true
                      x = arith::MinUIOp::create(
                          b, loc,
                          arith::ExtUIOp::create(b, loc, b.getI32Type(), x),
                          cI32(1));
                    xs.push_back(x);
                  }
                  Value mn = xs[0], mx = xs[0];
                  for (Value x : ArrayRef<Value>(xs).drop_front()) {
                    mn = arith::MinSIOp::create(b, loc, mn, x);
                    mx = arith::MaxSIOp::create(b, loc, mx, x);
                  }
                  scf::YieldOp::create(b, loc, ValueRange{mn, mx});
                },
                [&](OpBuilder &, Location) {
                  scf::YieldOp::create(b, loc,
                                       ValueRange{cI32(topLo), cI32(topHi)});
                });
            Value mn = ifOp.getResult(0), mx = ifOp.getResult(1);
            for (int64_t offset = group / 2; offset >= 1; offset /= 2) {
              mn = arith::MinSIOp::create(b, loc, mn, shuffleXor(mn, offset));
              mx = arith::MaxSIOp::create(b, loc, mx, shuffleXor(mx, offset));
            }
            Value store = andI(
                inRange, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                               sub, cIdx(0)));
            ifThen(store, [&] {
              Value table = named.second.table;
              memref::StoreOp::create(b, loc, mn, table,
                                      ValueRange{t, cIdx(0)});
              memref::StoreOp::create(b, loc, mx, table,
                                      ValueRange{t, cIdx(1)});
            });
          }
          scf::YieldOp::create(b, loc);
        });
  });
  gpu::BarrierOp::create(b, loc);
}

void MmaKernelBuilder::markLiveTiles() {
  // Thread i classifies kv-tiles i, i + threads, ...: one summary read per
  // tile instead of a scan of the row by every thread. A read whose box is
  // neither the tile's summary nor the cached q-tile side (doc[kv_idx / 2],
  // say) differs between the lanes of a warp here, so each thread reads it
  // alone (threadReads), never with warp shuffles. Rounds are uniform (a
  // tile past the end is classified as the last one, unmarked).
  Value rounds =
      arith::CeilDivUIOp::create(b, loc, numKvTiles, cIdx(cfg.threads()));
  ifThen(useSummaries, [&] {
    scf::ForOp::create(
        b, loc, cIdx(0), rounds, cIdx(1), ValueRange{},
        [&](OpBuilder &, Location, Value r, ValueRange) {
          Value t = add(mul(r, cIdx(cfg.threads())), tid);
          Value tc = arith::MinUIOp::create(
              b, loc, t, arith::SubIOp::create(b, loc, numKvTiles, cIdx(1)));
          threadReads = true;
          TileFacts facts = tileFacts(tc);
          threadReads = false;
          Value t32 = toI32(t);
          Value bit = arith::ShLIOp::create(
              b, loc, cI32(1), arith::AndIOp::create(b, loc, t32, cI32(31)));
          Value word = arith::DivUIOp::create(b, loc, t, cIdx(32));
          Value inRow = lt(t, numKvTiles);
          ifThen(andI(inRow, arith::XOrIOp::create(b, loc, facts.mayBeFalse,
                                                   cBool(true))),
                 [&] {
                   memref::AtomicRMWOp::create(b, loc,
                                               arith::AtomicRMWKind::ori, bit,
                                               fullBits, ValueRange{word});
                 });
          ifThen(andI(inRow, facts.mayBeTrue), [&] {
            memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::ori, bit,
                                        liveBits, ValueRange{word});
            memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::mins, t32,
                                        liveEnds, ValueRange{cIdx(0)});
            memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::maxs, t32,
                                        liveEnds, ValueRange{cIdx(1)});
          });
          scf::YieldOp::create(b, loc);
        });
  });
  gpu::BarrierOp::create(b, loc);
}

Value MmaKernelBuilder::markItem(Value bIdx, Value hIdx, Value qt) {
  Value numQTiles =
      arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[3], cIdx(cfg.rows()));
  Value item = marksPerBatch ? bIdx : cIdx(0);
  if (marksPerHead)
    item = add(mul(item, entry.sizeIdx[1]), hIdx);
  return add(mul(item, numQTiles), qt);
}

void MmaKernelBuilder::loadMarks(const BlockTile &tile) {
  // Threads 0 .. kMarkWords - 1 copy a word each; rows of more than
  // kMaxSummaryTiles tiles have no marks (the mark kernel skipped them).
  Value qt = arith::DivUIOp::create(b, loc, tile.q0, cIdx(cfg.rows()));
  Value base = mul(markItem(tile.bi, tile.hi, qt), cIdx(kMarkWords));
  // Hopper: the launcher lets this kernel start while the mark kernel
  // runs (programmatic dependent launch); everything before this point
  // (the Q copy) overlaps it (see build()). A no-op without such a launch.
  // The Q copy is ordered after the kernel before the mark kernel only
  // through the mark kernel's own wait (it triggers after it), and reads
  // through L2 (cp.async.cg), where that kernel's writes have landed.
  if (cfg.wgmma)
    NVVM::GriddepcontrolOp::create(b, loc, NVVM::GridDepActionKind::wait);
  ifThen(andI(useSummaries, lt(tid, cIdx(kMarkWords))), [&] {
    Value word =
        memref::LoadOp::create(b, loc, marksArg, ValueRange{add(base, tid)});
    memref::StoreOp::create(b, loc, word, markWords, ValueRange{tid});
  });
  gpu::BarrierOp::create(b, loc);
}

Value MmaKernelBuilder::nextMarkedTile(Value from) {
  // Word w of the bitmap holds tiles 32 w .. 32 w + 31; scan the words up
  // to ktEnd's, the first with bits at or after `from`.
  Value wEnd = arith::CeilDivUIOp::create(b, loc, ktEnd, cIdx(32));
  Value w0 = arith::DivUIOp::create(b, loc, from, cIdx(32));
  Value inWords = lt(w0, wEnd);
  Value first = arith::SelectOp::create(
      b, loc, inWords,
      memref::LoadOp::create(b, loc, liveBits,
                             ValueRange{arith::MinUIOp::create(
                                 b, loc, w0, cIdx(kMaxSummaryTiles / 32 - 1))}),
      cI32(0));
  first = arith::AndIOp::create(
      b, loc, first,
      arith::ShLIOp::create(
          b, loc, cI32(-1),
          toI32(arith::RemUIOp::create(b, loc, from, cIdx(32)))));
  Type idx = b.getIndexType(), i32 = b.getI32Type();
  auto whileOp =
      scf::WhileOp::create(b, loc, TypeRange{idx, i32}, ValueRange{w0, first});
  {
    OpBuilder::InsertionGuard guard(b);
    Block *before =
        b.createBlock(&whileOp.getBefore(), {}, {idx, i32}, {loc, loc});
    Value w = before->getArgument(0), bits = before->getArgument(1);
    Value more = andI(
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, bits, cI32(0)),
        lt(add(w, cIdx(1)), wEnd));
    scf::ConditionOp::create(b, loc, more, ValueRange{w, bits});
    Block *after =
        b.createBlock(&whileOp.getAfter(), {}, {idx, i32}, {loc, loc});
    Value next = add(after->getArgument(0), cIdx(1));
    scf::YieldOp::create(
        b, loc,
        ValueRange{next,
                   memref::LoadOp::create(b, loc, liveBits, ValueRange{next})});
  }
  Value w = whileOp.getResult(0), bits = whileOp.getResult(1);
  Value found =
      add(mul(w, cIdx(32)),
          toIdx(LLVM::CountTrailingZerosOp::create(b, loc, b.getI32Type(), bits,
                                                   /*is_zero_poison=*/false)));
  Value none =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, bits, cI32(0));
  return arith::MinUIOp::create(
      b, loc, arith::SelectOp::create(b, loc, none, ktEnd, found), ktEnd);
}

IntervalValues MmaKernelBuilder::warpBoxRange(Value tensor, bool isBool,
                                              IntervalValues box) {
  Value dim = arith::IndexCastOp::create(
      b, loc, b.getI64Type(), memref::DimOp::create(b, loc, tensor, 0));
  Value count = arith::AddIOp::create(
      b, loc, arith::SubIOp::create(b, loc, box.hi, box.lo), cI64(1));
  Value ok = andI(andI(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                             box.lo, cI64(0)),
                       arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                             box.hi, dim)),
                  arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                        count, cI64(4096)));
  int64_t topLo = isBool ? 0 : INT32_MIN, topHi = isBool ? 1 : INT32_MAX;
  auto ifOp = scf::IfOp::create(
      b, loc, ok,
      [&](OpBuilder &, Location) {
        Value lo = add(toIdx(box.lo), lane);
        Value end = toIdx(arith::AddIOp::create(b, loc, box.hi, cI64(1)));
        // Four loads per lane and trip, issued together (indices clamped
        // to the last entry: min and max do not mind repeats).
        Value endM1 = arith::SubIOp::create(b, loc, end, cIdx(1));
        auto loop = scf::ForOp::create(
            b, loc, lo, end, cIdx(128),
            ValueRange{cI32(INT32_MAX), cI32(INT32_MIN)},
            [&](OpBuilder &, Location, Value i, ValueRange acc) {
              Value mn = acc[0], mx = acc[1];
              SmallVector<Value> xs;
              for (int64_t j = 0; j < 4; ++j) {
                Value at =
                    arith::MinUIOp::create(b, loc, add(i, cIdx(32 * j)), endM1);
                Value x =
                    memref::LoadOp::create(b, loc, tensor, ValueRange{at});
                if (isBool) // i8 bytes: any non-zero is true
                  x = arith::MinUIOp::create(
                      b, loc, arith::ExtUIOp::create(b, loc, b.getI32Type(), x),
                      cI32(1));
                xs.push_back(x);
              }
              for (Value x : xs) {
                mn = arith::MinSIOp::create(b, loc, mn, x);
                mx = arith::MaxSIOp::create(b, loc, mx, x);
              }
              scf::YieldOp::create(b, loc, ValueRange{mn, mx});
            });
        Value mn = loop.getResult(0), mx = loop.getResult(1);
        for (int64_t offset : {16, 8, 4, 2, 1}) {
          mn = arith::MinSIOp::create(b, loc, mn, shuffleXor(mn, offset));
          mx = arith::MaxSIOp::create(b, loc, mx, shuffleXor(mx, offset));
        }
        scf::YieldOp::create(
            b, loc,
            ValueRange{arith::ExtSIOp::create(b, loc, b.getI64Type(), mn),
                       arith::ExtSIOp::create(b, loc, b.getI64Type(), mx)});
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, loc, ValueRange{cI64(topLo), cI64(topHi)});
      });
  return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
}

TileFacts MmaKernelBuilder::tileFacts(Value kt) {
  Value k0 = mul(kt, cIdx(cfg.tk));
  Value cols = arith::MinSIOp::create(
      b, loc, cIdx(cfg.tk),
      arith::SubIOp::create(b, loc, entry.sizeIdx[4], k0));
  TileEnv tileEnv = env;
  tileEnv.kv = {toI64(k0),
                arith::SubIOp::create(b, loc, toI64(add(k0, cols)), cI64(1))};
  curKt = kt;
  curKv = tileEnv.kv;
  TileFacts facts = emitTileFacts(b, loc, variant.getMaskOp(), tileEnv);
  curKt = Value();
  return facts;
}

Value MmaKernelBuilder::firstLiveTile(Value from) {
  if (!liveBits)
    return scanLiveTiles(from);
  // The marked tiles where the block marked them (rows of at most
  // kMaxSummaryTiles tiles), else the scan.
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getIndexType()},
                                useSummaries, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, loc, nextMarkedTile(from));
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, scanLiveTiles(from));
  return ifOp.getResult(0);
}

Value MmaKernelBuilder::scanLiveTiles(Value from) {
  auto whileOp = scf::WhileOp::create(b, loc, TypeRange{b.getIndexType()},
                                      ValueRange{from});
  {
    OpBuilder::InsertionGuard guard(b);
    Block *before =
        b.createBlock(&whileOp.getBefore(), {}, {b.getIndexType()}, {loc});
    Value t = before->getArgument(0);
    Value inRange = lt(t, ktEnd);
    auto dead = scf::IfOp::create(
        b, loc, inRange,
        [&](OpBuilder &, Location) {
          Value mayBeTrue = tileFacts(t).mayBeTrue;
          scf::YieldOp::create(
              b, loc,
              arith::XOrIOp::create(b, loc, mayBeTrue, cBool(true))
                  .getResult());
        },
        [&](OpBuilder &, Location) {
          scf::YieldOp::create(b, loc, cBool(false));
        });
    scf::ConditionOp::create(b, loc, dead.getResult(0), ValueRange{t});
    Block *after =
        b.createBlock(&whileOp.getAfter(), {}, {b.getIndexType()}, {loc});
    scf::YieldOp::create(b, loc, add(after->getArgument(0), cIdx(1)));
  }
  return whileOp.getResult(0);
}
