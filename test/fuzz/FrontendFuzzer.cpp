//===- FrontendFuzzer.cpp - libFuzzer target for the .attn front end ------===//
//
// Runs arbitrary bytes through the lexer, the parser, the AST printer and
// Sema, with diagnostics printed (source lines and carets) to nowhere. A
// malformed file may only ever produce diagnostics: any crash, sanitizer
// report, timeout or runaway memory use is a front-end bug.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/AST.h"
#include "attnc/Frontend/Diagnostics.h"
#include "attnc/Frontend/Parser.h"
#include "attnc/Frontend/Sema.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // One context for the whole run; it is never freed.
  static mlir::MLIRContext *ctx = [] {
    auto *context =
        new mlir::MLIRContext(mlir::MLIRContext::Threading::DISABLED);
    context->getDiagEngine().registerHandler(
        [](mlir::Diagnostic &) { return mlir::success(); });
    return context;
  }();

  llvm::SourceMgr sm;
  unsigned bufferId = sm.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size),
          "fuzz.attn"),
      llvm::SMLoc());
  llvm::raw_null_ostream nowhere;
  attnc::SourceDiagnosticHandler printer(sm, ctx, nowhere);
  std::unique_ptr<attnc::ast::File> file = attnc::parseFile(sm, bufferId, ctx);
  if (!file)
    return 0;
  std::string tree;
  llvm::raw_string_ostream os(tree);
  attnc::printAST(*file, os);
  (void)attnc::checkFile(*file, sm, ctx);
  return 0;
}
