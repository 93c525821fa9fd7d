//===- Backend.h - What the one compile path asks of a target -------------===//
//
// Private to the runtime. Runtime::compile does the same for every kernel
// (Runtime.cpp): the options checked, the memory by text, the front end
// and the key, the memory by key, one thread per key (the others wait for
// its result), the key's file lock, the disk entry (a damaged one dropped),
// else a compile and the store. What differs between targets and kernel
// kinds is a Backend's:
//
//   makeBackend  checks the options (no front end yet) and says what the
//                key and the manifest record of them: optionsText,
//                targetText;
//   compile      a front end's module (the one variant) into what a cache
//                entry stores: the signature's, the plan's and the code's
//                bytes (encode);
//   load         such an entry, just compiled or read from disk, into a
//                runnable kernel (decode, load), saying whether a failure
//                means the entry is damaged.
//
// A new kernel kind (a backward kernel, say) is a KernelKind, its name in
// the key, and the backends' compile and load for it; the rest of the path
// (keys, memory, single-flight, disk, corruption, counters) is shared.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_RUNTIME_BACKEND_H
#define ATTN_RUNTIME_BACKEND_H

#include "DiskCache.h"
#include "FrontEnd.h"
#include "RuntimeInternal.h"

#include <memory>
#include <string>

namespace attn::detail {

/// What a kernel computes.
enum class KernelKind {
  Forward, // O (and LSE) of the attention variant
};
/// The kind's name in keys: "forward".
const char *kernelKindName(KernelKind kind);

using KernelPtr = std::shared_ptr<const Kernel::Impl>;

class Backend {
public:
  virtual ~Backend() = default;

  KernelKind kind() const { return kind_; }
  /// What the options change in the code (the key, the manifest's
  /// `options`): "dtype=f32 lowering=tiled d=64 ...".
  virtual std::string optionsText() const = 0;
  /// The machine the code is for (the key, the manifest's `target`): the
  /// host's triple, CPU and features, or "nvptx sm_90".
  virtual std::string targetText() const = 0;
  /// Compiles the keyed module's variant (the module's only op) into what
  /// a cache entry stores: `out.signature`, `out.plan` and `out.object`.
  virtual Status compile(KeyedModule &keyed, StoredKernel &out,
                         std::string &error) = 0;
  /// The kernel of a stored entry (just compiled, or read from disk) for
  /// `key`. On failure `corrupt` says whether the entry cannot be what it
  /// claims (the caller drops it and compiles again).
  virtual Status load(const std::string &key, const StoredKernel &stored,
                      KernelPtr &out, std::string &error, bool &corrupt) = 0;

protected:
  KernelKind kind_ = KernelKind::Forward;
};

/// The backend of `options`' target with the options checked (no front end
/// yet); a status and `error` when they cannot be honoured (Unavailable: an
/// nvptx kernel for device 0 where there is no CUDA driver).
Status makeBackend(const CompileOptions &options, std::unique_ptr<Backend> &out,
                   std::string &error);
/// The two backends (CpuBackend.cpp, GpuBackend.cpp).
Status makeCpuBackend(const CompileOptions &options,
                      std::unique_ptr<Backend> &out, std::string &error);
Status makeGpuBackend(const CompileOptions &options,
                      std::unique_ptr<Backend> &out, std::string &error);

} // namespace attn::detail

#endif // ATTN_RUNTIME_BACKEND_H
