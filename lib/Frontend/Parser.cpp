//===- Parser.cpp - Recursive-descent parser for .attn files --------------===//
//
// One function per grammar rule. Binary operators use precedence climbing
// (lowest to highest: `||`, `&&`, comparisons, `+ -`, `* / %`), all left
// associative except comparisons, which do not chain; `?:` sits below them and
// nests to the right. The parser gives up at the first error; a nesting
// counter and the height recorded in each node keep recursion bounded, both
// here and in every later walk of the tree.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/Lexer.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringSwitch.h"

using namespace attnc;
using K = Token::Kind;

namespace {

constexpr unsigned kComparisonPrecedence = 3;

/// Binding strength of a binary operator token (0 for other tokens).
unsigned binaryPrecedence(K kind, BinaryOp &op) {
  switch (kind) {
  case K::OrOr:
    op = BinaryOp::Or;
    return 1;
  case K::AndAnd:
    op = BinaryOp::And;
    return 2;
  case K::EqEq:
    op = BinaryOp::Eq;
    return kComparisonPrecedence;
  case K::NotEq:
    op = BinaryOp::Ne;
    return kComparisonPrecedence;
  case K::Less:
    op = BinaryOp::Lt;
    return kComparisonPrecedence;
  case K::LessEq:
    op = BinaryOp::Le;
    return kComparisonPrecedence;
  case K::Greater:
    op = BinaryOp::Gt;
    return kComparisonPrecedence;
  case K::GreaterEq:
    op = BinaryOp::Ge;
    return kComparisonPrecedence;
  case K::Plus:
    op = BinaryOp::Add;
    return 4;
  case K::Minus:
    op = BinaryOp::Sub;
    return 4;
  case K::Star:
    op = BinaryOp::Mul;
    return 5;
  case K::Slash:
    op = BinaryOp::Div;
    return 5;
  case K::Percent:
    op = BinaryOp::Mod;
    return 5;
  default:
    return 0;
  }
}

const char *const kItemList = "'param', 'const param', 'let', 'scale', "
                              "'score', 'mask' or 'normalize'";
const char *const kNormalizationList =
    "'softmax', 'sigmoid', 'relu' or 'linear'";

class Parser {
public:
  Parser(llvm::StringRef buffer, llvm::StringRef name, mlir::MLIRContext *ctx)
      : lexer(buffer, name, ctx) {
    advance();
  }

  std::unique_ptr<ast::File> parseFile();

private:
  void advance() {
    prevEndLine = tok.line;
    prevEndCol = tok.col + tok.text.size();
    tok = lexer.next();
    if (tok.kind == K::Error)
      failed = true; // The lexer has reported it.
  }
  bool is(K kind) const { return tok.kind == kind; }
  bool consume(K kind) {
    if (!is(kind))
      return false;
    advance();
    return true;
  }
  mlir::Location loc() const { return lexer.getLoc(tok); }

  /// Reports the first error only; everything after it is a consequence.
  std::nullptr_t error(mlir::Location at, const llvm::Twine &message) {
    if (!failed)
      mlir::emitError(at, message);
    failed = true;
    return nullptr;
  }
  std::string describe(const Token &t) const;
  bool expect(K kind, const llvm::Twine &where);
  std::optional<ast::Ident> parseIdent(const llvm::Twine &what);

  void parseDef(ast::File &file);
  void parseAttention(ast::File &file);
  void parseItem(std::vector<ast::Item> &items);
  void parseParam(std::vector<ast::Item> &items, mlir::Location at,
                  bool isConst);
  void parseNormalize(std::vector<ast::Item> &items, mlir::Location at);
  std::optional<ast::TypeRef> parseType();

