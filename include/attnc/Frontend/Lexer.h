//===- Lexer.h - Tokens of .attn source -------------------------*- C++ -*-===//
//
// A hand-written lexer over one source buffer. It tracks 1-based lines and
// byte columns itself, skips blanks and `//` comments, and reports bad
// characters, malformed numbers and out-of-range literals as located errors,
// after which it returns an Error token.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_LEXER_H
#define ATTNC_FRONTEND_LEXER_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Location.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <string>

namespace attnc {

struct Token {
  enum class Kind {
    Eof,
    Error,
    Ident,
    Int,
    Float,
    // Keywords. `scale`, `score`, `mask` and the type names are identifiers
    // that the parser recognises by position.
    KwAttention,
    KwDef,
    KwParam,
    KwConst,
    KwLet,
    KwNormalize,
    KwTrue,
    KwFalse,
    // Punctuation and operators.
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Semi,
    Colon,
    Assign,
    Question,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    EqEq,
    NotEq,
    Less,
    LessEq,
    Greater,
    GreaterEq,
    AndAnd,
    OrOr,
  };
  Kind kind = Kind::Eof;
  llvm::StringRef text;
  unsigned line = 1;
  unsigned col = 1;
  int64_t intValue = 0;    // Int
  double floatValue = 0.0; // Float
};

class Lexer {
public:
  /// Lexes `buffer`; locations name `fileName`.
  Lexer(llvm::StringRef buffer, llvm::StringRef fileName,
        mlir::MLIRContext *ctx);

  /// Returns the next token; Eof forever at the end.
  Token next();

  mlir::Location getLoc(unsigned line, unsigned col) const;
  mlir::Location getLoc(const Token &tok) const {
    return getLoc(tok.line, tok.col);
  }

private:
  char peek(size_t ahead = 0) const { return atEnd(ahead) ? '\0' : cur[ahead]; }
  bool atEnd(size_t ahead = 0) const { return ahead >= size_t(end - cur); }
  void advance();
  void skipBlanksAndComments();
  Token lexNumber(Token tok);
  Token error(Token tok, const llvm::Twine &message);

  const char *cur;
  const char *end;
  unsigned line = 1;
  unsigned col = 1;
  mlir::StringAttr fileName;
};

/// How a token kind is written, for "expected ';'"-style messages.
std::string tokenSpelling(Token::Kind kind);

} // namespace attnc

#endif // ATTNC_FRONTEND_LEXER_H
