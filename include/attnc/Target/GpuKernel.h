//===- GpuKernel.h - Compiling and running a variant on an NVIDIA GPU -----===//
//
// Compiles one attn.variant to PTX: the kernel that planGpuKernel chooses
// (GpuKernelPlan), through the GPU pipelines and
// gpu-module-to-binary{format=isa} (no CUDA toolkit). Loads the PTX through
// the CUDA driver (CudaDriver.h) and launches it on device memory as its
// plan says: one block per (b, h, q-tile) work item (or as many as fit on
// the GPU, for a persistent kernel), the last q-tiles first; a
// data-dependent mask's mark kernel runs first on the same stream.
// Arguments are checked and packed exactly as for CPU kernels
// (KernelLaunch.h); the status words and the marks buffer live in device
// memory.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_GPUKERNEL_H
#define ATTNC_TARGET_GPUKERNEL_H

#include "attnc/ABI/GpuKernelPlan.h"
#include "attnc/Conversion/GpuKernelPlanner.h"
#include "attnc/Target/CudaDriver.h"
#include "attnc/Target/KernelLaunch.h"
#include "attnc/Target/Signature.h"

#include "mlir/IR/BuiltinOps.h"

#include <memory>
#include <mutex>
#include <string>

namespace attnc {

/// A compiled variant, free of MLIR: what the kernel cache stores (the
/// signature's and the plan's text forms beside the PTX).
struct GpuArtifact {
  KernelSignature signature;
  GpuKernelPlan plan;
  std::string ptx;
};

class GpuKernel {
public:
  ~GpuKernel();
  /// Plans the kernel of the variant named `name`, the only op of `module`
  /// (see keepOnlyVariant), for `options` (planGpuKernel) and lowers it
  /// (in place) to PTX. Options the planner rejects: false with its message and
  /// `invalidOptions` set; other failures are internal errors.
  static bool compileToPtx(mlir::ModuleOp module, const std::string &name,
                           const GpuKernelOptions &options, GpuArtifact &out,
                           std::string &error, bool *invalidOptions = nullptr);
  /// Loads the PTX into device 0's primary context.
  static std::unique_ptr<GpuKernel> load(const GpuArtifact &artifact,
                                         std::string &error);
  /// A kernel whose PTX loads at its first launch: compiled for a given
  /// chip where there is no CUDA driver, it can be kept and described; a
  /// launch without a driver reports LaunchStatus::Unavailable.
  static std::unique_ptr<GpuKernel> deferred(const GpuArtifact &artifact);

  const KernelSignature &signature() const { return art.signature; }
  const GpuKernelPlan &plan() const { return art.plan; }
  const std::string &ptx() const { return art.ptx; }

  /// Runs on tensors in device memory (TensorView::data are device
  /// pointers) on `stream` (null: the default stream) and waits for it,
  /// or with args.async only queues the launch (see RunArgs::async). A
  /// synchronous launch, or an asynchronous one on another stream than the
  /// pending ones, first waits for those and reports what they found.
  LaunchStatus launch(const RunArgs &args, void *stream, std::string &error);
  /// With asynchronous launches pending: waits for the context's work and
  /// reports an error that the kernel found in them (the last one written,
  /// if several), once. Without: returns Ok at once.
  LaunchStatus synchronize(std::string &error);

private:
  GpuKernel() = default;
  /// Loads the module and looks up its kernels, once (a deferred kernel
  /// at its first launch); false with `error` where it cannot.
  bool loadModule(std::string &error);
  GpuArtifact art;
  std::mutex loadMutex;
  bool loaded = false;
  cuda::Driver *driver = nullptr;
  cuda::CUmodule module = nullptr;
  cuda::CUfunction function = nullptr;
  cuda::CUfunction markFunction = nullptr; // the mark kernel's
  /// The mark kernel's output (the last argument of both kernels), grown
  /// as problems need; launches of one kernel share it (their order on
  /// one stream, and the wait for other streams' runs, keep a run's marks
  /// from being overwritten before its attention kernel reads them).
  cuda::DeviceBuffer marks;
  /// Persistent kernels: the blocks that fit on the GPU at once.
  int64_t residentBlocks = 1;
  /// Launched as programmatic dependents of the kernel before them on the
  /// stream: wgmma kernels whose PTX waits for it (griddepcontrol.wait),
  /// where the driver has cuLaunchKernelEx.
  bool dependentLaunch = false;
  /// The status words in device memory, allocated at the first launch and
  /// reused; launches of one kernel are serialised on this mutex.
  std::mutex launchMutex;
  cuda::DeviceBuffer status;
  /// Asynchronous launches since the status words were last read: their
  /// errors accumulate there (the words are cleared only when read).
  bool pendingAsync = false;
  void *pendingStream = nullptr; // the stream of the pending launches
  /// The caller holds launchMutex.
  LaunchStatus readPending(std::string &error);
};

} // namespace attnc

#endif // ATTNC_TARGET_GPUKERNEL_H
