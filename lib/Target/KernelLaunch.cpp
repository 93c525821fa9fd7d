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

bool attnc::packKernelArgs(const KernelSignature &sig, DType elementType,
                           const RunArgs &a, PackedKernelArgs &pack,
                           std::string &error) {
  // Q, K, V, O: rank 4, one dtype, consistent sizes.
  if (!checkView("Q", a.q, 4, error) || !checkView("K", a.k, 4, error) ||
      !checkView("V", a.v, 4, error) ||
      !checkView("O", a.o, 4, error, /*output=*/true))
    return false;
  if (a.q.dtype != a.k.dtype || a.q.dtype != a.v.dtype) {
    error = std::string("Q, K and V must have the same dtype, got ") +
            dtypeName(a.q.dtype) + ", " + dtypeName(a.k.dtype) + " and " +
            dtypeName(a.v.dtype);
    return false;
  }
  if (a.q.dtype != elementType || a.o.dtype != elementType) {
    error = std::string("this kernel was compiled for ") +
            dtypeName(elementType) + " tensors, got Q " + dtypeName(a.q.dtype) +
            " and O " + dtypeName(a.o.dtype);
    return false;
  }
  if (a.numThreads < 0) {
    error = "the thread count must be 0 (default) or positive, got " +
            std::to_string(a.numThreads);
    return false;
  }
  Sizes &sz = pack.sizes;
  sz.value[0] = a.q.shape[0];
  sz.value[1] = a.q.shape[1];
  sz.value[2] = a.k.shape[1];
  sz.value[3] = a.q.shape[2];
  sz.value[4] = a.k.shape[2];
  sz.value[5] = a.q.shape[3];
  sz.value[6] = a.v.shape[3];
  auto mismatch = [&](const std::string &msg) {
    error = msg + " (Q " + shapeStr(a.q.shape) + ", K " + shapeStr(a.k.shape) +
            ", V " + shapeStr(a.v.shape) + ")";
    return false;
  };
  if (a.k.shape[0] != sz.value[0] || a.v.shape[0] != sz.value[0])
    return mismatch("Q, K and V must have the same batch size B");
  if (a.v.shape[1] != sz.value[2])
    return mismatch("K and V must have the same number of heads Hkv");
  if (a.v.shape[2] != sz.value[4])
    return mismatch("K and V must have the same length Lkv");
  if (a.k.shape[3] != sz.value[5])
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
  if (a.o.shape != oShape) {
    error = "O must have shape " + shapeStr(oShape) + ", got " +
            shapeStr(a.o.shape);
    return false;
  }
  if (a.lse) {
    if (!sig.definesLSE()) {
      error = "LSE is not defined for 'normalize " + sig.normalization +
              "' (only softmax has a log-sum-exp); do not request it for "
              "variant '" +
              sig.name + "'";
      return false;
    }
    if (!checkView("LSE", *a.lse, 3, error, /*output=*/true))
      return false;
    std::vector<int64_t> lseShape = {sz.value[0], sz.value[1], sz.value[3]};
    if (a.lse->dtype != DType::F32 || a.lse->shape != lseShape) {
      error = "LSE must be float32 of shape " + shapeStr(lseShape) + ", got " +
              dtypeName(a.lse->dtype) + " " + shapeStr(a.lse->shape);
      return false;
    }
  }

  // Parameters: no unknown or const names, every runtime one bound.
  for (const auto &entry : a.params) {
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

  auto packView = [&](const TensorView &t) {
    pack.memref(t.data, t.shape, t.strides);
  };
  packView(a.q);
  packView(a.k);
  packView(a.v);
  packView(a.o);
  // Without LSE, a 0-sized view keeps the argument list well formed.
  static float lseDummy;
  if (a.lse)
    packView(*a.lse);
  else
    pack.memref(&lseDummy, {0, 0, 0}, {0, 0, 0});

  for (const SignatureParam &p : sig.params) {
    if (p.isConst)
      continue;
    auto it = a.params.find(p.name);
    if (p.isTensor) {
      if (it == a.params.end()) {
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
      packView(*t);
      continue;
    }
    double value;
    if (it == a.params.end()) {
      if (!p.value) {
        error = "missing param '" + p.name + "' (" + paramTypeName(p.type) +
                ", no default)";
        return false;
      }
      value = *p.value;
    } else {
      const ScalarValue *s = std::get_if<ScalarValue>(&it->second);
      if (!s) {
        error = "param '" + p.name + "' is a scalar " + paramTypeName(p.type) +
                "; pass a value, not an array";
        return false;
      }
      value = s->value;
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
  int32_t flags = a.lse ? kFlagWriteLSE : 0;
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