  ast::ExprPtr parseExpr();
  ast::ExprPtr parseBinary(unsigned minPrecedence);
  ast::ExprPtr parseUnary();
  ast::ExprPtr parsePostfix();
  ast::ExprPtr parsePrimary();
  bool parseList(std::vector<ast::ExprPtr> &into, K close,
                 const llvm::Twine &where);
  ast::ExprPtr finish(ast::ExprPtr e, bool continuesChain = false);
  std::nullptr_t tooDeep(mlir::Location at) {
    return error(at, "expression nested too deeply (more than " +
                         llvm::Twine(kMaxExprNesting) + " levels)");
  }
  std::nullptr_t tooLong(mlir::Location at) {
    return error(at, "expression too long: its syntax tree is more than " +
                         llvm::Twine(kMaxExprTreeDepth) +
                         " levels high (each operator of a chain such as "
                         "'a + b + c' is one level)");
  }

  /// Counts the active parseExpr/parseUnary frames.
  struct NestingScope {
    unsigned &depth;
    explicit NestingScope(unsigned &depth) : depth(depth) { ++depth; }
    ~NestingScope() { --depth; }
  };

  Lexer lexer;
  Token tok;
  unsigned prevEndLine = 1, prevEndCol = 1;
  unsigned nesting = 0;
  bool failed = false;
};

} // namespace

std::string Parser::describe(const Token &t) const {
  if (t.kind == K::Eof || t.kind == K::Error)
    return tokenSpelling(t.kind);
  if (t.text.size() > 32)
    return ("'" + t.text.take_front(32) + "...'").str();
  return ("'" + t.text + "'").str();
}

bool Parser::expect(K kind, const llvm::Twine &where) {
  if (consume(kind))
    return true;
  // A missing ';' is reported just after the token it should follow.
  if (kind == K::Semi)
    error(lexer.getLoc(prevEndLine, prevEndCol), "expected ';' " + where);
  else
    error(loc(), "expected " + tokenSpelling(kind) + " " + where + ", got " +
                     describe(tok));
  return false;
}

std::optional<ast::Ident> Parser::parseIdent(const llvm::Twine &what) {
  if (!is(K::Ident)) {
    error(loc(), "expected " + what + ", got " + describe(tok));
    return std::nullopt;
  }
  ast::Ident id{tok.text.str(), loc()};
  advance();
  return id;
}

std::unique_ptr<ast::File> Parser::parseFile() {
  auto file = std::make_unique<ast::File>();
  while (!failed && !is(K::Eof)) {
    if (is(K::KwDef))
      parseDef(*file);
    else if (is(K::KwAttention))
      parseAttention(*file);
    else
      error(loc(),
            "expected 'attention' or 'def', got " + describe(tok) +
                (is(K::Ident) ? ast::didYouMean(tok.text, {"attention", "def"})
                              : ""));
  }
  if (failed)
    return nullptr;
  return file;
}

void Parser::parseDef(ast::File &file) {
  mlir::Location at = loc();
  advance();
  std::optional<ast::Ident> name = parseIdent("a def name");
  if (!name || !expect(K::LParen, "after the def name"))
    return;
  std::vector<ast::Ident> params;
  if (!is(K::RParen)) {
    do {
      std::optional<ast::Ident> param = parseIdent("an argument name");
      if (!param)
        return;
      params.push_back(std::move(*param));
    } while (consume(K::Comma));
  }
  if (!expect(K::RParen, "after the def arguments") ||
      !expect(K::Assign, "before the def body"))
    return;
  ast::ExprPtr body = parseExpr();
  if (!body || !expect(K::Semi, "after the def body"))
    return;
  file.defs.push_back(
      ast::Def{std::move(*name), at, std::move(params), std::move(body)});
}

void Parser::parseAttention(ast::File &file) {
  mlir::Location at = loc();
  advance();
  std::optional<ast::Ident> name = parseIdent("an attention name");
  if (!name || !expect(K::LBrace, "after the attention name"))
    return;
  ast::Attention block{std::move(*name), at, {}};
  while (!failed && !is(K::RBrace) && !is(K::Eof))
    parseItem(block.items);
  if (!failed &&
      expect(K::RBrace, "to close attention '" + block.name.name + "'"))
    file.attentions.push_back(std::move(block));
}

