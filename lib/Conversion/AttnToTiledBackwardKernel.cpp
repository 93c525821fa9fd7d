//===- AttnToTiledBackwardKernel.cpp - Tiled, vectorised backward pass
//-----===//
//
// Lowers each differentiated attn.variant to the two work-item functions of
// the CPU backward pass, FlashAttention-2's schedule:
//
//   @<name>_bwd_rows(b, h): per query row, D_i = dO_i . O_i and the row
//     statistic in the form the tiles use (softmax: LSE in log2 units,
//     +inf for an empty row; linear: 1 / S_i, 0 for S_i = 0); with a sink,
//     dL/de = -sum_i exp(e - LSE_i) D_i through attn.sink_grad.
//
//   @<name>_bwd(b, hkv, kv-tiles [k0, k1)): for each kv-tile of the range
//     (K^T and V^T transposed once into the stack, dK and dV accumulated
//     there), for each query head of the KV head's group and each q-tile
//     the mask may keep (tile facts; all-false tiles are never computed,
//     all-true ones never evaluate the mask):
//       S  = Q K^T, dP = dO V^T              (register-blocked micro-kernels)
//       P  = 2^(t log2 e - LSE log2 e), t = score(scale S), masked -> 0
//       dT = P (dP - D) | dP w (1 - w) | dP [t > 0] | (dP - D) / S
//       dS = score_grad(s, dT)  (vectorised when the score is: a param read
//                                that is the same for every lane is summed
//                                over the lanes first; param gradients go
//                                to the worker's own buffers)
//       dV += P^T dO, dK += scale dS^T Q, dQ += scale dS K
//     dK and dV of the tile are then stored; dQ rows are accumulated in the
//     item's own buffer (zeroed by the item), so no two items write the same
//     memory: the host splits the kv range of a KV head only when it needs
//     more items than heads, and then sums the per-range dQ buffers itself.
//
// The host hands the kernels Q, dO, K and V as float32 rows of whole vectors
// (the caller's own tensors when they are already that) and float32 row
// buffers for dQ, dK and dV, and runs the work items on its thread pool.
//
//===----------------------------------------------------------------------===//

#include "attnc/ABI/KernelABI.h"
#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/Conversion/KernelIRBuilder.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Conversion/VectorKernelBuilder.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"

#include <cmath>

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOTILEDBACKWARDKERNEL
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

struct BackwardTileConfig {
  int64_t tq = 64, tk = 64, vw = 16, rows = 4, headDim = 64, valueDim = 64;
};

class TiledBackwardBuilder : public VectorKernelBuilder {
public:
  TiledBackwardBuilder(attn::VariantOp variant, Type elementType,
                       const BackwardTileConfig &cfg)
      : VectorKernelBuilder(variant, cfg.vw, cfg.rows), variant(variant),
        elementType(elementType), cfg(cfg) {
    dp = (cfg.headDim + cfg.vw - 1) / cfg.vw * cfg.vw;
    dvp = (cfg.valueDim + cfg.vw - 1) / cfg.vw * cfg.vw;
    // Vectors per register block of a micro-kernel: blockRows x group
    // accumulators, the group's vectors and a broadcast must fit in the
    // registers (32 with AVX-512's 16 lanes, 16 with AVX2's 8).
    group = cfg.vw >= 16 ? 4 : 2;
    norm = variant.getNormKind();
  }

  LogicalResult build();

private:
  /// The backward ABI's leading arguments of a new function `name` plus
  /// `extra`; binds them and the sizes, and fills kctx.
  func::FuncOp startFunction(StringRef name, ArrayRef<Type> extra);
  void buildRows();
  void buildItem();

  /// grad[indices] += x with every index checked against the gradient's
  /// shape (nothing out of range: the primal read reported it).
  void checkedAdd(Value grad, ArrayRef<Value> indices, Value x);
  void accumulateLanes(attn::AccumulateGradOp op, Value value,
                       ArrayRef<Value> indices) override;
  /// Adds the row's pending gradient sums to the gradient buffers.
  void flushRowGradients();

  /// row index clamped into [0, Lq): the rows past Lq of a last q-tile are
  /// computed on a valid row and never stored.
  Value clampRow(Value row) {
    return minIdx(row, arith::SubIOp::create(b, loc, sizeIdx[3], cIdx(1)));
  }
  Value rowsInBlocks(Value n) {
    int64_t R = cfg.rows;
    return arith::MulIOp::create(
        b, loc,
        arith::DivUIOp::create(
            b, loc, arith::AddIOp::create(b, loc, n, cIdx(R - 1)), cIdx(R)),
        cIdx(R));
  }
  /// dst[d * Tk + j] = rows[b, hkv, k0 + j, d] for j < cols (0 past them),
  /// d < width (a whole number of vectors).
  void transposeTile(Value rowsBuf, Value dst, int64_t width, Value k0,
                     Value cols);
  /// out[r][j] = sum_{d < depth} src[b, h, row(r), d] * tr[d * Tk + j]: the
  /// rows of the q-tile times a transposed kv-tile (S or dP).
  void microTile(Value src, Value tr, int64_t depth, Value out, Value q0,
                 Value rows);
  /// acc[j][c] += sum_{r < rows} w[r * Tk + j] * src[b, h, q0 + r, c]:
  /// dV (w = P, src = dO) or dK (w = dS, src = Q) of the kv-tile.
  void microKeys(Value w, Value src, int64_t width, Value acc, Value q0,
                 Value rows, Value cols);
  /// dQ rows of the q-tile += dS K of the kv-tile.
  void microDQ(Value q0, Value rows, Value k0, Value cols);
  /// P and dS of the q-tile x kv-tile, in place of S and dP.
  void weightsAndScoreGrads(Value q0, Value rows, Value k0, Value cols,
                            Value needMask);
  /// The lanes of vector jv of row q32 that the mask keeps (and that are
  /// keys of the tile).
  Value keepLanes(Value q32, Value k032, Value col, Value cols, Value needMask);
  bool vectorized();
  void ifThenVoid(Value cond, llvm::function_ref<void()> body) {
    scf::IfOp::create(b, loc, cond, [&](OpBuilder &, Location) {
      body();
      scf::YieldOp::create(b, loc);
    });
  }
  Value cBool(bool x) {
    return arith::ConstantOp::create(b, loc, b.getBoolAttr(x));
  }

