//===- CpuKernel.h - Compiling and running a variant on the host CPU ------===//
//
// Compiles one attn.variant to native code in process (through MLIR's
// ExecutionEngine on LLVM's ORC JIT, for the host CPU's features) and runs
// it on strided tensor views after checking every shape, dtype and
// parameter. Errors come back as one line in user terms.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_CPUKERNEL_H
#define ATTNC_TARGET_CPUKERNEL_H

#include "attnc/Target/Signature.h"

#include "mlir/IR/BuiltinOps.h"

#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace mlir {
class ExecutionEngine;
}

namespace attnc {

/// A view of a strided tensor in host memory; strides count elements.
struct TensorView {
  void *data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  /// A C-contiguous view of `shape`.
  static TensorView contiguous(void *data, DType dtype,
                               std::vector<int64_t> shape);
};

/// A scalar parameter value; bools and ints are exact in the double.
struct ScalarValue {
  double value = 0;
};

using ParamArg = std::variant<ScalarValue, TensorView>;

struct RunArgs {
  TensorView q, k, v, o;
  std::optional<TensorView> lse; // [B, H, Lq] float32
  std::map<std::string, ParamArg> params;
};

struct CompileOptions {
  DType elementType = DType::F32; // F32 or F16
  bool reference = true;          // the reference loop lowering
};

class CpuKernel {
public:
  ~CpuKernel();

  /// Compiles the variant named `name` in `module` (which it may modify).
  static std::unique_ptr<CpuKernel> compile(mlir::ModuleOp module,
                                            const std::string &name,
                                            const CompileOptions &options,
                                            std::string &error);

  const KernelSignature &signature() const { return sig; }

  /// Checks `args` against the signature and runs the kernel. On failure
  /// returns false with a one-line `error`; outputs are then unspecified.
  bool run(const RunArgs &args, std::string &error) const;

private:
  CpuKernel() = default;
  KernelSignature sig;
  CompileOptions options;
  std::unique_ptr<mlir::ExecutionEngine> engine;
};

} // namespace attnc

#endif // ATTNC_TARGET_CPUKERNEL_H
