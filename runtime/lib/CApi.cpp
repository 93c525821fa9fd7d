//===- CApi.cpp - libattn's C API over the C++ API ------------------------===//
//
// Every entry point runs its body inside `guard`, which turns attn::Error,
// std::bad_alloc and anything else into a status and the calling thread's
// last-error message: no exception crosses the C boundary.
//
// Handles are checked, not trusted: each starts with a tag, its type's
// magic word while it lives. A destroyed handle is not freed but emptied,
// tagged dead and kept in its type's pool, so a stale handle (used after
// release, released twice, or of another type) reads a wrong tag, which is
// an ATTN_ERROR_INVALID_ARGUMENT, and reading it is never a use after
// free. A pool reuses its oldest empty handle only once kQuarantine newer
// ones wait behind it; a handle used after that many later destroys of its
// type may alias a new one (undefined, as documented in attn.h).
//
//===----------------------------------------------------------------------===//

#include "attn/attn.h"
#include "attn/attn.hpp"

#include "EnumCode.h"

#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <vector>

using namespace attn;
using attn::detail::enumCode;

namespace {
/// A dead handle's tag; live ones carry their type's magic word.
constexpr uint64_t kDeadTag = 0x646561642d617474ull; // "dead-att"
} // namespace

struct attn_runtime {
  static constexpr uint64_t kMagic = 0x61746e2d72756e74ull; // "atn-runt"
  uint64_t tag = kDeadTag;
  std::unique_ptr<Runtime> owned; // null: the global runtime
  Runtime &get() { return owned ? *owned : Runtime::global(); }
};

struct attn_compile_options {
  static constexpr uint64_t kMagic = 0x61746e2d6f707473ull; // "atn-opts"
  uint64_t tag = kDeadTag;
  CompileOptions options;
};

struct attn_kernel {
  static constexpr uint64_t kMagic = 0x61746e2d6b726e6cull; // "atn-krnl"
  uint64_t tag = kDeadTag;
  Kernel kernel;
  std::vector<std::vector<attn_dim>> dims; // per param, for attn_param_info
};

struct attn_run_args {
  static constexpr uint64_t kMagic = 0x61746e2d61726773ull; // "atn-args"
  uint64_t tag = kDeadTag;
  RunArgs args;
};

struct attn_backward_args {
  BackwardArgs args;
};

namespace {

/// Destroyed handles waiting (empty) before their memory is reused.
constexpr size_t kQuarantine = 1024;

/// The handles of one type: made live from the oldest quarantined shell
/// or the heap, destroyed into the quarantine. Never destroyed itself, so
/// that handles stay checkable until the process ends.
template <typename T> class HandlePool {
public:
  static HandlePool &get() {
    static HandlePool *pool = new HandlePool();
    return *pool;
  }
  T *make() {
    T *handle = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (quarantine.size() > kQuarantine) {
        handle = quarantine.front();
        quarantine.pop_front();
      }
    }
    if (!handle)
      handle = new T();
    handle->tag = T::kMagic;
    return handle;
  }
  /// Empties a live handle (its resources released now) and quarantines it.
  void destroy(T *handle) {
    handle->~T();
    new (handle) T(); // tagged dead, holding nothing
    std::lock_guard<std::mutex> lock(mutex);
    quarantine.push_back(handle);
  }

private:
  std::mutex mutex;
  std::deque<T *> quarantine;
};

/// Whether `handle` is a live T: its first 8 bytes (every handle has at
/// least those) are T's magic word.
template <typename T> bool isLive(const T *handle) {
  uint64_t tag;
  std::memcpy(&tag, static_cast<const void *>(handle), sizeof tag);
  return tag == T::kMagic;
}

thread_local std::string lastError;

attn_status fail(attn_status status, const std::string &message) {
  lastError = message;
  return status;
}

