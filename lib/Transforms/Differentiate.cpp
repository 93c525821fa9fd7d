//===- Differentiate.cpp - The backward form of a variant -----------------===//
//
// Reverse-mode symbolic differentiation of a variant's score and sink
// expressions. For the score, attn.score_grad receives dt, the gradient of
// the loss with respect to the modified score t = score(s); it recomputes
// the primal expression from s, then walks it backwards applying the chain
// rule op by op (adjoints only for values that depend on s or on float
// runtime params), yields ds and adds dt * dt/dp to every float runtime
// param p at the place it is read (attn.accumulate_grad, a scatter-add for
// tensor reads). The sink's derivative is built the same way from de.
//
// Non-differentiable points follow PyTorch: abs'(0) = 0, max and min route
// the gradient to their first argument on ties, floor, ceil and integer
// casts have zero derivative, comparisons and masks are not differentiated.
// A lazy `scf.if` (a guarded tensor read) becomes an `scf.if` on the same
// condition whose branch recomputes and differentiates its own primal, so a
// read the forward skips is never done backwards either.
//
//===----------------------------------------------------------------------===//

#include "attnc/Transforms/Differentiate.h"
#include "attnc/Transforms/Passes.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

namespace attnc {
#define GEN_PASS_DEF_ATTNDIFFERENTIATE
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

/// True for an f32 runtime param read (the inputs whose gradients are
/// wanted besides the score).
bool readsFloatRuntimeParam(Operation *op, attn::VariantOp variant) {
  FlatSymbolRefAttr ref;
  if (auto get = llvm::dyn_cast<attn::ParamGetOp>(op))
    ref = get.getParamAttr();
  else if (auto load = llvm::dyn_cast<attn::ParamLoadOp>(op))
    ref = load.getParamAttr();
  else
    return false;
  auto param = llvm::dyn_cast_or_null<attn::ParamOp>(
      SymbolTable::lookupSymbolIn(variant, ref.getAttr()));
  return param && !param.getIsConst() && param.getElementType().isF32();
}

/// The reverse-mode differentiator of one item region.
class Differentiator {
public:
  Differentiator(attn::VariantOp variant, StringRef what)
      : variant(variant), what(what), b(variant.getContext()) {}

  /// Builds into `grad` (an empty region) the vector-Jacobian product of
  /// `primal`: a block with the primal's arguments plus the cotangent, that
  /// recomputes the primal, accumulates param gradients and yields the
  /// gradient of the primal's last argument when `yieldsGrad` (the score),
  /// or nothing (the sink).
  LogicalResult build(Region &primal, Region &grad, bool yieldsGrad);

private:
  Value cF32(Location loc, double v) {
    return arith::ConstantOp::create(b, loc,
                                     b.getF32FloatAttr(static_cast<float>(v)));
  }
  /// adj[v] += g, for values that depend on the inputs.
  void addAdjoint(Value v, Value g, Location loc);
  /// Clones `block`'s ops (not its terminator) with `map`, then walks them
  /// backwards; adjoints of values defined outside the block are left in
  /// `adj` (the caller seeds the yielded values' adjoints first).
  LogicalResult reverseBlock(Block &block, IRMapping &map);
  LogicalResult reverseOp(Operation *op, IRMapping &map);
  LogicalResult reverseIf(scf::IfOp op, IRMapping &map);
  /// Matches 1 / (1 + exp(-x)), MLIRGen's sigmoid, at `div`; returns x.
  Value matchSigmoid(arith::DivFOp div);

