//===- VariantSelection.cpp - Choosing the attention block to compile -----===//

#include "attnc/Frontend/VariantSelection.h"

#include "attnc/Frontend/AST.h"

#include "llvm/ADT/StringExtras.h"

#include <algorithm>

using namespace mlir;

bool attnc::chooseVariant(llvm::ArrayRef<std::string> names,
                          const std::string &wanted, const std::string &file,
                          const std::string &howToChoose, std::string &chosen,
                          std::string &error) {
  if (!wanted.empty()) {
    if (std::find(names.begin(), names.end(), wanted) != names.end()) {
      chosen = wanted;
      return true;
    }
    error = "no attention block named '" + wanted + "' in " + file;
    std::vector<llvm::StringRef> refs(names.begin(), names.end());
    std::string near = ast::didYouMean(wanted, refs);
    if (!near.empty())
      error += near;
    else if (!names.empty())
      error += " (it has: " + llvm::join(names, ", ") + ")";
    return false;
  }
  if (names.empty()) {
    error = file + " holds no attention block";
    return false;
  }
  if (names.size() > 1) {
    error = file + " holds " + std::to_string(names.size()) +
            " attention blocks (" + llvm::join(names, ", ") +
            "); choose one with " + howToChoose;
    return false;
  }
  chosen = names.front();
  return true;
}

std::vector<std::string> attnc::variantNames(ModuleOp module) {
  std::vector<std::string> names;
  for (auto v : module.getOps<attn::VariantOp>())
    names.push_back(v.getSymName().str());
  return names;
}

attn::VariantOp attnc::keepOnlyVariant(ModuleOp module, llvm::StringRef name) {
  attn::VariantOp kept;
  for (Operation &op : llvm::make_early_inc_range(*module.getBody())) {
    auto v = llvm::dyn_cast<attn::VariantOp>(op);
    if (v && v.getSymName() == name)
      kept = v;
    else
      op.erase();
  }
  return kept;
}
