//===- KernelIRBuilder.cpp - Pieces shared by the kernel generators -------===//

#include "attnc/Conversion/KernelIRBuilder.h"

using namespace mlir;
using namespace attnc;

Type attnc::parseElementType(Builder &b, StringRef name,
                             ArrayRef<StringRef> allowed) {
  if (!llvm::is_contained(allowed, name))
    return Type();
  if (name == "f32")
    return b.getF32Type();
  if (name == "f16")
    return b.getF16Type();
  if (name == "bf16")
    return b.getBF16Type();
  return Type();
}

std::string attnc::elementTypeChoices(ArrayRef<StringRef> allowed) {
  std::string text;
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (i)
      text += i + 1 == allowed.size() ? " or " : ", ";
    text += allowed[i].str();
  }
  return text;
}

BlockTile attnc::emitLongestFirstBlock(OpBuilder &b, Location loc, Value block,
                                       const Value sizeIdx[7],
                                       int64_t rowsPerBlock,
                                       int64_t kvBytesPerKey) {
  auto cIdx = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, loc, v);
  };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulIOp::create(b, loc, x, y);
  };
  auto sub = [&](Value x, Value y) -> Value {
    return arith::SubIOp::create(b, loc, x, y);
  };
  auto divu = [&](Value x, Value y) -> Value {
    return arith::DivUIOp::create(b, loc, x, y);
  };
  Value numQTiles =
      arith::CeilDivUIOp::create(b, loc, sizeIdx[3], cIdx(rowsPerBlock));
  Value bh = mul(sizeIdx[0], sizeIdx[1]);
  // G heads per group (at least 1, at most B * H).
  Value groupHeads = bh;
  if (kvBytesPerKey > 0) {
    Value headBytes = arith::MaxUIOp::create(
        b, loc, mul(sizeIdx[4], cIdx(kvBytesPerKey)), cIdx(1));
    groupHeads = arith::MinUIOp::create(
        b, loc, bh,
        arith::MaxUIOp::create(b, loc, divu(cIdx(kHeadGroupKVBytes), headBytes),
                               cIdx(1)));
  }
  Value groupBlocks = mul(groupHeads, numQTiles);
  Value group = divu(block, groupBlocks);
  Value firstHead = mul(group, groupHeads);
  Value headsHere =
      arith::MinUIOp::create(b, loc, groupHeads, sub(bh, firstHead));
  Value inGroup = sub(block, mul(group, groupBlocks));
  Value rev = divu(inGroup, headsHere);
  Value qt = sub(sub(numQTiles, cIdx(1)), rev);
  Value bhIdx = arith::AddIOp::create(
      b, loc, firstHead, arith::RemUIOp::create(b, loc, inGroup, headsHere));
  return emitBlockTile(b, loc,
                       arith::DivUIOp::create(b, loc, bhIdx, sizeIdx[1]),
                       arith::RemUIOp::create(b, loc, bhIdx, sizeIdx[1]), qt,
                       sizeIdx, rowsPerBlock);
}

BlockTile attnc::emitBlockTile(OpBuilder &b, Location loc, Value bi, Value hi,
                               Value qt, const Value sizeIdx[7],
                               int64_t rowsPerBlock) {
  auto toI32 = [&](Value v) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), v);
  };
  BlockTile t;
  t.bi = bi;
  t.hi = hi;
  t.b32 = toI32(t.bi);
  t.h32 = toI32(t.hi);
  t.hkv = arith::DivUIOp::create(
      b, loc, t.hi, arith::DivUIOp::create(b, loc, sizeIdx[1], sizeIdx[2]));
  t.q0 = arith::MulIOp::create(
      b, loc, qt, arith::ConstantIndexOp::create(b, loc, rowsPerBlock));
  t.rows = arith::MinSIOp::create(
      b, loc, arith::ConstantIndexOp::create(b, loc, rowsPerBlock),
      arith::SubIOp::create(b, loc, sizeIdx[3], t.q0));
  return t;
}

Value attnc::emitQScale(OpBuilder &b, Location loc, attn::VariantOp variant,
                        Value headDimI32, bool &foldLog2e) {
  auto cF32 = [&](double v) -> Value {
    return arith::ConstantOp::create(b, loc,
                                     b.getF32FloatAttr(static_cast<float>(v)));
  };
  Value scale;
  if (attn::ScaleOp scaleOp = variant.getScaleOp())
    scale = inlineItemRegion(b, scaleOp.getBody(), {});
  else
    scale = arith::DivFOp::create(
        b, loc, cF32(1.0),
        math::SqrtOp::create(
            b, loc,
            arith::SIToFPOp::create(b, loc, b.getF32Type(), headDimI32)));
  foldLog2e =
      !variant.getScoreOp() && variant.getNormKind() == attn::NormKind::softmax;
  return foldLog2e
             ? arith::MulFOp::create(b, loc, scale, cF32(kLog2e)).getResult()
             : scale;
}

