//===- RuntimeInternal.h - Shared between the runtime's .cpp files --------===//
#ifndef ATTN_RUNTIME_RUNTIMEINTERNAL_H
#define ATTN_RUNTIME_RUNTIMEINTERNAL_H

#include "attn/attn.hpp"

#include "attnc/Target/CpuKernel.h"
#include "attnc/Target/GpuKernel.h"

#include <memory>
#include <string>

namespace attn {

struct Kernel::Impl {
  Signature signature;
  std::string key;
  std::string plan;                      // Kernel::plan()
  std::unique_ptr<attnc::CpuKernel> cpu; // target cpu
  std::unique_ptr<attnc::GpuKernel> gpu; // target nvptx
};

namespace detail {

attnc::DType toInternal(DType d);
DType fromInternal(attnc::DType d);
Signature publicSignature(const attnc::KernelSignature &s, DType dtype);
/// Converts the public arguments and runs the kernel.
Status runKernel(const Kernel::Impl &k, const RunArgs &args,
                 std::string &error);
Status readSourceFile(const std::string &path, std::string &source,
                      std::string &error);

} // namespace detail
} // namespace attn

#endif // ATTN_RUNTIME_RUNTIMEINTERNAL_H
