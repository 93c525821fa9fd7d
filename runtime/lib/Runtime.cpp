//===- Runtime.cpp - Compiling variants through the kernel cache ----------===//
//
// Runtime::compile, from fastest to slowest path:
//   1. memory, by source text and options (no front end at all);
//   2. front end -> canonical IR -> key; memory, by key;
//   3. one thread per key goes on (others wait for its result), takes the
//      key's file lock (one process goes on, others wait), and
//   4. loads the disk entry (no MLIR passes, no code generation), or
//   5. compiles (pipelines + LLVM), writes the entry, evicts for the cap.
//
// The key is the SHA-256 of: the canonical IR (generic form, no locations),
// the compile options, the host target (triple, CPU, features) and the
// compiler's build identity.
//
//===----------------------------------------------------------------------===//

#include "attn/attn.hpp"

#include "DiskCache.h"
#include "FrontEnd.h"
#include "Hash.h"
#include "RuntimeInternal.h"

#include "attnc/Target/CpuKernel.h"

#include "llvm/Config/llvm-config.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <mutex>
#include <pwd.h>
#include <sstream>
#include <unistd.h>
#include <unordered_map>

#include "BuildId.inc" // ATTN_BUILD_ID

using namespace attn;
using namespace attn::detail;

//===----------------------------------------------------------------------===//
// Small public pieces
//===----------------------------------------------------------------------===//

Error::Error(Status status, const std::string &message)
    : std::runtime_error(message), status_(status) {}

const char *attn::dtypeName(DType dtype) {
  return attnc::dtypeName(toInternal(dtype));
}

const char *attn::buildId() { return ATTN_BUILD_ID; }

const char *attn::version() {
  static const std::string v = std::string("attnc 0.1 (build ") +
                               std::string(ATTN_BUILD_ID).substr(0, 12) +
                               ", LLVM " LLVM_VERSION_STRING ")";
  return v.c_str();
}

const ParamInfo *Signature::param(const std::string &name) const {
  for (const ParamInfo &p : params)
    if (p.name == name)
      return &p;
  return nullptr;
}

attnc::DType attn::detail::toInternal(DType d) {
  switch (d) {
  case DType::F32:
    return attnc::DType::F32;
  case DType::F16:
    return attnc::DType::F16;
  case DType::I32:
    return attnc::DType::I32;
  case DType::Bool:
    return attnc::DType::Bool;
  case DType::BF16:
    return attnc::DType::BF16;
  }
  return attnc::DType::F32;
}

DType attn::detail::fromInternal(attnc::DType d) {
  switch (d) {
  case attnc::DType::F32:
    return DType::F32;
  case attnc::DType::F16:
    return DType::F16;
  case attnc::DType::I32:
    return DType::I32;
  case attnc::DType::Bool:
    return DType::Bool;
  case attnc::DType::BF16:
    return DType::BF16;
  }
  return DType::F32;
}

Signature attn::detail::publicSignature(const attnc::KernelSignature &s,
                                        DType dtype) {
  Signature out;
  out.name = s.name;
  out.normalization = s.normalization;
  out.hasSink = s.hasSink;
  out.definesLSE = s.definesLSE();
  out.dtype = dtype;
  out.target = Target::CPU;
  for (const attnc::SignatureParam &p : s.params) {
    ParamInfo info;
    info.name = p.name;
    info.dtype = p.type == attnc::ParamType::F32   ? DType::F32
                 : p.type == attnc::ParamType::I32 ? DType::I32
                                                   : DType::Bool;
    info.isConst = p.isConst;
    info.isTensor = p.isTensor;
    for (const attnc::SignatureDim &d : p.dims) {
      Dim dim;
      if (d.kind == attnc::SignatureDim::Kind::Size) {
        dim.kind = Dim::Kind::Size;
        dim.size = attnc::Sizes::names[d.size];
        dim.value = d.size;
      } else if (d.kind == attnc::SignatureDim::Kind::Literal) {
        dim.kind = Dim::Kind::Literal;
        dim.value = d.value;
      }
      info.dims.push_back(dim);
    }
    info.value = p.value;
    info.declaredType = attnc::declaredType(p);
    out.params.push_back(std::move(info));
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Cache configuration
//===----------------------------------------------------------------------===//

namespace {

bool parseByteCount(const char *text, uint64_t &out) {
  char *end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || errno == ERANGE || *text == '-')
    return false;
  uint64_t scale = 1;
  if (*end == 'K' || *end == 'k')
    scale = uint64_t(1) << 10;
  else if (*end == 'M' || *end == 'm')
    scale = uint64_t(1) << 20;
  else if (*end == 'G' || *end == 'g')
    scale = uint64_t(1) << 30;
  if (scale != 1)
    ++end;
  if (*end != '\0' || v > UINT64_MAX / scale)
    return false;
  out = v * scale;
  return true;
}

std::string defaultCacheDir() {
  const char *xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && xdg[0] == '/')
    return std::string(xdg) + "/attnc";
  const char *home = std::getenv("HOME");
  if (home && home[0] == '/')
    return std::string(home) + "/.cache/attnc";
  if (struct passwd *pw = ::getpwuid(::getuid()))
    if (pw->pw_dir && pw->pw_dir[0] == '/')
      return std::string(pw->pw_dir) + "/.cache/attnc";
  return "";
}

} // namespace

