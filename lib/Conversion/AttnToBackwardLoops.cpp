//===- AttnToBackwardLoops.cpp - Reference backward pass as scf loops -----===//
//
// The numerical reference of the backward pass: every differentiated
// attn.variant (attn-differentiate) becomes func.func @<name>_bwd, plain
// single-threaded scf loops over (b, h, i) with float32 accumulation. For
// each row it recomputes the row's scores, takes the weights from the saved
// statistics (softmax: P = exp(t - LSE); linear: t / S), and for every kept
// key j:
//
//   dP_j = dO_i . V_j
//   dT_j = P_j (dP_j - D_i)          softmax, with or without a sink
//        = dP_j w_j (1 - w_j)        sigmoid
//        = dP_j [t_j > 0]            relu
//        = (dP_j - D_i) / S_i        linear
//   dS_j = score_grad(s_j, dT_j)     (param gradients added on the way)
//   dV_j += w_j dO_i;  dQ_i += scale dS_j K_j;  dK_j += scale dS_j Q_i
//
// with D_i = dO_i . O_i. The sink's gradient dL/de = -sum_i exp(e - LSE_i)
// D_i goes through attn.sink_grad once per head. Masked entries contribute
// nothing; fully masked rows (and linear rows with S_i = 0) give zeros.
//
//===----------------------------------------------------------------------===//

#include "attnc/ABI/KernelABI.h"
#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/Conversion/KernelIRBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOBACKWARDLOOPS
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

class BackwardLoopsBuilder {
public:
  BackwardLoopsBuilder(attn::VariantOp variant, Type elementType)
      : variant(variant), elementType(elementType), b(variant) {}

  FailureOr<func::FuncOp> build();

private:
  Value cIdx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value cF32(double v) {
    return arith::ConstantOp::create(b, loc,
                                     b.getF32FloatAttr(static_cast<float>(v)));
  }
  Value toI32(Value idx) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), idx);
  }
  Value loadF32(Value memref, ValueRange idx) {
    Value x = memref::LoadOp::create(b, loc, memref, idx);
    return x.getType().isF32()
               ? x
               : arith::ExtFOp::create(b, loc, b.getF32Type(), x).getResult();
  }
  Value fadd(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value fsub(Value x, Value y) { return arith::SubFOp::create(b, loc, x, y); }
  Value fmul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value fcmp(arith::CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, loc, p, x, y);
  }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, loc, c, x, y);
  }
  /// for (iv = lb; iv < ub; ++iv) body(iv), with the builder inside.
  void forLoop(Value lb, Value ub, llvm::function_ref<void(Value)> body) {
    scf::ForOp::create(b, loc, lb, ub, cIdx(1), ValueRange{},
                       [&](OpBuilder &, Location, Value iv, ValueRange) {
                         body(iv);
                         scf::YieldOp::create(b, loc);
                       });
  }
  /// sum over c in [0, n) of term(c), as an f32 loop reduction.
  Value sumLoop(Value n, llvm::function_ref<Value(Value, Value)> term) {
    auto loop =
        scf::ForOp::create(b, loc, cIdx(0), n, cIdx(1), ValueRange{cF32(0.0)},
                           [&](OpBuilder &, Location, Value c, ValueRange acc) {
                             scf::YieldOp::create(b, loc, term(c, acc[0]));
                           });
    return loop.getResult(0);
  }
  void ifThen(Value cond, llvm::function_ref<void()> body) {
    scf::IfOp::create(b, loc, cond, [&](OpBuilder &, Location) {
      body();
      scf::YieldOp::create(b, loc);
    });
  }
  /// out[...] = scratch[...] over a rank-4 shape, truncated to the element
  /// type.
  void copyOut(Value scratch, Value out, ArrayRef<Value> dims);
  void emitRow(Value bi, Value hi, Value ii, Value hkv, Value scale, Value sink,
               Value deSlot);

  attn::VariantOp variant;
  Type elementType;
  OpBuilder b;
  Location loc = UnknownLoc::get(variant.getContext());
  KernelContext kctx;
  Value q, k, v, o, dO, stats, dq, dk, dv;
  Value sizeIdx[7];
  Value srow, trow, mrow, dqRow, dkAcc, dvAcc;
  attn::NormKind norm = attn::NormKind::softmax;
};