  attn::VariantOp variant;
  Type elementType;
  BackwardTileConfig cfg;
  int64_t dp = 0, dvp = 0, group = 4;
  attn::NormKind norm;
  KernelContext kctx;

  Value q, k, v, o, dO, stats, flags, status;
  unsigned numLeading = 0;
  Value sizeIdx[7], sizeI32[7], sizeI64[7];
  // Work item.
  Value bi, hi, hkv, b32, h32;
  Value rowA, rowD;                     // flat [B * H * Lq] f32
  Value qr, dor, kr, vr, dqr, dkr, dvr; // f32 rows of whole vectors
  Value sTile, dpTile, kt, vt, dkAcc, dvAcc;
  Value scaleRaw, scaleS; // s = S * scaleRaw; S * scaleS is in log2 units
                          // when foldLog2e
  bool foldLog2e = false;
  Value curKeep; // the lanes being accumulated (accumulateLanes)
  /// Per attn.accumulate_grad of the derivative: the lane-wise sum of the
  /// current row's contributions and the (row-uniform) indices.
  struct PendingGrad {
    attn::AccumulateGradOp op;
    SmallVector<Value> indices;
    Value sum;
  };
  SmallVector<PendingGrad> pendingGrads;
  SmallVector<attn::ParamOp> summarized;
  llvm::StringMap<std::pair<Value, Value>> summaries;
  Value curQt, curKt, curQLo, curQHi, curKvLo, curKvHi;
};

func::FuncOp TiledBackwardBuilder::startFunction(StringRef name,
                                                 ArrayRef<Type> extra) {
  MLIRContext *ctx = variant.getContext();
  SmallVector<attn::ParamOp> runtimeParams, gradParams;
  SmallVector<Type> inputs = backwardKernelArgumentTypes(
      b, variant, elementType, runtimeParams, gradParams);
  inputs.append(extra.begin(), extra.end());
  b.setInsertionPoint(variant);
  auto fn =
      func::FuncOp::create(b, loc, name, FunctionType::get(ctx, inputs, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  kctx = KernelContext();
  KernelEntry e = bindBackwardKernelEntry(b, loc, variant, entry, runtimeParams,
                                          gradParams, kctx);
  q = e.q;
  k = e.k;
  v = e.v;
  o = e.o;
  dO = e.dO;
  stats = e.lse;
  flags = e.flags;
  status = e.status;
  for (int i = 0; i < 7; ++i) {
    sizeIdx[i] = e.sizeIdx[i];
    sizeI32[i] = e.sizeI32[i];
    sizeI64[i] = toI64(sizeIdx[i]);
  }
  numLeading = e.numLeading;
  return fn;
}

void TiledBackwardBuilder::checkedAdd(Value grad, ArrayRef<Value> indices,
                                      Value x) {
  Value ok = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  SmallVector<Value> idx;
  for (auto [d, i] : llvm::enumerate(indices)) {
    Value size = toI32(memref::DimOp::create(b, loc, grad, d));
    ok = arith::AndIOp::create(
        b, loc, ok,
        arith::AndIOp::create(
            b, loc,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i,
                                  cI32(0)),
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, size)));
    idx.push_back(arith::IndexCastOp::create(b, loc, b.getIndexType(), i));
  }
  if (idx.empty())
    idx.push_back(cIdx(0));
  scf::IfOp::create(b, loc, ok, [&](OpBuilder &, Location) {
    // In f64, like every gradient buffer (KernelABI.h).
    Value old = memref::LoadOp::create(b, loc, grad, idx);
    Value wide = arith::ExtFOp::create(b, loc, b.getF64Type(), x);
    memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, wide),
                            grad, idx);
    scf::YieldOp::create(b, loc);
  });
}

void TiledBackwardBuilder::accumulateLanes(attn::AccumulateGradOp op,
                                           Value value,
                                           ArrayRef<Value> indices) {
  // The indices are those of the primal read, which only vectorises when
  // it is the same for every lane of a row (slopes[h]); a read that varies
  // along kv (bias[h, q_idx, kv_idx]) keeps the region on the scalar path.
  assert(llvm::none_of(
             indices,
             [](Value i) { return llvm::isa<VectorType>(i.getType()); }) &&
         "a lane-varying gradient index");
  // Masked lanes add nothing, even where their value is not finite. The
  // indices are the same for every vector of the row (they read only b, h
  // and q_idx), so the row's vectors are summed lane-wise first and reduced
  // and added once per row (flushRowGradients).
  Value g = arith::SelectOp::create(b, loc, curKeep, value, splatF(0.0));
  for (PendingGrad &p : pendingGrads)
    if (p.op == op) {
      p.sum = arith::AddFOp::create(b, loc, p.sum, g);
      return;
    }
  pendingGrads.push_back(
      {op, SmallVector<Value>(indices.begin(), indices.end()), g});
}

void TiledBackwardBuilder::flushRowGradients() {
  for (PendingGrad &p : pendingGrads) {
    Value sum =
        vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, p.sum);
    checkedAdd(kctx.grads.lookup(p.op.getParam()), p.indices, sum);
  }
  pendingGrads.clear();
}

