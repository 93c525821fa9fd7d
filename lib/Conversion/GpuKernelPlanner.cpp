//===- GpuKernelPlanner.cpp - Deciding a variant's GPU kernel -------------===//
//
// The kernel kind from the options and the chip; the tensor-core kernels'
// tile shape from the head dims; persistence and the mark kernel from the
// variant's data-dependent mask; the shared memory from the layout that the
// builder uses (MMAKernelConfig.h). Every decision keeps its reason.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/GpuKernelPlanner.h"

#include "attnc/ABI/MMAKernelConfig.h"

#include "dialects/attn/AttnDialect.h"

using namespace attnc;

std::string GpuKernelOptions::describe() const {
  return std::string("dtype=") + gpuElementTypeName(elementType) +
         " lowering=gpu kernel=" +
         (kernel ? gpuKernelKindName(*kernel) : "auto") +
         " d=" + std::to_string(headDim) + " dv=" + std::to_string(valueDim) +
         " tq=" + std::to_string(tileQ) + " tk=" + std::to_string(tileKV) +
         " chip=" + chip + (persistent ? " persistent=1" : "") +
         (markKernel ? "" : " marks=0");
}

llvm::SmallVector<mlir::attn::ParamOp>
attnc::maskSummaryParams(mlir::attn::VariantOp variant) {
  llvm::SmallVector<mlir::attn::ParamOp> params;
  mlir::attn::MaskOp maskOp = variant.getMaskOp();
  if (!maskOp)
    return params;
  maskOp.walk([&](mlir::attn::ParamLoadOp load) {
    auto param = llvm::dyn_cast_or_null<mlir::attn::ParamOp>(
        mlir::SymbolTable::lookupNearestSymbolFrom(
            load, load.getParamAttr().getAttr()));
    if (!param || param.getIsConst() || param.getRank() != 1 ||
        !param.getElementType().isInteger() ||
        llvm::is_contained(params, param))
      return;
    params.push_back(param);
  });
  return params;
}

GpuVariantTraits attnc::gpuVariantTraits(mlir::attn::VariantOp variant) {
  GpuVariantTraits t;
  t.summaryTables = static_cast<int64_t>(maskSummaryParams(variant).size());
  if (mlir::attn::MaskOp maskOp = variant.getMaskOp()) {
    mlir::Region &body = maskOp.getBody();
    t.maskReadsBatch = !body.getArgument(0).use_empty();
    t.maskReadsHead = !body.getArgument(1).use_empty();
  }
  return t;
}

bool attnc::isSupportedGpuChip(const std::string &chip) {
  if (chip.compare(0, 3, "sm_") != 0)
    return false;
  size_t end = chip.size();
  if (end > 3 && chip[end - 1] == 'a')
    --end;
  if (end == 3 || end - 3 > 4)
    return false;
  int sm = 0;
  for (size_t i = 3; i < end; ++i) {
    if (chip[i] < '0' || chip[i] > '9')
      return false;
    sm = sm * 10 + (chip[i] - '0');
  }
  return sm >= 80;
}

bool attnc::isHopperChip(const std::string &chip) {
  return chip == "sm_90" || chip == "sm_90a";
}

std::string attnc::ptxChipFor(GpuKernelKind kind, const std::string &chip) {
  return kind == GpuKernelKind::Wgmma && chip == "sm_90" ? "sm_90a" : chip;
}

