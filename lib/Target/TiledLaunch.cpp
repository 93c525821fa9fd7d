//===- TiledLaunch.cpp - Running tiled kernels over the thread pool -------===//

#include "attnc/Target/TiledLaunch.h"
#include "attnc/Target/ThreadPool.h"

#include <algorithm>
#include <cstring>

using namespace attnc;

LaunchStatus attnc::launchTiledKernel(const KernelSignature &sig,
                                      DType elementType, PackedKernelFn entry,
                                      const TiledKernelShape &shape,
                                      const RunArgs &args,
                                      std::string &error) {
  PackedKernelArgs packed;
  if (!packKernelArgs(sig, elementType, args, packed, error))
    return LaunchStatus::InvalidArguments;
  const Sizes &sz = packed.sizes;
  if (sz.value[5] != shape.headDim || sz.value[6] != shape.valueDim) {
    error = "this kernel was compiled for head dimensions D = " +
            std::to_string(shape.headDim) + ", Dv = " +
            std::to_string(shape.valueDim) + ", but the tensors have D = " +
            std::to_string(sz.value[5]) + ", Dv = " +
            std::to_string(sz.value[6]);
    return LaunchStatus::InvalidArguments;
  }
  int64_t bh = sz.value[0] * sz.value[1];
  int64_t tiles = (sz.value[3] + shape.tileQ - 1) / shape.tileQ;
  int64_t items = bh * tiles;
  int threads = args.numThreads > 0 ? args.numThreads : defaultThreadCount();
  threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(items, 1)));

  // The status memref (allocated, aligned, offset, size, stride) is the last
  // argument; each worker points it at its own words.
  size_t n = packed.args.size();
  std::vector<std::array<int32_t, kStatusWords>> statuses(threads);
  for (auto &s : statuses)
    s.fill(0);
  parallelFor(items, threads, [&](int64_t item, int worker) {
    // Longest first: item 0 is the last q-tile of the first (b, h).
    int64_t qt = tiles - 1 - item / bh;
    int64_t b = (item % bh) / sz.value[1], h = item % sz.value[1];
    void *statusPtr = statuses[worker].data();
    int64_t idx[3] = {b, h, qt};
    std::vector<void *> local(packed.args.begin(), packed.args.end());
    local[n - 5] = &statusPtr;
    local[n - 4] = &statusPtr;
    for (int64_t &x : idx)
      local.push_back(&x);
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
  for (auto &s : statuses)
    if (s[0] != kStatusOk) {
      std::memcpy(packed.status, s.data(), sizeof(packed.status));
      break;
    }
  if (!decodeKernelStatus(sig, packed, error))
    return LaunchStatus::KernelError;
  return LaunchStatus::Ok;
}