void Parser::parseItem(std::vector<ast::Item> &items) {
  mlir::Location at = loc();
  switch (tok.kind) {
  case K::KwParam:
    advance();
    return parseParam(items, at, /*isConst=*/false);
  case K::KwConst:
    advance();
    if (expect(K::KwParam, "after 'const'"))
      parseParam(items, at, /*isConst=*/true);
    return;
  case K::KwNormalize:
    return parseNormalize(items, at);
  case K::KwLet: {
    advance();
    ast::Item item(ast::Item::Kind::Let, at);
    std::optional<ast::Ident> name = parseIdent("a let name");
    if (!name || !expect(K::Assign, "after the let name"))
      return;
    item.name = std::move(*name);
    item.value = parseExpr();
    if (item.value && expect(K::Semi, "after the let expression"))
      items.push_back(std::move(item));
    return;
  }
  case K::Ident: {
    auto kind = llvm::StringSwitch<std::optional<ast::Item::Kind>>(tok.text)
                    .Case("scale", ast::Item::Kind::Scale)
                    .Case("score", ast::Item::Kind::Score)
                    .Case("mask", ast::Item::Kind::Mask)
                    .Default(std::nullopt);
    if (!kind) {
      std::string hint =
          ast::didYouMean(tok.text, {"param", "const", "let", "scale", "score",
                                     "mask", "normalize"});
      if (hint.empty())
        hint = "; expected " + std::string(kItemList);
      error(at, "unknown item '" + tok.text + "'" + hint);
      return;
    }
    std::string head = tok.text.str();
    advance();
    ast::Item item(*kind, at);
    if (!expect(K::Assign, "after '" + head + "'"))
      return;
    item.value = parseExpr();
    if (item.value && expect(K::Semi, "after the " + head + " expression"))
      items.push_back(std::move(item));
    return;
  }
  default:
    error(at, "expected an item (" + llvm::Twine(kItemList) + "), got " +
                  describe(tok));
  }
}

void Parser::parseParam(std::vector<ast::Item> &items, mlir::Location at,
                        bool isConst) {
  ast::Item item(ast::Item::Kind::Param, at);
  item.isConst = isConst;
  std::optional<ast::Ident> name = parseIdent("a param name");
  if (!name || !expect(K::Colon, "after the param name"))
    return;
  item.name = std::move(*name);
  item.type = parseType();
  if (!item.type)
    return;
  if (consume(K::Assign) && !(item.value = parseExpr()))
    return;
  if (expect(K::Semi, "after the param"))
    items.push_back(std::move(item));
}

std::optional<ast::TypeRef> Parser::parseType() {
  if (!is(K::Ident)) {
    error(loc(),
          "expected a type ('f32', 'i32' or 'bool'), got " + describe(tok));
    return std::nullopt;
  }
  ast::TypeRef type(loc());
  auto element = llvm::StringSwitch<std::optional<ScalarType>>(tok.text)
                     .Case("f32", ScalarType::F32)
                     .Case("i32", ScalarType::I32)
                     .Case("bool", ScalarType::Bool)
                     .Default(std::nullopt);
  if (!element) {
    error(loc(), "unknown type " + describe(tok) +
                     "; expected 'f32', 'i32' or 'bool'");
    return std::nullopt;
  }
  type.elementType = *element;
  advance();
  if (!consume(K::LBracket))
    return type;
  type.isTensor = true;
  do {
    ast::Dim dim{ast::Dim::Kind::Dynamic, loc(), "", 0};
    if (is(K::Ident)) {
      dim.kind = ast::Dim::Kind::Name;
      dim.name = tok.text.str();
    } else if (is(K::Int)) {
      dim.kind = ast::Dim::Kind::Literal;
      dim.value = tok.intValue;
    } else if (!is(K::Question)) {
      error(loc(), "expected a size name, an integer or '?' as a tensor "
                   "dimension, got " +
                       describe(tok));
      return std::nullopt;
    }
    type.dims.push_back(std::move(dim));
    advance();
  } while (consume(K::Comma));
  if (!expect(K::RBracket, "after the tensor dimensions"))
    return std::nullopt;
  return type;
}

