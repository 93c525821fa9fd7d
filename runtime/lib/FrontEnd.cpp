//===- FrontEnd.cpp - From .attn source to the IR a kernel is keyed on ----===//

#include "FrontEnd.h"

#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Frontend/MLIRGen.h"
#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/Sema.h"
#include "attnc/Frontend/VariantSelection.h"
#include "attnc/Pipelines/Pipelines.h"
#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cfloat>
#include <cmath>

using namespace mlir;
using ::attn::detail::FrontEndStatus;
using ::attn::detail::KeyedModule;

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

std::string formatValue(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

/// Sets the value of const param `name` of `variant` to `value`.
bool overrideConst(mlir::attn::VariantOp variant, const std::string &name,
                   double value, std::string &error) {
  const std::string where = " of variant '" + variant.getSymName().str() + "'";
  mlir::attn::ParamOp param;
  std::vector<std::string> consts;
  for (mlir::attn::ParamOp p : variant.getParams()) {
    if (p.getIsConst())
      consts.push_back(p.getSymName().str());
    if (p.getSymName() == name)
      param = p;
  }
  if (!param) {
    error = "cannot override const param '" + name + "': no param '" + name +
            "'" + where +
            (consts.empty()
                 ? std::string(" (it has no const params)")
                 : " (its const params: " + llvm::join(consts, ", ") + ")");
    return false;
  }
  if (!param.getIsConst()) {
    error = "cannot override param '" + name + "'" + where +
            ": it is not const; pass its value when running the kernel";
    return false;
  }
  Builder b(variant.getContext());
  Type type = param.getElementType();
  TypedAttr attr;
  if (type.isF32()) {
    if (!std::isfinite(value) || std::fabs(value) > FLT_MAX) {
      error = "const param '" + name + "' is f32 and cannot take the value " +
              formatValue(value) +
              " (f32 holds finite values up to 3.4028235e+38 in magnitude)";
      return false;
    }
    attr = b.getF32FloatAttr(static_cast<float>(value));
  } else if (type.isInteger(32)) {
    if (!std::isfinite(value) || value != std::trunc(value) ||
        value < INT32_MIN || value > INT32_MAX) {
      error = "const param '" + name + "' is i32 and cannot take the value " +
              formatValue(value);
      return false;
    }
    attr = b.getI32IntegerAttr(static_cast<int32_t>(value));
  } else {
    if (value != 0 && value != 1) {
      error = "const param '" + name + "' is bool and cannot take the value " +
              formatValue(value) + " (use 0 or 1)";
      return false;
    }
    attr = b.getIntegerAttr(b.getI1Type(), value == 1 ? 1 : 0);
  }
  param.setValueAttr(attr);
  return true;
}

} // namespace

FrontEndStatus(::attn::detail::buildKeyedModule)(
    const std::string &source, const std::string &bufferName,
    const std::string &wanted, const std::map<std::string, double> &consts,
    KeyedModule &out, std::string &error) {
  auto context =
      std::make_unique<MLIRContext>(MLIRContext::Threading::DISABLED);
  MLIRContext &ctx = *context;
  DialectRegistry registry;
  attnc::registerDialects(registry);
  ctx.appendDialectRegistry(registry);
  ctx.printOpOnDiagnostic(false);

  llvm::SourceMgr sm;
  unsigned bufferId = sm.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, bufferName), llvm::SMLoc());
  std::string diagnostics;
  llvm::raw_string_ostream diagOs(diagnostics);
  FailureOr<std::vector<attnc::CheckedVariant>> variants;
  {
    attnc::SourceDiagnosticHandler handler(sm, &ctx, diagOs);
    variants = attnc::parseAndCheck(sm, bufferId, &ctx);
  }
  if (failed(variants)) {
    error = trimmed(diagnostics);
    if (error.empty())
      error = bufferName + ": invalid attention source";
    return FrontEndStatus::LanguageError;
  }

  // Choose the variant (as attnc does) and keep only it.
  std::vector<std::string> names;
  for (const attnc::CheckedVariant &v : *variants)
    names.push_back(v.name);
  std::string name;
  if (!attnc::chooseVariant(names, wanted, bufferName, "the variant option",
                            name, error))
    return FrontEndStatus::InvalidArgument;

  OwningOpRef<ModuleOp> module = attnc::genModule(
      ctx, *variants, FileLineColLoc::get(&ctx, bufferName, 1, 1));
  mlir::attn::VariantOp variant = attnc::keepOnlyVariant(*module, name);
  for (const auto &[param, value] : consts)
    if (!overrideConst(variant, param, value, error))
      return FrontEndStatus::InvalidArgument;

  std::string internal;
  llvm::raw_string_ostream internalOs(internal);
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &diag) {
    internalOs << diag.str() << "\n";
    return success();
  });
  if (failed(verify(*module))) {
    error = "internal compiler error: the generated IR does not verify: " +
            trimmed(internal);
    return FrontEndStatus::Internal;
  }
  PassManager pm(&ctx);
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (failed(pm.run(*module))) {
    error = "internal compiler error while canonicalising variant '" + name +
            "': " + trimmed(internal);
    return FrontEndStatus::Internal;
  }

  out.canonicalIR.clear();
  llvm::raw_string_ostream irOs(out.canonicalIR);
  OpPrintingFlags flags;
  flags.printGenericOpForm().enableDebugInfo(false);
  module->print(irOs, flags);
  out.variant = name;
  out.module = std::move(module);
  out.context = std::move(context);
  return FrontEndStatus::Ok;
}
