//===- MmaKernelBuilder.cpp - What the tensor-core kernels share ----------===//
//
// The start of either kernel (its function and arguments, the views of its
// dynamic shared memory as MMAKernelConfig.h lays it out, the thread's
// indices, the scale and the wgmma descriptors), the current work item,
// the IR helpers (mma.sync and ldmatrix, wgmma and inline PTX, cp.async
// tile copies) and the kernel's last rewrites.
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

#include "attnc/Conversion/GpuKernelPlanner.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

LogicalResult MmaKernelBuilder::beginKernel() {
  loc = variant.getLoc();
  ctx = variant.getContext();
  norm = variant.getNormKind();
  const int64_t D = cfg.headDim, Dv = cfg.valueDim, tk = cfg.tk;

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
  fn = gpu::GPUFuncOp::create(b, loc, fnName,
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

  placeTiles();
  placeThreads();
  if (failed(placeSummaries(summaryParams, layout)))
    return failure();
  leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, cIdx(0));
  // wgmma descriptors: this warpgroup's 64 rows of Q, K (both K-major)
  // and V (N-major: its 64-column atoms lie tk * 128 bytes apart); 8-row
  // groups 1024 bytes apart in all three.
  if (cfg.wgmma) {
    Value wg = toI64(arith::DivUIOp::create(b, loc, warp, cIdx(4)));
    qDesc = descriptor(
        arith::AddIOp::create(b, loc, tileAddr(cfg.qOffset()),
                              arith::MulIOp::create(b, loc, wg, cI64(8192))),
        16, 1024);
    kDesc = descriptor(tileAddr(cfg.kOffset()), 16, 1024);
    vDesc = descriptor(tileAddr(cfg.vOffset()), tk * 128, 1024);
  }
  kRows = (D / 64) * tk;
  vRows = (Dv / 64) * tk;
  return success();
}

void MmaKernelBuilder::placeTiles() {
  const int64_t D = cfg.headDim, Dv = cfg.valueDim, tk = cfg.tk;
  // The Q, K and V tiles: views of the dynamic shared memory.
  workgroup = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  shared = gpu::DynamicSharedMemoryOp::create(
      b, loc,
      MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                      MemRefLayoutAttrInterface(), workgroup));
  // wgmma's swizzled tiles start at the first 1024-byte boundary (the
  // config reserves the slack); their shared addresses feed descriptors.
  pad = cIdx(0);
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
  qTile = sharedTile(cfg.rows(), D, cfg.qOffset());
  kTile = sharedTile(tk, D, cfg.kOffset(), cfg.kvStages());
  vTile = sharedTile(tk, Dv, cfg.vOffset(), cfg.kvStages());

  q = unitInner(entry.q);
  k = unitInner(entry.k);
  v = unitInner(entry.v);
}

void MmaKernelBuilder::placeThreads() {
  const int64_t D = cfg.headDim;
  // Block -> (b, h, q-tile), longest first within groups of heads whose K
  // and V (2-byte elements) fit in the L2 cache.
  block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  warp = arith::DivUIOp::create(b, loc, tid, cIdx(32));
  lane = arith::RemUIOp::create(b, loc, tid, cIdx(32));
  g = arith::DivUIOp::create(b, loc, lane, cIdx(4));
  tig = arith::RemUIOp::create(b, loc, lane, cIdx(4));
  mi = arith::DivUIOp::create(b, loc, lane, cIdx(8));
  r8 = arith::RemUIOp::create(b, loc, lane, cIdx(8));
  miLow = arith::RemUIOp::create(b, loc, mi, cIdx(2));
  miHigh = arith::DivUIOp::create(b, loc, mi, cIdx(2));
  // The scale, with log2(e) folded in when no score modifier needs the true
  // scaled dot product.
  bool foldLog2e = false;
  qscale = emitQScale(b, loc, variant, cI32(D), foldLog2e);
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
  rawScores = constScale && *constScale > 0;
}

LogicalResult
MmaKernelBuilder::placeSummaries(ArrayRef<attn::ParamOp> summaryParams,
                                 const MmaSharedLayout &layout) {
  const int64_t tk = cfg.tk;
  const bool tablesInTiles = layout.tablesInTiles,
             useMarks = plan.marks.present;
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
  return success();
}

