//===- AttnToLoops.cpp - Reference lowering of attn.variant to scf loops --===//
//
// The numerical reference of the compiler: every attn.variant becomes a
// func.func of plain scf loops over (b, h, i) with two passes over the keys
// per row (scores and row maximum, then weights against V), float32
// accumulation throughout. It favours clarity over speed: the optimised
// pipelines are tested against it. The variant's regions are cloned in place
// at each use and their attn ops expanded afterwards into memref loads with
// bounds checks, checked integer division and the problem's sizes.
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
#include "mlir/IR/IRMapping.h"

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOLOOPS
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

class ReferenceKernelBuilder {
public:
  ReferenceKernelBuilder(attn::VariantOp variant, Type elementType)
      : variant(variant), elementType(elementType), b(variant) {}

  func::FuncOp build();

private:
  Value cI32(Location loc, int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  }
  Value cF32(Location loc, double v) {
    return arith::ConstantOp::create(b, loc,
                                     b.getF32FloatAttr(static_cast<float>(v)));
  }
  Value cIdx(Location loc, int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v);
  }
  Value loadF32(Location loc, Value memref, ValueRange idx) {
    Value x = memref::LoadOp::create(b, loc, memref, idx);
    return x.getType().isF32()
               ? x
               : arith::ExtFOp::create(b, loc, b.getF32Type(), x).getResult();
  }
  Value inlineRegion(Region &region, ValueRange args) {
    return inlineItemRegion(b, region, args);
  }
  /// Emits the body for one query row (b, h, i).
  void emitRow(Location loc, Value bi, Value hi, Value ii, Value scale);

  attn::VariantOp variant;
  Type elementType;
  OpBuilder b;

  KernelEntry entry;     // the arguments and sizes
  Value srow, mrow, acc; // per-row buffers: scores, mask bytes, O accumulator
  KernelContext kctx;
};