void BackwardLoopsBuilder::copyOut(Value scratch, Value out,
                                   ArrayRef<Value> dims) {
  forLoop(cIdx(0), dims[0], [&](Value i0) {
    forLoop(cIdx(0), dims[1], [&](Value i1) {
      forLoop(cIdx(0), dims[2], [&](Value i2) {
        forLoop(cIdx(0), dims[3], [&](Value i3) {
          Value x = memref::LoadOp::create(b, loc, scratch,
                                           ValueRange{i0, i1, i2, i3});
          if (!elementType.isF32())
            x = arith::TruncFOp::create(b, loc, elementType, x);
          memref::StoreOp::create(b, loc, x, out, ValueRange{i0, i1, i2, i3});
        });
      });
    });
  });
}

void BackwardLoopsBuilder::emitRow(Value bi, Value hi, Value ii, Value hkv,
                                   Value scale, Value sink, Value deSlot) {
  Value b32 = toI32(bi), h32 = toI32(hi), i32v = toI32(ii);
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  attn::ScoreGradOp gradOp = variant.getScoreGradOp();
  Value zero = cIdx(0);
  Value D = sizeIdx[5], Dv = sizeIdx[6], Lkv = sizeIdx[4];

  // Pass 1: the mask, s_j and t_j = score(s_j) for kept j.
  forLoop(zero, Lkv, [&](Value j) {
    Value j32 = toI32(j);
    Value keep =
        maskOp ? inlineItemRegion(b, maskOp.getBody(), {b32, h32, i32v, j32})
               : arith::ConstantOp::create(b, loc, b.getBoolAttr(true))
                     .getResult();
    memref::StoreOp::create(b, loc,
                            arith::ExtUIOp::create(b, loc, b.getI8Type(), keep),
                            mrow, ValueRange{j});
    ifThen(keep, [&] {
      // s = scale * dot(Q[b,h,i,:], K[b,hkv,j,:])
      Value dot = sumLoop(D, [&](Value d, Value acc) {
        return math::FmaOp::create(b, loc, loadF32(q, {bi, hi, ii, d}),
                                   loadF32(k, {bi, hkv, j, d}), acc);
      });
      Value s = fmul(dot, scale);
      Value t = scoreOp ? inlineItemRegion(b, scoreOp.getBody(),
                                           {b32, h32, i32v, j32, s})
                        : s;
      memref::StoreOp::create(b, loc, s, srow, ValueRange{j});
      memref::StoreOp::create(b, loc, t, trow, ValueRange{j});
    });
  });

  // D_i = dO_i . O_i and the row statistic.
  Value Di = sumLoop(Dv, [&](Value c, Value acc) {
    return math::FmaOp::create(b, loc, loadF32(dO, {bi, hi, ii, c}),
                               loadF32(o, {bi, hi, ii, c}), acc);
  });
  Value lse, inv, empty;
  if (norm == attn::NormKind::softmax) {
    lse = memref::LoadOp::create(b, loc, stats, ValueRange{bi, hi, ii});
    empty = fcmp(arith::CmpFPredicate::OEQ, lse, cF32(-INFINITY));
    if (sink) {
      // dL/de += -exp(e - LSE_i) D_i over the rows that keep a key.
      ifThen(arith::XOrIOp::create(
                 b, loc, empty,
                 arith::ConstantOp::create(b, loc, b.getBoolAttr(true))),
             [&] {
               Value pe = math::ExpOp::create(b, loc, fsub(sink, lse));
               Value old =
                   memref::LoadOp::create(b, loc, deSlot, ValueRange{cIdx(0)});
               Value term =
                   arith::ExtFOp::create(b, loc, b.getF64Type(), fmul(pe, Di));
               memref::StoreOp::create(b, loc,
                                       arith::SubFOp::create(b, loc, old, term),
                                       deSlot, ValueRange{cIdx(0)});
             });
    }
  } else if (norm == attn::NormKind::linear) {
    // 1 / S_i, or 0 where S_i = 0 (an empty row): zero gradients.
    Value S = memref::LoadOp::create(b, loc, stats, ValueRange{bi, hi, ii});
    inv = select(fcmp(arith::CmpFPredicate::OEQ, S, cF32(0.0)), cF32(0.0),
                 arith::DivFOp::create(b, loc, cF32(1.0), S));
  }

  forLoop(zero, D, [&](Value d) {
    memref::StoreOp::create(b, loc, cF32(0.0), dqRow, ValueRange{d});
  });
  // Pass 2: the gradients of every kept entry.
  forLoop(zero, Lkv, [&](Value j) {
    Value keep = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        memref::LoadOp::create(b, loc, mrow, ValueRange{j}),
        arith::ConstantOp::create(b, loc, b.getI8IntegerAttr(0)));
    ifThen(keep, [&] {
      Value s = memref::LoadOp::create(b, loc, srow, ValueRange{j});
      Value t = memref::LoadOp::create(b, loc, trow, ValueRange{j});
      // dP_j = dO_i . V_j
      Value dP = sumLoop(Dv, [&](Value c, Value acc) {
        return math::FmaOp::create(b, loc, loadF32(dO, {bi, hi, ii, c}),
                                   loadF32(v, {bi, hkv, j, c}), acc);
      });
      Value w, dT;
      switch (norm) {
      case attn::NormKind::softmax: // P = exp(t - LSE); dT = P (dP - D)
        w = select(empty, cF32(0.0), math::ExpOp::create(b, loc, fsub(t, lse)));
        dT = fmul(w, fsub(dP, Di));
        break;
      case attn::NormKind::sigmoid: { // dT = dP w (1 - w)
        Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, t));
        w = arith::DivFOp::create(b, loc, cF32(1.0), fadd(cF32(1.0), e));
        dT = fmul(dP, fmul(w, fsub(cF32(1.0), w)));
        break;
      }
      case attn::NormKind::relu: { // dT = dP [t > 0] (0 at 0)
        Value pos = fcmp(arith::CmpFPredicate::OGT, t, cF32(0.0));
        w = select(pos, t, cF32(0.0));
        dT = select(pos, dP, cF32(0.0));
        break;
      }
      case attn::NormKind::linear: // w = t / S; dT = (dP - D) / S
        w = fmul(t, inv);
        dT = fmul(fsub(dP, Di), inv);
        break;
      }
      Value j32 = toI32(j);
      Value dS = gradOp ? inlineItemRegion(b, gradOp.getBody(),
                                           {b32, h32, i32v, j32, s, dT})
                        : dT;
      Value dSs = fmul(dS, scale);
      // dV_j += w dO_i
      forLoop(zero, Dv, [&](Value c) {
        Value old =
            memref::LoadOp::create(b, loc, dvAcc, ValueRange{bi, hkv, j, c});
        Value x =
            math::FmaOp::create(b, loc, w, loadF32(dO, {bi, hi, ii, c}), old);
        memref::StoreOp::create(b, loc, x, dvAcc, ValueRange{bi, hkv, j, c});
      });
      // dQ_i += scale dS K_j;  dK_j += scale dS Q_i
      forLoop(zero, D, [&](Value d) {
        Value oq = memref::LoadOp::create(b, loc, dqRow, ValueRange{d});
        memref::StoreOp::create(
            b, loc,
            math::FmaOp::create(b, loc, dSs, loadF32(k, {bi, hkv, j, d}), oq),
            dqRow, ValueRange{d});
        Value ok =
            memref::LoadOp::create(b, loc, dkAcc, ValueRange{bi, hkv, j, d});
        memref::StoreOp::create(
            b, loc,
            math::FmaOp::create(b, loc, dSs, loadF32(q, {bi, hi, ii, d}), ok),
            dkAcc, ValueRange{bi, hkv, j, d});
      });
    });
  });
  forLoop(zero, D, [&](Value d) {
    Value x = memref::LoadOp::create(b, loc, dqRow, ValueRange{d});
    if (!elementType.isF32())
      x = arith::TruncFOp::create(b, loc, elementType, x);
    memref::StoreOp::create(b, loc, x, dq, ValueRange{bi, hi, ii, d});
  });
}

