//===- AttnToGPUKernel.cpp - Flash-attention GPU kernel (gpu dialect) -----===//
//
// Lowers each attn.variant to a `gpu.func` kernel inside a `gpu.module` of
// the same name. One thread block computes one q-tile (Tq rows of one
// (b, h)); each of its Tq threads owns one query row:
//
//   for each kv-tile in the closed-form range of the q-tile (loop bounds):
//     skip it when the tile abstraction proves the mask all false;
//     stage K and V of the tile in shared memory (all threads, coalesced);
//     s_j = score(q . k_j), masked to -inf only where the tile is mixed
//     m' = max(m, max_j s_j);  p_j = 2^(s_j - m');  l = l 2^(m - m') + sum p_j
//     o = o 2^(m - m') + sum_j p_j v_j
//   o /= l (with the sink folded in), LSE = (m + log2 l) ln 2
//
// Scores are in log2 units (log2(e) folded into the Q scale when there is no
// score modifier) so that softmax needs only exp2, which NVPTX lowers to
// ex2.approx. Blocks are numbered longest-first: block 0 takes the last
// q-tile, which under causal-like masks has the most kv-tiles. Q, K, V may
// be f16 or f32; all arithmetic is f32. Head dimensions are compile-time
// constants.
//
//===----------------------------------------------------------------------===//

#include "attnc/ABI/KernelABI.h"
#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/Conversion/GpuKernelPlanner.h"
#include "attnc/Conversion/KernelIRBuilder.h"
#include "attnc/Conversion/Passes.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

#include <cmath>

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOGPUKERNEL
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

struct SimtTileConfig {
  int64_t tq = 128, tk = 64, headDim = 64, valueDim = 64;
};

class SimtKernelBuilder : public KernelIRBuilder {
public:
  SimtKernelBuilder(attn::VariantOp variant, Type elementType,
                    const SimtTileConfig &cfg)
      : KernelIRBuilder(variant), variant(variant), elementType(elementType),
        cfg(cfg) {}

  void build();

private:
  Value toF32(Value x) {
    return x.getType().isF32()
               ? x
               : arith::ExtFOp::create(b, loc, b.getF32Type(), x).getResult();
  }
  Value load(Value memref, ValueRange idx) {
    return memref::LoadOp::create(b, loc, memref, idx);
  }
  void store(Value v, Value memref, ValueRange idx) {
    memref::StoreOp::create(b, loc, v, memref, idx);
  }
  void forLoop(Value lb, Value ub, Value step,
               llvm::function_ref<void(Value)> body) {
    scf::ForOp::create(b, loc, lb, ub, step, ValueRange{},
                       [&](OpBuilder &, Location, Value iv, ValueRange) {
                         body(iv);
                         scf::YieldOp::create(b, loc);
                       });
  }
  /// tile[j][c] = X[b, hkv, k0 + j, c] for j < cols, else 0; all threads.
  void stageTile(Value x, Value tile, int64_t width, Value k0, Value cols);
  /// The score of key `j` of the tile for this thread's row, in the units
  /// the normalisation works in, or -inf where the entry is masked out.
  Value scoreOf(Value j, Value k0, Value cols, Value needMask);
  void epilogue(Value row);
  std::function<std::optional<IntervalValues>(attn::ParamOp,
                                              ArrayRef<IntervalValues>)>
  tensorRangeFn();

  attn::VariantOp variant;
  Type elementType;
  SimtTileConfig cfg;

  Value bi, hi, hkv, tid;
  Value sizeI64[7];
  Value b32, h32, q32;
  KernelContext kctx;
  // Shared tiles (element type) and per-thread arrays (f32).
  Value kTile, vTile, qRow, oAcc, sRow, ml;
  bool foldLog2e = false;
  attn::NormKind norm = attn::NormKind::softmax;
};

