//===- GpuKernel.cpp - Compiling and running a variant on an NVIDIA GPU ---===//

#include "attnc/Target/GpuKernel.h"

#include "attnc/Pipelines/Pipelines.h"
#include "attnc/Support/Npy.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

using namespace attnc;

GpuKernel::~GpuKernel() {
  // Queued launches may still run the module and write the status words:
  // let them finish first (what they found is dropped with the kernel).
  if (pendingAsync && driver) {
    std::string ignored;
    if (driver->makeCurrent(ignored))
      driver->cuCtxSynchronize();
  }
  if (module && driver)
    driver->cuModuleUnload(module);
}

bool GpuKernel::compileToPtx(mlir::ModuleOp module, const std::string &name,
                             const GpuKernelOptions &options, GpuArtifact &out,
                             std::string &error, bool *invalidOptions) {
  if (invalidOptions)
    *invalidOptions = false;
  auto variant = llvm::dyn_cast_or_null<mlir::attn::VariantOp>(
      mlir::SymbolTable::lookupSymbolIn(module, name));
  if (!variant) {
    error = "internal error: no variant '" + name + "' to compile";
    return false;
  }
  // The one decision about the kernel; the passes and the launcher take it
  // as it is.
  if (!planGpuKernel(gpuVariantTraits(variant), options, out.plan, error)) {
    if (invalidOptions)
      *invalidOptions = true;
    return false;
  }
  if (module.getBody()->getOperations().size() != 1) {
    error = "internal error: the module to compile holds more than variant '" +
            name + "' (keepOnlyVariant)";
    return false;
  }
  out.signature = KernelSignature::fromVariant(variant);
  mlir::MLIRContext *ctx = module.getContext();
  mlir::DialectRegistry registry;
  registerDialects(registry);
  ctx->appendDialectRegistry(registry);
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(ctx, [&](mlir::Diagnostic &d) {
    if (d.getSeverity() == mlir::DiagnosticSeverity::Error &&
        diagnostics.empty())
      diagnostics = d.str();
    return mlir::success();
  });
  mlir::PassManager pm(ctx);
  buildGpuKernelPipeline(pm, out.plan);
  buildGpuLowerToNVVMPipeline(pm);
  buildGpuToPtxPipeline(pm, out.plan.chip);
  if (mlir::failed(pm.run(module))) {
    error = "internal error: GPU lowering of '" + name + "' failed" +
            (diagnostics.empty() ? "" : ": " + diagnostics);
    return false;
  }
  out.ptx = extractPtx(module);
  if (out.ptx.empty()) {
    error = "internal error: no PTX for '" + name + "'";
    return false;
  }
  return true;
}

std::unique_ptr<GpuKernel> GpuKernel::load(const GpuArtifact &artifact,
                                           std::string &error) {
  std::unique_ptr<GpuKernel> k(new GpuKernel());
  k->art = artifact;
  if (!k->loadModule(error))
    return nullptr;
  return k;
}

std::unique_ptr<GpuKernel> GpuKernel::deferred(const GpuArtifact &artifact) {
  std::unique_ptr<GpuKernel> k(new GpuKernel());
  k->art = artifact;
  return k;
}