template <typename Fn> attn_status guard(Fn &&body) {
  try {
    lastError.clear();
    return body();
  } catch (const Error &e) {
    return fail(static_cast<attn_status>(e.status()), e.what());
  } catch (const std::bad_alloc &) {
    return fail(ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception &e) {
    return fail(ATTN_ERROR_INTERNAL,
                std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(ATTN_ERROR_INTERNAL, "internal error");
  }
}

attn_status nullArgument(const char *function, const char *what) {
  return fail(ATTN_ERROR_INVALID_ARGUMENT,
              std::string(function) + ": " + what + " is null");
}

attn_status staleHandle(const char *function, const char *what) {
  return fail(ATTN_ERROR_INVALID_ARGUMENT,
              std::string(function) + ": " + what +
                  " is not a live handle (already released or destroyed, or "
                  "not made by libattn)");
}

/// ATTN_OK for a live handle, else the error (null, or not live).
template <typename T>
attn_status checkHandle(const char *function, const char *what,
                        const T *handle) {
  if (!handle)
    return nullArgument(function, what);
  return isLive(handle) ? ATTN_OK : staleHandle(function, what);
}

/// The same for handles where null means a default (runtime, options).
template <typename T>
attn_status checkOptionalHandle(const char *function, const char *what,
                                const T *handle) {
  return !handle || isLive(handle) ? ATTN_OK : staleHandle(function, what);
}

/// Destroys a live handle; a stale one is left alone and reported in
/// attn_last_error (the destroy functions return nothing, and otherwise
/// leave the last error as it was).
template <typename T> void destroyHandle(const char *function, T *handle) {
  if (!handle)
    return;
  if (!isLive(handle)) {
    staleHandle(function, "the handle");
    return;
  }
  HandlePool<T>::get().destroy(handle);
}

/// An attn_dtype code (enumCode) as a DType; false for an unknown one.
bool toDType(int code, DType &out) {
  switch (code) {
  case ATTN_F32:
    out = DType::F32;
    return true;
  case ATTN_F16:
    out = DType::F16;
    return true;
  case ATTN_I32:
    out = DType::I32;
    return true;
  case ATTN_BOOL:
    out = DType::Bool;
    return true;
  case ATTN_BF16:
    out = DType::BF16;
    return true;
  }
  return false;
}

attn_dtype toC(DType d) {
  switch (d) {
  case DType::F32:
    return ATTN_F32;
  case DType::F16:
    return ATTN_F16;
  case DType::I32:
    return ATTN_I32;
  case DType::Bool:
    return ATTN_BOOL;
  case DType::BF16:
    return ATTN_BF16;
  }
  return ATTN_F32;
}

/// Copies a C tensor descriptor; the data pointer is only borrowed.
attn_status toTensor(const char *function, const char *what,
                     const attn_tensor *t, Tensor &out) {
  if (!t)
    return nullArgument(function, what);
  if (t->rank < 0 || t->rank > 16 || (t->rank > 0 && !t->shape))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                std::string(function) + ": " + what +
                    " has an invalid rank or a null shape");
  if (!toDType(enumCode(t->dtype), out.dtype))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                std::string(function) + ": " + what +
                    " has an unknown dtype code " +
                    std::to_string(enumCode(t->dtype)));
  out.data = t->data;
  out.shape.assign(t->shape, t->shape + t->rank);
  if (t->strides)
    out.strides.assign(t->strides, t->strides + t->rank);
  else
    out.strides.clear();
  return ATTN_OK;
}

attn_status compileWith(attn_runtime *runtime, const char *function,
                        const char *text, bool isPath,
                        const attn_compile_options *options,
                        attn_kernel **out) {
  return guard([&] {
    if (!out)
      return nullArgument(function, "out");
    *out = nullptr;
    if (!text)
      return nullArgument(function, isPath ? "path" : "source");
    if (attn_status s = checkOptionalHandle(function, "runtime", runtime))
      return s;
    if (attn_status s = checkOptionalHandle(function, "options", options))
      return s;
    Runtime &rt = runtime ? runtime->get() : Runtime::global();
    CompileOptions defaults;
    const CompileOptions &opts = options ? options->options : defaults;
    Kernel kernel =
        isPath ? rt.compileFile(text, opts) : rt.compile(text, opts);
    std::vector<std::vector<attn_dim>> allDims;
    for (const ParamInfo &p : kernel.signature().params) {
      std::vector<attn_dim> dims;
      for (const Dim &d : p.dims)
        dims.push_back({d.kind == Dim::Kind::Size      ? ATTN_DIM_SIZE
                        : d.kind == Dim::Kind::Literal ? ATTN_DIM_LITERAL
                                                       : ATTN_DIM_DYNAMIC,
                        d.kind == Dim::Kind::Dynamic ? 0 : d.value});
      allDims.push_back(std::move(dims));
    }
    attn_kernel *handle = HandlePool<attn_kernel>::get().make();
    handle->kernel = kernel;
    handle->dims = std::move(allDims);
    *out = handle;
    return ATTN_OK;
  });
}

} // namespace

