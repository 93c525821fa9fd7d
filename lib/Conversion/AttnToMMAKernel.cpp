//===- AttnToMMAKernel.cpp - Tensor-core flash-attention GPU kernel -------===//
//
// Lowers each attn.variant to a `gpu.func` kernel that computes Q K^T and
// P V on tensor cores (`mma.sync.m16n8k16`, f16 or bf16 inputs, f32
// accumulators), in the class of FlashAttention-2's forward kernel:
//
//   * one block of 4 warps per (b, h, q-tile); each warp owns 16 * mTiles
//     query rows (32 where the accumulators fit in registers, so that every
//     K or V fragment read from shared memory feeds two mma) and keeps
//     their running max and sum and output accumulators in registers;
//   * the Q tile, and K and V tiles streaming past it, live in padded
//     dynamic shared memory (rows of D + 8 elements: ldmatrix reads of 8
//     rows hit 8 different bank quads), filled with `cp.async` (16-byte
//     copies, zero fill past Lq and Lkv); V of tile j is loaded while
//     S = Q K_j^T is computed, and K of the next live tile while O += P V_j
//     is computed;
//   * A fragments of Q come from `ldmatrix`, B fragments from `ldmatrix`
//     (K) and `ldmatrix.trans` (V); the probabilities P go from the S
//     accumulators to A fragments in registers, without shared memory;
//   * score and mask expressions are inlined per accumulator element from
//     that element's (q_idx, kv_idx); the mask runs only in mixed or
//     partial tiles; kv-tiles outside the closed-form range are never
//     visited and all-false tiles inside it are never loaded;
//   * online softmax in log2 units with exp2 (ex2.approx), row statistics
//     reduced across the four lanes that share a row with shuffles;
//   * blocks are numbered longest-first (the last q-tile first).
//
// The host guarantees Q, K and V rows with unit inner stride, 16-byte
// aligned, and launches with MmaKernelConfig::sharedBytes() of dynamic
// shared memory (GpuKernel.cpp).
//
//===----------------------------------------------------------------------===//

#include "attnc/ABI/KernelABI.h"
#include "attnc/ABI/MMAKernelConfig.h"
#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/Conversion/GpuKernelPlanner.h"
#include "attnc/Conversion/KernelIRBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <cmath>
#include <map>
#include <tuple>

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOMMAKERNEL
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

/// Attributes of the gpu.funcs that repeat the plan's values for readers of
/// the IR and its tests (nothing reads them back): the dynamic shared
/// memory of a block (i64), a persistent kernel (unit), and the mark
/// kernel's items and words (array<i64: perBatch, perHead, words>).
constexpr const char *kDynamicSharedBytesAttr = "attnc.dynamic_shared_bytes";
constexpr const char *kPersistentAttr = "attnc.persistent";
constexpr const char *kMarkKernelAttr = "attnc.mark_kernel";

/// Four f32 accumulators of one m16n8 tile: c0, c1 (row g) and c2, c3
/// (row g + 8), columns 2 * (lane % 4) and 2 * (lane % 4) + 1.
using Acc = std::array<Value, 4>;

class MmaKernelBuilder : public KernelIRBuilder {
public:
  /// The kernel of `plan` for `variant`; with `marksOf`, its mark kernel,
  /// added to that module (the attention kernel's).
  MmaKernelBuilder(attn::VariantOp variant, Type elementType,
                   const GpuKernelPlan &plan,
                   gpu::GPUModuleOp marksOf = nullptr)
      : KernelIRBuilder(variant), variant(variant), elementType(elementType),
        plan(plan), cfg(MmaKernelConfig::fromPlan(plan)),
        marksOnly(marksOf != nullptr), gpuModule(marksOf) {}

  /// Builds the kernel (then, where plan.marks.present, build the mark
  /// kernel with marksOf = module()); fails where the variant is not the
  /// one the plan was made for.
  LogicalResult build();
  gpu::GPUModuleOp module() const { return gpuModule; }

private:
  Value andI(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, loc, c, x, y);
  }
  Value fmul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value fadd(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value fsub(Value x, Value y) { return arith::SubFOp::create(b, loc, x, y); }
  /// max.f32 (the NaN-ignoring maxnum: one instruction, where maximumf
  /// costs four).
  Value fmax(Value x, Value y) {
    return arith::MaxNumFOp::create(b, loc, x, y);
  }
  Value isNegInf(Value x) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x,
                                 cF32(-INFINITY));
  }
  /// An scf.if yielding `n` f32 values from each branch.
  SmallVector<Value> ifElse(Value cond, unsigned n,
                            llvm::function_ref<SmallVector<Value>()> thenFn,
                            llvm::function_ref<SmallVector<Value>()> elseFn) {
    auto op = scf::IfOp::create(b, loc, SmallVector<Type>(n, b.getF32Type()),
                                cond, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&op.getThenRegion().front());
      scf::YieldOp::create(b, loc, thenFn());
      b.setInsertionPointToStart(&op.getElseRegion().front());
      scf::YieldOp::create(b, loc, elseFn());
    }
    return SmallVector<Value>(op.getResults());
  }
  Value shuffleXor(Value x, int64_t offset) {
    return gpu::ShuffleOp::create(b, loc, x, cI32(offset), cI32(32),
                                  gpu::ShuffleMode::XOR)
        .getShuffleResult();
  }
  /// x combined with the other three lanes of its quad (the lanes that hold
  /// the same rows).
  Value quadReduce(Value x, bool isMax) {
    for (int64_t offset : {1, 2}) {
      Value y = shuffleXor(x, offset);
      x = isMax ? fmax(x, y) : fadd(x, y);
    }
    return x;
  }
  bool isBF16() const { return elementType.isBF16(); }
  Value add64(Value x, int64_t c) {
    return arith::AddIOp::create(b, loc, x, cI64(c));
  }
  /// A pair of elements as an mma operand register: vector<2xf16> for f16,
  /// i32 for bf16 (the NVVM op's operand types).
  Value operand(Value pair) {
    if (!isBF16())
      return pair;
    return LLVM::BitcastOp::create(b, loc, b.getI32Type(), pair);
  }
  /// Two f32 values as a vector<2 x elementType>.
  Value pair(Value lo, Value hi) {
    auto vt = VectorType::get({2}, elementType);
    Value l = arith::TruncFOp::create(b, loc, elementType, lo);
    Value h = arith::TruncFOp::create(b, loc, elementType, hi);
    return vector::FromElementsOp::create(b, loc, vt, ValueRange{l, h});
  }
  Value pack(Value lo, Value hi) { return operand(pair(lo, hi)); }
  /// ldmatrix of `tiles` 8x8 matrices; returns the per-matrix registers.
  SmallVector<Value> ldmatrix(Value tile, Value row, Value col, int tiles,
                              bool transpose) {
    auto vt = VectorType::get({tiles, 2}, elementType);
    Value m = nvgpu::LdMatrixOp::create(b, loc, vt, tile, ValueRange{row, col},
                                        transpose, tiles);
    SmallVector<Value> regs;
    for (int i = 0; i < tiles; ++i)
      regs.push_back(operand(vector::ExtractOp::create(b, loc, m, i)));
    return regs;
  }
  Acc mma(ArrayRef<Value> a, ArrayRef<Value> bOps, const Acc &c) {
    Type f32 = b.getF32Type();
    auto st =
        LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
    NVVM::MMATypes t = isBF16() ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
    Value r = NVVM::MmaOp::create(
        b, loc, st, a, bOps, ValueRange(c), {16, 8, 16}, std::nullopt,
        std::nullopt, std::array<NVVM::MMATypes, 2>{t, t},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                       NVVM::MMALayout::col});
    Acc out;
    for (int i = 0; i < 4; ++i)
      out[i] = LLVM::ExtractValueOp::create(b, loc, r, i);
    return out;
  }

  /// Inline PTX with side effects (kept in order with the other memory
  /// operations); returns its results.
  SmallVector<Value> inlinePtx(TypeRange results, ValueRange operands,
                               const std::string &text,
                               const std::string &constraints) {
    Type resultType;
    if (results.size() == 1)
      resultType = results[0];
    else if (!results.empty())
      resultType = LLVM::LLVMStructType::getLiteral(
          b.getContext(), SmallVector<Type>(results.begin(), results.end()));
    auto op = LLVM::InlineAsmOp::create(
        b, loc, resultType, operands, text, constraints,
        /*has_side_effects=*/true, /*is_align_stack=*/false,
        LLVM::tailcallkind::TailCallKind::None,
        LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT),
        ArrayAttr());
    SmallVector<Value> out;
    if (results.size() == 1)
      out.push_back(op.getResult(0));
    else
      for (size_t i = 0; i < results.size(); ++i)
        out.push_back(LLVM::ExtractValueOp::create(b, loc, op.getResult(0), i));
    return out;
  }
  void ptx(const std::string &text) { inlinePtx({}, {}, text, "~{memory}"); }
  /// The values passed through an empty asm statement, so that no use of
  /// them moves across the wgmma fence or wait next to it (the registers
  /// wgmma reads or writes asynchronously).
  SmallVector<Value> pinRegisters(ArrayRef<Value> values) {
    std::string outs, ins;
    SmallVector<Type> types;
    for (size_t i = 0; i < values.size(); ++i) {
      Type t = values[i].getType();
      types.push_back(t);
      outs += std::string(i ? "," : "") + (t.isF32()         ? "=f"
                                           : t.isInteger(64) ? "=l"
                                                             : "=r");
      ins += "," + std::to_string(i);
    }
    return inlinePtx(types, values, "", outs + ins);
  }
  /// A pair of elements as one 32-bit register (wgmma's A operand).
  Value pack32(Value lo, Value hi) {
    return LLVM::BitcastOp::create(b, loc, b.getI32Type(), pair(lo, hi));
  }
  /// The wgmma matrix descriptor of a 128-byte-swizzled operand at shared
  /// address `addr` (i64) with leading and stride byte offsets.
  Value descriptor(Value addr, int64_t lbo, int64_t sbo) {
    Value start = arith::AndIOp::create(
        b, loc, arith::ShRUIOp::create(b, loc, addr, cI64(4)), cI64(0x3FFF));
    int64_t fixed = ((lbo >> 4) & 0x3FFF) << 16 |
                    (((sbo >> 4) & 0x3FFF) << 32) | (int64_t(1) << 62);
    return arith::OrIOp::create(b, loc, start, cI64(fixed));
  }
  /// One wgmma.mma_async m64nNk16 with f32 accumulators `acc` (N / 2 per
  /// thread; empty: start from zero). A is a descriptor (`aDesc`) or four
  /// registers (`aRegs`); B a descriptor, transposed (N-major) when
  /// `transB`. Every operand is computed before the wgmma fence (ptxas
  /// serialises wgmma whose inputs are defined between fence and commit).
  SmallVector<Value> wgmma(ArrayRef<Value> acc, int64_t n, Value aDesc,
                           ArrayRef<Value> aRegs, Value bDesc, bool transB,
                           Value scale) {
    int64_t nr = n / 2;
    const char *t = isBF16() ? "bf16" : "f16";
    std::string regs, cons;
    for (int64_t i = 0; i < nr; ++i) {
      regs += (i ? ", $" : "$") + std::to_string(i);
      cons += std::string(i ? "," : "") + "=f";
    }
    SmallVector<Value> operands;
    std::string aText;
    int64_t next = nr;
    if (aDesc) {
      aText = "$" + std::to_string(next++);
      operands.push_back(aDesc);
      cons += ",l";
    } else {
      aText = "{";
      for (int i = 0; i < 4; ++i) {
        aText += (i ? ", $" : "$") + std::to_string(next++);
        operands.push_back(aRegs[i]);
        cons += ",r";
      }
      aText += "}";
    }
    std::string bText = "$" + std::to_string(next++);
    operands.push_back(bDesc);
    cons += ",l";
    std::string scaleText = "$" + std::to_string(next++);
    operands.push_back(scale); // an i32: 0 when acc is empty, else 1
    cons += ",r";
    for (size_t i = 0; i < acc.size(); ++i) {
      operands.push_back(acc[i]);
      cons += "," + std::to_string(i);
    }
    std::string text = "{\n.reg .pred p;\nsetp.ne.b32 p, " + scaleText +
                       ", 0;\nwgmma.mma_async.sync.aligned.m64n" +
                       std::to_string(n) + "k16.f32." + t + "." + t + " {" +
                       regs + "}, " + aText + ", " + bText + ", p, 1, 1" +
                       (aDesc ? ", 0" : "") + (transB ? ", 1" : ", 0") + ";\n}";
    return inlinePtx(SmallVector<Type>(nr, b.getF32Type()), operands, text,
                     cons);
  }

  /// An scf.while over loop state `init` whose first value is the kv-tile:
  /// it runs while that is below ktEnd. Leaves the builder at the start of
  /// the body (the caller yields) and returns the loop.
  scf::WhileOp whileLiveTiles(ValueRange init) {
    SmallVector<Type> types(init.getTypes());
    auto loop = scf::WhileOp::create(b, loc, types, init);
    SmallVector<Location> locs(types.size(), loc);
    Block *before = b.createBlock(&loop.getBefore(), {}, types, locs);
    scf::ConditionOp::create(b, loc, lt(before->getArgument(0), ktEnd),
                             before->getArguments());
    b.createBlock(&loop.getAfter(), {}, types, locs);
    return loop;
  }

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
    return {arith::DivUIOp::create(b, loc, tid, cIdx(perRow)).getResult(),
            arith::RemUIOp::create(b, loc, tid, cIdx(perRow)).getResult()};
  }
  bool chunksDivideEvenly(int64_t rows, int64_t perRow) const {
    return rows * perRow % cfg.threads() == 0 && cfg.threads() % perRow == 0;
  }
  /// The first kv-tile t >= from with t < ktEnd that the tile abstraction
  /// does not prove all false, or ktEnd.
  Value firstLiveTile(Value from);
  /// firstLiveTile by asking the tile abstraction tile after tile.
  Value scanLiveTiles(Value from);
  TileFacts tileFacts(Value kt);
  /// The scores of one kv-tile (already scaled) -> masked, modified scores
  /// in the units the normalisation works in.
  void scoreTile(SmallVector<Acc> &s, const Value rowIdx[2], Value k0,
                 Value needMask);
  Value scoreOf(Value s, Value q32, Value kv32);
  /// The range of rank-1 `tensor` over [box.lo, box.hi], read by the 32
  /// lanes of each warp in parallel and reduced with shuffles (the whole
  /// range of the type when the box leaves the tensor or holds more than
  /// 4096 entries). Called at block-uniform points only.
  IntervalValues warpBoxRange(Value tensor, bool isBool, IntervalValues box);
  /// Clones, at the insertion point, the ops of an item region that depend
  /// on its first two arguments (b, h) only, so that per-element inlining
  /// reuses them (a per-head slope is read once, not once per entry).
  IRMapping hoistUniform(Region &region);
  /// Whether what hoistUniform left of `region` may run on entries that
  /// the mask drops: every op pure (no checked tensor read, no division
  /// by a divisor that may be zero).
  static bool speculatable(Region &region, const IRMapping &pre);
  /// inlineItemRegion with the hoisted ops of `pre` reused.
  Value inlineHoisted(Region &region, const IRMapping &pre, ValueRange args);

  attn::VariantOp variant;
  Type elementType;
  const GpuKernelPlan &plan;
  MmaKernelConfig cfg;
  /// Building the mark kernel (kMarkKernelAttr) instead of the attention
  /// kernel.
  bool marksOnly = false;
  gpu::GPUModuleOp gpuModule;
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
  Value bi, hi, hkv, tid, lane, warp, g, tig;
  Value sizeI64[7];
  Value b32, h32;
  Value ktEnd;
  TileEnv env;
  KernelContext kctx;
  Value kTile, vTile;
  attn::NormKind norm = attn::NormKind::softmax;
  IRMapping scorePre, maskPre;
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
  Block *entryBlock = nullptr;
  /// The tensorRange hook: summaries, the cache, then warp reads.
  std::optional<IntervalValues> tensorRange(attn::ParamOp p,
                                            ArrayRef<IntervalValues> idx);
  void computeSummaries();
  void markLiveTiles();
  /// With a mark kernel: reads the q-tile's marks into shared memory (the
  /// block's part of computeSummaries and markLiveTiles).
  void loadMarks(const BlockTile &tile);
  /// The mark item of (b, h, q-tile): (b' * H' + h') * numQTiles + qt.
  Value markItem(Value bIdx, Value hIdx, Value qt);
  /// expandAttnOps and the last rewrites of a finished kernel.
  void finishFunction(gpu::GPUFuncOp fn);
  /// firstLiveTile through the bitmap: the first set bit at or after
  /// `from`, or ktEnd.
  Value nextMarkedTile(Value from);
};

