//===- Lexer.cpp - Tokens of .attn source ---------------------------------===//
//
// Implements the lexer: identifiers and keywords, decimal integers (which
// must fit in i32), floats (`0.5`, `1e-3`, `2.5E+4`; finite in f32),
// operators, and `//` comments. Errors are emitted as located diagnostics.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/Lexer.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/ConvertUTF.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Unicode.h"

#include <cfloat>
#include <cmath>

using namespace attnc;

static bool isIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool isDigit(char c) { return c >= '0' && c <= '9'; }
static bool isIdentChar(char c) { return isIdentStart(c) || isDigit(c); }

Lexer::Lexer(llvm::StringRef buffer, llvm::StringRef name,
             mlir::MLIRContext *ctx)
    : cur(buffer.begin()), end(buffer.end()),
      fileName(mlir::StringAttr::get(ctx, name)) {}

mlir::Location Lexer::getLoc(unsigned l, unsigned c) const {
  return mlir::FileLineColLoc::get(fileName, l, c);
}

void Lexer::advance() {
  if (*cur == '\n') {
    ++line;
    col = 1;
  } else {
    ++col;
  }
  ++cur;
}

void Lexer::skipBlanksAndComments() {
  while (!atEnd()) {
    char c = peek();
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
        c == '\v') {
      advance();
    } else if (c == '/' && peek(1) == '/') {
      while (!atEnd() && peek() != '\n')
        advance();
    } else {
      return;
    }
  }
}

Token Lexer::error(Token tok, const llvm::Twine &message) {
  mlir::emitError(getLoc(tok)) << message;
  tok.kind = Token::Kind::Error;
  return tok;
}

Token Lexer::lexNumber(Token tok) {
  const char *start = cur;
  auto spelled = [&] { return llvm::StringRef(start, cur - start); };
  // Swallows the rest of a malformed literal so the message quotes it whole.
  auto malformed = [&](const llvm::Twine &why) {
    while (!atEnd() && (isIdentChar(peek()) || peek() == '.'))
      advance();
    return error(tok, "malformed number '" + spelled() + "'" + why);
  };

  bool isFloat = false;
  while (isDigit(peek()))
    advance();
  if (peek() == '.') {
    advance();
    if (!isDigit(peek()))
      return malformed(": expected a digit after '.'");
    while (isDigit(peek()))
      advance();
    isFloat = true;
  }
  if (peek() == 'e' || peek() == 'E') {
    advance();
    if (peek() == '+' || peek() == '-')
      advance();
    if (!isDigit(peek()))
      return malformed(": expected digits in the exponent");
    while (isDigit(peek()))
      advance();
    isFloat = true;
  }
  if (isIdentChar(peek()) || peek() == '.')
    return malformed("");

  tok.text = spelled();
  if (isFloat) {
    double value = 0;
    if (tok.text.getAsDouble(value, /*AllowInexact=*/true) ||
        !std::isfinite(value) || std::fabs(value) > FLT_MAX)
      return error(tok,
                   "float literal '" + tok.text + "' is out of range for f32");
    tok.kind = Token::Kind::Float;
    tok.floatValue = value;
    return tok;
  }
  int64_t value = 0;
  for (char c : tok.text) {
    value = value * 10 + (c - '0');
    if (value > INT32_MAX)
      return error(tok,
                   "integer literal '" + tok.text + "' does not fit in i32");
  }
  tok.kind = Token::Kind::Int;
  tok.intValue = value;
  return tok;
}

namespace {
struct Spelling {
  Token::Kind kind;
  llvm::StringRef text;
};
} // namespace

// Keywords, then operators with two-character ones before their prefixes.
static const Spelling kSpellings[] = {
    {Token::Kind::KwAttention, "attention"},
    {Token::Kind::KwDef, "def"},
    {Token::Kind::KwParam, "param"},
    {Token::Kind::KwConst, "const"},
    {Token::Kind::KwLet, "let"},
    {Token::Kind::KwNormalize, "normalize"},
    {Token::Kind::KwTrue, "true"},
    {Token::Kind::KwFalse, "false"},
    {Token::Kind::EqEq, "=="},
    {Token::Kind::NotEq, "!="},
    {Token::Kind::LessEq, "<="},
    {Token::Kind::GreaterEq, ">="},
    {Token::Kind::AndAnd, "&&"},
    {Token::Kind::OrOr, "||"},
    {Token::Kind::LParen, "("},
    {Token::Kind::RParen, ")"},
    {Token::Kind::LBracket, "["},
    {Token::Kind::RBracket, "]"},
    {Token::Kind::LBrace, "{"},
    {Token::Kind::RBrace, "}"},
    {Token::Kind::Comma, ","},
    {Token::Kind::Semi, ";"},
    {Token::Kind::Colon, ":"},
    {Token::Kind::Assign, "="},
    {Token::Kind::Question, "?"},
    {Token::Kind::Plus, "+"},
    {Token::Kind::Minus, "-"},
    {Token::Kind::Star, "*"},
    {Token::Kind::Slash, "/"},
    {Token::Kind::Percent, "%"},
    {Token::Kind::Bang, "!"},
    {Token::Kind::Less, "<"},
    {Token::Kind::Greater, ">"},
};
static constexpr unsigned kNumKeywords = 8;

