//===- MmaKernelBuilder.h - Builders of the tensor-core kernels -----------===//
//
// convert-attn-to-mma-kernel lowers each attn.variant to a `gpu.func`
// kernel that computes Q K^T and P V on tensor cores (`mma.sync.m16n8k16`,
// or Hopper's `wgmma.mma_async`, f16 or bf16 inputs, f32 accumulators), in
// the class of FlashAttention-2's forward kernel:
//
//   * one block per (b, h, q-tile); each warp owns 16 * mTiles query rows
//     (mma.sync: 32 where the accumulators fit in registers, so that every
//     K or V fragment read from shared memory feeds two mma; wgmma: two
//     warpgroups of 64) and keeps their running max and sum and output
//     accumulators in registers;
//   * the Q tile, and K and V tiles streaming past it, live in dynamic
//     shared memory (padded rows for ldmatrix; 128-byte-swizzled ones for
//     wgmma), filled with `cp.async` (16-byte copies, zero fill past Lq and
//     Lkv), V of a tile and K of the next live one in flight while the
//     tensor cores work;
//   * score and mask expressions are inlined per accumulator element from
//     that element's (q_idx, kv_idx); the mask runs only in mixed or
//     partial tiles; kv-tiles outside the closed-form range are never
//     visited and all-false tiles inside it are never loaded; a
//     data-dependent mask's live tiles come from per-kv-tile summaries,
//     worked out by each block or once per launch by a mark kernel;
//   * online softmax in log2 units with exp2 (ex2.approx), row statistics
//     reduced across the four lanes that share a row with shuffles;
//   * blocks are numbered longest-first (the last q-tile first).
//
// The kernel's shape is its GpuKernelPlan, taken as it is. The builders
// share MmaKernelBuilder (the arguments, the shared memory's views, the
// thread's indices, IR helpers, and the tile summaries and marks):
// MarkKernelBuilder builds the mark kernel, AttentionKernelBuilder the
// attention kernel with its mma.sync or wgmma main loop and its epilogue.
// One file per part of this folder (see the CMake list).
//
// The host guarantees Q, K and V rows with unit inner stride, 16-byte
// aligned, and launches with the plan's dynamic shared memory
// (GpuKernel.cpp).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNC_CONVERSION_ATTNTOMMAKERNEL_MMAKERNELBUILDER_H
#define ATTNC_CONVERSION_ATTNTOMMAKERNEL_MMAKERNELBUILDER_H

#include "attnc/ABI/GpuKernelPlan.h"
#include "attnc/ABI/KernelABI.h"
#include "attnc/ABI/MMAKernelConfig.h"
#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/Conversion/KernelIRBuilder.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <array>
#include <map>
#include <optional>
#include <string>
#include <tuple>

namespace attnc::mma {

using mlir::Value;

/// Attributes of the gpu.funcs that repeat the plan's values for readers of
/// the IR and its tests (nothing reads them back): the dynamic shared
/// memory of a block (i64), a persistent kernel (unit), and the mark
/// kernel's items and words (array<i64: perBatch, perHead, words>).
inline constexpr const char *kDynamicSharedBytesAttr =
    "attnc.dynamic_shared_bytes";
inline constexpr const char *kPersistentAttr = "attnc.persistent";
inline constexpr const char *kMarkKernelAttr = "attnc.mark_kernel";

/// Four f32 accumulators of one m16n8 tile: c0, c1 (row g) and c2, c3
/// (row g + 8), columns 2 * (lane % 4) and 2 * (lane % 4) + 1.
using Acc = std::array<Value, 4>;
/// Accumulator tiles, [m-tile][n-tile].
using Tiles = llvm::SmallVector<llvm::SmallVector<Acc>>;

/// A work item (b, h, q-tile): where it is, its live kv-tiles [kt0, ktEnd)
/// and (persistent kernel) its second live tile kt1.
struct Item {
  BlockTile tile;
  Value ktEnd, kt0, kt1;
};

/// Online softmax (or plain weights) of one tile for the lane's rows: the
/// weights P, the new row state and, for softmax, the factor alpha that
/// rescales what O holds so far.
struct Step {
  Tiles p;
  llvm::SmallVector<std::array<Value, 2>> m, l, alpha;
};

/// What the attention kernel and its mark kernel share: the arguments,
/// the views of the dynamic shared memory, the thread's indices, IR
/// helpers, and the tile abstraction with the mask's summaries and marks.
class MmaKernelBuilder : public KernelIRBuilder {
public:
  /// `module`: the gpu.module to add the kernel to (null: a new one, named
  /// after the variant).
  MmaKernelBuilder(mlir::attn::VariantOp variant, mlir::Type elementType,
                   const GpuKernelPlan &plan, bool marksOnly,
                   mlir::gpu::GPUModuleOp module)
      : KernelIRBuilder(variant), variant(variant), elementType(elementType),
        plan(plan), cfg(MmaKernelConfig::fromPlan(plan)), marksOnly(marksOnly),
        gpuModule(module) {}

