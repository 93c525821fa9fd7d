//===- CpuBackend.cpp - Kernels for the host CPU --------------------------===//
//
// The runtime's CPU backend (Backend.h): the reference kernel or the tiled
// one as the options ask (Tiling), compiled to a relocatable object for the
// host (CpuKernel::compileToObject), stored with its signature, loaded by
// the process-wide JIT.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"

#include "attnc/Target/CpuKernel.h"

using namespace attn;
using namespace attn::detail;

namespace {

class CpuBackend : public Backend {
public:
  CpuBackend(attnc::CpuCompileOptions copts, std::string why, DType dtype)
      : copts(std::move(copts)), why(std::move(why)), dtype(dtype) {}

  std::string optionsText() const override { return copts.describe(); }
  std::string targetText() const override {
    return attnc::HostTarget::native().describe();
  }

  Status compile(KeyedModule &keyed, StoredKernel &out,
                 std::string &error) override {
    attnc::CpuArtifact artifact;
    if (!attnc::CpuKernel::compileToObject(*keyed.module, keyed.variant, copts,
                                           artifact, error))
      return Status::Internal;
    out.signature = artifact.signature.toText();
    out.object = std::move(artifact.object);
    return Status::Ok;
  }

  Status load(const std::string &key, const StoredKernel &stored,
              KernelPtr &out, std::string &error, bool &corrupt) override {
    corrupt = true; // whatever does not load here is the entry's fault
    attnc::KernelSignature sig;
    if (!attnc::KernelSignature::fromText(stored.signature, sig, error))
      return Status::Internal;
    auto kernel = std::make_shared<Kernel::Impl>();
    kernel->cpu = attnc::CpuKernel::load(sig, stored.object, copts, error);
    if (!kernel->cpu) {
      error = "the object does not load: " + error;
      return Status::Internal;
    }
    kernel->key = key;
    kernel->signature = publicSignature(sig, dtype);
    kernel->plan = copts.explain(why);
    out = std::move(kernel);
    corrupt = false;
    return Status::Ok;
  }

private:
  attnc::CpuCompileOptions copts;
  std::string why; // the choice of kernel, for Kernel::plan()
  DType dtype;
};

} // namespace

Status attn::detail::makeCpuBackend(const CompileOptions &options,
                                    std::unique_ptr<Backend> &out,
                                    std::string &error) {
  if (options.dtype != DType::F32 && options.dtype != DType::F16) {
    error =
        std::string("cpu kernels take float32 or float16 Q, K and V, "
                    "not ") +
        dtypeName(options.dtype) +
        (options.dtype == DType::BF16 ? " (bfloat16 runs on the nvptx target)"
                                      : "");
    return Status::InvalidArgument;
  }
  attnc::CpuCompileOptions copts;
  copts.elementType = toInternal(options.dtype);
  if (options.headDim < 0 || options.valueDim < 0) {
    error = "head dims must be positive (or 0 for unknown), got D = " +
            std::to_string(options.headDim) +
            ", Dv = " + std::to_string(options.valueDim);
    return Status::InvalidArgument;
  }
  bool dimsKnown = options.headDim > 0 && options.valueDim > 0;
  std::string why; // Kernel::plan()
  switch (options.tiling.mode) {
  case Tiling::Mode::Auto:
    // The tiled kernel when it applies; very wide heads use the reference.
    copts.reference = !dimsKnown || options.headDim > attnc::kMaxTiledHeadDim ||
                      options.valueDim > attnc::kMaxTiledHeadDim;
    why = !dimsKnown ? "auto: the head dims are not given (the tiled kernel "
                       "is specialised for them)"
          : copts.reference
              ? "auto: head dims over " +
                    std::to_string(attnc::kMaxTiledHeadDim) +
                    " (the tiled kernel keeps its tiles on the stack)"
              : "auto: the head dims are given";
    break;
  case Tiling::Mode::Reference:
    copts.reference = true;
    why = "asked for (Tiling::reference)";
    break;
  case Tiling::Mode::Fixed:
    if (options.tiling.blockQ <= 0 || options.tiling.blockKV <= 0) {
      error = "fixed tiling needs positive tile sizes, got " +
              std::to_string(options.tiling.blockQ) + " x " +
              std::to_string(options.tiling.blockKV);
      return Status::InvalidArgument;
    }
    if (!dimsKnown) {
      error = "fixed tiling builds the tiled kernel, which is specialised "
              "for the head dims: set CompileOptions::headDim and valueDim";
      return Status::InvalidArgument;
    }
    copts.reference = false;
    copts.tileQ = options.tiling.blockQ;
    copts.tileKV = options.tiling.blockKV;
    why = "asked for (Tiling::fixed)";
    break;
  }
  if (!copts.reference) {
    copts.headDim = options.headDim;
    copts.valueDim = options.valueDim;
    error = attnc::tiledOptionsError(copts);
    if (!error.empty())
      return Status::InvalidArgument;
  }
  out = std::make_unique<CpuBackend>(std::move(copts), std::move(why),
                                     options.dtype);
  return Status::Ok;
}