void SimtKernelBuilder::stageTile(Value x, Value tile, int64_t width, Value k0,
                                  Value cols) {
  // Consecutive threads take consecutive columns: coalesced global loads.
  forLoop(tid, cIdx(cfg.tk * width), cIdx(cfg.tq), [&](Value i) {
    Value j = arith::DivUIOp::create(b, loc, i, cIdx(width));
    Value c = arith::RemUIOp::create(b, loc, i, cIdx(width));
    Value inCol = lt(j, cols);
    auto ifOp = scf::IfOp::create(
        b, loc, inCol,
        [&](OpBuilder &, Location) {
          scf::YieldOp::create(b, loc, load(x, {bi, hkv, add(k0, j), c}));
        },
        [&](OpBuilder &, Location) {
          scf::YieldOp::create(
              b, loc,
              arith::ConstantOp::create(b, loc, b.getZeroAttr(elementType))
                  .getResult());
        });
    store(ifOp.getResult(0), tile, {i});
  });
}

Value SimtKernelBuilder::scoreOf(Value j, Value k0, Value cols,
                                 Value needMask) {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  // s = q . k_j (q already scaled)
  Value kBase = mul(j, cIdx(cfg.headDim));
  auto dot = scf::ForOp::create(
      b, loc, cIdx(0), cIdx(cfg.headDim), cIdx(1), ValueRange{cF32(0.0)},
      [&](OpBuilder &, Location, Value d, ValueRange acc) {
        Value kd = toF32(load(kTile, {add(kBase, d)}));
        scf::YieldOp::create(
            b, loc,
            math::FmaOp::create(b, loc, load(qRow, {d}), kd, acc[0])
                .getResult());
      });
  Value s = dot.getResult(0);
  Value kv32 = toI32(add(k0, j));
  Value inCol = lt(j, cols);
  // The mask only in mixed or partial tiles; the score only where the mask
  // keeps the entry (so its checked reads never fire on masked entries).
  auto keepIf = scf::IfOp::create(
      b, loc, arith::AndIOp::create(b, loc, needMask, inCol),
      [&](OpBuilder &, Location) {
        Value keep = maskOp ? inlineItemRegion(b, maskOp.getBody(),
                                               {b32, h32, q32, kv32})
                            : cBool(true);
        scf::YieldOp::create(b, loc, keep);
      },
      [&](OpBuilder &, Location) { scf::YieldOp::create(b, loc, inCol); });
  auto sIf = scf::IfOp::create(
      b, loc, keepIf.getResult(0),
      [&](OpBuilder &, Location) {
        Value x = s;
        if (scoreOp) {
          x = inlineItemRegion(b, scoreOp.getBody(), {b32, h32, q32, kv32, x});
          if (norm == attn::NormKind::softmax)
            x = arith::MulFOp::create(b, loc, x, cF32(kLog2e));
        }
        scf::YieldOp::create(b, loc, x);
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, loc, cF32(-INFINITY));
      });
  return sIf.getResult(0);
}

void SimtKernelBuilder::epilogue(Value row) {
  Value l = load(ml, {cIdx(1)});
  Value m = norm == attn::NormKind::softmax ? load(ml, {cIdx(0)}) : Value();
  RowNormalization rn = emitRowNormalization(
      b, loc, norm, m, l, emitSinkLog2(b, loc, variant, b32, h32));
  Value factor = rn.factor, lseValue = rn.lse, empty = rn.empty;
  forLoop(cIdx(0), cIdx(cfg.valueDim), cIdx(1), [&](Value c) {
    Value out = arith::MulFOp::create(b, loc, load(oAcc, {c}), factor);
    if (!elementType.isF32())
      out = arith::TruncFOp::create(b, loc, elementType, out);
    store(out, entry.o, {bi, hi, row, c});
  });
  if (norm == attn::NormKind::softmax) {
    Value wantLse = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, entry.flags, cI32(kFlagWriteLSE)),
        cI32(0));
    ifThen(wantLse, [&] {
      Value value =
          arith::SelectOp::create(b, loc, empty, cF32(-INFINITY), lseValue);
      store(value, entry.lse, {bi, hi, row});
    });
  }
}

std::function<std::optional<IntervalValues>(attn::ParamOp,
                                            ArrayRef<IntervalValues>)>
SimtKernelBuilder::tensorRangeFn() {
  // min/max over the index box, read directly when the box is within the
  // tensor and holds at most 4096 entries; otherwise unknown. Every thread
  // of the block reads the same entries (broadcast loads).
  return [this](attn::ParamOp p,
                ArrayRef<IntervalValues> idx) -> std::optional<IntervalValues> {
    auto it = kctx.params.find(p.getSymName());
    if (it == kctx.params.end())
      return std::nullopt;
    return emitTensorBoxRange(b, loc, it->second.arg,
                              p.getElementType().isInteger(1), idx);
  };
}