  mlir::gpu::GPUModuleOp module() const { return gpuModule; }

protected:
  /// Creates the kernel function (the attention kernel, or with marksOnly
  /// `@<variant>_marks`) with its arguments, the griddepcontrol of a
  /// dependent launch, the views of the dynamic shared memory laid out as
  /// MMAKernelConfig.h says, the thread's indices, the scale and the wgmma
  /// descriptors; fails where the variant is not the one the plan was made
  /// for.
  mlir::LogicalResult beginKernel();
  /// beginKernel's parts: the Q, K and V tiles (and Q, K, V with a unit
  /// inner stride); the thread's indices and the scale; the mask's tables,
  /// bitmaps and marks after (or in) the tiles, and the kernel's
  /// attributes, its shared memory checked against the plan's.
  void placeTiles();
  void placeThreads();
  mlir::LogicalResult
  placeSummaries(llvm::ArrayRef<mlir::attn::ParamOp> summaryParams,
                 const MmaSharedLayout &layout);
  /// Makes `it` the item that the helpers (tile facts, summaries, score
  /// and mask inlining) work on, from the insertion point on.
  void setItem(const Item &it);
  /// expandAttnOps and the last rewrites of the finished kernel.
  void finishFunction();

  Value andI(Value x, Value y) {
    return mlir::arith::AndIOp::create(b, loc, x, y);
  }
  Value select(Value c, Value x, Value y) {
    return mlir::arith::SelectOp::create(b, loc, c, x, y);
  }
  Value fmul(Value x, Value y) {
    return mlir::arith::MulFOp::create(b, loc, x, y);
  }
  Value fadd(Value x, Value y) {
    return mlir::arith::AddFOp::create(b, loc, x, y);
  }
  Value fsub(Value x, Value y) {
    return mlir::arith::SubFOp::create(b, loc, x, y);
  }
  /// max.f32 (the NaN-ignoring maxnum: one instruction, where maximumf
  /// costs four).
  Value fmax(Value x, Value y) {
    return mlir::arith::MaxNumFOp::create(b, loc, x, y);
  }
  Value isNegInf(Value x) {
    return mlir::arith::CmpFOp::create(b, loc, mlir::arith::CmpFPredicate::OEQ,
                                       x, cF32(-INFINITY));
  }
  Value add64(Value x, int64_t c) {
    return mlir::arith::AddIOp::create(b, loc, x, cI64(c));
  }
  bool isBF16() const { return elementType.isBF16(); }
  /// An scf.if yielding `n` f32 values from each branch.
  llvm::SmallVector<Value>
  ifElse(Value cond, unsigned n,
         llvm::function_ref<llvm::SmallVector<Value>()> thenFn,
         llvm::function_ref<llvm::SmallVector<Value>()> elseFn);
  Value shuffleXor(Value x, int64_t offset);
  /// x combined with the other three lanes of its quad (the lanes that hold
  /// the same rows).
  Value quadReduce(Value x, bool isMax);
  /// A pair of elements as an mma operand register: vector<2xf16> for f16,
  /// i32 for bf16 (the NVVM op's operand types).
  Value operand(Value pair);
  /// Two f32 values as a vector<2 x elementType>.
  Value pair(Value lo, Value hi);
  Value pack(Value lo, Value hi) { return operand(pair(lo, hi)); }
  /// ldmatrix of `tiles` 8x8 matrices; returns the per-matrix registers.
  llvm::SmallVector<Value> ldmatrix(Value tile, Value row, Value col, int tiles,
                                    bool transpose);
  Acc mma(llvm::ArrayRef<Value> a, llvm::ArrayRef<Value> bOps, const Acc &c);
  /// Inline PTX with side effects (kept in order with the other memory
  /// operations); returns its results.
  llvm::SmallVector<Value> inlinePtx(mlir::TypeRange results,
                                     mlir::ValueRange operands,
                                     const std::string &text,
                                     const std::string &constraints);
  void ptx(const std::string &text) { inlinePtx({}, {}, text, "~{memory}"); }
  /// The values passed through an empty asm statement, so that no use of
  /// them moves across the wgmma fence or wait next to it (the registers
  /// wgmma reads or writes asynchronously).
  llvm::SmallVector<Value> pinRegisters(llvm::ArrayRef<Value> values);
  /// A pair of elements as one 32-bit register (wgmma's A operand).
  Value pack32(Value lo, Value hi);
  /// The wgmma matrix descriptor of a 128-byte-swizzled operand at shared
  /// address `addr` (i64) with leading and stride byte offsets.
  Value descriptor(Value addr, int64_t lbo, int64_t sbo);
  /// One wgmma.mma_async m64nNk16 with f32 accumulators `acc` (N / 2 per
  /// thread; empty: start from zero). A is a descriptor (`aDesc`) or four
  /// registers (`aRegs`); B a descriptor, transposed (N-major) when
  /// `transB`. Every operand is computed before the wgmma fence (ptxas
  /// serialises wgmma whose inputs are defined between fence and commit).
  llvm::SmallVector<Value> wgmma(llvm::ArrayRef<Value> acc, int64_t n,
                                 Value aDesc, llvm::ArrayRef<Value> aRegs,
                                 Value bDesc, bool transB, Value scale);
  /// An scf.while over loop state `init` whose first value is the kv-tile:
  /// it runs while that is below ktEnd. Leaves the builder at the start of
  /// the body (the caller yields) and returns the loop.
  mlir::scf::WhileOp whileLiveTiles(mlir::ValueRange init);
  /// A view of the dynamic shared memory: a tile of `rows` rows (times
  /// `stages`) of `width` elements at byte `offset` (wgmma: after the
  /// alignment pad, in swizzle atoms of 64 elements).
  Value sharedTile(int64_t rows, int64_t width, int64_t offset,
                   int64_t stages = 1);
  /// The shared address (i64) of byte `offset` of the aligned tiles.
  Value tileAddr(int64_t offset);
  /// `x` (Q, K, V or O) with the unit inner stride the host guarantees
  /// (cp.async copies 16 contiguous bytes).
  Value unitInner(Value x);

