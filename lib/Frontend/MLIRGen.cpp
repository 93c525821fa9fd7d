//===- MLIRGen.cpp - Lowering checked variants to the attn dialect --------===//
//
// A tree walk over the typed expressions of a CheckedVariant. Sema has made
// every conversion explicit, so each node maps to one op or a short fixed
// sequence. `&&`, `||`, `?:` and `select` whose lazily evaluated side can
// fail at run time (a tensor read or an integer division) become `scf.if`,
// so that a guard such as `kv_idx < n && ids[kv_idx] == 0` never reports an
// error for the side it skips; all others become plain `arith` ops.
//
//===----------------------------------------------------------------------===//

#include "attnc/Frontend/MLIRGen.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace attnc;

namespace {

/// True when evaluating `e` can report a run-time error.
bool canFail(const TExpr &e) {
  if (e.kind == TExpr::Kind::TensorLoad)
    return true;
  // Integer division fails only on a zero divisor; a non-zero literal never.
  if (e.kind == TExpr::Kind::Binary && e.type == ScalarType::I32 &&
      (e.binaryOp == BinaryOp::Div || e.binaryOp == BinaryOp::Mod) &&
      !(e.operands[1]->kind == TExpr::Kind::ConstInt &&
        e.operands[1]->intValue != 0))
    return true;
  for (const TExprPtr &op : e.operands)
    if (canFail(*op))
      return true;
  return false;
}

class ExprGen {
public:
  /// `args` are the region's block arguments: b, h, q_idx, kv_idx[, score].
  ExprGen(OpBuilder &builder, ValueRange args) : b(builder), args(args) {}

  Value gen(const TExpr &e);

private:
  Type typeOf(ScalarType t) {
    switch (t) {
    case ScalarType::Bool:
      return b.getI1Type();
    case ScalarType::I32:
      return b.getI32Type();
    case ScalarType::F32:
      return b.getF32Type();
    }
    llvm_unreachable("unknown scalar type");
  }
  Value size(Location loc, SizeKind k) {
    return attn::SizeOp::create(b, loc, b.getI32Type(),
                                static_cast<attn::SizeKind>(k));
  }
  Value index(const TExpr &e);
  Value genUnary(const TExpr &e);
  Value genBinary(const TExpr &e);
  Value genCall(const TExpr &e);
  Value genCast(const TExpr &e);
  /// `cond ? then : else` as scf.if, evaluating only the taken side.
  Value genLazySelect(Location loc, Value cond, const TExpr *thenE, Value thenV,
                      const TExpr *elseE, Value elseV, Type type);

  OpBuilder &b;
  ValueRange args;
};

Value ExprGen::index(const TExpr &e) {
  switch (e.index) {
  case IndexVar::B:
    return args[0];
  case IndexVar::H:
    return args[1];
  case IndexVar::Q:
    return args[2];
  case IndexVar::KV:
    return args[3];
  case IndexVar::HKV: {
    // hkv = h / (H / Hkv): the KV head that query head h reads.
    Value group = attn::FloorDivOp::create(b, e.loc, b.getI32Type(),
                                           size(e.loc, SizeKind::H),
                                           size(e.loc, SizeKind::Hkv));
    return attn::FloorDivOp::create(b, e.loc, b.getI32Type(), args[1], group);
  }
  }
  llvm_unreachable("unknown index variable");
}

Value ExprGen::gen(const TExpr &e) {
  Location loc = e.loc;
  switch (e.kind) {
  case TExpr::Kind::ConstInt:
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(e.intValue));
  case TExpr::Kind::ConstFloat:
    return arith::ConstantOp::create(
        b, loc, b.getF32FloatAttr(static_cast<float>(e.floatValue)));
  case TExpr::Kind::ConstBool:
    return arith::ConstantOp::create(
        b, loc, b.getIntegerAttr(b.getI1Type(), e.boolValue ? 1 : 0));
  case TExpr::Kind::Index:
    return index(e);
  case TExpr::Kind::Size:
    return size(loc, e.size);
  case TExpr::Kind::Score:
    assert(args.size() == attn::kScoreArgs && "score outside the score item");
    return args[4];
  case TExpr::Kind::Param:
    return attn::ParamGetOp::create(
        b, loc, typeOf(e.type), FlatSymbolRefAttr::get(b.getContext(), e.name));
  case TExpr::Kind::TensorLoad: {
    SmallVector<Value> indices;
    for (const TExprPtr &op : e.operands)
      indices.push_back(gen(*op));
    return attn::ParamLoadOp::create(
        b, loc, typeOf(e.type), FlatSymbolRefAttr::get(b.getContext(), e.name),
        indices);
  }
  case TExpr::Kind::Unary:
    return genUnary(e);
  case TExpr::Kind::Binary:
    return genBinary(e);
  case TExpr::Kind::Select: {
    Value cond = gen(*e.operands[0]);
    const TExpr &thenE = *e.operands[1], &elseE = *e.operands[2];
    if (canFail(thenE) || canFail(elseE))
      return genLazySelect(loc, cond, &thenE, {}, &elseE, {}, typeOf(e.type));
    return arith::SelectOp::create(b, loc, cond, gen(thenE), gen(elseE));
  }
  case TExpr::Kind::Call:
    return genCall(e);
  case TExpr::Kind::Cast:
    return genCast(e);
  }
  llvm_unreachable("unknown expression kind");
}