CacheConfig CacheConfig::fromEnvironment() {
  CacheConfig c;
  if (const char *on = std::getenv("ATTN_CACHE")) {
    std::string v = on;
    if (v == "0" || v == "off" || v == "false" || v == "no")
      c.diskCache = false;
  }
  if (const char *dir = std::getenv("ATTN_CACHE_DIR"))
    c.dir = dir;
  if (const char *max = std::getenv("ATTN_CACHE_MAX_BYTES")) {
    uint64_t bytes;
    if (parseByteCount(max, bytes)) {
      c.maxBytes = bytes;
    } else {
      static std::once_flag warned;
      std::call_once(warned, [&] {
        std::fprintf(stderr,
                     "attn: ignoring ATTN_CACHE_MAX_BYTES='%s' (expected a "
                     "byte count such as 1073741824 or 512M)\n",
                     max);
      });
    }
  }
  return c;
}

//===----------------------------------------------------------------------===//
// Kernel
//===----------------------------------------------------------------------===//

Kernel::Kernel() = default;
Kernel::~Kernel() = default;
Kernel::Kernel(const Kernel &) = default;
Kernel &Kernel::operator=(const Kernel &) = default;
Kernel::Kernel(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

const Signature &Kernel::signature() const {
  if (!impl_)
    throw Error(Status::InvalidArgument, "the kernel handle is empty");
  return impl_->signature;
}

const std::string &Kernel::key() const {
  if (!impl_)
    throw Error(Status::InvalidArgument, "the kernel handle is empty");
  return impl_->key;
}

namespace {

bool toView(const char *what, const Tensor &t, attnc::TensorView &out,
            std::string &error) {
  out.data = t.data;
  out.dtype = toInternal(t.dtype);
  out.shape = t.shape;
  if (t.strides.empty()) {
    out = attnc::TensorView::contiguous(t.data, out.dtype, t.shape);
    return true;
  }
  if (t.strides.size() != t.shape.size()) {
    error = std::string(what) + " has " + std::to_string(t.strides.size()) +
            " strides for a shape of rank " + std::to_string(t.shape.size());
    return false;
  }
  out.strides = t.strides;
  return true;
}

} // namespace

Status attn::detail::runKernel(const Kernel::Impl &k, const RunArgs &a,
                               std::string &error) {
  if (a.stream && !k.gpu) {
    error = "a CUDA stream was given, but kernel '" + k.signature.name +
            "' runs on the CPU";
    return Status::InvalidArgument;
  }
  attnc::RunArgs args;
  if (!toView("Q", a.q, args.q, error) || !toView("K", a.k, args.k, error) ||
      !toView("V", a.v, args.v, error) || !toView("O", a.o, args.o, error))
    return Status::InvalidArgument;
  if (a.lse) {
    args.lse.emplace();
    if (!toView("LSE", *a.lse, *args.lse, error))
      return Status::InvalidArgument;
  }
  for (const auto &[name, value] : a.params) {
    if (const double *d = std::get_if<double>(&value)) {
      args.params[name] = attnc::ScalarValue{*d};
    } else {
      attnc::TensorView view;
      std::string what = "param '" + name + "'";
      if (!toView(what.c_str(), std::get<Tensor>(value), view, error))
        return Status::InvalidArgument;
      args.params[name] = std::move(view);
    }
  }
  args.numThreads = a.threads;
  args.reuseTileSummaries = a.paramsUnchanged;
  args.async = a.async;
  attnc::LaunchStatus launched =
      k.gpu ? k.gpu->launch(args, a.stream, error) : k.cpu->launch(args, error);
  switch (launched) {
  case attnc::LaunchStatus::Ok:
    return Status::Ok;
  case attnc::LaunchStatus::InvalidArguments:
    return Status::InvalidArgument;
  case attnc::LaunchStatus::KernelError:
    return Status::KernelError;
  case attnc::LaunchStatus::OutOfMemory:
    return Status::OutOfMemory;
  }
  return Status::Internal;
}

Status Kernel::run(const RunArgs &args, std::string &error) const noexcept {
  if (!impl_) {
    error = "the kernel handle is empty";
    return Status::InvalidArgument;
  }
  try {
    return runKernel(*impl_, args, error);
  } catch (const std::bad_alloc &) {
    error = "out of memory";
    return Status::OutOfMemory;
  } catch (...) {
    error = "internal error while running the kernel";
    return Status::Internal;
  }
}

void Kernel::run(const RunArgs &args) const {
  std::string error;
  Status status = run(args, error);
  if (status != Status::Ok)
    throw Error(status, error);
}

Status Kernel::synchronize(std::string &error) const noexcept {
  if (!impl_) {
    error = "the kernel handle is empty";
    return Status::InvalidArgument;
  }
  if (!impl_->gpu)
    return Status::Ok;
  try {
    return impl_->gpu->synchronize(error) == attnc::LaunchStatus::Ok
               ? Status::Ok
               : Status::KernelError;
  } catch (...) {
    error = "internal error while synchronising the kernel";
    return Status::Internal;
  }
}

void Kernel::synchronize() const {
  std::string error;
  Status status = synchronize(error);
  if (status != Status::Ok)
    throw Error(status, error);
}

//===----------------------------------------------------------------------===//
// Runtime
//===----------------------------------------------------------------------===//

namespace {

using KernelPtr = std::shared_ptr<const Kernel::Impl>;

/// A compilation in progress that other threads wait for.
struct InFlight {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  KernelPtr kernel;
  Status status = Status::Ok;
  std::string error;
};

std::string doubleKey(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return std::to_string(bits);
}

/// Everything about the options that selects a kernel, for the text key.
std::string optionsKey(const CompileOptions &o) {
  std::string s =
      "target=" + std::to_string(static_cast<int>(o.target)) +
      " dtype=" + std::to_string(static_cast<int>(o.dtype)) +
      " tiling=" + std::to_string(static_cast<int>(o.tiling.mode)) + "," +
      std::to_string(o.tiling.blockQ) + "," + std::to_string(o.tiling.blockKV) +
      " dims=" + std::to_string(o.headDim) + "," + std::to_string(o.valueDim) +
      " variant=" + o.variant + " consts=";
  for (const auto &[name, value] : o.consts)
    s += name + ":" + doubleKey(value) + ",";
  return s;
}

/// The runtime's status for a front end that did not give a module.
Status frontEndFailure(FrontEndStatus status) {
  switch (status) {
  case FrontEndStatus::LanguageError:
    return Status::CompileError;
  case FrontEndStatus::InvalidArgument:
    return Status::InvalidArgument;
  case FrontEndStatus::Ok:
  case FrontEndStatus::Internal:
    break;
  }
  return Status::Internal;
}

} // namespace

struct __attribute__((visibility("hidden"))) Runtime::Impl {
  CacheConfig config;
  std::unique_ptr<DiskCache> disk; // null: no disk cache

  mutable std::mutex mutex;
  std::unordered_map<std::string, KernelPtr> byText; // options + source
  std::unordered_map<std::string, KernelPtr> byKey;
  std::unordered_map<std::string, std::shared_ptr<InFlight>> inFlight;

  std::atomic<uint64_t> compiles{0}, memoryHits{0}, diskHits{0}, diskWrites{0},
      evictions{0}, corruptEntries{0};

  Status compile(const std::string &source, const std::string &bufferName,
                 const CompileOptions &options, KernelPtr &out,
                 std::string &error);
  Status build(const std::string &key, KeyedModule &keyed,
               const attnc::CompileOptions &copts, DType dtype, KernelPtr &out,
               std::string &error);
  Status compileGpu(const std::string &source, const std::string &bufferName,
                    const CompileOptions &options, KernelPtr &out,
                    std::string &error);
  /// The kernel already compiled from exactly this text and these options.
  bool lookupText(const std::string &textKey, KernelPtr &out) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = byText.find(textKey);
    if (it == byText.end())
      return false;
    ++memoryHits;
    out = it->second;
    return true;
  }
  Status compileAndLoad(const std::string &key, KeyedModule &keyed,
                        const attnc::CompileOptions &copts, DType dtype,
                        DiskCache *store, KernelPtr &out, std::string &error);

  // Disk-cache bookkeeping shared by CPU objects and GPU PTX: this
  // runtime's counters and the folder's.
  void noteDiskHit(const std::string &key) {
    disk->touch(key);
    ++diskHits;
    DiskCounters delta;
    delta.diskHits = 1;
    disk->addCounters(delta);
  }
  void dropCorruptEntry(const std::string &key) {
    disk->remove(key);
    ++corruptEntries;
    DiskCounters delta;
    delta.corruptEntries = 1;
    disk->addCounters(delta);
  }
  /// Counts a compile and, with a usable `store`, writes `stored` under
  /// `key` and evicts down to the size cap.
  void noteCompile(const std::string &key, const StoredKernel &stored,
                   DiskCache *store) {
    ++compiles;
    if (!store)
      return;
    DiskCounters delta;
    delta.compiles = 1;
    std::string writeError;
    if (store->write(key, stored, writeError)) {
      ++diskWrites;
      delta.diskWrites = 1;
      uint64_t evicted = store->evict(key);
      evictions += evicted;
      delta.evictions = evicted;
    }
    store->addCounters(delta);
  }
};