  /// Starts the cp.async copies of rows [r0, r0 + rows) of head `head` of
  /// `src` (rows at or past `limit` are zero-filled) into `tile` and,
  /// unless `commit` is false (the caller then commits, so that a
  /// conditional copy still counts as one group), commits them as one
  /// group.
  void loadTile(Value src, Value head, Value tile, int64_t width, int64_t rows,
                Value r0, Value limit, Value dstBase = Value(),
                bool commit = true);
  /// Calls body(row, chunk) for each of this thread's chunks of a grid of
  /// `rows` x `perRow` 16-byte chunks: unrolled where the grid divides
  /// evenly among the threads (a thread's chunks then share their column
  /// and lie threads / perRow rows apart), else as a loop striding by the
  /// thread count.
  /// `first`: this thread's first chunk (row, chunk) of an evenly divided
  /// grid when the caller has it already.
  void forThreadChunks(int64_t rows, int64_t perRow,
                       llvm::function_ref<void(Value, Value)> body,
                       std::array<Value, 2> first = {});
  std::array<Value, 2> firstThreadChunk(int64_t perRow) {
    return {
        mlir::arith::DivUIOp::create(b, loc, tid, cIdx(perRow)).getResult(),
        mlir::arith::RemUIOp::create(b, loc, tid, cIdx(perRow)).getResult()};
  }
  bool chunksDivideEvenly(int64_t rows, int64_t perRow) const {
    return rows * perRow % cfg.threads() == 0 && cfg.threads() % perRow == 0;
  }

  // The tile abstraction, the mask's summaries and its marks
  // (TileSummaries.cpp).