std::optional<IntervalValues>
MmaKernelBuilder::tensorRange(attn::ParamOp p, ArrayRef<IntervalValues> idx) {
  auto it = kctx.params.find(p.getSymName());
  if (it == kctx.params.end())
    return std::nullopt;
  bool isBool = p.getElementType().isInteger(1);
  if (idx.size() != 1)
    return emitTensorBoxRange(b, loc, it->second.arg, isBool, idx);
  auto sum = summaries.find(p.getSymName());
  if (sum != summaries.end() && curKt && idx[0].lo == curKv.lo &&
      idx[0].hi == curKv.hi) {
    // The box is exactly the current kv-tile: its summary.
    Value table = sum->second.table;
    Value tensor = it->second.arg;
    auto ifOp = scf::IfOp::create(
        b, loc, useSummaries,
        [&](OpBuilder &, Location) {
          SmallVector<Value> r;
          for (int64_t c = 0; c < 2; ++c)
            r.push_back(arith::ExtSIOp::create(
                b, loc, b.getI64Type(),
                memref::LoadOp::create(b, loc, table,
                                       ValueRange{curKt, cIdx(c)})));
          scf::YieldOp::create(b, loc, r);
        },
        [&](OpBuilder &, Location) {
          IntervalValues r =
              threadReads ? emitTensorBoxRange(b, loc, tensor, isBool, idx)
                          : warpBoxRange(tensor, isBool, idx[0]);
          scf::YieldOp::create(b, loc, ValueRange{r.lo, r.hi});
        });
    return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
  }
  auto key = std::make_tuple(p.getOperation(), idx[0].lo.getAsOpaquePointer(),
                             idx[0].hi.getAsOpaquePointer());
  auto cached = rangeCache.find(key);
  if (cached != rangeCache.end())
    return cached->second;
  if (threadReads)
    return emitTensorBoxRange(b, loc, it->second.arg, isBool, idx);
  IntervalValues r = warpBoxRange(it->second.arg, isBool, idx[0]);
  if (b.getInsertionBlock() == entryBlock)
    rangeCache[key] = r;
  return r;
}

void MmaKernelBuilder::computeSummaries() {
  // The whole block at once: groups of `group` lanes take one kv-tile each
  // (tk / 16 lanes, a power of two up to 32), so that a round covers
  // threads / group tiles. Every lane issues all its loads (about 16
  // entries, clamped into the tile) before using any, and the group
  // reduces with log2(group) shuffles. Rounds are uniform (every lane
  // shuffles); a lane of a group past the last tile re-reads the last
  // tile and does not store.
  int64_t group = 1;
  while (group * 2 <= std::min<int64_t>(32, cfg.tk / 16))
    group *= 2;
  const int64_t perRound = cfg.threads() / group;
  const int64_t perLane = (cfg.tk + group - 1) / group;
  // The q-tile's side of every tensor read, once, at function level and
  // uniform over the block (the range cache then serves it to markLiveTiles
  // and the kv loop); its loads overlap the summaries' below. (Its kv side,
  // tile 0, is not used: the table is not filled yet.)
  tileFacts(cIdx(0));
  Value sub = arith::RemUIOp::create(b, loc, tid, cIdx(group));
  Value slot = arith::DivUIOp::create(b, loc, tid, cIdx(group));
  Value rounds = arith::CeilDivUIOp::create(b, loc, numKvTiles, cIdx(perRound));
  // The live-tile marks start empty (markLiveTiles sets them after the
  // barrier below).
  ifThen(lt(tid, cIdx(kMaxSummaryTiles / 32)), [&] {
    memref::StoreOp::create(b, loc, cI32(0), liveBits, ValueRange{tid});
    memref::StoreOp::create(b, loc, cI32(0), fullBits, ValueRange{tid});
  });
  ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, cIdx(0)),
         [&] {
           memref::StoreOp::create(b, loc, cI32(INT32_MAX), liveEnds,
                                   ValueRange{cIdx(0)});
           memref::StoreOp::create(b, loc, cI32(-1), liveEnds,
                                   ValueRange{cIdx(1)});
         });
  ifThen(useSummaries, [&] {
    scf::ForOp::create(
        b, loc, cIdx(0), rounds, cIdx(1), ValueRange{},
        [&](OpBuilder &, Location, Value r, ValueRange) {
          Value t = add(mul(r, cIdx(perRound)), slot);
          Value inRange = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, t, numKvTiles);
          Value tc = arith::MinUIOp::create(
              b, loc, t, arith::SubIOp::create(b, loc, numKvTiles, cIdx(1)));
          Value k0 = mul(tc, cIdx(cfg.tk));
          Value last = arith::SubIOp::create(
              b, loc,
              arith::MinUIOp::create(b, loc, add(k0, cIdx(cfg.tk)),
                                     entry.sizeIdx[4]),
              cIdx(1));
          for (auto &named : summaries) {
            Value tensor = named.second.tensor;
            bool isBool = named.second.isBool;
            int64_t topLo = isBool ? 0 : INT32_MIN,
                    topHi = isBool ? 1 : INT32_MAX;
            Value dim = memref::DimOp::create(b, loc, tensor, 0);
            Value fits = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::ult, last, dim);
            auto ifOp = scf::IfOp::create(
                b, loc, fits,
                [&](OpBuilder &, Location) {
                  SmallVector<Value> xs;
                  for (int64_t j = 0; j < perLane; ++j) {
                    Value i = arith::MinUIOp::create(
                        b, loc, add(k0, add(sub, cIdx(j * group))), last);
                    Value x =
                        memref::LoadOp::create(b, loc, tensor, ValueRange{i});
                    if (isBool) // i8 bytes: any non-zero is true
                      x = arith::MinUIOp::create(
                          b, loc,
                          arith::ExtUIOp::create(b, loc, b.getI32Type(), x),
                          cI32(1));
                    xs.push_back(x);
                  }
                  Value mn = xs[0], mx = xs[0];
                  for (Value x : ArrayRef<Value>(xs).drop_front()) {
                    mn = arith::MinSIOp::create(b, loc, mn, x);
                    mx = arith::MaxSIOp::create(b, loc, mx, x);
                  }
                  scf::YieldOp::create(b, loc, ValueRange{mn, mx});
                },
                [&](OpBuilder &, Location) {
                  scf::YieldOp::create(b, loc,
                                       ValueRange{cI32(topLo), cI32(topHi)});
                });
            Value mn = ifOp.getResult(0), mx = ifOp.getResult(1);
            for (int64_t offset = group / 2; offset >= 1; offset /= 2) {
              mn = arith::MinSIOp::create(b, loc, mn, shuffleXor(mn, offset));
              mx = arith::MaxSIOp::create(b, loc, mx, shuffleXor(mx, offset));
            }
            Value store = andI(
                inRange, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                               sub, cIdx(0)));
            ifThen(store, [&] {
              Value table = named.second.table;
              memref::StoreOp::create(b, loc, mn, table,
                                      ValueRange{t, cIdx(0)});
              memref::StoreOp::create(b, loc, mx, table,
                                      ValueRange{t, cIdx(1)});
            });
          }
          scf::YieldOp::create(b, loc);
        });
  });
  gpu::BarrierOp::create(b, loc);
}

void MmaKernelBuilder::markLiveTiles() {
  // Thread i classifies kv-tiles i, i + threads, ...: one summary read per
  // tile instead of a scan of the row by every thread. A read whose box is
  // neither the tile's summary nor the cached q-tile side (doc[kv_idx / 2],
  // say) differs between the lanes of a warp here, so each thread reads it
  // alone (threadReads), never with warp shuffles. Rounds are uniform (a
  // tile past the end is classified as the last one, unmarked).
  Value rounds =
      arith::CeilDivUIOp::create(b, loc, numKvTiles, cIdx(cfg.threads()));
  ifThen(useSummaries, [&] {
    scf::ForOp::create(
        b, loc, cIdx(0), rounds, cIdx(1), ValueRange{},
        [&](OpBuilder &, Location, Value r, ValueRange) {
          Value t = add(mul(r, cIdx(cfg.threads())), tid);
          Value tc = arith::MinUIOp::create(
              b, loc, t, arith::SubIOp::create(b, loc, numKvTiles, cIdx(1)));
          threadReads = true;
          TileFacts facts = tileFacts(tc);
          threadReads = false;
          Value t32 = toI32(t);
          Value bit = arith::ShLIOp::create(
              b, loc, cI32(1), arith::AndIOp::create(b, loc, t32, cI32(31)));
          Value word = arith::DivUIOp::create(b, loc, t, cIdx(32));
          Value inRow = lt(t, numKvTiles);
          ifThen(andI(inRow, arith::XOrIOp::create(b, loc, facts.mayBeFalse,
                                                   cBool(true))),
                 [&] {
                   memref::AtomicRMWOp::create(b, loc,
                                               arith::AtomicRMWKind::ori, bit,
                                               fullBits, ValueRange{word});
                 });
          ifThen(andI(inRow, facts.mayBeTrue), [&] {
            memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::ori, bit,
                                        liveBits, ValueRange{word});
            memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::mins, t32,
                                        liveEnds, ValueRange{cIdx(0)});
            memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::maxs, t32,
                                        liveEnds, ValueRange{cIdx(1)});
          });
          scf::YieldOp::create(b, loc);
        });
  });
  gpu::BarrierOp::create(b, loc);
}

