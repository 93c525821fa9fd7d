//===- GpuBackend.cpp - Kernels for NVIDIA GPUs ---------------------------===//
//
// The runtime's nvptx backend (Backend.h): the kernel that planGpuKernel
// chooses for the options and the chip (the given arch, else device 0's),
// compiled to PTX in memory, stored with its signature and its plan (the
// entry's plan slot), loaded through the CUDA driver: for device 0 at
// once; with an arch given at the kernel's first launch
// (GpuKernel::deferred), so that no driver is needed until it runs.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"

#include "attnc/Target/GpuKernel.h"

using namespace attn;
using namespace attn::detail;

namespace {

/// The compiler's GPU options for `o` (the chip aside).
attnc::GpuKernelOptions gpuKernelOptions(const CompileOptions &o) {
  attnc::GpuKernelOptions g;
  g.elementType = toInternal(o.dtype);
  g.headDim = o.headDim;
  g.valueDim = o.valueDim;
  if (o.tiling.mode == Tiling::Mode::Fixed && o.tiling.blockQ > 0)
    g.tileQ = o.tiling.blockQ;
  if (o.tiling.mode == Tiling::Mode::Fixed && o.tiling.blockKV > 0)
    g.tileKV = o.tiling.blockKV;
  switch (o.gpu.kernel) {
  case GpuOptions::Kernel::Auto:
    break;
  case GpuOptions::Kernel::Mma:
    g.kernel = attnc::GpuKernelKind::MmaSync;
    break;
  case GpuOptions::Kernel::Wgmma:
    g.kernel = attnc::GpuKernelKind::Wgmma;
    break;
  case GpuOptions::Kernel::Simt:
    g.kernel = attnc::GpuKernelKind::Simt;
    break;
  }
  g.persistent = o.gpu.persistent;
  g.markKernel = o.gpu.markKernel;
  return g;
}

class GpuBackend : public Backend {
public:
  GpuBackend(attnc::GpuKernelOptions g, DType dtype, bool deferLoad)
      : g(std::move(g)), dtype(dtype), deferLoad(deferLoad) {}

  std::string optionsText() const override { return g.describe(); }
  std::string targetText() const override { return "nvptx " + g.chip; }

  Status compile(KeyedModule &keyed, StoredKernel &out,
                 std::string &error) override {
    attnc::GpuArtifact artifact;
    bool invalidOptions = false;
    if (!attnc::GpuKernel::compileToPtx(*keyed.module, keyed.variant, g,
                                        artifact, error, &invalidOptions))
      return invalidOptions ? Status::InvalidArgument : Status::Internal;
    out.signature = artifact.signature.toText();
    out.plan = artifact.plan.toText();
    out.object = std::move(artifact.ptx);
    return Status::Ok;
  }

  Status load(const std::string &key, const StoredKernel &stored,
              KernelPtr &out, std::string &error, bool &corrupt) override {
    // The entry's texts back: a damaged one is the entry's fault.
    attnc::GpuArtifact artifact;
    corrupt = true;
    if (!attnc::KernelSignature::fromText(stored.signature, artifact.signature,
                                          error) ||
        !attnc::GpuKernelPlan::fromText(stored.plan, artifact.plan, error))
      return Status::Internal;
    if (stored.object.empty()) {
      error = "the entry holds no PTX";
      return Status::Internal;
    }
    artifact.ptx = stored.object;
    corrupt = false;
    // For device 0: loaded now (its errors are this call's). For a given
    // arch, at the first launch: there may be no driver here, or another
    // GPU than the one the kernel is for.
    auto kernel = std::make_shared<Kernel::Impl>();
    kernel->gpu = deferLoad ? attnc::GpuKernel::deferred(artifact)
                            : attnc::GpuKernel::load(artifact, error);
    if (!kernel->gpu)
      return Status::Unavailable;
    kernel->key = key;
    kernel->signature = publicSignature(artifact.signature, dtype);
    kernel->signature.target = Target::NVPTX;
    kernel->plan = artifact.plan.describe();
    out = std::move(kernel);
    return Status::Ok;
  }

private:
  attnc::GpuKernelOptions g;
  DType dtype;
  bool deferLoad; // an arch was given
};

} // namespace

Status attn::detail::makeGpuBackend(const CompileOptions &options,
                                    std::unique_ptr<Backend> &out,
                                    std::string &error) {
  attnc::GpuKernelOptions g = gpuKernelOptions(options);
  if (options.gpu.arch.empty()) {
    // Device 0's chip: without a driver there is none to compile for.
    attnc::cuda::Driver *driver = attnc::cuda::Driver::get(error);
    if (!driver) {
      error += " (give the GPU arch, e.g. sm_90, to compile without one)";
      return Status::Unavailable;
    }
    g.chip = driver->chip();
  } else if (!attnc::isSupportedGpuChip(options.gpu.arch)) {
    error = "the GPU arch must be sm_80 or later (sm_80, sm_90, ...), not '" +
            options.gpu.arch + "'";
    return Status::InvalidArgument;
  } else {
    g.chip = options.gpu.arch;
  }
  if (options.dtype != DType::F32 && options.dtype != DType::F16 &&
      options.dtype != DType::BF16) {
    error = std::string("nvptx kernels take float32, float16 or bfloat16 Q, "
                        "K and V, not ") +
            dtypeName(options.dtype);
    return Status::InvalidArgument;
  }
  if (options.headDim <= 0 || options.valueDim <= 0) {
    error = "nvptx kernels are specialised for the head dims: set "
            "CompileOptions::headDim and valueDim";
    return Status::InvalidArgument;
  }
  if (options.tiling.mode == Tiling::Mode::Reference) {
    error = "the nvptx target has no reference kernel; use the cpu target";
    return Status::InvalidArgument;
  }
  // What the options ask for, checked before the front end runs (the
  // variant only decides persistence and the mark kernel).
  attnc::GpuKernelPlan plan;
  if (!attnc::planGpuKernel(attnc::GpuVariantTraits(), g, plan, error))
    return Status::InvalidArgument;
  out = std::make_unique<GpuBackend>(std::move(g), options.dtype,
                                     !options.gpu.arch.empty());
  return Status::Ok;
}
