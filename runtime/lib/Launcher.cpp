//===- Launcher.cpp - Running ahead-of-time compiled kernels --------------===//
//
// attn_launch (attn/attn_launch.h): parses the signature text a generated
// header embeds, checks and packs the arguments with the same code as the
// JIT (attnc/Target/KernelLaunch.h) and calls the kernel's packed entry
// point. Needs neither MLIR nor LLVM; no exception leaves it.
//
//===----------------------------------------------------------------------===//

#include "attn/attn_launch.h"

#include "attnc/Target/KernelLaunch.h"
#include "attnc/Target/TiledLaunch.h"

#include "EnumCode.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <unordered_map>

using namespace attnc;

extern "C" const char *attn_status_name(attn_status status) {
  switch (attn::detail::enumCode(status)) {
  case ATTN_OK:
    return "ok";
  case ATTN_ERROR_INVALID_ARGUMENT:
    return "invalid argument";
  case ATTN_ERROR_COMPILE:
    return "compile error";
  case ATTN_ERROR_UNAVAILABLE:
    return "unavailable";
  case ATTN_ERROR_KERNEL:
    return "kernel error";
  case ATTN_ERROR_IO:
    return "I/O error";
  case ATTN_ERROR_INTERNAL:
    return "internal error";
  case ATTN_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  }
  return "unknown status";
}