FailureOr<func::FuncOp> BackwardLoopsBuilder::build() {
  if (variant.getScoreOp() && !variant.getScoreGradOp())
    return variant.emitError()
           << "variant '" << variant.getSymName()
           << "' has a score but no attn.score_grad: run attn-differentiate "
              "before convert-attn-to-backward-loops";
  loc = variant.getLoc();
  norm = variant.getNormKind();
  MLIRContext *ctx = variant.getContext();
  SmallVector<attn::ParamOp> runtimeParams, gradParams;
  SmallVector<Type> inputs = backwardKernelArgumentTypes(
      b, variant, elementType, runtimeParams, gradParams);
  auto fn = func::FuncOp::create(b, loc, (variant.getSymName() + "_bwd").str(),
                                 FunctionType::get(ctx, inputs, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  KernelEntry e = bindBackwardKernelEntry(b, loc, variant, entry, runtimeParams,
                                          gradParams, kctx);
  q = e.q;
  k = e.k;
  v = e.v;
  o = e.o;
  dO = e.dO;
  stats = e.lse;
  dq = e.dq;
  dk = e.dk;
  dv = e.dv;
  std::copy(std::begin(e.sizeIdx), std::end(e.sizeIdx), sizeIdx);
  Value scale;
  if (attn::ScaleOp scaleOp = variant.getScaleOp())
    scale = inlineItemRegion(b, scaleOp.getBody(), {});
  else
    scale = arith::DivFOp::create(
        b, loc, cF32(1.0),
        math::SqrtOp::create(
            b, loc,
            arith::SIToFPOp::create(b, loc, b.getF32Type(), e.sizeI32[5])));

  auto alloc = [&](Type t, ArrayRef<Value> dims) {
    SmallVector<int64_t> shape(dims.size(), ShapedType::kDynamic);
    return memref::AllocOp::create(b, loc, MemRefType::get(shape, t), dims)
        .getResult();
  };
  Type f32 = b.getF32Type();
  srow = alloc(f32, {sizeIdx[4]});
  trow = alloc(f32, {sizeIdx[4]});
  mrow = alloc(b.getI8Type(), {sizeIdx[4]});
  dqRow = alloc(f32, {sizeIdx[5]});
  SmallVector<Value> kShape = {sizeIdx[0], sizeIdx[2], sizeIdx[4], sizeIdx[5]};
  SmallVector<Value> vShape = {sizeIdx[0], sizeIdx[2], sizeIdx[4], sizeIdx[6]};
  dkAcc = alloc(f32, kShape);
  dvAcc = alloc(f32, vShape);
  // dL/de accumulates over the rows of a head in f64.
  Value deSlot = alloc(b.getF64Type(), {cIdx(1)});
  Value zero = cIdx(0);
  for (const auto &accShape : {std::pair{dkAcc, kShape}, {dvAcc, vShape}}) {
    Value acc = accShape.first;
    const SmallVector<Value> &shape = accShape.second;
    forLoop(zero, shape[0], [&](Value i0) {
      forLoop(zero, shape[1], [&](Value i1) {
        forLoop(zero, shape[2], [&](Value i2) {
          forLoop(zero, shape[3], [&](Value i3) {
            memref::StoreOp::create(b, loc, cF32(0.0), acc,
                                    ValueRange{i0, i1, i2, i3});
          });
        });
      });
    });
  }

  attn::NormalizeOp normOp = variant.getNormalizeOp();
  bool hasSink = norm == attn::NormKind::softmax && normOp && normOp.hasSink();
  attn::SinkGradOp sinkGrad = variant.getSinkGradOp();
  forLoop(zero, sizeIdx[0], [&](Value bi) {
    forLoop(zero, sizeIdx[1], [&](Value hi) {
      Value hkv = arith::DivUIOp::create(
          b, loc, hi, arith::DivUIOp::create(b, loc, sizeIdx[1], sizeIdx[2]));
      Value sink;
      if (hasSink) {
        sink = inlineItemRegion(b, normOp.getSink(), {toI32(bi), toI32(hi)});
        memref::StoreOp::create(
            b, loc, arith::ConstantOp::create(b, loc, b.getF64FloatAttr(0.0)),
            deSlot, ValueRange{zero});
      }
      forLoop(zero, sizeIdx[3],
              [&](Value ii) { emitRow(bi, hi, ii, hkv, scale, sink, deSlot); });
      if (sinkGrad)
        inlineItemRegion(
            b, sinkGrad.getBody(),
            {toI32(bi), toI32(hi),
             arith::TruncFOp::create(
                 b, loc, b.getF32Type(),
                 memref::LoadOp::create(b, loc, deSlot, ValueRange{zero}))});
    });
  });
  copyOut(dkAcc, dk, kShape);
  copyOut(dvAcc, dv, vShape);
  for (Value buf : {srow, trow, mrow, dqRow, dkAcc, dvAcc, deSlot})
    memref::DeallocOp::create(b, loc, buf);
  func::ReturnOp::create(b, loc);
  expandAttnOps(fn, kctx);
  return fn;
}

struct ConvertAttnToBackwardLoopsPass
    : public attnc::impl::ConvertAttnToBackwardLoopsBase<
          ConvertAttnToBackwardLoopsPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    static constexpr llvm::StringRef kTypes[] = {"f32", "f16"};
    Type elemType = parseElementType(b, elementType, kTypes);
    if (!elemType) {
      module.emitError() << "convert-attn-to-backward-loops: element-type "
                            "must be "
                         << elementTypeChoices(kTypes) << ", got '"
                         << elementType << "'";
      return signalPassFailure();
    }
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    for (attn::VariantOp variant : variants) {
      if (failed(BackwardLoopsBuilder(variant, elemType).build()))
        return signalPassFailure();
      variant.erase();
    }
  }
};

} // namespace
