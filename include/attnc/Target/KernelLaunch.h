//===- KernelLaunch.h - Checking, packing and calling a compiled kernel ---===//
//
// The host side of calling a compiled variant, shared by the JIT (CpuKernel)
// and by ahead-of-time programs (the attn_launcher library): every tensor
// and parameter is checked against the KernelSignature, the arguments are
// packed as expanded memref descriptors in the KernelABI order for the
// packed entry point `void _mlir_<name>(void **args)`, and the kernel's
// status word is turned into a message. Free of MLIR and LLVM types and
// libraries.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_TARGET_KERNELLAUNCH_H
#define ATTNC_TARGET_KERNELLAUNCH_H

#include "attnc/ABI/KernelABI.h"
#include "attnc/Target/Signature.h"

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace attnc {

/// The most bytes one tensor view may span (from its lowest to its highest
/// addressed byte): far beyond any machine's memory, and low enough that
/// no offset a kernel computes in int64 can overflow.
constexpr int kMaxViewBytesLog2 = 48;
constexpr int64_t kMaxViewBytes = int64_t(1) << kMaxViewBytesLog2;

/// A view of a strided tensor in host memory; strides count elements.
struct TensorView {
  void *data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  /// A C-contiguous view of `shape`.
  static TensorView contiguous(void *data, DType dtype,
                               std::vector<int64_t> shape);
};

/// A scalar parameter value; bools and ints are exact in the double.
struct ScalarValue {
  double value = 0;
};

using ParamArg = std::variant<ScalarValue, TensorView>;

/// What a tiled kernel did (filled when RunArgs::stats is set).
struct RunStats {
  int64_t tilesTotal = 0;    // (q-tile, kv-tile) pairs of the problem
  int64_t tilesInRange = 0;  // inside the closed-form kv ranges
  int64_t tilesComputed = 0; // not proven all-false: computed
};

struct RunArgs {
  TensorView q, k, v, o;
  std::optional<TensorView> lse; // [B, H, Lq] float32
  /// [B, H, Lq] float32: the row statistics a backward run needs (softmax:
  /// the LSE, so the same as `lse`; linear: the row sum of the scores).
  /// Rejected for sigmoid and relu, which need none.
  std::optional<TensorView> rowStats;
  std::map<std::string, ParamArg> params;
  /// Worker threads for kernels that split the work; 0 picks the default.
  /// The reference kernel is single-threaded and ignores it.
  int numThreads = 0;
  /// Optional: receives tile statistics from tiled kernels.
  RunStats *stats = nullptr;
  /// Tiled kernels summarise rank-1 integer tensor params per tile (O(L));
  /// true promises that such params have the same contents as in this
  /// thread's previous run with the same buffers, so the summaries are
  /// reused.
  bool reuseTileSummaries = false;
  /// GPU kernels: return once the launch is queued instead of waiting for
  /// the stream. Errors that the kernel finds (an out-of-range param read,
  /// an integer division by zero) are then reported by the kernel's next
  /// synchronous launch or synchronize(). Ignored (the launch waits) when
  /// `stats` is set; CPU kernels always finish first.
  bool async = false;
};

/// The arguments of a backward run: the forward's inputs and output, the
/// gradient dO of the loss with respect to O, the forward's row statistics
/// (RunArgs::rowStats), and the gradients to write. Every f32 runtime param
/// has a gradient; `paramGrads` names those wanted (float32, the param's
/// shape: [] or [1] for a scalar), which are overwritten.
struct BackwardRunArgs {
  TensorView q, k, v, o, dO;
  std::optional<TensorView> rowStats;
  TensorView dq, dk, dv; // the shapes of Q, K and V
  std::map<std::string, ParamArg> params;
  std::map<std::string, TensorView> paramGrads;
  int numThreads = 0;
  bool reuseTileSummaries = false;
};

/// The packed entry point of a kernel: `args[i]` points at the i-th scalar
/// of the flattened KernelABI argument list.
using PackedKernelFn = void (*)(void **args);

/// The packed arguments of one call, with stable addresses for everything
/// `args` points at. Filled in place by packKernelArgs; neither copied nor
/// moved.
struct PackedKernelArgs {
  PackedKernelArgs() = default;
  PackedKernelArgs(const PackedKernelArgs &) = delete;
  PackedKernelArgs &operator=(const PackedKernelArgs &) = delete;

  std::vector<void *> args;
  int32_t status[kStatusWords] = {};
  /// The problem's sizes read off Q, K and V.
  Sizes sizes;
  /// The flag word (KernelFlags) among `args`, for launchers that adjust it.
  int32_t *flags = nullptr;

  // Storage behind `args`.
  std::deque<int64_t> i64s;
  std::deque<void *> ptrs;
  std::deque<int32_t> i32s;
  std::deque<float> f32s;

  void memref(void *data, const std::vector<int64_t> &shape,
              const std::vector<int64_t> &strides);
  void i32(int32_t v);
  void f32(float v);
};

/// Checks `args` against `sig` for a kernel compiled for `elementType`
/// tensors and packs them into `out`. On failure returns false with a
/// one-line `error` in user terms.
bool packKernelArgs(const KernelSignature &sig, DType elementType,
                    const RunArgs &args, PackedKernelArgs &out,
                    std::string &error);

/// The gradient of one f32 runtime param in packed backward arguments: the
/// kernels add to a float64 buffer of the param's shape (`values`,
/// contiguous, zero after packing), which finishBackward converts into the
/// caller's float32 view when the gradient was requested.
struct GradSlot {
  std::string name;
  std::vector<int64_t> shape; // the param's as passed; [1] for a scalar
  double *values = nullptr;
  int64_t count = 0; // elements of `shape`
  TensorView user;   // requested: float32, [1] for a scalar
  bool requested = false;
  size_t argIndex = 0; // of the descriptor's allocated pointer in `args`
};

/// Packed backward arguments (KernelABI.h's backward order).
struct PackedBackwardArgs : PackedKernelArgs {
  std::vector<GradSlot> grads;
  std::deque<std::vector<double>> gradStorage;
};

/// Checks `args` against `sig` and packs them for a backward kernel. On
/// failure returns false with a one-line `error` in user terms: dO not of
/// O's shape, gradients not of their tensors' shapes, missing row
/// statistics, the gradient of an unknown, integer, bool or const param.
bool packBackwardKernelArgs(const KernelSignature &sig, DType elementType,
                            const BackwardRunArgs &args,
                            PackedBackwardArgs &out, std::string &error);

/// Writes the float64 `values` (contiguous, row-major) into a float32 view
/// of the same shape.
void storeGradient(const TensorView &t, const double *values);

/// Turns the kStatusWords status words a kernel left into a message; true
/// when the kernel succeeded. A param is named by its index among the
/// signature's runtime (non-const) params, the kernel's ABI order.
bool decodeKernelStatus(const KernelSignature &sig, const int32_t *status,
                        std::string &error);

/// How a launch ended: the arguments were rejected before the kernel ran,
/// the kernel itself reported an error through its status word, the
/// working memory the launch needs could not be allocated, or it cannot run
/// here (a GPU kernel without a CUDA driver).
enum class LaunchStatus {
  Ok,
  InvalidArguments,
  KernelError,
  OutOfMemory,
  Unavailable
};

/// packKernelArgs, `entry(args)`, decodeKernelStatus.
LaunchStatus launchKernel(const KernelSignature &sig, DType elementType,
                          PackedKernelFn entry, const RunArgs &args,
                          std::string &error);

/// packBackwardKernelArgs, zeroing the requested param gradients,
/// `entry(args)` (a reference backward kernel), decodeKernelStatus.
LaunchStatus launchBackwardKernel(const KernelSignature &sig, DType elementType,
                                  PackedKernelFn entry,
                                  const BackwardRunArgs &args,
                                  std::string &error);

} // namespace attnc

#endif // ATTNC_TARGET_KERNELLAUNCH_H