void Parser::parseNormalize(std::vector<ast::Item> &items, mlir::Location at) {
  advance();
  ast::Item item(ast::Item::Kind::Normalize, at);
  if (is(K::Semi)) {
    error(loc(), "missing normalize argument: expected " +
                     llvm::Twine(kNormalizationList));
    return;
  }
  std::optional<ast::Ident> kind =
      parseIdent("a normalization (" + llvm::Twine(kNormalizationList) + ")");
  if (!kind)
    return;
  item.name = std::move(*kind);
  if (consume(K::LParen)) {
    item.hasArgList = true;
    if (is(K::RParen)) {
      error(loc(),
            "missing normalize argument: expected '" +
                llvm::Twine(item.name.name == "softmax" ? "sink" : "NAME") +
                " = EXPR'");
      return;
    }
    do {
      std::optional<ast::Ident> name = parseIdent("an argument name");
      if (!name || !expect(K::Assign, "after the argument name"))
        return;
      if (is(K::RParen) || is(K::Comma) || is(K::Semi)) {
        error(loc(), "missing normalize argument: expected a value for '" +
                         name->name + "'");
        return;
      }
      ast::ExprPtr value = parseExpr();
      if (!value)
        return;
      item.args.push_back(ast::NamedArg{std::move(*name), std::move(value)});
    } while (consume(K::Comma));
    if (!expect(K::RParen, "after the normalize arguments"))
      return;
  }
  if (expect(K::Semi, "after the normalize item"))
    items.push_back(std::move(item));
}

ast::ExprPtr Parser::finish(ast::ExprPtr e, bool continuesChain) {
  for (const ast::ExprPtr &op : e->operands) {
    e->depth = std::max(e->depth, op->depth + 1);
    // The left operand of a chain's next operator is the chain itself.
    bool sameLevel = continuesChain && &op == &e->operands.front();
    e->nesting = std::max(e->nesting, op->nesting + (sameLevel ? 0 : 1));
  }
  if (e->nesting > kMaxExprNesting)
    return tooDeep(e->loc);
  if (e->depth > kMaxExprTreeDepth)
    return tooLong(e->loc);
  return e;
}

ast::ExprPtr Parser::parseExpr() {
  NestingScope scope(nesting);
  if (nesting > kMaxExprNesting)
    return tooDeep(loc());
  ast::ExprPtr cond = parseBinary(1);
  if (!cond || !is(K::Question))
    return cond;
  auto e = std::make_unique<ast::Expr>(ast::Expr::Kind::Ternary, loc());
  advance();
  e->operands.push_back(std::move(cond));
  ast::ExprPtr then = parseExpr();
  if (!then || !expect(K::Colon, "in the conditional expression"))
    return nullptr;
  ast::ExprPtr otherwise = parseExpr();
  if (!otherwise)
    return nullptr;
  e->operands.push_back(std::move(then));
  e->operands.push_back(std::move(otherwise));
  return finish(std::move(e));
}

ast::ExprPtr Parser::parseBinary(unsigned minPrecedence) {
  ast::ExprPtr lhs = parseUnary();
  BinaryOp op;
  // The precedence of the operator that built `lhs` in this loop (0: none):
  // the next operator of the same precedence continues its chain.
  unsigned chainPrecedence = 0;
  while (lhs) {
    unsigned precedence = binaryPrecedence(tok.kind, op);
    if (precedence == 0 || precedence < minPrecedence)
      break;
    auto e = std::make_unique<ast::Expr>(ast::Expr::Kind::Binary, loc());
    e->binaryOp = op;
    advance();
    ast::ExprPtr rhs = parseBinary(precedence + 1);
    if (!rhs)
      return nullptr;
    e->operands.push_back(std::move(lhs));
    e->operands.push_back(std::move(rhs));
    lhs = finish(std::move(e), chainPrecedence == precedence);
    chainPrecedence = precedence;
    BinaryOp next;
    if (lhs && precedence == kComparisonPrecedence &&
        binaryPrecedence(tok.kind, next) == kComparisonPrecedence)
      return error(loc(), "comparisons cannot be chained; combine them with "
                          "'&&' or add parentheses");
  }
  return lhs;
}