Value MmaKernelBuilder::markItem(Value bIdx, Value hIdx, Value qt) {
  Value numQTiles =
      arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[3], cIdx(cfg.rows()));
  Value item = marksPerBatch ? bIdx : cIdx(0);
  if (marksPerHead)
    item = add(mul(item, entry.sizeIdx[1]), hIdx);
  return add(mul(item, numQTiles), qt);
}

void MmaKernelBuilder::loadMarks(const BlockTile &tile) {
  // Threads 0 .. kMarkWords - 1 copy a word each; rows of more than
  // kMaxSummaryTiles tiles have no marks (the mark kernel skipped them).
  Value qt = arith::DivUIOp::create(b, loc, tile.q0, cIdx(cfg.rows()));
  Value base = mul(markItem(tile.bi, tile.hi, qt), cIdx(kMarkWords));
  // Hopper: the launcher lets this kernel start while the mark kernel
  // runs (programmatic dependent launch); everything before this point
  // (the Q copy) overlaps it (see build()). A no-op without such a launch.
  // The Q copy is ordered after the kernel before the mark kernel only
  // through the mark kernel's own wait (it triggers after it), and reads
  // through L2 (cp.async.cg), where that kernel's writes have landed.
  if (cfg.wgmma)
    NVVM::GriddepcontrolOp::create(b, loc, NVVM::GridDepActionKind::wait);
  ifThen(andI(useSummaries, lt(tid, cIdx(kMarkWords))), [&] {
    Value word =
        memref::LoadOp::create(b, loc, marksArg, ValueRange{add(base, tid)});
    memref::StoreOp::create(b, loc, word, markWords, ValueRange{tid});
  });
  gpu::BarrierOp::create(b, loc);
}

Value MmaKernelBuilder::nextMarkedTile(Value from) {
  // Word w of the bitmap holds tiles 32 w .. 32 w + 31; scan the words up
  // to ktEnd's, the first with bits at or after `from`.
  Value wEnd = arith::CeilDivUIOp::create(b, loc, ktEnd, cIdx(32));
  Value w0 = arith::DivUIOp::create(b, loc, from, cIdx(32));
  Value inWords = lt(w0, wEnd);
  Value first = arith::SelectOp::create(
      b, loc, inWords,
      memref::LoadOp::create(b, loc, liveBits,
                             ValueRange{arith::MinUIOp::create(
                                 b, loc, w0, cIdx(kMaxSummaryTiles / 32 - 1))}),
      cI32(0));
  first = arith::AndIOp::create(
      b, loc, first,
      arith::ShLIOp::create(
          b, loc, cI32(-1),
          toI32(arith::RemUIOp::create(b, loc, from, cIdx(32)))));
  Type idx = b.getIndexType(), i32 = b.getI32Type();
  auto whileOp =
      scf::WhileOp::create(b, loc, TypeRange{idx, i32}, ValueRange{w0, first});
  {
    OpBuilder::InsertionGuard guard(b);
    Block *before =
        b.createBlock(&whileOp.getBefore(), {}, {idx, i32}, {loc, loc});
    Value w = before->getArgument(0), bits = before->getArgument(1);
    Value more = andI(
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, bits, cI32(0)),
        lt(add(w, cIdx(1)), wEnd));
    scf::ConditionOp::create(b, loc, more, ValueRange{w, bits});
    Block *after =
        b.createBlock(&whileOp.getAfter(), {}, {idx, i32}, {loc, loc});
    Value next = add(after->getArgument(0), cIdx(1));
    scf::YieldOp::create(
        b, loc,
        ValueRange{next,
                   memref::LoadOp::create(b, loc, liveBits, ValueRange{next})});
  }
  Value w = whileOp.getResult(0), bits = whileOp.getResult(1);
  Value found =
      add(mul(w, cIdx(32)),
          toIdx(LLVM::CountTrailingZerosOp::create(b, loc, b.getI32Type(), bits,
                                                   /*is_zero_poison=*/false)));
  Value none =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, bits, cI32(0));
  return arith::MinUIOp::create(
      b, loc, arith::SelectOp::create(b, loc, none, ktEnd, found), ktEnd);
}

IRMapping MmaKernelBuilder::hoistUniform(Region &region) {
  Block &block = region.front();
  IRMapping map;
  map.map(block.getArgument(0), b32);
  map.map(block.getArgument(1), h32);
  llvm::SmallPtrSet<Operation *, 16> uniform;
  for (Operation &op : block.without_terminator()) {
    if (op.getNumRegions() != 0)
      continue;
    bool ok = llvm::all_of(op.getOperands(), [&](Value v) {
      if (auto arg = llvm::dyn_cast<BlockArgument>(v))
        return arg.getOwner() == &block && arg.getArgNumber() < 2;
      Operation *def = v.getDefiningOp();
      return def && (uniform.count(def) || def->getBlock() != &block);
    });
    if (!ok)
      continue;
    uniform.insert(&op);
    b.clone(op, map);
  }
  // Keep only the mappings of hoisted results (not the b, h arguments, which
  // inlining binds anew).
  IRMapping pre;
  for (Operation *op : uniform)
    for (Value r : op->getResults())
      pre.map(r, map.lookup(r));
  return pre;
}

bool MmaKernelBuilder::speculatable(Region &region, const IRMapping &pre) {
  return llvm::all_of(region.front().without_terminator(), [&](Operation &op) {
    return isPure(&op) || (op.getNumResults() != 0 &&
                           llvm::all_of(op.getResults(), [&](Value r) {
                             return pre.contains(r);
                           }));
  });
}

Value MmaKernelBuilder::inlineHoisted(Region &region, const IRMapping &pre,
                                      ValueRange args) {
  Block &block = region.front();
  IRMapping map = pre;
  map.map(block.getArguments(), args);
  for (Operation &op : block.without_terminator()) {
    if (op.getNumResults() &&
        llvm::all_of(op.getResults(), [&](Value r) { return pre.contains(r); }))
      continue;
    b.clone(op, map);
  }
  return map.lookup(
      llvm::cast<attn::YieldOp>(block.getTerminator()).getValue());
}

IntervalValues MmaKernelBuilder::warpBoxRange(Value tensor, bool isBool,
                                              IntervalValues box) {
  Value dim = arith::IndexCastOp::create(
      b, loc, b.getI64Type(), memref::DimOp::create(b, loc, tensor, 0));
  Value count = arith::AddIOp::create(
      b, loc, arith::SubIOp::create(b, loc, box.hi, box.lo), cI64(1));
  Value ok = andI(andI(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                             box.lo, cI64(0)),
                       arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                             box.hi, dim)),
                  arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                        count, cI64(4096)));
  int64_t topLo = isBool ? 0 : INT32_MIN, topHi = isBool ? 1 : INT32_MAX;
  auto ifOp = scf::IfOp::create(
      b, loc, ok,
      [&](OpBuilder &, Location) {
        Value lo = add(toIdx(box.lo), lane);
        Value end = toIdx(arith::AddIOp::create(b, loc, box.hi, cI64(1)));
        // Four loads per lane and trip, issued together (indices clamped
        // to the last entry: min and max do not mind repeats).
        Value endM1 = arith::SubIOp::create(b, loc, end, cIdx(1));
        auto loop = scf::ForOp::create(
            b, loc, lo, end, cIdx(128),
            ValueRange{cI32(INT32_MAX), cI32(INT32_MIN)},
            [&](OpBuilder &, Location, Value i, ValueRange acc) {
              Value mn = acc[0], mx = acc[1];
              SmallVector<Value> xs;
              for (int64_t j = 0; j < 4; ++j) {
                Value at =
                    arith::MinUIOp::create(b, loc, add(i, cIdx(32 * j)), endM1);
                Value x =
                    memref::LoadOp::create(b, loc, tensor, ValueRange{at});
                if (isBool) // i8 bytes: any non-zero is true
                  x = arith::MinUIOp::create(
                      b, loc, arith::ExtUIOp::create(b, loc, b.getI32Type(), x),
                      cI32(1));
                xs.push_back(x);
              }
              for (Value x : xs) {
                mn = arith::MinSIOp::create(b, loc, mn, x);
                mx = arith::MaxSIOp::create(b, loc, mx, x);
              }
              scf::YieldOp::create(b, loc, ValueRange{mn, mx});
            });
        Value mn = loop.getResult(0), mx = loop.getResult(1);
        for (int64_t offset : {16, 8, 4, 2, 1}) {
          mn = arith::MinSIOp::create(b, loc, mn, shuffleXor(mn, offset));
          mx = arith::MaxSIOp::create(b, loc, mx, shuffleXor(mx, offset));
        }
        scf::YieldOp::create(
            b, loc,
            ValueRange{arith::ExtSIOp::create(b, loc, b.getI64Type(), mn),
                       arith::ExtSIOp::create(b, loc, b.getI64Type(), mx)});
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, loc, ValueRange{cI64(topLo), cI64(topHi)});
      });
  return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
}

void MmaKernelBuilder::loadTile(Value src, Value head, Value tile,
                                int64_t width, int64_t rows, Value r0,
                                Value limit, Value dstBase, bool commit) {
  int64_t perRow = width / 8;
  // Chunk c (16 bytes) of the tile: row c / perRow, column chunk c % perRow.
  auto copyChunk = [&](Value row, Value chunk, bool checked = true) {
    Value col = mul(chunk, cIdx(8));
    Value dstRow = row, dstCol = col;
    if (cfg.wgmma) {
      // 128-byte swizzle: 64-element atoms stacked by rows, chunk c of row
      // r of an atom at chunk c ^ (r % 8).
      Value atom = arith::DivUIOp::create(b, loc, chunk, cIdx(8));
      Value within = arith::RemUIOp::create(b, loc, chunk, cIdx(8));
      dstRow = add(mul(atom, cIdx(rows)), row);
      if (dstBase) // a buffer of a multi-buffered tile
        dstRow = add(dstRow, dstBase);
      dstCol =
          mul(arith::XOrIOp::create(
                  b, loc, within, arith::RemUIOp::create(b, loc, row, cIdx(8))),
              cIdx(8));
    }
    Value srcRow = add(r0, row), srcElements;
    if (checked) {
      // Rows past the end read nothing (zero-filled) from row 0.
      Value valid = lt(srcRow, limit);
      srcRow = select(valid, srcRow, cIdx(0));
      srcElements = select(valid, cIdx(8), cIdx(0));
    }
    nvgpu::DeviceAsyncCopyOp::create(
        b, loc, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tile,
        ValueRange{dstRow, dstCol}, src, ValueRange{bi, head, srcRow, col},
        b.getIndexAttr(8), srcElements, b.getUnitAttr());
  };
  if (chunksDivideEvenly(rows, perRow)) {
    // Every copy is a constant offset from the thread's first. A whole tile
    // (all but the last of a row) copies without bounds checks, from
    // addresses a constant stride apart.
    std::array<Value, 2> first = firstThreadChunk(perRow);
    Value whole = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                        add(r0, cIdx(rows)), limit);
    auto copies = [&](bool checked) {
      return [&, checked](OpBuilder &, Location) {
        forThreadChunks(
            rows, perRow,
            [&](Value row, Value chunk) { copyChunk(row, chunk, checked); },
            first);
        scf::YieldOp::create(b, loc);
      };
    };
    scf::IfOp::create(b, loc, whole, copies(false), copies(true));
  } else {
    forThreadChunks(rows, perRow,
                    [&](Value row, Value chunk) { copyChunk(row, chunk); });
  }
  if (commit)
    NVVM::CpAsyncCommitGroupOp::create(b, loc);
}

void MmaKernelBuilder::forThreadChunks(
    int64_t rows, int64_t perRow, llvm::function_ref<void(Value, Value)> body,
    std::array<Value, 2> first) {
  const int64_t threads = cfg.threads(), chunks = rows * perRow;
  if (chunksDivideEvenly(rows, perRow)) {
    if (!first[0])
      first = firstThreadChunk(perRow);
    for (int64_t i = 0; i < chunks / threads; ++i)
      body(add(first[0], cIdx(i * (threads / perRow))), first[1]);
    return;
  }
  scf::ForOp::create(b, loc, tid, cIdx(chunks), cIdx(threads), ValueRange{},
                     [&](OpBuilder &, Location, Value c, ValueRange) {
                       body(arith::DivUIOp::create(b, loc, c, cIdx(perRow)),
                            arith::RemUIOp::create(b, loc, c, cIdx(perRow)));
                       scf::YieldOp::create(b, loc);
                     });
}

