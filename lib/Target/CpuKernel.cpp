//===- CpuKernel.cpp - Compiling and running a variant on the host CPU ----===//
//
// Lowers one variant through the pipelines to the LLVM dialect and emits a
// host object (HostObject.cpp); loads objects with the process-wide JIT and
// runs them through KernelLaunch, which checks every tensor and parameter
// against the signature, packs the arguments and decodes the status word.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/CpuKernel.h"

#include "attnc/Pipelines/Pipelines.h"
#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Host.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>

using namespace attnc;
using namespace mlir;

std::string CpuCompileOptions::describe() const {
  std::string s = std::string("dtype=") +
                  (elementType == DType::F16 ? "f16" : "f32") +
                  " lowering=" + (reference ? "reference" : "tiled");
  if (backward)
    s += " pass=backward";
  if (!reference)
    s += " d=" + std::to_string(headDim) + " dv=" + std::to_string(valueDim) +
         " tq=" + std::to_string(tileQ) + " tk=" + std::to_string(tileKV) +
         " vw=" + std::to_string(hostVectorWidth(vectorWidth));
  return s;
}

std::string CpuCompileOptions::explain(const std::string &why) const {
  std::string s = "kernel            ";
  s += reference ? "reference (plain loops, single-threaded, any head dims)"
                 : "tiled (vectorised and multi-threaded, one (b, h, "
                   "q-tile) work item per call)";
  s += "\n  why             " + why + "\n";
  if (backward)
    s += "pass              backward (dQ, dK, dV and the f32 params' "
         "gradients; " +
         std::string(reference ? "per row"
                               : "one (KV head, kv range) work item "
                                 "per call") +
         ")\n";
  s += std::string("element type      ") +
       (elementType == DType::F16 ? "f16" : "f32");
  if (reference)
    return s + "\n";
  int vw = hostVectorWidth(vectorWidth);
  s += ", D = " + std::to_string(headDim) +
       ", Dv = " + std::to_string(valueDim) + "\n";
  s += "tiles             " + std::to_string(tileQ) + " query rows x " +
       std::to_string(tileKV) + " keys\n";
  s += "vectors           " + std::to_string(vw) + " f32 lanes" +
       (vectorWidth > 0 ? std::string(" (asked for)")
        : vw == 16      ? std::string(" (the host has AVX-512)")
                        : std::string(" (the host has no AVX-512)")) +
       "\n";
  return s;
}

std::string attnc::tiledOptionsError(const CpuCompileOptions &options) {
  if (options.headDim <= 0 || options.valueDim <= 0)
    return "a tiled kernel needs its head dimensions D and Dv";
  if (options.headDim > kMaxTiledHeadDim || options.valueDim > kMaxTiledHeadDim)
    return "tiled CPU kernels support head dims up to " +
           std::to_string(kMaxTiledHeadDim) +
           ", got D = " + std::to_string(options.headDim) +
           ", Dv = " + std::to_string(options.valueDim) +
           "; use the reference kernel";
  // The same tilings are valid on every host: keys per tile in whole
  // vectors of the widest width (16 lanes), rows in whole blocks of 4.
  int64_t tq = options.tileQ, tk = options.tileKV;
  int64_t vw = std::max<int64_t>(16, hostVectorWidth(options.vectorWidth));
  if (tq <= 0 || tk <= 0 || tq % kTiledRowsPerBlock != 0 || tk % vw != 0)
    return "tiles of " + std::to_string(tq) + " x " + std::to_string(tk) +
           " are not valid: the rows per tile must be a positive multiple "
           "of " +
           std::to_string(kTiledRowsPerBlock) +
           " and the keys per tile a positive multiple of " +
           std::to_string(vw);
  // Bounded first, so that the products below cannot overflow.
  if (tq > kMaxTiledStackBytes || tk > kMaxTiledStackBytes)
    return "tiles of " + std::to_string(tq) + " x " + std::to_string(tk) +
           " are too large (at most " + std::to_string(kMaxTiledStackBytes) +
           " rows or keys); choose smaller tiles";
  int64_t stackBytes =
      options.backward
          ? 4 * (2 * tq * tk +
                 2 * (options.headDim + options.valueDim + 32) * tk)
          : 4 * tq * (options.headDim + options.valueDim + 16 + tk);
  if (stackBytes > kMaxTiledStackBytes)
    return "tiles of " + std::to_string(tq) + " x " + std::to_string(tk) +
           " need " + std::to_string(stackBytes) +
           " bytes of stack per thread (at most " +
           std::to_string(kMaxTiledStackBytes) + "); choose smaller tiles";
  return "";
}

int attnc::hostVectorWidth(int requested) {
  if (requested > 0)
    return requested;
  // Asked once per process: every tiled launch needs it, and LLVM's answer
  // costs about 0.15 ms (it parses /proc/cpuinfo), which was most of the
  // time of a small run. Testing: ATTN_CPU_VECTOR_WIDTH=8 builds AVX2's
  // kernels on an AVX-512 host (and 16 the other way round: LLVM splits the
  // vectors).
  static const int width = [] {
    if (const char *env = std::getenv("ATTN_CPU_VECTOR_WIDTH")) {
      std::string v = env;
      if (v == "8" || v == "16")
        return std::stoi(v);
      std::fprintf(stderr,
                   "attn: ignoring ATTN_CPU_VECTOR_WIDTH='%s' (expected 8 or "
                   "16)\n",
                   env);
    }
    llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
    return features.lookup("avx512f") ? 16 : 8;
  }();
  return width;
}

CpuKernel::~CpuKernel() = default;

