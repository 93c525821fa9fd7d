//===- KernelLaunch.cpp - Checking, packing and calling a compiled kernel -===//
//
// Every tensor and parameter is checked against the signature first (rank,
// dtype, sizes consistent across Q, K, V, O and LSE, strides that address
// memory without overflow, outputs without overlapping elements, declared
// param shapes, no unknown or const params, scalar values representable),
// arguments are packed as expanded memref descriptors (allocated, aligned,
// offset, sizes, strides) in the KernelABI order, and the kernel's status word
// is turned into a message. Used by CpuKernel::run and by the AOT launcher;
// needs neither MLIR nor LLVM.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/KernelLaunch.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>

using namespace attnc;

TensorView TensorView::contiguous(void *data, DType dtype,
                                  std::vector<int64_t> shape) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.strides.assign(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i)
    t.strides[i] = t.strides[i + 1] * shape[i + 1];
  t.shape = std::move(shape);
  return t;
}

void PackedKernelArgs::memref(void *data, const std::vector<int64_t> &shape,
                              const std::vector<int64_t> &strides) {
  ptrs.push_back(data);
  args.push_back(&ptrs.back()); // allocated
  args.push_back(&ptrs.back()); // aligned
  i64s.push_back(0);
  args.push_back(&i64s.back()); // offset
  for (int64_t s : shape) {
    i64s.push_back(s);
    args.push_back(&i64s.back());
  }
  for (int64_t s : strides) {
    i64s.push_back(s);
    args.push_back(&i64s.back());
  }
}

void PackedKernelArgs::i32(int32_t v) {
  i32s.push_back(v);
  args.push_back(&i32s.back());
}

void PackedKernelArgs::f32(float v) {
  f32s.push_back(v);
  args.push_back(&f32s.back());
}

namespace {

std::string shapeStr(const std::vector<int64_t> &s) { return formatShape(s); }

/// A double as the user would write it: 0.5, 1e+39, inf, nan.
std::string formatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

/// 2^N as text, for limits in messages.
std::string powerOfTwo(int n) { return "2^" + std::to_string(n); }

/// Whether the view's shape and strides address memory sensibly: no offset
/// that the kernels compute (in elements or bytes, in int64) overflows,
/// the bytes the view spans stay below kMaxViewBytes and do not wrap
/// around the address space from its data pointer, and an output's
/// elements are distinct (no stride 0 along a dimension of size > 1).
/// Exact arithmetic in 128 bits: shapes are below 2^31 and strides are any
/// int64, so no product or sum of them overflows it.
bool checkStrides(const char *what, const TensorView &t, bool output,
                  std::string &error) {
  using Wide = __int128;
  const Wide limit = Wide(kMaxViewBytes);
  const Wide elem = dtypeSize(t.dtype);
  Wide up = 0, down = 0; // bytes addressed above and below the pointer
  Wide bytes = elem;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    if (t.shape[d] == 0)
      return true; // no element: nothing is ever addressed
    bytes *= t.shape[d];
  }
  // Distinct elements need distinct bytes: an output larger than any view
  // may span would overlap itself (and its element counts would reach
  // the launchers' int64 arithmetic).
  if (output && bytes > limit) {
    error = std::string(what) + " of shape " + shapeStr(t.shape) +
            " has more than " + powerOfTwo(kMaxViewBytesLog2) +
            " bytes of elements, more than a tensor may span";
    return false;
  }
  auto where = [&](size_t d) {
    return std::string(what) + " dimension " + std::to_string(d) + " (size " +
           std::to_string(t.shape[d]) + ", stride " +
           std::to_string(t.strides[d]) + ")";
  };
  for (size_t d = 0; d < t.shape.size(); ++d) {
    if (t.shape[d] == 1)
      continue; // its index is always 0: the stride is never used
    if (output && t.strides[d] == 0) {
      error = where(d) + " has stride 0: its elements would overlap, and every "
                         "element of an output must be its own";
      return false;
    }
    Wide reach = Wide(t.shape[d] - 1) * Wide(t.strides[d]) * elem;
    Wide magnitude = reach < 0 ? -reach : reach;
    if (magnitude + elem > limit) {
      error =
          where(d) + " reaches " +
          (magnitude >= (Wide(1) << 63) ? std::string("beyond 2^63")
                                        : std::to_string(int64_t(magnitude))) +
          " bytes from the data pointer; a tensor may span at most " +
          powerOfTwo(kMaxViewBytesLog2) + " bytes";
      return false;
    }
    (reach < 0 ? down : up) += magnitude;
  }
  if (up + down + elem > limit) {
    error = std::string(what) + " spans " +
            std::to_string(int64_t(up + down + elem)) + " bytes with shape " +
            shapeStr(t.shape) + " and strides " + shapeStr(t.strides) +
            "; a tensor may span at most " + powerOfTwo(kMaxViewBytesLog2) +
            " bytes";
    return false;
  }
  uintptr_t base = reinterpret_cast<uintptr_t>(t.data);
  if (Wide(base) < down || Wide(UINTPTR_MAX) - Wide(base) < up + elem - 1) {
    error = std::string(what) + " with shape " + shapeStr(t.shape) +
            " and strides " + shapeStr(t.strides) +
            " wraps around the address space from its data pointer";
    return false;
  }
  return true;
}

