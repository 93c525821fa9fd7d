//===- Scores.cpp - Scores, mask and online softmax of a kv-tile ----------===//
//
// The score modifier and the mask inlined per accumulator element from its
// (q_idx, kv_idx), their per-head parts hoisted out once per item; the
// mask only in mixed or partial tiles, and there, where nothing can fail,
// on every entry with a select (straight-line code); the online softmax
// in log2 units (or the plain weights of sigmoid, relu and linear) and the
// rescaling of O.
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

IRMapping AttentionKernelBuilder::hoistUniform(Region &region) {
  Block &block = region.front();
  IRMapping map;
  map.map(block.getArgument(0), b32);
  map.map(block.getArgument(1), h32);
  llvm::SmallPtrSet<Operation *, 16> uniform;
  for (Operation &op : block.without_terminator()) {
    if (op.getNumRegions() != 0)
      continue;
    bool ok = llvm::all_of(op.getOperands(), [&](Value v) {
      if (auto arg = llvm::dyn_cast<BlockArgument>(v))
        return arg.getOwner() == &block && arg.getArgNumber() < 2;
      Operation *def = v.getDefiningOp();
      return def && (uniform.count(def) || def->getBlock() != &block);
    });
    if (!ok)
      continue;
    uniform.insert(&op);
    b.clone(op, map);
  }
  // Keep only the mappings of hoisted results (not the b, h arguments, which
  // inlining binds anew).
  IRMapping pre;
  for (Operation *op : uniform)
    for (Value r : op->getResults())
      pre.map(r, map.lookup(r));
  return pre;
}

bool AttentionKernelBuilder::speculatable(Region &region,
                                          const IRMapping &pre) {
  return llvm::all_of(region.front().without_terminator(), [&](Operation &op) {
    return isPure(&op) || (op.getNumResults() != 0 &&
                           llvm::all_of(op.getResults(), [&](Value r) {
                             return pre.contains(r);
                           }));
  });
}

Value AttentionKernelBuilder::inlineHoisted(Region &region,
                                            const IRMapping &pre,
                                            ValueRange args) {
  Block &block = region.front();
  IRMapping map = pre;
  map.map(block.getArguments(), args);
  for (Operation &op : block.without_terminator()) {
    if (op.getNumResults() &&
        llvm::all_of(op.getResults(), [&](Value r) { return pre.contains(r); }))
      continue;
    b.clone(op, map);
  }
  return map.lookup(
      llvm::cast<attn::YieldOp>(block.getTerminator()).getValue());
}

void AttentionKernelBuilder::hoistItemRegions() {
  if (attn::ScoreOp scoreOp = variant.getScoreOp()) {
    scorePre = hoistUniform(scoreOp.getBody());
    scoreSpeculatable = speculatable(scoreOp.getBody(), scorePre);
  }
  if (attn::MaskOp maskOp = variant.getMaskOp()) {
    maskPre = hoistUniform(maskOp.getBody());
    maskSpeculatable = speculatable(maskOp.getBody(), maskPre);
  }
}

Value AttentionKernelBuilder::scoreOf(Value s, Value q32, Value kv32) {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  if (!scoreOp)
    return s;
  Value x =
      inlineHoisted(scoreOp.getBody(), scorePre, {b32, h32, q32, kv32, s});
  if (norm == attn::NormKind::softmax)
    x = fmul(x, cF32(kLog2e));
  return x;
}

