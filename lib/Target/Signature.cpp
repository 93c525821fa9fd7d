//===- Signature.cpp - Reading a kernel's signature off an attn.variant ---===//
//
// The MLIR half of Signature.h; the text form and type names are in
// SignatureText.cpp so that runtimes without a compiler can read them.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/Signature.h"

#include "dialects/attn/AttnDialect.h"

using namespace attnc;
using namespace mlir;

KernelSignature KernelSignature::fromVariant(attn::VariantOp variant) {
  KernelSignature sig;
  sig.name = variant.getSymName().str();
  sig.normalization = attn::stringifyNormKind(variant.getNormKind()).str();
  if (attn::NormalizeOp norm = variant.getNormalizeOp())
    sig.hasSink = norm.hasSink();
  for (attn::ParamOp p : variant.getParams()) {
    SignatureParam sp;
    sp.name = p.getSymName().str();
    Type t = p.getElementType();
    sp.type = t.isF32()         ? ParamType::F32
              : t.isInteger(32) ? ParamType::I32
                                : ParamType::Bool;
    sp.isConst = p.getIsConst();
    sp.isTensor = p.isTensor();
    if (std::optional<ArrayAttr> dims = p.getDims()) {
      for (Attribute d : *dims) {
        SignatureDim sd;
        if (auto s = llvm::dyn_cast<StringAttr>(d)) {
          if (std::optional<attn::SizeKind> k =
                  attn::symbolizeSizeKind(s.getValue())) {
            sd.kind = SignatureDim::Kind::Size;
            sd.size = static_cast<int>(*k);
          }
        } else {
          sd.kind = SignatureDim::Kind::Literal;
          sd.value = llvm::cast<IntegerAttr>(d).getInt();
        }
        sp.dims.push_back(sd);
      }
    }
    if (std::optional<TypedAttr> v = p.getValue()) {
      if (auto f = llvm::dyn_cast<FloatAttr>(*v))
        sp.value = f.getValueAsDouble();
      else if (auto i = llvm::dyn_cast<IntegerAttr>(*v))
        sp.value = static_cast<double>(
            t.isInteger(1) ? (i.getValue().getBoolValue() ? 1 : 0)
                           : i.getValue().getSExtValue());
    }
    sig.params.push_back(std::move(sp));
  }
  return sig;
}
