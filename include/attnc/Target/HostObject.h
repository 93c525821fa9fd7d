//===- HostObject.h - Native objects for the host CPU and loading them ----===//
//
// Turns a module in the LLVM dialect into a relocatable object for the host
// CPU, and loads such an object into the process with LLVM's ORC LLJIT.
// Every externally visible function `F` of the module gets a packed entry
// point `void _mlir_F(void **args)` (the wrapper MLIR's ExecutionEngine
// generates: args[i] points at the i-th argument, args[n] at the result);
// `F` itself becomes internal, so the entry points are the only symbols an
// object defines. Objects are position independent: the same bytes are
// loaded by the JIT (kernel cache) and linked into programs ahead of time.
//
// The header is free of MLIR and LLVM types except for the module handed to
// emitHostObject.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_HOSTOBJECT_H
#define ATTNC_TARGET_HOSTOBJECT_H

#include <memory>
#include <string>

namespace mlir {
class ModuleOp;
}

namespace attnc {

/// What code is generated for: LLVM's target triple, CPU name and feature
/// string. Part of every kernel cache key.
struct HostTarget {
  std::string triple;
  std::string cpu;
  std::string features; // "+avx2,+fma,-avx512f,...", sorted

  /// The CPU this process runs on.
  static const HostTarget &native();
  /// "x86_64-pc-linux-gnu, cpu znver3, features +adx,..."
  std::string describe() const;
};

/// The name of the packed entry point of function `name`: "_mlir_<name>".
std::string packedEntryName(const std::string &name);

/// Translates `module` (LLVM dialect only) to LLVM IR, adds the packed entry
/// points, runs LLVM's O2 pipeline and emits an ELF relocatable object for
/// `target` into `object`. On failure returns false with a one-line `error`.
bool emitHostObject(mlir::ModuleOp module, const HostTarget &target,
                    std::string &object, std::string &error);

/// An object loaded into this process; unloaded when destroyed. Undefined
/// symbols (libm, libc) resolve against the process. Thread-safe.
class LoadedObject {
public:
  ~LoadedObject();

  /// Loads the bytes of a relocatable object made by emitHostObject for
  /// HostTarget::native(). `label` names it in errors.
  static std::unique_ptr<LoadedObject>
  load(const std::string &object, const std::string &label, std::string &error);

  /// The address of symbol `name`, or null with `error` set.
  void *lookup(const std::string &name, std::string &error) const;

private:
  LoadedObject() = default;
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace attnc

#endif // ATTNC_TARGET_HOSTOBJECT_H
