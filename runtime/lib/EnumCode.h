//===- EnumCode.h - The int a C caller passed for an enum -------*- C++ -*-===//
//
// C lets a caller pass any int where the C API takes an enum (an
// attn_target of 7, a dtype code from a corrupt descriptor), but in C++
// reading such a value as the enum type is undefined. The C API reads the
// bits as an int instead, and then compares them with the enumerators.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_RUNTIME_ENUMCODE_H
#define ATTN_RUNTIME_ENUMCODE_H

#include <cstring>

namespace attn::detail {

template <typename E> int enumCode(const E &value) {
  static_assert(sizeof(E) == sizeof(int), "the C API's enums are ints");
  int code;
  std::memcpy(&code, &value, sizeof code);
  return code;
}

} // namespace attn::detail

#endif // ATTN_RUNTIME_ENUMCODE_H