void SimtKernelBuilder::build() {
  loc = variant.getLoc();
  MLIRContext *ctx = variant.getContext();
  norm = variant.getNormKind();

  SmallVector<attn::ParamOp> runtimeParams;
  SmallVector<Type> inputs =
      kernelArgumentTypes(b, variant, elementType, runtimeParams);

  auto module = gpu::GPUModuleOp::create(b, loc, variant.getSymName());
  b.setInsertionPointToStart(module.getBody());
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto sharedTile = [&](int64_t width) {
    return MemRefType::get({cfg.tk * width}, elementType,
                           MemRefLayoutAttrInterface(), workgroup);
  };
  auto fn = gpu::GPUFuncOp::create(
      b, loc, variant.getSymName(), FunctionType::get(ctx, inputs, {}),
      TypeRange{sharedTile(cfg.headDim), sharedTile(cfg.valueDim)});
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  fn.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({static_cast<int32_t>(cfg.tq), 1, 1}));
  Block *body = &fn.getBody().front();
  b.setInsertionPointToStart(body);
  entry = bindKernelEntry(b, loc, variant, body, runtimeParams, kctx);
  for (int i = 0; i < 7; ++i)
    sizeI64[i] = toI64(entry.sizeIdx[i]);
  kTile = fn.getWorkgroupAttributions()[0];
  vTile = fn.getWorkgroupAttributions()[1];

  // Block -> (b, h, q-tile), longest first within groups of heads whose K
  // and V fit in the L2 cache.
  Value block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  BlockTile tile = emitLongestFirstBlock(
      b, loc, block, entry.sizeIdx, cfg.tq,
      (cfg.headDim + cfg.valueDim) * (elementType.getIntOrFloatBitWidth() / 8));
  bi = tile.bi;
  hi = tile.hi;
  hkv = tile.hkv;
  b32 = tile.b32;
  h32 = tile.h32;
  Value q0 = tile.q0, rows = tile.rows;
  Value row = add(q0, tid);
  Value active = lt(tid, rows);
  q32 = toI32(row);

  auto privateArray = [&](int64_t size) {
    return memref::AllocaOp::create(b, loc,
                                    MemRefType::get({size}, b.getF32Type()))
        .getResult();
  };
  qRow = privateArray(cfg.headDim);
  oAcc = privateArray(cfg.valueDim);
  sRow = privateArray(cfg.tk);
  ml = privateArray(2); // m (running max, log2 units), l (denominator)

  // The scale, with log2(e) folded in when no score modifier needs the
  // true scaled dot product.
  Value qscale = emitQScale(b, loc, variant, entry.sizeI32[5], foldLog2e);

  // q = Q[b, h, row, :] * qscale; o = 0; m = -inf; l = 0.
  Value safeRow = arith::SelectOp::create(b, loc, active, row, cIdx(0));
  forLoop(cIdx(0), cIdx(cfg.headDim), cIdx(1), [&](Value d) {
    Value x = toF32(load(entry.q, {bi, hi, safeRow, d}));
    store(arith::MulFOp::create(b, loc, x, qscale), qRow, {d});
  });
  forLoop(cIdx(0), cIdx(cfg.valueDim), cIdx(1),
          [&](Value c) { store(cF32(0.0), oAcc, {c}); });
  store(cF32(-INFINITY), ml, {cIdx(0)});
  store(cF32(0.0), ml, {cIdx(1)});

  // The tile abstraction, with params as the kernel sees them.
  attn::MaskOp maskOp = variant.getMaskOp();
  TileEnv env;
  initTileEnv(env, b, loc, bi, hi, sizeI64, kctx);
  env.tensorRange = tensorRangeFn();

  // Closed-form kv range of this q-tile: loop bounds over kv-tiles. Every
  // value here is uniform over the block, so barriers inside are safe.
  KvTileRange range = emitKvTileRange(b, loc, maskOp, env, q0, rows, cfg.tk);
  Value ktBegin = range.begin, ktEnd = range.end;
  Value leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, cIdx(0));
  ifThen(leader, [&] {
    countTiles(
        kStatusTilesInRange,
        arith::TruncIOp::create(b, loc, b.getI32Type(),
                                arith::SubIOp::create(b, loc, ktEnd, ktBegin)));
  });

  forLoop(toIdx(ktBegin), toIdx(ktEnd), cIdx(1), [&](Value ktIdx) {
    Value k0 = mul(ktIdx, cIdx(cfg.tk));
    Value cols = arith::MinSIOp::create(
        b, loc, cIdx(cfg.tk),
        arith::SubIOp::create(b, loc, entry.sizeIdx[4], k0));
    TileEnv tileEnv = env;
    tileEnv.kv = {toI64(k0),
                  arith::SubIOp::create(b, loc, toI64(add(k0, cols)), cI64(1))};
    TileFacts facts = emitTileFacts(b, loc, maskOp, tileEnv);
    // All-false tiles are never loaded; all-true ones run without the mask.
    ifThen(facts.mayBeTrue, [&] {
      ifThen(leader, [&] { countTiles(kStatusTilesComputed, cI32(1)); });
      gpu::BarrierOp::create(b, loc); // the previous tile is consumed
      stageTile(entry.k, kTile, cfg.headDim, k0, cols);
      stageTile(entry.v, vTile, cfg.valueDim, k0, cols);
      gpu::BarrierOp::create(b, loc);
      Value partial = lt(cols, cIdx(cfg.tk));
      Value needMask = arith::OrIOp::create(b, loc, facts.mayBeFalse, partial);
      ifThen(active, [&] {
        // Pass 1: the scores of the tile and their maximum.
        auto maxLoop = scf::ForOp::create(
            b, loc, cIdx(0), cIdx(cfg.tk), cIdx(1), ValueRange{cF32(-INFINITY)},
            [&](OpBuilder &, Location, Value j, ValueRange mx) {
              Value s = scoreOf(j, k0, cols, needMask);
              store(s, sRow, {j});
              scf::YieldOp::create(
                  b, loc,
                  arith::MaximumFOp::create(b, loc, mx[0], s).getResult());
            });
        Value l = load(ml, {cIdx(1)});
        Value mSafe, alpha;
        if (norm == attn::NormKind::softmax) {
          // m' = max(m, max_j s_j); alpha = 2^(m - m'). While every entry so
          // far is masked, m' = -inf: use 0 so that p stays 0, never NaN.
          Value m = load(ml, {cIdx(0)});
          Value mNew =
              arith::MaximumFOp::create(b, loc, m, maxLoop.getResult(0));
          Value allMasked = arith::CmpFOp::create(
              b, loc, arith::CmpFPredicate::OEQ, mNew, cF32(-INFINITY));
          mSafe = arith::SelectOp::create(b, loc, allMasked, cF32(0.0), mNew);
          alpha = exp2(arith::SubFOp::create(b, loc, m, mSafe));
          store(mNew, ml, {cIdx(0)});
          Value rescale = arith::CmpFOp::create(
              b, loc, arith::CmpFPredicate::UNE, alpha, cF32(1.0));
          ifThen(rescale, [&] {
            forLoop(cIdx(0), cIdx(cfg.valueDim), cIdx(1), [&](Value c) {
              store(arith::MulFOp::create(b, loc, load(oAcc, {c}), alpha), oAcc,
                    {c});
            });
          });
          l = arith::MulFOp::create(b, loc, l, alpha);
        }
        // Pass 2: the weights p_j; o += p_j v_j; l += p_j.
        auto sumLoop = scf::ForOp::create(
            b, loc, cIdx(0), cIdx(cfg.tk), cIdx(1), ValueRange{l},
            [&](OpBuilder &, Location, Value j, ValueRange sum) {
              Value s = load(sRow, {j}), p;
              Value masked = arith::CmpFOp::create(
                  b, loc, arith::CmpFPredicate::OEQ, s, cF32(-INFINITY));
              if (norm == attn::NormKind::softmax) {
                p = exp2(arith::SubFOp::create(b, loc, s, mSafe));
              } else if (norm == attn::NormKind::sigmoid) {
                // 1 / (1 + 2^(-s log2 e))
                p = arith::DivFOp::create(
                    b, loc, cF32(1.0),
                    arith::AddFOp::create(
                        b, loc, cF32(1.0),
                        exp2(arith::MulFOp::create(b, loc, s, cF32(-kLog2e)))));
              } else if (norm == attn::NormKind::relu) {
                p = arith::MaximumFOp::create(b, loc, s, cF32(0.0));
              } else {
                p = s;
              }
              p = arith::SelectOp::create(b, loc, masked, cF32(0.0), p);
              // Masked keys are skipped, not weighted by 0: a NaN or an
              // infinity in V at a masked key never reaches the row.
              Value kept = arith::XOrIOp::create(
                  b, loc, masked,
                  arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
              ifThen(kept, [&] {
                Value vBase = mul(j, cIdx(cfg.valueDim));
                forLoop(cIdx(0), cIdx(cfg.valueDim), cIdx(1), [&](Value c) {
                  Value vc = toF32(load(vTile, {add(vBase, c)}));
                  store(math::FmaOp::create(b, loc, p, vc, load(oAcc, {c})),
                        oAcc, {c});
                });
              });
              scf::YieldOp::create(
                  b, loc, arith::AddFOp::create(b, loc, sum[0], p).getResult());
            });
        store(sumLoop.getResult(0), ml, {cIdx(1)});
      });
    });
  });
  ifThen(active, [&] { epilogue(row); });
  gpu::ReturnOp::create(b, loc);
  expandAttnOps(fn, kctx);
}