Runtime::Runtime(const CacheConfig &config) : impl_(new Impl()) {
  impl_->config = config;
  if (impl_->config.dir.empty())
    impl_->config.dir = defaultCacheDir();
  if (impl_->config.maxBytes == 0)
    impl_->config.maxBytes = uint64_t(1) << 30;
  if (impl_->config.diskCache && !impl_->config.dir.empty())
    impl_->disk =
        std::make_unique<DiskCache>(impl_->config.dir, impl_->config.maxBytes);
}

Runtime::~Runtime() = default;

Runtime &Runtime::global() {
  // Never destroyed: its kernels may be used by other static objects.
  static Runtime *runtime = new Runtime(CacheConfig::fromEnvironment());
  return *runtime;
}

const CacheConfig &Runtime::cacheConfig() const { return impl_->config; }

std::string Runtime::cacheFolder() const {
  return impl_->disk ? impl_->disk->folder() : std::string();
}

CacheStats Runtime::stats() const {
  CacheStats s;
  s.compiles = impl_->compiles;
  s.memoryHits = impl_->memoryHits;
  s.diskHits = impl_->diskHits;
  s.diskWrites = impl_->diskWrites;
  s.evictions = impl_->evictions;
  s.corruptEntries = impl_->corruptEntries;
  return s;
}

