//===- attn/attn.hpp - libattn's C++ API ------------------------*- C++ -*-===//
//
// Compile an attention variant written in the .attn language into a kernel
// for the host CPU (in process, through a kernel cache on disk and in
// memory) and run it on your own buffers:
//
//   attn::CompileOptions opts;
//   opts.variant = "alibi";
//   attn::Kernel kernel = attn::compile(source, opts);
//   attn::RunArgs args;
//   args.q = attn::Tensor::contiguous(q.data(), attn::DType::F32, {B, H, L,
//   D});
//   ...
//   args.params["slopes"] = attn::Tensor::contiguous(s.data(),
//   attn::DType::F32, {H}); kernel.run(args);
//
// Failures throw attn::Error (a std::runtime_error with a Status and a
// one-line message; language errors carry the located diagnostics). Every
// call is thread-safe; a Kernel is a cheap, shareable handle. C++17, no MLIR
// or LLVM types.
//
//===----------------------------------------------------------------------===//
#ifndef ATTN_ATTN_HPP
#define ATTN_ATTN_HPP

#include "attn/attn_types.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace attn {

/// Element types. Q, K, V and O are F32 or F16; LSE is F32; params are
/// F32, I32 or Bool (one byte per element).
enum class DType { F32, F16, I32, Bool, BF16 };
/// NumPy's name: "float32", "float16", "int32", "bool".
ATTN_API const char *dtypeName(DType dtype);

enum class Target { CPU, NVPTX };

/// The same codes as the C API's attn_status.
enum class Status {
  Ok = ATTN_OK,
  InvalidArgument = ATTN_ERROR_INVALID_ARGUMENT,
  CompileError = ATTN_ERROR_COMPILE,
  Unavailable = ATTN_ERROR_UNAVAILABLE,
  KernelError = ATTN_ERROR_KERNEL,
  IOError = ATTN_ERROR_IO,
  Internal = ATTN_ERROR_INTERNAL,
  OutOfMemory = ATTN_ERROR_OUT_OF_MEMORY,
};

class ATTN_API Error : public std::runtime_error {
public:
  Error(Status status, const std::string &message);
  Status status() const noexcept { return status_; }

private:
  Status status_;
};

/// A strided view of a tensor in host memory; libattn never copies data.
struct Tensor {
  void *data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides; // in elements; empty: C-contiguous

  static Tensor contiguous(void *data, DType dtype,
                           std::vector<int64_t> shape) {
    Tensor t;
    t.data = data;
    t.dtype = dtype;
    t.shape = std::move(shape);
    return t;
  }
};

/// How the kernel is blocked. Reference is the plain loop kernel (single
/// threaded, any head dims). The tiled kernel (vectorised, multi-threaded)
/// is specialised for the head dims D and Dv, so it needs
/// CompileOptions::headDim/valueDim: Auto picks it with 64 x 64 tiles when
/// they are given and the reference kernel otherwise; Fixed asks for it
/// with explicit tile sizes.
struct Tiling {
  enum class Mode { Auto, Reference, Fixed };
  Mode mode = Mode::Auto;
  int64_t blockQ = 0, blockKV = 0; // Fixed only

  static Tiling automatic() { return {}; }
  static Tiling reference() { return {Mode::Reference, 0, 0}; }
  static Tiling fixed(int64_t blockQ, int64_t blockKV) {
    return {Mode::Fixed, blockQ, blockKV};
  }
};