void ReferenceKernelBuilder::emitRow(Location loc, Value bi, Value hi, Value ii,
                                     Value scale) {
  auto idx32 = [&](Value x) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), x).getResult();
  };
  Value zero = cIdx(loc, 0), one = cIdx(loc, 1);
  Value group =
      arith::DivUIOp::create(b, loc, entry.sizeIdx[1], entry.sizeIdx[2]);
  Value hkv = arith::DivUIOp::create(b, loc, hi, group);
  Value b32 = idx32(bi), h32 = idx32(hi), i32v = idx32(ii);
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  attn::NormKind norm = variant.getNormKind();
  attn::NormalizeOp normOp = variant.getNormalizeOp();
  Value negInf = cF32(loc, -std::numeric_limits<double>::infinity());
  Value f0 = cF32(loc, 0.0), f1 = cF32(loc, 1.0);

  // Pass 1: s_j for unmasked j, row maximum M and the count of unmasked j.
  auto pass1 = scf::ForOp::create(
      b, loc, zero, entry.sizeIdx[4], one, ValueRange{negInf, cI32(loc, 0)},
      [&](OpBuilder &nb, Location l, Value j, ValueRange iters) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        Value j32 = idx32(j);
        Value keep = maskOp
                         ? inlineRegion(maskOp.getBody(), {b32, h32, i32v, j32})
                         : arith::ConstantOp::create(b, l, b.getBoolAttr(true))
                               .getResult();
        auto sIf = scf::IfOp::create(
            b, l, keep,
            [&](OpBuilder &tb, Location tl) {
              OpBuilder::InsertionGuard g2(b);
              b.setInsertionPoint(tb.getInsertionBlock(),
                                  tb.getInsertionPoint());
              // s = scale * dot(Q[b,h,i,:], K[b,hkv,j,:])
              auto dot = scf::ForOp::create(
                  b, tl, zero, entry.sizeIdx[5], one, ValueRange{f0},
                  [&](OpBuilder &db, Location dl, Value d, ValueRange acc) {
                    OpBuilder::InsertionGuard g3(b);
                    b.setInsertionPoint(db.getInsertionBlock(),
                                        db.getInsertionPoint());
                    Value qd = loadF32(dl, entry.q, {bi, hi, ii, d});
                    Value kd = loadF32(dl, entry.k, {bi, hkv, j, d});
                    Value sum = math::FmaOp::create(b, dl, qd, kd, acc[0]);
                    scf::YieldOp::create(b, dl, sum);
                  });
              Value s = arith::MulFOp::create(b, tl, dot.getResult(0), scale);
              if (scoreOp)
                s = inlineRegion(scoreOp.getBody(), {b32, h32, i32v, j32, s});
              scf::YieldOp::create(b, tl, s);
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, f0);
            });
        Value s = sIf.getResult(0);
        memref::StoreOp::create(b, l, s, srow, ValueRange{j});
        memref::StoreOp::create(
            b, l, arith::ExtUIOp::create(b, l, b.getI8Type(), keep), mrow,
            ValueRange{j});
        Value m = arith::SelectOp::create(
            b, l, keep, arith::MaximumFOp::create(b, l, iters[0], s), iters[0]);
        Value n = arith::AddIOp::create(
            b, l, iters[1], arith::ExtUIOp::create(b, l, b.getI32Type(), keep));
        scf::YieldOp::create(b, l, ValueRange{m, n});
      });
  Value rowMax = pass1.getResult(0);
  Value count = pass1.getResult(1);
  Value empty = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, count,
                                      cI32(loc, 0));

  // The sink logit e joins the maximum: M = max(M, e).
  Value sink;
  if (norm == attn::NormKind::softmax && normOp && normOp.hasSink()) {
    sink = inlineRegion(normOp.getSink(), {b32, h32});
    rowMax = arith::MaximumFOp::create(b, loc, rowMax, sink);
  }
  // Keep M finite on empty rows so that s - M never becomes NaN.
  Value m = arith::SelectOp::create(b, loc, empty, f0, rowMax);

  // Pass 2: weights w_j, acc = sum_j w_j * V[b,hkv,j,:], and their sum.
  scf::ForOp::create(b, loc, zero, entry.sizeIdx[6], one, ValueRange{},
                     [&](OpBuilder &nb, Location l, Value c, ValueRange) {
                       memref::StoreOp::create(nb, l, f0, acc, ValueRange{c});
                       scf::YieldOp::create(nb, l);
                     });
  auto pass2 = scf::ForOp::create(
      b, loc, zero, entry.sizeIdx[4], one, ValueRange{f0},
      [&](OpBuilder &nb, Location l, Value j, ValueRange iters) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        Value keep = arith::CmpIOp::create(
            b, l, arith::CmpIPredicate::ne,
            memref::LoadOp::create(b, l, mrow, ValueRange{j}),
            arith::ConstantOp::create(b, l, b.getI8IntegerAttr(0)));
        auto wIf = scf::IfOp::create(
            b, l, keep,
            [&](OpBuilder &tb, Location tl) {
              OpBuilder::InsertionGuard g2(b);
              b.setInsertionPoint(tb.getInsertionBlock(),
                                  tb.getInsertionPoint());
              Value s = memref::LoadOp::create(b, tl, srow, ValueRange{j});
              Value w;
              switch (norm) {
              case attn::NormKind::softmax: // exp(s - M)
                w = math::ExpOp::create(b, tl,
                                        arith::SubFOp::create(b, tl, s, m));
                break;
              case attn::NormKind::sigmoid: // 1 / (1 + exp(-s))
                w = arith::DivFOp::create(
                    b, tl, f1,
                    arith::AddFOp::create(
                        b, tl, f1,
                        math::ExpOp::create(b, tl,
                                            arith::NegFOp::create(b, tl, s))));
                break;
              case attn::NormKind::relu: // max(s, 0)
                w = arith::MaximumFOp::create(b, tl, s, f0);
                break;
              case attn::NormKind::linear:
                w = s;
                break;
              }
              scf::ForOp::create(
                  b, tl, zero, entry.sizeIdx[6], one, ValueRange{},
                  [&](OpBuilder &cb, Location cl, Value c, ValueRange) {
                    OpBuilder::InsertionGuard g3(b);
                    b.setInsertionPoint(cb.getInsertionBlock(),
                                        cb.getInsertionPoint());
                    Value vc = loadF32(cl, entry.v, {bi, hkv, j, c});
                    Value a = memref::LoadOp::create(b, cl, acc, ValueRange{c});
                    memref::StoreOp::create(
                        b, cl, math::FmaOp::create(b, cl, w, vc, a), acc,
                        ValueRange{c});
                    scf::YieldOp::create(b, cl);
                  });
              scf::YieldOp::create(
                  b, tl, arith::AddFOp::create(b, tl, iters[0], w).getResult());
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, iters[0]);
            });
        scf::YieldOp::create(b, l, wIf.getResult(0));
      });
  Value denom = pass2.getResult(0);
  if (sink) // + exp(e - M)
    denom = arith::AddFOp::create(
        b, loc, denom,
        math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, sink, m)));
  if (norm == attn::NormKind::sigmoid || norm == attn::NormKind::relu)
    denom = f1;
  // O = acc / denom; an empty row (or a zero linear denominator) gives 0.
  Value zeroDenom =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, denom, f0);
  Value inv = arith::SelectOp::create(
      b, loc, arith::OrIOp::create(b, loc, empty, zeroDenom), f0,
      arith::DivFOp::create(b, loc, f1, denom));
  scf::ForOp::create(
      b, loc, zero, entry.sizeIdx[6], one, ValueRange{},
      [&](OpBuilder &nb, Location l, Value c, ValueRange) {
        Value a = memref::LoadOp::create(nb, l, acc, ValueRange{c});
        Value out = arith::MulFOp::create(nb, l, a, inv);
        if (!elementType.isF32())
          out = arith::TruncFOp::create(nb, l, elementType, out);
        memref::StoreOp::create(nb, l, out, entry.o, ValueRange{bi, hi, ii, c});
        scf::YieldOp::create(nb, l);
      });
  // LSE = M + log(denom), or -inf for an empty row.
  if (norm == attn::NormKind::softmax) {
    Value wantLse = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, entry.flags, cI32(loc, kFlagWriteLSE)),
        cI32(loc, 0));
    scf::IfOp::create(b, loc, wantLse, [&](OpBuilder &nb, Location l) {
      Value value =
          arith::AddFOp::create(nb, l, m, math::LogOp::create(nb, l, denom));
      value = arith::SelectOp::create(nb, l, empty, negInf, value);
      memref::StoreOp::create(nb, l, value, entry.lse, ValueRange{bi, hi, ii});
      scf::YieldOp::create(nb, l);
    });
  }
}

