//===- AST.cpp - Printing the surface syntax tree -------------------------===//
//
// The `attnc --emit=ast` printer: an indented tree, one node per line, each
// line ending in `@LINE:COL` of the node's identifying token. Its output
// depends only on the tree, so tests can match it line by line.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/AST.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <tuple>

using namespace attnc;
using namespace attnc::ast;

std::pair<unsigned, unsigned> ast::lineAndColumn(mlir::Location loc) {
  if (auto flc = llvm::dyn_cast<mlir::FileLineColLoc>(loc))
    return {flc.getLine(), flc.getColumn()};
  return {0, 0};
}

/// Edit distance counting a swap of adjacent characters as one edit, so that
/// `scroe` is closer to `score` than to `scale`.
static unsigned typoDistance(llvm::StringRef a, llvm::StringRef b) {
  std::vector<std::vector<unsigned>> d(a.size() + 1,
                                       std::vector<unsigned>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i)
    d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j)
    d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] =
          std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

std::string ast::didYouMean(llvm::StringRef name,
                            llvm::ArrayRef<llvm::StringRef> candidates) {
  constexpr unsigned kMaxDistance = 2;
  // Names far longer than any candidate cannot be within reach.
  if (name.size() > 64)
    return "";
  llvm::StringRef best;
  unsigned bestDistance = kMaxDistance + 1;
  for (llvm::StringRef candidate : candidates) {
    if (candidate.size() > name.size() + kMaxDistance ||
        name.size() > candidate.size() + kMaxDistance)
      continue;
    unsigned distance = typoDistance(name, candidate);
    if (distance < bestDistance && distance < name.size() &&
        distance < candidate.size()) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best.empty())
    return "";
  return ("; did you mean '" + best + "'?").str();
}

namespace {
class Printer {
public:
  explicit Printer(llvm::raw_ostream &os) : os(os) {}

  void print(const File &file);

private:
  /// Starts a node line at the current depth; finish it with `end`.
  llvm::raw_ostream &begin() { return os.indent(2 * indent); }
  void end(mlir::Location loc) {
    auto [line, col] = lineAndColumn(loc);
    os << " @" << line << ":" << col << "\n";
  }
  void printDef(const Def &def);
  void printAttention(const Attention &block);
  void printItem(const Item &item);
  void printExpr(const Expr &e);
  void printChild(const Expr &e) {
    ++indent;
    printExpr(e);
    --indent;
  }

  llvm::raw_ostream &os;
  unsigned indent = 0;
};
} // namespace

void Printer::print(const File &file) {
  os << "file\n";
  // Defs and blocks are stored apart; interleave them back in source order.
  std::vector<std::tuple<unsigned, unsigned, const Def *, const Attention *>>
      decls;
  for (const Def &def : file.defs) {
    auto [line, col] = lineAndColumn(def.loc);
    decls.emplace_back(line, col, &def, nullptr);
  }
  for (const Attention &block : file.attentions) {
    auto [line, col] = lineAndColumn(block.loc);
    decls.emplace_back(line, col, nullptr, &block);
  }
  llvm::sort(decls, [](const auto &a, const auto &b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) <
           std::tie(std::get<0>(b), std::get<1>(b));
  });
  indent = 1;
  for (auto &[line, col, def, block] : decls) {
    if (def)
      printDef(*def);
    else
      printAttention(*block);
  }
}

void Printer::printDef(const Def &def) {
  begin() << "def " << def.name.name << "(";
  llvm::interleave(def.params, os, [&](const Ident &p) { os << p.name; }, ", ");
  os << ")";
  end(def.loc);
  printChild(*def.body);
}

void Printer::printAttention(const Attention &block) {
  begin() << "attention " << block.name.name;
  end(block.loc);
  ++indent;
  for (const Item &item : block.items)
    printItem(item);
  --indent;
}

void Printer::printItem(const Item &item) {
  switch (item.kind) {
  case Item::Kind::Param: {
    begin() << (item.isConst ? "const param " : "param ") << item.name.name
            << ": " << scalarTypeName(item.type->elementType);
    if (item.type->isTensor) {
      os << "[";
      llvm::interleave(
          item.type->dims, os,
          [&](const Dim &d) {
            if (d.kind == Dim::Kind::Name)
              os << d.name;
            else if (d.kind == Dim::Kind::Literal)
              os << d.value;
            else
              os << "?";
          },
          ", ");
      os << "]";
    }
    end(item.loc);
    break;
  }
  case Item::Kind::Let:
    begin() << "let " << item.name.name;
    end(item.loc);
    break;
  case Item::Kind::Scale:
    begin() << "scale";
    end(item.loc);
    break;
  case Item::Kind::Score:
    begin() << "score";
    end(item.loc);
    break;
  case Item::Kind::Mask:
    begin() << "mask";
    end(item.loc);
    break;
  case Item::Kind::Normalize:
    begin() << "normalize " << item.name.name;
    end(item.loc);
    ++indent;
    for (const NamedArg &arg : item.args) {
      begin() << "arg " << arg.name.name;
      end(arg.name.loc);
      printChild(*arg.value);
    }
    --indent;
    break;
  }
  if (item.value)
    printChild(*item.value);
}

void Printer::printExpr(const Expr &e) {
  switch (e.kind) {
  case Expr::Kind::Int:
    begin() << "int " << e.text;
    break;
  case Expr::Kind::Float:
    begin() << "float " << e.text;
    break;
  case Expr::Kind::Bool:
    begin() << "bool " << (e.boolValue ? "true" : "false");
    break;
  case Expr::Kind::Name:
    begin() << "name " << e.text;
    break;
  case Expr::Kind::Unary:
    begin() << "unary " << (e.unaryOp == UnaryOp::Neg ? "-" : "!");
    break;
  case Expr::Kind::Binary:
    begin() << "binary " << binaryOpSpelling(e.binaryOp);
    break;
  case Expr::Kind::Ternary:
    begin() << "ternary";
    break;
  case Expr::Kind::Index:
    begin() << "index";
    break;
  case Expr::Kind::Call:
    begin() << "call " << e.text;
    break;
  }
  end(e.loc);
  for (const ExprPtr &op : e.operands)
    printChild(*op);
}

void attnc::printAST(const File &file, llvm::raw_ostream &os) {
  Printer(os).print(file);
}