/// What an nvptx kernel is; like every option, part of the kernel's
/// identity (the cache key). `attnc --emit=plan --target nvptx` shows what
/// they choose, and why.
struct GpuOptions {
  /// Auto: wgmma on Hopper for head dims 64, 128, 192 and 256, else Mma
  /// for F16 and BF16 where it applies (head dims multiples of 16 up to
  /// 256), else Simt. Mma: tensor cores through mma.sync (sm_80 and
  /// later); Wgmma: Hopper's warpgroup MMA (sm_90, head dims multiples of
  /// 64 up to 256); Simt: one thread per query row (any dtype and dims).
  enum class Kernel { Auto, Mma, Wgmma, Simt };
  Kernel kernel = Kernel::Auto;
  /// Data-dependent masks on Hopper: a persistent wgmma kernel where its
  /// shared memory fits (off by default: measured slower on the H100).
  bool persistent = false;
  /// Data-dependent masks: a mark kernel, launched first, works out each
  /// q-tile's live kv-tiles once per launch (false: every block does).
  bool markKernel = true;
  /// The GPU to compile for: "sm_80", "sm_90", ...; empty: device 0's
  /// (which needs a CUDA driver to compile). A kernel for a given arch
  /// needs no driver until it runs: it loads at its first run, and a run
  /// without a driver is Status::Unavailable.
  std::string arch;
};

struct CompileOptions {
  Target target = Target::CPU;
  DType dtype = DType::F32; // of Q, K, V and O: F32 or F16
  std::string variant;      // empty: the source's only attention block
  /// Values for `const param`s: part of the kernel's identity.
  std::map<std::string, double> consts;
  Tiling tiling;
  /// The head dimensions D and Dv the kernel is specialised for; 0 for
  /// unknown. A kernel specialised for them rejects other head dims.
  int64_t headDim = 0, valueDim = 0;
  /// Compile the backward pass that the compiler derives from the variant:
  /// the kernel is run with Kernel::runBackward and computes the gradients
  /// of Q, K, V and the f32 params (CPU target; the tiled kernel takes
  /// 64 x 64 tiles unless Tiling::fixed says otherwise).
  bool backward = false;
  /// Target::NVPTX only.
  GpuOptions gpu;
};

/// One dimension of a tensor param's declared shape.
struct Dim {
  enum class Kind { Size, Literal, Dynamic };
  Kind kind = Kind::Dynamic;
  std::string size;  // Kind::Size: "B", "H", "Hkv", "Lq", "Lkv", "D", "Dv"
  int64_t value = 0; // Kind::Literal
};

struct ParamInfo {
  std::string name;
  DType dtype = DType::F32; // F32, I32 or Bool
  bool isConst = false;     // baked into the kernel; not passed at run time
  bool isTensor = false;
  std::vector<Dim> dims;       // tensors only
  std::optional<double> value; // a runtime scalar's default, a const's value
  std::string declaredType;    // as written: "f32[H]", "i32"
};

/// What a kernel takes.
struct Signature {
  std::string name;
  std::string normalization; // softmax, sigmoid, relu, linear
  bool hasSink = false;
  bool definesLSE = false; // an LSE output may be requested
  /// The forward can save row statistics for the backward (RunArgs::
  /// rowStats): softmax (the LSE) and linear (the row sums of the scores).
  bool hasRowStats = false;
  bool backward = false;    // compiled for the backward pass
  DType dtype = DType::F32; // of Q, K, V and O
  Target target = Target::CPU;
  std::vector<ParamInfo> params; // declaration order, const ones too

  /// The param named `name`, or null.
  ATTN_API const ParamInfo *param(const std::string &name) const;
};

using ParamValue = std::variant<double, Tensor>;