func::FuncOp ReferenceKernelBuilder::build() {
  Location loc = variant.getLoc();
  MLIRContext *ctx = variant.getContext();
  SmallVector<attn::ParamOp> runtimeParams;
  SmallVector<Type> inputs =
      kernelArgumentTypes(b, variant, elementType, runtimeParams);
  auto fn = func::FuncOp::create(b, loc, variant.getSymName(),
                                 FunctionType::get(ctx, inputs, {}));
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToStart(body);
  entry = bindKernelEntry(b, loc, variant, body, runtimeParams, kctx);
  // Scale: the item's expression, or 1 / sqrt(D).
  Value scale;
  if (attn::ScaleOp scaleOp = variant.getScaleOp())
    scale = inlineRegion(scaleOp.getBody(), {});
  else
    scale = arith::DivFOp::create(
        b, loc, cF32(loc, 1.0),
        math::SqrtOp::create(
            b, loc,
            arith::SIToFPOp::create(b, loc, b.getF32Type(), entry.sizeI32[5])));
  srow = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{entry.sizeIdx[4]});
  mrow = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getI8Type()),
      ValueRange{entry.sizeIdx[4]});
  acc = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{entry.sizeIdx[6]});
  Value zero = cIdx(loc, 0), one = cIdx(loc, 1);
  // for b, h, i: one row at a time.
  scf::ForOp::create(
      b, loc, zero, entry.sizeIdx[0], one, ValueRange{},
      [&](OpBuilder &b1, Location l1, Value bi, ValueRange) {
        scf::ForOp::create(
            b1, l1, zero, entry.sizeIdx[1], one, ValueRange{},
            [&](OpBuilder &b2, Location l2, Value hi, ValueRange) {
              scf::ForOp::create(
                  b2, l2, zero, entry.sizeIdx[3], one, ValueRange{},
                  [&](OpBuilder &b3, Location l3, Value ii, ValueRange) {
                    OpBuilder::InsertionGuard guard(b);
                    b.setInsertionPoint(b3.getInsertionBlock(),
                                        b3.getInsertionPoint());
                    emitRow(l3, bi, hi, ii, scale);
                    scf::YieldOp::create(b, l3);
                  });
              scf::YieldOp::create(b2, l2);
            });
        scf::YieldOp::create(b1, l1);
      });
  memref::DeallocOp::create(b, loc, srow);
  memref::DeallocOp::create(b, loc, mrow);
  memref::DeallocOp::create(b, loc, acc);
  func::ReturnOp::create(b, loc);
  expandAttnOps(fn, kctx);
  return fn;
}

struct ConvertAttnToLoopsPass
    : public attnc::impl::ConvertAttnToLoopsBase<ConvertAttnToLoopsPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    static constexpr llvm::StringRef kTypes[] = {"f32", "f16"};
    Type elemType = parseElementType(b, elementType, kTypes);
    if (!elemType) {
      module.emitError() << "convert-attn-to-loops: element-type must be "
                         << elementTypeChoices(kTypes) << ", got '"
                         << elementType << "'";
      return signalPassFailure();
    }
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    for (attn::VariantOp variant : variants) {
      ReferenceKernelBuilder(variant, elemType).build();
      variant.erase();
    }
  }
};

} // namespace