bool TiledBackwardBuilder::vectorized() {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  attn::ScoreGradOp gradOp = variant.getScoreGradOp();
  return (!scoreOp || isVectorizable(scoreOp.getBody())) &&
         (!maskOp || isVectorizable(maskOp.getBody())) &&
         (!gradOp || isVectorizable(gradOp.getBody()));
}

void TiledBackwardBuilder::transposeTile(Value rowsBuf, Value dst,
                                         int64_t width, Value k0, Value cols) {
  int64_t nv = cfg.tk / cfg.vw;
  Value full = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cols,
                                     cIdx(cfg.tk));
  scf::IfOp::create(
      b, loc, full,
      [&](OpBuilder &, Location) {
        // Whole tiles: vw x vw register transposes of the rows.
        forLoop(cIdx(0), cIdx(width / cfg.vw), 1, [&](Value db) {
          Value d0 = arith::MulIOp::create(b, loc, db, cIdx(cfg.vw));
          for (int64_t jb = 0; jb < nv; ++jb) {
            SmallVector<Value> rowsV;
            for (int64_t j = 0; j < cfg.vw; ++j)
              rowsV.push_back(vector::LoadOp::create(
                  b, loc, vf, rowsBuf,
                  ValueRange{
                      bi, hkv,
                      arith::AddIOp::create(b, loc, k0, cIdx(jb * cfg.vw + j)),
                      d0}));
            SmallVector<Value> t = transposeSquare(rowsV);
            for (int64_t i = 0; i < cfg.vw; ++i)
              vstore(t[i], dst,
                     offset(nullptr, cfg.tk,
                            arith::AddIOp::create(b, loc, d0, cIdx(i)),
                            jb * cfg.vw));
          }
        });
        scf::YieldOp::create(b, loc);
      },
      [&](OpBuilder &, Location) {
        // The last, partial tile: element by element, zeros past Lkv.
        forLoop(cIdx(0), cIdx(cfg.tk), 1, [&](Value j) {
          Value inside =
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j, cols);
          Value key =
              minIdx(arith::AddIOp::create(b, loc, k0, j),
                     arith::SubIOp::create(b, loc, sizeIdx[4], cIdx(1)));
          forLoop(cIdx(0), cIdx(width), 1, [&](Value d) {
            Value x = memref::LoadOp::create(b, loc, rowsBuf,
                                             ValueRange{bi, hkv, key, d});
            x = arith::SelectOp::create(b, loc, inside, x, cF32(0.0));
            memref::StoreOp::create(
                b, loc, x, dst,
                ValueRange{arith::AddIOp::create(
                    b, loc, offset(nullptr, cfg.tk, d), j)});
          });
        });
        scf::YieldOp::create(b, loc);
      });
}

void TiledBackwardBuilder::microTile(Value src, Value tr, int64_t depth,
                                     Value out, Value q0, Value rows) {
  int64_t R = cfg.rows, nv = cfg.tk / cfg.vw;
  forLoop(cIdx(0), rowsInBlocks(rows), R, [&](Value rb) {
    SmallVector<Value> rowIdx;
    for (int64_t r = 0; r < R; ++r)
      rowIdx.push_back(clampRow(arith::AddIOp::create(
          b, loc, q0, arith::AddIOp::create(b, loc, rb, cIdx(r)))));
    for (int64_t g0 = 0; g0 < nv; g0 += group) {
      int64_t n = std::min(group, nv - g0);
      SmallVector<Value> acc = rank1Block(
          cIdx(0), cIdx(depth), SmallVector<Value>(R * n, splatF(0.0)), n,
          [&](Value d, int64_t c) {
            return vload(tr, offset(nullptr, cfg.tk, d, (g0 + c) * cfg.vw));
          },
          [&](Value d, int64_t r) -> Value {
            return memref::LoadOp::create(b, loc, src,
                                          ValueRange{bi, hi, rowIdx[r], d});
          });
      for (int64_t r = 0; r < R; ++r) {
        Value row = arith::AddIOp::create(b, loc, rb, cIdx(r));
        for (int64_t c = 0; c < n; ++c)
          vstore(acc[r * n + c], out,
                 offset(nullptr, cfg.tk, row, (g0 + c) * cfg.vw));
      }
    }
  });
}

void TiledBackwardBuilder::microKeys(Value w, Value src, int64_t width,
                                     Value acc, Value q0, Value rows,
                                     Value cols) {
  int64_t R = cfg.rows, nvd = width / cfg.vw;
  forLoop(cIdx(0), rowsInBlocks(cols), R, [&](Value jb) {
    for (int64_t g0 = 0; g0 < nvd; g0 += group) {
      int64_t n = std::min(group, nvd - g0);
      SmallVector<Value> init;
      for (int64_t jj = 0; jj < R; ++jj) {
        Value key = arith::AddIOp::create(b, loc, jb, cIdx(jj));
        for (int64_t c = 0; c < n; ++c)
          init.push_back(
              vload(acc, offset(nullptr, width, key, (g0 + c) * cfg.vw)));
      }
      SmallVector<Value> out = rank1Block(
          cIdx(0), rows, init, n,
          [&](Value r, int64_t c) -> Value {
            return vector::LoadOp::create(
                b, loc, vf, src,
                ValueRange{bi, hi, arith::AddIOp::create(b, loc, q0, r),
                           cIdx((g0 + c) * cfg.vw)});
          },
          [&](Value r, int64_t jj) -> Value {
            return memref::LoadOp::create(
                b, loc, w,
                ValueRange{offset(arith::AddIOp::create(b, loc, jb, cIdx(jj)),
                                  cfg.tk, r)});
          });
      for (int64_t jj = 0; jj < R; ++jj) {
        Value key = arith::AddIOp::create(b, loc, jb, cIdx(jj));
        for (int64_t c = 0; c < n; ++c)
          vstore(out[jj * n + c], acc,
                 offset(nullptr, width, key, (g0 + c) * cfg.vw));
      }
    }
  });
}