struct ConvertAttnToGPUKernelPass
    : public attnc::impl::ConvertAttnToGPUKernelBase<
          ConvertAttnToGPUKernelPass> {
  using Base::Base;
  explicit ConvertAttnToGPUKernelPass(const GpuKernelPlan &plan)
      : givenPlan(plan) {}

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    GpuKernelPlan plan;
    if (givenPlan) {
      if (givenPlan->kind != GpuKernelKind::Simt || variants.size() > 1) {
        module.emitError() << "convert-attn-to-gpu-kernel: a kernel plan "
                              "takes one variant and the SIMT kernel";
        return signalPassFailure();
      }
      plan = *givenPlan;
    } else {
      static constexpr llvm::StringRef kTypes[] = {"f32", "f16", "bf16"};
      if (!parseElementType(b, elementType, kTypes)) {
        module.emitError()
            << "convert-attn-to-gpu-kernel: element-type must be "
            << elementTypeChoices(kTypes) << ", got '" << elementType << "'";
        return signalPassFailure();
      }
      // The SIMT kernel's plan depends on the options alone.
      GpuKernelOptions options;
      options.elementType = elementType == "f32"    ? DType::F32
                            : elementType == "bf16" ? DType::BF16
                                                    : DType::F16;
      options.headDim = headDim;
      options.valueDim = valueDim;
      options.tileQ = tileQ;
      options.tileKV = tileKV;
      options.kernel = GpuKernelKind::Simt;
      std::string error;
      if (!planGpuKernel(GpuVariantTraits(), options, plan, error)) {
        module.emitError() << "convert-attn-to-gpu-kernel: " << error;
        return signalPassFailure();
      }
    }
    Type elemType = plan.elementType == DType::F32    ? b.getF32Type()
                    : plan.elementType == DType::BF16 ? b.getBF16Type()
                                                      : b.getF16Type();
    SimtTileConfig cfg;
    cfg.tq = plan.rowsPerBlock;
    cfg.tk = plan.tileKV;
    cfg.headDim = plan.headDim;
    cfg.valueDim = plan.valueDim;
    if (!variants.empty())
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                      b.getUnitAttr());
    for (attn::VariantOp variant : variants) {
      SimtKernelBuilder(variant, elemType, cfg).build();
      variant.erase();
    }
  }

  std::optional<GpuKernelPlan> givenPlan;
};

} // namespace

std::unique_ptr<Pass>
attnc::createConvertAttnToGPUKernel(const GpuKernelPlan &plan) {
  return std::make_unique<ConvertAttnToGPUKernelPass>(plan);
}