bool GpuKernel::loadModule(std::string &error) {
  std::lock_guard<std::mutex> lock(loadMutex);
  if (loaded)
    return true;
  driver = cuda::Driver::get(error);
  if (!driver || !driver->makeCurrent(error)) {
    driver = nullptr;
    return false;
  }
  // The PTX is JIT-compiled by the driver; keep its error log.
  char log[4096] = {0};
  int options[] = {/*CU_JIT_ERROR_LOG_BUFFER*/ 5,
                   /*CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES*/ 6};
  void *values[] = {log, reinterpret_cast<void *>(sizeof log)};
  std::string ptx = art.ptx; // NUL-terminated
  if (!driver->check(
          driver->cuModuleLoadDataEx(&module, ptx.c_str(), 2, options, values),
          "cuModuleLoadDataEx", error)) {
    if (log[0])
      error += " (" + std::string(log) + ")";
    module = nullptr;
    return false;
  }
  // Unloads the module again where a later step fails.
  auto unload = [&] {
    driver->cuModuleUnload(module);
    module = nullptr;
    return false;
  };
  if (!driver->check(driver->cuModuleGetFunction(&function, module,
                                                 art.signature.name.c_str()),
                     "cuModuleGetFunction", error))
    return unload();
  const GpuKernelPlan &plan = art.plan;
  const std::string markName = art.signature.name + "_marks";
  if (plan.marks.present &&
      !driver->check(
          driver->cuModuleGetFunction(&markFunction, module, markName.c_str()),
          "cuModuleGetFunction", error))
    return unload();
  // Hopper: a programmatic dependent launch (see launch()) of kernels that
  // wait for the kernel before them before touching memory.
  dependentLaunch = plan.dependentLaunch && driver->cuLaunchKernelEx;
  // Dynamic shared memory is asked for whatever its size: without the
  // attribute a block gets 48 KiB in all, static included, and the PTX
  // that NVPTX prints for MLIR's dynamic shared memory symbol also
  // reserves a few static bytes, so a plan of exactly 48 KiB would not
  // launch (cuLaunchKernel: invalid argument).
  auto allowShared = [&](cuda::CUfunction fn, int64_t bytes) {
    return bytes == 0 ||
           driver->check(
               driver->cuFuncSetAttribute(
                   fn,
                   /*CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES*/ 8,
                   static_cast<int>(bytes)),
               "cuFuncSetAttribute(max dynamic shared memory)", error);
  };
  if (!allowShared(function, plan.sharedBytes) ||
      (markFunction && !allowShared(markFunction, plan.marks.sharedBytes)))
    return unload();
  // A persistent kernel gets as many blocks as run at once (fewer when
  // the problem has fewer work items).
  if (plan.persistent) {
    int perSM = 0;
    if (!driver->check(driver->cuOccupancyMaxActiveBlocksPerMultiprocessor(
                           &perSM, function,
                           static_cast<int>(plan.threadsPerBlock),
                           static_cast<size_t>(plan.sharedBytes)),
                       "cuOccupancyMaxActiveBlocksPerMultiprocessor", error))
      return unload();
    residentBlocks = std::max<int64_t>(1, static_cast<int64_t>(perSM) *
                                              driver->multiprocessors);
  }
  loaded = true;
  return true;
}

