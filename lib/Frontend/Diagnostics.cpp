//===- Diagnostics.cpp - Located diagnostics with a caret on any line -----===//
//
// LLVM's SMDiagnostic::print gives up on the caret line when the source
// line holds any byte beyond ASCII (its columns would be wrong). For those
// lines this handler prints the diagnostic itself, in the same format:
// valid UTF-8 characters as they are (their display width counted), other
// bytes as <XX>, tabs expanded to stops of 8 as LLVM does, the caret under
// the display column of the diagnostic's byte column. Every other
// diagnostic goes to mlir::SourceMgrDiagnosticHandler unchanged.
//
//===----------------------------------------------------------------------===//

#include "attnc/Frontend/Diagnostics.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Location.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/ConvertUTF.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Unicode.h"
#include "llvm/Support/WithColor.h"

using namespace attnc;
using namespace mlir;

namespace {

constexpr unsigned kTabStop = 8; // as LLVM's printSourceLine

bool beyondAscii(char c) { return static_cast<unsigned char>(c) >= 0x80; }

/// Line `line` (1-based) of `text` without its end of line, or none.
std::optional<llvm::StringRef> lineOf(llvm::StringRef text, unsigned line) {
  for (unsigned i = 1; i < line; ++i) {
    size_t eol = text.find('\n');
    if (eol == llvm::StringRef::npos)
      return std::nullopt;
    text = text.drop_front(eol + 1);
  }
  return text.take_until([](char c) { return c == '\n' || c == '\r'; });
}

/// The printable form of `line` and the display column (0-based, tabs
/// expanded) at which its byte `byteColumn` (0-based) starts.
std::pair<std::string, unsigned> displayLine(llvm::StringRef line,
                                             unsigned byteColumn) {
  std::string shown;
  unsigned width = 0, caret = ~0u;
  for (size_t i = 0; i < line.size();) {
    if (i >= byteColumn && caret == ~0u)
      caret = width;
    unsigned char c = static_cast<unsigned char>(line[i]);
    if (c == '\t') {
      do {
        shown += ' ';
        ++width;
      } while (width % kTabStop != 0);
      ++i;
      continue;
    }
    if (c < 0x80) {
      shown += static_cast<char>(c);
      ++width;
      ++i;
      continue;
    }
    const auto *p = reinterpret_cast<const llvm::UTF8 *>(line.data() + i);
    const auto *end = reinterpret_cast<const llvm::UTF8 *>(line.end());
    unsigned n = llvm::getNumBytesForUTF8(c);
    if (llvm::isLegalUTF8Sequence(p, end)) {
      llvm::StringRef seq = line.substr(i, n);
      int w = llvm::sys::unicode::columnWidthUTF8(seq);
      if (w >= 0) {
        shown += seq;
        width += static_cast<unsigned>(w);
        i += n;
        continue;
      }
    }
    // Not valid UTF-8, or a character that does not print: its bytes.
    llvm::raw_string_ostream(shown)
        << '<' << llvm::format_hex_no_prefix(c, 2, true) << '>';
    width += 4;
    ++i;
  }
  if (caret == ~0u)
    caret = width;
  return {shown, caret};
}

} // namespace

SourceDiagnosticHandler::SourceDiagnosticHandler(llvm::SourceMgr &mgr,
                                                 MLIRContext *ctx,
                                                 llvm::raw_ostream &os)
    : SourceMgrDiagnosticHandler(mgr, ctx, os) {
  setHandler([this](Diagnostic &diag) {
    handle(diag);
    return success();
  });
}

SourceDiagnosticHandler::SourceDiagnosticHandler(llvm::SourceMgr &mgr,
                                                 MLIRContext *ctx)
    : SourceDiagnosticHandler(mgr, ctx, llvm::errs()) {}

void SourceDiagnosticHandler::handle(Diagnostic &diag) {
  auto needsUs = [&](Location loc) {
    auto file = llvm::dyn_cast<FileLineColLoc>(loc);
    if (!file)
      return false;
    const llvm::MemoryBuffer *buffer = getBufferForFile(file.getFilename());
    std::optional<llvm::StringRef> line =
        buffer ? lineOf(buffer->getBuffer(), file.getLine()) : std::nullopt;
    return line && llvm::any_of(*line, beyondAscii);
  };
  bool any = needsUs(diag.getLocation());
  for (Diagnostic &note : diag.getNotes())
    any = any || needsUs(note.getLocation());
  if (!any) {
    emitDiagnostic(diag);
    return;
  }
  auto emit = [&](Diagnostic &d) {
    if (!emitBeyondAscii(d.getLocation(), d.str(), d.getSeverity()))
      emitDiagnostic(d.getLocation(), d.str(), d.getSeverity());
  };
  emit(diag);
  for (Diagnostic &note : diag.getNotes())
    emit(note);
}

bool SourceDiagnosticHandler::emitBeyondAscii(Location loc,
                                              llvm::StringRef message,
                                              DiagnosticSeverity severity) {
  auto file = llvm::dyn_cast<FileLineColLoc>(loc);
  if (!file)
    return false;
  const llvm::MemoryBuffer *buffer = getBufferForFile(file.getFilename());
  if (!buffer)
    return false;
  std::optional<llvm::StringRef> line =
      lineOf(buffer->getBuffer(), file.getLine());
  if (!line || !llvm::any_of(*line, beyondAscii))
    return false;
  auto mode = llvm::ColorMode::Auto;
  {
    llvm::WithColor s(os, llvm::raw_ostream::SAVEDCOLOR, true, false, mode);
    llvm::StringRef name = file.getFilename().getValue();
    s << (name == "-" ? llvm::StringRef("<stdin>") : name) << ':'
      << file.getLine() << ':' << file.getColumn() << ": ";
  }
  switch (severity) {
  case DiagnosticSeverity::Error:
    llvm::WithColor::error(os, "");
    break;
  case DiagnosticSeverity::Warning:
    llvm::WithColor::warning(os, "");
    break;
  case DiagnosticSeverity::Note:
    llvm::WithColor::note(os, "");
    break;
  case DiagnosticSeverity::Remark:
    llvm::WithColor::remark(os, "");
    break;
  }
  llvm::WithColor(os, llvm::raw_ostream::SAVEDCOLOR, true, false, mode)
      << message << '\n';
  unsigned byteColumn = file.getColumn() > 0 ? file.getColumn() - 1 : 0;
  auto [shown, caret] = displayLine(*line, byteColumn);
  os << shown << '\n';
  llvm::WithColor(os, llvm::raw_ostream::GREEN, true, false, mode)
      << std::string(caret, ' ') << "^\n";
  return true;
}
