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

#include "attnc/Conversion/KernelABI.h"
#include "attnc/Conversion/Passes.h"

#include "attn/AttnDialect.h"

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

/// A strided memref of dynamic shape: what the kernel takes for every tensor.
MemRefType stridedMemRef(Type elementType, unsigned rank) {
  SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(elementType.getContext(),
                                       ShapedType::kDynamic, dyn);
  return MemRefType::get(dyn, elementType, layout);
}

Type abiType(Builder &b, attn::ParamOp p) {
  Type t = p.getElementType();
  if (p.isTensor())
    return stridedMemRef(t.isInteger(1) ? b.getI8Type() : t, p.getRank());
  return t.isInteger(1) ? b.getI32Type() : t;
}

class KernelBuilder {
public:
  KernelBuilder(attn::VariantOp variant, Type elementType)
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
  /// Clones the single block of `region` at the insertion point with its
  /// arguments bound to `args`; returns the yielded value.
  Value inlineRegion(Region &region, ValueRange args);
  /// Expands the attn ops that inlining left in the kernel.
  void expandAttnOps(func::FuncOp fn);
  void recordError(Location loc, ArrayRef<Value> words);
  Value checkedLoad(attn::ParamLoadOp op);
  Value checkedDivMod(Location loc, Value lhs, Value rhs, bool isMod);
  /// Emits the body for one query row (b, h, i).
  void emitRow(Location loc, Value bi, Value hi, Value ii, Value scale);

  attn::VariantOp variant;
  Type elementType;
  OpBuilder b;

  Value q, k, v, o, lse, flags, status;
  Value sizeIdx[7], sizeI32[7];
  Value srow, mrow, acc; // per-row buffers: scores, mask bytes, O accumulator
  struct ParamArg {
    Value arg;
    int ordinal;
  };
  llvm::StringMap<ParamArg> paramArgs;
};

Value KernelBuilder::inlineRegion(Region &region, ValueRange args) {
  Block &block = region.front();
  IRMapping map;
  map.map(block.getArguments(), args);
  for (Operation &op : block.without_terminator())
    b.clone(op, map);
  return map.lookup(llvm::cast<attn::YieldOp>(block.getTerminator()).getValue());
}

void KernelBuilder::recordError(Location loc, ArrayRef<Value> words) {
  for (auto [i, w] : llvm::enumerate(words))
    memref::StoreOp::create(b, loc, w, status, ValueRange{cIdx(loc, i)});
}

Value KernelBuilder::checkedLoad(attn::ParamLoadOp op) {
  Location loc = op.getLoc();
  const ParamArg &pa = paramArgs.find(op.getParam())->second;
  Type resultType = op.getType();
  // in bounds <=> 0 <= idx_d < size_d for every d; the first failing d is
  // what the error names.
  Value inBounds = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  Value badDim = cI32(loc, 0), badIdx = cI32(loc, 0), badSize = cI32(loc, 0);
  SmallVector<Value> indices;
  for (int d = op.getIndices().size() - 1; d >= 0; --d) {
    Value idx = op.getIndices()[d];
    Value size = arith::IndexCastOp::create(
        b, loc, b.getI32Type(), memref::DimOp::create(b, loc, pa.arg, d));
    Value ok = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, idx,
                              cI32(loc, 0)),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, idx, size));
    Value bad = arith::XOrIOp::create(
        b, loc, ok, arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
    badDim = arith::SelectOp::create(b, loc, bad, cI32(loc, d), badDim);
    badIdx = arith::SelectOp::create(b, loc, bad, idx, badIdx);
    badSize = arith::SelectOp::create(b, loc, bad, size, badSize);
    inBounds = arith::AndIOp::create(b, loc, inBounds, ok);
  }
  for (Value idx : op.getIndices())
    indices.push_back(
        arith::IndexCastOp::create(b, loc, b.getIndexType(), idx));
  auto ifOp = scf::IfOp::create(
      b, loc, inBounds,
      [&](OpBuilder &nb, Location l) {
        Value x = memref::LoadOp::create(nb, l, pa.arg, indices);
        if (resultType.isInteger(1))
          x = arith::CmpIOp::create(
              nb, l, arith::CmpIPredicate::ne, x,
              arith::ConstantOp::create(nb, l, nb.getI8IntegerAttr(0)));
        scf::YieldOp::create(nb, l, x);
      },
      [&](OpBuilder &nb, Location l) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        recordError(l, {cI32(l, kStatusIndexOutOfRange), cI32(l, pa.ordinal),
                        badDim, badIdx, badSize});
        Value zero = arith::ConstantOp::create(
            b, l, b.getZeroAttr(resultType));
        scf::YieldOp::create(b, l, zero);
      });
  return ifOp.getResult(0);
}

