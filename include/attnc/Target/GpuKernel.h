//===- GpuKernel.h - Compiling and running a variant on an NVIDIA GPU -----===//
//
// Compiles one attn.variant to PTX (convert-attn-to-gpu-kernel, the NVVM
// lowering and gpu-module-to-binary{format=isa}; no CUDA toolkit), loads
// the PTX through the CUDA driver (CudaDriver.h) and launches it on device
// memory: one block of tile-q threads per (b, h, q-tile), B * H *
// ceil(Lq / tile-q) blocks, the last q-tiles first; a data-dependent mask's
// mark kernel (kMarkKernelAttr) runs first on the same stream. Arguments
// are checked and packed exactly as for CPU kernels (KernelLaunch.h); the
// status words and the marks buffer live in device memory.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_GPUKERNEL_H
#define ATTNC_TARGET_GPUKERNEL_H

#include "attnc/Target/CudaDriver.h"
#include "attnc/Target/KernelLaunch.h"
#include "attnc/Target/Signature.h"

#include "mlir/IR/BuiltinOps.h"

#include <memory>
#include <mutex>
#include <string>

namespace attnc {

struct GpuCompileOptions {
  DType elementType = DType::F16; // F16, BF16 or F32
  int64_t headDim = 64, valueDim = 64;
  /// simt: rows per block = threads per block (the mma kernel's shape is
  /// fixed by MMAKernelConfig.h).
  int64_t tileQ = 128;
  int64_t tileKV = 0;          // keys per kv-tile; 0: the compiler's choice
  std::string kernel = "auto"; // auto, mma (tensor cores) or simt
  std::string chip = "sm_80";
  /// A persistent wgmma kernel for data-dependent masks where it fits
  /// (ATTN_GPU_PERSISTENT=1); false: never.
  bool persistent = false;
  /// Data-dependent masks: a mark kernel works out the live kv-tiles once
  /// per launch (ATTN_GPU_MARK_KERNEL=0 turns it off).
  bool markKernel = true;
  std::string describe() const;
};

struct GpuArtifact {
  KernelSignature signature;
  GpuCompileOptions options;
  /// The launch configuration the compiler chose (resolveGpuKernel).
  std::string kernel; // "mma", "wgmma" or "simt"
  int64_t rowsPerBlock = 0, threadsPerBlock = 0, sharedBytes = 0;
  /// The kernel loops over its work items (kPersistentAttr): the launcher
  /// starts at most as many blocks as fit on the GPU at once.
  bool persistent = false;
  /// The mark kernel that runs first on the same arguments (empty: none;
  /// kMarkKernelAttr): its dynamic shared memory, whether its items differ
  /// in b and in h, and the i32 words it writes per item.
  std::string markKernel;
  int64_t markSharedBytes = 0, markWords = 0;
  bool marksPerBatch = false, marksPerHead = false;
  std::string ptx;
};

class GpuKernel {
public:
  ~GpuKernel();
  /// Lowers the variant named `name` in `module` (which it modifies) to PTX.
  static bool compileToPtx(mlir::ModuleOp module, const std::string &name,
                           const GpuCompileOptions &options, GpuArtifact &out,
                           std::string &error);
  /// Loads the PTX into device 0's primary context.
  static std::unique_ptr<GpuKernel> load(const GpuArtifact &artifact,
                                         std::string &error);

  const KernelSignature &signature() const { return art.signature; }
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
  GpuArtifact art;
  cuda::Driver *driver = nullptr;
  cuda::CUmodule module = nullptr;
  cuda::CUfunction function = nullptr;
  cuda::CUfunction markFunction = nullptr; // art.markKernel's
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
