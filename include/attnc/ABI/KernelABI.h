//===- KernelABI.h - How host code calls a generated attention kernel -----===//
//
// The contract between the lowerings that generate kernel functions and the
// host code that calls them: argument order and the run-time status word.
//
// Arguments, in order: Q, K, V, O (strided rank-4 memrefs of the element
// type), LSE (strided rank-3 f32 memref), each runtime (non-const) parameter
// in declaration order (a tensor as a strided memref of f32, i32, or i8 for
// bool; a scalar as f32 or i32, bool as i32), the flag word, the status
// memref (kStatusWords x i32).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_ABI_KERNELABI_H
#define ATTNC_ABI_KERNELABI_H

#include <cstdint>

namespace attnc {

/// Bits of the flag word. kFlagVectorO: O has a unit inner stride, 16-byte
/// aligned data and strides of whole 16-byte units (the strides of
/// dimensions of size 1 aside), so a kernel may write it in 16-byte vectors
/// (the tensor-core GPU kernel does, through shared memory); kernels that
/// write element by element ignore it.
enum KernelFlags : int32_t { kFlagWriteLSE = 1, kFlagVectorO = 2 };

/// Codes in status[0]. An index error fills status[1..4] with the ordinal
/// of the runtime parameter, the dimension, the index and the size. Tiled
/// kernels count in status[5] the kv-tiles they computed and in status[6]
/// the kv-tiles inside their closed-form ranges (the rest were skipped by
/// loop bounds).
enum KernelStatus : int32_t {
  kStatusOk = 0,
  kStatusIndexOutOfRange = 1,
  kStatusDivisionByZero = 2,
};
constexpr int kStatusWords = 8;
constexpr int kStatusTilesComputed = 5;
constexpr int kStatusTilesInRange = 6;

} // namespace attnc

#endif // ATTNC_ABI_KERNELABI_H