Value KernelBuilder::checkedDivMod(Location loc, Value lhs, Value rhs,
                                   bool isMod) {
  // A zero divisor is recorded; -1 is special-cased so that INT_MIN / -1
  // wraps instead of trapping.
  Value isZero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, rhs,
                                       cI32(loc, 0));
  Value isMinusOne = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                           rhs, cI32(loc, -1));
  Value safe = arith::SelectOp::create(
      b, loc, arith::OrIOp::create(b, loc, isZero, isMinusOne), cI32(loc, 1),
      rhs);
  Value quot = arith::FloorDivSIOp::create(b, loc, lhs, safe);
  quot = arith::SelectOp::create(
      b, loc, isMinusOne, arith::SubIOp::create(b, loc, cI32(loc, 0), lhs),
      quot);
  scf::IfOp::create(b, loc, isZero, [&](OpBuilder &nb, Location l) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
    recordError(l, {cI32(l, kStatusDivisionByZero)});
    scf::YieldOp::create(b, l);
  });
  if (!isMod)
    return quot;
  // lhs % rhs = lhs - floor(lhs / rhs) * rhs
  return arith::SubIOp::create(b, loc, lhs,
                               arith::MulIOp::create(b, loc, quot, rhs));
}

void KernelBuilder::expandAttnOps(func::FuncOp fn) {
  SmallVector<Operation *> ops;
  fn.walk([&](Operation *op) {
    if (llvm::isa<attn::SizeOp, attn::ParamGetOp, attn::ParamLoadOp,
                  attn::FloorDivOp, attn::FloorModOp>(op))
      ops.push_back(op);
  });
  for (Operation *op : ops) {
    b.setInsertionPoint(op);
    Location loc = op->getLoc();
    Value repl;
    if (auto size = llvm::dyn_cast<attn::SizeOp>(op)) {
      repl = sizeI32[static_cast<int>(size.getKind())];
    } else if (auto get = llvm::dyn_cast<attn::ParamGetOp>(op)) {
      auto param = llvm::cast<attn::ParamOp>(
          SymbolTable::lookupSymbolIn(variant, get.getParamAttr()));
      if (param.getIsConst()) {
        repl = arith::ConstantOp::create(b, loc, *param.getValue());
      } else {
        repl = paramArgs.find(get.getParam())->second.arg;
        if (get.getType().isInteger(1))
          repl = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, repl,
                                       cI32(loc, 0));
      }
    } else if (auto load = llvm::dyn_cast<attn::ParamLoadOp>(op)) {
      repl = checkedLoad(load);
    } else if (auto div = llvm::dyn_cast<attn::FloorDivOp>(op)) {
      repl = checkedDivMod(loc, div.getLhs(), div.getRhs(), false);
    } else if (auto mod = llvm::dyn_cast<attn::FloorModOp>(op)) {
      repl = checkedDivMod(loc, mod.getLhs(), mod.getRhs(), true);
    }
    op->getResult(0).replaceAllUsesWith(repl);
    op->erase();
  }
}