bool checkView(const char *what, const TensorView &t, size_t rank,
               std::string &error, bool output = false) {
  if (t.shape.size() != rank || t.strides.size() != rank) {
    error = std::string(what) + " must have rank " + std::to_string(rank) +
            ", got shape " + shapeStr(t.shape);
    return false;
  }
  bool empty = false;
  for (int64_t d : t.shape) {
    if (d < 0 || d > INT32_MAX) {
      error = std::string(what) + " has an invalid shape " + shapeStr(t.shape);
      return false;
    }
    empty |= d == 0;
  }
  // A tensor without elements is never read or written, and allocators
  // (PyTorch's among them) give such tensors a null pointer.
  if (!t.data && !empty) {
    error = std::string(what) + " has a null data pointer";
    return false;
  }
  return checkStrides(what, t, output, error);
}

DType dtypeOf(ParamType t) {
  switch (t) {
  case ParamType::F32:
    return DType::F32;
  case ParamType::I32:
    return DType::I32;
  case ParamType::Bool:
    return DType::Bool;
  }
  return DType::F32;
}

} // namespace

namespace {

/// Checks Q, K, V and O against each other and the kernel's element type,
/// and reads the problem's sizes off them.
bool checkProblem(DType elementType, const TensorView &q, const TensorView &k,
                  const TensorView &v, const TensorView &o, int numThreads,
                  Sizes &sz, std::string &error, bool oOutput) {
  // Q, K, V, O: rank 4, one dtype, consistent sizes.
  if (!checkView("Q", q, 4, error) || !checkView("K", k, 4, error) ||
      !checkView("V", v, 4, error) || !checkView("O", o, 4, error, oOutput))
    return false;
  if (q.dtype != k.dtype || q.dtype != v.dtype) {
    error = std::string("Q, K and V must have the same dtype, got ") +
            dtypeName(q.dtype) + ", " + dtypeName(k.dtype) + " and " +
            dtypeName(v.dtype);
    return false;
  }
  if (q.dtype != elementType || o.dtype != elementType) {
    error = std::string("this kernel was compiled for ") +
            dtypeName(elementType) + " tensors, got Q " + dtypeName(q.dtype) +
            " and O " + dtypeName(o.dtype);
    return false;
  }
  if (numThreads < 0) {
    error = "the thread count must be 0 (default) or positive, got " +
            std::to_string(numThreads);
    return false;
  }
  sz.value[0] = q.shape[0];
  sz.value[1] = q.shape[1];
  sz.value[2] = k.shape[1];
  sz.value[3] = q.shape[2];
  sz.value[4] = k.shape[2];
  sz.value[5] = q.shape[3];
  sz.value[6] = v.shape[3];
  auto mismatch = [&](const std::string &msg) {
    error = msg + " (Q " + shapeStr(q.shape) + ", K " + shapeStr(k.shape) +
            ", V " + shapeStr(v.shape) + ")";
    return false;
  };
  if (k.shape[0] != sz.value[0] || v.shape[0] != sz.value[0])
    return mismatch("Q, K and V must have the same batch size B");
  if (v.shape[1] != sz.value[2])
    return mismatch("K and V must have the same number of heads Hkv");
  if (v.shape[2] != sz.value[4])
    return mismatch("K and V must have the same length Lkv");
  if (k.shape[3] != sz.value[5])
    return mismatch("Q and K must have the same head dimension D");
  if (sz.value[2] == 0 || sz.value[1] % sz.value[2] != 0)
    return mismatch(
        "the number of query heads H = " + std::to_string(sz.value[1]) +
        " must be a multiple of the number of KV heads Hkv = " +
        std::to_string(sz.value[2]));
  if (sz.value[5] < 1 || sz.value[6] < 1)
    return mismatch("head dimensions D and Dv must be at least 1");
  std::vector<int64_t> oShape = {sz.value[0], sz.value[1], sz.value[3],
                                 sz.value[6]};
  if (o.shape != oShape) {
    error =
        "O must have shape " + shapeStr(oShape) + ", got " + shapeStr(o.shape);
    return false;
  }
  return true;
}

/// Checks a [B, H, Lq] float32 view of row statistics (`what` names it).
bool checkRowView(const char *what, const TensorView &t, const Sizes &sz,
                  std::string &error, bool output) {
  if (!checkView(what, t, 3, error, output))
    return false;
  std::vector<int64_t> shape = {sz.value[0], sz.value[1], sz.value[3]};
  if (t.dtype != DType::F32 || t.shape != shape) {
    error = std::string(what) + " must be float32 of shape " + shapeStr(shape) +
            ", got " + dtypeName(t.dtype) + " " + shapeStr(t.shape);
    return false;
  }
  return true;
}

/// What the row statistics are for a normalisation, or null when it has
/// none.
const char *rowStatistic(const KernelSignature &sig) {
  if (sig.normalization == "softmax")
    return "the log-sum-exp LSE";
  if (sig.normalization == "linear")
    return "the row sums of the scores";
  return nullptr;
}

/// Rejects names in `params` that are not runtime params of `sig`.
bool checkParamNames(const KernelSignature &sig,
                     const std::map<std::string, ParamArg> &params,
                     std::string &error) {
  for (const auto &entry : params) {
    const std::string &name = entry.first;
    auto it =
        std::find_if(sig.params.begin(), sig.params.end(),
                     [&](const SignatureParam &p) { return p.name == name; });
    if (it == sig.params.end()) {
      std::string known;
      for (const SignatureParam &p : sig.params)
        if (!p.isConst)
          known += (known.empty() ? "" : ", ") + p.name;
      error = "unknown param '" + name + "' for variant '" + sig.name + "'" +
              (known.empty() ? std::string(" (it takes no params)")
                             : " (its params: " + known + ")");
      return false;
    }
    if (it->isConst) {
      error = "param '" + name +
              "' is const: its value is compiled into the kernel and cannot "
              "be set at run time";
      return false;
    }
  }
  return true;
}

/// Checks and packs the runtime params in declaration order.
bool packParams(const KernelSignature &sig,
                const std::map<std::string, ParamArg> &params, const Sizes &sz,
                PackedKernelArgs &pack, std::string &error) {
  for (const SignatureParam &p : sig.params) {
    if (p.isConst)
      continue;
    auto it = params.find(p.name);
    if (p.isTensor) {
      if (it == params.end()) {
        error =
            "missing tensor param '" + p.name + "' (" + declaredType(p) + ")";
        return false;
      }
      const TensorView *t = std::get_if<TensorView>(&it->second);
      if (!t) {
        error = "param '" + p.name + "' is a tensor (" + declaredType(p) +
                "); pass an array, not a scalar";
        return false;
      }
      if (t->dtype != dtypeOf(p.type)) {
        error = "param '" + p.name + "' must have dtype " +
                dtypeName(dtypeOf(p.type)) + ", got " + dtypeName(t->dtype);
        return false;
      }
      std::string what = "param '" + p.name + "'";
      if (!checkView(what.c_str(), *t, p.dims.size(), error))
        return false;
      for (size_t d = 0; d < p.dims.size(); ++d) {
        const SignatureDim &dim = p.dims[d];
        int64_t want = dim.kind == SignatureDim::Kind::Size ? sz.value[dim.size]
                       : dim.kind == SignatureDim::Kind::Literal ? dim.value
                                                                 : -1;
        if (want >= 0 && t->shape[d] != want) {
          error = "param '" + p.name + "' must have shape " + declaredType(p) +
                  ", but dimension " + std::to_string(d) + " is " +
                  std::to_string(t->shape[d]) + " instead of " +
                  std::to_string(want) + " (shape " + shapeStr(t->shape) + ")";
          return false;
        }
      }
      pack.memref(t->data, t->shape, t->strides);
      continue;
    }
    double value;
    if (it == params.end()) {
      if (!p.value) {
        error = "missing param '" + p.name + "' (" + paramTypeName(p.type) +
                ", no default)";
        return false;
      }
      value = *p.value;
    } else {
      const ScalarValue *sv = std::get_if<ScalarValue>(&it->second);
      if (!sv) {
        error = "param '" + p.name + "' is a scalar " + paramTypeName(p.type) +
                "; pass a value, not an array";
        return false;
      }
      value = sv->value;
    }
    if (p.type == ParamType::F32) {
      // As for literals in the source: a value that is not a finite f32
      // would turn every score it touches into inf or NaN.
      if (!std::isfinite(value) || std::fabs(value) > FLT_MAX) {
        error = "param '" + p.name + "' is f32 and cannot take the value " +
                formatDouble(value) +
                " (f32 holds finite values up to 3.4028235e+38 in magnitude)";
        return false;
      }
      pack.f32(static_cast<float>(value));
      continue;
    }
    bool ok = p.type == ParamType::Bool
                  ? (value == 0 || value == 1)
                  : (std::isfinite(value) && value == std::trunc(value) &&
                     value >= INT32_MIN && value <= INT32_MAX);
    if (!ok) {
      error = "param '" + p.name + "' is " + paramTypeName(p.type) +
              " and cannot take the value " + std::to_string(value);
      return false;
    }
    pack.i32(static_cast<int32_t>(value));
  }
  return true;
}

} // namespace

