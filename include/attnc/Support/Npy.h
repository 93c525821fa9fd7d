//===- Npy.h - Reading and writing NumPy .npy files -------------*- C++ -*-===//
//
// The tensor exchange format of `attnc run` and the runtime: C-contiguous,
// little-endian .npy files (format versions 1.0, 2.0 and 3.0) holding float32,
// float16, int32 or bool elements. The reader never trusts the file: every
// header field is bounds-checked and every failure is reported as one line in
// user terms, prefixed with the file's name. Plain C++17, no MLIR/LLVM types.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_SUPPORT_NPY_H
#define ATTNC_SUPPORT_NPY_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace attnc {

class AtomicFile;

/// Element types a .npy file may hold.
enum class DType { F32, F16, I32, Bool, BF16 };

/// NumPy's name of a dtype: "float32", "float16", "int32", "bool".
const char *dtypeName(DType dtype);

/// Bytes per element: 4, 2, 4, 1.
int64_t dtypeSize(DType dtype);

/// The .npy descr string the writer uses: "<f4", "<f2", "<i4", "|b1".
const char *dtypeDescr(DType dtype);

/// A dense, C-contiguous array with its raw little-endian element bytes.
/// Bool elements are stored as one byte each, 0 or 1.
struct NpyArray {
  DType dtype = DType::F32;
  std::vector<int64_t> shape; // empty for a 0-d array (one element)
  std::vector<uint8_t> data;  // numel() * dtypeSize(dtype) bytes

  int64_t numel() const;
};

/// Formats a shape the way NumPy prints it: "()", "(3,)", "(2, 3)".
std::string formatShape(const std::vector<int64_t> &shape);

/// Reads `path`. On failure returns false and sets `error` to one line naming
/// the file, e.g. "Q.npy: Fortran-order arrays are not supported".
bool readNpy(const std::string &path, NpyArray &out, std::string &error);

/// Parses an in-memory .npy image; `name` prefixes diagnostics. Used by
/// readNpy's tests and the fuzzer; never reads outside [bytes, bytes + size).
bool parseNpy(const std::string &name, const uint8_t *bytes, size_t size,
              NpyArray &out, std::string &error);

/// Writes `arr` as a version 1.0 file (2.0 if the header would not fit) whose
/// header is padded so that the data starts at a multiple of 64 bytes; the
/// file appears whole or not at all (AtomicFile).
bool writeNpy(const std::string &path, const NpyArray &arr, std::string &error);

/// Writes the bytes of `arr` (as writeNpy does) into an open `file`, which
/// the caller commits.
bool writeNpy(AtomicFile &file, const NpyArray &arr, std::string &error);

/// The bytes writeNpy writes for `arr`; false if `arr` is inconsistent.
bool serializeNpy(const NpyArray &arr, std::vector<uint8_t> &bytes,
                  std::string &error);

} // namespace attnc

#endif // ATTNC_SUPPORT_NPY_H