CacheStats Runtime::diskStats() const {
  CacheStats s;
  if (!impl_->disk)
    return s;
  DiskCounters c = impl_->disk->counters();
  s.compiles = c.compiles;
  s.diskHits = c.diskHits;
  s.diskWrites = c.diskWrites;
  s.evictions = c.evictions;
  s.corruptEntries = c.corruptEntries;
  return s;
}

std::vector<CacheEntry> Runtime::diskEntries() const {
  std::vector<CacheEntry> out;
  if (!impl_->disk)
    return out;
  for (const DiskEntryInfo &e : impl_->disk->list()) {
    CacheEntry c;
    c.key = e.key;
    c.variant = e.variant;
    c.options = e.options;
    c.bytes = e.bytes;
    c.lastUsed = e.lastUsed;
    c.created = e.created;
    out.push_back(std::move(c));
  }
  return out;
}

Status Runtime::clearCache(CacheClearReport &report,
                           std::string &error) noexcept {
  report = CacheClearReport();
  try {
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      impl_->byText.clear();
      impl_->byKey.clear();
    }
    if (!impl_->disk)
      return Status::Ok;
    DiskCache::ClearReport cleared = impl_->disk->clear();
    report.entries = cleared.entries;
    report.bytes = cleared.bytes;
    report.failures = std::move(cleared.failures);
  } catch (const std::bad_alloc &) {
    error = "out of memory";
    return Status::OutOfMemory;
  }
  if (report.failures.empty())
    return Status::Ok;
  error = "could not clear the kernel cache in '" + impl_->disk->folder() +
          "': " + report.failures.front();
  if (report.failures.size() > 1)
    error += " (and " + std::to_string(report.failures.size() - 1) + " more)";
  return Status::IOError;
}