bool attnc::packKernelArgs(const KernelSignature &sig, DType elementType,
                           const RunArgs &a, PackedKernelArgs &pack,
                           std::string &error) {
  Sizes &sz = pack.sizes;
  if (!checkProblem(elementType, a.q, a.k, a.v, a.o, a.numThreads, sz, error,
                    /*oOutput=*/true))
    return false;
  if (a.lse) {
    if (!sig.definesLSE()) {
      error = "LSE is not defined for 'normalize " + sig.normalization +
              "' (only softmax has a log-sum-exp); do not request it for "
              "variant '" +
              sig.name + "'";
      return false;
    }
    if (!checkRowView("LSE", *a.lse, sz, error, /*output=*/true))
      return false;
  }
  if (a.rowStats) {
    if (!rowStatistic(sig)) {
      error = "'normalize " + sig.normalization +
              "' saves no row statistics: its backward needs none; do not "
              "request them for variant '" +
              sig.name + "'";
      return false;
    }
    if (a.lse) {
      error = "for softmax the row statistics are the LSE: request LSE or "
              "stats, not both";
      return false;
    }
    if (!checkRowView("the row statistics", *a.rowStats, sz, error,
                      /*output=*/true))
      return false;
  }
  if (!checkParamNames(sig, a.params, error))
    return false;

  auto packView = [&](const TensorView &t) {
    pack.memref(t.data, t.shape, t.strides);
  };
  packView(a.q);
  packView(a.k);
  packView(a.v);
  packView(a.o);
  // Without LSE, a 0-sized view keeps the argument list well formed.
  static float lseDummy;
  const std::optional<TensorView> &rows = a.lse ? a.lse : a.rowStats;
  if (rows)
    packView(*rows);
  else
    pack.memref(&lseDummy, {0, 0, 0}, {0, 0, 0});
  if (!packParams(sig, a.params, sz, pack, error))
    return false;
  int32_t flags = rows ? kFlagWriteLSE : 0;
  const int64_t oBytes = dtypeSize(a.o.dtype);
  bool vectorO =
      a.o.strides[3] == 1 && reinterpret_cast<uintptr_t>(a.o.data) % 16 == 0;
  for (int i = 0; i < 3; ++i) // a dim of size 1 never steps its stride
    vectorO =
        vectorO && (a.o.shape[i] == 1 || (a.o.strides[i] * oBytes) % 16 == 0);
  if (vectorO)
    flags |= kFlagVectorO;
  pack.i32(flags);
  pack.flags = &pack.i32s.back();
  pack.memref(pack.status, {kStatusWords}, {1});
  return true;
}