void TiledBackwardBuilder::microDQ(Value q0, Value rows, Value k0, Value cols) {
  int64_t R = cfg.rows, nvd = dp / cfg.vw;
  forLoop(cIdx(0), rowsInBlocks(rows), R, [&](Value rb) {
    SmallVector<Value> rowIdx, live;
    for (int64_t r = 0; r < R; ++r) {
      Value local = arith::AddIOp::create(b, loc, rb, cIdx(r));
      live.push_back(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                           local, rows));
      rowIdx.push_back(clampRow(arith::AddIOp::create(b, loc, q0, local)));
    }
    for (int64_t g0 = 0; g0 < nvd; g0 += group) {
      int64_t n = std::min(group, nvd - g0);
      SmallVector<Value> init;
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < n; ++c)
          init.push_back(vector::LoadOp::create(
              b, loc, vf, dqr,
              ValueRange{bi, hi, rowIdx[r], cIdx((g0 + c) * cfg.vw)}));
      SmallVector<Value> out = rank1Block(
          cIdx(0), cols, init, n,
          [&](Value j, int64_t c) -> Value {
            return vector::LoadOp::create(
                b, loc, vf, kr,
                ValueRange{bi, hkv, arith::AddIOp::create(b, loc, k0, j),
                           cIdx((g0 + c) * cfg.vw)});
          },
          [&](Value j, int64_t r) -> Value {
            return memref::LoadOp::create(
                b, loc, dpTile,
                ValueRange{offset(j, cfg.tk,
                                  arith::AddIOp::create(b, loc, rb, cIdx(r)))});
          });
      for (int64_t r = 0; r < R; ++r)
        ifThenVoid(live[r], [&] {
          for (int64_t c = 0; c < n; ++c)
            vector::StoreOp::create(
                b, loc, out[r * n + c], dqr,
                ValueRange{bi, hi, rowIdx[r], cIdx((g0 + c) * cfg.vw)});
        });
    }
  });
}

Value TiledBackwardBuilder::keepLanes(Value q32, Value k032, Value col,
                                      Value cols, Value needMask) {
  attn::MaskOp maskOp = variant.getMaskOp();
  SmallVector<Attribute> lanes;
  for (int64_t l = 0; l < cfg.vw; ++l)
    lanes.push_back(b.getI32IntegerAttr(l));
  Value iota =
      arith::ConstantOp::create(b, loc, DenseElementsAttr::get(vi, lanes));
  Value jl = arith::AddIOp::create(
      b, loc, iota, vector::BroadcastOp::create(b, loc, vi, toI32(col)));
  Value kvv = arith::AddIOp::create(
      b, loc, jl, vector::BroadcastOp::create(b, loc, vi, k032));
  auto keepIf = scf::IfOp::create(
      b, loc, needMask,
      [&](OpBuilder &, Location) {
        Value keep = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, jl,
            vector::BroadcastOp::create(b, loc, vi, toI32(cols)));
        if (maskOp)
          keep = arith::AndIOp::create(
              b, loc, keep,
              vectorizedRegion(maskOp.getBody(), {b32, h32, q32}, {kvv}));
        scf::YieldOp::create(b, loc, keep);
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(
            b, loc,
            arith::ConstantOp::create(b, loc, DenseElementsAttr::get(vb, true))
                .getResult());
      });
  return keepIf.getResult(0);
}