void AttentionKernelBuilder::scoreTile(SmallVector<Acc> &s,
                                       const Value rowIdx[2], Value k0,
                                       Value needMask) {
  attn::MaskOp maskOp = variant.getMaskOp();
  bool hasScore = static_cast<bool>(variant.getScoreOp());
  // Element (j, i) of the tile: row rowIdx[i / 2], column k0 + 8 j + 2 tig
  // + i % 2.
  Value colBase = add(k0, mul(tig, cIdx(2)));
  auto column = [&](size_t j, int i) {
    return add(colBase, cIdx(8 * static_cast<int64_t>(j) + i % 2));
  };
  unsigned n = static_cast<unsigned>(s.size() * 4);
  auto flat = [&]() {
    SmallVector<Value> all;
    for (Acc &a : s)
      all.append(a.begin(), a.end());
    return all;
  };
  SmallVector<Value> out = ifElse(
      needMask, n,
      [&]() {
        SmallVector<Value> r;
        // Column 8 j + c of the lane's share is a key while 8 j + c <
        // Lkv - colBase: one 32-bit compare with a constant per column,
        // shared by the lane's rows.
        Value kvLeft =
            arith::SubIOp::create(b, loc, entry.sizeI32[4], toI32(colBase));
        // Rows past Lq are computed but never stored, and each row's
        // softmax is its own: they need excluding only where a mask or
        // score that reads tensors (at q_idx) runs under the guard.
        bool guardRows =
            (maskOp && !maskSpeculatable) || (hasScore && !scoreSpeculatable);
        Value inRow[2];
        if (guardRows)
          for (int i = 0; i < 2; ++i)
            inRow[i] = lt(rowIdx[i], entry.sizeIdx[3]);
        for (size_t j = 0; j < s.size(); ++j)
          for (int i = 0; i < 4; ++i) {
            Value col = column(j, i);
            Value colIn = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::slt,
                cI32(8 * static_cast<int32_t>(j) + i % 2), kvLeft);
            Value inside = guardRows ? andI(inRow[i / 2], colIn) : colIn;
            Value q32 = toI32(rowIdx[i / 2]), kv32 = toI32(col);
            Value keep = inside;
            if (maskOp && maskSpeculatable) {
              keep = andI(inside, inlineHoisted(maskOp.getBody(), maskPre,
                                                {b32, h32, q32, kv32}));
            } else if (maskOp) {
              auto keepIf = scf::IfOp::create(
                  b, loc, inside,
                  [&](OpBuilder &, Location) {
                    scf::YieldOp::create(b, loc,
                                         inlineHoisted(maskOp.getBody(),
                                                       maskPre,
                                                       {b32, h32, q32, kv32}));
                  },
                  [&](OpBuilder &, Location) {
                    scf::YieldOp::create(b, loc, cBool(false));
                  });
              keep = keepIf.getResult(0);
            }
            Value x = s[j][i];
            if (hasScore && scoreSpeculatable) {
              // Computed on every entry and selected: the same straight
              // line as the full tiles', so conversions and index
              // arithmetic are shared across entries (CSE).
              r.push_back(select(keep, scoreOf(x, q32, kv32), cF32(-INFINITY)));
            } else if (hasScore) {
              // The score only where the entry is kept, so that its
              // checked reads never fire on masked entries.
              r.push_back(ifElse(
                  keep, 1,
                  [&]() -> SmallVector<Value> {
                    return {scoreOf(x, q32, kv32)};
                  },
                  [&]() -> SmallVector<Value> {
                    return {cF32(-INFINITY)};
                  })[0]);
            } else {
              r.push_back(select(keep, x, cF32(-INFINITY)));
            }
          }
        return r;
      },
      [&]() {
        if (!hasScore)
          return flat();
        SmallVector<Value> r;
        for (size_t j = 0; j < s.size(); ++j)
          for (int i = 0; i < 4; ++i)
            r.push_back(
                scoreOf(s[j][i], toI32(rowIdx[i / 2]), toI32(column(j, i))));
        return r;
      });
  for (size_t j = 0; j < s.size(); ++j)
    for (int i = 0; i < 4; ++i)
      s[j][i] = out[4 * j + i];
}

Value AttentionKernelBuilder::needMaskOf(Value kt) {
  const int64_t tk = cfg.tk;
  Value k0 = mul(kt, cIdx(tk));
  Value mayBeFalse;
  if (fullBits) {
    // The marks (the summaries may be overwritten by now).
    auto ifOp = scf::IfOp::create(
        b, loc, useSummaries,
        [&](OpBuilder &, Location) {
          Value word = memref::LoadOp::create(
              b, loc, fullBits,
              ValueRange{arith::DivUIOp::create(b, loc, kt, cIdx(32))});
          Value bit = arith::AndIOp::create(
              b, loc,
              arith::ShRUIOp::create(
                  b, loc, word,
                  toI32(arith::RemUIOp::create(b, loc, kt, cIdx(32)))),
              cI32(1));
          scf::YieldOp::create(
              b, loc,
              ValueRange{arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                               bit, cI32(0))});
        },
        [&](OpBuilder &, Location) {
          scf::YieldOp::create(b, loc, ValueRange{tileFacts(kt).mayBeFalse});
        });
    mayBeFalse = ifOp.getResult(0);
  } else {
    mayBeFalse = tileFacts(kt).mayBeFalse;
  }
  Value partial =
      arith::OrIOp::create(b, loc, lt(entry.sizeIdx[4], add(k0, cIdx(tk))),
                           lt(entry.sizeIdx[3], add(q0, cIdx(cfg.rows()))));
  return arith::OrIOp::create(b, loc, mayBeFalse, partial).getResult();
}