struct RunArgs {
  Tensor q, k, v, o; // [B,H,Lq,D], [B,Hkv,Lkv,D], [B,Hkv,Lkv,Dv], [B,H,Lq,Dv]
  std::optional<Tensor> lse; // [B, H, Lq] float32
  /// [B, H, Lq] float32: the row statistics a backward run needs
  /// (Signature::hasRowStats): the LSE for softmax (the same as `lse`: give
  /// one of them), the row sums of the scores for linear. CPU kernels.
  std::optional<Tensor> rowStats;
  std::map<std::string, ParamValue> params; // runtime params by name
  int threads = 0;        // CPU worker threads; 0: the kernel chooses
  void *stream = nullptr; // CUDA stream for nvptx kernels
  /// True promises that the rank-1 integer tensor params (document ids,
  /// block masks) hold what they held in this thread's previous run with
  /// the same buffers: the tiled CPU kernel then reuses its per-tile
  /// summaries of them instead of recomputing them (O(length)).
  bool paramsUnchanged = false;
  /// nvptx kernels: return once the launch is queued on `stream` instead of
  /// waiting for it. Errors the kernel finds in the data (an out-of-range
  /// param read, an integer division by zero) are then reported once, by
  /// Kernel::synchronize() or by the kernel's next synchronous run that
  /// passes its argument checks (which then does not run); a queued run on
  /// another stream than the pending ones first waits for them the same
  /// way. The error state belongs to the compiled kernel, shared by every
  /// handle of it. The tensors must stay valid until the stream has run
  /// the kernel. CPU kernels ignore it (a run always finishes first).
  bool async = false;
};

/// The arguments of a backward run (a kernel compiled with
/// CompileOptions::backward). Given dO = dL/dO for a loss L, it writes
/// dQ, dK, dV (the shapes and dtype of Q, K, V) and the requested param
/// gradients (float32, the param's shape; [] or [1] for a scalar). Every
/// f32 runtime param has a gradient; i32, bool and const params have none.
struct BackwardArgs {
  Tensor q, k, v, o, dO; // the forward's inputs and output; dO of O's shape
  /// The forward's row statistics (RunArgs::rowStats): required for softmax
  /// and linear, rejected for sigmoid and relu.
  std::optional<Tensor> rowStats;
  Tensor dq, dk, dv;
  std::map<std::string, ParamValue> params; // as for the forward
  std::map<std::string, Tensor> paramGrads; // gradients to write, by name
  int threads = 0; // 0: the kernel chooses; the gradients are the same bits
                   // from run to run for a given thread count
  bool paramsUnchanged = false; // as RunArgs::paramsUnchanged
};

/// A compiled kernel: a cheap, copyable handle, usable from any thread.
class ATTN_API Kernel {
public:
  Kernel();
  ~Kernel();
  Kernel(const Kernel &);
  Kernel &operator=(const Kernel &);

  /// False for a default-constructed handle.
  explicit operator bool() const { return impl_ != nullptr; }

  const Signature &signature() const;
  /// The cache key: SHA-256 (hex) of the canonical IR, options, target and
  /// compiler build.
  const std::string &key() const;
  /// What the compiler chose and why, for people (several lines): an
  /// nvptx kernel's plan (kind, block shape, shared memory, persistence,
  /// mark kernel), a CPU kernel's lowering and tiles.
  const std::string &plan() const;

  /// Checks every tensor and param against the signature and runs the
  /// kernel; throws Error on failure.
  void run(const RunArgs &args) const;
  /// The same without exceptions: Status::Ok, or a code and `error`.
  Status run(const RunArgs &args, std::string &error) const noexcept;
  /// Backward kernels (CompileOptions::backward): checks every tensor,
  /// param and gradient and writes the gradients; throws Error on failure
  /// (InvalidArgument for a dO that is not of O's shape, missing row
  /// statistics, the gradient of an i32, bool, const or unknown param).
  void runBackward(const BackwardArgs &args) const;
  Status runBackward(const BackwardArgs &args,
                     std::string &error) const noexcept;
  /// After asynchronous runs (RunArgs::async): waits for the device and
  /// reports an error the kernel found in them since the last report (the
  /// last one written, if several) as Status::KernelError; throws Error on
  /// failure. Returns at once when none are pending, and for CPU kernels.
  void synchronize() const;
  Status synchronize(std::string &error) const noexcept;

  struct Impl;

private:
  explicit Kernel(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
  friend class Runtime;
};

/// Where and whether compiled kernels are kept on disk.
struct CacheConfig {
  bool diskCache = true;
  std::string dir;                       // empty: the default folder
  uint64_t maxBytes = uint64_t(1) << 30; // size cap, LRU eviction