void TiledBackwardBuilder::weightsAndScoreGrads(Value q0, Value rows, Value k0,
                                                Value cols, Value needMask) {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  attn::ScoreGradOp gradOp = variant.getScoreGradOp();
  Value k032 = toI32(k0);
  Value bhBase = arith::MulIOp::create(
      b, loc,
      arith::AddIOp::create(b, loc,
                            arith::MulIOp::create(b, loc, bi, sizeIdx[1]), hi),
      sizeIdx[3]);
  forLoop(cIdx(0), rows, 1, [&](Value r) {
    Value row = arith::AddIOp::create(b, loc, q0, r);
    Value q32 = toI32(row);
    Value rowIdx = arith::AddIOp::create(b, loc, bhBase, row);
    Value stat = memref::LoadOp::create(b, loc, rowA, ValueRange{rowIdx});
    Value dRow = memref::LoadOp::create(b, loc, rowD, ValueRange{rowIdx});
    if (vectorized()) {
      Value statV = vector::BroadcastOp::create(b, loc, vf, stat);
      Value dV = vector::BroadcastOp::create(b, loc, vf, dRow);
      // The score's and the derivative's parts that are the same for a
      // whole row (slopes[h], its bounds check), once per row.
      UniformCache scoreRow, gradRow;
      for (int64_t jv = 0; jv < cfg.tk / cfg.vw; ++jv) {
        Value col = cIdx(jv * cfg.vw);
        Value off = offset(nullptr, cfg.tk, r, jv * cfg.vw);
        Value sv = vload(sTile, off), dpv = vload(dpTile, off);
        Value keep = keepLanes(q32, k032, col, cols, needMask);
        SmallVector<Attribute> lanes;
        for (int64_t l = 0; l < cfg.vw; ++l)
          lanes.push_back(b.getI32IntegerAttr(jv * cfg.vw + l));
        Value kvv = arith::AddIOp::create(
            b, loc,
            arith::ConstantOp::create(b, loc,
                                      DenseElementsAttr::get(vi, lanes)),
            vector::BroadcastOp::create(b, loc, vi, k032));
        // s = scale * (Q K^T); t = score(s)
        Value s = arith::MulFOp::create(
            b, loc, sv, vector::BroadcastOp::create(b, loc, vf, scaleS));
        Value t = scoreOp ? vectorizedRegion(scoreOp.getBody(), {b32, h32, q32},
                                             {kvv, s}, &scoreRow)
                          : s;
        Value zero = splatF(0.0), w, dT;
        auto sel = [&](Value c, Value x, Value y) -> Value {
          return arith::SelectOp::create(b, loc, c, x, y);
        };
        auto fmul = [&](Value x, Value y) -> Value {
          return arith::MulFOp::create(b, loc, x, y);
        };
        auto fsub = [&](Value x, Value y) -> Value {
          return arith::SubFOp::create(b, loc, x, y);
        };
        switch (norm) {
        case attn::NormKind::softmax: {
          // P = 2^(t log2 e - LSE log2 e); dT = P (dP - D)
          Value x2 = foldLog2e ? t : fmul(t, splatF(kLog2e));
          w = sel(keep, vexp2(fsub(x2, statV)), zero);
          dT = fmul(w, fsub(dpv, dV));
          break;
        }
        case attn::NormKind::sigmoid: {
          // w = 1 / (1 + 2^(-t log2 e)); dT = dP w (1 - w)
          Value e = vexp2(fmul(t, splatF(-kLog2e)));
          w = arith::DivFOp::create(
              b, loc, splatF(1.0),
              arith::AddFOp::create(b, loc, splatF(1.0), e));
          w = sel(keep, w, zero);
          dT = fmul(dpv, fmul(w, fsub(splatF(1.0), w)));
          break;
        }
        case attn::NormKind::relu: {
          // w = max(t, 0); dT = dP [t > 0]
          Value pos = arith::AndIOp::create(
              b, loc, keep,
              arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, t,
                                    zero));
          w = sel(pos, t, zero);
          dT = sel(pos, dpv, zero);
          break;
        }
        case attn::NormKind::linear:
          // w = t / S; dT = (dP - D) / S (the row holds 1 / S)
          w = sel(keep, fmul(t, statV), zero);
          dT = sel(keep, fmul(fsub(dpv, dV), statV), zero);
          break;
        }
        curKeep = keep;
        Value dS = gradOp ? vectorizedRegion(gradOp.getBody(), {b32, h32, q32},
                                             {kvv, s, dT}, &gradRow)
                          : dT;
        dS = sel(keep,
                 fmul(dS, vector::BroadcastOp::create(b, loc, vf, scaleRaw)),
                 zero);
        vstore(w, sTile, off);
        vstore(dS, dpTile, off);
      }
      flushRowGradients();
      return;
    }
    // Scalar path (a score, mask or derivative that does not vectorise):
    // the mask first, the score and its derivative only where it keeps the
    // entry, so their checked reads never fire on masked entries.
    forLoop(cIdx(0), cIdx(cfg.tk), 1, [&](Value j) {
      Value off = arith::AddIOp::create(b, loc, offset(nullptr, cfg.tk, r), j);
      Value kv32 = toI32(arith::AddIOp::create(b, loc, k0, j));
      Value inCol =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j, cols);
      auto keepIf = scf::IfOp::create(
          b, loc, arith::AndIOp::create(b, loc, needMask, inCol),
          [&](OpBuilder &, Location) {
            Value keep = maskOp ? inlineItemRegion(b, maskOp.getBody(),
                                                   {b32, h32, q32, kv32})
                                : cBool(true);
            scf::YieldOp::create(b, loc, keep);
          },
          [&](OpBuilder &, Location) { scf::YieldOp::create(b, loc, inCol); });
      auto wIf = scf::IfOp::create(
          b, loc, keepIf.getResult(0),
          [&](OpBuilder &, Location) {
            Value sv = memref::LoadOp::create(b, loc, sTile, ValueRange{off});
            Value dpv = memref::LoadOp::create(b, loc, dpTile, ValueRange{off});
            Value s = arith::MulFOp::create(b, loc, sv, scaleS);
            Value t = scoreOp ? inlineItemRegion(b, scoreOp.getBody(),
                                                 {b32, h32, q32, kv32, s})
                              : s;
            Value w, dT;
            switch (norm) {
            case attn::NormKind::softmax: {
              Value x2 = foldLog2e
                             ? t
                             : arith::MulFOp::create(b, loc, t, cF32(kLog2e))
                                   .getResult();
              w = math::Exp2Op::create(b, loc,
                                       arith::SubFOp::create(b, loc, x2, stat));
              dT = arith::MulFOp::create(
                  b, loc, w, arith::SubFOp::create(b, loc, dpv, dRow));
              break;
            }
            case attn::NormKind::sigmoid: {
              Value e =
                  math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, t));
              w = arith::DivFOp::create(
                  b, loc, cF32(1.0),
                  arith::AddFOp::create(b, loc, cF32(1.0), e));
              dT = arith::MulFOp::create(
                  b, loc, dpv,
                  arith::MulFOp::create(
                      b, loc, w, arith::SubFOp::create(b, loc, cF32(1.0), w)));
              break;
            }
            case attn::NormKind::relu: {
              Value pos = arith::CmpFOp::create(
                  b, loc, arith::CmpFPredicate::OGT, t, cF32(0.0));
              w = arith::SelectOp::create(b, loc, pos, t, cF32(0.0));
              dT = arith::SelectOp::create(b, loc, pos, dpv, cF32(0.0));
              break;
            }
            case attn::NormKind::linear:
              w = arith::MulFOp::create(b, loc, t, stat);
              dT = arith::MulFOp::create(
                  b, loc, arith::SubFOp::create(b, loc, dpv, dRow), stat);
              break;
            }
            Value dS = gradOp ? inlineItemRegion(b, gradOp.getBody(),
                                                 {b32, h32, q32, kv32, s, dT})
                              : dT;
            dS = arith::MulFOp::create(b, loc, dS, scaleRaw);
            scf::YieldOp::create(b, loc, ValueRange{w, dS});
          },
          [&](OpBuilder &, Location) {
            scf::YieldOp::create(b, loc, ValueRange{cF32(0.0), cF32(0.0)});
          });
      memref::StoreOp::create(b, loc, wIf.getResult(0), sTile, ValueRange{off});
      memref::StoreOp::create(b, loc, wIf.getResult(1), dpTile,
                              ValueRange{off});
    });
  });
}

