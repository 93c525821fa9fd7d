//===- WgmmaLoop.cpp - The wgmma kernel's loop over kv-tiles --------------===//
//
// Hopper's warpgroup MMA (sm_90a): two warpgroups of 64 query rows; Q, K
// and V in 128-byte-swizzled shared tiles that wgmma.mma_async reads
// through matrix descriptors, K and V double-buffered. A software
// pipeline: the softmax of tile i overlaps the P V of tile i - 1, and the
// copies of the next K and this V start after the iteration's one barrier.
// Inline PTX issues the wgmma (and pins the registers it reads or writes
// asynchronously in place).
//
//===----------------------------------------------------------------------===//

#include "MmaKernelBuilder.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::mma;

SmallVector<Value> AttentionKernelBuilder::wgmmaLoop() {
  // Hopper: a software pipeline over the live kv-tiles t_0, t_1, ..., K
  // and V double-buffered (buffer i % 2). Iteration i issues S_i =
  // Q K_{t_i}^T and O += P_{i-1} V_{t_{i-1}} as two wgmma groups, waits
  // for S_i only and computes P_i while the tensor cores run the second
  // group, then waits for it and rescales O. The copies of K_{t_{i+1}}
  // and V_{t_i} start right after the iteration's one barrier: their
  // buffers were last read by groups that iteration i - 1 waited for.
  const int64_t nP = cfg.tk / 4; // P registers (element pairs) per thread
  Type f32 = b.getF32Type();

  // Prologue: S_0 and P_0 (when any tile is live).
  Value any = lt(kt0, ktEnd);
  scf::IfOp pro = wgmmaPrologue(any);

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
    wgmmaIteration(&loop.getAfter().front());
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
    SmallVector<Value> vOps = vOperands(
        bufDesc(vDesc, vRows, arith::SubIOp::create(b, loc, cIdx(1), parExit)));
    SmallVector<Value> consts = {cI32(1)};
    pinAll({&o2, &p2, &vOps, &consts});
    ptx("wgmma.fence.sync.aligned;");
    o2 = issuePV(o2, p2, vOps, consts[0]);
    waitGroups(0);
    scf::YieldOp::create(b, loc, pinRegisters(o2));
    b.setInsertionPointToStart(&last.getElseRegion().front());
    scf::YieldOp::create(b, loc, oRegs);
  }
  SmallVector<Value> fin = {loop.getResult(0)};
  for (int i = 3; i < 7; ++i)
    fin.push_back(loop.getResult(i));
  fin.append(last.getResults().begin(), last.getResults().end());
  return fin;
}

scf::IfOp AttentionKernelBuilder::wgmmaPrologue(Value any) {
  const int64_t nP = cfg.tk / 4; // P registers (element pairs) per thread
  Type f32 = b.getF32Type(), i32 = b.getI32Type(), idx = b.getIndexType();
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
  return pro;
}