  /// ATTN_CACHE=0 (off), ATTN_CACHE_DIR, ATTN_CACHE_MAX_BYTES; the default
  /// folder is $XDG_CACHE_HOME/attnc, else ~/.cache/attnc.
  ATTN_API static CacheConfig fromEnvironment();
};

struct CacheStats {
  uint64_t compiles = 0;       // MLIR pipelines + LLVM code generation
  uint64_t memoryHits = 0;     // kernels found in memory
  uint64_t diskHits = 0;       // kernels loaded from disk
  uint64_t diskWrites = 0;     // entries written to disk
  uint64_t evictions = 0;      // entries evicted for the size cap
  uint64_t corruptEntries = 0; // damaged entries removed and rebuilt
};

/// One entry of the disk cache.
struct CacheEntry {
  std::string key;
  std::string variant;
  std::string options; // "dtype=f32 lowering=reference"
  uint64_t bytes = 0;
  int64_t lastUsed = 0; // Unix time
  int64_t created = 0;  // Unix time
};

/// What Runtime::clearCache removed from the disk cache, and what not.
struct CacheClearReport {
  uint64_t entries = 0; // entries removed
  uint64_t bytes = 0;   // their size
  /// One line per entry or file left behind, saying why ("cannot remove
  /// '.../KEY.o': Read-only file system", "entry KEY: in use by another
  /// process").
  std::vector<std::string> failures;
};

/// Compiles variants and keeps the kernels: in memory (per runtime) and on
/// disk (shared by every process using the folder). Thread-safe.
class ATTN_API Runtime {
public:
  explicit Runtime(const CacheConfig &config = CacheConfig::fromEnvironment());
  ~Runtime();
  Runtime(const Runtime &) = delete;
  Runtime &operator=(const Runtime &) = delete;

  /// The process-wide runtime, configured from the environment on first use.
  static Runtime &global();

  /// Compiles .attn source text (diagnostics call it `<source>`), or the
  /// file at `path`. Concurrent requests for one kernel compile it once.
  Kernel compile(const std::string &source, const CompileOptions &options = {});
  Kernel compileFile(const std::string &path,
                     const CompileOptions &options = {});
  /// The same without exceptions: Status::Ok and `out`, or a code and
  /// `error`.
  Status compile(const std::string &source, const CompileOptions &options,
                 Kernel &out, std::string &error) noexcept;
  Status compileFile(const std::string &path, const CompileOptions &options,
                     Kernel &out, std::string &error) noexcept;

  const CacheConfig &cacheConfig() const;
  /// The folder holding this runtime's entries (inside config().dir).
  std::string cacheFolder() const;
  /// What this runtime did.
  CacheStats stats() const;
  /// The totals of every process that used the disk cache folder.
  CacheStats diskStats() const;
  /// The disk cache's entries, least recently used first.
  std::vector<CacheEntry> diskEntries() const;
  /// Removes every disk entry (and the totals) and the kernels in memory;
  /// kernels already handed out stay valid. Throws Error(IOError) naming
  /// what it could not remove (a read-only folder, an entry another process
  /// is using), after removing everything it could.
  void clearCache();
  /// The same without exceptions: Status::Ok, or IOError with `error`;
  /// `report` says what was removed and what was not.
  Status clearCache(CacheClearReport &report, std::string &error) noexcept;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

/// Runtime::global().compile / compileFile.
ATTN_API Kernel compile(const std::string &source,
                        const CompileOptions &options = {});
ATTN_API Kernel compileFile(const std::string &path,
                            const CompileOptions &options = {});

/// "attnc 0.1 (build 3f2a..., LLVM 22.1.x)".
ATTN_API const char *version();
/// The compiler's build identity that cache keys include.
ATTN_API const char *buildId();

} // namespace attn

#endif // ATTN_ATTN_HPP