extern "C" {

const char *attn_last_error(void) { return lastError.c_str(); }

const char *attn_version(void) { return attn::version(); }

attn_status attn_runtime_create(attn_runtime **out) {
  return guard([&] {
    if (!out)
      return nullArgument("attn_runtime_create", "out");
    auto owned = std::make_unique<Runtime>(CacheConfig::fromEnvironment());
    attn_runtime *rt = HandlePool<attn_runtime>::get().make();
    rt->owned = std::move(owned);
    *out = rt;
    return ATTN_OK;
  });
}

attn_status attn_runtime_create_with_cache(const char *cache_dir,
                                           int disk_cache, uint64_t max_bytes,
                                           attn_runtime **out) {
  return guard([&] {
    if (!out)
      return nullArgument("attn_runtime_create_with_cache", "out");
    CacheConfig config;
    config.diskCache = disk_cache != 0;
    config.dir = cache_dir ? cache_dir : "";
    config.maxBytes = max_bytes;
    auto owned = std::make_unique<Runtime>(config);
    attn_runtime *rt = HandlePool<attn_runtime>::get().make();
    rt->owned = std::move(owned);
    *out = rt;
    return ATTN_OK;
  });
}

void attn_runtime_destroy(attn_runtime *runtime) {
  destroyHandle("attn_runtime_destroy", runtime);
}

attn_status attn_runtime_stats(const attn_runtime *runtime,
                               attn_cache_stats *out) {
  return guard([&] {
    if (!out)
      return nullArgument("attn_runtime_stats", "out");
    if (attn_status s =
            checkOptionalHandle("attn_runtime_stats", "runtime", runtime))
      return s;
    const Runtime &rt = runtime ? const_cast<attn_runtime *>(runtime)->get()
                                : Runtime::global();
    CacheStats s = rt.stats();
    *out = {s.compiles,   s.memoryHits, s.diskHits,
            s.diskWrites, s.evictions,  s.corruptEntries};
    return ATTN_OK;
  });
}

attn_status attn_runtime_clear_cache(attn_runtime *runtime) {
  return guard([&] {
    if (attn_status s =
            checkOptionalHandle("attn_runtime_clear_cache", "runtime", runtime))
      return s;
    (runtime ? runtime->get() : Runtime::global()).clearCache();
    return ATTN_OK;
  });
}

attn_status attn_compile_options_create(attn_compile_options **out) {
  return guard([&] {
    if (!out)
      return nullArgument("attn_compile_options_create", "out");
    *out = HandlePool<attn_compile_options>::get().make();
    return ATTN_OK;
  });
}

void attn_compile_options_destroy(attn_compile_options *options) {
  destroyHandle("attn_compile_options_destroy", options);
}

attn_status attn_compile_options_set_target(attn_compile_options *options,
                                            attn_target target) {
  return guard([&] {
    if (attn_status s =
            checkHandle("attn_compile_options_set_target", "options", options))
      return s;
    int code = enumCode(target);
    if (code != ATTN_TARGET_CPU && code != ATTN_TARGET_NVPTX)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_compile_options_set_target: unknown target code " +
                      std::to_string(code));
    options->options.target =
        code == ATTN_TARGET_CPU ? Target::CPU : Target::NVPTX;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_dtype(attn_compile_options *options,
                                           attn_dtype dtype) {
  return guard([&] {
    if (attn_status s =
            checkHandle("attn_compile_options_set_dtype", "options", options))
      return s;
    DType d;
    if (!toDType(enumCode(dtype), d) ||
        (d != DType::F32 && d != DType::F16 && d != DType::BF16))
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_compile_options_set_dtype: kernels take ATTN_F32, "
                  "ATTN_F16 or ATTN_BF16 tensors, got code " +
                      std::to_string(enumCode(dtype)));
    options->options.dtype = d;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_variant(attn_compile_options *options,
                                             const char *name) {
  return guard([&] {
    if (attn_status s =
            checkHandle("attn_compile_options_set_variant", "options", options))
      return s;
    options->options.variant = name ? name : "";
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_const(attn_compile_options *options,
                                           const char *name, double value) {
  return guard([&] {
    if (attn_status s =
            checkHandle("attn_compile_options_set_const", "options", options))
      return s;
    if (!name)
      return nullArgument("attn_compile_options_set_const", "name");
    options->options.consts[name] = value;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_tiling(attn_compile_options *options,
                                            attn_tiling tiling, int64_t block_q,
                                            int64_t block_kv) {
  return guard([&] {
    if (attn_status s =
            checkHandle("attn_compile_options_set_tiling", "options", options))
      return s;
    Tiling t;
    int code = enumCode(tiling);
    if (code == ATTN_TILING_AUTO)
      t = Tiling::automatic();
    else if (code == ATTN_TILING_REFERENCE)
      t = Tiling::reference();
    else if (code == ATTN_TILING_FIXED)
      t = Tiling::fixed(block_q, block_kv);
    else
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_compile_options_set_tiling: unknown tiling code " +
                      std::to_string(code));
    options->options.tiling = t;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_head_dims(attn_compile_options *options,
                                               int64_t head_dim,
                                               int64_t value_dim) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_compile_options_set_head_dims",
                                    "options", options))
      return s;
    if (head_dim < 0 || value_dim < 0)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_compile_options_set_head_dims: head dims must be "
                  "positive (or 0 for unknown), got " +
                      std::to_string(head_dim) + " and " +
                      std::to_string(value_dim));
    options->options.headDim = head_dim;
    options->options.valueDim = value_dim;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_backward(attn_compile_options *options,
                                              int backward) {
  return guard([&] {
    if (!options)
      return nullArgument("attn_compile_options_set_backward", "options");
    options->options.backward = backward != 0;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_gpu_kernel(attn_compile_options *options,
                                                attn_gpu_kernel kernel) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_compile_options_set_gpu_kernel",
                                    "options", options))
      return s;
    GpuOptions::Kernel k;
    int code = enumCode(kernel);
    switch (code) {
    case ATTN_GPU_KERNEL_AUTO:
      k = GpuOptions::Kernel::Auto;
      break;
    case ATTN_GPU_KERNEL_MMA:
      k = GpuOptions::Kernel::Mma;
      break;
    case ATTN_GPU_KERNEL_WGMMA:
      k = GpuOptions::Kernel::Wgmma;
      break;
    case ATTN_GPU_KERNEL_SIMT:
      k = GpuOptions::Kernel::Simt;
      break;
    default:
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_compile_options_set_gpu_kernel: unknown kernel code " +
                      std::to_string(code));
    }
    options->options.gpu.kernel = k;
    return ATTN_OK;
  });
}

attn_status
attn_compile_options_set_gpu_persistent(attn_compile_options *options,
                                        int persistent) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_compile_options_set_gpu_persistent",
                                    "options", options))
      return s;
    options->options.gpu.persistent = persistent != 0;
    return ATTN_OK;
  });
}

attn_status
attn_compile_options_set_gpu_mark_kernel(attn_compile_options *options,
                                         int mark_kernel) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_compile_options_set_gpu_mark_kernel",
                                    "options", options))
      return s;
    options->options.gpu.markKernel = mark_kernel != 0;
    return ATTN_OK;
  });
}