void AttentionKernelBuilder::wgmmaIteration(Block *after) {
  const int64_t nP = cfg.tk / 4; // P registers (element pairs) per thread
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
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

Value AttentionKernelBuilder::bufDesc(Value desc, int64_t rowsPerBuf,
                                      Value par) {
  return arith::AddIOp::create(
             b, loc, desc,
             arith::MulIOp::create(b, loc, toI64(par),
                                   cI64(rowsPerBuf * 128 >> 4)))
      .getResult();
}

void AttentionKernelBuilder::loadK(Value kt, Value par, bool commit) {
  const int64_t D = cfg.headDim, tk = cfg.tk;
  loadTile(k, hkv, kTile, D, tk, mul(kt, cIdx(tk)), entry.sizeIdx[4],
           mul(par, cIdx(kRows)), commit);
}

void AttentionKernelBuilder::loadV(Value kt, Value par) {
  const int64_t Dv = cfg.valueDim, tk = cfg.tk;
  loadTile(v, hkv, vTile, Dv, tk, mul(kt, cIdx(tk)), entry.sizeIdx[4],
           mul(par, cIdx(vRows)));
}

void AttentionKernelBuilder::syncTiles(int pending) {
  NVVM::CpAsyncWaitGroupOp::create(b, loc, pending);
  // The copies, visible to wgmma's (async) proxy.
  ptx("fence.proxy.async.shared::cta;");
  gpu::BarrierOp::create(b, loc);
}

SmallVector<Value> AttentionKernelBuilder::sOperands(Value kd) {
  const int64_t D = cfg.headDim, tk = cfg.tk;
  SmallVector<Value> r;
  for (int64_t kk = 0; kk < D / 16; ++kk) {
    int64_t qOff = (kk / 4) * cfg.rows() * 128 + (kk % 4) * 32;
    int64_t kOff = (kk / 4) * tk * 128 + (kk % 4) * 32;
    r.append({add64(qDesc, qOff >> 4), add64(kd, kOff >> 4)});
  }
  return r;
}

SmallVector<Value> AttentionKernelBuilder::issueS(ArrayRef<Value> ops,
                                                  Value zero, Value one) {
  const int64_t D = cfg.headDim, tk = cfg.tk;
  SmallVector<Value> acc;
  for (int64_t kk = 0; kk < D / 16; ++kk)
    acc = wgmma(acc, tk, ops[2 * kk], {}, ops[2 * kk + 1],
                /*transB=*/false, acc.empty() ? zero : one);
  ptx("wgmma.commit_group.sync.aligned;");
  return acc;
}

SmallVector<Value> AttentionKernelBuilder::vOperands(Value vd) {
  const int64_t tk = cfg.tk;
  SmallVector<Value> r;
  for (int64_t kk = 0; kk < tk / 16; ++kk)
    r.push_back(add64(vd, (kk * 16 * 128) >> 4));
  return r;
}

SmallVector<Value> AttentionKernelBuilder::issuePV(SmallVector<Value> acc,
                                                   ArrayRef<Value> pr,
                                                   ArrayRef<Value> ops,
                                                   Value one) {
  const int64_t Dv = cfg.valueDim, tk = cfg.tk;
  for (int64_t kk = 0; kk < tk / 16; ++kk)
    acc = wgmma(acc, Dv, Value(), pr.slice(4 * kk, 4), ops[kk],
                /*transB=*/true, one);
  ptx("wgmma.commit_group.sync.aligned;");
  return acc;
}

void AttentionKernelBuilder::pinAll(
    std::initializer_list<SmallVector<Value> *> lists) {
  SmallVector<Value> all;
  for (SmallVector<Value> *list : lists)
    all.append(list->begin(), list->end());
  all = pinRegisters(all);
  size_t at = 0;
  for (SmallVector<Value> *list : lists)
    for (Value &x : *list)
      x = all[at++];
}

Tiles AttentionKernelBuilder::toTiles(ArrayRef<Value> acc, int64_t n) {
  Tiles t(1, SmallVector<Acc>(n));
  for (int64_t j = 0; j < n; ++j)
    for (int i = 0; i < 4; ++i)
      t[0][j][i] = acc[4 * j + i];
  return t;
}

SmallVector<Value> AttentionKernelBuilder::packP(const Tiles &p) {
  const int64_t tk = cfg.tk;
  SmallVector<Value> r;
  for (int64_t kk = 0; kk < tk / 16; ++kk) {
    const Acc &p0 = p[0][2 * kk], &p1 = p[0][2 * kk + 1];
    r.append({pack32(p0[0], p0[1]), pack32(p0[2], p0[3]), pack32(p1[0], p1[1]),
              pack32(p1[2], p1[3])});
  }
  return r;
}

void AttentionKernelBuilder::waitGroups(int n) {
  ptx("wgmma.wait_group.sync.aligned " + std::to_string(n) + ";");
}
