//===- ExpandAttnOps.cpp - Expanding attn expression ops inside kernels ---===//
//
// Shared by every kernel generator: after a variant's regions are cloned into
// a kernel, the attn ops they hold become memref loads with bounds checks,
// checked integer arithmetic, arguments and constants.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/ABI/KernelABI.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/IRMapping.h"

#include <functional>

using namespace mlir;
using namespace attnc;

MemRefType attnc::stridedMemRef(Type elementType, unsigned rank) {
  SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(elementType.getContext(),
                                       ShapedType::kDynamic, dyn);
  return MemRefType::get(dyn, elementType, layout);
}

Type attnc::kernelParamType(Builder &b, attn::ParamOp p) {
  Type t = p.getElementType();
  if (p.isTensor())
    return stridedMemRef(t.isInteger(1) ? b.getI8Type() : t, p.getRank());
  return t.isInteger(1) ? b.getI32Type() : t;
}

SmallVector<Type>
attnc::kernelArgumentTypes(Builder &b, attn::VariantOp variant,
                           Type elementType,
                           SmallVectorImpl<attn::ParamOp> &runtimeParams) {
  SmallVector<Type> inputs(4, stridedMemRef(elementType, 4));
  inputs.push_back(stridedMemRef(b.getF32Type(), 3));
  for (attn::ParamOp p : variant.getParams())
    if (!p.getIsConst()) {
      runtimeParams.push_back(p);
      inputs.push_back(kernelParamType(b, p));
    }
  inputs.push_back(b.getI32Type());
  inputs.push_back(MemRefType::get({kStatusWords}, b.getI32Type()));
  return inputs;
}

KernelEntry attnc::bindKernelEntry(OpBuilder &b, Location loc,
                                   attn::VariantOp variant, Block *entry,
                                   ArrayRef<attn::ParamOp> runtimeParams,
                                   KernelContext &ctx) {
  KernelEntry e;
  e.q = entry->getArgument(0);
  e.k = entry->getArgument(1);
  e.v = entry->getArgument(2);
  e.o = entry->getArgument(3);
  e.lse = entry->getArgument(4);
  for (auto [i, p] : llvm::enumerate(runtimeParams))
    ctx.params[attn::ParamOp(p).getSymName()] = {entry->getArgument(5 + i),
                                                 static_cast<int>(i)};
  e.numLeading = 7 + runtimeParams.size();
  e.flags = entry->getArgument(e.numLeading - 2);
  e.status = entry->getArgument(e.numLeading - 1);
  // Sizes, in attn::SizeKind order: B, H, Hkv, Lq, Lkv, D, Dv.
  std::pair<Value, int64_t> dims[7] = {{e.q, 0}, {e.q, 1}, {e.k, 1}, {e.q, 2},
                                       {e.k, 2}, {e.q, 3}, {e.v, 3}};
  for (int i = 0; i < 7; ++i) {
    e.sizeIdx[i] = memref::DimOp::create(b, loc, dims[i].first, dims[i].second);
    e.sizeI32[i] =
        arith::IndexCastOp::create(b, loc, b.getI32Type(), e.sizeIdx[i]);
    ctx.sizeI32[i] = e.sizeI32[i];
  }
  ctx.variant = variant;
  ctx.status = e.status;
  return e;
}