void Runtime::clearCache() {
  CacheClearReport report;
  std::string error;
  Status status = clearCache(report, error);
  if (status != Status::Ok)
    throw Error(status, error);
}

Status Runtime::Impl::compileAndLoad(const std::string &key, KeyedModule &keyed,
                                     const attnc::CompileOptions &copts,
                                     DType dtype, DiskCache *store,
                                     KernelPtr &out, std::string &error) {
  attnc::CpuArtifact artifact;
  if (!attnc::CpuKernel::compileToObject(*keyed.module, keyed.variant, copts,
                                         artifact, error))
    return Status::Internal;
  StoredKernel stored;
  if (store) {
    stored.variant = keyed.variant;
    stored.options = copts.describe();
    stored.target = attnc::HostTarget::native().describe();
    stored.build = ATTN_BUILD_ID;
    stored.signature = artifact.signature.toText();
    stored.object = artifact.object;
  }
  noteCompile(key, stored, store);
  auto kernel = std::make_shared<Kernel::Impl>();
  kernel->key = key;
  kernel->signature = publicSignature(artifact.signature, dtype);
  kernel->cpu = attnc::CpuKernel::load(artifact.signature, artifact.object,
                                       artifact.options, error);
  if (!kernel->cpu) {
    error = "internal error: cannot load the kernel just compiled: " + error;
    return Status::Internal;
  }
  out = std::move(kernel);
  return Status::Ok;
}

Status Runtime::Impl::build(const std::string &key, KeyedModule &keyed,
                            const attnc::CompileOptions &copts, DType dtype,
                            KernelPtr &out, std::string &error) {
  if (!disk)
    return compileAndLoad(key, keyed, copts, dtype, nullptr, out, error);
  DiskCache::KeyLock lock;
  std::string lockError;
  if (!disk->lock(key, lock, lockError)) // unusable folder: memory only
    return compileAndLoad(key, keyed, copts, dtype, nullptr, out, error);

  StoredKernel stored;
  std::string why;
  DiskCache::Lookup found = disk->read(key, stored, why);
  if (found == DiskCache::Lookup::Hit) {
    attnc::KernelSignature sig;
    std::unique_ptr<attnc::CpuKernel> cpu;
    if (stored.build != ATTN_BUILD_ID || stored.options != copts.describe())
      why = "the manifest does not match the key";
    else if (!attnc::KernelSignature::fromText(stored.signature, sig, why))
      ;
    else if (!(cpu = attnc::CpuKernel::load(sig, stored.object, copts, why)))
      why = "the object does not load: " + why;
    if (cpu) {
      noteDiskHit(key);
      auto kernel = std::make_shared<Kernel::Impl>();
      kernel->key = key;
      kernel->signature = publicSignature(sig, dtype);
      kernel->cpu = std::move(cpu);
      out = std::move(kernel);
      return Status::Ok;
    }
    found = DiskCache::Lookup::Corrupt;
  }
  if (found == DiskCache::Lookup::Corrupt)
    dropCorruptEntry(key);
  return compileAndLoad(key, keyed, copts, dtype, disk.get(), out, error);
}