attn_status attn_compile_options_set_gpu_arch(attn_compile_options *options,
                                              const char *arch) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_compile_options_set_gpu_arch",
                                    "options", options))
      return s;
    options->options.gpu.arch = arch ? arch : "";
    return ATTN_OK;
  });
}

attn_status attn_compile(attn_runtime *runtime, const char *source,
                         const attn_compile_options *options,
                         attn_kernel **out) {
  return compileWith(runtime, "attn_compile", source, false, options, out);
}

attn_status attn_compile_file(attn_runtime *runtime, const char *path,
                              const attn_compile_options *options,
                              attn_kernel **out) {
  return compileWith(runtime, "attn_compile_file", path, true, options, out);
}

void attn_kernel_release(attn_kernel *kernel) {
  destroyHandle("attn_kernel_release", kernel);
}

namespace {
/// The signature of a live kernel handle, else null.
const Signature *signatureOf(const attn_kernel *kernel) {
  return kernel && isLive(kernel) ? &kernel->kernel.signature() : nullptr;
}
} // namespace

const char *attn_kernel_name(const attn_kernel *kernel) {
  const Signature *sig = signatureOf(kernel);
  return sig ? sig->name.c_str() : nullptr;
}

const char *attn_kernel_normalization(const attn_kernel *kernel) {
  const Signature *sig = signatureOf(kernel);
  return sig ? sig->normalization.c_str() : nullptr;
}

