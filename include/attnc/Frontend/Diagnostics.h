//===- Diagnostics.h - Located diagnostics with a caret on any line -*- C++
//-*-===//
//
// Prints diagnostics exactly as mlir::SourceMgrDiagnosticHandler does
// (`file:line:col: error: message`, the source line, a caret under the
// column), and also for source lines holding bytes beyond ASCII, which
// LLVM's printer shows without a caret: characters of valid UTF-8 are
// printed as they are and take their display width, any other byte is
// printed as `<XX>` (its hex value), so the caret still points at the
// column of the message (a byte column, as everywhere in attnc).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_FRONTEND_DIAGNOSTICS_H
#define ATTNC_FRONTEND_DIAGNOSTICS_H

#include "mlir/IR/Diagnostics.h"

namespace attnc {

class SourceDiagnosticHandler : public mlir::SourceMgrDiagnosticHandler {
public:
  SourceDiagnosticHandler(llvm::SourceMgr &mgr, mlir::MLIRContext *ctx,
                          llvm::raw_ostream &os);
  /// Prints to llvm::errs().
  SourceDiagnosticHandler(llvm::SourceMgr &mgr, mlir::MLIRContext *ctx);

private:
  void handle(mlir::Diagnostic &diag);
  /// Prints one diagnostic of a plain file location whose line holds bytes
  /// beyond ASCII; false (nothing printed) for any other.
  bool emitBeyondAscii(mlir::Location loc, llvm::StringRef message,
                       mlir::DiagnosticSeverity severity);
};

} // namespace attnc

#endif // ATTNC_FRONTEND_DIAGNOSTICS_H