TileFacts MmaKernelBuilder::tileFacts(Value kt) {
  Value k0 = mul(kt, cIdx(cfg.tk));
  Value cols = arith::MinSIOp::create(
      b, loc, cIdx(cfg.tk),
      arith::SubIOp::create(b, loc, entry.sizeIdx[4], k0));
  TileEnv tileEnv = env;
  tileEnv.kv = {toI64(k0),
                arith::SubIOp::create(b, loc, toI64(add(k0, cols)), cI64(1))};
  curKt = kt;
  curKv = tileEnv.kv;
  TileFacts facts = emitTileFacts(b, loc, variant.getMaskOp(), tileEnv);
  curKt = Value();
  return facts;
}

Value MmaKernelBuilder::firstLiveTile(Value from) {
  if (!liveBits)
    return scanLiveTiles(from);
  // The marked tiles where the block marked them (rows of at most
  // kMaxSummaryTiles tiles), else the scan.
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getIndexType()},
                                useSummaries, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, loc, nextMarkedTile(from));
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, scanLiveTiles(from));
  return ifOp.getResult(0);
}

Value MmaKernelBuilder::scanLiveTiles(Value from) {
  auto whileOp = scf::WhileOp::create(b, loc, TypeRange{b.getIndexType()},
                                      ValueRange{from});
  {
    OpBuilder::InsertionGuard guard(b);
    Block *before =
        b.createBlock(&whileOp.getBefore(), {}, {b.getIndexType()}, {loc});
    Value t = before->getArgument(0);
    Value inRange = lt(t, ktEnd);
    auto dead = scf::IfOp::create(
        b, loc, inRange,
        [&](OpBuilder &, Location) {
          Value mayBeTrue = tileFacts(t).mayBeTrue;
          scf::YieldOp::create(
              b, loc,
              arith::XOrIOp::create(b, loc, mayBeTrue, cBool(true))
                  .getResult());
        },
        [&](OpBuilder &, Location) {
          scf::YieldOp::create(b, loc, cBool(false));
        });
    scf::ConditionOp::create(b, loc, dead.getResult(0), ValueRange{t});
    Block *after =
        b.createBlock(&whileOp.getAfter(), {}, {b.getIndexType()}, {loc});
    scf::YieldOp::create(b, loc, add(after->getArgument(0), cIdx(1)));
  }
  return whileOp.getResult(0);
}

Value MmaKernelBuilder::scoreOf(Value s, Value q32, Value kv32) {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  if (!scoreOp)
    return s;
  Value x =
      inlineHoisted(scoreOp.getBody(), scorePre, {b32, h32, q32, kv32, s});
  if (norm == attn::NormKind::softmax)
    x = fmul(x, cF32(kLog2e));
  return x;
}

void MmaKernelBuilder::scoreTile(SmallVector<Acc> &s, const Value rowIdx[2],
                                 Value k0, Value needMask) {
  attn::MaskOp maskOp = variant.getMaskOp();
  bool hasScore = static_cast<bool>(variant.getScoreOp());
  // Element (j, i) of the tile: row rowIdx[i / 2], column k0 + 8 j + 2 tig
  // + i % 2.
  Value colBase = add(k0, mul(tig, cIdx(2)));
  auto column = [&](size_t j, int i) {
    return add(colBase, cIdx(8 * static_cast<int64_t>(j) + i % 2));
  };
  unsigned n = static_cast<unsigned>(s.size() * 4);
  auto flat = [&]() {
    SmallVector<Value> all;
    for (Acc &a : s)
      all.append(a.begin(), a.end());
    return all;
  };
  SmallVector<Value> out = ifElse(
      needMask, n,
      [&]() {
        SmallVector<Value> r;
        // Column 8 j + c of the lane's share is a key while 8 j + c <
        // Lkv - colBase: one 32-bit compare with a constant per column,
        // shared by the lane's rows.
        Value kvLeft =
            arith::SubIOp::create(b, loc, entry.sizeI32[4], toI32(colBase));
        // Rows past Lq are computed but never stored, and each row's
        // softmax is its own: they need excluding only where a mask or
        // score that reads tensors (at q_idx) runs under the guard.
        bool guardRows =
            (maskOp && !maskSpeculatable) || (hasScore && !scoreSpeculatable);
        Value inRow[2];
        if (guardRows)
          for (int i = 0; i < 2; ++i)
            inRow[i] = lt(rowIdx[i], entry.sizeIdx[3]);
        for (size_t j = 0; j < s.size(); ++j)
          for (int i = 0; i < 4; ++i) {
            Value col = column(j, i);
            Value colIn = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::slt,
                cI32(8 * static_cast<int32_t>(j) + i % 2), kvLeft);
            Value inside = guardRows ? andI(inRow[i / 2], colIn) : colIn;
            Value q32 = toI32(rowIdx[i / 2]), kv32 = toI32(col);
            Value keep = inside;
            if (maskOp && maskSpeculatable) {
              keep = andI(inside, inlineHoisted(maskOp.getBody(), maskPre,
                                                {b32, h32, q32, kv32}));
            } else if (maskOp) {
              auto keepIf = scf::IfOp::create(
                  b, loc, inside,
                  [&](OpBuilder &, Location) {
                    scf::YieldOp::create(b, loc,
                                         inlineHoisted(maskOp.getBody(),
                                                       maskPre,
                                                       {b32, h32, q32, kv32}));
                  },
                  [&](OpBuilder &, Location) {
                    scf::YieldOp::create(b, loc, cBool(false));
                  });
              keep = keepIf.getResult(0);
            }
            Value x = s[j][i];
            if (hasScore && scoreSpeculatable) {
              // Computed on every entry and selected: the same straight
              // line as the full tiles', so conversions and index
              // arithmetic are shared across entries (CSE).
              r.push_back(select(keep, scoreOf(x, q32, kv32), cF32(-INFINITY)));
            } else if (hasScore) {
              // The score only where the entry is kept, so that its
              // checked reads never fire on masked entries.
              r.push_back(ifElse(
                  keep, 1,
                  [&]() -> SmallVector<Value> {
                    return {scoreOf(x, q32, kv32)};
                  },
                  [&]() -> SmallVector<Value> {
                    return {cF32(-INFINITY)};
                  })[0]);
            } else {
              r.push_back(select(keep, x, cF32(-INFINITY)));
            }
          }
        return r;
      },
      [&]() {
        if (!hasScore)
          return flat();
        SmallVector<Value> r;
        for (size_t j = 0; j < s.size(); ++j)
          for (int i = 0; i < 4; ++i)
            r.push_back(
                scoreOf(s[j][i], toI32(rowIdx[i / 2]), toI32(column(j, i))));
        return r;
      });
  for (size_t j = 0; j < s.size(); ++j)
    for (int i = 0; i < 4; ++i)
      s[j][i] = out[4 * j + i];
}