  attn::VariantOp variant;
  StringRef what;
  OpBuilder b;
  llvm::DenseSet<Value> varied;     // depends on an input
  DenseMap<Value, Value> adj;       // primal value -> its adjoint (f32)
  llvm::DenseSet<Operation *> done; // ops folded into a matched pattern
};

void Differentiator::addAdjoint(Value v, Value g, Location loc) {
  if (!varied.contains(v) || !v.getType().isF32())
    return;
  Value &slot = adj[v];
  slot = slot ? arith::AddFOp::create(b, loc, slot, g).getResult() : g;
}

Value Differentiator::matchSigmoid(arith::DivFOp div) {
  auto isOne = [](Value v) {
    APFloat f(0.0f);
    return matchPattern(v, m_ConstantFloat(&f)) && f.isExactlyValue(1.0);
  };
  auto add = div.getRhs().getDefiningOp<arith::AddFOp>();
  if (!isOne(div.getLhs()) || !add || !add->hasOneUse())
    return Value();
  Value e = isOne(add.getLhs())   ? add.getRhs()
            : isOne(add.getRhs()) ? add.getLhs()
                                  : Value();
  auto exp = e ? e.getDefiningOp<math::ExpOp>() : math::ExpOp();
  if (!exp || !exp->hasOneUse())
    return Value();
  auto neg = exp.getOperand().getDefiningOp<arith::NegFOp>();
  if (!neg || !neg->hasOneUse())
    return Value();
  done.insert(add);
  done.insert(exp);
  done.insert(neg);
  return neg.getOperand();
}

LogicalResult Differentiator::reverseBlock(Block &block, IRMapping &map) {
  for (Operation &op : block.without_terminator())
    b.clone(op, map);
  SmallVector<Operation *> ops;
  for (Operation &op : block.without_terminator())
    ops.push_back(&op);
  for (Operation *op : llvm::reverse(ops))
    if (failed(reverseOp(op, map)))
      return failure();
  return success();
}

LogicalResult Differentiator::reverseIf(scf::IfOp op, IRMapping &map) {
  bool any = llvm::any_of(op.getResults(),
                          [&](Value r) { return adj.lookup(r) != Value(); });
  if (!any)
    return success();
  // The values from outside the if that its branches read and that carry
  // a gradient: each branch of the adjoint if yields their adjoints.
  llvm::SetVector<Value> outside;
  op->walk([&](Operation *inner) {
    for (Value v : inner->getOperands())
      if (varied.contains(v) && v.getType().isF32() &&
          !op->isAncestor(v.getParentRegion()->getParentOp()))
        outside.insert(v);
  });
  Location loc = op.getLoc();
  SmallVector<Type> types(outside.size(), b.getF32Type());
  auto adjIf = scf::IfOp::create(b, loc, types, map.lookup(op.getCondition()),
                                 /*withElseRegion=*/true);
  DenseMap<Value, Value> before = adj;
  for (Region *branch : {&op.getThenRegion(), &op.getElseRegion()}) {
    adj = before;
    Block &src = branch->front();
    Block &dst = branch == &op.getThenRegion() ? adjIf.getThenRegion().front()
                                               : adjIf.getElseRegion().front();
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&dst);
    // The branch's yielded values take the adjoints of the if's results.
    auto yield = llvm::cast<scf::YieldOp>(src.getTerminator());
    for (auto [res, yielded] : llvm::zip(op.getResults(), yield.getOperands()))
      if (Value g = before.lookup(res))
        addAdjoint(yielded, g, loc);
    IRMapping branchMap = map;
    if (failed(reverseBlock(src, branchMap)))
      return failure();
    SmallVector<Value> out;
    for (Value v : outside) {
      Value g = adj.lookup(v);
      out.push_back(g ? g : cF32(loc, 0.0));
    }
    scf::YieldOp::create(b, loc, out);
  }
  adj = before;
  for (auto [v, r] : llvm::zip(outside, adjIf.getResults()))
    adj[v] = r; // the branches started from adj[v]: r includes it
  return success();
}

