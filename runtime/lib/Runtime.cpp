//===- Runtime.cpp - Compiling variants through the kernel cache ----------===//
//
// Runtime::compile, one path for every target and kernel kind, from fastest
// to slowest:
//   0. the options are checked and give the target's Backend (Backend.h),
//      which says what the key holds of them;
//   1. memory, by source text and options (no front end at all);
//   2. front end -> canonical IR -> key; memory, by key;
//   3. one thread per key goes on (others wait for its result), takes the
//      key's file lock (one process goes on, others wait), and
//   4. loads the disk entry (no MLIR passes, no code generation; an entry
//      that is not what it claims is removed), or
//   5. compiles (the backend), writes the entry, evicts for the cap, and
//      loads what it wrote.
//
// The key is the SHA-256 of: the canonical IR (generic form, no
// locations), the kernel kind, the backend's compile options and target
// (triple, CPU and features; or the GPU chip) and the compiler's build
// identity.
//
//===----------------------------------------------------------------------===//

#include "attn/attn.hpp"

#include "Backend.h"
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
  out.hasRowStats = s.normalization == "softmax" || s.normalization == "linear";
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

const std::string &Kernel::plan() const {
  if (!impl_)
    throw Error(Status::InvalidArgument, "the kernel handle is empty");
  return impl_->plan;
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
  if (a.rowStats) {
    if (k.gpu) {
      error = "the nvptx kernels do not save row statistics yet (kernel '" +
              k.signature.name + "'); request the LSE instead";
      return Status::InvalidArgument;
    }
    args.rowStats.emplace();
    if (!toView("the row statistics", *a.rowStats, *args.rowStats, error))
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
  case attnc::LaunchStatus::Unavailable:
    return Status::Unavailable;
  }
  return Status::Internal;
}