void TiledBackwardBuilder::buildRows() {
  // Extra arguments: b, h, and the row buffers rowA, rowD ([B * H * Lq]).
  Type flat = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  func::FuncOp fn =
      startFunction((variant.getSymName() + "_bwd_rows").str(),
                    {b.getIndexType(), b.getIndexType(), flat, flat});
  Block *entry = &fn.front();
  bi = entry->getArgument(numLeading);
  hi = entry->getArgument(numLeading + 1);
  rowA = entry->getArgument(numLeading + 2);
  rowD = entry->getArgument(numLeading + 3);
  b32 = toI32(bi);
  h32 = toI32(hi);
  attn::NormalizeOp normOp = variant.getNormalizeOp();
  Value sink;
  if (norm == attn::NormKind::softmax && normOp && normOp.hasSink())
    sink = inlineItemRegion(b, normOp.getSink(), {b32, h32});
  Value base = arith::MulIOp::create(
      b, loc,
      arith::AddIOp::create(b, loc,
                            arith::MulIOp::create(b, loc, bi, sizeIdx[1]), hi),
      sizeIdx[3]);
  // dL/de accumulates over the rows in f64.
  Value zero64 = arith::ConstantOp::create(b, loc, b.getF64FloatAttr(0.0));
  auto rowsLoop = scf::ForOp::create(
      b, loc, cIdx(0), sizeIdx[3], cIdx(1), ValueRange{zero64},
      [&](OpBuilder &, Location, Value i, ValueRange iters) {
        // D_i = dO_i . O_i
        auto dot = scf::ForOp::create(
            b, loc, cIdx(0), sizeIdx[6], cIdx(1), ValueRange{cF32(0.0)},
            [&](OpBuilder &, Location, Value c, ValueRange acc) {
              scf::YieldOp::create(
                  b, loc,
                  math::FmaOp::create(b, loc, loadF32(dO, {bi, hi, i, c}),
                                      loadF32(o, {bi, hi, i, c}), acc[0])
                      .getResult());
            });
        Value D = dot.getResult(0);
        Value idx = arith::AddIOp::create(b, loc, base, i);
        memref::StoreOp::create(b, loc, D, rowD, ValueRange{idx});
        Value a = cF32(0.0), de = iters[0];
        if (norm == attn::NormKind::softmax) {
          // LSE in log2 units; +inf for an empty row, so that every P of
          // it is 2^(-inf) = 0.
          Value lse =
              memref::LoadOp::create(b, loc, stats, ValueRange{bi, hi, i});
          Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                              lse, cF32(-INFINITY));
          a = arith::SelectOp::create(
              b, loc, empty, cF32(INFINITY),
              arith::MulFOp::create(b, loc, lse, cF32(kLog2e)));
          if (sink) {
            // dL/de += -exp(e - LSE_i) D_i, rows that keep a key only.
            Value safe = arith::SelectOp::create(b, loc, empty, sink, lse);
            Value term = arith::MulFOp::create(
                b, loc,
                math::ExpOp::create(b, loc,
                                    arith::SubFOp::create(b, loc, sink, safe)),
                D);
            de = arith::SubFOp::create(
                b, loc, de,
                arith::ExtFOp::create(
                    b, loc, b.getF64Type(),
                    arith::SelectOp::create(b, loc, empty, cF32(0.0), term)
                        .getResult()));
          }
        } else if (norm == attn::NormKind::linear) {
          // 1 / S_i, or 0 where S_i = 0 (an empty row): zero gradients.
          Value S =
              memref::LoadOp::create(b, loc, stats, ValueRange{bi, hi, i});
          a = arith::SelectOp::create(
              b, loc,
              arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, S,
                                    cF32(0.0)),
              cF32(0.0), arith::DivFOp::create(b, loc, cF32(1.0), S));
        }
        memref::StoreOp::create(b, loc, a, rowA, ValueRange{idx});
        scf::YieldOp::create(b, loc, de);
      });
  if (attn::SinkGradOp sinkGrad = variant.getSinkGradOp())
    inlineItemRegion(b, sinkGrad.getBody(),
                     {b32, h32,
                      arith::TruncFOp::create(b, loc, b.getF32Type(),
                                              rowsLoop.getResult(0))});
  func::ReturnOp::create(b, loc);
  expandAttnOps(fn, kctx);
}