LogicalResult Differentiator::reverseOp(Operation *op, IRMapping &map) {
  if (done.contains(op))
    return success();
  if (auto ifOp = llvm::dyn_cast<scf::IfOp>(op))
    return reverseIf(ifOp, map);
  if (op->getNumResults() != 1)
    return success();
  Value res = op->getResult(0);
  Value g = adj.lookup(res);
  if (!g)
    return success();
  Location loc = op->getLoc();
  auto m = [&](Value v) { return map.lookup(v); };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y);
  };
  auto div = [&](Value x, Value y) -> Value {
    return arith::DivFOp::create(b, loc, x, y);
  };
  auto neg = [&](Value x) -> Value { return arith::NegFOp::create(b, loc, x); };
  auto sel = [&](Value c, Value x, Value y) -> Value {
    return arith::SelectOp::create(b, loc, c, x, y);
  };
  auto cmp = [&](arith::CmpFPredicate p, Value x, Value y) -> Value {
    return arith::CmpFOp::create(b, loc, p, x, y);
  };
  Value r = m(res);

  // Reads of float runtime params: the gradient goes to the param.
  if (auto get = llvm::dyn_cast<attn::ParamGetOp>(op)) {
    attn::AccumulateGradOp::create(b, loc, g, get.getParamAttr(), ValueRange{});
    return success();
  }
  if (auto load = llvm::dyn_cast<attn::ParamLoadOp>(op)) {
    SmallVector<Value> indices;
    for (Value i : load.getIndices())
      indices.push_back(m(i));
    attn::AccumulateGradOp::create(b, loc, g, load.getParamAttr(), indices);
    return success();
  }

  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      // d(a + b) = da + db; d(a - b) = da - db; d(-a) = -da
      .Case([&](arith::AddFOp o) {
        addAdjoint(o.getLhs(), g, loc);
        addAdjoint(o.getRhs(), g, loc);
        return success();
      })
      .Case([&](arith::SubFOp o) {
        addAdjoint(o.getLhs(), g, loc);
        if (varied.contains(o.getRhs()))
          addAdjoint(o.getRhs(), neg(g), loc);
        return success();
      })
      .Case([&](arith::NegFOp o) {
        addAdjoint(o.getOperand(), neg(g), loc);
        return success();
      })
      // d(a b) = b da + a db
      .Case([&](arith::MulFOp o) {
        if (varied.contains(o.getLhs()))
          addAdjoint(o.getLhs(), mul(g, m(o.getRhs())), loc);
        if (varied.contains(o.getRhs()))
          addAdjoint(o.getRhs(), mul(g, m(o.getLhs())), loc);
        return success();
      })
      // d(a / b) = da / b - (a / b) db / b
      .Case([&](arith::DivFOp o) {
        if (Value x = matchSigmoid(o)) {
          // sigmoid'(x) = r (1 - r), r = sigmoid(x): finite for every x
          // (the expanded form's exp(-x) overflows below -88).
          addAdjoint(
              x,
              mul(g, mul(r, arith::SubFOp::create(b, loc, cF32(loc, 1.0), r))),
              loc);
          return success();
        }
        if (varied.contains(o.getLhs()))
          addAdjoint(o.getLhs(), div(g, m(o.getRhs())), loc);
        if (varied.contains(o.getRhs()))
          addAdjoint(o.getRhs(), neg(div(mul(g, r), m(o.getRhs()))), loc);
        return success();
      })
      // max/min: the whole gradient to the argument that is the result,
      // the first one on ties (PyTorch's max/min over a dim).
      .Case<arith::MaximumFOp, arith::MaxNumFOp>([&](Operation *o) {
        Value a = o->getOperand(0), c = o->getOperand(1);
        Value first = cmp(arith::CmpFPredicate::OGE, m(a), m(c));
        Value zero = cF32(loc, 0.0);
        if (varied.contains(a))
          addAdjoint(a, sel(first, g, zero), loc);
        if (varied.contains(c))
          addAdjoint(c, sel(first, zero, g), loc);
        return success();
      })
      .Case<arith::MinimumFOp, arith::MinNumFOp>([&](Operation *o) {
        Value a = o->getOperand(0), c = o->getOperand(1);
        Value first = cmp(arith::CmpFPredicate::OLE, m(a), m(c));
        Value zero = cF32(loc, 0.0);
        if (varied.contains(a))
          addAdjoint(a, sel(first, g, zero), loc);
        if (varied.contains(c))
          addAdjoint(c, sel(first, zero, g), loc);
        return success();
      })
      // select(c, a, b): the gradient follows the chosen side.
      .Case([&](arith::SelectOp o) {
        Value zero = cF32(loc, 0.0);
        if (varied.contains(o.getTrueValue()))
          addAdjoint(o.getTrueValue(), sel(m(o.getCondition()), g, zero), loc);
        if (varied.contains(o.getFalseValue()))
          addAdjoint(o.getFalseValue(), sel(m(o.getCondition()), zero, g), loc);
        return success();
      })
      // exp' = exp; exp2' = exp2 ln 2; log' = 1/x; log2' = 1/(x ln 2)
      .Case([&](math::ExpOp o) {
        addAdjoint(o.getOperand(), mul(g, r), loc);
        return success();
      })
      .Case([&](math::Exp2Op o) {
        addAdjoint(o.getOperand(), mul(g, mul(r, cF32(loc, M_LN2))), loc);
        return success();
      })
      .Case([&](math::LogOp o) {
        addAdjoint(o.getOperand(), div(g, m(o.getOperand())), loc);
        return success();
      })
      .Case([&](math::Log2Op o) {
        addAdjoint(o.getOperand(),
                   div(g, mul(m(o.getOperand()), cF32(loc, M_LN2))), loc);
        return success();
      })
      // sqrt' = 1 / (2 sqrt); rsqrt' = -rsqrt / (2 x)
      .Case([&](math::SqrtOp o) {
        addAdjoint(o.getOperand(), div(mul(g, cF32(loc, 0.5)), r), loc);
        return success();
      })
      .Case([&](math::RsqrtOp o) {
        addAdjoint(o.getOperand(),
                   neg(div(mul(mul(g, cF32(loc, 0.5)), r), m(o.getOperand()))),
                   loc);
        return success();
      })
      // tanh' = 1 - tanh^2
      .Case([&](math::TanhOp o) {
        addAdjoint(
            o.getOperand(),
            mul(g, arith::SubFOp::create(b, loc, cF32(loc, 1.0), mul(r, r))),
            loc);
        return success();
      })
      // abs' = sign(x), 0 at 0
      .Case([&](math::AbsFOp o) {
        Value x = m(o.getOperand()), zero = cF32(loc, 0.0);
        Value sign =
            sel(cmp(arith::CmpFPredicate::OGT, x, zero), g,
                sel(cmp(arith::CmpFPredicate::OLT, x, zero), neg(g), zero));
        addAdjoint(o.getOperand(), sign, loc);
        return success();
      })
      // pow(a, p): d/da = p a^(p-1), 0 where p == 0; d/dp = a^p log(a),
      // 0 where a == 0 and p >= 0 (PyTorch's pow_backward).
      .Case([&](math::PowFOp o) {
        Value a = m(o.getLhs()), p = m(o.getRhs()), zero = cF32(loc, 0.0);
        if (varied.contains(o.getLhs())) {
          Value pm1 = arith::SubFOp::create(b, loc, p, cF32(loc, 1.0));
          Value d = mul(p, math::PowFOp::create(b, loc, a, pm1));
          d = sel(cmp(arith::CmpFPredicate::OEQ, p, zero), zero, d);
          addAdjoint(o.getLhs(), mul(g, d), loc);
        }
        if (varied.contains(o.getRhs())) {
          Value d = mul(r, math::LogOp::create(b, loc, a));
          Value at0 = arith::AndIOp::create(
              b, loc, cmp(arith::CmpFPredicate::OEQ, a, zero),
              cmp(arith::CmpFPredicate::OGE, p, zero));
          addAdjoint(o.getRhs(), mul(g, sel(at0, zero, d)), loc);
        }
        return success();
      })
      // fma(a, c, d) = a c + d
      .Case([&](math::FmaOp o) {
        Value a = o.getA(), c = o.getB();
        if (varied.contains(a))
          addAdjoint(a, mul(g, m(c)), loc);
        if (varied.contains(c))
          addAdjoint(c, mul(g, m(a)), loc);
        addAdjoint(o.getC(), g, loc);
        return success();
      })
      // Piecewise constant: no gradient.
      .Case<math::FloorOp, math::CeilOp, math::RoundOp, math::RoundEvenOp,
            math::TruncOp, arith::ConstantOp, arith::SIToFPOp, arith::UIToFPOp>(
          [&](Operation *) { return success(); })
      .Default([&](Operation *o) {
        return o->emitError()
               << "cannot differentiate '" << o->getName() << "' in the "
               << what << " of variant '" << variant.getSymName()
               << "' (differentiable: + - * /, exp, log, sqrt, tanh, "
                  "sigmoid, pow, abs, min, max, select and casts)";
      });
}