Token Lexer::next() {
  skipBlanksAndComments();
  Token tok;
  tok.line = line;
  tok.col = col;
  const char *start = cur;
  auto take = [&](size_t n, Token::Kind kind) {
    for (size_t i = 0; i < n; ++i)
      advance();
    tok.kind = kind;
    tok.text = llvm::StringRef(start, n);
    return tok;
  };
  if (atEnd())
    return take(0, Token::Kind::Eof);

  char c = peek();
  if (isIdentStart(c)) {
    size_t n = 1;
    while (!atEnd(n) && isIdentChar(peek(n)))
      ++n;
    llvm::StringRef word(start, n);
    for (const Spelling &s :
         llvm::ArrayRef(kSpellings).take_front(kNumKeywords))
      if (s.text == word)
        return take(n, s.kind);
    return take(n, Token::Kind::Ident);
  }
  if (isDigit(c))
    return lexNumber(tok);

  llvm::StringRef rest(cur, end - cur);
  for (const Spelling &s : llvm::ArrayRef(kSpellings).drop_front(kNumKeywords))
    if (rest.starts_with(s.text))
      return take(s.text.size(), s.kind);

  tok.text = llvm::StringRef(start, 1);
  advance();
  if (c == '.' && isDigit(peek())) {
    while (!atEnd() && (isIdentChar(peek()) || peek() == '.'))
      advance();
    return error(tok, "malformed number '" +
                          llvm::StringRef(start, cur - start) +
                          "': write a digit before '.'");
  }
  if (c == '&' || c == '|')
    return error(tok, "unexpected character '" + std::string(1, c) +
                          "'; did you mean '" + std::string(2, c) + "'?");
  std::string shown;
  const auto *first = reinterpret_cast<const llvm::UTF8 *>(start);
  const auto *last = reinterpret_cast<const llvm::UTF8 *>(end);
  llvm::UTF32 codePoint = 0;
  if (c >= 0x20 && c < 0x7f) {
    shown = "'" + std::string(1, c) + "'";
  } else if ((unsigned char)c >= 0x80 &&
             llvm::isLegalUTF8Sequence(first, last)) {
    // A character beyond ASCII: shown whole, with its code point.
    unsigned n = llvm::getNumBytesForUTF8(*first);
    const llvm::UTF8 *p = first;
    (void)llvm::convertUTF8Sequence(&p, last, &codePoint,
                                    llvm::strictConversion);
    std::string hex;
    llvm::raw_string_ostream(hex)
        << llvm::format_hex_no_prefix(codePoint,
                                      codePoint > 0xfffff  ? 6
                                      : codePoint > 0xffff ? 5
                                                           : 4,
                                      /*Upper=*/true);
    // An invisible or control character by its code point only.
    shown = llvm::sys::unicode::isPrintable(codePoint)
                ? "'" + std::string(start, n) + "' (U+" + hex + ")"
                : "U+" + hex;
  } else {
    llvm::raw_string_ostream(shown)
        << "'\\x" << llvm::format_hex_no_prefix((unsigned char)c, 2) << "'"
        << ((unsigned char)c >= 0x80 ? " (not UTF-8)" : "");
  }
  return error(tok, "unexpected character " + shown);
}

std::string attnc::tokenSpelling(Token::Kind kind) {
  switch (kind) {
  case Token::Kind::Eof:
    return "end of file";
  case Token::Kind::Error:
    return "an invalid token";
  case Token::Kind::Ident:
    return "a name";
  case Token::Kind::Int:
    return "an integer";
  case Token::Kind::Float:
    return "a float";
  default:
    for (const Spelling &s : kSpellings)
      if (s.kind == kind)
        return ("'" + s.text + "'").str();
    return "a token";
  }
}