  /// The first kv-tile t >= from with t < ktEnd that the tile abstraction
  /// does not prove all false, or ktEnd.
  Value firstLiveTile(Value from);
  /// firstLiveTile by asking the tile abstraction tile after tile.
  Value scanLiveTiles(Value from);
  TileFacts tileFacts(Value kt);
  /// The range of rank-1 `tensor` over [box.lo, box.hi], read by the 32
  /// lanes of each warp in parallel and reduced with shuffles (the whole
  /// range of the type when the box leaves the tensor or holds more than
  /// 4096 entries). Called at block-uniform points only.
  IntervalValues warpBoxRange(Value tensor, bool isBool, IntervalValues box);
  /// The tensorRange hook: summaries, the cache, then warp reads.
  std::optional<IntervalValues> tensorRange(mlir::attn::ParamOp p,
                                            llvm::ArrayRef<IntervalValues> idx);
  /// Every kv-tile's (min, max) of every summarised param into the shared
  /// tables, all the block's threads at once.
  void computeSummaries();
  /// Every thread classifies kv-tiles of its own from the tables and marks
  /// the live and the all-kept ones in the shared bitmaps.
  void markLiveTiles();
  /// With a mark kernel: reads the q-tile's marks into shared memory (the
  /// block's part of computeSummaries and markLiveTiles).
  void loadMarks(const BlockTile &tile);
  /// The mark item of (b, h, q-tile): (b' * H' + h') * numQTiles + qt.
  Value markItem(Value bIdx, Value hIdx, Value qt);
  /// firstLiveTile through the bitmap: the first set bit at or after
  /// `from`, or ktEnd.
  Value nextMarkedTile(Value from);

  mlir::attn::VariantOp variant;
  mlir::Type elementType;
  const GpuKernelPlan &plan;
  MmaKernelConfig cfg;
  /// Building the mark kernel (kMarkKernelAttr) instead of the attention
  /// kernel.
  bool marksOnly = false;
  mlir::gpu::GPUModuleOp gpuModule;
  mlir::gpu::GPUFuncOp fn;
  mlir::MLIRContext *ctx = nullptr;
  /// The marks buffer (memref<? x i32>, the last argument) where a mark
  /// kernel writes and the attention kernel reads; null without one.
  Value marksArg;
  /// Whether mark items differ in b and in h (the mask reads them).
  bool marksPerBatch = false, marksPerHead = false;
  /// The shared memory of the marks (liveBits, fullBits, liveEnds in a
  /// row): memref<kMarkWords x i32, 3>.
  Value markWords;

  /// Q, K and V with the unit inner stride the host guarantees (the
  /// entry's are fully strided).
  Value q, k, v;
  Value block, bi, hi, hkv, tid, lane, warp, g, tig;
  /// The lane's ldmatrix address parts: its matrix (lane / 8) and row in it
  /// (lane % 8), and the matrix's low and high bit.
  Value mi, r8, miLow, miHigh;
  Value sizeI64[7];
  Value b32, h32;
  Value ktEnd;
  TileEnv env;
  KernelContext kctx;
  /// The dynamic shared memory, the Q, K and V tiles in it, wgmma's pad to
  /// the first 1024-byte boundary and the shared address there.
  mlir::gpu::AddressSpaceAttr workgroup;
  Value shared, qTile, kTile, vTile, pad, sharedAddr;
  /// The first thread of the block.
  Value leader;
  /// The scale (with log2(e) folded in where no score modifier needs the
  /// true scaled dot product); rawScores: a positive compile-time scale
  /// and no score modifier, so softmax works on the raw products (the row
  /// max needs no scaling, each weight is one FFMA).
  Value qscale;
  bool rawScores = false;
  /// wgmma descriptors of this warpgroup's Q, and of K and V; the rows of
  /// one K and one V buffer (in swizzle atoms).
  Value qDesc, kDesc, vDesc;
  int64_t kRows = 0, vRows = 0;
  mlir::attn::NormKind norm = mlir::attn::NormKind::softmax;
  mlir::IRMapping scorePre, maskPre;
  // Whether the score and the mask may run on dropped entries
  // (speculatable()): then masked tiles compute them on every entry and
  // select, straight-line code whose index arithmetic CSE shares.
  bool scoreSpeculatable = false, maskSpeculatable = false;

