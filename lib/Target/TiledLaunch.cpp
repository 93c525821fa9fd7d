//===- TiledLaunch.cpp - Running tiled kernels over the thread pool -------===//

#include "attnc/Target/TiledLaunch.h"
#include "attnc/Support/HostMemory.h"
#include "attnc/Target/ThreadPool.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <variant>

using namespace attnc;

namespace {

float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f,
           man = h & 0x3ff, bits;
  if (exp == 0x1f) { // inf, nan
    bits = sign | 0x7f800000 | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else { // subnormal: renormalise
    exp = 113;
    while (!(man & 0x400)) {
      man <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// Element (i0, i1, i2, i3) of a rank-4 view as float.
float elementAt(const TensorView &t, int64_t i0, int64_t i1, int64_t i2,
                int64_t i3) {
  int64_t off = i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2] +
                i3 * t.strides[3];
  if (t.dtype == DType::F16) {
    uint16_t h;
    std::memcpy(&h, static_cast<const char *>(t.data) + off * 2, 2);
    return halfToFloat(h);
  }
  float f;
  std::memcpy(&f, static_cast<const char *>(t.data) + off * 4, 4);
  return f;
}

/// A contiguous f32 buffer and its memref descriptor as packed pointers.
/// The storage is the launching thread's and is kept between launches:
/// allocating (and first touching) megabytes per call costs more than the
/// kernels of sparse masks. Every element is written by the fill, padding
/// included, so the buffer is never cleared.
struct Operand {
  std::vector<float> &data;
  void *ptr = nullptr;
  int64_t offset = 0, sizes[4] = {}, strides[4] = {};

  explicit Operand(std::vector<float> &storage) : data(storage) {}

  void init(std::array<int64_t, 4> shape) {
    int64_t n = 1;
    for (int i = 3; i >= 0; --i) {
      sizes[i] = shape[i];
      strides[i] = n;
      n *= shape[i];
    }
    if (static_cast<int64_t>(data.size()) < n)
      data.resize(n);
    ptr = data.data();
  }
  void append(std::vector<void *> &args) {
    args.push_back(&ptr); // allocated
    args.push_back(&ptr); // aligned
    args.push_back(&offset);
    for (int64_t &x : sizes)
      args.push_back(&x);
    for (int64_t &x : strides)
      args.push_back(&x);
  }
};

/// A contiguous rank-1 buffer's memref descriptor (allocated, aligned,
/// offset, size, stride) over storage the caller keeps.
struct Flat {
  void *ptr = nullptr;
  int64_t offset = 0, size = 0, stride = 1;

  template <typename T> void bind(std::vector<T> &storage) {
    ptr = storage.data();
    size = static_cast<int64_t>(storage.size());
  }
  void append(std::vector<void *> &args) {
    for (void *p : {static_cast<void *>(&ptr), static_cast<void *>(&ptr),
                    static_cast<void *>(&offset), static_cast<void *>(&size),
                    static_cast<void *>(&stride)})
      args.push_back(p);
  }
};

/// Per-tile (min, max) of a rank-1 int32 or bool tensor, as a [rows, 2]
/// int32 memref descriptor.
struct Summary {
  const void *data = nullptr;
  int64_t length = 0, stride = 0, tile = 0;
  std::vector<int32_t> table;
  void *ptr = nullptr;
  int64_t offset = 0, sizes[2] = {}, strides[2] = {2, 1};

  void compute(const TensorView &t, int64_t tileSize) {
    data = t.data;
    length = t.shape[0];
    stride = t.strides[0];
    tile = tileSize;
    int64_t rows = (length + tile - 1) / tile;
    table.assign(2 * rows, 0);
    for (int64_t r = 0; r < rows; ++r) {
      int32_t lo = INT32_MAX, hi = INT32_MIN;
      for (int64_t i = r * tile; i < std::min(length, (r + 1) * tile); ++i) {
        int32_t x;
        if (t.dtype == DType::Bool) {
          x = static_cast<const uint8_t *>(t.data)[i * stride] != 0;
        } else {
          std::memcpy(&x, static_cast<const char *>(t.data) + i * stride * 4,
                      4);
        }
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
      table[2 * r] = lo;
      table[2 * r + 1] = hi;
    }
  }
  bool matches(const TensorView &t, int64_t tileSize) const {
    return data == t.data && length == t.shape[0] && stride == t.strides[0] &&
           tile == tileSize;
  }
  void append(std::vector<void *> &args) {
    ptr = table.data();
    sizes[0] = static_cast<int64_t>(table.size() / 2);
    sizes[1] = 2;
    args.push_back(&ptr);
    args.push_back(&ptr);
    args.push_back(&offset);
    args.push_back(&sizes[0]);
    args.push_back(&sizes[1]);
    args.push_back(&strides[0]);
    args.push_back(&strides[1]);
  }
};

} // namespace

namespace {
/// The work items of a launch whose arguments are checked and packed, and
/// whose working memory fits: K and V bound directly or as copies.
LaunchStatus launchTiledItems(const KernelSignature &sig, PackedKernelFn entry,
                              const TiledKernelShape &shape,
                              const RunArgs &args, PackedKernelArgs &packed,
                              bool directK, bool directV, std::string &error);
} // namespace

LaunchStatus attnc::launchTiledKernel(const KernelSignature &sig,
                                      DType elementType, PackedKernelFn entry,
                                      const TiledKernelShape &shape,
                                      const RunArgs &args, std::string &error) {
  PackedKernelArgs packed;
  if (!packKernelArgs(sig, elementType, args, packed, error))
    return LaunchStatus::InvalidArguments;
  const Sizes &sz = packed.sizes;
  if (sz.value[5] != shape.headDim || sz.value[6] != shape.valueDim) {
    error = "this kernel was compiled for head dimensions D = " +
            std::to_string(shape.headDim) +
            ", Dv = " + std::to_string(shape.valueDim) +
            ", but the tensors have D = " + std::to_string(sz.value[5]) +
            ", Dv = " + std::to_string(sz.value[6]);
    return LaunchStatus::InvalidArguments;
  }
  int64_t B = sz.value[0], Hkv = sz.value[2], Lkv = sz.value[4];
  int64_t D = sz.value[5], Dv = sz.value[6], vw = shape.vectorWidth;
  auto roundUp = [&](int64_t x) { return (x + vw - 1) / vw * vw; };
  int64_t kvTiles = (Lkv + shape.tileKV - 1) / shape.tileKV;
  auto direct = [&](const TensorView &t, int64_t dim) {
    return t.dtype == DType::F32 && t.strides[3] == 1 && dim == roundUp(dim);
  };
  // The working memory, in exact arithmetic before anything is allocated:
  // K and V may be broadcast views (stride 0) far larger than the memory
  // behind them, so their copies may not fit this machine.
  {
    using Wide = unsigned __int128;
    Wide heads = Wide(B) * Wide(Hkv), keys = heads * Wide(Lkv);
    Wide bytes = heads * Wide(kvTiles) * Wide(roundUp(D) * shape.tileKV) * 4 +
                 heads * Wide(kvTiles) * 4 + heads * sizeof(std::once_flag);
    if (!direct(args.k, D))
      bytes += keys * Wide(roundUp(D)) * 4;
    if (!direct(args.v, Dv))
      bytes += keys * Wide(roundUp(Dv)) * 4;
    uint64_t memory = hostMemoryBytes();
    if (bytes > memory) {
      error = "the tiled kernel needs " +
              (bytes > UINT64_MAX ? std::string("more than 2^64 bytes")
                                  : formatBytes(static_cast<uint64_t>(bytes))) +
              " of working memory for K and V of shapes " +
              formatShape(args.k.shape) + " and " + formatShape(args.v.shape) +
              ", more than this machine has (" + formatBytes(memory) +
              " of RAM and swap)";
      return LaunchStatus::OutOfMemory;
    }
  }
  try {
    return launchTiledItems(sig, entry, shape, args, packed, direct(args.k, D),
                            direct(args.v, Dv), error);
  } catch (const std::bad_alloc &) {
    error = "out of memory: cannot allocate the tiled kernel's working "
            "memory for K and V of shapes " +
            formatShape(args.k.shape) + " and " + formatShape(args.v.shape);
    return LaunchStatus::OutOfMemory;
  }
}

namespace {

LaunchStatus launchTiledItems(const KernelSignature &sig, PackedKernelFn entry,
                              const TiledKernelShape &shape,
                              const RunArgs &args, PackedKernelArgs &packed,
                              bool directK, bool directV, std::string &error) {
  const Sizes &sz = packed.sizes;
  // Per call, for the kernels: a K^T buffer, flat [B, Hkv, kvTiles, DP,
  // Tk], that the kernels fill themselves (each visited kv-tile of each KV
  // head transposed about once, by the first work item that visits it,
  // with one state word per tile, zeroed here); and K and V as float32
  // rows of whole vectors [B, Hkv, Lkv, DP or DvP] (DP, DvP the head dims
  // rounded up to the vector width): the caller's own tensors when they are
  // already that (float32, unit inner stride, a head dim of whole vectors),
  // else padded copies, each KV head converted by the first work item that
  // needs it. The kernels never read a row past Lkv.
  int64_t B = sz.value[0], Hkv = sz.value[2], Lkv = sz.value[4];
  int64_t D = sz.value[5], Dv = sz.value[6], vw = shape.vectorWidth;
  auto roundUp = [&](int64_t x) { return (x + vw - 1) / vw * vw; };
  int64_t kvTiles = (Lkv + shape.tileKV - 1) / shape.tileKV;
  thread_local std::vector<float> ktStorage, kStorage, vStorage;
  thread_local std::vector<int32_t> ktStates;
  Operand kr(kStorage), vr(vStorage);
  // Flat [B, Hkv, kvTiles, DP, Tk]; every element is written by a kernel
  // before it is read, so the buffer is never cleared.
  int64_t ktSize = B * Hkv * kvTiles * roundUp(D) * shape.tileKV;
  if (static_cast<int64_t>(ktStorage.size()) < ktSize)
    ktStorage.resize(ktSize);
  // Testing: ATTN_TILED_PRIVATE_KT=1 starts every tile claimed and never
  // ready, so that every visit takes the private-copy path (otherwise
  // taken only when work items race for a tile).
  static const bool privateKt = [] {
    const char *env = std::getenv("ATTN_TILED_PRIVATE_KT");
    return env && std::string(env) == "1";
  }();
  ktStates.assign(B * Hkv * kvTiles, privateKt ? 1 : 0);
  Flat kt, states;
  kt.bind(ktStorage);
  kt.size = ktSize;
  states.bind(ktStates);
  auto bind = [&](Operand &op, const TensorView &t, int64_t dim, bool direct) {
    if (!direct) {
      op.init({B, Hkv, Lkv, roundUp(dim)});
      return false;
    }
    op.ptr = const_cast<void *>(t.data);
    int64_t sizes[4] = {B, Hkv, Lkv, dim};
    for (int i = 0; i < 4; ++i) {
      op.sizes[i] = sizes[i];
      op.strides[i] = t.strides[i];
    }
    return true;
  };
  bind(kr, args.k, D, directK);
  bind(vr, args.v, Dv, directV);
  auto copyRows = [&](const TensorView &t, Operand &op, int64_t dim, int64_t b,
                      int64_t h) {
    int64_t dimP = roundUp(dim);
    float *base = op.data.data() + (b * Hkv + h) * Lkv * dimP;
    bool fast = t.dtype == DType::F32 && t.strides[3] == 1;
    for (int64_t j = 0; j < Lkv; ++j) {
      float *row = base + j * dimP;
      if (fast)
        std::memcpy(row,
                    static_cast<const float *>(t.data) + b * t.strides[0] +
                        h * t.strides[1] + j * t.strides[2],
                    dim * sizeof(float));
      else
        for (int64_t c = 0; c < dim; ++c)
          row[c] = elementAt(t, b, h, j, c);
      std::fill(row + dim, row + dimP, 0.0f);
    }
  };
  std::vector<std::once_flag> staged(B * Hkv);
  auto stageHead = [&](int64_t b, int64_t h) {
    if (directK && directV)
      return;
    std::call_once(staged[b * Hkv + h], [&] {
      if (!directK)
        copyRows(args.k, kr, D, b, h);
      if (!directV)
        copyRows(args.v, vr, Dv, b, h);
    });
  };

  // Their descriptors are only read by the kernels: one copy for all.
  std::vector<void *> shared;
  kt.append(shared);
  vr.append(shared);
  kr.append(shared);
  states.append(shared);
  // Tile summaries of rank-1 integer params (per q-tile, per kv-tile), in
  // the kernel's order; this thread keeps them for reuse.
  thread_local std::map<std::string, std::pair<Summary, Summary>> summaryCache;
  for (const SignatureParam &p : sig.params) {
    if (p.isConst || !p.isTensor || p.dims.size() != 1 ||
        p.type == ParamType::F32)
      continue;
    const TensorView &t = std::get<TensorView>(args.params.at(p.name));
    auto &[sq, sk] = summaryCache[p.name];
    if (!(args.reuseTileSummaries && sq.matches(t, shape.tileQ) &&
          sk.matches(t, shape.tileKV))) {
      sq.compute(t, shape.tileQ);
      sk.compute(t, shape.tileKV);
    }
    sq.append(shared);
    sk.append(shared);
  }

  int64_t bh = sz.value[0] * sz.value[1];
  int64_t tiles = (sz.value[3] + shape.tileQ - 1) / shape.tileQ;
  int64_t items = bh * tiles;
  int threads = args.numThreads > 0 ? args.numThreads : defaultThreadCount();
  threads =
      static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(items, 1)));

  // The status memref (allocated, aligned, offset, size, stride) is the last
  // argument; each worker points it at its own words.
  size_t n = packed.args.size();
  std::vector<std::array<int32_t, kStatusWords>> statuses(threads);
  for (auto &s : statuses)
    s.fill(0);
  parallelFor(items, threads, [&](int64_t item, int worker) {
    // Head by head, each head's last (longest) q-tile first: the items
    // that end the run are short, and a head's K^T and V stay in cache
    // while its q-tiles run. The first item of a head also converts the
    // next head's K and V rows where they need a copy, overlapping the
    // other workers' compute.
    int64_t bhIdx = item / tiles, qt = tiles - 1 - item % tiles;
    int64_t b = bhIdx / sz.value[1], h = bhIdx % sz.value[1];
    int64_t group = sz.value[1] / Hkv;
    stageHead(b, h / group);
    if (qt == tiles - 1 && bhIdx + 1 < bh)
      stageHead((bhIdx + 1) / sz.value[1], (bhIdx + 1) % sz.value[1] / group);
    void *statusPtr = statuses[worker].data();
    int64_t idx[3] = {b, h, qt};
    std::vector<void *> local(packed.args.begin(), packed.args.end());
    local[n - 5] = &statusPtr;
    local[n - 4] = &statusPtr;
    for (int64_t &x : idx)
      local.push_back(&x);
    local.insert(local.end(), shared.begin(), shared.end());
    entry(local.data());
  });
  if (args.stats) {
    args.stats->tilesTotal =
        bh * tiles * ((sz.value[4] + shape.tileKV - 1) / shape.tileKV);
    args.stats->tilesInRange = args.stats->tilesComputed = 0;
    for (auto &s : statuses) {
      args.stats->tilesInRange += s[kStatusTilesInRange];
      args.stats->tilesComputed += s[kStatusTilesComputed];
    }
  }
  // The first worker's error, if any.
  for (auto &s : statuses)
    if (!decodeKernelStatus(sig, s.data(), error))
      return LaunchStatus::KernelError;
  return LaunchStatus::Ok;
}

} // namespace

//===----------------------------------------------------------------------===//
// Backward
//===----------------------------------------------------------------------===//

namespace {

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff,
           man = x & 0x7fffff;
  if (exp == 0xff) // inf, nan
    return sign | 0x7c00 | (man ? 0x200 : 0);
  int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 31)
    return sign | 0x7c00;
  if (e <= 0) { // subnormal or zero, round to nearest even
    if (e < -10)
      return sign;
    man |= 0x800000;
    int shift = 14 - e;
    uint32_t half = man >> shift, rest = man & ((1u << shift) - 1),
             mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1)))
      ++half;
    return sign | half;
  }
  uint32_t half = sign | (e << 10) | (man >> 13), rest = man & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
    ++half; // may carry into the exponent: still correct (up to inf)
  return half;
}