ast::ExprPtr Parser::parseUnary() {
  if (!is(K::Minus) && !is(K::Bang))
    return parsePostfix();
  NestingScope scope(nesting);
  if (nesting > kMaxExprNesting)
    return tooDeep(loc());
  auto e = std::make_unique<ast::Expr>(ast::Expr::Kind::Unary, loc());
  e->unaryOp = is(K::Minus) ? UnaryOp::Neg : UnaryOp::Not;
  advance();
  ast::ExprPtr operand = parseUnary();
  if (!operand)
    return nullptr;
  e->operands.push_back(std::move(operand));
  return finish(std::move(e));
}

bool Parser::parseList(std::vector<ast::ExprPtr> &into, K close,
                       const llvm::Twine &where) {
  do {
    ast::ExprPtr e = parseExpr();
    if (!e)
      return false;
    into.push_back(std::move(e));
  } while (consume(K::Comma));
  return expect(close, where);
}

ast::ExprPtr Parser::parsePostfix() {
  ast::ExprPtr e = parsePrimary();
  while (e) {
    if (is(K::LBracket)) {
      auto index = std::make_unique<ast::Expr>(ast::Expr::Kind::Index, loc());
      advance();
      if (is(K::RBracket))
        return error(loc(), "expected an index expression, got ']'");
      index->operands.push_back(std::move(e));
      if (!parseList(index->operands, K::RBracket, "after the indices"))
        return nullptr;
      e = finish(std::move(index));
    } else if (is(K::LParen)) {
      if (e->kind != ast::Expr::Kind::Name)
        return error(loc(), "only a function name can be called");
      auto call = std::make_unique<ast::Expr>(ast::Expr::Kind::Call, e->loc);
      call->text = std::move(e->text);
      advance();
      if (!consume(K::RParen) &&
          !parseList(call->operands, K::RParen, "after the call arguments"))
        return nullptr;
      e = finish(std::move(call));
    } else {
      break;
    }
  }
  return e;
}

ast::ExprPtr Parser::parsePrimary() {
  using EK = ast::Expr::Kind;
  auto leaf = [&](EK kind) {
    auto e = std::make_unique<ast::Expr>(kind, loc());
    e->text = tok.text.str();
    e->intValue = tok.intValue;
    e->floatValue = tok.floatValue;
    e->boolValue = is(K::KwTrue);
    advance();
    return e;
  };
  switch (tok.kind) {
  case K::Int:
    return leaf(EK::Int);
  case K::Float:
    return leaf(EK::Float);
  case K::KwTrue:
  case K::KwFalse:
    return leaf(EK::Bool);
  case K::Ident:
    return leaf(EK::Name);
  case K::LParen: {
    advance();
    ast::ExprPtr e = parseExpr();
    if (!e || !expect(K::RParen, "to close '('"))
      return nullptr;
    return e;
  }
  default:
    return error(loc(), "expected an expression, got " + describe(tok));
  }
}

std::unique_ptr<ast::File> attnc::parseFile(llvm::SourceMgr &sm,
                                            unsigned bufferId,
                                            mlir::MLIRContext *ctx) {
  const llvm::MemoryBuffer *buffer = sm.getMemoryBuffer(bufferId);
  Parser parser(buffer->getBuffer(), buffer->getBufferIdentifier(), ctx);
  return parser.parseFile();
}