namespace {

bool isTensorCoreType(DType t) { return t == DType::F16 || t == DType::BF16; }

/// Head dims the tensor-core kernels take: multiples of 16 up to 256.
bool mmaTakesDim(int64_t d) { return d > 0 && d % 16 == 0 && d <= 256; }
/// Head dims the wgmma kernel takes (the 128-byte swizzle atom is 64
/// elements wide): multiples of 64 up to 256.
bool wgmmaTakesDim(int64_t d) { return d > 0 && d % 64 == 0 && d <= 256; }

/// The tensor-core kernels' tile shape for head dims D and Dv: 4 warps; 32
/// rows per warp where the accumulators fit in registers (Dv <= 128), else
/// 16; `tileKV` keys per tile, or when 0, 64 (D + Dv <= 256) or 32; three
/// blocks per SM when D and Dv are at most 64. With wgmma two warpgroups of
/// 64 rows. False with `error` when the tile is not a multiple of 16 or the
/// tiles need more than 200 KiB of shared memory.
bool chooseMmaShape(int64_t headDim, int64_t valueDim, int64_t tileKV,
                    bool wgmma, MmaKernelConfig &c, std::string &error) {
  c.headDim = headDim;
  c.valueDim = valueDim;
  c.wgmma = wgmma;
  if (wgmma) {
    // Two warpgroups, each 64 rows (16 per warp); 128-key tiles where the
    // S and O accumulators (tk / 2 + Dv / 2 registers) leave room, else 64.
    // Small heads take 64-key tiles: at 128 registers two blocks fit on an
    // SM (on the H100, D=64 causal 295 TF/s against 248 with 128 keys).
    c.warps = 8;
    c.mTiles = 1;
    const bool small = headDim <= 64 && valueDim <= 64;
    c.tk = tileKV ? tileKV
                  : (!small && headDim <= 128 && valueDim <= 128 ? 128 : 64);
    c.minBlocksPerSM = small && c.tk <= 64 ? 2 : 0;
    if (c.tk <= 0 || c.tk % 16 || c.tk > 256) {
      error = "the wgmma kernel's tile-kv must be a multiple of 16 up to 256";
      return false;
    }
  } else {
    c.warps = 4;
    c.mTiles = valueDim <= 128 ? 2 : 1;
    c.tk = tileKV ? tileKV : (headDim + valueDim <= 256 ? 64 : 32);
    // Small heads with 64-key tiles leave room for three blocks per SM at
    // 168 registers; 128-key tiles need their S accumulators.
    c.minBlocksPerSM = headDim <= 64 && valueDim <= 64 && c.tk <= 64 ? 3 : 0;
    if (c.tk <= 0 || c.tk % 16) {
      error = "the tensor-core kernel's tile-kv must be a positive multiple "
              "of 16";
      return false;
    }
  }
  if (c.sharedBytes() > 200 * 1024) {
    error = "the Q, K and V tiles need " + std::to_string(c.sharedBytes()) +
            " bytes of shared memory, more than 200 KiB";
    return false;
  }
  return true;
}

/// Persistence, the mark kernel and the shared memory of a tensor-core
/// kernel of shape `c` for a variant with `traits`.
void planMmaExtras(const GpuVariantTraits &traits,
                   const GpuKernelOptions &options, MmaKernelConfig &c,
                   GpuKernelPlan &plan) {
  const int64_t tables = traits.summaryTables;
  // Persistent only for data-dependent masks (few kv-tiles per block is
  // what they are for, and whose cost the kernel cannot know) and where
  // the separate staging tile fits.
  if (!options.persistent) {
    plan.whyPersistent = "not asked (off by default: measured slower on the "
                         "H100)";
  } else if (!c.wgmma) {
    plan.whyPersistent = "asked, but only the wgmma kernel can be persistent";
  } else if (!tables) {
    plan.whyPersistent = "asked, but the mask is not data-dependent (its "
                         "kv-tiles are solved in closed form, and the block "
                         "scheduler balances rows of different lengths)";
  } else {
    MmaKernelConfig p = c;
    p.persistent = true;
    int64_t bytes = mmaSharedLayout(p, tables, false).totalBytes;
    c.persistent = bytes <= kMaxDynamicSharedBytes;
    plan.whyPersistent =
        c.persistent ? "asked, for a data-dependent mask"
                     : "asked, but the tiles, the O staging tile and the mask "
                       "summaries would need " +
                           std::to_string(bytes) +
                           " bytes of shared memory, more than 227 KiB";
  }
  // A mark kernel for data-dependent masks (not with the persistent
  // kernel, whose next item's marks overlap this one's epilogue). Its items
  // differ in b and h only where the mask reads them; a mask that reads
  // both would give it an item per block of the attention kernel, the
  // same work plus a launch, so the blocks then mark their own tiles.
  GpuMarkKernelPlan &marks = plan.marks;
  if (!tables) {
    plan.whyMarks = "the mask is not data-dependent";
  } else if (c.persistent) {
    plan.whyMarks = "the persistent kernel marks its next item's kv-tiles "
                    "itself, during this item's epilogue";
  } else if (!options.markKernel) {
    plan.whyMarks = "turned off: every block marks its own live kv-tiles";
  } else if (traits.maskReadsBatch && traits.maskReadsHead) {
    plan.whyMarks = "the mask reads both b and h: its items would be the "
                    "attention kernel's blocks, the same work plus a launch";
  } else {
    marks.present = true;
    marks.perBatch = traits.maskReadsBatch;
    marks.perHead = traits.maskReadsHead;
    marks.words = kMarkWords;
    plan.whyMarks = std::string("a data-dependent mask: its live kv-tiles are "
                                "worked out once per q-tile") +
                    (marks.perBatch  ? " and batch"
                     : marks.perHead ? " and head"
                                     : ", for all heads and batches") +
                    ", not by every block";
  }
  c.markKernel = marks.present;
  plan.summaryTables = tables;
  plan.sharedBytes = mmaSharedLayout(c, tables, false).totalBytes;
  if (marks.present)
    marks.sharedBytes = mmaSharedLayout(c, tables, true).totalBytes;
}

} // namespace