/// view[i0, i1, i2, i3] = x, converted to the view's dtype (f32 or f16).
void storeAt(const TensorView &t, int64_t i0, int64_t i1, int64_t i2,
             int64_t i3, float x) {
  int64_t off = i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2] +
                i3 * t.strides[3];
  if (t.dtype == DType::F16) {
    uint16_t h = floatToHalf(x);
    std::memcpy(static_cast<char *>(t.data) + off * 2, &h, 2);
    return;
  }
  std::memcpy(static_cast<char *>(t.data) + off * 4, &x, 4);
}

/// Whether the kernels can use `t` itself as float32 rows of whole vectors.
bool directRows(const TensorView &t, int64_t dim, int64_t vw) {
  return t.dtype == DType::F32 && t.strides[3] == 1 && dim % vw == 0;
}

/// A memref descriptor of any rank over storage that outlives the call.
struct Desc {
  void *ptr = nullptr;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
  void append(std::vector<void *> &args) {
    args.push_back(&ptr);
    args.push_back(&ptr);
    args.push_back(&offset);
    for (int64_t &x : sizes)
      args.push_back(&x);
    for (int64_t &x : strides)
      args.push_back(&x);
  }
};

} // namespace

LaunchStatus attnc::launchTiledBackwardKernel(
    const KernelSignature &sig, DType elementType, PackedKernelFn rowsEntry,
    PackedKernelFn itemEntry, const TiledKernelShape &shape,
    const BackwardRunArgs &args, std::string &error) {
  PackedBackwardArgs packed;
  if (!packBackwardKernelArgs(sig, elementType, args, packed, error))
    return LaunchStatus::InvalidArguments;
  const Sizes &sz = packed.sizes;
  if (sz.value[5] != shape.headDim || sz.value[6] != shape.valueDim) {
    error = "this kernel was compiled for head dimensions D = " +
            std::to_string(shape.headDim) +
            ", Dv = " + std::to_string(shape.valueDim) +
            ", but the tensors have D = " + std::to_string(sz.value[5]) +
            ", Dv = " + std::to_string(sz.value[6]);
    return LaunchStatus::InvalidArguments;
  }
  int64_t B = sz.value[0], H = sz.value[1], Hkv = sz.value[2], Lq = sz.value[3],
          Lkv = sz.value[4], D = sz.value[5], Dv = sz.value[6],
          vw = shape.vectorWidth;
  auto roundUp = [&](int64_t x) { return (x + vw - 1) / vw * vw; };
  int64_t DP = roundUp(D);
  int64_t kvTiles = (Lkv + shape.tileKV - 1) / shape.tileKV;
  int64_t bh = B * H, bhkv = B * Hkv;
  int threads = args.numThreads > 0 ? args.numThreads : defaultThreadCount();

  // Q, dO, K, V as f32 rows of whole vectors: the caller's own or padded
  // copies (converted head by head, in parallel).
  thread_local std::vector<float> qStore, doStore, kStore, vStore, dqStore,
      dkStore, dvStore, rowAStore, rowDStore;
  Operand qr(qStore), dor(doStore), kr(kStore), vr(vStore);
  auto bindIn = [&](Operand &op, const TensorView &t, int64_t heads,
                    int64_t len, int64_t dim) {
    if (directRows(t, dim, vw)) {
      op.ptr = const_cast<void *>(t.data);
      int64_t sizes[4] = {B, heads, len, dim};
      for (int i = 0; i < 4; ++i) {
        op.sizes[i] = sizes[i];
        op.strides[i] = t.strides[i];
      }
      return true;
    }
    op.init({B, heads, len, roundUp(dim)});
    return false;
  };
  bool direct[4] = {
      bindIn(qr, args.q, H, Lq, D), bindIn(dor, args.dO, H, Lq, Dv),
      bindIn(kr, args.k, Hkv, Lkv, D), bindIn(vr, args.v, Hkv, Lkv, Dv)};
  struct Staged {
    const TensorView *t;
    Operand *op;
    int64_t heads, len, dim;
  } staged[4] = {{&args.q, &qr, H, Lq, D},
                 {&args.dO, &dor, H, Lq, Dv},
                 {&args.k, &kr, Hkv, Lkv, D},
                 {&args.v, &vr, Hkv, Lkv, Dv}};
  for (int s = 0; s < 4; ++s) {
    if (direct[s])
      continue;
    const Staged &st = staged[s];
    int64_t dimP = roundUp(st.dim);
    parallelFor(B * st.heads, threads, [&](int64_t item, int) {
      int64_t b = item / st.heads, h = item % st.heads;
      float *base = st.op->data.data() + item * st.len * dimP;
      for (int64_t j = 0; j < st.len; ++j) {
        float *row = base + j * dimP;
        for (int64_t c = 0; c < st.dim; ++c)
          row[c] = elementAt(*st.t, b, h, j, c);
        std::fill(row + st.dim, row + dimP, 0.0f);
      }
    });
  }

  // Splitting the kv range of a KV head: only when there are too few KV
  // heads to keep the threads busy; then each range has its own dQ rows.
  int64_t splits = 1;
  if (bhkv < 2 * threads)
    splits = std::min<int64_t>(std::max<int64_t>(kvTiles, 1),
                               (2 * threads + bhkv - 1) / bhkv);
  // dQ, dK, dV rows: the caller's own where they are float32 rows of whole
  // vectors (and dQ is not split), else scratch copied out at the end.
  Operand dkr(dkStore), dvr(dvStore);
  bool directDk = false, directDv = false;
  auto bindOut = [&](Operand &op, const TensorView &t, int64_t heads,
                     int64_t len, int64_t dim) {
    if (directRows(t, dim, vw)) {
      op.ptr = t.data;
      int64_t sizes[4] = {B, heads, len, dim};
      for (int i = 0; i < 4; ++i) {
        op.sizes[i] = sizes[i];
        op.strides[i] = t.strides[i];
      }
      return true;
    }
    op.init({B, heads, len, roundUp(dim)});
    return false;
  };
  directDk = bindOut(dkr, args.dk, Hkv, Lkv, D);
  directDv = bindOut(dvr, args.dv, Hkv, Lkv, Dv);
  bool directDq = splits == 1 && directRows(args.dq, D, vw);
  std::vector<Operand> dqParts;
  int64_t partSize = B * H * Lq * DP;
  if (!directDq && static_cast<int64_t>(dqStore.size()) < splits * partSize)
    dqStore.resize(splits * partSize);
  for (int64_t s = 0; s < splits; ++s) {
    dqParts.emplace_back(dqStore);
    Operand &op = dqParts.back();
    if (directDq) {
      bindOut(op, args.dq, H, Lq, D);
    } else {
      int64_t sizes[4] = {B, H, Lq, DP};
      int64_t n = 1;
      for (int i = 3; i >= 0; --i) {
        op.sizes[i] = sizes[i];
        op.strides[i] = n;
        n *= sizes[i];
      }
      op.ptr = dqStore.data() + s * partSize;
    }
  }
  rowAStore.resize(std::max<int64_t>(bh * Lq, 1));
  rowDStore.resize(std::max<int64_t>(bh * Lq, 1));
  Flat rowA, rowD;
  rowA.bind(rowAStore);
  rowD.bind(rowDStore);

  // Tile summaries of rank-1 integer params, as the forward's.
  thread_local std::map<std::string, std::pair<Summary, Summary>> summaryCache;
  std::vector<void *> summaryArgs;
  for (const SignatureParam &p : sig.params) {
    if (p.isConst || !p.isTensor || p.dims.size() != 1 ||
        p.type == ParamType::F32)
      continue;
    const TensorView &t = std::get<TensorView>(args.params.at(p.name));
    auto &[sq, sk] = summaryCache[p.name];
    if (!(args.reuseTileSummaries && sq.matches(t, shape.tileQ) &&
          sk.matches(t, shape.tileKV))) {
      sq.compute(t, shape.tileQ);
      sk.compute(t, shape.tileKV);
    }
    sq.append(summaryArgs);
    sk.append(summaryArgs);
  }

  // Worker slots: their own param-gradient buffers and status words. With
  // param gradients the items go to slots statically, so that every
  // gradient is summed in an order that does not depend on timing.
  bool staticSlots = !packed.grads.empty();
  int slots = threads;
  std::vector<std::array<int32_t, kStatusWords>> statuses(slots);
  for (auto &s : statuses)
    s.fill(0);
  std::vector<std::vector<std::vector<double>>> partial(slots);
  std::vector<std::vector<Desc>> gradDescs(slots);
  for (int w = 0; w < slots; ++w) {
    for (const GradSlot &g : packed.grads) {
      partial[w].emplace_back(std::max<int64_t>(g.count, 1), 0.0);
      Desc desc;
      desc.ptr = partial[w].back().data();
      desc.sizes = g.shape;
      desc.strides.assign(g.shape.size(), 1);
      for (int i = static_cast<int>(g.shape.size()) - 2; i >= 0; --i)
        desc.strides[i] = desc.strides[i + 1] * g.shape[i + 1];
      gradDescs[w].push_back(std::move(desc));
    }
  }
  size_t n = packed.args.size();
  // The leading arguments for slot w: its gradient buffers and status.
  auto leading = [&](int w, void *&statusPtr) {
    std::vector<void *> local(packed.args.begin(), packed.args.end());
    for (size_t g = 0; g < packed.grads.size(); ++g) {
      std::vector<void *> d;
      gradDescs[w][g].append(d);
      std::copy(d.begin(), d.end(), local.begin() + packed.grads[g].argIndex);
    }
    statusPtr = statuses[w].data();
    local[n - 5] = &statusPtr;
    local[n - 4] = &statusPtr;
    return local;
  };
  auto run = [&](int64_t items, const std::function<void(int64_t, int)> &work) {
    int used =
        static_cast<int>(std::min<int64_t>(slots, std::max<int64_t>(items, 1)));
    if (!staticSlots) {
      parallelFor(items, used, work);
      return;
    }
    parallelFor(used, used, [&](int64_t w, int) {
      for (int64_t item = w; item < items; item += used)
        work(item, static_cast<int>(w));
    });
  };

  // Phase 1: the rows of every (b, h): D, the statistic, the sink.
  run(bh, [&](int64_t item, int w) {
    void *statusPtr;
    std::vector<void *> local = leading(w, statusPtr);
    int64_t idx[2] = {item / H, item % H};
    local.push_back(&idx[0]);
    local.push_back(&idx[1]);
    Flat a = rowA, d = rowD;
    a.append(local);
    d.append(local);
    rowsEntry(local.data());
  });
  // Phase 2: (kv range, b, hkv), the ranges slowest.
  std::vector<void *> shared;
  run(splits * bhkv, [&](int64_t item, int w) {
    int64_t s = item / bhkv, rest = item % bhkv;
    void *statusPtr;
    std::vector<void *> local = leading(w, statusPtr);
    int64_t idx[4] = {rest / Hkv, rest % Hkv, s * kvTiles / splits,
                      (s + 1) * kvTiles / splits};
    for (int64_t &x : idx)
      local.push_back(&x);
    Flat a = rowA, d = rowD;
    a.append(local);
    d.append(local);
    Operand q = qr, o = dor, k = kr, v = vr, dq = dqParts[s], dk = dkr,
            dv = dvr;
    for (Operand *op : {&q, &o, &k, &v, &dq, &dk, &dv})
      op->append(local);
    local.insert(local.end(), summaryArgs.begin(), summaryArgs.end());
    itemEntry(local.data());
  });

  for (auto &s : statuses)
    if (!decodeKernelStatus(sig, s.data(), error))
      return LaunchStatus::KernelError;

  // dQ: the ranges' rows summed in range order; dQ, dK, dV copied out
  // where the kernels wrote scratch.
  // (Lambdas run on other threads: never name a thread_local in them.)
  const std::vector<float> &dqParts0 = dqStore;
  if (!directDq)
    parallelFor(bh, threads, [&](int64_t item, int) {
      int64_t b = item / H, h = item % H;
      for (int64_t i = 0; i < Lq; ++i) {
        int64_t row = (item * Lq + i) * DP;
        for (int64_t c = 0; c < D; ++c) {
          float x = 0.0f;
          for (int64_t s = 0; s < splits; ++s)
            x += dqParts0[s * partSize + row + c];
          storeAt(args.dq, b, h, i, c, x);
        }
      }
    });
  for (auto [direct, op, view, dim] : {std::tuple{directDk, &dkr, &args.dk, D},
                                       {directDv, &dvr, &args.dv, Dv}}) {
    if (direct)
      continue;
    int64_t dimP = roundUp(dim);
    parallelFor(
        bhkv, threads, [&, op = op, view = view, dim = dim](int64_t item, int) {
          int64_t b = item / Hkv, h = item % Hkv;
          for (int64_t j = 0; j < Lkv; ++j)
            for (int64_t c = 0; c < dim; ++c)
              storeAt(*view, b, h, j, c, op->data[(item * Lkv + j) * dimP + c]);
        });
  }
  // Param gradients: the slots' partials summed in slot order (float64),
  // then stored as float32.
  for (size_t g = 0; g < packed.grads.size(); ++g) {
    const GradSlot &slot = packed.grads[g];
    if (!slot.requested)
      continue;
    std::vector<double> sum(std::max<int64_t>(slot.count, 1), 0.0);
    for (int w = 0; w < slots; ++w)
      for (int64_t e = 0; e < slot.count; ++e)
        sum[e] += partial[w][g][e];
    storeGradient(slot.user, sum.data());
  }
  return LaunchStatus::Ok;
}