void TiledBackwardBuilder::buildItem() {
  MLIRContext *ctx = variant.getContext();
  Type flat = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  SmallVector<int64_t> dyn4(4, ShapedType::kDynamic);
  Type rowsType = MemRefType::get(
      dyn4, b.getF32Type(),
      StridedLayoutAttr::get(ctx, ShapedType::kDynamic,
                             {ShapedType::kDynamic, ShapedType::kDynamic,
                              ShapedType::kDynamic, 1}));
  // Extra arguments: b, hkv, the kv-tiles [k0, k1), rowA, rowD, then Q, dO,
  // K, V, dQ, dK, dV as f32 rows of whole vectors, then the tile summaries
  // of rank-1 integer params (per q-tile, per kv-tile).
  SmallVector<Type> extra(4, b.getIndexType());
  extra.append(2, flat);
  extra.append(7, rowsType);
  for (attn::ParamOp p : variant.getParams())
    if (!p.getIsConst() && p.isTensor() && p.getRank() == 1 &&
        !p.getElementType().isF32())
      summarized.push_back(p);
  for (size_t i = 0; i < summarized.size(); ++i)
    extra.append(2, MemRefType::get({ShapedType::kDynamic, 2}, b.getI32Type()));
  func::FuncOp fn = startFunction((variant.getSymName() + "_bwd").str(), extra);
  Block *entry = &fn.front();
  unsigned a0 = numLeading;
  bi = entry->getArgument(a0);
  hkv = entry->getArgument(a0 + 1);
  Value ktBegin = entry->getArgument(a0 + 2),
        ktEnd = entry->getArgument(a0 + 3);
  rowA = entry->getArgument(a0 + 4);
  rowD = entry->getArgument(a0 + 5);
  qr = entry->getArgument(a0 + 6);
  dor = entry->getArgument(a0 + 7);
  kr = entry->getArgument(a0 + 8);
  vr = entry->getArgument(a0 + 9);
  dqr = entry->getArgument(a0 + 10);
  dkr = entry->getArgument(a0 + 11);
  dvr = entry->getArgument(a0 + 12);
  for (auto [i, p] : llvm::enumerate(summarized))
    summaries[p.getSymName()] = {entry->getArgument(a0 + 13 + 2 * i),
                                 entry->getArgument(a0 + 14 + 2 * i)};

  auto scratch = [&](int64_t size) {
    auto op = memref::AllocaOp::create(b, loc,
                                       MemRefType::get({size}, b.getF32Type()));
    op.setAlignment(64);
    return op->getResult(0);
  };
  sTile = scratch(cfg.tq * cfg.tk);
  dpTile = scratch(cfg.tq * cfg.tk);
  kt = scratch(dp * cfg.tk);
  vt = scratch(dvp * cfg.tk);
  dkAcc = scratch(cfg.tk * dp);
  dvAcc = scratch(cfg.tk * dvp);

  // The scale: s = S * scaleRaw. Without a score modifier softmax works in
  // log2 units directly: S * scaleS = s log2 e.
  scaleRaw = emitQScale(b, loc, variant, sizeI32[5], foldLog2e);
  if (foldLog2e) {
    scaleS = scaleRaw;
    scaleRaw = arith::MulFOp::create(b, loc, scaleS, cF32(1.0 / kLog2e));
  } else {
    scaleS = scaleRaw;
  }

  Value groupHeads = arith::DivUIOp::create(b, loc, sizeIdx[1], sizeIdx[2]);
  Value h0 = arith::MulIOp::create(b, loc, hkv, groupHeads);
  // This item's dQ rows start at zero.
  forLoop(cIdx(0), groupHeads, 1, [&](Value g) {
    Value h = arith::AddIOp::create(b, loc, h0, g);
    forLoop(cIdx(0), sizeIdx[3], 1, [&](Value i) {
      for (int64_t c = 0; c < dp / cfg.vw; ++c)
        vector::StoreOp::create(b, loc, splatF(0.0), dqr,
                                ValueRange{bi, h, i, cIdx(c * cfg.vw)});
    });
  });

  attn::MaskOp maskOp = variant.getMaskOp();
  Value numQTiles =
      arith::CeilDivUIOp::create(b, loc, sizeIdx[3], cIdx(cfg.tq));
  forLoop(ktBegin, ktEnd, 1, [&](Value ktIdx) {
    Value k0 = arith::MulIOp::create(b, loc, ktIdx, cIdx(cfg.tk));
    Value cols =
        minIdx(cIdx(cfg.tk), arith::SubIOp::create(b, loc, sizeIdx[4], k0));
    Value partial = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                          cols, cIdx(cfg.tk));
    transposeTile(kr, kt, dp, k0, cols);
    transposeTile(vr, vt, dvp, k0, cols);
    forLoop(cIdx(0), cIdx(cfg.tk * dp), cfg.vw,
            [&](Value i) { vstore(splatF(0.0), dkAcc, i); });
    forLoop(cIdx(0), cIdx(cfg.tk * dvp), cfg.vw,
            [&](Value i) { vstore(splatF(0.0), dvAcc, i); });
    forLoop(cIdx(0), groupHeads, 1, [&](Value g) {
      hi = arith::AddIOp::create(b, loc, h0, g);
      b32 = toI32(bi);
      h32 = toI32(hi);
      TileEnv env;
      initTileEnv(env, b, loc, bi, hi, sizeI64, kctx);
      env.tensorRange =
          [&](attn::ParamOp p,
              ArrayRef<IntervalValues> box) -> std::optional<IntervalValues> {
        // p[q_idx] over this q-tile or p[kv_idx] over this kv-tile: one row
        // of the host's tile summary.
        auto sum = summaries.find(p.getSymName());
        if (sum != summaries.end() && box.size() == 1) {
          Value table, rowSel;
          if (box[0].lo == curQLo && box[0].hi == curQHi) {
            table = sum->second.first;
            rowSel = curQt;
          } else if (box[0].lo == curKvLo && box[0].hi == curKvHi) {
            table = sum->second.second;
            rowSel = curKt;
          }
          if (table) {
            Value t = kctx.params.find(p.getSymName())->second.arg;
            Value len = toI64(memref::DimOp::create(b, loc, t, 0));
            Value inside = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::slt, box[0].hi, len);
            bool isBool = p.getElementType().isInteger(1);
            auto ifOp = scf::IfOp::create(
                b, loc, inside,
                [&](OpBuilder &, Location) {
                  auto word = [&](int64_t col) {
                    Value x = memref::LoadOp::create(
                        b, loc, table, ValueRange{rowSel, cIdx(col)});
                    return arith::ExtSIOp::create(b, loc, b.getI64Type(), x)
                        .getResult();
                  };
                  scf::YieldOp::create(b, loc, ValueRange{word(0), word(1)});
                },
                [&](OpBuilder &, Location) {
                  scf::YieldOp::create(
                      b, loc,
                      ValueRange{cI64(isBool ? 0 : INT32_MIN),
                                 cI64(isBool ? 1 : INT32_MAX)});
                });
            return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
          }
        }
        auto it = kctx.params.find(p.getSymName());
        if (it == kctx.params.end())
          return std::nullopt;
        return emitTensorBoxRange(b, loc, it->second.arg,
                                  p.getElementType().isInteger(1), box);
      };
      forLoop(cIdx(0), numQTiles, 1, [&](Value qt) {
        Value q0 = arith::MulIOp::create(b, loc, qt, cIdx(cfg.tq));
        Value rows =
            minIdx(cIdx(cfg.tq), arith::SubIOp::create(b, loc, sizeIdx[3], q0));
        TileEnv tileEnv = env;
        tileEnv.q = {toI64(q0),
                     arith::SubIOp::create(
                         b, loc, toI64(arith::AddIOp::create(b, loc, q0, rows)),
                         cI64(1))};
        tileEnv.kv = {toI64(k0),
                      arith::SubIOp::create(
                          b, loc,
                          toI64(arith::AddIOp::create(b, loc, k0, cols)),
                          cI64(1))};
        curQt = qt;
        curKt = ktIdx;
        curQLo = tileEnv.q.lo;
        curQHi = tileEnv.q.hi;
        curKvLo = tileEnv.kv.lo;
        curKvHi = tileEnv.kv.hi;
        TileFacts facts = emitTileFacts(b, loc, maskOp, tileEnv);
        curQLo = curQHi = curKvLo = curKvHi = Value();
        // All-false tiles are never computed; all-true ones skip the mask.
        ifThenVoid(facts.mayBeTrue, [&] {
          Value needMask =
              arith::OrIOp::create(b, loc, facts.mayBeFalse, partial);
          microTile(qr, kt, cfg.headDim, sTile, q0, rows);
          microTile(dor, vt, cfg.valueDim, dpTile, q0, rows);
          weightsAndScoreGrads(q0, rows, k0, cols, needMask);
          microKeys(sTile, dor, dvp, dvAcc, q0, rows, cols); // dV += P^T dO
          microKeys(dpTile, qr, dp, dkAcc, q0, rows, cols);  // dK += dS^T Q
          microDQ(q0, rows, k0, cols);                       // dQ += dS K
        });
      });
    });
    // The kv-tile's dK and dV rows.
    forLoop(cIdx(0), cols, 1, [&](Value j) {
      Value key = arith::AddIOp::create(b, loc, k0, j);
      for (int64_t c = 0; c < dp / cfg.vw; ++c)
        vector::StoreOp::create(
            b, loc, vload(dkAcc, offset(nullptr, dp, j, c * cfg.vw)), dkr,
            ValueRange{bi, hkv, key, cIdx(c * cfg.vw)});
      for (int64_t c = 0; c < dvp / cfg.vw; ++c)
        vector::StoreOp::create(
            b, loc, vload(dvAcc, offset(nullptr, dvp, j, c * cfg.vw)), dvr,
            ValueRange{bi, hkv, key, cIdx(c * cfg.vw)});
    });
  });
  func::ReturnOp::create(b, loc);
  expandAttnOps(fn, kctx);
}