const char *attn_kernel_key(const attn_kernel *kernel) {
  return signatureOf(kernel) ? kernel->kernel.key().c_str() : nullptr;
}

const char *attn_kernel_plan(const attn_kernel *kernel) {
  return signatureOf(kernel) ? kernel->kernel.plan().c_str() : nullptr;
}

attn_dtype attn_kernel_dtype(const attn_kernel *kernel) {
  const Signature *sig = signatureOf(kernel);
  return sig ? toC(sig->dtype) : ATTN_F32;
}

int attn_kernel_defines_lse(const attn_kernel *kernel) {
  const Signature *sig = signatureOf(kernel);
  return sig && sig->definesLSE ? 1 : 0;
}

int attn_kernel_is_backward(const attn_kernel *kernel) {
  return kernel && kernel->kernel.signature().backward ? 1 : 0;
}

int attn_kernel_has_row_stats(const attn_kernel *kernel) {
  return kernel && kernel->kernel.signature().hasRowStats ? 1 : 0;
}

size_t attn_kernel_num_params(const attn_kernel *kernel) {
  const Signature *sig = signatureOf(kernel);
  return sig ? sig->params.size() : 0;
}

attn_status attn_kernel_param(const attn_kernel *kernel, size_t index,
                              attn_param_info *out) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_kernel_param", "kernel", kernel))
      return s;
    if (!out)
      return nullArgument("attn_kernel_param", "out");
    const Signature &sig = kernel->kernel.signature();
    if (index >= sig.params.size())
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_kernel_param: index " + std::to_string(index) +
                      " is out of range (variant '" + sig.name + "' has " +
                      std::to_string(sig.params.size()) + " params)");
    const ParamInfo &p = sig.params[index];
    out->name = p.name.c_str();
    out->dtype = toC(p.dtype);
    out->is_const = p.isConst;
    out->is_tensor = p.isTensor;
    out->rank = static_cast<int32_t>(p.dims.size());
    out->dims =
        kernel->dims[index].empty() ? nullptr : kernel->dims[index].data();
    out->has_value = p.value.has_value();
    out->value = p.value.value_or(0.0);
    out->declared_type = p.declaredType.c_str();
    return ATTN_OK;
  });
}

attn_status attn_run_args_create(attn_run_args **out) {
  return guard([&] {
    if (!out)
      return nullArgument("attn_run_args_create", "out");
    *out = HandlePool<attn_run_args>::get().make();
    return ATTN_OK;
  });
}

void attn_run_args_destroy(attn_run_args *args) {
  destroyHandle("attn_run_args_destroy", args);
}

attn_status attn_run_args_set_tensors(attn_run_args *args, const attn_tensor *q,
                                      const attn_tensor *k,
                                      const attn_tensor *v,
                                      const attn_tensor *o,
                                      const attn_tensor *lse) {
  return guard([&] {
    const char *fn = "attn_run_args_set_tensors";
    if (attn_status s = checkHandle(fn, "args", args))
      return s;
    RunArgs next = args->args;
    attn_status s;
    if ((s = toTensor(fn, "Q", q, next.q)) != ATTN_OK ||
        (s = toTensor(fn, "K", k, next.k)) != ATTN_OK ||
        (s = toTensor(fn, "V", v, next.v)) != ATTN_OK ||
        (s = toTensor(fn, "O", o, next.o)) != ATTN_OK)
      return s;
    if (lse) {
      Tensor t;
      if ((s = toTensor(fn, "LSE", lse, t)) != ATTN_OK)
        return s;
      next.lse = t;
    } else {
      next.lse.reset();
    }
    args->args = std::move(next);
    return ATTN_OK;
  });
}