bool CpuKernel::compileToObject(ModuleOp module, const std::string &name,
                                const CpuCompileOptions &options,
                                CpuArtifact &out, std::string &error) {
  auto variant = llvm::dyn_cast_or_null<attn::VariantOp>(
      SymbolTable::lookupSymbolIn(module, name));
  if (!variant) {
    error = "no variant named '" + name + "'";
    return false;
  }
  if (options.elementType != DType::F32 && options.elementType != DType::F16) {
    error = std::string("Q, K and V must be float32 or float16, got ") +
            dtypeName(options.elementType);
    return false;
  }
  if (module.getBody()->getOperations().size() != 1) {
    error = "internal error: the module to compile holds more than variant '" +
            name + "' (keepOnlyVariant)";
    return false;
  }
  CpuArtifact artifact;
  artifact.signature = KernelSignature::fromVariant(variant);
  artifact.options = options;

  MLIRContext *ctx = module.getContext();
  std::string diagnostics;
  llvm::raw_string_ostream os(diagnostics);
  ScopedDiagnosticHandler handler(ctx, [&](Diagnostic &diag) {
    os << diag.str() << "\n";
    return success();
  });
  PassManager pm(ctx);
  const char *elem = options.elementType == DType::F16 ? "f16" : "f32";
  if (options.backward && options.reference) {
    buildReferenceBackwardPipeline(pm, elem);
  } else if (options.backward) {
    error = tiledOptionsError(options);
    if (!error.empty())
      return false;
    TiledPipelineOptions tiled;
    tiled.elementType = elem;
    tiled.headDim = options.headDim;
    tiled.valueDim = options.valueDim;
    tiled.tileQ = options.tileQ;
    tiled.tileKV = options.tileKV;
    tiled.vectorWidth = hostVectorWidth(options.vectorWidth);
    buildTiledBackwardPipeline(pm, tiled);
  } else if (options.reference) {
    buildReferenceLoopsPipeline(pm, elem);
  } else {
    error = tiledOptionsError(options);
    if (!error.empty())
      return false;
    TiledPipelineOptions tiled;
    tiled.elementType = elem;
    tiled.headDim = options.headDim;
    tiled.valueDim = options.valueDim;
    tiled.tileQ = options.tileQ;
    tiled.tileKV = options.tileKV;
    tiled.vectorWidth = hostVectorWidth(options.vectorWidth);
    buildTiledKernelPipeline(pm, tiled);
  }
  buildLowerToLLVMPipeline(pm);
  if (failed(pm.run(module))) {
    error = "internal compiler error while lowering variant '" + name +
            "': " + diagnostics;
    return false;
  }
  if (!emitHostObject(module, HostTarget::native(), artifact.object, error)) {
    error = "compiling variant '" + name + "' to native code failed: " + error;
    return false;
  }
  out = std::move(artifact);
  return true;
}

std::unique_ptr<CpuKernel> CpuKernel::load(const KernelSignature &signature,
                                           const std::string &object,
                                           const CpuCompileOptions &options,
                                           std::string &error) {
  std::unique_ptr<CpuKernel> kernel(new CpuKernel());
  kernel->sig = signature;
  kernel->options = options;
  kernel->object = LoadedObject::load(object, signature.name, error);
  if (!kernel->object)
    return nullptr;
  std::string symbol = signature.name + (options.backward ? "_bwd" : "");
  void *entry = kernel->object->lookup(packedEntryName(symbol), error);
  if (!entry)
    return nullptr;
  kernel->entry = reinterpret_cast<PackedKernelFn>(entry);
  if (options.backward && !options.reference) {
    void *rows =
        kernel->object->lookup(packedEntryName(symbol + "_rows"), error);
    if (!rows)
      return nullptr;
    kernel->rowsEntry = reinterpret_cast<PackedKernelFn>(rows);
  }
  return kernel;
}

std::unique_ptr<CpuKernel> CpuKernel::compile(ModuleOp module,
                                              const std::string &name,
                                              const CpuCompileOptions &options,
                                              std::string &error) {
  CpuArtifact artifact;
  if (!compileToObject(module, name, options, artifact, error))
    return nullptr;
  return load(artifact.signature, artifact.object, artifact.options, error);
}

LaunchStatus CpuKernel::launch(const RunArgs &args, std::string &error) const {
  if (options.backward) {
    error = "kernel '" + sig.name +
            "' computes gradients; run it with its backward arguments";
    return LaunchStatus::InvalidArguments;
  }
  if (options.reference)
    return launchKernel(sig, options.elementType, entry, args, error);
  TiledKernelShape shape;
  shape.tileQ = options.tileQ;
  shape.tileKV = options.tileKV;
  shape.vectorWidth = hostVectorWidth(options.vectorWidth);
  shape.headDim = options.headDim;
  shape.valueDim = options.valueDim;
  return launchTiledKernel(sig, options.elementType, entry, shape, args, error);
}

LaunchStatus CpuKernel::launchBackward(const BackwardRunArgs &args,
                                       std::string &error) const {
  if (!options.backward) {
    error = "kernel '" + sig.name +
            "' computes the forward pass; compile it for the backward pass";
    return LaunchStatus::InvalidArguments;
  }
  if (options.reference)
    return launchBackwardKernel(sig, options.elementType, entry, args, error);
  TiledKernelShape shape;
  shape.tileQ = options.tileQ;
  shape.tileKV = options.tileKV;
  shape.vectorWidth = hostVectorWidth(options.vectorWidth);
  shape.headDim = options.headDim;
  shape.valueDim = options.valueDim;
  return launchTiledBackwardKernel(sig, options.elementType, rowsEntry, entry,
                                   shape, args, error);
}
