//===- MmaSyncLoop.cpp - The mma.sync kernel's loop over kv-tiles ---------===//
//
// FlashAttention-2's loop on mma.sync m16n8k16 for sm_80 and later: per
// live kv-tile, S = Q K^T from ldmatrix fragments of the padded Q and K
// tiles (two k-steps at a time, every K fragment feeding each m-tile),
// the scores and the online softmax in registers, then O += P V with P
// from the S accumulators and V by ldmatrix.trans. V of the tile is copied
// while S is computed, K of the next live tile while P V is.
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

SmallVector<Value> AttentionKernelBuilder::mmaSyncLoop() {
  const int64_t D = cfg.headDim, Dv = cfg.valueDim, tk = cfg.tk;
  const int64_t mt = cfg.mTiles;
  // Loop state: kt; per m-tile m[2], l[2] (this lane's partial sums) and
  // the O accumulators.
  SmallVector<Value> init = {kt0};
  for (int64_t t = 0; t < mt; ++t) {
    init.append({cF32(-INFINITY), cF32(-INFINITY), cF32(0.0), cF32(0.0)});
    for (int64_t j = 0; j < nO * 4; ++j)
      init.push_back(cF32(0.0));
  }
  scf::WhileOp loop;
  {
    OpBuilder::InsertionGuard guard(b);
    loop = whileLiveTiles(init);
    Block *after = &loop.getAfter().front();
    Value kt = after->getArgument(0);
    SmallVector<std::array<Value, 2>> m(mt), l(mt);
    Tiles oAcc(mt, SmallVector<Acc>(nO));
    for (int64_t t = 0; t < mt; ++t) {
      unsigned base = 1 + t * perTile;
      m[t] = {after->getArgument(base), after->getArgument(base + 1)};
      l[t] = {after->getArgument(base + 2), after->getArgument(base + 3)};
      for (int64_t j = 0; j < nO; ++j)
        for (int i = 0; i < 4; ++i)
          oAcc[t][j][i] = after->getArgument(base + 4 + 4 * j + i);
    }

    Value k0 = mul(kt, cIdx(tk));
    ifThen(leader, [&] { countTiles(kStatusTilesComputed, cI32(1)); });
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
    gpu::BarrierOp::create(b, loc); // Q and K_j are in shared memory
    loadTile(v, hkv, vTile, Dv, tk, k0, entry.sizeIdx[4]);

    // S = Q K_j^T, two k-steps at a time: the A fragments of both
    // m-tiles from the Q tile, then per n-tile (8 keys) one ldmatrix.x4
    // of K feeding 2 * mt mma.
    Tiles s = zeroTiles(nS);
    for (int64_t kk = 0; kk < D / 16; kk += 2) {
      bool pair = kk + 1 < D / 16;
      SmallVector<SmallVector<SmallVector<Value>>> a(mt);
      for (int64_t t = 0; t < mt; ++t)
        for (int64_t step = 0; step < (pair ? 2 : 1); ++step) {
          Value row = add(add(tileRow[t], r8), mul(miLow, cIdx(8)));
          Value col = add(cIdx(16 * (kk + step)), mul(miHigh, cIdx(8)));
          a[t].push_back(ldmatrix(qTile, row, col, 4, false));
        }
      for (int64_t j = 0; j < nS; ++j) {
        Value row = add(cIdx(8 * j), r8);
        Value col = add(cIdx(16 * kk), mul(pair ? mi : miLow, cIdx(8)));
        SmallVector<Value> bf = ldmatrix(kTile, row, col, pair ? 4 : 2, false);
        for (int64_t t = 0; t < mt; ++t) {
          s[t][j] = mma(a[t][0], {bf[0], bf[1]}, s[t][j]);
          if (pair)
            s[t][j] = mma(a[t][1], {bf[2], bf[3]}, s[t][j]);
        }
      }
    }
    finishScores(s, kt, needMaskOf(kt));

    // The tile's one other barrier comes before the softmax (as in
    // FlashAttention-2), not after it: with nothing between the softmax
    // and P V, ptxas interleaves the exponentials of later k-steps with
    // the mma of earlier ones.
    Value ktNext = firstLiveTile(add(kt, cIdx(1)));
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
    gpu::BarrierOp::create(b, loc); // V_j landed; every warp is done with K_j
    ifThen(lt(ktNext, ktEnd), [&] {
      loadTile(k, hkv, kTile, D, tk, mul(ktNext, cIdx(tk)), entry.sizeIdx[4]);
    });

    Step st = softmaxStep(s, m, l);
    rescale(oAcc, st);
    Tiles &p = st.p;

    // O += P V_j: P from the S accumulators (two n-tiles = one k-step of
    // A), V fragments by ldmatrix.trans, two n-tiles of O per x4, each
    // feeding mt m-tiles.
    for (int64_t kk = 0; kk < tk / 16; ++kk) {
      SmallVector<SmallVector<Value>> a(mt);
      for (int64_t t = 0; t < mt; ++t)
        a[t] = {pack(p[t][2 * kk][0], p[t][2 * kk][1]),
                pack(p[t][2 * kk][2], p[t][2 * kk][3]),
                pack(p[t][2 * kk + 1][0], p[t][2 * kk + 1][1]),
                pack(p[t][2 * kk + 1][2], p[t][2 * kk + 1][3])};
      for (int64_t jd = 0; jd < nO; jd += 2) {
        bool pair = jd + 1 < nO;
        Value row = add(cIdx(16 * kk), add(mul(miLow, cIdx(8)), r8));
        Value col = cIdx(8 * jd);
        if (pair)
          col = add(col, mul(miHigh, cIdx(8)));
        SmallVector<Value> bf = ldmatrix(vTile, row, col, pair ? 4 : 2, true);
        for (int64_t t = 0; t < mt; ++t) {
          oAcc[t][jd] = mma(a[t], {bf[0], bf[1]}, oAcc[t][jd]);
          if (pair)
            oAcc[t][jd + 1] = mma(a[t], {bf[2], bf[3]}, oAcc[t][jd + 1]);
        }
      }
    }
    SmallVector<Value> next = {ktNext};
    for (int64_t t = 0; t < mt; ++t) {
      next.append({st.m[t][0], st.m[t][1], st.l[t][0], st.l[t][1]});
      for (Acc &acc : oAcc[t])
        next.append(acc.begin(), acc.end());
    }
    scf::YieldOp::create(b, loc, next);
  }
  NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
  return SmallVector<Value>(loop.getResults().begin(), loop.getResults().end());
}