void attnc::initTileEnv(TileEnv &env, OpBuilder &b, Location loc, Value bi,
                        Value hi, const Value sizeI64[7],
                        const KernelContext &kctx) {
  env.b = arith::IndexCastOp::create(b, loc, b.getI64Type(), bi);
  env.h = arith::IndexCastOp::create(b, loc, b.getI64Type(), hi);
  for (int i = 0; i < 7; ++i)
    env.sizes[i] = sizeI64[i];
  OpBuilder *builder = &b;
  const KernelContext *context = &kctx;
  env.scalarParam = [builder, context, loc](attn::ParamOp p) -> Value {
    auto it = context->params.find(p.getSymName());
    if (it == context->params.end() || !it->second.arg.getType().isInteger(32))
      return Value();
    return arith::ExtSIOp::create(*builder, loc, builder->getI64Type(),
                                  it->second.arg);
  };
}

KvTileRange attnc::emitKvTileRange(OpBuilder &b, Location loc,
                                   attn::MaskOp mask, TileEnv &env, Value q0,
                                   Value rows, int64_t tk) {
  auto cI64 = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
  };
  auto toI64 = [&](Value v) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
  };
  Value qLast = arith::SubIOp::create(
      b, loc, toI64(arith::AddIOp::create(b, loc, q0, rows)), cI64(1));
  env.q = {toI64(q0), qLast};
  env.kv = {cI64(0), arith::SubIOp::create(b, loc, env.sizes[4], cI64(1))};
  TileFacts rowFacts = emitTileFacts(b, loc, mask, env);
  Value nonEmpty = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                         rowFacts.kvLo, rowFacts.kvHi);
  KvTileRange r;
  r.begin = arith::FloorDivSIOp::create(b, loc, rowFacts.kvLo, cI64(tk));
  r.end = arith::SelectOp::create(
      b, loc, nonEmpty,
      arith::AddIOp::create(
          b, loc, arith::FloorDivSIOp::create(b, loc, rowFacts.kvHi, cI64(tk)),
          cI64(1)),
      r.begin);
  return r;
}

Value attnc::emitSinkLog2(OpBuilder &b, Location loc, attn::VariantOp variant,
                          Value b32, Value h32) {
  attn::NormalizeOp normOp = variant.getNormalizeOp();
  if (variant.getNormKind() != attn::NormKind::softmax || !normOp ||
      !normOp.hasSink())
    return Value();
  return arith::MulFOp::create(
      b, loc, inlineItemRegion(b, normOp.getSink(), {b32, h32}),
      arith::ConstantOp::create(b, loc, b.getF32FloatAttr(kLog2e)));
}

RowNormalization attnc::emitRowNormalization(OpBuilder &b, Location loc,
                                             attn::NormKind norm, Value m,
                                             Value l, Value sinkLog2) {
  auto cF32 = [&](double v) -> Value {
    return arith::ConstantOp::create(b, loc,
                                     b.getF32FloatAttr(static_cast<float>(v)));
  };
  auto exp2 = [&](Value x) -> Value { return math::Exp2Op::create(b, loc, x); };
  RowNormalization r;
  if (norm == attn::NormKind::softmax) {
    // Empty: nothing kept (m = -inf, l = 0). A row whose kept scores are
    // all NaN may also have m = -inf (a max that skips NaN), but l = NaN:
    // not empty, so that its O and LSE are NaN.
    r.empty = arith::AndIOp::create(
        b, loc,
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, m,
                              cF32(-INFINITY)),
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ORD, l, l));
    Value mSafe = arith::SelectOp::create(b, loc, r.empty, cF32(0.0), m);
    Value denom = l, top = mSafe, keep = cF32(1.0);
    if (sinkLog2) {
      // The sink joins at the end: M = max(m, e); l' = l 2^(m-M) + 2^(e-M).
      top = arith::MaximumFOp::create(b, loc, mSafe, sinkLog2);
      keep = exp2(arith::SubFOp::create(b, loc, mSafe, top));
      Value sinkW = exp2(arith::SubFOp::create(b, loc, sinkLog2, top));
      denom = arith::AddFOp::create(
          b, loc, arith::MulFOp::create(b, loc, l, keep), sinkW);
    }
    r.factor = arith::DivFOp::create(b, loc, keep, denom);
    // LSE = ln(sum e^s) = (M + log2 l') ln 2
    r.lse = arith::MulFOp::create(
        b, loc,
        arith::AddFOp::create(b, loc, top, math::Log2Op::create(b, loc, denom)),
        cF32(kLn2));
  } else if (norm == attn::NormKind::linear) {
    r.empty =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, l, cF32(0.0));
    r.factor = arith::DivFOp::create(b, loc, cF32(1.0), l);
  } else {
    r.empty = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
    r.factor = cF32(1.0);
  }
  r.factor = arith::SelectOp::create(b, loc, r.empty, cF32(0.0), r.factor);
  return r;
}