Value MmaKernelBuilder::sharedTile(int64_t rows, int64_t width, int64_t offset,
                                   int64_t stages) {
  SmallVector<int64_t> shape = {rows, MmaKernelConfig::pitch(width)};
  if (cfg.wgmma)
    shape = {stages * rows * (width / 64), 64};
  auto type = MemRefType::get(shape, elementType, MemRefLayoutAttrInterface(),
                              workgroup);
  Value at = cfg.wgmma ? add(pad, cIdx(offset)) : cIdx(offset);
  return memref::ViewOp::create(b, loc, type, shared, at, ValueRange{})
      .getResult();
}

Value MmaKernelBuilder::tileAddr(int64_t offset) {
  return arith::AddIOp::create(b, loc, sharedAddr, cI64(offset)).getResult();
}

Value MmaKernelBuilder::unitInner(Value x) {
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
}

void MmaKernelBuilder::setItem(const Item &it) {
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
}

SmallVector<Value>
MmaKernelBuilder::ifElse(Value cond, unsigned n,
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

Value MmaKernelBuilder::shuffleXor(Value x, int64_t offset) {
  return gpu::ShuffleOp::create(b, loc, x, cI32(offset), cI32(32),
                                gpu::ShuffleMode::XOR)
      .getShuffleResult();
}

Value MmaKernelBuilder::quadReduce(Value x, bool isMax) {
  for (int64_t offset : {1, 2}) {
    Value y = shuffleXor(x, offset);
    x = isMax ? fmax(x, y) : fadd(x, y);
  }
  return x;
}

Value MmaKernelBuilder::operand(Value pair) {
  if (!isBF16())
    return pair;
  return LLVM::BitcastOp::create(b, loc, b.getI32Type(), pair);
}

Value MmaKernelBuilder::pair(Value lo, Value hi) {
  auto vt = VectorType::get({2}, elementType);
  Value l = arith::TruncFOp::create(b, loc, elementType, lo);
  Value h = arith::TruncFOp::create(b, loc, elementType, hi);
  return vector::FromElementsOp::create(b, loc, vt, ValueRange{l, h});
}

SmallVector<Value> MmaKernelBuilder::ldmatrix(Value tile, Value row, Value col,
                                              int tiles, bool transpose) {
  auto vt = VectorType::get({tiles, 2}, elementType);
  Value m = nvgpu::LdMatrixOp::create(b, loc, vt, tile, ValueRange{row, col},
                                      transpose, tiles);
  SmallVector<Value> regs;
  for (int i = 0; i < tiles; ++i)
    regs.push_back(operand(vector::ExtractOp::create(b, loc, m, i)));
  return regs;
}

Acc MmaKernelBuilder::mma(ArrayRef<Value> a, ArrayRef<Value> bOps,
                          const Acc &c) {
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

SmallVector<Value> MmaKernelBuilder::inlinePtx(TypeRange results,
                                               ValueRange operands,
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

SmallVector<Value> MmaKernelBuilder::pinRegisters(ArrayRef<Value> values) {
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

Value MmaKernelBuilder::pack32(Value lo, Value hi) {
  return LLVM::BitcastOp::create(b, loc, b.getI32Type(), pair(lo, hi));
}

Value MmaKernelBuilder::descriptor(Value addr, int64_t lbo, int64_t sbo) {
  Value start = arith::AndIOp::create(
      b, loc, arith::ShRUIOp::create(b, loc, addr, cI64(4)), cI64(0x3FFF));
  int64_t fixed = ((lbo >> 4) & 0x3FFF) << 16 | (((sbo >> 4) & 0x3FFF) << 32) |
                  (int64_t(1) << 62);
  return arith::OrIOp::create(b, loc, start, cI64(fixed));
}

SmallVector<Value> MmaKernelBuilder::wgmma(ArrayRef<Value> acc, int64_t n,
                                           Value aDesc, ArrayRef<Value> aRegs,
                                           Value bDesc, bool transB,
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
  return inlinePtx(SmallVector<Type>(nr, b.getF32Type()), operands, text, cons);
}

scf::WhileOp MmaKernelBuilder::whileLiveTiles(ValueRange init) {
  SmallVector<Type> types(init.getTypes());
  auto loop = scf::WhileOp::create(b, loc, types, init);
  SmallVector<Location> locs(types.size(), loc);
  Block *before = b.createBlock(&loop.getBefore(), {}, types, locs);
  scf::ConditionOp::create(b, loc, lt(before->getArgument(0), ktEnd),
                           before->getArguments());
  b.createBlock(&loop.getAfter(), {}, types, locs);
  return loop;
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

void MmaKernelBuilder::finishFunction() {
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