Value ExprGen::genLazySelect(Location loc, Value cond, const TExpr *thenE,
                             Value thenV, const TExpr *elseE, Value elseV,
                             Type type) {
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{type}, cond,
                                /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.thenBlock());
  scf::YieldOp::create(b, loc, thenE ? gen(*thenE) : thenV);
  b.setInsertionPointToStart(ifOp.elseBlock());
  scf::YieldOp::create(b, loc, elseE ? gen(*elseE) : elseV);
  return ifOp.getResult(0);
}

Value ExprGen::genUnary(const TExpr &e) {
  Value x = gen(*e.operands[0]);
  if (e.unaryOp == UnaryOp::Not) {
    Value one =
        arith::ConstantOp::create(b, e.loc, b.getIntegerAttr(b.getI1Type(), 1));
    return arith::XOrIOp::create(b, e.loc, x, one);
  }
  if (e.type == ScalarType::F32)
    return arith::NegFOp::create(b, e.loc, x);
  Value zero = arith::ConstantOp::create(b, e.loc, b.getI32IntegerAttr(0));
  return arith::SubIOp::create(b, e.loc, zero, x);
}

Value ExprGen::genBinary(const TExpr &e) {
  Location loc = e.loc;
  const TExpr &lhsE = *e.operands[0], &rhsE = *e.operands[1];
  BinaryOp op = e.binaryOp;
  // Logical operators evaluate their right side only when it decides.
  if (op == BinaryOp::And || op == BinaryOp::Or) {
    Value lhs = gen(lhsE);
    if (canFail(rhsE)) {
      Value shortCircuit = arith::ConstantOp::create(
          b, loc, b.getIntegerAttr(b.getI1Type(), op == BinaryOp::Or));
      return op == BinaryOp::And
                 ? genLazySelect(loc, lhs, &rhsE, {}, nullptr, shortCircuit,
                                 b.getI1Type())
                 : genLazySelect(loc, lhs, nullptr, shortCircuit, &rhsE, {},
                                 b.getI1Type());
    }
    Value rhs = gen(rhsE);
    return op == BinaryOp::And
               ? arith::AndIOp::create(b, loc, lhs, rhs)
               : arith::OrIOp::create(b, loc, lhs, rhs).getResult();
  }
  Value lhs = gen(lhsE), rhs = gen(rhsE);
  bool isFloat = lhs.getType().isF32();
  switch (op) {
  case BinaryOp::Add:
    return isFloat ? arith::AddFOp::create(b, loc, lhs, rhs).getResult()
                   : arith::AddIOp::create(b, loc, lhs, rhs).getResult();
  case BinaryOp::Sub:
    return isFloat ? arith::SubFOp::create(b, loc, lhs, rhs).getResult()
                   : arith::SubIOp::create(b, loc, lhs, rhs).getResult();
  case BinaryOp::Mul:
    return isFloat ? arith::MulFOp::create(b, loc, lhs, rhs).getResult()
                   : arith::MulIOp::create(b, loc, lhs, rhs).getResult();
  case BinaryOp::Div:
    return isFloat ? arith::DivFOp::create(b, loc, lhs, rhs).getResult()
                   : attn::FloorDivOp::create(b, loc, b.getI32Type(), lhs, rhs)
                         .getResult();
  case BinaryOp::Mod: {
    if (!isFloat)
      return attn::FloorModOp::create(b, loc, b.getI32Type(), lhs, rhs);
    // Floating floor modulo: x - floor(x / y) * y.
    Value q =
        math::FloorOp::create(b, loc, arith::DivFOp::create(b, loc, lhs, rhs));
    return arith::SubFOp::create(b, loc, lhs,
                                 arith::MulFOp::create(b, loc, q, rhs));
  }
  case BinaryOp::Eq:
  case BinaryOp::Ne:
  case BinaryOp::Lt:
  case BinaryOp::Le:
  case BinaryOp::Gt:
  case BinaryOp::Ge: {
    static const arith::CmpIPredicate ipred[] = {
        arith::CmpIPredicate::eq,  arith::CmpIPredicate::ne,
        arith::CmpIPredicate::slt, arith::CmpIPredicate::sle,
        arith::CmpIPredicate::sgt, arith::CmpIPredicate::sge};
    static const arith::CmpFPredicate fpred[] = {
        arith::CmpFPredicate::OEQ, arith::CmpFPredicate::UNE,
        arith::CmpFPredicate::OLT, arith::CmpFPredicate::OLE,
        arith::CmpFPredicate::OGT, arith::CmpFPredicate::OGE};
    unsigned i =
        static_cast<unsigned>(op) - static_cast<unsigned>(BinaryOp::Eq);
    return isFloat
               ? arith::CmpFOp::create(b, loc, fpred[i], lhs, rhs).getResult()
               : arith::CmpIOp::create(b, loc, ipred[i], lhs, rhs).getResult();
  }
  case BinaryOp::And:
  case BinaryOp::Or:
    break;
  }
  llvm_unreachable("unknown binary operator");
}