attn_status attn_run_args_set_row_stats(attn_run_args *args,
                                        const attn_tensor *stats) {
  return guard([&] {
    const char *fn = "attn_run_args_set_row_stats";
    if (!args)
      return nullArgument(fn, "args");
    if (!stats) {
      args->args.rowStats.reset();
      return ATTN_OK;
    }
    Tensor t;
    attn_status s = toTensor(fn, "the row statistics", stats, t);
    if (s != ATTN_OK)
      return s;
    args->args.rowStats = std::move(t);
    return ATTN_OK;
  });
}

attn_status attn_run_args_set_scalar(attn_run_args *args, const char *name,
                                     double value) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_run_args_set_scalar", "args", args))
      return s;
    if (!name)
      return nullArgument("attn_run_args_set_scalar", "name");
    args->args.params[name] = value;
    return ATTN_OK;
  });
}

attn_status attn_run_args_set_tensor(attn_run_args *args, const char *name,
                                     const attn_tensor *tensor) {
  return guard([&] {
    const char *fn = "attn_run_args_set_tensor";
    if (attn_status s = checkHandle(fn, "args", args))
      return s;
    if (!name)
      return nullArgument(fn, "name");
    Tensor t;
    std::string what = std::string("param '") + name + "'";
    attn_status s = toTensor(fn, what.c_str(), tensor, t);
    if (s != ATTN_OK)
      return s;
    args->args.params[name] = std::move(t);
    return ATTN_OK;
  });
}

attn_status attn_run_args_clear_params(attn_run_args *args) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_run_args_clear_params", "args", args))
      return s;
    args->args.params.clear();
    return ATTN_OK;
  });
}

attn_status attn_run_args_set_threads(attn_run_args *args, int threads) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_run_args_set_threads", "args", args))
      return s;
    if (threads < 0)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_run_args_set_threads: the thread count must be 0 "
                  "(default) or positive, got " +
                      std::to_string(threads));
    args->args.threads = threads;
    return ATTN_OK;
  });
}

attn_status attn_run_args_set_stream(attn_run_args *args, void *stream) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_run_args_set_stream", "args", args))
      return s;
    args->args.stream = stream;
    return ATTN_OK;
  });
}

attn_status attn_run_args_set_async(attn_run_args *args, int async) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_run_args_set_async", "args", args))
      return s;
    args->args.async = async != 0;
    return ATTN_OK;
  });
}

attn_status attn_kernel_synchronize(const attn_kernel *kernel) {
  return guard([&] {
    if (attn_status s =
            checkHandle("attn_kernel_synchronize", "kernel", kernel))
      return s;
    std::string error;
    Status status = kernel->kernel.synchronize(error);
    if (status != Status::Ok)
      return fail(static_cast<attn_status>(status), error);
    return ATTN_OK;
  });
}

attn_status attn_kernel_run(const attn_kernel *kernel,
                            const attn_run_args *args) {
  return guard([&] {
    if (attn_status s = checkHandle("attn_kernel_run", "kernel", kernel))
      return s;
    if (attn_status s = checkHandle("attn_kernel_run", "args", args))
      return s;
    std::string error;
    Status status = kernel->kernel.run(args->args, error);
    if (status != Status::Ok)
      return fail(static_cast<attn_status>(status), error);
    return ATTN_OK;
  });
}

attn_status attn_backward_args_create(attn_backward_args **out) {
  return guard([&] {
    if (!out)
      return nullArgument("attn_backward_args_create", "out");
    *out = new attn_backward_args();
    return ATTN_OK;
  });
}

void attn_backward_args_destroy(attn_backward_args *args) { delete args; }

attn_status
attn_backward_args_set_tensors(attn_backward_args *args, const attn_tensor *q,
                               const attn_tensor *k, const attn_tensor *v,
                               const attn_tensor *o, const attn_tensor *d_o,
                               const attn_tensor *row_stats) {
  return guard([&] {
    const char *fn = "attn_backward_args_set_tensors";
    if (!args)
      return nullArgument(fn, "args");
    BackwardArgs next = args->args;
    attn_status s;
    if ((s = toTensor(fn, "Q", q, next.q)) != ATTN_OK ||
        (s = toTensor(fn, "K", k, next.k)) != ATTN_OK ||
        (s = toTensor(fn, "V", v, next.v)) != ATTN_OK ||
        (s = toTensor(fn, "O", o, next.o)) != ATTN_OK ||
        (s = toTensor(fn, "dO", d_o, next.dO)) != ATTN_OK)
      return s;
    if (row_stats) {
      Tensor t;
      if ((s = toTensor(fn, "the row statistics", row_stats, t)) != ATTN_OK)
        return s;
      next.rowStats = t;
    } else {
      next.rowStats.reset();
    }
    args->args = std::move(next);
    return ATTN_OK;
  });
}