  /// Data-dependent masks: per-kv-tile (min, max) of every rank-1 integer
  /// tensor param, computed once per block into shared memory (when the
  /// row has at most kMaxSummaryTiles kv-tiles), so that classifying a
  /// kv-tile reads two words instead of the tile's entries. Only
  /// markLiveTiles uses them (the tileFacts(0) calls that cache the q-tile's
  /// side also load tile 0's entry, and drop it): the wgmma kernel keeps
  /// them in its second K buffer and the V buffers, free until the copies
  /// that follow the marking.
  struct Summary {
    Value tensor, table; // table: memref<kMaxSummaryTiles x 2 x i32, 3>
    bool isBool = false;
  };
  llvm::StringMap<Summary> summaries;
  Value useSummaries; // i1, block-uniform
  Value numKvTiles;   // index: kv-tiles of a row (with summaries)
  /// With summaries: the kv-tiles that may hold a kept entry of this
  /// block's rows, as a bitmap (memref<kMaxSummaryTiles / 32 x i32, 3>),
  /// and the first and last of them (memref<2 x i32, 3>), marked once per
  /// block by all threads in parallel (markLiveTiles).
  Value liveBits, liveEnds;
  /// With summaries: the kv-tiles whose every entry the mask keeps (as
  /// liveBits), which the kv loop runs without it.
  Value fullBits;
  /// Set while every thread classifies a tile of its own (markLiveTiles):
  /// a box that is neither a summary nor cached differs from lane to lane
  /// then, so each thread reads it alone instead of with its warp.
  bool threadReads = false;
  Value curKt;          // the kv-tile tileFacts is classifying
  IntervalValues curKv; // and its kv box (the Values in its env)
  /// Ranges over boxes computed at function level, reused by later calls
  /// with the same bound Values (the q-tile's entries, once per block).
  std::map<std::tuple<void *, void *, void *>, IntervalValues> rangeCache;
  mlir::Block *entryBlock = nullptr;
};

/// The mark kernel `@<variant>_marks` of a data-dependent mask: one block
/// per item (b', h', q-tile) summarises the row's kv-tiles and marks the
/// live and the all-kept ones as an attention block would, then writes its
/// kMarkWords words to the marks buffer (MarkKernel.cpp).
class MarkKernelBuilder : public MmaKernelBuilder {
public:
  /// Adds the mark kernel to `attentionModule`, the attention kernel's.
  MarkKernelBuilder(mlir::attn::VariantOp variant, mlir::Type elementType,
                    const GpuKernelPlan &plan,
                    mlir::gpu::GPUModuleOp attentionModule)
      : MmaKernelBuilder(variant, elementType, plan, /*marksOnly=*/true,
                         attentionModule) {}
  mlir::LogicalResult build();
};

/// The attention kernel: its work items (one per block, or a persistent
/// loop over them), the scores and the online softmax of a kv-tile, the
/// mma.sync or the wgmma main loop, and the epilogue.
class AttentionKernelBuilder : public MmaKernelBuilder {
public:
  AttentionKernelBuilder(mlir::attn::VariantOp variant, mlir::Type elementType,
                         const GpuKernelPlan &plan)
      : MmaKernelBuilder(variant, elementType, plan, /*marksOnly=*/false,
                         nullptr) {}
  mlir::LogicalResult build();

private:
  // Work items (AttentionKernel.cpp).

  /// The item's tile (b, h, q-tile), from its number.
  Item itemTile(Value blockIndex);
  /// wgmma: K of the live tile after kt0 (one group, empty when there is
  /// none) into the second K buffer and V of kt0 into the first V buffer;
  /// returns that tile (ktEnd when there is none).
  Value copyK1V0(Value kt0);
  /// The item's prologue: its tile, the Q copy, its live kv-tiles and the
  /// copy of the first one's K (persistent: also the second one's K and
  /// the first one's V).
  Item prologue(Value blockIndex);
  /// Persistent: the prologue of `item` where it exists; (item, ktEnd,
  /// kt0, kt1).
  llvm::SmallVector<Value> prologueIf(Value item);
  /// The tile of `item` again, from a copy of its number that the compiler
  /// cannot merge with earlier ones.
  Item itemAgain(Value item, mlir::ValueRange ranges);
  /// Starts the block's item: the prologue, or a persistent kernel's item
  /// loop (whose body the builder is left in).
  void beginItems(Value block);
  /// Persistent: once this item's last P V is done, the next item's
  /// prologue, then this item again for the epilogue.
  void startNextItem();

  // Scores and softmax of one kv-tile (Scores.cpp).

