//===- TileAbstraction.cpp - Interval abstraction of masks over tiles -----===//
//
// Walks the mask region once, op by op, keeping for each SSA value an
// abstract value: an i64 interval for integers, (mayBeTrue, mayBeFalse) for
// booleans, plus two symbolic shapes that let comparisons bound kv_idx:
//
//   form:      value == sign * (kv_idx / div) + rest, rest independent of kv
//   abs form:  value == abs(form)
//
// A comparison of a form with a kv-independent interval I solves for
// t = kv_idx / div (e.g. `sign = -1`: -t + rest <= I.hi  =>  t >= rest.lo -
// I.hi) and turns t's range into kv_idx's. `&&` intersects ranges, `||`
// takes their hull. Everything is emitted with on-the-fly constant folding so
// that constant inputs give constant answers.
//
//===----------------------------------------------------------------------===//

#include "attnc/Analysis/TileAbstraction.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Matchers.h"

#include <limits>

using namespace mlir;
using namespace attnc;

namespace {

/// i64 / i1 arithmetic that folds when its operands are constants.
class Folder {
public:
  Folder(OpBuilder &b, Location loc) : b(b), loc(loc) {}

  Value c(int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
  }
  Value bit(bool v) {
    return arith::ConstantOp::create(b, loc, b.getBoolAttr(v));
  }
  static std::optional<int64_t> cst(Value v) {
    APInt x;
    if (v && matchPattern(v, m_ConstantInt(&x)))
      return v.getType().isInteger(1) ? (int64_t)x.getZExtValue()
                                      : x.getSExtValue();
    return std::nullopt;
  }
  Value add(Value x, Value y) {
    if (auto a = cst(x), bb = cst(y); a && bb)
      return c(*a + *bb);
    if (cst(y) == 0)
      return x;
    if (cst(x) == 0)
      return y;
    return arith::AddIOp::create(b, loc, x, y);
  }
  Value sub(Value x, Value y) {
    if (auto a = cst(x), bb = cst(y); a && bb)
      return c(*a - *bb);
    if (cst(y) == 0)
      return x;
    return arith::SubIOp::create(b, loc, x, y);
  }
  Value mul(Value x, Value y) {
    if (auto a = cst(x), bb = cst(y); a && bb)
      return c(*a * *bb);
    if (cst(y) == 1)
      return x;
    if (cst(x) == 1)
      return y;
    return arith::MulIOp::create(b, loc, x, y);
  }
  Value neg(Value x) { return sub(c(0), x); }
  Value min(Value x, Value y) {
    if (auto a = cst(x), bb = cst(y); a && bb)
      return c(std::min(*a, *bb));
    if (x == y)
      return x;
    return arith::MinSIOp::create(b, loc, x, y);
  }
  Value max(Value x, Value y) {
    if (auto a = cst(x), bb = cst(y); a && bb)
      return c(std::max(*a, *bb));
    if (x == y)
      return x;
    return arith::MaxSIOp::create(b, loc, x, y);
  }
  static int64_t floorDiv(int64_t a, int64_t d) {
    int64_t q = a / d;
    return (a % d != 0 && ((a < 0) != (d < 0))) ? q - 1 : q;
  }
  /// floor(x / d) for d > 0 (callers guarantee it or select around it).
  Value fdiv(Value x, Value d) {
    if (auto a = cst(x), bb = cst(d); a && bb && *bb != 0)
      return c(floorDiv(*a, *bb));
    if (cst(d) == 1)
      return x;
    Value safe = select(cmp(arith::CmpIPredicate::sgt, d, c(0)), d, c(1));
    return arith::FloorDivSIOp::create(b, loc, x, safe);
  }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    if (auto a = cst(x), bb = cst(y); a && bb)
      return bit(arith::applyCmpPredicate(p, APInt(64, *a, true),
                                          APInt(64, *bb, true)));
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value select(Value cond, Value x, Value y) {
    if (auto k = cst(cond))
      return *k ? x : y;
    if (x == y)
      return x;
    if (auto a = cst(x), bb = cst(y); a && bb && *a == *bb)
      return x;
    return arith::SelectOp::create(b, loc, cond, x, y);
  }
  Value land(Value x, Value y) {
    if (auto a = cst(x))
      return *a ? y : bit(false);
    if (auto a = cst(y))
      return *a ? x : bit(false);
    return arith::AndIOp::create(b, loc, x, y);
  }
  Value lor(Value x, Value y) {
    if (auto a = cst(x))
      return *a ? bit(true) : y;
    if (auto a = cst(y))
      return *a ? bit(true) : x;
    return arith::OrIOp::create(b, loc, x, y);
  }
  Value lnot(Value x) {
    if (auto a = cst(x))
      return bit(!*a);
    return arith::XOrIOp::create(b, loc, x, bit(true));
  }

private:
  OpBuilder &b;
  Location loc;
};

struct KvForm {
  bool valid = false;
  int sign = 1;
  int64_t div = 1;
  IntervalValues rest;
  /// i1 or null (always): where false, the form does not hold and bounds
  /// derived from it fall back to the full kv range. `kv % C` is the form
  /// kv - (kv.lo / C) C only while the tile's kv range lies in one period.
  Value guard;
};

struct AbsValue {
  enum class Kind { Int, Bool, Other } kind = Kind::Other;
  IntervalValues range; // Int
  Value mayT, mayF;     // Bool
  bool dependsKv = false;
  bool isPoint = false;   // Int: lo == hi by construction
  KvForm form;            // Int: value = sign * (kv / div) + rest
  KvForm absForm;         // Int: value = abs(form)
  Value kvLo, kvHi;       // Bool: admissible kv when true
  bool boundedKv = false; // Bool: kvLo/kvHi tighter than the full range
};

class Interpreter {
public:
  Interpreter(OpBuilder &b, Location loc, const TileEnv &env)
      : f(b, loc), env(env) {
    full0 = f.c(0);
    fullHi = f.sub(env.sizes[4], f.c(1));
  }