bool attnc::packBackwardKernelArgs(const KernelSignature &sig,
                                   DType elementType, const BackwardRunArgs &a,
                                   PackedBackwardArgs &pack,
                                   std::string &error) {
  Sizes &sz = pack.sizes;
  if (!checkProblem(elementType, a.q, a.k, a.v, a.o, a.numThreads, sz, error,
                    /*oOutput=*/false))
    return false;
  if (!checkView("dO", a.dO, 4, error))
    return false;
  if (a.dO.dtype != elementType || a.dO.shape != a.o.shape) {
    error = std::string("dO must have the dtype and shape of O (") +
            dtypeName(elementType) + " " + shapeStr(a.o.shape) + "), got " +
            dtypeName(a.dO.dtype) + " " + shapeStr(a.dO.shape);
    return false;
  }
  for (auto [what, grad, of] : {std::tuple{"dQ", &a.dq, &a.q},
                                {"dK", &a.dk, &a.k},
                                {"dV", &a.dv, &a.v}}) {
    if (!checkView(what, *grad, 4, error, /*output=*/true))
      return false;
    if (grad->dtype != elementType || grad->shape != of->shape) {
      error = std::string(what) + " must have the dtype and shape of " +
              (what + 1) + " (" + dtypeName(elementType) + " " +
              shapeStr(of->shape) + "), got " + dtypeName(grad->dtype) + " " +
              shapeStr(grad->shape);
      return false;
    }
  }
  if (const char *what = rowStatistic(sig)) {
    if (!a.rowStats) {
      error = "the backward of variant '" + sig.name + "' (normalize " +
              sig.normalization + ") needs " + what +
              " that its forward run saves ([B, H, Lq] float32): run the "
              "forward with the row statistics requested";
      return false;
    }
    if (!checkRowView("the row statistics", *a.rowStats, sz, error,
                      /*output=*/false))
      return false;
  } else if (a.rowStats) {
    error = "'normalize " + sig.normalization +
            "' saves no row statistics and its backward needs none; do not "
            "pass them for variant '" +
            sig.name + "'";
    return false;
  }
  if (!checkParamNames(sig, a.params, error))
    return false;
  // Requested gradients: f32 runtime params only, of the param's shape.
  for (const auto &[name, view] : a.paramGrads) {
    const std::string &wanted = name;
    auto it =
        std::find_if(sig.params.begin(), sig.params.end(),
                     [&](const SignatureParam &p) { return p.name == wanted; });
    if (it == sig.params.end()) {
      std::string known;
      for (const SignatureParam &p : sig.params)
        if (!p.isConst && p.type == ParamType::F32)
          known += (known.empty() ? "" : ", ") + p.name;
      error = "cannot compute the gradient of '" + name + "': variant '" +
              sig.name + "' has no such param" +
              (known.empty() ? std::string(" (and no f32 params)")
                             : " (its f32 params: " + known + ")");
      return false;
    }
    if (it->isConst) {
      error = "param '" + name +
              "' is const: its value is compiled into the kernel and has no "
              "gradient";
      return false;
    }
    if (it->type != ParamType::F32) {
      error = "param '" + name + "' is " + paramTypeName(it->type) +
              ": only f32 params have gradients";
      return false;
    }
  }

  auto packView = [&](const TensorView &t) {
    pack.memref(t.data, t.shape, t.strides);
  };
  for (const TensorView *t : {&a.q, &a.k, &a.v, &a.o, &a.dO})
    packView(*t);
  static float statsDummy;
  if (a.rowStats)
    packView(*a.rowStats);
  else
    pack.memref(&statsDummy, {0, 0, 0}, {0, 0, 0});
  for (const TensorView *t : {&a.dq, &a.dk, &a.dv})
    packView(*t);
  if (!packParams(sig, a.params, sz, pack, error))
    return false;
  for (const SignatureParam &p : sig.params) {
    if (p.isConst || p.type != ParamType::F32)
      continue;
    // The gradient has the shape of the param as passed ([1]: a scalar).
    std::vector<int64_t> shape = {1};
    if (p.isTensor)
      shape = std::get<TensorView>(a.params.at(p.name)).shape;
    GradSlot slot;
    slot.name = p.name;
    slot.shape = shape;
    auto it = a.paramGrads.find(p.name);
    if (it != a.paramGrads.end()) {
      TensorView g = it->second;
      bool scalarShape = !p.isTensor && (g.shape.empty() || g.shape == shape);
      std::string what = "the gradient of param '" + p.name + "'";
      if (g.dtype != DType::F32 ||
          !(scalarShape || (p.isTensor && g.shape == shape))) {
        error = what + " must be float32 of the param's shape " +
                (p.isTensor ? shapeStr(shape) : std::string("() or (1,)")) +
                ", got " + dtypeName(g.dtype) + " " + shapeStr(g.shape);
        return false;
      }
      if (!p.isTensor) {
        g.shape = {1};
        g.strides = {1};
      }
      if (!checkView(what.c_str(), g, g.shape.size(), error, /*output=*/true))
        return false;
      slot.user = g;
      slot.requested = true;
    }
    slot.count = 1;
    for (int64_t d : shape)
      slot.count *= d;
    pack.gradStorage.emplace_back(std::max<int64_t>(slot.count, 1), 0.0);
    slot.values = pack.gradStorage.back().data();
    std::vector<int64_t> strides(shape.size(), 1);
    for (int d = static_cast<int>(shape.size()) - 2; d >= 0; --d)
      strides[d] = strides[d + 1] * shape[d + 1];
    slot.argIndex = pack.args.size();
    pack.memref(slot.values, shape, strides);
    pack.grads.push_back(std::move(slot));
  }
  pack.i32(0);
  pack.flags = &pack.i32s.back();
  pack.memref(pack.status, {kStatusWords}, {1});
  return true;
}