  /// The scores of one kv-tile (already scaled) -> masked, modified scores
  /// in the units the normalisation works in.
  void scoreTile(llvm::SmallVector<Acc> &s, const Value rowIdx[2], Value k0,
                 Value needMask);
  Value scoreOf(Value s, Value q32, Value kv32);
  /// Clones, at the insertion point, the ops of an item region that depend
  /// on its first two arguments (b, h) only, so that per-element inlining
  /// reuses them (a per-head slope is read once, not once per entry).
  mlir::IRMapping hoistUniform(mlir::Region &region);
  /// Whether what hoistUniform left of `region` may run on entries that
  /// the mask drops: every op pure (no checked tensor read, no division
  /// by a divisor that may be zero).
  static bool speculatable(mlir::Region &region, const mlir::IRMapping &pre);
  /// inlineItemRegion with the hoisted ops of `pre` reused.
  Value inlineHoisted(mlir::Region &region, const mlir::IRMapping &pre,
                      mlir::ValueRange args);
  /// The uniform parts of the score and mask, once per item.
  void hoistItemRegions();
  /// Whether kv-tile `kt` needs the mask: not proved all true, or partial.
  Value needMaskOf(Value kt);
  /// The scaled scores of kv-tile `kt` -> modified and (in mixed or
  /// partial tiles) masked, in the units the normalisation works in.
  void finishScores(Tiles &s, Value kt, Value needMask);
  Step softmaxStep(Tiles &s, llvm::ArrayRef<std::array<Value, 2>> m,
                   llvm::ArrayRef<std::array<Value, 2>> l);
  void rescale(Tiles &oAcc, const Step &st);
  Tiles zeroTiles(int64_t n);

  // The main loops; each returns the final row state: [kt, then per
  // m-tile m[2], l[2], O] (MmaSyncLoop.cpp, WgmmaLoop.cpp).

  llvm::SmallVector<Value> mmaSyncLoop();
  llvm::SmallVector<Value> wgmmaLoop();
  Value bufDesc(Value desc, int64_t rowsPerBuf, Value par);
  void loadK(Value kt, Value par, bool commit = true);
  void loadV(Value kt, Value par);
  /// All but the `pending` newest copy groups landed, for every thread.
  void syncTiles(int pending = 0);
  /// S = Q K^T: one m64 x tk x 16 wgmma per 16 columns of D, both operands
  /// read from the swizzled tiles by descriptor; one group.
  llvm::SmallVector<Value> sOperands(Value kd);
  llvm::SmallVector<Value> issueS(llvm::ArrayRef<Value> ops, Value zero,
                                  Value one);
  /// O += P V: one m64 x Dv x 16 wgmma per 16 keys, P from registers, V
  /// (N-major) by descriptor; one group.
  llvm::SmallVector<Value> vOperands(Value vd);
  llvm::SmallVector<Value> issuePV(llvm::SmallVector<Value> acc,
                                   llvm::ArrayRef<Value> pr,
                                   llvm::ArrayRef<Value> ops, Value one);
  /// The lists passed through one pinRegisters, in place.
  void pinAll(std::initializer_list<llvm::SmallVector<Value> *> lists);
  Tiles toTiles(llvm::ArrayRef<Value> acc, int64_t n);
  llvm::SmallVector<Value> packP(const Tiles &p);
  void waitGroups(int n);
  /// The wgmma loop's first tile (S_0 and P_0, when any tile is live) and
  /// one iteration of its loop.
  mlir::scf::IfOp wgmmaPrologue(Value any);
  void wgmmaIteration(mlir::Block *after);

  // The epilogue (Epilogue.cpp).

  /// Per row, the lane's partial sums joined across the quad, the sink
  /// folded in, LSE written; O / l staged in shared memory and written in
  /// 16-byte chunks.
  void epilogue(llvm::SmallVectorImpl<Value> &fin);
  /// O through the staging tile: rows of 16-byte chunks, as vectors where
  /// the flag word allows it.
  void storeO(llvm::ArrayRef<Value> fin,
              llvm::ArrayRef<std::array<Value, 2>> factor);

  /// The current item and, persistent, its number, the loop over them, the
  /// item count and the grid's blocks, and the next item's state.
  Item cur;
  Value item, nItems, gridDim;
  mlir::scf::WhileOp itemLoop;
  llvm::SmallVector<Value> nextItem;
  /// The item's first row and rows, and its first live kv-tile.
  Value q0, rows, kt0;
  /// M-tile t of the warp: tile rows (warp * mt + t) * 16 + [0, 16); the
  /// lane holds rows g and g + 8 of it.
  llvm::SmallVector<Value> tileRow;
  llvm::SmallVector<std::array<Value, 2>> rowIdx;
  /// n-tiles of S and O, and values per m-tile of the row state.
  int64_t nS = 0, nO = 0, perTile = 0;
};

} // namespace attnc::mma

#endif // ATTNC_CONVERSION_ATTNTOMMAKERNEL_MMAKERNELBUILDER_H