LogicalResult TiledBackwardBuilder::build() {
  if (variant.getScoreOp() && !variant.getScoreGradOp())
    return variant.emitError()
           << "variant '" << variant.getSymName()
           << "' has a score but no attn.score_grad: run attn-differentiate "
              "before convert-attn-to-tiled-backward-kernel";
  loc = variant.getLoc();
  buildRows();
  buildItem();
  return success();
}

struct ConvertAttnToTiledBackwardKernelPass
    : public attnc::impl::ConvertAttnToTiledBackwardKernelBase<
          ConvertAttnToTiledBackwardKernelPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    static constexpr llvm::StringRef kTypes[] = {"f32", "f16"};
    Type elemType = parseElementType(b, elementType, kTypes);
    if (!elemType) {
      module.emitError() << "convert-attn-to-tiled-backward-kernel: "
                            "element-type must be "
                         << elementTypeChoices(kTypes) << ", got '"
                         << elementType << "'";
      return signalPassFailure();
    }
    BackwardTileConfig cfg;
    cfg.tq = tileQ;
    cfg.tk = tileKV;
    cfg.vw = vectorWidth;
    cfg.headDim = headDim;
    cfg.valueDim = valueDim;
    if (cfg.vw <= 0 || cfg.tk % cfg.vw != 0 || cfg.tk % cfg.rows != 0 ||
        cfg.tq % cfg.rows != 0 || cfg.headDim <= 0 || cfg.valueDim <= 0) {
      module.emitError()
          << "convert-attn-to-tiled-backward-kernel: tile-kv must be a "
             "multiple of vector-width and of "
          << cfg.rows << ", tile-q a multiple of " << cfg.rows
          << ", and head dims positive";
      return signalPassFailure();
    }
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    for (attn::VariantOp variant : variants) {
      if (failed(TiledBackwardBuilder(variant, elemType, cfg).build()))
        return signalPassFailure();
      variant.erase();
    }
  }
};

} // namespace
