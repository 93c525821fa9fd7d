//===- TiledLaunch.h - Running tiled kernels over the thread pool ---------===//
//
// A kernel from convert-attn-to-tiled-kernel computes one work item
// (b, h, q-tile) per call. launchTiledKernel checks and packs the arguments
// once (KernelLaunch.h), converts K (transposed) into a zero-padded float32
// buffer that every work item shares (each KV head staged by the first
// work item that needs it) and V likewise unless the caller's V is float32
// rows of whole vectors (then the kernel reads it in place), then spreads
// the B x H x ceil(Lq / tileQ) items over the persistent thread pool, last
// q-tiles first (for causal masks those are the longest), each thread with
// its own status word. No MLIR or LLVM here: ahead-of-time programs link
// it too.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_TILEDLAUNCH_H
#define ATTNC_TARGET_TILEDLAUNCH_H

#include "attnc/Target/KernelLaunch.h"

namespace attnc {

/// What a tiled kernel was compiled for.
struct TiledKernelShape {
  int64_t tileQ = 128;
  int64_t tileKV = 64;
  int64_t vectorWidth = 16;
  int64_t headDim = 0;
  int64_t valueDim = 0;
};

LaunchStatus launchTiledKernel(const KernelSignature &sig, DType elementType,
                               PackedKernelFn entry,
                               const TiledKernelShape &shape,
                               const RunArgs &args, std::string &error);

} // namespace attnc

#endif // ATTNC_TARGET_TILEDLAUNCH_H