LogicalResult Differentiator::build(Region &primal, Region &grad,
                                    bool yieldsGrad) {
  Block &src = primal.front();
  // Which values depend on the inputs: the score argument (the last one of
  // the score region) and the reads of float runtime params.
  if (yieldsGrad)
    varied.insert(src.getArguments().back());
  primal.walk<WalkOrder::PostOrder>([&](Operation *op) {
    bool v = readsFloatRuntimeParam(op, variant) ||
             llvm::any_of(op->getOperands(),
                          [&](Value x) { return varied.contains(x); });
    if (auto ifOp = llvm::dyn_cast<scf::IfOp>(op))
      for (Region &r : ifOp->getRegions())
        if (!r.empty())
          v |= llvm::any_of(r.front().getTerminator()->getOperands(),
                            [&](Value x) { return varied.contains(x); });
    if (v)
      for (Value r : op->getResults())
        varied.insert(r);
  });

  SmallVector<Type> types(src.getArgumentTypes());
  types.push_back(b.getF32Type());
  SmallVector<Location> locs(types.size(), primal.getParentOp()->getLoc());
  Block *block = b.createBlock(&grad, {}, types, locs);
  b.setInsertionPointToStart(block);
  IRMapping map;
  for (auto [from, to] : llvm::zip(src.getArguments(), block->getArguments()))
    map.map(from, to);
  Value seed = block->getArguments().back();
  auto yield = llvm::cast<attn::YieldOp>(src.getTerminator());
  Location loc = yield.getLoc();
  addAdjoint(yield.getValue(), seed, loc);
  if (failed(reverseBlock(src, map)))
    return failure();
  if (!yieldsGrad) {
    attn::YieldOp::create(b, loc, Value());
    return success();
  }
  Value ds = adj.lookup(src.getArguments().back());
  attn::YieldOp::create(b, loc, ds ? ds : cF32(loc, 0.0));
  return success();
}