LogicalResult MmaKernelBuilder::build() {
  loc = variant.getLoc();
  MLIRContext *ctx = variant.getContext();
  norm = variant.getNormKind();
  const int64_t D = cfg.headDim, Dv = cfg.valueDim, tk = cfg.tk;
  const int64_t mt = cfg.mTiles;

  SmallVector<attn::ParamOp> runtimeParams;
  SmallVector<Type> inputs =
      kernelArgumentTypes(b, variant, elementType, runtimeParams);

  // The rank-1 integer tensor params the mask reads: their per-kv-tile
  // summaries decide at run time which kv-tiles are live. Their tables, in
  // the wgmma kernel's second K buffer and its V buffers where they fit
  // there (nothing is copied into those before the live tiles are marked),
  // else after the tiles (the mark kernel has no tiles); then the two
  // bitmaps and the first and last live tile (MMAKernelConfig.h).
  SmallVector<attn::ParamOp> summaryParams = maskSummaryParams(variant);
  if (static_cast<int64_t>(summaryParams.size()) != plan.summaryTables)
    return variant.emitError()
           << "convert-attn-to-mma-kernel: the kernel plan is for a mask "
              "with "
           << plan.summaryTables << " summary tables, this one has "
           << summaryParams.size();
  const MmaSharedLayout layout = mmaSharedLayout(
      cfg, static_cast<int64_t>(summaryParams.size()), marksOnly);
  const bool tablesInTiles = layout.tablesInTiles;
  // The mark kernel of a data-dependent mask (GpuMarkKernelPlan): its
  // items differ in b and h only where the mask reads them.
  const bool useMarks = plan.marks.present;
  marksPerBatch = plan.marks.perBatch;
  marksPerHead = plan.marks.perHead;
  if (useMarks)
    inputs.push_back(MemRefType::get({ShapedType::kDynamic}, b.getI32Type()));

  if (!gpuModule)
    gpuModule = gpu::GPUModuleOp::create(b, loc, variant.getSymName());
  b.setInsertionPointToStart(gpuModule.getBody());
  std::string fnName = variant.getSymName().str();
  if (marksOnly)
    fnName += "_marks";
  auto fn = gpu::GPUFuncOp::create(b, loc, fnName,
                                   FunctionType::get(ctx, inputs, {}));
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  fn.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({static_cast<int32_t>(cfg.threads()), 1, 1}));
  if (cfg.minBlocksPerSM > 0 && !marksOnly)
    fn->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                b.getI32IntegerAttr(static_cast<int32_t>(cfg.minBlocksPerSM)));
  Block *body = &fn.getBody().front();
  entryBlock = body;
  b.setInsertionPointToStart(body);
  entry = bindKernelEntry(b, loc, variant, body, runtimeParams, kctx);
  if (useMarks)
    marksArg = body->getArgument(entry.numLeading);
  for (int i = 0; i < 7; ++i)
    sizeI64[i] = toI64(entry.sizeIdx[i]);
  // Hopper: the launcher starts every wgmma kernel (and its mark kernel) as
  // a programmatic dependent of the kernel before it on the stream, so
  // that its blocks launch during that kernel's last wave. Nothing may
  // touch global memory before griddepcontrol.wait (the earlier kernel's
  // end and its writes), except the attention kernel after a mark kernel,
  // which copies Q first and waits before it reads the marks (loadMarks):
  // the mark kernel let it launch only after its own wait. Each block then
  // lets the next kernel launch. Both are no-ops in an ordinary launch.
  // First thing in the kernel: even the scale (emitQScale) may read memory.
  if (cfg.wgmma) {
    if (!useMarks || marksOnly)
      NVVM::GriddepcontrolOp::create(b, loc, NVVM::GridDepActionKind::wait);
    NVVM::GriddepcontrolOp::create(b, loc,
                                   NVVM::GridDepActionKind::launch_dependents);
  }

  // The Q, K and V tiles: views of the dynamic shared memory.
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  Value shared = gpu::DynamicSharedMemoryOp::create(
      b, loc,
      MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                      MemRefLayoutAttrInterface(), workgroup));
  // wgmma's swizzled tiles start at the first 1024-byte boundary (the
  // config reserves the slack); their shared addresses feed descriptors.
  Value pad = cIdx(0);
  Value sharedAddr;
  if (cfg.wgmma) {
    sharedAddr = arith::IndexCastOp::create(
        b, loc, b.getI64Type(),
        memref::ExtractAlignedPointerAsIndexOp::create(b, loc, shared));
    Value misalign = arith::AndIOp::create(b, loc, sharedAddr, cI64(1023));
    pad = toIdx(arith::AndIOp::create(
        b, loc, arith::SubIOp::create(b, loc, cI64(1024), misalign),
        cI64(1023)));
    sharedAddr = arith::AddIOp::create(b, loc, sharedAddr, toI64(pad));
  }
  auto sharedTile = [&](int64_t rows, int64_t width, int64_t offset,
                        int64_t stages = 1) {
    SmallVector<int64_t> shape = {rows, MmaKernelConfig::pitch(width)};
    if (cfg.wgmma)
      shape = {stages * rows * (width / 64), 64};
    auto type = MemRefType::get(shape, elementType, MemRefLayoutAttrInterface(),
                                workgroup);
    Value at = cfg.wgmma ? add(pad, cIdx(offset)) : cIdx(offset);
    return memref::ViewOp::create(b, loc, type, shared, at, ValueRange{})
        .getResult();
  };
  Value qTile = sharedTile(cfg.rows(), D, cfg.qOffset());
  kTile = sharedTile(tk, D, cfg.kOffset(), cfg.kvStages());
  vTile = sharedTile(tk, Dv, cfg.vOffset(), cfg.kvStages());
  auto tileAddr = [&](int64_t offset) {
    return arith::AddIOp::create(b, loc, sharedAddr, cI64(offset)).getResult();
  };

  // Q, K and V with the unit inner stride the host guarantees (cp.async
  // copies 16 contiguous bytes).
  auto unitInner = [&](Value x) -> Value {
    auto meta = memref::ExtractStridedMetadataOp::create(b, loc, x);
    int64_t dyn = ShapedType::kDynamic;
    auto type =
        MemRefType::get({dyn, dyn, dyn, dyn}, elementType,
                        StridedLayoutAttr::get(ctx, dyn, {dyn, dyn, dyn, 1}));
    SmallVector<OpFoldResult> sizes(meta.getSizes()), strides;
    for (int i = 0; i < 3; ++i)
      strides.push_back(meta.getStrides()[i]);
    strides.push_back(b.getIndexAttr(1));
    return memref::ReinterpretCastOp::create(
        b, loc, type, x, OpFoldResult(meta.getOffset()), sizes, strides);
  };
  q = unitInner(entry.q);
  k = unitInner(entry.k);
  v = unitInner(entry.v);

  // Block -> (b, h, q-tile), longest first within groups of heads whose K
  // and V (2-byte elements) fit in the L2 cache.
  Value block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  warp = arith::DivUIOp::create(b, loc, tid, cIdx(32));
  lane = arith::RemUIOp::create(b, loc, tid, cIdx(32));
  g = arith::DivUIOp::create(b, loc, lane, cIdx(4));
  tig = arith::RemUIOp::create(b, loc, lane, cIdx(4));
  Value mi = arith::DivUIOp::create(b, loc, lane, cIdx(8));
  Value r8 = arith::RemUIOp::create(b, loc, lane, cIdx(8));
  Value miLow = arith::RemUIOp::create(b, loc, mi, cIdx(2));
  Value miHigh = arith::DivUIOp::create(b, loc, mi, cIdx(2));
  // The scale, with log2(e) folded in when no score modifier needs the true
  // scaled dot product.
  bool foldLog2e = false;
  Value qscale = emitQScale(b, loc, variant, cI32(D), foldLog2e);
  // With a positive compile-time scale (the default 1/sqrt(D), or a
  // literal) and no score modifier, softmax works on the raw products:
  // the row max needs no scaling (max commutes with a positive scale) and
  // each weight is exp2(fma(s, scale, -max * scale)), one FFMA where a
  // scaled score costs a multiply and a subtraction.
  std::optional<double> constScale;
  if (foldLog2e && !variant.getScaleOp()) {
    constScale = kLog2e / std::sqrt(static_cast<double>(D));
  } else if (foldLog2e) {
    if (auto mulOp = qscale.getDefiningOp<arith::MulFOp>())
      if (auto c = mulOp.getLhs().getDefiningOp<arith::ConstantOp>())
        if (auto f = llvm::dyn_cast<FloatAttr>(c.getValue()))
          constScale = f.getValueAsDouble() * kLog2e;
  }
  const bool rawScores = constScale && *constScale > 0;

  int64_t sharedBytes = marksOnly ? 0 : cfg.sharedBytes();
  int64_t tableAt = layout.tablesOffset;
  for (attn::ParamOp param : summaryParams) {
    Summary sum;
    sum.tensor = kctx.params.find(param.getSymName())->second.arg;
    sum.isBool = param.getElementType().isInteger(1);
    Value at = tablesInTiles ? add(pad, cIdx(tableAt)) : cIdx(sharedBytes);
    sum.table = memref::ViewOp::create(
        b, loc,
        MemRefType::get({kMaxSummaryTiles, 2}, b.getI32Type(),
                        MemRefLayoutAttrInterface(), workgroup),
        shared, at, ValueRange{});
    (tablesInTiles ? tableAt : sharedBytes) += kMaxSummaryTiles * 8;
    summaries[param.getSymName()] = sum;
  }
  if (!summaries.empty()) {
    if (useMarks)
      markWords = memref::ViewOp::create(
          b, loc,
          MemRefType::get({kMarkWords}, b.getI32Type(),
                          MemRefLayoutAttrInterface(), workgroup),
          shared, cIdx(sharedBytes), ValueRange{});
    auto bitmap = [&] {
      Value r = memref::ViewOp::create(
          b, loc,
          MemRefType::get({kMaxSummaryTiles / 32}, b.getI32Type(),
                          MemRefLayoutAttrInterface(), workgroup),
          shared, cIdx(sharedBytes), ValueRange{});
      sharedBytes += kMaxSummaryTiles / 8;
      return r;
    };
    liveBits = bitmap();
    fullBits = bitmap();
    liveEnds = memref::ViewOp::create(
        b, loc,
        MemRefType::get({2}, b.getI32Type(), MemRefLayoutAttrInterface(),
                        workgroup),
        shared, cIdx(sharedBytes), ValueRange{});
    sharedBytes += 8;
    // Rows of more than kMaxSummaryTiles kv-tiles take the row facts.
    numKvTiles = arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[4], cIdx(tk));
    useSummaries = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule,
                                         numKvTiles, cIdx(kMaxSummaryTiles));
  }
  if (sharedBytes != (marksOnly ? plan.marks.sharedBytes : plan.sharedBytes))
    return variant.emitError()
           << "convert-attn-to-mma-kernel: internal error: the kernel needs "
           << sharedBytes << " bytes of shared memory, its plan says "
           << (marksOnly ? plan.marks.sharedBytes : plan.sharedBytes);
  fn->setAttr(kDynamicSharedBytesAttr, b.getI64IntegerAttr(sharedBytes));
  if (marksOnly)
    fn->setAttr(
        kMarkKernelAttr,
        b.getDenseI64ArrayAttr({marksPerBatch, marksPerHead, kMarkWords}));
  if (cfg.persistent)
    fn->setAttr(kPersistentAttr, b.getUnitAttr());
  Value leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, cIdx(0));
  // wgmma descriptors: this warpgroup's 64 rows of Q, K (both K-major)
  // and V (N-major: its 64-column atoms lie tk * 128 bytes apart); 8-row
  // groups 1024 bytes apart in all three.
  Value qDesc, kDesc, vDesc;
  if (cfg.wgmma) {
    Value wg = toI64(arith::DivUIOp::create(b, loc, warp, cIdx(4)));
    qDesc = descriptor(
        arith::AddIOp::create(b, loc, tileAddr(cfg.qOffset()),
                              arith::MulIOp::create(b, loc, wg, cI64(8192))),
        16, 1024);
    kDesc = descriptor(tileAddr(cfg.kOffset()), 16, 1024);
    vDesc = descriptor(tileAddr(cfg.vOffset()), tk * 128, 1024);
  }
  const int64_t kRows = (D / 64) * tk, vRows = (Dv / 64) * tk;

  // A work item (b, h, q-tile): where it is, its live kv-tiles [kt0,
  // ktEnd) and (persistent kernel) its second live tile kt1.
  struct Item {
    BlockTile tile;
    Value ktEnd, kt0, kt1;
  };
  // Makes `it` the item that the helpers (tile facts, summaries, score
  // and mask inlining) work on, from the insertion point on.
  auto setItem = [&](const Item &it) {
    bi = it.tile.bi;
    hi = it.tile.hi;
    hkv = it.tile.hkv;
    b32 = it.tile.b32;
    h32 = it.tile.h32;
    ktEnd = it.ktEnd;
    initTileEnv(env, b, loc, bi, hi, sizeI64, kctx);
    env.tensorRange = [this](attn::ParamOp p, ArrayRef<IntervalValues> idx) {
      return tensorRange(p, idx);
    };
    // The q-tile's rows, as the tile abstraction sees them.
    env.q = {toI64(it.tile.q0),
             arith::SubIOp::create(b, loc, toI64(add(it.tile.q0, it.tile.rows)),
                                   cI64(1))};
    entryBlock = b.getInsertionBlock();
    rangeCache.clear();
  };
  if (marksOnly) {
    // Block -> item (b', h', q-tile), q-tile fastest (markItem); its
    // summaries and marks as an attention block would work them out,
    // then the kMarkWords words out, in the order of their shared memory.
    Value numQTiles =
        arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[3], cIdx(cfg.rows()));
    Value qt = arith::RemUIOp::create(b, loc, block, numQTiles);
    Value rest = arith::DivUIOp::create(b, loc, block, numQTiles);
    Value hIdx =
        marksPerHead
            ? arith::RemUIOp::create(b, loc, rest, entry.sizeIdx[1]).getResult()
            : cIdx(0);
    Value bIdx =
        !marksPerBatch ? cIdx(0)
        : marksPerHead
            ? arith::DivUIOp::create(b, loc, rest, entry.sizeIdx[1]).getResult()
            : rest;
    Item it;
    it.tile = emitBlockTile(b, loc, bIdx, hIdx, qt, entry.sizeIdx, cfg.rows());
    it.ktEnd = numKvTiles;
    setItem(it);
    computeSummaries();
    markLiveTiles();
    Value base = mul(block, cIdx(kMarkWords));
    ifThen(andI(useSummaries, lt(tid, cIdx(kMarkWords))), [&] {
      Value word = memref::LoadOp::create(b, loc, markWords, ValueRange{tid});
      memref::StoreOp::create(b, loc, word, marksArg,
                              ValueRange{add(base, tid)});
    });
    gpu::ReturnOp::create(b, loc);
    finishFunction(fn);
    return success();
  }
  // The item's tile (b, h, q-tile), from its number.
  auto itemTile = [&](Value blockIndex) {
    // Persistent: from copies of the sizes that the compiler cannot hoist
    // out of the item loop (what depends on the sizes alone would
    // otherwise stay in registers across every kv loop).
    Value sizes[7];
    for (int i = 0; i < 7; ++i)
      sizes[i] = entry.sizeIdx[i];
    if (cfg.persistent)
      for (int i : {0, 1, 2, 3, 4})
        sizes[i] = toIdx(pinRegisters({entry.sizeI32[i]})[0]);
    Item it;
    it.tile = emitLongestFirstBlock(b, loc, blockIndex, sizes, cfg.rows(),
                                    2 * (D + Dv));
    return it;
  };
  // wgmma: K of the live tile after kt0 (one group, empty when there is
  // none) into the second K buffer and V of kt0 into the first V buffer;
  // returns that tile (ktEnd when there is none).
  auto copyK1V0 = [&](Value kt0) {
    Value kt1 = firstLiveTile(add(kt0, cIdx(1)));
    ifThen(lt(kt1, ktEnd), [&] {
      loadTile(k, hkv, kTile, D, tk, mul(kt1, cIdx(tk)), entry.sizeIdx[4],
               cIdx(kRows), /*commit=*/false);
    });
    NVVM::CpAsyncCommitGroupOp::create(b, loc);
    loadTile(v, hkv, vTile, Dv, tk, mul(kt0, cIdx(tk)), entry.sizeIdx[4],
             cIdx(0));
    return kt1;
  };
  // The item's prologue: its tile, the Q copy, its live kv-tiles and the
  // copy of the first one's K (persistent: also the second one's K and the
  // first one's V).
  auto prologue = [&](Value blockIndex) {
    Item it = itemTile(blockIndex);
    setItem(it);
    Value q0 = it.tile.q0, rows = it.tile.rows;
    // The Q tile in flight first: it does not depend on which kv-tiles are
    // live, so its copy overlaps the mask summaries and the kv range below.
    loadTile(q, hi, qTile, D, cfg.rows(), q0, entry.sizeIdx[3]);
    Value ktBegin64, ktEnd64;
    if (summaries.empty()) {
      KvTileRange range =
          emitKvTileRange(b, loc, variant.getMaskOp(), env, q0, rows, tk);
      ktBegin64 = range.begin;
      ktEnd64 = range.end;
    } else {
      // Data-dependent: the live tiles are marked once per item; their
      // first and last bound the loop (a row of more than kMaxSummaryTiles
      // tiles takes the row facts instead, reading the whole row).
      if (marksArg) {
        loadMarks(it.tile);
      } else {
        computeSummaries();
        markLiveTiles();
      }
      auto ifOp = scf::IfOp::create(
          b, loc, useSummaries,
          [&](OpBuilder &, Location) {
            Value lo =
                memref::LoadOp::create(b, loc, liveEnds, ValueRange{cIdx(0)});
            Value hi =
                memref::LoadOp::create(b, loc, liveEnds, ValueRange{cIdx(1)});
            Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                              lo, hi);
            Value begin = arith::ExtSIOp::create(
                b, loc, b.getI64Type(),
                arith::SelectOp::create(b, loc, any, lo, cI32(0)));
            Value end = arith::ExtSIOp::create(
                b, loc, b.getI64Type(),
                arith::SelectOp::create(
                    b, loc, any, arith::AddIOp::create(b, loc, hi, cI32(1)),
                    cI32(0)));
            scf::YieldOp::create(b, loc, ValueRange{begin, end});
          },
          [&](OpBuilder &, Location) {
            TileEnv rowEnv = env;
            KvTileRange range = emitKvTileRange(b, loc, variant.getMaskOp(),
                                                rowEnv, q0, rows, tk);
            scf::YieldOp::create(b, loc, ValueRange{range.begin, range.end});
          });
      ktBegin64 = ifOp.getResult(0);
      ktEnd64 = ifOp.getResult(1);
    }
    Value ktBegin = toIdx(ktBegin64);
    ktEnd = it.ktEnd = toIdx(ktEnd64);
    ifThen(leader, [&] {
      countTiles(kStatusTilesInRange,
                 arith::TruncIOp::create(
                     b, loc, b.getI32Type(),
                     arith::SubIOp::create(b, loc, ktEnd64, ktBegin64)));
    });
    // K of the first live tile in flight, after Q (above).
    Value kt0 = it.kt0 = firstLiveTile(ktBegin);
    ifThen(lt(kt0, ktEnd), [&] {
      loadTile(k, hkv, kTile, D, tk, mul(kt0, cIdx(tk)), entry.sizeIdx[4]);
    });
    if (cfg.persistent) {
      // K of the second live tile (one group, empty when there is none)
      // and V of the first, as the wgmma prologue below would issue them.
      auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getIndexType()},
                                    lt(kt0, ktEnd), /*withElseRegion=*/true);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      scf::YieldOp::create(b, loc, copyK1V0(kt0));
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(b, loc, ktEnd);
      it.kt1 = ifOp.getResult(0);
    } else {
      it.kt1 = kt0; // unused
    }
    return it;
  };

  // Persistent: a loop over items blockIdx.x, + gridDim.x, ..., each
  // item's prologue issued by the previous iteration (the first before the
  // loop). The loop state: the item and its [kt0, ktEnd) and kt1; its
  // tile is worked out again from its number where needed (cheaper than
  // registers held across the kv loop).
  Type idxType = b.getIndexType();
  Value nItems, gridDim;
  auto prologueIf = [&](Value item) {
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{idxType, idxType, idxType},
                                  lt(item, nItems), /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    Item it = prologue(item);
    scf::YieldOp::create(b, loc, ValueRange{it.ktEnd, it.kt0, it.kt1});
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, loc, ValueRange{cIdx(0), cIdx(0), cIdx(0)});
    SmallVector<Value> r = {item};
    r.append(ifOp.getResults().begin(), ifOp.getResults().end());
    return r;
  };
  // The tile of `item` again, from a copy of its number that the compiler
  // cannot merge with earlier ones.
  auto itemAgain = [&](Value item, ValueRange ranges) {
    Value n =
        pinRegisters({arith::IndexCastOp::create(b, loc, b.getI32Type(), item)
                          .getResult()})[0];
    Item it = itemTile(arith::IndexCastOp::create(b, loc, idxType, n));
    it.ktEnd = ranges[0];
    it.kt0 = ranges[1];
    it.kt1 = ranges[2];
    return it;
  };
  Item cur;
  scf::WhileOp itemLoop;
  Value item;
  if (cfg.persistent) {
    gridDim = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
    nItems = mul(
        mul(entry.sizeIdx[0], entry.sizeIdx[1]),
        arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[3], cIdx(cfg.rows())));
    SmallVector<Value> init = prologueIf(block);
    SmallVector<Type> types(4, idxType);
    itemLoop = scf::WhileOp::create(b, loc, types, init);
    SmallVector<Location> locs(types.size(), loc);
    Block *before = b.createBlock(&itemLoop.getBefore(), {}, types, locs);
    scf::ConditionOp::create(b, loc, lt(before->getArgument(0), nItems),
                             before->getArguments());
    Block *after = b.createBlock(&itemLoop.getAfter(), {}, types, locs);
    item = after->getArgument(0);
    cur = itemAgain(item, after->getArguments().drop_front());
    setItem(cur);
    // The q-tile's side of the mask's reads, cached for this item's tiles.
    if (!summaries.empty())
      tileFacts(cIdx(0));
  } else {
    cur = prologue(block);
  }
  Value q0 = cur.tile.q0, rows = cur.tile.rows, kt0 = cur.kt0;
  // M-tile t of the warp: tile rows (warp * mt + t) * 16 + [0, 16); the
  // lane holds rows g and g + 8 of it.
  SmallVector<Value> tileRow(mt);
  SmallVector<std::array<Value, 2>> rowIdx(mt);
  for (int64_t t = 0; t < mt; ++t) {
    tileRow[t] = mul(add(mul(warp, cIdx(mt)), cIdx(t)), cIdx(16));
    rowIdx[t][0] = add(add(q0, tileRow[t]), g);
    rowIdx[t][1] = add(rowIdx[t][0], cIdx(8));
  }
  // The uniform parts of the score and mask, once per item.
  if (attn::ScoreOp scoreOp = variant.getScoreOp()) {
    scorePre = hoistUniform(scoreOp.getBody());
    scoreSpeculatable = speculatable(scoreOp.getBody(), scorePre);
  }
  if (attn::MaskOp maskOp = variant.getMaskOp()) {
    maskPre = hoistUniform(maskOp.getBody());
    maskSpeculatable = speculatable(maskOp.getBody(), maskPre);
  }

  const int64_t nS = tk / 8, nO = Dv / 8;
  const int64_t perTile = 4 + 4 * nO;
  using Tiles = SmallVector<SmallVector<Acc>>; // [m-tile][n-tile]

  // The scaled scores of kv-tile `kt` -> modified and (in mixed or partial
  // tiles) masked, in the units the normalisation works in.
  // Whether kv-tile `kt` needs the mask: not proved all true, or partial.
  auto needMaskOf = [&](Value kt) {
    Value k0 = mul(kt, cIdx(tk));
    Value mayBeFalse;
    if (fullBits) {
      // The marks (the summaries may be overwritten by now).
      auto ifOp = scf::IfOp::create(
          b, loc, useSummaries,
          [&](OpBuilder &, Location) {
            Value word = memref::LoadOp::create(
                b, loc, fullBits,
                ValueRange{arith::DivUIOp::create(b, loc, kt, cIdx(32))});
            Value bit = arith::AndIOp::create(
                b, loc,
                arith::ShRUIOp::create(
                    b, loc, word,
                    toI32(arith::RemUIOp::create(b, loc, kt, cIdx(32)))),
                cI32(1));
            scf::YieldOp::create(
                b, loc,
                ValueRange{arith::CmpIOp::create(
                    b, loc, arith::CmpIPredicate::eq, bit, cI32(0))});
          },
          [&](OpBuilder &, Location) {
            scf::YieldOp::create(b, loc, ValueRange{tileFacts(kt).mayBeFalse});
          });
      mayBeFalse = ifOp.getResult(0);
    } else {
      mayBeFalse = tileFacts(kt).mayBeFalse;
    }
    Value partial =
        arith::OrIOp::create(b, loc, lt(entry.sizeIdx[4], add(k0, cIdx(tk))),
                             lt(entry.sizeIdx[3], add(q0, cIdx(cfg.rows()))));
    return arith::OrIOp::create(b, loc, mayBeFalse, partial).getResult();
  };
  auto finishScores = [&](Tiles &s, Value kt, Value needMask) {
    Value k0 = mul(kt, cIdx(tk));
    for (auto &st : s)
      for (Acc &acc : st)
        for (Value &x : acc)
          if (!rawScores)
            x = fmul(x, qscale);
    for (int64_t t = 0; t < mt; ++t) {
      Value rowPair[2] = {rowIdx[t][0], rowIdx[t][1]};
      scoreTile(s[t], rowPair, k0, needMask);
    }
  };
  // Online softmax (or plain weights) of one tile for the lane's rows: the
  // weights P, the new row state and, for softmax, the factor alpha that
  // rescales what O holds so far.
  struct Step {
    Tiles p;
    SmallVector<std::array<Value, 2>> m, l, alpha;
  };
  auto softmaxStep = [&](Tiles &s, ArrayRef<std::array<Value, 2>> m,
                         ArrayRef<std::array<Value, 2>> l) {
    Step st;
    st.m.assign(m.begin(), m.end());
    st.l.assign(l.begin(), l.end());
    st.alpha.resize(mt);
    st.p.assign(mt, SmallVector<Acc>(nS));
    SmallVector<std::array<Value, 2>> mSafe(mt);
    for (int64_t t = 0; t < mt; ++t) {
      if (norm == attn::NormKind::softmax) {
        for (int r = 0; r < 2; ++r) {
          Value mx = cF32(-INFINITY);
          for (int64_t j = 0; j < nS; ++j)
            mx = fmax(mx, fmax(s[t][j][2 * r], s[t][j][2 * r + 1]));
          st.m[t][r] = fmax(m[t][r], quadReduce(mx, /*isMax=*/true));
          // While every entry so far is masked, use 0 so that p stays 0.
          mSafe[t][r] = select(isNegInf(st.m[t][r]), cF32(0.0), st.m[t][r]);
          if (rawScores) {
            // In scaled units from here on.
            mSafe[t][r] = fmul(mSafe[t][r], qscale);
            st.alpha[t][r] = exp2(fsub(fmul(m[t][r], qscale), mSafe[t][r]));
          } else {
            st.alpha[t][r] = exp2(fsub(m[t][r], mSafe[t][r]));
          }
          st.l[t][r] = fmul(l[t][r], st.alpha[t][r]);
        }
      }
      for (int64_t j = 0; j < nS; ++j)
        for (int i = 0; i < 4; ++i) {
          Value x = s[t][j][i], w;
          switch (norm) {
          case attn::NormKind::softmax:
            w = rawScores ? exp2(math::FmaOp::create(
                                b, loc, x, qscale,
                                arith::NegFOp::create(b, loc, mSafe[t][i / 2])))
                          : exp2(fsub(x, mSafe[t][i / 2]));
            break;
          case attn::NormKind::sigmoid:
            w = arith::DivFOp::create(
                b, loc, cF32(1.0),
                fadd(cF32(1.0), exp2(fmul(x, cF32(-kLog2e)))));
            break;
          case attn::NormKind::relu:
            w = fmax(x, cF32(0.0));
            break;
          default:
            w = x;
            break;
          }
          if (norm != attn::NormKind::softmax)
            w = select(isNegInf(x), cF32(0.0), w);
          st.p[t][j][i] = w;
          st.l[t][i / 2] = fadd(st.l[t][i / 2], w);
        }
    }
    return st;
  };
  auto rescale = [&](Tiles &oAcc, const Step &st) {
    if (norm != attn::NormKind::softmax)
      return;
    for (int64_t t = 0; t < mt; ++t)
      for (int64_t j = 0; j < nO; ++j)
        for (int i = 0; i < 4; ++i)
          oAcc[t][j][i] = fmul(oAcc[t][j][i], st.alpha[t][i / 2]);
  };
  auto zeroTiles = [&](int64_t n) {
    return Tiles(mt, SmallVector<Acc>(
                         n, Acc{cF32(0.0), cF32(0.0), cF32(0.0), cF32(0.0)}));
  };

  // The final row state: [kt, then per m-tile m[2], l[2], O].
  SmallVector<Value> fin;
  if (!cfg.wgmma) {
    // Loop state: kt; per m-tile m[2], l[2] (this lane's partial sums) and
    // the O accumulators.
    SmallVector<Value> init = {kt0};
    for (int64_t t = 0; t < mt; ++t) {
      init.append({cF32(-INFINITY), cF32(-INFINITY), cF32(0.0), cF32(0.0)});
      for (int64_t j = 0; j < nO * 4; ++j)
        init.push_back(cF32(0.0));
    }
    scf::WhileOp loop;
    {
      OpBuilder::InsertionGuard guard(b);
      loop = whileLiveTiles(init);
      Block *after = &loop.getAfter().front();
      Value kt = after->getArgument(0);
      SmallVector<std::array<Value, 2>> m(mt), l(mt);
      Tiles oAcc(mt, SmallVector<Acc>(nO));
      for (int64_t t = 0; t < mt; ++t) {
        unsigned base = 1 + t * perTile;
        m[t] = {after->getArgument(base), after->getArgument(base + 1)};
        l[t] = {after->getArgument(base + 2), after->getArgument(base + 3)};
        for (int64_t j = 0; j < nO; ++j)
          for (int i = 0; i < 4; ++i)
            oAcc[t][j][i] = after->getArgument(base + 4 + 4 * j + i);
      }

      Value k0 = mul(kt, cIdx(tk));
      ifThen(leader, [&] { countTiles(kStatusTilesComputed, cI32(1)); });
      NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
      gpu::BarrierOp::create(b, loc); // Q and K_j are in shared memory
      loadTile(v, hkv, vTile, Dv, tk, k0, entry.sizeIdx[4]);

      // S = Q K_j^T, two k-steps at a time: the A fragments of both
      // m-tiles from the Q tile, then per n-tile (8 keys) one ldmatrix.x4
      // of K feeding 2 * mt mma.
      Tiles s = zeroTiles(nS);
      for (int64_t kk = 0; kk < D / 16; kk += 2) {
        bool pair = kk + 1 < D / 16;
        SmallVector<SmallVector<SmallVector<Value>>> a(mt);
        for (int64_t t = 0; t < mt; ++t)
          for (int64_t step = 0; step < (pair ? 2 : 1); ++step) {
            Value row = add(add(tileRow[t], r8), mul(miLow, cIdx(8)));
            Value col = add(cIdx(16 * (kk + step)), mul(miHigh, cIdx(8)));
            a[t].push_back(ldmatrix(qTile, row, col, 4, false));
          }
        for (int64_t j = 0; j < nS; ++j) {
          Value row = add(cIdx(8 * j), r8);
          Value col = add(cIdx(16 * kk), mul(pair ? mi : miLow, cIdx(8)));
          SmallVector<Value> bf =
              ldmatrix(kTile, row, col, pair ? 4 : 2, false);
          for (int64_t t = 0; t < mt; ++t) {
            s[t][j] = mma(a[t][0], {bf[0], bf[1]}, s[t][j]);
            if (pair)
              s[t][j] = mma(a[t][1], {bf[2], bf[3]}, s[t][j]);
          }
        }
      }
      finishScores(s, kt, needMaskOf(kt));

      // The tile's one other barrier comes before the softmax (as in
      // FlashAttention-2), not after it: with nothing between the softmax
      // and P V, ptxas interleaves the exponentials of later k-steps with
      // the mma of earlier ones.
      Value ktNext = firstLiveTile(add(kt, cIdx(1)));
      NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
      gpu::BarrierOp::create(b, loc); // V_j landed; every warp is done with K_j
      ifThen(lt(ktNext, ktEnd), [&] {
        loadTile(k, hkv, kTile, D, tk, mul(ktNext, cIdx(tk)), entry.sizeIdx[4]);
      });

      Step st = softmaxStep(s, m, l);
      rescale(oAcc, st);
      Tiles &p = st.p;

      // O += P V_j: P from the S accumulators (two n-tiles = one k-step of
      // A), V fragments by ldmatrix.trans, two n-tiles of O per x4, each
      // feeding mt m-tiles.
      for (int64_t kk = 0; kk < tk / 16; ++kk) {
        SmallVector<SmallVector<Value>> a(mt);
        for (int64_t t = 0; t < mt; ++t)
          a[t] = {pack(p[t][2 * kk][0], p[t][2 * kk][1]),
                  pack(p[t][2 * kk][2], p[t][2 * kk][3]),
                  pack(p[t][2 * kk + 1][0], p[t][2 * kk + 1][1]),
                  pack(p[t][2 * kk + 1][2], p[t][2 * kk + 1][3])};
        for (int64_t jd = 0; jd < nO; jd += 2) {
          bool pair = jd + 1 < nO;
          Value row = add(cIdx(16 * kk), add(mul(miLow, cIdx(8)), r8));
          Value col = cIdx(8 * jd);
          if (pair)
            col = add(col, mul(miHigh, cIdx(8)));
          SmallVector<Value> bf = ldmatrix(vTile, row, col, pair ? 4 : 2, true);
          for (int64_t t = 0; t < mt; ++t) {
            oAcc[t][jd] = mma(a[t], {bf[0], bf[1]}, oAcc[t][jd]);
            if (pair)
              oAcc[t][jd + 1] = mma(a[t], {bf[2], bf[3]}, oAcc[t][jd + 1]);
          }
        }
      }
      SmallVector<Value> next = {ktNext};
      for (int64_t t = 0; t < mt; ++t) {
        next.append({st.m[t][0], st.m[t][1], st.l[t][0], st.l[t][1]});
        for (Acc &acc : oAcc[t])
          next.append(acc.begin(), acc.end());
      }
      scf::YieldOp::create(b, loc, next);
    }
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
    fin.assign(loop.getResults().begin(), loop.getResults().end());
  } else {
    // Hopper: a software pipeline over the live kv-tiles t_0, t_1, ..., K
    // and V double-buffered (buffer i % 2). Iteration i issues S_i =
    // Q K_{t_i}^T and O += P_{i-1} V_{t_{i-1}} as two wgmma groups, waits
    // for S_i only and computes P_i while the tensor cores run the second
    // group, then waits for it and rescales O. The copies of K_{t_{i+1}}
    // and V_{t_i} start right after the iteration's one barrier: their
    // buffers were last read by groups that iteration i - 1 waited for.
    const int64_t nP = tk / 4; // P registers (element pairs) per thread
    auto bufDesc = [&](Value desc, int64_t rowsPerBuf, Value par) {
      return arith::AddIOp::create(
                 b, loc, desc,
                 arith::MulIOp::create(b, loc, toI64(par),
                                       cI64(rowsPerBuf * 128 >> 4)))
          .getResult();
    };
    auto loadK = [&](Value kt, Value par, bool commit = true) {
      loadTile(k, hkv, kTile, D, tk, mul(kt, cIdx(tk)), entry.sizeIdx[4],
               mul(par, cIdx(kRows)), commit);
    };
    auto loadV = [&](Value kt, Value par) {
      loadTile(v, hkv, vTile, Dv, tk, mul(kt, cIdx(tk)), entry.sizeIdx[4],
               mul(par, cIdx(vRows)));
    };
    // All but the `pending` newest copy groups landed, for every thread.
    auto syncTiles = [&](int pending = 0) {
      NVVM::CpAsyncWaitGroupOp::create(b, loc, pending);
      // The copies, visible to wgmma's (async) proxy.
      ptx("fence.proxy.async.shared::cta;");
      gpu::BarrierOp::create(b, loc);
    };
    // S = Q K^T: one m64 x tk x 16 wgmma per 16 columns of D, both operands
    // read from the swizzled tiles by descriptor; one group. `ops`: the
    // descriptors of sOperands, then the registers holding 0 and 1.
    auto sOperands = [&](Value kd) {
      SmallVector<Value> r;
      for (int64_t kk = 0; kk < D / 16; ++kk) {
        int64_t qOff = (kk / 4) * cfg.rows() * 128 + (kk % 4) * 32;
        int64_t kOff = (kk / 4) * tk * 128 + (kk % 4) * 32;
        r.append({add64(qDesc, qOff >> 4), add64(kd, kOff >> 4)});
      }
      return r;
    };
    auto issueS = [&](ArrayRef<Value> ops, Value zero, Value one) {
      SmallVector<Value> acc;
      for (int64_t kk = 0; kk < D / 16; ++kk)
        acc = wgmma(acc, tk, ops[2 * kk], {}, ops[2 * kk + 1],
                    /*transB=*/false, acc.empty() ? zero : one);
      ptx("wgmma.commit_group.sync.aligned;");
      return acc;
    };
    // O += P V: one m64 x Dv x 16 wgmma per 16 keys, P from registers, V
    // (N-major) by descriptor; one group.
    auto vOperands = [&](Value vd) {
      SmallVector<Value> r;
      for (int64_t kk = 0; kk < tk / 16; ++kk)
        r.push_back(add64(vd, (kk * 16 * 128) >> 4));
      return r;
    };
    auto issuePV = [&](SmallVector<Value> acc, ArrayRef<Value> pr,
                       ArrayRef<Value> ops, Value one) {
      for (int64_t kk = 0; kk < tk / 16; ++kk)
        acc = wgmma(acc, Dv, Value(), pr.slice(4 * kk, 4), ops[kk],
                    /*transB=*/true, one);
      ptx("wgmma.commit_group.sync.aligned;");
      return acc;
    };
    // The lists passed through one pinRegisters, in place.
    auto pinAll = [&](std::initializer_list<SmallVector<Value> *> lists) {
      SmallVector<Value> all;
      for (SmallVector<Value> *list : lists)
        all.append(list->begin(), list->end());
      all = pinRegisters(all);
      size_t at = 0;
      for (SmallVector<Value> *list : lists)
        for (Value &x : *list)
          x = all[at++];
    };
    auto toTiles = [&](ArrayRef<Value> acc, int64_t n) {
      Tiles t(1, SmallVector<Acc>(n));
      for (int64_t j = 0; j < n; ++j)
        for (int i = 0; i < 4; ++i)
          t[0][j][i] = acc[4 * j + i];
      return t;
    };
    auto packP = [&](const Tiles &p) {
      SmallVector<Value> r;
      for (int64_t kk = 0; kk < tk / 16; ++kk) {
        const Acc &p0 = p[0][2 * kk], &p1 = p[0][2 * kk + 1];
        r.append({pack32(p0[0], p0[1]), pack32(p0[2], p0[3]),
                  pack32(p1[0], p1[1]), pack32(p1[2], p1[3])});
      }
      return r;
    };
    auto waitGroups = [&](int n) {
      ptx("wgmma.wait_group.sync.aligned " + std::to_string(n) + ";");
    };
    Type f32 = b.getF32Type(), i32 = b.getI32Type(), idx = b.getIndexType();

    // Prologue: S_0 and P_0 (when any tile is live).
    Value any = lt(kt0, ktEnd);
    SmallVector<Type> proTypes(4, f32);
    proTypes.append(nP, i32);
    proTypes.append({idx, idx});
    auto pro = scf::IfOp::create(b, loc, proTypes, any, true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&pro.getThenRegion().front());
      // K of the next live tile and V of this one go in flight before the
      // wait for Q and K, into buffers nothing has used yet: two groups
      // (the first empty when there is no next tile) that may stay
      // pending, so the first loop iteration finds them landed sooner.
      // (A persistent kernel's item prologue issued them.)
      Value kt1 = cfg.persistent ? cur.kt1 : copyK1V0(kt0);
      syncTiles(2); // Q and K_{t_0} landed
      ifThen(leader, [&] { countTiles(kStatusTilesComputed, cI32(1)); });
      SmallVector<Value> ops = sOperands(kDesc), consts = {cI32(0), cI32(1)};
      pinAll({&ops, &consts});
      ptx("wgmma.fence.sync.aligned;");
      SmallVector<Value> acc = issueS(ops, consts[0], consts[1]);
      waitGroups(0);
      Tiles s = toTiles(pinRegisters(acc), nS);
      finishScores(s, kt0, needMaskOf(kt0));
      std::array<Value, 2> m0 = {cF32(-INFINITY), cF32(-INFINITY)};
      std::array<Value, 2> l0 = {cF32(0.0), cF32(0.0)};
      Step st = softmaxStep(s, {m0}, {l0});
      SmallVector<Value> r = {st.m[0][0], st.m[0][1], st.l[0][0], st.l[0][1]};
      r.append(packP(st.p));
      r.append({kt1, firstLiveTile(add(kt1, cIdx(1)))});
      scf::YieldOp::create(b, loc, r);
      b.setInsertionPointToStart(&pro.getElseRegion().front());
      SmallVector<Value> e = {cF32(-INFINITY), cF32(-INFINITY), cF32(0.0),
                              cF32(0.0)};
      e.append(nP, cI32(0));
      e.append({ktEnd, ktEnd});
      scf::YieldOp::create(b, loc, e);
    }

    // Loop state: kt = t_i, ktNext = t_{i+1}, par = i % 2, m[2], l[2], O,
    // P_{i-1}.
    SmallVector<Value> init = {pro.getResult(4 + nP), pro.getResult(5 + nP),
                               cIdx(1)};
    for (int i = 0; i < 4; ++i)
      init.push_back(pro.getResult(i));
    init.append(nO * 4, cF32(0.0));
    for (int64_t i = 0; i < nP; ++i)
      init.push_back(pro.getResult(4 + i));
    scf::WhileOp loop;
    {
      OpBuilder::InsertionGuard guard(b);
      loop = whileLiveTiles(init);
      Block *after = &loop.getAfter().front();
      auto args = after->getArguments();
      Value kt = args[0], ktNext = args[1], par = args[2];
      Value other = arith::SubIOp::create(b, loc, cIdx(1), par);
      std::array<Value, 2> m = {args[3], args[4]}, l = {args[5], args[6]};
      SmallVector<Value> oRegs(args.begin() + 7, args.begin() + 7 + nO * 4);
      SmallVector<Value> pRegs(args.begin() + 7 + nO * 4, args.end());

      syncTiles(); // K_{t_i} and V_{t_{i-1}} landed
      ifThen(lt(ktNext, ktEnd), [&] { loadK(ktNext, other); });
      loadV(kt, par);
      ifThen(leader, [&] { countTiles(kStatusTilesComputed, cI32(1)); });
      // Two copies of the overlapped part, with and without the mask: a
      // branch inside it would make ptxas wait for the P V group at the
      // join, before the softmax it is meant to overlap.
      Value needMask = needMaskOf(kt);
      SmallVector<Type> stepTypes(4 + nO * 4, f32);
      stepTypes.append(nP, i32);
      auto step = scf::IfOp::create(b, loc, stepTypes, needMask, true);
      for (int masked = 1; masked >= 0; --masked) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(masked ? &step.getThenRegion().front()
                                          : &step.getElseRegion().front());
        SmallVector<Value> o1 = oRegs, p1 = pRegs;
        SmallVector<Value> sOps = sOperands(bufDesc(kDesc, kRows, par));
        SmallVector<Value> vOps = vOperands(bufDesc(vDesc, vRows, other));
        SmallVector<Value> consts = {cI32(0), cI32(1)};
        pinAll({&o1, &p1, &sOps, &vOps, &consts});
        // Distinct text in the two copies, so that LLVM does not hoist the
        // identical wgmma issue above the branch.
        ptx(masked ? "wgmma.fence.sync.aligned; // tile with mask"
                   : "wgmma.fence.sync.aligned; // tile without mask");
        SmallVector<Value> sAcc = issueS(sOps, consts[0], consts[1]);
        o1 = issuePV(o1, p1, vOps, consts[1]);
        waitGroups(1); // S_i is ready; P_{i-1} V runs on
        Tiles s = toTiles(pinRegisters(sAcc), nS);
        finishScores(s, kt, cBool(masked));
        Step st = softmaxStep(s, {m}, {l});
        waitGroups(0);
        // P packed only now: its registers are the ones the finished group
        // read (ptxas serialises wgmma whose inputs are redefined in
        // flight).
        SmallVector<Value> pF32;
        for (Acc &acc : st.p[0])
          pF32.append(acc.begin(), acc.end());
        pF32 = pinRegisters(pF32);
        SmallVector<Value> pNext = packP(toTiles(pF32, nS));
        Tiles oT = toTiles(pinRegisters(o1), nO);
        rescale(oT, st);
        SmallVector<Value> r = {st.m[0][0], st.m[0][1], st.l[0][0], st.l[0][1]};
        for (Acc &acc : oT[0])
          r.append(acc.begin(), acc.end());
        r.append(pNext);
        scf::YieldOp::create(b, loc, r);
      }
      SmallVector<Value> next = {ktNext, firstLiveTile(add(ktNext, cIdx(1))),
                                 other};
      next.append(step.getResults().begin(), step.getResults().end());
      scf::YieldOp::create(b, loc, next);
    }

    // The last tile's P V.
    Value parExit = loop.getResult(2);
    SmallVector<Value> oRegs(loop.getResults().begin() + 7,
                             loop.getResults().begin() + 7 + nO * 4);
    SmallVector<Value> pRegs(loop.getResults().begin() + 7 + nO * 4,
                             loop.getResults().end());
    auto last =
        scf::IfOp::create(b, loc, SmallVector<Type>(nO * 4, f32), any, true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&last.getThenRegion().front());
      syncTiles();
      SmallVector<Value> o2 = oRegs, p2 = pRegs;
      SmallVector<Value> vOps = vOperands(bufDesc(
          vDesc, vRows, arith::SubIOp::create(b, loc, cIdx(1), parExit)));
      SmallVector<Value> consts = {cI32(1)};
      pinAll({&o2, &p2, &vOps, &consts});
      ptx("wgmma.fence.sync.aligned;");
      o2 = issuePV(o2, p2, vOps, consts[0]);
      waitGroups(0);
      scf::YieldOp::create(b, loc, pinRegisters(o2));
      b.setInsertionPointToStart(&last.getElseRegion().front());
      scf::YieldOp::create(b, loc, oRegs);
    }
    fin = {loop.getResult(0)};
    for (int i = 3; i < 7; ++i)
      fin.push_back(loop.getResult(i));
    fin.append(last.getResults().begin(), last.getResults().end());
  }

  // Persistent: every warp is done with this item's tiles, summaries and
  // marks (and no copy into them is in flight), so the next item's
  // prologue runs now and its copies overlap this item's epilogue.
  SmallVector<Value> nextItem;
  if (cfg.persistent) {
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
    gpu::BarrierOp::create(b, loc);
    nextItem = prologueIf(add(item, gridDim));
    cur = itemAgain(item, {cur.ktEnd, cur.kt0, cur.kt1});
    setItem(cur);
    q0 = cur.tile.q0;
    rows = cur.tile.rows;
    for (int64_t t = 0; t < mt; ++t) {
      rowIdx[t][0] = add(add(q0, tileRow[t]), g);
      rowIdx[t][1] = add(rowIdx[t][0], cIdx(8));
    }
  }

  // Epilogue: per row, the lane's partial sums joined across the quad, the
  // sink folded in, LSE written by the first lane of the quad; then O / l
  // staged in shared memory and written in 16-byte chunks (below).
  Value wantLse = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ne,
      arith::AndIOp::create(b, loc, entry.flags, cI32(kFlagWriteLSE)), cI32(0));
  Value firstOfQuad =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tig, cIdx(0));
  Value sinkLog2 = emitSinkLog2(b, loc, variant, b32, h32);
  if (rawScores) // the row maxima in the scaled units of the scores
    for (int64_t t = 0; t < mt; ++t)
      for (int r = 0; r < 2; ++r)
        fin[1 + t * perTile + r] = fmul(fin[1 + t * perTile + r], qscale);
  SmallVector<std::array<Value, 2>> factor(mt);
  for (int64_t t = 0; t < mt; ++t)
    for (int r = 0; r < 2; ++r) {
      unsigned base = 1 + t * perTile;
      Value mRow = fin[base + r];
      Value lRow = quadReduce(fin[base + 2 + r], /*isMax=*/false);
      RowNormalization rn = emitRowNormalization(
          b, loc, norm, norm == attn::NormKind::softmax ? mRow : Value(), lRow,
          sinkLog2);
      factor[t][r] = rn.factor;
      if (norm == attn::NormKind::softmax) {
        Value lseValue = select(rn.empty, cF32(-INFINITY), rn.lse);
        ifThen(andI(lt(rowIdx[t][r], entry.sizeIdx[3]),
                    andI(wantLse, firstOfQuad)),
               [&] {
                 memref::StoreOp::create(b, loc, lseValue, entry.lse,
                                         ValueRange{bi, hi, rowIdx[t][r]});
               });
      }
    }
  // O's element (row, colBase + 8 j + e2) of m-tile t, in the element type.
  Value colBase = mul(tig, cIdx(2));
  auto outValue = [&](int64_t t, int r, int64_t j, int e2) {
    Value x = fmul(fin[1 + t * perTile + 4 + 4 * j + 2 * r + e2], factor[t][r]);
    return arith::TruncFOp::create(b, loc, elementType, x).getResult();
  };
  // The staged store: the block's O tile in shared memory over the Q and K
  // tiles (a persistent kernel's has its own, at cfg.stagingOffset()), rows
  // padded by 16 bytes (the quad's pairs of a row and the 8 rows of a lane
  // group land in distinct banks), then rows of 16-byte
  // chunks, consecutive threads on consecutive chunks of a row. A chunk
  // goes out as one 16-byte vector when the host allows it for this O
  // (kFlagVectorO), else element by element; either way the accumulators
  // are spent in one place (two copies of their stores cost registers).
  // MmaKernelConfig::sharedBytes() makes room for it.
  {
    const int64_t stagePitch = MmaKernelConfig::pitch(Dv);
    auto stageType = MemRefType::get({cfg.rows(), stagePitch}, elementType,
                                     MemRefLayoutAttrInterface(), workgroup);
    Value stage =
        memref::ViewOp::create(
            b, loc, stageType, shared,
            cfg.persistent ? add(pad, cIdx(cfg.stagingOffset())) : pad,
            ValueRange{})
            .getResult();
    // Every warp is done with the Q, K and V tiles, and no copy into them
    // is in flight (persistent: the staging tile is its own, and the
    // barrier before the next item's prologue ordered its last reads).
    if (!cfg.persistent) {
      NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
      gpu::BarrierOp::create(b, loc);
    }
    auto pairType = VectorType::get({2}, elementType);
    for (int64_t t = 0; t < mt; ++t)
      for (int r = 0; r < 2; ++r) {
        Value localRow = add(add(tileRow[t], g), cIdx(8 * r));
        for (int64_t j = 0; j < nO; ++j) {
          Value pairValue = vector::FromElementsOp::create(
              b, loc, pairType,
              ValueRange{outValue(t, r, j, 0), outValue(t, r, j, 1)});
          vector::StoreOp::create(
              b, loc, pairValue, stage,
              ValueRange{localRow, add(colBase, cIdx(8 * j))},
              /*nontemporal=*/false, llvm::Align(4));
        }
      }
    gpu::BarrierOp::create(b, loc);
    Value vectorO = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, entry.flags, cI32(kFlagVectorO)),
        cI32(0));
    Value oVec = unitInner(entry.o);
    auto chunkType = VectorType::get({8}, elementType);
    const int64_t perRow = Dv / 8;
    auto copyChunk = [&](Value row, Value chunk) {
      ifThen(lt(row, rows), [&] {
        Value col = mul(chunk, cIdx(8));
        Value x = vector::LoadOp::create(
            b, loc, chunkType, stage, ValueRange{row, col},
            /*nontemporal=*/false, llvm::Align(16));
        Value qRow = add(q0, row);
        scf::IfOp::create(
            b, loc, vectorO,
            [&](OpBuilder &, Location) {
              vector::StoreOp::create(b, loc, x, oVec,
                                      ValueRange{bi, hi, qRow, col},
                                      /*nontemporal=*/false, llvm::Align(16));
              scf::YieldOp::create(b, loc);
            },
            [&](OpBuilder &, Location) {
              for (int64_t e = 0; e < 8; ++e)
                memref::StoreOp::create(
                    b, loc, vector::ExtractOp::create(b, loc, x, e), entry.o,
                    ValueRange{bi, hi, qRow, add(col, cIdx(e))});
              scf::YieldOp::create(b, loc);
            });
      });
    };
    forThreadChunks(cfg.rows(), perRow, copyChunk);
  }
  if (cfg.persistent) {
    scf::YieldOp::create(b, loc, nextItem);
    b.setInsertionPointAfter(itemLoop);
  }
  gpu::ReturnOp::create(b, loc);
  finishFunction(fn);
  return success();
}