void AttentionKernelBuilder::finishScores(Tiles &s, Value kt, Value needMask) {
  const int64_t tk = cfg.tk, mt = cfg.mTiles;
  Value k0 = mul(kt, cIdx(tk));
  for (auto &st : s)
    for (Acc &acc : st)
      for (Value &x : acc)
        if (!rawScores)
          x = fmul(x, qscale);
  for (int64_t t = 0; t < mt; ++t) {
    Value rowPair[2] = {rowIdx[t][0], rowIdx[t][1]};
    scoreTile(s[t], rowPair, k0, needMask);
  }
}

Step AttentionKernelBuilder::softmaxStep(Tiles &s,
                                         ArrayRef<std::array<Value, 2>> m,
                                         ArrayRef<std::array<Value, 2>> l) {
  const int64_t mt = cfg.mTiles;
  Step st;
  st.m.assign(m.begin(), m.end());
  st.l.assign(l.begin(), l.end());
  st.alpha.resize(mt);
  st.p.assign(mt, SmallVector<Acc>(nS));
  SmallVector<std::array<Value, 2>> mSafe(mt);
  for (int64_t t = 0; t < mt; ++t) {
    if (norm == attn::NormKind::softmax) {
      for (int r = 0; r < 2; ++r) {
        Value mx = cF32(-INFINITY);
        for (int64_t j = 0; j < nS; ++j)
          mx = fmax(mx, fmax(s[t][j][2 * r], s[t][j][2 * r + 1]));
        st.m[t][r] = fmax(m[t][r], quadReduce(mx, /*isMax=*/true));
        // While every entry so far is masked, use 0 so that p stays 0.
        mSafe[t][r] = select(isNegInf(st.m[t][r]), cF32(0.0), st.m[t][r]);
        if (rawScores) {
          // In scaled units from here on.
          mSafe[t][r] = fmul(mSafe[t][r], qscale);
          st.alpha[t][r] = exp2(fsub(fmul(m[t][r], qscale), mSafe[t][r]));
        } else {
          st.alpha[t][r] = exp2(fsub(m[t][r], mSafe[t][r]));
        }
        st.l[t][r] = fmul(l[t][r], st.alpha[t][r]);
      }
    }
    for (int64_t j = 0; j < nS; ++j)
      for (int i = 0; i < 4; ++i) {
        Value x = s[t][j][i], w;
        switch (norm) {
        case attn::NormKind::softmax:
          w = rawScores ? exp2(math::FmaOp::create(
                              b, loc, x, qscale,
                              arith::NegFOp::create(b, loc, mSafe[t][i / 2])))
                        : exp2(fsub(x, mSafe[t][i / 2]));
          break;
        case attn::NormKind::sigmoid:
          w = arith::DivFOp::create(
              b, loc, cF32(1.0), fadd(cF32(1.0), exp2(fmul(x, cF32(-kLog2e)))));
          break;
        case attn::NormKind::relu:
          w = fmax(x, cF32(0.0));
          break;
        default:
          w = x;
          break;
        }
        if (norm != attn::NormKind::softmax)
          w = select(isNegInf(x), cF32(0.0), w);
        st.p[t][j][i] = w;
        st.l[t][i / 2] = fadd(st.l[t][i / 2], w);
      }
  }
  return st;
}

void AttentionKernelBuilder::rescale(Tiles &oAcc, const Step &st) {
  const int64_t mt = cfg.mTiles;
  if (norm != attn::NormKind::softmax)
    return;
  for (int64_t t = 0; t < mt; ++t)
    for (int64_t j = 0; j < nO; ++j)
      for (int i = 0; i < 4; ++i)
        oAcc[t][j][i] = fmul(oAcc[t][j][i], st.alpha[t][i / 2]);
}

Tiles AttentionKernelBuilder::zeroTiles(int64_t n) {
  const int64_t mt = cfg.mTiles;
  return Tiles(
      mt, SmallVector<Acc>(n, Acc{cF32(0.0), cF32(0.0), cF32(0.0), cF32(0.0)}));
}