attn_status attn_backward_args_set_grads(attn_backward_args *args,
                                         const attn_tensor *dq,
                                         const attn_tensor *dk,
                                         const attn_tensor *dv) {
  return guard([&] {
    const char *fn = "attn_backward_args_set_grads";
    if (!args)
      return nullArgument(fn, "args");
    BackwardArgs next = args->args;
    attn_status s;
    if ((s = toTensor(fn, "dQ", dq, next.dq)) != ATTN_OK ||
        (s = toTensor(fn, "dK", dk, next.dk)) != ATTN_OK ||
        (s = toTensor(fn, "dV", dv, next.dv)) != ATTN_OK)
      return s;
    args->args = std::move(next);
    return ATTN_OK;
  });
}

attn_status attn_backward_args_set_scalar(attn_backward_args *args,
                                          const char *name, double value) {
  return guard([&] {
    if (!args)
      return nullArgument("attn_backward_args_set_scalar", "args");
    if (!name)
      return nullArgument("attn_backward_args_set_scalar", "name");
    args->args.params[name] = value;
    return ATTN_OK;
  });
}

attn_status attn_backward_args_set_tensor(attn_backward_args *args,
                                          const char *name,
                                          const attn_tensor *tensor) {
  return guard([&] {
    const char *fn = "attn_backward_args_set_tensor";
    if (!args)
      return nullArgument(fn, "args");
    if (!name)
      return nullArgument(fn, "name");
    Tensor t;
    std::string what = std::string("param '") + name + "'";
    attn_status s = toTensor(fn, what.c_str(), tensor, t);
    if (s != ATTN_OK)
      return s;
    args->args.params[name] = std::move(t);
    return ATTN_OK;
  });
}

attn_status attn_backward_args_set_param_grad(attn_backward_args *args,
                                              const char *name,
                                              const attn_tensor *grad) {
  return guard([&] {
    const char *fn = "attn_backward_args_set_param_grad";
    if (!args)
      return nullArgument(fn, "args");
    if (!name)
      return nullArgument(fn, "name");
    if (!grad) {
      args->args.paramGrads.erase(name);
      return ATTN_OK;
    }
    Tensor t;
    std::string what = std::string("the gradient of param '") + name + "'";
    attn_status s = toTensor(fn, what.c_str(), grad, t);
    if (s != ATTN_OK)
      return s;
    args->args.paramGrads[name] = std::move(t);
    return ATTN_OK;
  });
}

attn_status attn_backward_args_clear_params(attn_backward_args *args) {
  return guard([&] {
    if (!args)
      return nullArgument("attn_backward_args_clear_params", "args");
    args->args.params.clear();
    args->args.paramGrads.clear();
    return ATTN_OK;
  });
}

attn_status attn_backward_args_set_threads(attn_backward_args *args,
                                           int threads) {
  return guard([&] {
    if (!args)
      return nullArgument("attn_backward_args_set_threads", "args");
    if (threads < 0)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  "attn_backward_args_set_threads: the thread count must be "
                  "0 (default) or positive, got " +
                      std::to_string(threads));
    args->args.threads = threads;
    return ATTN_OK;
  });
}

attn_status attn_kernel_run_backward(const attn_kernel *kernel,
                                     const attn_backward_args *args) {
  return guard([&] {
    if (!kernel)
      return nullArgument("attn_kernel_run_backward", "kernel");
    if (!args)
      return nullArgument("attn_kernel_run_backward", "args");
    std::string error;
    Status status = kernel->kernel.runBackward(args->args, error);
    if (status != Status::Ok)
      return fail(static_cast<attn_status>(status), error);
    return ATTN_OK;
  });
}

} // extern "C"