  TileFacts run(attn::MaskOp mask);

private:
  AbsValue top(Type t, bool dependsKv) {
    AbsValue a;
    a.dependsKv = dependsKv;
    if (t.isInteger(1)) {
      a.kind = AbsValue::Kind::Bool;
      a.mayT = f.bit(true);
      a.mayF = f.bit(true);
      a.kvLo = full0;
      a.kvHi = fullHi;
    } else if (t.isInteger(32)) {
      a.kind = AbsValue::Kind::Int;
      a.range = {f.c(std::numeric_limits<int32_t>::min()),
                 f.c(std::numeric_limits<int32_t>::max())};
    }
    return a;
  }
  AbsValue interval(Value lo, Value hi, bool dependsKv, bool point = false) {
    AbsValue a;
    a.kind = AbsValue::Kind::Int;
    a.range = {lo, hi};
    a.dependsKv = dependsKv;
    a.isPoint = point;
    return a;
  }
  AbsValue boolean(Value mayT, Value mayF, bool dependsKv) {
    AbsValue a;
    a.kind = AbsValue::Kind::Bool;
    a.mayT = mayT;
    a.mayF = mayF;
    a.dependsKv = dependsKv;
    a.kvLo = full0;
    a.kvHi = fullHi;
    return a;
  }
  AbsValue get(Value v) {
    auto it = values.find(v);
    return it != values.end() ? it->second : top(v.getType(), true);
  }

  AbsValue visit(Operation *op);
  /// visit's cases: constants, sizes and param reads; integer arithmetic
  /// (+ - * floordiv floormod abs min max); comparisons, booleans, select,
  /// scf.if and extui. None where `op` is not theirs.
  std::optional<AbsValue> visitLeaf(Operation *op, Type resultType, bool anyKv);
  std::optional<AbsValue> visitIntArith(Operation *op, Type resultType,
                                        bool anyKv);
  std::optional<AbsValue> visitLogic(Operation *op, Type resultType,
                                     bool anyKv);
  /// Visits the ops of a single-block region; returns its yielded value.
  AbsValue visitBlock(Block &block);
  AbsValue visitIf(scf::IfOp op);
  AbsValue conjunction(const AbsValue &x, const AbsValue &y, bool anyKv);
  AbsValue disjunction(const AbsValue &x, const AbsValue &y, bool anyKv);
  AbsValue visitCmp(arith::CmpIPredicate p, const AbsValue &x,
                    const AbsValue &y);
  /// Admissible kv for `form OP I` (form on the left).
  void boundKv(arith::CmpIPredicate p, const KvForm &form,
               const IntervalValues &i, Value &kvLo, Value &kvHi);
  void boundT(arith::CmpIPredicate p, const KvForm &form,
              const IntervalValues &i, Value &tLo, Value &tHi);

