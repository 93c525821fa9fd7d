//===- CpuKernel.h - Compiling and running a variant on the host CPU ------===//
//
// Compiles one attn.variant to a relocatable object for the host CPU
// (through the pipelines, LLVM's O2 pipeline and code generator; see
// HostObject.h) and runs it on strided tensor views after checking every
// shape, dtype and parameter (KernelLaunch.h). Compiling and loading are
// separate steps: `compileToObject` yields an MLIR-free CpuArtifact
// (signature, options, object bytes) that can be stored, and `load` turns
// one back into a runnable kernel without MLIR, passes or code generation.
// Errors come back as one line in user terms.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_CPUKERNEL_H
#define ATTNC_TARGET_CPUKERNEL_H

#include "attnc/Target/HostObject.h"
#include "attnc/Target/KernelLaunch.h"
#include "attnc/Target/Signature.h"
#include "attnc/Target/TiledLaunch.h"

#include "mlir/IR/BuiltinOps.h"

#include <memory>
#include <string>

namespace attnc {

struct CpuCompileOptions {
  DType elementType = DType::F32; // F32 or F16
  /// The reference loop lowering (single-threaded, any head dims) instead of
  /// the tiled, vectorised, multi-threaded kernel.
  bool reference = true;
  /// Tiled kernels only: the head dims they are specialised for (required),
  /// the tile sizes, and the f32 lanes per vector (0: from the host CPU,
  /// 16 with AVX-512, else 8).
  int64_t headDim = 0, valueDim = 0;
  int64_t tileQ = 128, tileKV = 64;
  int vectorWidth = 0;
  /// The backward pass (attn-differentiate, then the backward lowering):
  /// the kernel computes gradients (CpuKernel::launchBackward) instead of O.
  /// The tiled backward kernel takes tileQ and tileKV like the forward
  /// (64 x 64 is what attnc and the runtime choose for it).
  bool backward = false;

  /// "dtype=f32 lowering=reference": what the options change in the code,
  /// for cache keys and manifests.
  std::string describe() const;
  /// The kernel these options build, for people (attnc --emit=plan,
  /// attn::Kernel::plan()), with `why` it was chosen.
  std::string explain(const std::string &why) const;
};

/// A compiled variant, free of MLIR: what is stored in the kernel cache.
/// Tiled kernels keep their Q, S and O tiles on the stack of the worker
/// threads; head dims beyond this use the reference kernel (Auto) or are
/// rejected (explicit tiling), and a tiling whose tiles exceed
/// kMaxTiledStackBytes is rejected, so that no shape can overflow a stack.
constexpr int64_t kMaxTiledHeadDim = 512;
constexpr int64_t kMaxTiledStackBytes = 2 << 20;
/// Rows of a tiled kernel's register blocks: tileQ is a multiple of it.
constexpr int64_t kTiledRowsPerBlock = 4;

struct CpuCompileOptions;
/// Why `options` cannot build a tiled kernel (head dims unknown or too wide,
/// tiles not in whole blocks of rows and vectors of keys, or too large), or
/// "" when they can. The tilings it accepts do not depend on the host.
std::string tiledOptionsError(const CpuCompileOptions &options);

/// f32 lanes per vector for tiled kernels: `requested` if positive, else
/// $ATTN_CPU_VECTOR_WIDTH (8 or 16; for tests), else 16 on hosts with
/// AVX-512 and 8 elsewhere.
int hostVectorWidth(int requested);

struct CpuArtifact {
  KernelSignature signature;
  CpuCompileOptions options;
  std::string object; // ELF relocatable object for the host (HostObject.h)
};

class CpuKernel {
public:
  ~CpuKernel();

  /// Lowers the variant named `name`, the only op of `module` (see
  /// keepOnlyVariant; the module is lowered in place to the LLVM dialect),
  /// and emits an object for HostTarget::native().
  static bool compileToObject(mlir::ModuleOp module, const std::string &name,
                              const CpuCompileOptions &options,
                              CpuArtifact &out, std::string &error);

  /// Loads an object made by compileToObject; runs no MLIR or LLVM passes.
  static std::unique_ptr<CpuKernel> load(const KernelSignature &signature,
                                         const std::string &object,
                                         const CpuCompileOptions &options,
                                         std::string &error);

  /// compileToObject + load.
  static std::unique_ptr<CpuKernel> compile(mlir::ModuleOp module,
                                            const std::string &name,
                                            const CpuCompileOptions &options,
                                            std::string &error);

  const KernelSignature &signature() const { return sig; }
  const CpuCompileOptions &compileOptions() const { return options; }

  /// Checks `args` against the signature and runs the kernel. On failure
  /// returns false with a one-line `error`; outputs are then unspecified.
  bool run(const RunArgs &args, std::string &error) const {
    return launch(args, error) == LaunchStatus::Ok;
  }
  /// The same, telling rejected arguments from errors the kernel reported.
  LaunchStatus launch(const RunArgs &args, std::string &error) const;

  /// Backward kernels (CpuCompileOptions::backward): checks `args` and writes
  /// dQ, dK, dV and the requested param gradients.
  LaunchStatus launchBackward(const BackwardRunArgs &args,
                              std::string &error) const;

private:
  CpuKernel() = default;
  KernelSignature sig;
  CpuCompileOptions options;
  std::unique_ptr<LoadedObject> object;
  PackedKernelFn entry = nullptr;     // _mlir_<sig.name>, or _mlir_<name>_bwd
  PackedKernelFn rowsEntry = nullptr; // tiled backward: _mlir_<name>_bwd_rows
};

} // namespace attnc

#endif // ATTNC_TARGET_CPUKERNEL_H