LaunchStatus GpuKernel::launch(const RunArgs &args, void *stream,
                               std::string &error) {
  const GpuKernelPlan &o = art.plan;
  if (args.q.shape.size() == 4 && args.q.shape[3] != o.headDim) {
    error = "this GPU kernel is compiled for head dim D = " +
            std::to_string(o.headDim) + ", got Q of shape [" +
            std::to_string(args.q.shape[0]) + ", ..., " +
            std::to_string(args.q.shape[3]) + "]";
    return LaunchStatus::InvalidArguments;
  }
  if (args.v.shape.size() == 4 && args.v.shape[3] != o.valueDim) {
    error = "this GPU kernel is compiled for value dim Dv = " +
            std::to_string(o.valueDim) + ", got " +
            std::to_string(args.v.shape[3]);
    return LaunchStatus::InvalidArguments;
  }
  PackedKernelArgs packed;
  if (!packKernelArgs(art.signature, o.elementType, args, packed, error))
    return LaunchStatus::InvalidArguments;
  // A kernel compiled where there was no driver loads at its first launch.
  if (!loadModule(error))
    return LaunchStatus::Unavailable;
  if (!driver->makeCurrent(error))
    return LaunchStatus::KernelError;
  int64_t b = args.q.shape[0], h = args.q.shape[1], lq = args.q.shape[2];
  if (o.kind != GpuKernelKind::Simt) {
    // cp.async copies 16 contiguous, aligned bytes of K and V rows.
    for (const TensorView *t : {&args.q, &args.k, &args.v}) {
      const char *name = t == &args.q ? "Q" : t == &args.k ? "K" : "V";
      bool aligned = reinterpret_cast<uintptr_t>(t->data) % 16 == 0;
      for (int i = 0; i < 3; ++i)
        aligned = aligned && t->strides[i] % 8 == 0;
      if (t->strides[3] != 1 || !aligned) {
        error = std::string("the tensor-core GPU kernel needs ") + name +
                " with unit inner stride, 16-byte aligned data and strides "
                "that are multiples of 8 elements (make it contiguous, or "
                "compile with kernel=simt)";
        return LaunchStatus::InvalidArguments;
      }
    }
  }
  int64_t rowsPerBlock = o.rowsPerBlock;
  int64_t blocks = b * h * ((lq + rowsPerBlock - 1) / rowsPerBlock);
  if (blocks == 0) {
    // Nothing to launch; a synchronous run still reports what earlier
    // asynchronous ones found.
    std::lock_guard<std::mutex> lock(launchMutex);
    return !args.async && pendingAsync ? readPending(error) : LaunchStatus::Ok;
  }
  if (blocks > 0x7fffffff) {
    error = "the problem needs " + std::to_string(blocks) +
            " thread blocks, more than a grid holds";
    return LaunchStatus::InvalidArguments;
  }
  // The status words in device memory: the last memref of the ABI (two
  // pointers, offset, size, stride).
  std::lock_guard<std::mutex> lock(launchMutex);
  auto s = static_cast<cuda::CUstream>(stream);
  if (!status.ptr() && !status.allocate(*driver, sizeof packed.status, error))
    return LaunchStatus::KernelError;
  // Asynchronous: the words are cleared on the stream of the first launch
  // of a series of asynchronous ones and then gather their errors until
  // read. A launch on another stream than the series' is not ordered after
  // that clear, so it first waits for the series and reports what it
  // found, as a synchronous launch does. The tile counters are only read
  // by synchronous launches (RunStats).
  bool async = args.async && !args.stats;
  // With a mark kernel: its items (one block each) and the bytes of their
  // marks. Runs still queued may read the marks buffer, so before it grows
  // they are waited for (and what they found reported) in the same way.
  int64_t marksItems = 0;
  size_t marksBytes = 0;
  if (markFunction) {
    int64_t qTiles = (lq + rowsPerBlock - 1) / rowsPerBlock;
    marksItems =
        (o.marks.perBatch ? b : 1) * (o.marks.perHead ? h : 1) * qTiles;
    marksBytes = static_cast<size_t>(marksItems * o.marks.words) * 4;
  }
  const bool growMarks = marks.size() < marksBytes;
  if (pendingAsync && (!async || stream != pendingStream || growMarks)) {
    LaunchStatus earlier = readPending(error);
    if (earlier != LaunchStatus::Ok)
      return earlier;
  }
  if (!(async && pendingAsync) &&
      !driver->check(
          driver->cuMemsetD8Async(status.ptr(), 0, sizeof packed.status, s),
          "cuMemsetD8Async", error))
    return LaunchStatus::KernelError;
  size_t n = packed.args.size();
  // Testing: ATTN_GPU_SCALAR_O=1 withholds kFlagVectorO, so that the
  // tensor-core kernel writes O element by element (its path for O views
  // that 16-byte vectors cannot write) whatever O is.
  static const bool scalarO = [] {
    const char *env = std::getenv("ATTN_GPU_SCALAR_O");
    return env && std::string(env) == "1";
  }();
  if (scalarO)
    *packed.flags &= ~kFlagVectorO;
  *static_cast<void **>(packed.args[n - 5]) = status.data();
  *static_cast<void **>(packed.args[n - 4]) = status.data();
  if (o.persistent)
    blocks = std::min(blocks, residentBlocks);
  // With a mark kernel: both kernels take the marks buffer last (a memref
  // descriptor: allocated and aligned pointers, offset, size, stride), and
  // the mark kernel runs first on the same stream, one block per item.
  std::vector<void *> argv(packed.args.begin(), packed.args.end());
  void *marksPtr = nullptr;
  int64_t marksOffset = 0, marksSize = 0, marksStride = 1;
  if (markFunction) {
    if (growMarks &&
        !marks.allocate(*driver, std::max(marksBytes, 2 * marks.size()), error))
      return LaunchStatus::KernelError;
    marksPtr = marks.data();
    marksSize = static_cast<int64_t>(marks.size() / 4);
    for (void *p :
         {static_cast<void *>(&marksPtr), static_cast<void *>(&marksPtr),
          static_cast<void *>(&marksOffset), static_cast<void *>(&marksSize),
          static_cast<void *>(&marksStride)})
      argv.push_back(p);
  }
  // Hopper: every wgmma kernel (and its mark kernel) is a programmatic
  // dependent launch of the kernel before it on the stream, so that its
  // blocks launch during that kernel's last wave; griddepcontrol.wait in
  // the kernels keeps their memory accesses after that kernel's end (see
  // AttnToMMAKernel.cpp). An ordinary launch where the driver lacks
  // cuLaunchKernelEx (before CUDA 11.8), or the PTX does not wait.
  auto launchGrid = [&](cuda::CUfunction fn, int64_t grid, int64_t shared,
                        const char *what) {
    if (!dependentLaunch)
      return driver->check(
          driver->cuLaunchKernel(fn, static_cast<unsigned>(grid), 1, 1,
                                 static_cast<unsigned>(o.threadsPerBlock), 1, 1,
                                 static_cast<unsigned>(shared), s, argv.data(),
                                 nullptr),
          what, error);
    cuda::CUlaunchAttribute attr = {};
    attr.id = cuda::kLaunchAttributeProgrammaticStreamSerialization;
    attr.value.programmaticStreamSerializationAllowed = 1;
    cuda::CUlaunchConfig config = {};
    config.gridDimX = static_cast<unsigned>(grid);
    config.gridDimY = config.gridDimZ = 1;
    config.blockDimX = static_cast<unsigned>(o.threadsPerBlock);
    config.blockDimY = config.blockDimZ = 1;
    config.sharedMemBytes = static_cast<unsigned>(shared);
    config.hStream = s;
    config.attrs = &attr;
    config.numAttrs = 1;
    return driver->check(
        driver->cuLaunchKernelEx(&config, fn, argv.data(), nullptr), what,
        error);
  };
  if (markFunction && !launchGrid(markFunction, marksItems, o.marks.sharedBytes,
                                  "launching the mark kernel"))
    return LaunchStatus::KernelError;
  if (!launchGrid(function, blocks, o.sharedBytes, "launching the kernel"))
    return LaunchStatus::KernelError;
  if (async) {
    pendingAsync = true;
    pendingStream = stream;
    return LaunchStatus::Ok;
  }
  if (!driver->check(driver->cuMemcpyDtoHAsync(packed.status, status.ptr(),
                                               sizeof packed.status, s),
                     "cuMemcpyDtoHAsync", error) ||
      !driver->check(driver->cuStreamSynchronize(s), "the kernel", error))
    return LaunchStatus::KernelError;
  if (args.stats) {
    args.stats->tilesInRange += packed.status[kStatusTilesInRange];
    args.stats->tilesComputed += packed.status[kStatusTilesComputed];
  }
  if (!decodeKernelStatus(art.signature, packed.status, error))
    return LaunchStatus::KernelError;
  return LaunchStatus::Ok;
}

LaunchStatus GpuKernel::readPending(std::string &error) {
  pendingAsync = false;
  int32_t words[kStatusWords];
  if (!driver->makeCurrent(error) ||
      !driver->check(driver->cuCtxSynchronize(), "an earlier asynchronous run",
                     error) ||
      !driver->check(driver->cuMemcpyDtoH(words, status.ptr(), sizeof words),
                     "cuMemcpyDtoH", error))
    return LaunchStatus::KernelError;
  if (!decodeKernelStatus(art.signature, words, error)) {
    error = "an earlier asynchronous run: " + error;
    return LaunchStatus::KernelError;
  }
  return LaunchStatus::Ok;
}

LaunchStatus GpuKernel::synchronize(std::string &error) {
  std::lock_guard<std::mutex> lock(launchMutex);
  return pendingAsync ? readPending(error) : LaunchStatus::Ok;
}