Value ExprGen::genCall(const TExpr &e) {
  Location loc = e.loc;
  SmallVector<Value> a;
  for (const TExprPtr &op : e.operands)
    a.push_back(gen(*op));
  bool isFloat = e.type == ScalarType::F32;
  switch (e.builtin) {
  case Builtin::Exp:
    return math::ExpOp::create(b, loc, a[0]);
  case Builtin::Log:
    return math::LogOp::create(b, loc, a[0]);
  case Builtin::Sqrt:
    return math::SqrtOp::create(b, loc, a[0]);
  case Builtin::Tanh:
    return math::TanhOp::create(b, loc, a[0]);
  case Builtin::Sigmoid: {
    // sigmoid(x) = 1 / (1 + exp(-x))
    Value one = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f));
    Value e1 = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, a[0]));
    return arith::DivFOp::create(b, loc, one,
                                 arith::AddFOp::create(b, loc, one, e1));
  }
  case Builtin::Abs:
    return isFloat ? math::AbsFOp::create(b, loc, a[0]).getResult()
                   : math::AbsIOp::create(b, loc, a[0]).getResult();
  case Builtin::Floor:
    return math::FloorOp::create(b, loc, a[0]);
  case Builtin::Ceil:
    return math::CeilOp::create(b, loc, a[0]);
  case Builtin::Min:
    return isFloat ? arith::MinimumFOp::create(b, loc, a[0], a[1]).getResult()
                   : arith::MinSIOp::create(b, loc, a[0], a[1]).getResult();
  case Builtin::Max:
    return isFloat ? arith::MaximumFOp::create(b, loc, a[0], a[1]).getResult()
                   : arith::MaxSIOp::create(b, loc, a[0], a[1]).getResult();
  case Builtin::Pow:
    return math::PowFOp::create(b, loc, a[0], a[1]);
  }
  llvm_unreachable("unknown builtin");
}

Value ExprGen::genCast(const TExpr &e) {
  Value x = gen(*e.operands[0]);
  Type to = typeOf(e.type);
  if (x.getType() == to)
    return x;
  if (x.getType().isInteger(1))
    return to.isF32() ? arith::UIToFPOp::create(b, e.loc, to, x).getResult()
                      : arith::ExtUIOp::create(b, e.loc, to, x).getResult();
  if (to.isF32())
    return arith::SIToFPOp::create(b, e.loc, to, x);
  // i32(f) truncates toward zero.
  return arith::FPToSIOp::create(b, e.loc, to, x);
}