Status Runtime::Impl::compile(const std::string &source,
                              const std::string &bufferName,
                              const CompileOptions &options, KernelPtr &out,
                              std::string &error) {
  // Options first: they need no front end.
  if (options.target == Target::NVPTX)
    return compileGpu(source, bufferName, options, out, error);
  if (options.target != Target::CPU) {
    error =
        "unknown target " + std::to_string(static_cast<int>(options.target));
    return Status::InvalidArgument;
  }
  if (options.dtype != DType::F32 && options.dtype != DType::F16) {
    error =
        std::string("cpu kernels take float32 or float16 Q, K and V, "
                    "not ") +
        dtypeName(options.dtype) +
        (options.dtype == DType::BF16 ? " (bfloat16 runs on the nvptx target)"
                                      : "");
    return Status::InvalidArgument;
  }
  attnc::CompileOptions copts;
  copts.elementType = toInternal(options.dtype);
  if (options.headDim < 0 || options.valueDim < 0) {
    error = "head dims must be positive (or 0 for unknown), got D = " +
            std::to_string(options.headDim) +
            ", Dv = " + std::to_string(options.valueDim);
    return Status::InvalidArgument;
  }
  bool dimsKnown = options.headDim > 0 && options.valueDim > 0;
  switch (options.tiling.mode) {
  case Tiling::Mode::Auto:
    // The tiled kernel when it applies; very wide heads use the reference.
    copts.reference = !dimsKnown || options.headDim > attnc::kMaxTiledHeadDim ||
                      options.valueDim > attnc::kMaxTiledHeadDim;
    break;
  case Tiling::Mode::Reference:
    copts.reference = true;
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
    break;
  }
  if (!copts.reference) {
    copts.headDim = options.headDim;
    copts.valueDim = options.valueDim;
    if (options.target == Target::CPU) {
      error = attnc::tiledOptionsError(copts);
      if (!error.empty())
        return Status::InvalidArgument;
    }
  }

  // 1. Memory, by text.
  std::string textKey = optionsKey(options);
  textKey += '\n';
  textKey += source;
  if (lookupText(textKey, out))
    return Status::Ok;

  // 2. Front end and key; memory, by key.
  KeyedModule keyed;
  FrontEndStatus fe = buildKeyedModule(source, bufferName, options.variant,
                                       options.consts, keyed, error);
  if (fe != FrontEndStatus::Ok)
    return frontEndFailure(fe);
  std::string key = sha256Hex(
      "attn-kernel-key 1\nbuild " + std::string(ATTN_BUILD_ID) + "\ntarget " +
      attnc::HostTarget::native().describe() + "\noptions " + copts.describe() +
      " target=cpu\nir\n" + keyed.canonicalIR);

  std::shared_ptr<InFlight> flight;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = byKey.find(key);
    if (it != byKey.end()) {
      ++memoryHits;
      byText[textKey] = it->second;
      out = it->second;
      return Status::Ok;
    }
    auto f = inFlight.find(key);
    if (f != inFlight.end()) {
      flight = f->second;
    } else {
      flight = std::make_shared<InFlight>();
      inFlight[key] = flight;
      leader = true;
    }
  }

  // 3. Another thread is building this key: wait for it.
  if (!leader) {
    std::unique_lock<std::mutex> lock(flight->mutex);
    flight->cv.wait(lock, [&] { return flight->done; });
    if (flight->status != Status::Ok) {
      error = flight->error;
      return flight->status;
    }
    ++memoryHits;
    out = flight->kernel;
    return Status::Ok;
  }

  // 4./5. This thread builds it.
  KernelPtr kernel;
  Status status;
  try {
    status = build(key, keyed, copts, options.dtype, kernel, error);
  } catch (const std::bad_alloc &) {
    status = Status::OutOfMemory;
    error = "out of memory";
  } catch (const std::exception &e) {
    status = Status::Internal;
    error = std::string("internal error: ") + e.what();
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    inFlight.erase(key);
    if (status == Status::Ok) {
      byKey[key] = kernel;
      byText[textKey] = kernel;
    }
  }
  {
    std::lock_guard<std::mutex> lock(flight->mutex);
    flight->done = true;
    flight->status = status;
    flight->error = error;
    flight->kernel = kernel;
  }
  flight->cv.notify_all();
  out = std::move(kernel);
  return status;
}