/// The f32 runtime params of `variant` read by `region` through a path that
/// may carry a gradient.
void collectParamReads(Region &region, llvm::StringSet<> &names) {
  region.walk([&](Operation *op) {
    if (auto get = llvm::dyn_cast<attn::ParamGetOp>(op))
      names.insert(get.getParam());
    else if (auto load = llvm::dyn_cast<attn::ParamLoadOp>(op))
      names.insert(load.getParam());
    else if (auto acc = llvm::dyn_cast<attn::AccumulateGradOp>(op))
      names.insert(acc.getParam());
  });
}

} // namespace

LogicalResult attnc::differentiateVariant(attn::VariantOp variant) {
  if (variant.getScoreGradOp() || variant.getSinkGradOp())
    return success(); // already in backward form
  OpBuilder b(variant.getContext());
  Block &body = variant.getBody().front();
  if (attn::ScoreOp score = variant.getScoreOp()) {
    b.setInsertionPointToEnd(&body);
    auto grad = attn::ScoreGradOp::create(b, score.getLoc());
    if (failed(Differentiator(variant, "score")
                   .build(score.getBody(), grad.getBody(), true))) {
      grad.erase();
      return failure();
    }
  }
  attn::NormalizeOp norm = variant.getNormalizeOp();
  if (norm && norm.hasSink()) {
    // Only a sink that reads float runtime params has a gradient to pass on.
    bool reads = false;
    norm.getSink().walk(
        [&](Operation *op) { reads |= readsFloatRuntimeParam(op, variant); });
    if (reads) {
      b.setInsertionPointToEnd(&body);
      auto grad = attn::SinkGradOp::create(b, norm.getLoc());
      if (failed(Differentiator(variant, "sink")
                     .build(norm.getSink(), grad.getBody(), false))) {
        grad.erase();
        return failure();
      }
    }
  }

  // Say which float runtime params get no gradient, and why.
  llvm::StringSet<> accumulated, readByScore, readByMask;
  for (Operation &op : body)
    if (llvm::isa<attn::ScoreGradOp, attn::SinkGradOp>(op))
      op.walk([&](attn::AccumulateGradOp acc) {
        accumulated.insert(acc.getParam());
      });
  if (attn::ScoreOp score = variant.getScoreOp())
    collectParamReads(score.getBody(), readByScore);
  if (norm && norm.hasSink())
    collectParamReads(norm.getSink(), readByScore);
  if (attn::MaskOp mask = variant.getMaskOp())
    collectParamReads(mask.getBody(), readByMask);
  for (attn::ParamOp p : variant.getParams()) {
    if (p.getIsConst() || !p.getElementType().isF32() ||
        accumulated.contains(p.getSymName()))
      continue;
    if (readByScore.contains(p.getSymName()))
      p.emitWarning() << "the gradient of param '" << p.getSymName()
                      << "' of variant '" << variant.getSymName()
                      << "' is zero: the score reads it only through "
                         "operations without a derivative (comparisons, "
                         "floor, ceil, integer casts)";
    else if (readByMask.contains(p.getSymName()))
      p.emitWarning() << "the gradient of param '" << p.getSymName()
                      << "' of variant '" << variant.getSymName()
                      << "' is zero: only the mask reads it, and masks are "
                         "not differentiated";
  }
  return success();
}

namespace {
struct AttnDifferentiatePass
    : public attnc::impl::AttnDifferentiateBase<AttnDifferentiatePass> {
  using Base::Base;
  void runOnOperation() override {
    for (attn::VariantOp variant :
         llvm::to_vector(getOperation().getOps<attn::VariantOp>()))
      if (failed(differentiateVariant(variant)))
        return signalPassFailure();
  }
};
} // namespace