bool attnc::chooseGpuKernelKind(const GpuKernelOptions &options,
                                GpuKernelKind &kind, std::string &why,
                                std::string &error) {
  const bool mmaOk = isTensorCoreType(options.elementType) &&
                     mmaTakesDim(options.headDim) &&
                     mmaTakesDim(options.valueDim);
  const bool hopper = isHopperChip(options.chip);
  if (options.kernel) {
    kind = *options.kernel;
    why = std::string("asked for (") + gpuKernelKindName(kind) + ")";
  } else if (!mmaOk) {
    // auto: wgmma on Hopper for head dims 64, 128, 192 and 256 (1.2 to
    // 1.8x mma.sync on the H100, docs/performance.md), mma.sync on other
    // tensor-core chips and dims, simt otherwise.
    kind = GpuKernelKind::Simt;
    why = isTensorCoreType(options.elementType)
              ? "auto: the tensor cores take head dims that are multiples "
                "of 16 up to 256"
              : "auto: the tensor cores take f16 and bf16, not f32";
  } else if (hopper && wgmmaTakesDim(options.headDim) &&
             wgmmaTakesDim(options.valueDim)) {
    kind = GpuKernelKind::Wgmma;
    why = "auto: Hopper (" + options.chip +
          ") and head dims that are multiples of 64 up to 256";
  } else {
    kind = GpuKernelKind::MmaSync;
    why = hopper
              ? "auto: head dims that are multiples of 16 but not of 64"
              : "auto: f16 or bf16 on " + options.chip + ", which has no wgmma";
  }
  if (kind == GpuKernelKind::Simt)
    return true;
  if (!mmaOk) {
    error = "the tensor-core GPU kernel needs f16 or bf16 and head dims "
            "that are multiples of 16 up to 256 (got " +
            std::string(gpuElementTypeName(options.elementType)) +
            ", D = " + std::to_string(options.headDim) +
            ", Dv = " + std::to_string(options.valueDim) + ")";
    return false;
  }
  if (kind == GpuKernelKind::Wgmma && !hopper) {
    error = "the wgmma GPU kernel needs sm_90 (Hopper), not " + options.chip;
    return false;
  }
  if (kind == GpuKernelKind::Wgmma &&
      (!wgmmaTakesDim(options.headDim) || !wgmmaTakesDim(options.valueDim))) {
    error = "the wgmma kernel needs head dims that are multiples of 64 up "
            "to 256";
    return false;
  }
  return true;
}

bool attnc::planGpuKernel(const GpuVariantTraits &traits,
                          const GpuKernelOptions &options, GpuKernelPlan &plan,
                          std::string &error) {
  GpuKernelPlan p;
  if (!chooseGpuKernelKind(options, p.kind, p.whyKind, error))
    return false;
  p.elementType = options.elementType;
  p.headDim = options.headDim;
  p.valueDim = options.valueDim;
  p.chip = ptxChipFor(p.kind, options.chip);
  if (p.kind == GpuKernelKind::Simt) {
    // One thread per row; K and V tiles in static shared memory: the
    // largest power of two up to 64 keys whose tiles fit in 32 KiB.
    p.rowsPerBlock = p.threadsPerBlock = options.tileQ;
    int64_t bytes = options.elementType == DType::F32 ? 4 : 2;
    p.tileKV = options.tileKV;
    if (p.tileKV == 0) {
      p.tileKV = 64;
      while (p.tileKV > 1 &&
             p.tileKV * (options.headDim + options.valueDim) * bytes >
                 32 * 1024)
        p.tileKV /= 2;
    }
    if (options.tileQ <= 0 || options.tileQ > 1024 || p.tileKV <= 0 ||
        options.headDim <= 0 || options.valueDim <= 0) {
      error = "the SIMT GPU kernel needs tile-q in [1, 1024] (one thread per "
              "row), and a positive tile-kv and head dims";
      return false;
    }
    p.whyPersistent = "only the wgmma kernel can be persistent";
    p.whyMarks = "the SIMT kernel has none";
    plan = std::move(p);
    return true;
  }
  MmaKernelConfig c;
  if (!chooseMmaShape(options.headDim, options.valueDim, options.tileKV,
                      p.kind == GpuKernelKind::Wgmma, c, error))
    return false;
  planMmaExtras(traits, options, c, p);
  p.rowsPerBlock = c.rows();
  p.threadsPerBlock = c.threads();
  p.warps = c.warps;
  p.mTiles = c.mTiles;
  p.tileKV = c.tk;
  p.kvStages = c.kvStages();
  p.minBlocksPerSM = c.minBlocksPerSM;
  p.persistent = c.persistent;
  // Every wgmma kernel waits for the kernel before it (griddepcontrol), so
  // that the launcher may start it as a programmatic dependent.
  p.dependentLaunch = p.kind == GpuKernelKind::Wgmma;
  plan = std::move(p);
  return true;
}
