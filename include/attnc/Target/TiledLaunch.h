//===- TiledLaunch.h - Running tiled kernels over the thread pool ---------===//
//
// A kernel from convert-attn-to-tiled-kernel computes one work item
// (b, h, q-tile) per call. launchTiledKernel checks and packs the arguments
// once (KernelLaunch.h), hands the kernels K and V as float32 rows of whole
// vectors (the caller's own tensors when they are already that, else
// padded copies made per KV head by the first work item that needs it) and
// a K^T buffer with one zeroed state word per kv-tile, which the kernels
// fill themselves; then spreads the B x H x ceil(Lq / tileQ) items over the
// persistent thread pool, head by head and each head's last (for causal
// masks, longest) q-tile first, each thread with its own status word. No
// MLIR or LLVM here: ahead-of-time programs link it too.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_TILEDLAUNCH_H
#define ATTNC_TARGET_TILEDLAUNCH_H

#include "attnc/ABI/TiledKernelABI.h"
#include "attnc/Target/KernelLaunch.h"

namespace attnc {

LaunchStatus launchTiledKernel(const KernelSignature &sig, DType elementType,
                               PackedKernelFn entry,
                               const TiledKernelShape &shape,
                               const RunArgs &args, std::string &error);

} // namespace attnc

#endif // ATTNC_TARGET_TILEDLAUNCH_H
