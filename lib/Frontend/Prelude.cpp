//===- Prelude.cpp - The standard prelude of the .attn language -----------===//
//
// Holds prelude.attn, embedded as a raw string literal by the build
// (EmbedPrelude.cmake), and adds it to a SourceMgr once.
//
//===----------------------------------------------------------------------===//
#include "attnc/Frontend/Prelude.h"

#include "llvm/Support/MemoryBuffer.h"

using namespace attnc;

llvm::StringRef attnc::getPreludeSource() {
  static const char *const text =
#include "Prelude.inc"
      ;
  return text;
}

unsigned attnc::loadPrelude(llvm::SourceMgr &sm) {
  for (unsigned id = 1, e = sm.getNumBuffers(); id <= e; ++id)
    if (sm.getMemoryBuffer(id)->getBufferIdentifier() == kPreludeBufferName)
      return id;
  return sm.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBuffer(getPreludeSource(), kPreludeBufferName),
      llvm::SMLoc());
}