namespace {
/// An on/off switch from the environment: unset or empty leaves `value`,
/// "0" and "1" set it, anything else is an error.
bool envSwitch(const char *name, bool &value, std::string &error) {
  const char *p = std::getenv(name);
  if (!p || !*p)
    return true;
  if (std::string(p) != "0" && std::string(p) != "1") {
    error = std::string(name) + " must be 0 or 1, not '" + p + "'";
    return false;
  }
  value = std::string(p) == "1";
  return true;
}

/// A GPU kernel in the disk cache's object slot: one header line with the
/// compiler's launch shape (and its mark kernel's, "-" for none), then the
/// PTX.
std::string encodeGpuObject(const attnc::GpuArtifact &a) {
  return "attn-ptx 3 " + a.kernel + " " + std::to_string(a.rowsPerBlock) + " " +
         std::to_string(a.threadsPerBlock) + " " +
         std::to_string(a.sharedBytes) + " " + (a.persistent ? "1" : "0") +
         " " + (a.markKernel.empty() ? "-" : a.markKernel) + " " +
         std::to_string(a.markSharedBytes) + " " + std::to_string(a.markWords) +
         " " + (a.marksPerBatch ? "1" : "0") + " " +
         (a.marksPerHead ? "1" : "0") + "\n" + a.ptx;
}
bool decodeGpuObject(const std::string &object, attnc::GpuArtifact &a) {
  size_t eol = object.find('\n');
  if (eol == std::string::npos)
    return false;
  std::istringstream header(object.substr(0, eol));
  std::string magic, version;
  int persistent = -1, perBatch = -1, perHead = -1;
  header >> magic >> version >> a.kernel >> a.rowsPerBlock >>
      a.threadsPerBlock >> a.sharedBytes >> persistent >> a.markKernel >>
      a.markSharedBytes >> a.markWords >> perBatch >> perHead;
  a.persistent = persistent == 1;
  a.marksPerBatch = perBatch == 1;
  a.marksPerHead = perHead == 1;
  if (a.markKernel == "-")
    a.markKernel.clear();
  if (!header || magic != "attn-ptx" || version != "3" ||
      (persistent != 0 && persistent != 1) ||
      (perBatch != 0 && perBatch != 1) || (perHead != 0 && perHead != 1) ||
      a.markSharedBytes < 0 || a.markSharedBytes > 228 * 1024 ||
      (!a.markKernel.empty() &&
       (a.persistent || a.markWords <= 0 || a.markWords > 4096)) ||
      (a.kernel != "mma" && a.kernel != "wgmma" && a.kernel != "simt") ||
      a.rowsPerBlock <= 0 || a.threadsPerBlock <= 0 ||
      a.threadsPerBlock > 1024 || a.sharedBytes < 0 ||
      a.sharedBytes > 228 * 1024)
    return false;
  a.ptx = object.substr(eol + 1);
  return !a.ptx.empty();
}
} // namespace

/// The nvptx target: PTX compiled in memory, kept in the disk cache with
/// its launch shape, loaded into device 0's primary context; kernels are
/// also cached by text per process.
Status Runtime::Impl::compileGpu(const std::string &source,
                                 const std::string &bufferName,
                                 const CompileOptions &options, KernelPtr &out,
                                 std::string &error) {
  attnc::cuda::Driver *driver = attnc::cuda::Driver::get(error);
  if (!driver)
    return Status::Unavailable;
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
  // ATTN_GPU_KERNEL picks the kernel kind (auto, mma, wgmma or simt).
  std::string kernelKind = "auto";
  if (const char *kind = std::getenv("ATTN_GPU_KERNEL"); kind && *kind)
    kernelKind = kind;
  if (kernelKind != "auto" && kernelKind != "mma" && kernelKind != "wgmma" &&
      kernelKind != "simt") {
    error = "ATTN_GPU_KERNEL must be auto, mma, wgmma or simt, not '" +
            kernelKind + "'";
    return Status::InvalidArgument;
  }
  // ATTN_GPU_PERSISTENT=1 lets the wgmma kernel be persistent for
  // data-dependent masks; 0 or unset: never. ATTN_GPU_MARK_KERNEL=0 makes
  // every block of a data-dependent mask's kernel work out its live
  // kv-tiles itself, without the mark kernel.
  bool persistent = false, markKernel = true;
  if (!envSwitch("ATTN_GPU_PERSISTENT", persistent, error) ||
      !envSwitch("ATTN_GPU_MARK_KERNEL", markKernel, error))
    return Status::InvalidArgument;
  std::string textKey = optionsKey(options) + " kernel=" + kernelKind +
                        (persistent ? " persistent=1" : "") +
                        (markKernel ? "" : " marks=0") + '\n' + source;
  if (lookupText(textKey, out))
    return Status::Ok;
  KeyedModule keyed;
  FrontEndStatus fe = buildKeyedModule(source, bufferName, options.variant,
                                       options.consts, keyed, error);
  if (fe != FrontEndStatus::Ok)
    return frontEndFailure(fe);
  attnc::GpuCompileOptions g;
  g.elementType = toInternal(options.dtype);
  g.headDim = options.headDim;
  g.valueDim = options.valueDim;
  if (options.tiling.mode == Tiling::Mode::Fixed && options.tiling.blockQ > 0)
    g.tileQ = options.tiling.blockQ;
  if (options.tiling.mode == Tiling::Mode::Fixed && options.tiling.blockKV > 0)
    g.tileKV = options.tiling.blockKV;
  g.chip = driver->chip();
  g.kernel = kernelKind;
  g.persistent = persistent;
  g.markKernel = markKernel;
  // The disk cache holds the PTX with its launch shape, keyed like CPU
  // objects (build, options with the chip, canonical IR); a hit skips MLIR
  // and leaves only the driver's JIT.
  std::string key = sha256Hex(
      "attn-kernel-key 1\nbuild " + std::string(ATTN_BUILD_ID) + "\noptions " +
      g.describe() + " target=nvptx\nir\n" + keyed.canonicalIR);
  attnc::GpuArtifact artifact;
  bool fromDisk = false;
  DiskCache::KeyLock lock;
  std::string lockError;
  bool useDisk = disk && disk->lock(key, lock, lockError);
  if (useDisk) {
    StoredKernel stored;
    std::string why;
    DiskCache::Lookup found = disk->read(key, stored, why);
    if (found == DiskCache::Lookup::Hit) {
      if (stored.build == ATTN_BUILD_ID && stored.options == g.describe() &&
          attnc::KernelSignature::fromText(stored.signature, artifact.signature,
                                           why) &&
          decodeGpuObject(stored.object, artifact)) {
        artifact.options = g;
        fromDisk = true;
        noteDiskHit(key);
      } else {
        found = DiskCache::Lookup::Corrupt;
      }
    }
    if (found == DiskCache::Lookup::Corrupt)
      dropCorruptEntry(key);
  }
  if (!fromDisk) {
    if (!attnc::GpuKernel::compileToPtx(*keyed.module, keyed.variant, g,
                                        artifact, error))
      return Status::Internal;
    StoredKernel stored;
    if (useDisk) {
      stored.variant = keyed.variant;
      stored.options = g.describe();
      stored.target = "nvptx " + g.chip;
      stored.build = ATTN_BUILD_ID;
      stored.signature = artifact.signature.toText();
      stored.object = encodeGpuObject(artifact);
    }
    noteCompile(key, stored, useDisk ? disk.get() : nullptr);
  }
  auto kernel = std::make_shared<Kernel::Impl>();
  kernel->key = key;
  kernel->signature = publicSignature(artifact.signature, options.dtype);
  kernel->signature.target = Target::NVPTX;
  kernel->gpu = attnc::GpuKernel::load(artifact, error);
  if (!kernel->gpu)
    return Status::Unavailable;
  {
    std::lock_guard<std::mutex> lock(mutex);
    byText[textKey] = kernel;
  }
  out = std::move(kernel);
  return Status::Ok;
}