void attnc::storeGradient(const TensorView &t, const double *values) {
  int64_t n = 1;
  for (int64_t d : t.shape)
    n *= d;
  if (n == 0)
    return;
  std::vector<int64_t> idx(t.shape.size(), 0);
  float *base = static_cast<float *>(t.data);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d)
      off += idx[d] * t.strides[d];
    base[off] = static_cast<float>(values[i]);
    for (int d = static_cast<int>(idx.size()) - 1; d >= 0; --d) {
      if (++idx[d] < t.shape[d])
        break;
      idx[d] = 0;
    }
  }
}

bool attnc::decodeKernelStatus(const KernelSignature &sig,
                               const int32_t *status, std::string &error) {
  switch (status[0]) {
  case kStatusOk:
    return true;
  case kStatusIndexOutOfRange: {
    const SignatureParam *p = nullptr;
    int32_t index = 0;
    for (const SignatureParam &q : sig.params)
      if (!q.isConst && index++ == status[1])
        p = &q;
    error = "variant '" + sig.name + "' read param '" +
            (p ? p->name : std::string("?")) + "' out of range: index " +
            std::to_string(status[3]) + " in dimension " +
            std::to_string(status[2]) + " of size " + std::to_string(status[4]);
    return false;
  }
  case kStatusDivisionByZero:
    error = "variant '" + sig.name + "' divided an integer by zero";
    return false;
  default:
    error = "variant '" + sig.name + "' reported an unknown error code " +
            std::to_string(status[0]);
    return false;
  }
}