void MmaKernelBuilder::finishFunction(gpu::GPUFuncOp fn) {
  expandAttnOps(fn, kctx);
  // tanh (softcap) as the hardware's tanh.approx.f32: one MUFU operation
  // instead of a polynomial or an exp2 and a division per entry. Its
  // relative error (2^-10.99) is far below the f16 and bf16 inputs'.
  fn.walk([&](math::TanhOp op) {
    if (!op.getType().isF32())
      return;
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(op);
    // llvm.tanh with `afn` is what NVPTX selects to tanh.approx.f32.
    auto call = LLVM::CallIntrinsicOp::create(b, op.getLoc(), b.getF32Type(),
                                              b.getStringAttr("llvm.tanh.f32"),
                                              ValueRange{op.getOperand()});
    call.setFastmathFlagsAttr(
        LLVM::FastmathFlagsAttr::get(b.getContext(), LLVM::FastmathFlags::afn));
    Value r = call.getResult(0);
    op.replaceAllUsesWith(r);
    op.erase();
  });
}

struct ConvertAttnToMMAKernelPass
    : public attnc::impl::ConvertAttnToMMAKernelBase<
          ConvertAttnToMMAKernelPass> {
  using Base::Base;
  explicit ConvertAttnToMMAKernelPass(const GpuKernelPlan &plan)
      : givenPlan(plan) {}

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    GpuKernelOptions options;
    if (givenPlan) {
      if (givenPlan->kind == GpuKernelKind::Simt || variants.size() > 1) {
        module.emitError() << "convert-attn-to-mma-kernel: a kernel plan "
                              "takes one variant and a tensor-core kernel";
        return signalPassFailure();
      }
    } else {
      static constexpr llvm::StringRef kTypes[] = {"f16", "bf16"};
      if (!parseElementType(b, elementType, kTypes)) {
        module.emitError()
            << "convert-attn-to-mma-kernel: element-type must be "
            << elementTypeChoices(kTypes) << ", got '" << elementType << "'";
        return signalPassFailure();
      }
      options.elementType = elementType == "bf16" ? DType::BF16 : DType::F16;
      options.headDim = headDim;
      options.valueDim = valueDim;
      options.tileKV = tileKV;
      options.kernel = wgmma ? GpuKernelKind::Wgmma : GpuKernelKind::MmaSync;
      options.chip = wgmma ? "sm_90" : "sm_80";
      options.persistent = persistent;
      options.markKernel = markKernel;
      // The options' errors, whether or not there is a variant to plan.
      GpuKernelPlan unused;
      std::string error;
      if (!planGpuKernel(GpuVariantTraits(), options, unused, error)) {
        module.emitError() << "convert-attn-to-mma-kernel: " << error;
        return signalPassFailure();
      }
    }
    if (!variants.empty())
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                      b.getUnitAttr());
    for (attn::VariantOp variant : variants) {
      // The plan given, or each variant's own from the options.
      GpuKernelPlan plan;
      std::string error;
      if (givenPlan)
        plan = *givenPlan;
      else if (!planGpuKernel(gpuVariantTraits(variant), options, plan,
                              error)) {
        variant.emitError() << "convert-attn-to-mma-kernel: " << error;
        return signalPassFailure();
      }
      Type elemType =
          plan.elementType == DType::BF16 ? b.getBF16Type() : b.getF16Type();
      MmaKernelBuilder kernel(variant, elemType, plan);
      if (failed(kernel.build()) ||
          (plan.marks.present &&
           failed(MmaKernelBuilder(variant, elemType, plan, kernel.module())
                      .build())))
        return signalPassFailure();
      variant.erase();
    }
  }

  std::optional<GpuKernelPlan> givenPlan;
};

} // namespace

std::unique_ptr<Pass>
attnc::createConvertAttnToMMAKernel(const GpuKernelPlan &plan) {
  return std::make_unique<ConvertAttnToMMAKernelPass>(plan);
}