Status attn::detail::readSourceFile(const std::string &path,
                                    std::string &source, std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read '" + path + "': " + std::strerror(errno);
    return Status::IOError;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    error = "cannot read '" + path + "'";
    return Status::IOError;
  }
  source = text.str();
  return Status::Ok;
}

namespace {

/// Runs `body`, turning escaping exceptions into statuses.
template <typename Fn> Status guarded(std::string &error, Fn &&body) {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    error = "out of memory";
    return Status::OutOfMemory;
  } catch (const std::exception &e) {
    error = std::string("internal error: ") + e.what();
    return Status::Internal;
  }
}

} // namespace

Status Runtime::compile(const std::string &source,
                        const CompileOptions &options, Kernel &out,
                        std::string &error) noexcept {
  KernelPtr kernel;
  Status status = guarded(error, [&] {
    return impl_->compile(source, "<source>", options, kernel, error);
  });
  if (status == Status::Ok)
    out = Kernel(std::move(kernel));
  return status;
}

Status Runtime::compileFile(const std::string &path,
                            const CompileOptions &options, Kernel &out,
                            std::string &error) noexcept {
  KernelPtr kernel;
  Status status = guarded(error, [&] {
    std::string source;
    Status read = readSourceFile(path, source, error);
    if (read != Status::Ok)
      return read;
    return impl_->compile(source, path, options, kernel, error);
  });
  if (status == Status::Ok)
    out = Kernel(std::move(kernel));
  return status;
}

Kernel Runtime::compile(const std::string &source,
                        const CompileOptions &options) {
  Kernel kernel;
  std::string error;
  Status status = compile(source, options, kernel, error);
  if (status != Status::Ok)
    throw Error(status, error);
  return kernel;
}

Kernel Runtime::compileFile(const std::string &path,
                            const CompileOptions &options) {
  Kernel kernel;
  std::string error;
  Status status = compileFile(path, options, kernel, error);
  if (status != Status::Ok)
    throw Error(status, error);
  return kernel;
}

Kernel attn::compile(const std::string &source, const CompileOptions &options) {
  return Runtime::global().compile(source, options);
}

Kernel attn::compileFile(const std::string &path,
                         const CompileOptions &options) {
  return Runtime::global().compileFile(path, options);
}