namespace {

void copyError(const std::string &msg, char *err, size_t errlen) {
  if (!err || errlen == 0)
    return;
  size_t n = std::min(msg.size(), errlen - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
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
  case ATTN_BF16: // CPU objects take float32 or float16
    return false;
  }
  return false;
}

bool toView(const char *what, const attn_tensor *t, TensorView &out,
            std::string &error) {
  if (!t) {
    error = std::string(what) + " is a null tensor pointer";
    return false;
  }
  if (t->rank < 0 || t->rank > 16 || (t->rank > 0 && !t->shape)) {
    error = std::string(what) + " has an invalid rank or a null shape";
    return false;
  }
  if (!toDType(attn::detail::enumCode(t->dtype), out.dtype)) {
    error = std::string(what) + " has an unknown dtype code " +
            std::to_string(attn::detail::enumCode(t->dtype));
    return false;
  }
  std::vector<int64_t> shape(t->shape, t->shape + t->rank);
  if (t->strides) {
    out.data = t->data;
    out.shape = std::move(shape);
    out.strides.assign(t->strides, t->strides + t->rank);
  } else {
    out = TensorView::contiguous(t->data, out.dtype, std::move(shape));
  }
  return true;
}

/// Signatures parsed once per distinct text (generated headers pass a
/// string literal, so there are few).
const KernelSignature *parsedSignature(const char *text, std::string &error) {
  static std::mutex mutex;
  static auto *cache =
      new std::unordered_map<std::string, std::unique_ptr<KernelSignature>>();
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find(text);
  if (it != cache->end())
    return it->second.get();
  auto sig = std::make_unique<KernelSignature>();
  if (!KernelSignature::fromText(text, *sig, error))
    return nullptr;
  const KernelSignature *result = sig.get();
  (*cache)[text] = std::move(sig);
  return result;
}

/// Parses "reference" or "tiled abi=A tile_q=N d=D dv=DV [tile_kv=N]
/// [vw=N]"; A must be this launcher's kTiledKernelAbi.
bool parseKernelSpec(const char *spec, bool &tiled, TiledKernelShape &shape,
                     std::string &error) {
  std::istringstream in(spec ? spec : "");
  std::string kind, field;
  in >> kind;
  if (kind == "reference") {
    tiled = false;
    return true;
  }
  if (kind == "tiled") {
    tiled = true;
    bool q = false, d = false, dv = false;
    long long abi = 1; // descriptions without abi= predate it
    while (in >> field) {
      size_t eq = field.find('=');
      std::string name = field.substr(0, eq);
      long long value =
          eq == std::string::npos ? 0 : std::atoll(field.c_str() + eq + 1);
      if (value <= 0)
        break;
      if (name == "abi")
        abi = value;
      else if (name == "tile_q")
        shape.tileQ = value, q = true;
      else if (name == "d")
        shape.headDim = value, d = true;
      else if (name == "dv")
        shape.valueDim = value, dv = true;
      else if (name == "tile_kv")
        shape.tileKV = value;
      else if (name == "vw")
        shape.vectorWidth = value;
    }
    if (q && d && dv && abi != kTiledKernelAbi) {
      error = "attn_launch: this tiled kernel was built by another attnc "
              "(kernel ABI " +
              std::to_string(abi) + ", this launcher runs " +
              std::to_string(kTiledKernelAbi) +
              "): rebuild its object and header with this attnc";
      return false;
    }
    if (q && d && dv)
      return true;
  }
  error = std::string("attn_launch: malformed kernel description '") +
          (spec ? spec : "(null)") +
          "' (expected \"reference\" or \"tiled abi=N tile_q=N d=D dv=DV\")";
  return false;
}

attn_status launch(const char *signature, const char *kernel, int threads,
                   int dtype, attn_packed_fn entry, const attn_tensor *q,
                   const attn_tensor *k, const attn_tensor *v,
                   const attn_tensor *o, const attn_tensor *lse,
                   const attn_param_arg *params, size_t numParams,
                   std::string &error) {
  if (!signature || !entry) {
    error = "attn_launch needs a signature and an entry point";
    return ATTN_ERROR_INVALID_ARGUMENT;
  }
  const KernelSignature *sig = parsedSignature(signature, error);
  if (!sig)
    return ATTN_ERROR_INVALID_ARGUMENT;
  bool tiled = false;
  TiledKernelShape shape;
  if (!parseKernelSpec(kernel, tiled, shape, error))
    return ATTN_ERROR_INVALID_ARGUMENT;
  DType elementType;
  if (!toDType(dtype, elementType)) {
    error = "unknown dtype code " + std::to_string(dtype);
    return ATTN_ERROR_INVALID_ARGUMENT;
  }
  RunArgs args;
  args.numThreads = threads;
  if (!toView("Q", q, args.q, error) || !toView("K", k, args.k, error) ||
      !toView("V", v, args.v, error) || !toView("O", o, args.o, error))
    return ATTN_ERROR_INVALID_ARGUMENT;
  if (lse) {
    args.lse.emplace();
    if (!toView("LSE", lse, *args.lse, error))
      return ATTN_ERROR_INVALID_ARGUMENT;
  }
  if (numParams && !params) {
    error = "params is null but num_params is " + std::to_string(numParams);
    return ATTN_ERROR_INVALID_ARGUMENT;
  }
  for (size_t i = 0; i < numParams; ++i) {
    const attn_param_arg &p = params[i];
    if (!p.name) {
      error = "param " + std::to_string(i) + " has a null name";
      return ATTN_ERROR_INVALID_ARGUMENT;
    }
    if (args.params.count(p.name)) {
      error = std::string("param '") + p.name + "' is given twice";
      return ATTN_ERROR_INVALID_ARGUMENT;
    }
    if (p.tensor) {
      TensorView view;
      std::string what = std::string("param '") + p.name + "'";
      if (!toView(what.c_str(), p.tensor, view, error))
        return ATTN_ERROR_INVALID_ARGUMENT;
      args.params[p.name] = std::move(view);
    } else {
      args.params[p.name] = ScalarValue{p.scalar};
    }
  }
  LaunchStatus status =
      tiled ? launchTiledKernel(*sig, elementType, entry, shape, args, error)
            : launchKernel(*sig, elementType, entry, args, error);
  switch (status) {
  case LaunchStatus::Ok:
    return ATTN_OK;
  case LaunchStatus::InvalidArguments:
    return ATTN_ERROR_INVALID_ARGUMENT;
  case LaunchStatus::KernelError:
    return ATTN_ERROR_KERNEL;
  case LaunchStatus::OutOfMemory:
    return ATTN_ERROR_OUT_OF_MEMORY;
  case LaunchStatus::Unavailable:
    return ATTN_ERROR_UNAVAILABLE;
  }
  return ATTN_ERROR_INTERNAL;
}

} // namespace

extern "C" attn_status
attn_launch(const char *signature, const char *kernel, int threads,
            attn_dtype dtype, attn_packed_fn entry, const attn_tensor *q,
            const attn_tensor *k, const attn_tensor *v, const attn_tensor *o,
            const attn_tensor *lse, const attn_param_arg *params,
            size_t num_params, char *err, size_t errlen) {
  std::string error;
  attn_status status;
  try {
    status = launch(signature, kernel, threads, attn::detail::enumCode(dtype),
                    entry, q, k, v, o, lse, params, num_params, error);
  } catch (const std::bad_alloc &) {
    status = ATTN_ERROR_OUT_OF_MEMORY;
    error = "out of memory";
  } catch (...) {
    status = ATTN_ERROR_INTERNAL;
    error = "internal error in attn_launch";
  }
  copyError(status == ATTN_OK ? std::string() : error, err, errlen);
  return status;
}