  Folder f;
  const TileEnv &env;
  Value full0, fullHi;
  DenseMap<Value, AbsValue> values;
  bool readsTensors = false;
};

void Interpreter::boundT(arith::CmpIPredicate p, const KvForm &form,
                         const IntervalValues &i, Value &tLo, Value &tHi) {
  using P = arith::CmpIPredicate;
  // v = s * t + r.  s = +1: v <= I.hi  =>  t <= I.hi - r.lo, and so on.
  auto upper = [&](int64_t strict) {
    return form.sign > 0
               ? std::pair<bool, Value>{true, f.sub(f.sub(i.hi, form.rest.lo),
                                                    f.c(strict))}
               : std::pair<bool, Value>{
                     false, f.add(f.sub(form.rest.lo, i.hi), f.c(strict))};
  };
  auto lower = [&](int64_t strict) {
    return form.sign > 0
               ? std::pair<bool, Value>{false, f.add(f.sub(i.lo, form.rest.hi),
                                                     f.c(strict))}
               : std::pair<bool, Value>{
                     true, f.sub(f.sub(form.rest.hi, i.lo), f.c(strict))};
  };
  auto apply = [&](std::pair<bool, Value> bound) {
    // first: the bound is an upper bound on t; else a lower bound.
    if (bound.first)
      tHi = tHi ? f.min(tHi, bound.second) : bound.second;
    else
      tLo = tLo ? f.max(tLo, bound.second) : bound.second;
  };
  switch (p) {
  case P::sle:
    apply(upper(0));
    break;
  case P::slt:
    apply(upper(1));
    break;
  case P::sge:
    apply(lower(0));
    break;
  case P::sgt:
    apply(lower(1));
    break;
  case P::eq:
    apply(upper(0));
    apply(lower(0));
    break;
  default:
    break;
  }
}

void Interpreter::boundKv(arith::CmpIPredicate p, const KvForm &form,
                          const IntervalValues &i, Value &kvLo, Value &kvHi) {
  Value tLo, tHi;
  boundT(p, form, i, tLo, tHi);
  // t = kv / div  =>  kv in [tLo * div, tHi * div + div - 1].
  Value d = f.c(form.div);
  kvLo = tLo ? f.max(full0, f.mul(tLo, d)) : full0;
  kvHi = tHi ? f.min(fullHi, f.add(f.mul(tHi, d), f.c(form.div - 1))) : fullHi;
  if (form.guard) {
    kvLo = f.select(form.guard, kvLo, full0);
    kvHi = f.select(form.guard, kvHi, fullHi);
  }
}

static arith::CmpIPredicate swapped(arith::CmpIPredicate p) {
  using P = arith::CmpIPredicate;
  switch (p) {
  case P::slt:
    return P::sgt;
  case P::sle:
    return P::sge;
  case P::sgt:
    return P::slt;
  case P::sge:
    return P::sle;
  default:
    return p;
  }
}

AbsValue Interpreter::visitCmp(arith::CmpIPredicate p, const AbsValue &x,
                               const AbsValue &y) {
  using P = arith::CmpIPredicate;
  if (x.kind != AbsValue::Kind::Int || y.kind != AbsValue::Kind::Int)
    return top(IntegerType::get(full0.getContext(), 1),
               x.dependsKv || y.dependsKv);
  const IntervalValues &a = x.range, &c = y.range;
  Value mayT, mayF;
  switch (p) {
  case P::slt:
    mayT = f.cmp(P::slt, a.lo, c.hi);
    mayF = f.cmp(P::sge, a.hi, c.lo);
    break;
  case P::sle:
    mayT = f.cmp(P::sle, a.lo, c.hi);
    mayF = f.cmp(P::sgt, a.hi, c.lo);
    break;
  case P::sgt:
    mayT = f.cmp(P::sgt, a.hi, c.lo);
    mayF = f.cmp(P::sle, a.lo, c.hi);
    break;
  case P::sge:
    mayT = f.cmp(P::sge, a.hi, c.lo);
    mayF = f.cmp(P::slt, a.lo, c.hi);
    break;
  case P::eq:
  case P::ne: {
    Value overlap =
        f.land(f.cmp(P::sle, a.lo, c.hi), f.cmp(P::sle, c.lo, a.hi));
    Value allSame =
        f.land(f.land(f.cmp(P::eq, a.lo, a.hi), f.cmp(P::eq, c.lo, c.hi)),
               f.cmp(P::eq, a.lo, c.lo));
    mayT = overlap;
    mayF = f.lnot(allSame);
    if (p == P::ne)
      std::swap(mayT, mayF);
    break;
  }
  default:
    return top(IntegerType::get(full0.getContext(), 1), true);
  }
  AbsValue r = boolean(mayT, mayF, x.dependsKv || y.dependsKv);
  // Bound kv when one side is a kv form and the other is kv-independent.
  const AbsValue *formSide = nullptr, *other = nullptr;
  P pred = p;
  if ((x.form.valid || x.absForm.valid) && !y.dependsKv) {
    formSide = &x;
    other = &y;
  } else if ((y.form.valid || y.absForm.valid) && !x.dependsKv) {
    formSide = &y;
    other = &x;
    pred = swapped(p);
  }
  if (!formSide)
    return r;
  if (formSide->form.valid && pred != P::ne) {
    boundKv(pred, formSide->form, other->range, r.kvLo, r.kvHi);
    r.boundedKv = !formSide->form.guard;
  } else if (formSide->absForm.valid && (pred == P::sle || pred == P::slt)) {
    // |v| <= u  =>  -u <= v <= u.
    Value u = pred == P::sle ? other->range.hi : f.sub(other->range.hi, f.c(1));
    IntervalValues band = {f.neg(u), u};
    KvForm form = formSide->absForm;
    Value tLo, tHi;
    boundT(P::sle, form, {band.hi, band.hi}, tLo, tHi);
    boundT(P::sge, form, {band.lo, band.lo}, tLo, tHi);
    Value d = f.c(form.div);
    r.kvLo = f.max(full0, f.mul(tLo, d));
    r.kvHi = f.min(fullHi, f.add(f.mul(tHi, d), f.c(form.div - 1)));
    if (form.guard) {
      r.kvLo = f.select(form.guard, r.kvLo, full0);
      r.kvHi = f.select(form.guard, r.kvHi, fullHi);
    }
    r.boundedKv = !form.guard;
  }
  return r;
}

AbsValue Interpreter::visit(Operation *op) {
  Type resultType = op->getNumResults() ? op->getResult(0).getType() : Type();
  bool anyKv = llvm::any_of(op->getOperands(),
                            [&](Value v) { return get(v).dependsKv; });
  if (std::optional<AbsValue> r = visitLeaf(op, resultType, anyKv))
    return *r;
  if (std::optional<AbsValue> r = visitIntArith(op, resultType, anyKv))
    return *r;
  if (std::optional<AbsValue> r = visitLogic(op, resultType, anyKv))
    return *r;
  return resultType ? top(resultType, anyKv) : AbsValue();
}

std::optional<AbsValue> Interpreter::visitLeaf(Operation *op, Type resultType,
                                               bool anyKv) {
  if (auto c = llvm::dyn_cast<arith::ConstantOp>(op)) {
    if (auto i = llvm::dyn_cast<IntegerAttr>(c.getValue())) {
      if (resultType.isInteger(1))
        return boolean(f.bit(i.getInt() != 0), f.bit(i.getInt() == 0), false);
      Value v = f.c(i.getValue().getSExtValue());
      return interval(v, v, false, true);
    }
    return top(resultType, false);
  }
  if (auto s = llvm::dyn_cast<attn::SizeOp>(op)) {
    Value v = env.sizes[static_cast<int>(s.getKind())];
    return interval(v, v, false, true);
  }
  if (auto g = llvm::dyn_cast<attn::ParamGetOp>(op)) {
    auto param = llvm::dyn_cast_or_null<attn::ParamOp>(
        SymbolTable::lookupNearestSymbolFrom(op, g.getParamAttr().getAttr()));
    if (!param || resultType.isF32())
      return top(resultType, false);
    Value v;
    if (param.getIsConst()) {
      auto attr = llvm::cast<IntegerAttr>(*param.getValue());
      v = f.c(resultType.isInteger(1) ? (int64_t)attr.getValue().getZExtValue()
                                      : attr.getValue().getSExtValue());
    } else if (env.scalarParam) {
      v = env.scalarParam(param);
    }
    if (!v)
      return top(resultType, false);
    if (resultType.isInteger(1))
      return boolean(f.cmp(arith::CmpIPredicate::ne, v, f.c(0)),
                     f.cmp(arith::CmpIPredicate::eq, v, f.c(0)), false);
    return interval(v, v, false, true);
  }
  if (auto load = llvm::dyn_cast<attn::ParamLoadOp>(op)) {
    auto param = llvm::dyn_cast_or_null<attn::ParamOp>(
        SymbolTable::lookupNearestSymbolFrom(op,
                                             load.getParamAttr().getAttr()));
    readsTensors = true;
    if (!param || resultType.isF32() || !env.tensorRange)
      return top(resultType, anyKv);
    SmallVector<IntervalValues> idx;
    for (Value i : load.getIndices()) {
      AbsValue a = get(i);
      if (a.kind != AbsValue::Kind::Int)
        return top(resultType, anyKv);
      idx.push_back(a.range);
    }
    std::optional<IntervalValues> r = env.tensorRange(param, idx);
    if (!r)
      return top(resultType, anyKv);
    if (resultType.isInteger(1))
      return boolean(f.cmp(arith::CmpIPredicate::ne, r->hi, f.c(0)),
                     f.cmp(arith::CmpIPredicate::eq, r->lo, f.c(0)), anyKv);
    return interval(r->lo, r->hi, anyKv);
  }
  return std::nullopt;
}

std::optional<AbsValue>
Interpreter::visitIntArith(Operation *op, Type resultType, bool anyKv) {
  auto i1 = [&](unsigned n) { return get(op->getOperand(n)); };
  if (llvm::isa<arith::AddIOp, arith::SubIOp>(op)) {
    AbsValue x = i1(0), y = i1(1);
    if (x.kind != AbsValue::Kind::Int || y.kind != AbsValue::Kind::Int)
      return top(resultType, anyKv);
    bool isAdd = llvm::isa<arith::AddIOp>(op);
    AbsValue r = isAdd ? interval(f.add(x.range.lo, y.range.lo),
                                  f.add(x.range.hi, y.range.hi), anyKv)
                       : interval(f.sub(x.range.lo, y.range.hi),
                                  f.sub(x.range.hi, y.range.lo), anyKv);
    r.isPoint = x.isPoint && y.isPoint;
    // Forms: (s*t + r) +- I, and I +- (s*t + r).
    if (x.form.valid && !y.dependsKv) {
      r.form = x.form;
      r.form.rest = isAdd ? IntervalValues{f.add(x.form.rest.lo, y.range.lo),
                                           f.add(x.form.rest.hi, y.range.hi)}
                          : IntervalValues{f.sub(x.form.rest.lo, y.range.hi),
                                           f.sub(x.form.rest.hi, y.range.lo)};
    } else if (y.form.valid && !x.dependsKv) {
      r.form = y.form;
      if (isAdd) {
        r.form.rest = {f.add(y.form.rest.lo, x.range.lo),
                       f.add(y.form.rest.hi, x.range.hi)};
      } else {
        r.form.sign = -y.form.sign;
        r.form.rest = {f.sub(x.range.lo, y.form.rest.hi),
                       f.sub(x.range.hi, y.form.rest.lo)};
      }
    }
    return r;
  }
  if (llvm::isa<arith::MulIOp>(op)) {
    AbsValue x = i1(0), y = i1(1);
    if (x.kind != AbsValue::Kind::Int || y.kind != AbsValue::Kind::Int)
      return top(resultType, anyKv);
    Value p1 = f.mul(x.range.lo, y.range.lo),
          p2 = f.mul(x.range.lo, y.range.hi),
          p3 = f.mul(x.range.hi, y.range.lo),
          p4 = f.mul(x.range.hi, y.range.hi);
    AbsValue r = interval(f.min(f.min(p1, p2), f.min(p3, p4)),
                          f.max(f.max(p1, p2), f.max(p3, p4)), anyKv);
    r.isPoint = x.isPoint && y.isPoint;
    return r;
  }
  if (llvm::isa<attn::FloorDivOp, arith::FloorDivSIOp>(op)) {
    AbsValue x = i1(0), y = i1(1);
    if (x.kind != AbsValue::Kind::Int || !y.isPoint)
      return top(resultType, anyKv);
    Value d = y.range.lo;
    Value positive = f.cmp(arith::CmpIPredicate::sgt, d, f.c(0));
    AbsValue t = top(resultType, anyKv);
    AbsValue r =
        interval(f.select(positive, f.fdiv(x.range.lo, d), t.range.lo),
                 f.select(positive, f.fdiv(x.range.hi, d), t.range.hi), anyKv);
    r.isPoint = x.isPoint;
    // kv / C with a constant C > 0 is a form with div = C.
    std::optional<int64_t> dc = Folder::cst(d);
    if (x.form.valid && x.form.sign == 1 && x.form.div == 1 && dc && *dc > 0 &&
        Folder::cst(x.form.rest.lo) == 0 && Folder::cst(x.form.rest.hi) == 0) {
      r.form = x.form;
      r.form.div = *dc;
    }
    return r;
  }
  if (llvm::isa<attn::FloorModOp>(op)) {
    AbsValue x = i1(0), y = i1(1);
    if (x.kind != AbsValue::Kind::Int || !y.isPoint)
      return top(resultType, anyKv);
    Value d = y.range.lo;
    Value positive = f.cmp(arith::CmpIPredicate::sgt, d, f.c(0));
    // Within one period the modulo is monotone; otherwise it is [0, d-1].
    Value samePeriod = f.cmp(arith::CmpIPredicate::eq, f.fdiv(x.range.lo, d),
                             f.fdiv(x.range.hi, d));
    Value lo = f.sub(x.range.lo, f.mul(f.fdiv(x.range.lo, d), d));
    Value hi = f.sub(x.range.hi, f.mul(f.fdiv(x.range.hi, d), d));
    AbsValue t = top(resultType, anyKv);
    AbsValue r = interval(
        f.select(positive, f.select(samePeriod, lo, f.c(0)), t.range.lo),
        f.select(positive, f.select(samePeriod, hi, f.sub(d, f.c(1))),
                 t.range.hi),
        anyKv);
    // kv % C with a constant C > 0, inside one period, is kv - base with
    // base = (kv.lo / C) C: a form that bounds kv within a tile that does
    // not straddle a period (the columns of a grid row, say).
    std::optional<int64_t> dc = Folder::cst(d);
    if (x.form.valid && !x.form.guard && x.form.sign == 1 && x.form.div == 1 &&
        dc && *dc > 0 && Folder::cst(x.form.rest.lo) == 0 &&
        Folder::cst(x.form.rest.hi) == 0) {
      Value base = f.neg(f.mul(f.fdiv(x.range.lo, d), d));
      r.form = x.form;
      r.form.rest = {base, base};
      r.form.guard = samePeriod;
    }
    return r;
  }
  if (llvm::isa<math::AbsIOp>(op)) {
    AbsValue x = i1(0);
    if (x.kind != AbsValue::Kind::Int)
      return top(resultType, anyKv);
    Value lo = x.range.lo, hi = x.range.hi;
    Value nonNeg = f.cmp(arith::CmpIPredicate::sge, lo, f.c(0));
    Value nonPos = f.cmp(arith::CmpIPredicate::sle, hi, f.c(0));
    AbsValue r =
        interval(f.select(nonNeg, lo, f.select(nonPos, f.neg(hi), f.c(0))),
                 f.max(f.neg(lo), hi), anyKv);
    if (x.form.valid)
      r.absForm = x.form;
    return r;
  }
  if (llvm::isa<arith::MinSIOp, arith::MaxSIOp>(op)) {
    AbsValue x = i1(0), y = i1(1);
    if (x.kind != AbsValue::Kind::Int || y.kind != AbsValue::Kind::Int)
      return top(resultType, anyKv);
    bool isMin = llvm::isa<arith::MinSIOp>(op);
    return isMin ? interval(f.min(x.range.lo, y.range.lo),
                            f.min(x.range.hi, y.range.hi), anyKv)
                 : interval(f.max(x.range.lo, y.range.lo),
                            f.max(x.range.hi, y.range.hi), anyKv);
  }
  return std::nullopt;
}

std::optional<AbsValue> Interpreter::visitLogic(Operation *op, Type resultType,
                                                bool anyKv) {
  auto i1 = [&](unsigned n) { return get(op->getOperand(n)); };
  if (auto cmp = llvm::dyn_cast<arith::CmpIOp>(op))
    return visitCmp(cmp.getPredicate(), i1(0), i1(1));
  if (auto ifOp = llvm::dyn_cast<scf::IfOp>(op))
    return visitIf(ifOp);
  if (llvm::isa<arith::AndIOp, arith::OrIOp, arith::XOrIOp>(op) &&
      resultType.isInteger(1)) {
    AbsValue x = i1(0), y = i1(1);
    AbsValue r;
    if (llvm::isa<arith::AndIOp>(op)) {
      r = conjunction(x, y, anyKv);
    } else if (llvm::isa<arith::OrIOp>(op)) {
      r = disjunction(x, y, anyKv);
    } else if (Folder::cst(op->getOperand(1)) == 1) { // not x
      r = boolean(x.mayF, x.mayT, anyKv);
    } else {
      r = boolean(f.lor(f.land(x.mayT, y.mayF), f.land(x.mayF, y.mayT)),
                  f.lor(f.land(x.mayT, y.mayT), f.land(x.mayF, y.mayF)), anyKv);
    }
    return r;
  }
  if (auto sel = llvm::dyn_cast<arith::SelectOp>(op)) {
    AbsValue c = i1(0), x = i1(1), y = i1(2);
    if (c.kind != AbsValue::Kind::Bool || x.kind != y.kind)
      return top(resultType, anyKv);
    Value onlyT = f.land(c.mayT, f.lnot(c.mayF));
    Value onlyF = f.land(c.mayF, f.lnot(c.mayT));
    auto pick = [&](Value xv, Value yv, bool lower) {
      Value both =
          lower ? (xv.getType().isInteger(1) ? f.land(xv, yv) : f.min(xv, yv))
                : (xv.getType().isInteger(1) ? f.lor(xv, yv) : f.max(xv, yv));
      return f.select(onlyT, xv, f.select(onlyF, yv, both));
    };
    if (x.kind == AbsValue::Kind::Int)
      return interval(pick(x.range.lo, y.range.lo, true),
                      pick(x.range.hi, y.range.hi, false), anyKv);
    if (x.kind == AbsValue::Kind::Bool)
      return boolean(pick(x.mayT, y.mayT, false), pick(x.mayF, y.mayF, false),
                     anyKv);
    return top(resultType, anyKv);
  }
  if (auto ext = llvm::dyn_cast<arith::ExtUIOp>(op)) {
    AbsValue x = i1(0);
    if (x.kind != AbsValue::Kind::Bool)
      return top(resultType, anyKv);
    return interval(f.select(x.mayF, f.c(0), f.c(1)),
                    f.select(x.mayT, f.c(1), f.c(0)), anyKv);
  }
  return std::nullopt;
}

AbsValue Interpreter::conjunction(const AbsValue &x, const AbsValue &y,
                                  bool anyKv) {
  AbsValue r = boolean(f.land(x.mayT, y.mayT), f.lor(x.mayF, y.mayF), anyKv);
  r.kvLo = f.max(x.kvLo, y.kvLo);
  r.kvHi = f.min(x.kvHi, y.kvHi);
  r.boundedKv = x.boundedKv || y.boundedKv;
  return r;
}

AbsValue Interpreter::disjunction(const AbsValue &x, const AbsValue &y,
                                  bool anyKv) {
  AbsValue r = boolean(f.lor(x.mayT, y.mayT), f.land(x.mayF, y.mayF), anyKv);
  // A side that can never be true adds nothing to the hull.
  Value xLo = f.select(x.mayT, x.kvLo, fullHi),
        xHi = f.select(x.mayT, x.kvHi, full0);
  Value yLo = f.select(y.mayT, y.kvLo, fullHi),
        yHi = f.select(y.mayT, y.kvHi, full0);
  r.kvLo = f.min(xLo, yLo);
  r.kvHi = f.max(xHi, yHi);
  r.boundedKv = x.boundedKv && y.boundedKv;
  return r;
}

AbsValue Interpreter::visitBlock(Block &block) {
  for (Operation &op : block.without_terminator()) {
    AbsValue a = visit(&op);
    if (op.getNumResults() == 1)
      values[op.getResult(0)] = a;
  }
  Operation *term = block.getTerminator();
  if (term->getNumOperands() != 1)
    return AbsValue();
  return get(term->getOperand(0));
}

AbsValue Interpreter::visitIf(scf::IfOp op) {
  // The front end emits lazy `a && b` as `if a {b} else {false}`, lazy
  // `a || b` as `if a {true} else {b}`, and `c ? x : y` as `if c {x} else {y}`.
  if (op.getNumResults() != 1 || op.getElseRegion().empty())
    return top(op.getNumResults() ? op.getResult(0).getType() : Type(), true);
  AbsValue c = get(op.getCondition());
  AbsValue x = visitBlock(*op.thenBlock());
  AbsValue y = visitBlock(*op.elseBlock());
  bool anyKv = c.dependsKv || x.dependsKv || y.dependsKv;
  Type t = op.getResult(0).getType();
  if (c.kind != AbsValue::Kind::Bool || x.kind != y.kind)
    return top(t, anyKv);
  if (x.kind == AbsValue::Kind::Bool) {
    std::optional<int64_t> yFalse = Folder::cst(y.mayT),
                           xTrue = Folder::cst(x.mayF);
    if (yFalse && *yFalse == 0)
      return conjunction(c, x, anyKv);
    if (xTrue && *xTrue == 0)
      return disjunction(c, y, anyKv);
    Value onlyT = f.land(c.mayT, f.lnot(c.mayF));
    Value onlyF = f.land(c.mayF, f.lnot(c.mayT));
    auto pick = [&](Value xv, Value yv) {
      return f.select(onlyT, xv, f.select(onlyF, yv, f.lor(xv, yv)));
    };
    return boolean(pick(x.mayT, y.mayT), pick(x.mayF, y.mayF), anyKv);
  }
  if (x.kind == AbsValue::Kind::Int) {
    Value onlyT = f.land(c.mayT, f.lnot(c.mayF));
    Value onlyF = f.land(c.mayF, f.lnot(c.mayT));
    return interval(
        f.select(onlyT, x.range.lo,
                 f.select(onlyF, y.range.lo, f.min(x.range.lo, y.range.lo))),
        f.select(onlyT, x.range.hi,
                 f.select(onlyF, y.range.hi, f.max(x.range.hi, y.range.hi))),
        anyKv);
  }
  return top(t, anyKv);
}

TileFacts Interpreter::run(attn::MaskOp mask) {
  TileFacts facts;
  if (!mask) {
    facts.mayBeTrue = f.bit(true);
    facts.mayBeFalse = f.bit(false);
    facts.kvLo = full0;
    facts.kvHi = fullHi;
    return facts;
  }
  Block &block = mask.getBody().front();
  values[block.getArgument(0)] = interval(env.b, env.b, false, true);
  values[block.getArgument(1)] = interval(env.h, env.h, false, true);
  values[block.getArgument(2)] = interval(env.q.lo, env.q.hi, false);
  AbsValue kv = interval(env.kv.lo, env.kv.hi, true);
  kv.form.valid = true;
  kv.form.rest = {f.c(0), f.c(0)};
  values[block.getArgument(3)] = kv;
  AbsValue r = visitBlock(block);
  if (r.kind != AbsValue::Kind::Bool)
    r = top(IntegerType::get(full0.getContext(), 1), true);
  facts.mayBeTrue = r.mayT;
  facts.mayBeFalse = r.mayF;
  // A mask that can never be true keeps nothing: an empty range.
  facts.kvLo = f.select(r.mayT, r.kvLo, f.c(1));
  facts.kvHi = f.select(r.mayT, r.kvHi, f.c(0));
  facts.boundedKv = r.boundedKv;
  facts.readsTensors = readsTensors;
  return facts;
}

} // namespace

TileFacts attnc::emitTileFacts(OpBuilder &b, Location loc, attn::MaskOp mask,
                               const TileEnv &env) {
  Interpreter interp(b, loc, env);
  return interp.run(mask);
}
