//===- Hash.h - SHA-256 in hex (private to the runtime) -------------------===//
#ifndef ATTN_RUNTIME_HASH_H
#define ATTN_RUNTIME_HASH_H

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/SHA256.h"

#include <string>

namespace attn::detail {

/// SHA-256 of `data` as 64 lower-case hex digits.
inline std::string sha256Hex(const std::string &data) {
  std::array<uint8_t, 32> digest = llvm::SHA256::hash(llvm::ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(data.data()), data.size()));
  return llvm::toHex(digest, /*LowerCase=*/true);
}

} // namespace attn::detail

#endif // ATTN_RUNTIME_HASH_H