Status attn::detail::runBackwardKernel(const Kernel::Impl &k,
                                       const BackwardArgs &a,
                                       std::string &error) {
  if (!k.cpu || !k.signature.backward) {
    error = "kernel '" + k.signature.name +
            "' computes the forward pass: compile it with "
            "CompileOptions::backward for runBackward";
    return Status::InvalidArgument;
  }
  attnc::BackwardRunArgs args;
  if (!toView("Q", a.q, args.q, error) || !toView("K", a.k, args.k, error) ||
      !toView("V", a.v, args.v, error) || !toView("O", a.o, args.o, error) ||
      !toView("dO", a.dO, args.dO, error) ||
      !toView("dQ", a.dq, args.dq, error) ||
      !toView("dK", a.dk, args.dk, error) ||
      !toView("dV", a.dv, args.dv, error))
    return Status::InvalidArgument;
  if (a.rowStats) {
    args.rowStats.emplace();
    if (!toView("the row statistics", *a.rowStats, *args.rowStats, error))
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
  for (const auto &[name, grad] : a.paramGrads) {
    attnc::TensorView view;
    std::string what = "the gradient of param '" + name + "'";
    if (!toView(what.c_str(), grad, view, error))
      return Status::InvalidArgument;
    args.paramGrads[name] = std::move(view);
  }
  args.numThreads = a.threads;
  args.reuseTileSummaries = a.paramsUnchanged;
  switch (k.cpu->launchBackward(args, error)) {
  case attnc::LaunchStatus::Ok:
    return Status::Ok;
  case attnc::LaunchStatus::InvalidArguments:
    return Status::InvalidArgument;
  case attnc::LaunchStatus::KernelError:
    return Status::KernelError;
  case attnc::LaunchStatus::Unavailable:
    return Status::Unavailable;
  }
  return Status::Internal;
}

Status Kernel::runBackward(const BackwardArgs &args,
                           std::string &error) const noexcept {
  if (!impl_) {
    error = "the kernel handle is empty";
    return Status::InvalidArgument;
  }
  try {
    return runBackwardKernel(*impl_, args, error);
  } catch (const std::bad_alloc &) {
    error = "out of memory";
    return Status::OutOfMemory;
  } catch (...) {
    error = "internal error while running the backward kernel";
    return Status::Internal;
  }
}

void Kernel::runBackward(const BackwardArgs &args) const {
  std::string error;
  Status status = runBackward(args, error);
  if (status != Status::Ok)
    throw Error(status, error);
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
      " variant=" + o.variant + " backward=" + (o.backward ? "1" : "0") +
      " gpu=" + std::to_string(static_cast<int>(o.gpu.kernel)) + "," +
      (o.gpu.persistent ? "1" : "0") + "," + (o.gpu.markKernel ? "1" : "0") +
      "," + o.gpu.arch + " consts=";
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

  /// The one compile path, for every target and kernel kind (see the file
  /// comment).
  Status compile(const std::string &source, const std::string &bufferName,
                 const CompileOptions &options, KernelPtr &out,
                 std::string &error);
  /// The key's kernel, built by this thread (the single-flight leader):
  /// the disk entry under the key's file lock, else compileAndStore.
  Status build(const std::string &key, KeyedModule &keyed, Backend &backend,
               KernelPtr &out, std::string &error);
  /// Compiles, counts, stores in `store` (null: nowhere) and loads.
  Status compileAndStore(const std::string &key, KeyedModule &keyed,
                         Backend &backend, DiskCache *store, KernelPtr &out,
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

  // Disk-cache bookkeeping: this runtime's counters and the folder's.
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

Status Runtime::Impl::compileAndStore(const std::string &key,
                                      KeyedModule &keyed, Backend &backend,
                                      DiskCache *store, KernelPtr &out,
                                      std::string &error) {
  StoredKernel stored;
  Status status = backend.compile(keyed, stored, error);
  if (status != Status::Ok)
    return status;
  stored.variant = keyed.variant;
  stored.options = backend.optionsText();
  stored.target = backend.targetText();
  stored.build = ATTN_BUILD_ID;
  noteCompile(key, stored, store);
  // Loaded from what the cache stores: the entry's format is checked on
  // every compile, not only when a later process reads it.
  bool corrupt = false;
  status = backend.load(key, stored, out, error, corrupt);
  if (status != Status::Ok && corrupt)
    error = "internal error: cannot load the kernel just compiled: " + error;
  return status;
}

Status Runtime::Impl::build(const std::string &key, KeyedModule &keyed,
                            Backend &backend, KernelPtr &out,
                            std::string &error) {
  if (!disk)
    return compileAndStore(key, keyed, backend, nullptr, out, error);
  DiskCache::KeyLock lock;
  std::string lockError;
  if (!disk->lock(key, lock, lockError)) // unusable folder: memory only
    return compileAndStore(key, keyed, backend, nullptr, out, error);

  StoredKernel stored;
  std::string why;
  DiskCache::Lookup found = disk->read(key, stored, why);
  if (found == DiskCache::Lookup::Hit) {
    bool corrupt = true;
    if (stored.build != ATTN_BUILD_ID ||
        stored.options != backend.optionsText()) {
      why = "the manifest does not match the key";
    } else {
      Status status = backend.load(key, stored, out, why, corrupt);
      if (status == Status::Ok) {
        noteDiskHit(key);
        return Status::Ok;
      }
      if (!corrupt) { // the entry is fine; it cannot run here
        error = why;
        return status;
      }
    }
    found = DiskCache::Lookup::Corrupt;
  }
  if (found == DiskCache::Lookup::Corrupt)
    dropCorruptEntry(key);
  return compileAndStore(key, keyed, backend, disk.get(), out, error);
}

Status Runtime::Impl::compile(const std::string &source,
                              const std::string &bufferName,
                              const CompileOptions &options, KernelPtr &out,
                              std::string &error) {
  // Options first: they need no front end.
  std::unique_ptr<Backend> backend;
  Status checked = makeBackend(options, backend, error);
  if (checked != Status::Ok)
    return checked;

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
      "attn-kernel-key 2\nbuild " + std::string(ATTN_BUILD_ID) + "\nkind " +
      kernelKindName(backend->kind()) + "\ntarget " + backend->targetText() +
      "\noptions " + backend->optionsText() + "\nir\n" + keyed.canonicalIR);

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
    status = build(key, keyed, *backend, kernel, error);
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

const char *attn::detail::kernelKindName(KernelKind kind) {
  switch (kind) {
  case KernelKind::Forward:
    return "forward";
  case KernelKind::Backward:
    return "backward";
  }
  return "?";
}

Status attn::detail::makeBackend(const CompileOptions &options,
                                 std::unique_ptr<Backend> &out,
                                 std::string &error) {
  if (options.backward && options.target != Target::CPU) {
    error = "backward kernels run on the cpu target only for now";
    return Status::Unavailable;
  }
  switch (options.target) {
  case Target::CPU:
    return makeCpuBackend(options, out, error);
  case Target::NVPTX:
    return makeGpuBackend(options, out, error);
  }
  error = "unknown target " + std::to_string(static_cast<int>(options.target));
  return Status::InvalidArgument;
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