void KernelBuilder::emitRow(Location loc, Value bi, Value hi, Value ii,
                            Value scale) {
  auto idx32 = [&](Value x) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), x).getResult();
  };
  Value zero = cIdx(loc, 0), one = cIdx(loc, 1);
  Value group = arith::DivUIOp::create(b, loc, sizeIdx[1], sizeIdx[2]);
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
      b, loc, zero, sizeIdx[4], one, ValueRange{negInf, cI32(loc, 0)},
      [&](OpBuilder &nb, Location l, Value j, ValueRange iters) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        Value j32 = idx32(j);
        Value keep = maskOp ? inlineRegion(maskOp.getBody(),
                                           {b32, h32, i32v, j32})
                            : arith::ConstantOp::create(b, l, b.getBoolAttr(true))
                                  .getResult();
        auto sIf = scf::IfOp::create(
            b, l, keep,
            [&](OpBuilder &tb, Location tl) {
              OpBuilder::InsertionGuard g2(b);
              b.setInsertionPoint(tb.getInsertionBlock(), tb.getInsertionPoint());
              // s = scale * dot(Q[b,h,i,:], K[b,hkv,j,:])
              auto dot = scf::ForOp::create(
                  b, tl, zero, sizeIdx[5], one, ValueRange{f0},
                  [&](OpBuilder &db, Location dl, Value d, ValueRange acc) {
                    OpBuilder::InsertionGuard g3(b);
                    b.setInsertionPoint(db.getInsertionBlock(),
                                        db.getInsertionPoint());
                    Value qd = loadF32(dl, q, {bi, hi, ii, d});
                    Value kd = loadF32(dl, k, {bi, hkv, j, d});
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
  scf::ForOp::create(b, loc, zero, sizeIdx[6], one, ValueRange{},
                     [&](OpBuilder &nb, Location l, Value c, ValueRange) {
                       memref::StoreOp::create(nb, l, f0, acc, ValueRange{c});
                       scf::YieldOp::create(nb, l);
                     });
  auto pass2 = scf::ForOp::create(
      b, loc, zero, sizeIdx[4], one, ValueRange{f0},
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
              b.setInsertionPoint(tb.getInsertionBlock(), tb.getInsertionPoint());
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
                        math::ExpOp::create(
                            b, tl, arith::NegFOp::create(b, tl, s))));
                break;
              case attn::NormKind::relu: // max(s, 0)
                w = arith::MaximumFOp::create(b, tl, s, f0);
                break;
              case attn::NormKind::linear:
                w = s;
                break;
              }
              scf::ForOp::create(
                  b, tl, zero, sizeIdx[6], one, ValueRange{},
                  [&](OpBuilder &cb, Location cl, Value c, ValueRange) {
                    OpBuilder::InsertionGuard g3(b);
                    b.setInsertionPoint(cb.getInsertionBlock(),
                                        cb.getInsertionPoint());
                    Value vc = loadF32(cl, v, {bi, hkv, j, c});
                    Value a = memref::LoadOp::create(b, cl, acc, ValueRange{c});
                    memref::StoreOp::create(
                        b, cl, math::FmaOp::create(b, cl, w, vc, a), acc,
                        ValueRange{c});
                    scf::YieldOp::create(b, cl);
                  });
              scf::YieldOp::create(b, tl,
                                   arith::AddFOp::create(b, tl, iters[0], w)
                                       .getResult());
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
  Value zeroDenom = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                          denom, f0);
  Value inv = arith::SelectOp::create(
      b, loc, arith::OrIOp::create(b, loc, empty, zeroDenom), f0,
      arith::DivFOp::create(b, loc, f1, denom));
  scf::ForOp::create(
      b, loc, zero, sizeIdx[6], one, ValueRange{},
      [&](OpBuilder &nb, Location l, Value c, ValueRange) {
        Value a = memref::LoadOp::create(nb, l, acc, ValueRange{c});
        Value out = arith::MulFOp::create(nb, l, a, inv);
        if (!elementType.isF32())
          out = arith::TruncFOp::create(nb, l, elementType, out);
        memref::StoreOp::create(nb, l, out, o, ValueRange{bi, hi, ii, c});
        scf::YieldOp::create(nb, l);
      });
  // LSE = M + log(denom), or -inf for an empty row.
  if (norm == attn::NormKind::softmax) {
    Value wantLse = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, flags, cI32(loc, kFlagWriteLSE)),
        cI32(loc, 0));
    scf::IfOp::create(b, loc, wantLse, [&](OpBuilder &nb, Location l) {
      Value value = arith::AddFOp::create(nb, l, m,
                                          math::LogOp::create(nb, l, denom));
      value = arith::SelectOp::create(nb, l, empty, negInf, value);
      memref::StoreOp::create(nb, l, value, lse, ValueRange{bi, hi, ii});
      scf::YieldOp::create(nb, l);
    });
  }
}