IntervalValues attnc::emitTensorBoxRange(OpBuilder &b, Location loc,
                                         Value tensor, bool isBool,
                                         ArrayRef<IntervalValues> box,
                                         int64_t maxEntries) {
  auto c64 = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
  };
  auto toIndex = [&](Value v) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  };
  // inside = 0 <= lo_d and hi_d < dim_d for every d; count = prod (hi - lo + 1)
  Value inside = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  Value count = c64(1);
  for (auto [d, range] : llvm::enumerate(box)) {
    Value dim = arith::IndexCastOp::create(
        b, loc, b.getI64Type(), memref::DimOp::create(b, loc, tensor, d));
    inside = arith::AndIOp::create(
        b, loc, inside,
        arith::AndIOp::create(
            b, loc,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, range.lo,
                                  c64(0)),
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, range.hi,
                                  dim)));
    count = arith::MulIOp::create(
        b, loc, count,
        arith::AddIOp::create(
            b, loc, arith::SubIOp::create(b, loc, range.hi, range.lo), c64(1)));
  }
  Value ok = arith::AndIOp::create(
      b, loc, inside,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, count,
                            c64(maxEntries)));
  int64_t topLo = isBool ? 0 : INT32_MIN, topHi = isBool ? 1 : INT32_MAX;
  auto ifOp = scf::IfOp::create(
      b, loc, ok,
      [&](OpBuilder &, Location) {
        SmallVector<Value> acc = {c64(INT64_MAX), c64(INT64_MIN)};
        std::function<void(unsigned, SmallVector<Value> &)> rec =
            [&](unsigned d, SmallVector<Value> &ivs) {
              if (d == box.size()) {
                Value x = memref::LoadOp::create(b, loc, tensor, ivs);
                // i8 bytes of a bool: any non-zero is true, 0x80 and up too
                // (zero-extended, so a true byte never reads as negative).
                x = isBool
                        ? arith::MinUIOp::create(
                              b, loc,
                              arith::ExtUIOp::create(b, loc, b.getI64Type(), x),
                              c64(1))
                              .getResult()
                        : arith::ExtSIOp::create(b, loc, b.getI64Type(), x)
                              .getResult();
                acc = {arith::MinSIOp::create(b, loc, acc[0], x),
                       arith::MaxSIOp::create(b, loc, acc[1], x)};
                return;
              }
              auto loop = scf::ForOp::create(
                  b, loc, toIndex(box[d].lo),
                  toIndex(arith::AddIOp::create(b, loc, box[d].hi, c64(1))),
                  arith::ConstantIndexOp::create(b, loc, 1), acc,
                  [&](OpBuilder &, Location, Value iv, ValueRange a) {
                    acc.assign(a.begin(), a.end());
                    ivs.push_back(iv);
                    rec(d + 1, ivs);
                    ivs.pop_back();
                    scf::YieldOp::create(b, loc, acc);
                  });
              acc.assign(loop.getResults().begin(), loop.getResults().end());
            };
        SmallVector<Value> ivs;
        rec(0, ivs);
        scf::YieldOp::create(b, loc, acc);
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, loc, ValueRange{c64(topLo), c64(topHi)});
      });
  return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
}

Value attnc::inlineItemRegion(OpBuilder &b, Region &region, ValueRange args) {
  Block &block = region.front();
  IRMapping map;
  map.map(block.getArguments(), args);
  for (Operation &op : block.without_terminator())
    b.clone(op, map);
  return map.lookup(
      llvm::cast<attn::YieldOp>(block.getTerminator()).getValue());
}

namespace {
class Expander {
public:
  explicit Expander(KernelContext ctx)
      : ctx(std::move(ctx)), b(this->ctx.variant.getContext()) {}
  void run(Operation *root);

private:
  Value cI32(Location loc, int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  }
  Value cIdx(Location loc, int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v);
  }
  void recordError(Location loc, ArrayRef<Value> words);
  Value checkedLoad(attn::ParamLoadOp op);
  Value checkedDivMod(Location loc, Value lhs, Value rhs, bool isMod);

  KernelContext ctx;
  OpBuilder b;
};
} // namespace

void Expander::recordError(Location loc, ArrayRef<Value> words) {
  for (auto [i, w] : llvm::enumerate(words))
    memref::StoreOp::create(b, loc, w, ctx.status, ValueRange{cIdx(loc, i)});
}

Value Expander::checkedLoad(attn::ParamLoadOp op) {
  Location loc = op.getLoc();
  const KernelParamArg &pa = ctx.params.find(op.getParam())->second;
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
        Value zero = arith::ConstantOp::create(b, l, b.getZeroAttr(resultType));
        scf::YieldOp::create(b, l, zero);
      });
  return ifOp.getResult(0);
}

Value Expander::checkedDivMod(Location loc, Value lhs, Value rhs, bool isMod) {
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

void Expander::run(Operation *root) {
  SmallVector<Operation *> ops;
  root->walk([&](Operation *op) {
    if (llvm::isa<attn::SizeOp, attn::ParamGetOp, attn::ParamLoadOp,
                  attn::FloorDivOp, attn::FloorModOp>(op))
      ops.push_back(op);
  });
  for (Operation *op : ops) {
    b.setInsertionPoint(op);
    Location loc = op->getLoc();
    Value repl;
    if (auto size = llvm::dyn_cast<attn::SizeOp>(op)) {
      repl = ctx.sizeI32[static_cast<int>(size.getKind())];
    } else if (auto get = llvm::dyn_cast<attn::ParamGetOp>(op)) {
      auto param = llvm::cast<attn::ParamOp>(
          SymbolTable::lookupSymbolIn(ctx.variant, get.getParamAttr()));
      if (param.getIsConst()) {
        repl = arith::ConstantOp::create(b, loc, *param.getValue());
      } else {
        repl = ctx.params.find(get.getParam())->second.arg;
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

void attnc::expandAttnOps(Operation *root, const KernelContext &ctx) {
  Expander(ctx).run(root);
}