LaunchStatus attnc::launchKernel(const KernelSignature &sig, DType elementType,
                                 PackedKernelFn entry, const RunArgs &args,
                                 std::string &error) {
  if (!entry) {
    error = "variant '" + sig.name + "' has no entry point";
    return LaunchStatus::InvalidArguments;
  }
  PackedKernelArgs packed;
  if (!packKernelArgs(sig, elementType, args, packed, error))
    return LaunchStatus::InvalidArguments;
  entry(packed.args.data());
  return decodeKernelStatus(sig, packed.status, error)
             ? LaunchStatus::Ok
             : LaunchStatus::KernelError;
}

LaunchStatus attnc::launchBackwardKernel(const KernelSignature &sig,
                                         DType elementType,
                                         PackedKernelFn entry,
                                         const BackwardRunArgs &args,
                                         std::string &error) {
  if (!entry) {
    error = "variant '" + sig.name + "' has no backward entry point";
    return LaunchStatus::InvalidArguments;
  }
  PackedBackwardArgs packed;
  if (!packBackwardKernelArgs(sig, elementType, args, packed, error))
    return LaunchStatus::InvalidArguments;
  entry(packed.args.data());
  if (!decodeKernelStatus(sig, packed.status, error))
    return LaunchStatus::KernelError;
  for (const GradSlot &g : packed.grads)
    if (g.requested)
      storeGradient(g.user, g.values);
  return LaunchStatus::Ok;
}