/// Creates the single block of `region` with `n` i32 arguments (plus an f32
/// score when `withScore`) and fills it with `expr` and an attn.yield.
void genRegion(OpBuilder &b, Region &region, Location loc, unsigned n,
               bool withScore, const TExpr &expr) {
  SmallVector<Type> types(n, b.getI32Type());
  if (withScore)
    types.push_back(b.getF32Type());
  SmallVector<Location> locs(types.size(), loc);
  Block *block = b.createBlock(&region, {}, types, locs);
  b.setInsertionPointToStart(block);
  ExprGen gen(b, block->getArguments());
  attn::YieldOp::create(b, expr.loc, gen.gen(expr));
}

TypedAttr paramValueAttr(Builder &b, const ParamValue &v) {
  switch (v.type) {
  case ScalarType::Bool:
    return b.getIntegerAttr(b.getI1Type(), v.boolValue ? 1 : 0);
  case ScalarType::I32:
    return b.getI32IntegerAttr(v.intValue);
  case ScalarType::F32:
    return b.getF32FloatAttr(static_cast<float>(v.floatValue));
  }
  llvm_unreachable("unknown scalar type");
}

void genVariant(OpBuilder &b, const CheckedVariant &v) {
  auto variant = attn::VariantOp::create(b, v.loc, v.name);
  Block &body = variant.getBody().front();
  OpBuilder::InsertionGuard guard(b);
  for (const ParamDecl &p : v.params) {
    b.setInsertionPointToEnd(&body);
    Type elementType = p.elementType == ScalarType::Bool ? b.getI1Type()
                       : p.elementType == ScalarType::I32
                           ? Type(b.getI32Type())
                           : Type(b.getF32Type());
    ArrayAttr dims;
    if (p.isTensor) {
      SmallVector<Attribute> d;
      for (const ParamDim &dim : p.dims) {
        if (dim.kind == ParamDim::Kind::Size)
          d.push_back(b.getStringAttr(sizeKindName(dim.size)));
        else if (dim.kind == ParamDim::Kind::Literal)
          d.push_back(b.getI64IntegerAttr(dim.value));
        else
          d.push_back(b.getStringAttr("?"));
      }
      dims = b.getArrayAttr(d);
    }
    TypedAttr value;
    if (p.value)
      value = paramValueAttr(b, *p.value);
    attn::ParamOp::create(b, p.loc, b.getStringAttr(p.name),
                          TypeAttr::get(elementType), dims,
                          p.isConst ? b.getUnitAttr() : nullptr, value);
  }
  if (v.scale) {
    b.setInsertionPointToEnd(&body);
    auto op = attn::ScaleOp::create(b, v.scale->loc);
    genRegion(b, op.getBody(), v.scale->loc, 0, false, *v.scale);
  }
  if (v.score) {
    b.setInsertionPointToEnd(&body);
    auto op = attn::ScoreOp::create(b, v.score->loc);
    genRegion(b, op.getBody(), v.score->loc, attn::kMaskArgs, true, *v.score);
  }
  if (v.mask) {
    b.setInsertionPointToEnd(&body);
    auto op = attn::MaskOp::create(b, v.mask->loc);
    genRegion(b, op.getBody(), v.mask->loc, attn::kMaskArgs, false, *v.mask);
  }
  if (v.normalizeLoc || v.sink) {
    b.setInsertionPointToEnd(&body);
    Location loc = v.normalizeLoc ? *v.normalizeLoc : v.loc;
    auto op = attn::NormalizeOp::create(
        b, loc, static_cast<attn::NormKind>(v.normalization));
    if (v.sink)
      genRegion(b, op.getSink(), v.sink->loc, attn::kSinkArgs, false, *v.sink);
  }
}

} // namespace

void attnc::loadFrontendDialects(MLIRContext &ctx) {
  ctx.loadDialect<attn::AttnDialect, arith::ArithDialect, math::MathDialect,
                  scf::SCFDialect>();
}

OwningOpRef<ModuleOp> attnc::genModule(MLIRContext &ctx,
                                       ArrayRef<CheckedVariant> variants,
                                       Location moduleLoc) {
  loadFrontendDialects(ctx);
  OpBuilder b(&ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(b, moduleLoc);
  b.setInsertionPointToEnd(module->getBody());
  for (const CheckedVariant &v : variants)
    genVariant(b, v);
  return module;
}