func::FuncOp KernelBuilder::build() {
  Location loc = variant.getLoc();
  MLIRContext *ctx = variant.getContext();
  SmallVector<Type> inputs(4, stridedMemRef(elementType, 4));
  inputs.push_back(stridedMemRef(b.getF32Type(), 3));
  SmallVector<attn::ParamOp> runtimeParams;
  for (attn::ParamOp p : variant.getParams())
    if (!p.getIsConst()) {
      runtimeParams.push_back(p);
      inputs.push_back(abiType(b, p));
    }
  inputs.push_back(b.getI32Type());
  inputs.push_back(MemRefType::get({kStatusWords}, b.getI32Type()));
  auto fn = func::FuncOp::create(b, loc, variant.getSymName(),
                                 FunctionType::get(ctx, inputs, {}));
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  q = entry->getArgument(0);
  k = entry->getArgument(1);
  v = entry->getArgument(2);
  o = entry->getArgument(3);
  lse = entry->getArgument(4);
  for (auto [i, p] : llvm::enumerate(runtimeParams))
    paramArgs[p.getSymName()] = {entry->getArgument(5 + i),
                                 static_cast<int>(i)};
  flags = entry->getArgument(entry->getNumArguments() - 2);
  status = entry->getArgument(entry->getNumArguments() - 1);

  // Sizes, in attn::SizeKind order: B, H, Hkv, Lq, Lkv, D, Dv.
  std::pair<Value, int64_t> dims[7] = {{q, 0}, {q, 1}, {k, 1}, {q, 2},
                                       {k, 2}, {q, 3}, {v, 3}};
  for (int s = 0; s < 7; ++s) {
    sizeIdx[s] = memref::DimOp::create(b, loc, dims[s].first, dims[s].second);
    sizeI32[s] =
        arith::IndexCastOp::create(b, loc, b.getI32Type(), sizeIdx[s]);
  }
  // Scale: the item's expression, or 1 / sqrt(D).
  Value scale;
  if (attn::ScaleOp scaleOp = variant.getScaleOp())
    scale = inlineRegion(scaleOp.getBody(), {});
  else
    scale = arith::DivFOp::create(
        b, loc, cF32(loc, 1.0),
        math::SqrtOp::create(b, loc,
                             arith::SIToFPOp::create(b, loc, b.getF32Type(),
                                                     sizeI32[5])));
  srow = memref::AllocOp::create(b, loc,
                                 MemRefType::get({ShapedType::kDynamic},
                                                 b.getF32Type()),
                                 ValueRange{sizeIdx[4]});
  mrow = memref::AllocOp::create(b, loc,
                                 MemRefType::get({ShapedType::kDynamic},
                                                 b.getI8Type()),
                                 ValueRange{sizeIdx[4]});
  acc = memref::AllocOp::create(b, loc,
                                MemRefType::get({ShapedType::kDynamic},
                                                b.getF32Type()),
                                ValueRange{sizeIdx[6]});
  Value zero = cIdx(loc, 0), one = cIdx(loc, 1);
  // for b, h, i: one row at a time.
  scf::ForOp::create(
      b, loc, zero, sizeIdx[0], one, ValueRange{},
      [&](OpBuilder &b1, Location l1, Value bi, ValueRange) {
        scf::ForOp::create(
            b1, l1, zero, sizeIdx[1], one, ValueRange{},
            [&](OpBuilder &b2, Location l2, Value hi, ValueRange) {
              scf::ForOp::create(
                  b2, l2, zero, sizeIdx[3], one, ValueRange{},
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
  expandAttnOps(fn);
  return fn;
}

struct ConvertAttnToLoopsPass
    : public attnc::impl::ConvertAttnToLoopsBase<ConvertAttnToLoopsPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    Type elemType;
    if (elementType == "f32")
      elemType = b.getF32Type();
    else if (elementType == "f16")
      elemType = b.getF16Type();
    else {
      module.emitError() << "convert-attn-to-loops: element-type must be f32 "
                            "or f16, got '"
                         << elementType << "'";
      return signalPassFailure();
    }
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    for (attn::VariantOp variant : variants) {
      KernelBuilder(variant, elemType).build();
      variant.erase();
    }
  }
};

} // namespace
