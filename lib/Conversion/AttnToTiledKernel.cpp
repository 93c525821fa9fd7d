//===- AttnToTiledKernel.cpp - Tiled, vectorised flash-attention kernel ---===//
//
// Lowers each attn.variant to a work-item function that computes one q-tile
// (Tq rows of one (b, h)) with FlashAttention's online softmax:
//
//   for each kv-tile in the closed-form range of the q-tile (loop bounds):
//     skip it when the tile abstraction proves the mask all false;
//     in a mixed tile, each block of 4 rows gets its live window (its own
//     closed-form kv range, clipped to the tile); every step below runs
//     over that window only
//     S  = Q_tile K_tile^T         (register-blocked vector micro-kernel)
//     S  = score(S), masked to -inf only where the block is mixed
//     if some S > m + 8: m' = rowmax S, O *= 2^(m - m'), l *= 2^(m - m')
//     P = 2^(S - m);  l += P (a vector of partial sums)
//     O += P V  over the block's exact keys (register-blocked micro-kernel;
//               where the block is mixed and the tile's V is not all
//               finite, masked entries are skipped, so a NaN or infinity
//               in V at a masked key never reaches the row)
//   O /= l (with the sink folded in), LSE = (m + log2 l) ln 2
//
// Scores are kept in log2 units: log2(e) is folded into the Q scale when
// there is no score modifier (else applied after it) and exp2 is a vector
// polynomial. Sigmoid and relu accumulate plain weights, linear a running
// sum. Head dimensions are compile-time constants. The host hands the
// kernel K and V as float32 rows of whole vectors (the caller's own when
// they are already that) and a K^T buffer that the work items fill: each
// kv-tile of each KV head is transposed once per call, by register
// transposes, by the first work item that visits it (an atomic state word
// per tile), so the micro-kernels load whole vectors with no per-tile
// packing or bounds; Q is packed once per work item. The host runs the
// work items over a thread pool.
//
//===----------------------------------------------------------------------===//

#include "attnc/ABI/KernelABI.h"
#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Conversion/ExpandAttnOps.h"
#include "attnc/Conversion/KernelIRBuilder.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Conversion/VectorKernelBuilder.h"

#include "dialects/attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

#include <cmath>
#include <functional>
#include <map>

namespace attnc {
#define GEN_PASS_DEF_CONVERTATTNTOTILEDKERNEL
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

struct TileConfig {
  int64_t tq = 64, tk = 64, vw = 16, rows = 4, headDim = 64, valueDim = 64;
};

class TiledKernelBuilder : public VectorKernelBuilder {
public:
  TiledKernelBuilder(attn::VariantOp variant, Type elementType,
                     const TileConfig &cfg)
      : VectorKernelBuilder(variant, cfg.vw, cfg.rows), variant(variant),
        elementType(elementType), cfg(cfg) {
    dvp = (cfg.valueDim + cfg.vw - 1) / cfg.vw * cfg.vw;
    dp = (cfg.headDim + cfg.vw - 1) / cfg.vw * cfg.vw;
  }

  func::FuncOp build();

private:
  /// Whether score and mask map onto vectors (then the softmax applies
  /// them to each vector as it loads it, see modifyVector).
  bool vectorizedModifiers();
  /// Score and mask applied to one vector `sv` of S, columns col ..
  /// col + vw of the kv-tile at k0 (i32), in row q32: masked lanes (and
  /// lanes past `cols`) become -inf where needMask.
  Value modifyVector(Value sv, Value col, Value q32, Value k032, Value cols,
                     Value needMask);
  /// Applies score and mask to the row of S at `sRow`, element by element
  /// (masks and scores that do not vectorise).
  void modifyScores(Value sRow, Value q32, Value k0, Value cols, Value needMask,
                    std::pair<Value, Value> range);
  void packQ(Value q0, Value rows, Value qscale);
  /// status[word] += n, not atomically: each worker thread has status
  /// words of its own (the host sums them).
  void countWorkerTiles(int word, Value n) {
    Value w = cIdx(word);
    Value old = memref::LoadOp::create(b, loc, entry.status, ValueRange{w});
    memref::StoreOp::create(b, loc, arith::AddIOp::create(b, loc, old, n),
                            entry.status, ValueRange{w});
  }
  /// `rows` rounded up to whole register blocks of cfg.rows rows (the
  /// extra rows of the Q tile are zero).
  Value rowsInBlocks(Value rows) {
    int64_t R = cfg.rows;
    return arith::MulIOp::create(
        b, loc,
        arith::DivUIOp::create(
            b, loc, arith::AddIOp::create(b, loc, rows, cIdx(R - 1)), cIdx(R)),
        cIdx(R));
  }
  /// The live window of S for the register block holding `row`: its first
  /// column and its number of vectors (the whole tile without a mask).
  std::pair<Value, Value> liveRange(Value row) {
    if (!liveStart)
      return {cIdx(0), cIdx(cfg.tk / cfg.vw)};
    Value i = arith::DivUIOp::create(b, loc, row, cIdx(cfg.rows));
    return {memref::LoadOp::create(b, loc, liveStart, ValueRange{i}),
            memref::LoadOp::create(b, loc, liveCount, ValueRange{i})};
  }
  /// body(n) for the window's vector count n, each n its own straight-line
  /// code (scf.index_switch; nothing for n = 0); body(nv) without a mask.
  void forCount(Value count, llvm::function_ref<void(int64_t)> body);
  /// Fills the per-block live windows of the kv-tile of `tileEnv` for the
  /// q-tile at q0 from the mask's facts over each block of rows.
  void computeLiveRanges(const TileEnv &tileEnv, const TileFacts &facts,
                         Value q0, Value rows);
  /// S[rows of the block][col0 .. col0 + n vw) = Qp K^T: n vectors of
  /// columns from column col0 (not necessarily aligned), K^T the Tk-wide
  /// rows src[base + d * Tk].
  void microQKBlock(Value rb, Value src, Value base, Value col0, int64_t n);
  void microQK(Value rows, Value src, Value base);
  /// Whether V's rows of the kv-tile at k0 (its `cols` keys) hold a NaN or
  /// an infinity (an i1).
  Value vHasNonFinite(Value k0, Value cols);
  /// K^T of kv-tile ktIdx of this KV head: (buffer, offset) of its rows,
  /// in the shared buffer (built there by the first work item to reach
  /// it) or, while another item is building it, in a private one.
  std::pair<Value, Value> ensureKt(Value ktIdx, Value k0, Value cols);
  /// `guarded`: blocks that the mask cuts through skip masked entries
  /// (for tiles whose V holds a NaN or an infinity).
  void microPV(Value rows, Value k0, Value cols, bool guarded);
  /// Per row r: `modify(r)` gives the function applied to each loaded
  /// vector of S and its first column (score and mask), or none.
  using RowModifier = std::function<std::function<Value(Value, Value)>(Value)>;
  void softmaxRows(Value rows, const RowModifier &modify = nullptr);
  void epilogue(Value q0, Value rows);
  /// The work item's function: its arguments (KernelABI.h, then those of
  /// TiledKernelABI.h) bound to the builder's values.
  func::FuncOp createFunction();
  /// The scratch tiles on the worker's stack and the live windows.
  void allocScratch();
  /// The tile abstraction's environment (env): sizes, scalar params and
  /// the tensorRange hook (summaryRange).
  void initEnv();
  /// A tensor read's range over an index box: one row of the host's tile
  /// summary for p[q_idx] over this q-tile or p[kv_idx] over this kv-tile,
  /// else scanned when small; memoised by the box's SSA bounds at function
  /// level.
  std::optional<IntervalValues> summaryRange(attn::ParamOp p,
                                             ArrayRef<IntervalValues> idx);
  /// One kv-tile `ktIdx` of the q-tile [q0, q0 + rows): skipped when all
  /// false; else S, score and mask, softmax and P V over its live windows.
  void emitKvTile(Value ktIdx, Value q0, Value rows);

  attn::VariantOp variant;
  Type elementType;
  TileConfig cfg;
  int64_t dvp;

  // Arguments and derived values.
  Value bi, hi, hkv;
  Value sizeI64[7];
  Value b32, h32;
  KernelContext kctx;
  // Scratch tiles (flat f32 memrefs); the shared K^T buffer the kernels
  // fill, a private one, V and K rows, and the K^T tiles' state words.
  Value qp, kt, ktPrivate, s, vp, kr, kflags, oacc, mrow, lrow;
  int64_t dp = 0; // headDim rounded up to whole vectors
  // Per register block of rows, in the current kv-tile: the live window of
  // S, liveCount vectors from column liveStart (outside it the mask keeps
  // nothing), the exact keys [liveKeyLo, liveKeyEnd) inside it that P V
  // visits, and whether the block needs the mask (liveMixed). Null
  // without a mask.
  Value liveStart, liveCount, liveMixed, liveKeyLo, liveKeyEnd;
  // Whether the current kv-tile's V rows hold a NaN or an infinity (i1).
  Value tileVNonFinite;
  // Tile summaries (per q-tile, per kv-tile) of rank-1 integer params, and
  // the bounds of the current q-tile and kv-tile that select their rows.
  SmallVector<attn::ParamOp> summarized;
  llvm::StringMap<std::pair<Value, Value>> summaries;
  Value qtIdx, rowQLo, rowQHi, curKvLo, curKvHi, curKtIdx;
  /// The function's body, the tile abstraction's environment of the
  /// q-tile's row, and the ranges memoised over it (summaryRange).
  Block *body = nullptr;
  TileEnv env;
  std::map<std::pair<std::string, SmallVector<void *>>, IntervalValues> memo;
  bool foldLog2e = false;
  attn::NormKind norm = attn::NormKind::softmax;
};

void TiledKernelBuilder::packQ(Value q0, Value rows, Value qscale) {
  // Qp[r][d] = Q[b, h, q0 + r, d] * qscale, zero past the last row.
  forLoop(cIdx(0), cIdx(cfg.tq), 1, [&](Value r) {
    Value inRow =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, r, rows);
    Value row = arith::AddIOp::create(b, loc, q0, r);
    Value safeRow = arith::SelectOp::create(b, loc, inRow, row, cIdx(0));
    forLoop(cIdx(0), cIdx(cfg.headDim), 1, [&](Value d) {
      Value x = arith::MulFOp::create(
          b, loc, loadF32(entry.q, {bi, hi, safeRow, d}), qscale);
      x = arith::SelectOp::create(b, loc, inRow, x, cF32(0.0));
      memref::StoreOp::create(b, loc, x, qp,
                              ValueRange{offset(d, cfg.headDim, r)});
    });
  });
}

void TiledKernelBuilder::microQKBlock(Value rb, Value src, Value base,
                                      Value col0, int64_t n) {
  int64_t R = cfg.rows;
  auto column = [&](int64_t jv) {
    return arith::AddIOp::create(b, loc, col0, cIdx(jv * cfg.vw));
  };
  SmallVector<Value> acc = rank1Block(
      cIdx(0), cIdx(cfg.headDim), SmallVector<Value>(R * n, splatF(0.0)), n,
      [&](Value d, int64_t jv) {
        return vload(src, arith::AddIOp::create(
                              b, loc,
                              arith::AddIOp::create(b, loc, base,
                                                    offset(nullptr, cfg.tk, d)),
                              column(jv)));
      },
      [&](Value d, int64_t r) -> Value {
        Value row = arith::AddIOp::create(b, loc, rb, cIdx(r));
        return memref::LoadOp::create(b, loc, qp,
                                      ValueRange{offset(d, cfg.headDim, row)});
      });
  for (int64_t r = 0; r < R; ++r) {
    Value row = arith::AddIOp::create(b, loc, rb, cIdx(r));
    for (int64_t jv = 0; jv < n; ++jv)
      vstore(acc[r * n + jv], s,
             arith::AddIOp::create(b, loc, offset(nullptr, cfg.tk, row),
                                   column(jv)));
  }
}

void TiledKernelBuilder::forCount(Value count,
                                  llvm::function_ref<void(int64_t)> body) {
  int64_t nv = cfg.tk / cfg.vw;
  if (!liveStart) {
    body(nv);
    return;
  }
  SmallVector<int64_t> cases;
  for (int64_t n = 0; n < nv; ++n)
    cases.push_back(n);
  auto sw = scf::IndexSwitchOp::create(b, loc, TypeRange{}, count, cases,
                                       cases.size());
  OpBuilder::InsertionGuard guard(b);
  for (int64_t n = 0; n <= nv; ++n) {
    Block &blk = n < nv ? sw.getCaseRegions()[n].emplaceBlock()
                        : sw.getDefaultRegion().emplaceBlock();
    b.setInsertionPointToStart(&blk);
    if (n > 0)
      body(n);
    scf::YieldOp::create(b, loc);
  }
}

std::pair<Value, Value> TiledKernelBuilder::ensureKt(Value ktIdx, Value k0,
                                                     Value cols) {
  // The tile's state word: bit 0 claimed, bit 1 ready. The first work item
  // to set bit 0 transposes the tile into the shared buffer (whole tiles
  // by vw x vw register transposes of K's rows; the partial last tile
  // element by element, zeros past Lkv) and then sets bit 1 (release);
  // later visitors that see bit 1 (acquire) read it. A visitor that finds
  // it claimed but not ready does not wait: it transposes the tile into
  // its own stack buffer. So every visited kv-tile of every KV head is
  // transposed about once per call, by the thread that first needs it,
  // and no thread ever blocks on another.
  Value kvTiles =
      arith::CeilDivUIOp::create(b, loc, entry.sizeIdx[4], cIdx(cfg.tk));
  Value word = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(
          b, loc,
          arith::AddIOp::create(
              b, loc, arith::MulIOp::create(b, loc, bi, entry.sizeIdx[2]), hkv),
          kvTiles),
      ktIdx);
  Value sharedBase = arith::MulIOp::create(b, loc, word, cIdx(dp * cfg.tk));
  auto atomicOr = [&](int64_t bits) {
    return memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::ori,
                                       cI32(bits), kflags, ValueRange{word})
        .getResult();
  };
  int64_t nv = cfg.tk / cfg.vw;
  // K^T of the tile into dst[base + d * Tk + j].
  auto transpose = [&](Value dst, Value base) {
    Value full = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cols,
                                       cIdx(cfg.tk));
    scf::IfOp::create(
        b, loc, full,
        [&](OpBuilder &, Location) {
          forLoop(cIdx(0), cIdx(dp / cfg.vw), 1, [&](Value db) {
            Value d0 = arith::MulIOp::create(b, loc, db, cIdx(cfg.vw));
            for (int64_t jb = 0; jb < nv; ++jb) {
              SmallVector<Value> rowsK;
              for (int64_t j = 0; j < cfg.vw; ++j)
                rowsK.push_back(vector::LoadOp::create(
                    b, loc, vf, kr,
                    ValueRange{bi, hkv,
                               arith::AddIOp::create(b, loc, k0,
                                                     cIdx(jb * cfg.vw + j)),
                               d0}));
              SmallVector<Value> t = transposeSquare(rowsK);
              for (int64_t i = 0; i < cfg.vw; ++i)
                vstore(t[i], dst,
                       arith::AddIOp::create(
                           b, loc, base,
                           offset(nullptr, cfg.tk,
                                  arith::AddIOp::create(b, loc, d0, cIdx(i)),
                                  jb * cfg.vw)));
            }
          });
          scf::YieldOp::create(b, loc);
        },
        [&](OpBuilder &, Location) {
          forLoop(cIdx(0), cIdx(cfg.tk), 1, [&](Value j) {
            Value inside = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::slt, j, cols);
            Value key = arith::AddIOp::create(b, loc, k0, j);
            forLoop(cIdx(0), cIdx(dp), 1, [&](Value d) {
              auto x = scf::IfOp::create(
                  b, loc, inside,
                  [&](OpBuilder &, Location) {
                    scf::YieldOp::create(
                        b, loc,
                        memref::LoadOp::create(b, loc, kr,
                                               ValueRange{bi, hkv, key, d})
                            .getResult());
                  },
                  [&](OpBuilder &, Location) {
                    scf::YieldOp::create(b, loc, cF32(0.0));
                  });
              memref::StoreOp::create(
                  b, loc, x.getResult(0), dst,
                  ValueRange{arith::AddIOp::create(
                      b, loc, base,
                      arith::AddIOp::create(b, loc, offset(nullptr, cfg.tk, d),
                                            j))});
            });
          });
          scf::YieldOp::create(b, loc);
        });
  };
  Value old = atomicOr(1);
  Value mine =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, old, cI32(0));
  // Claimed, not ready: exactly bit 0 (the state goes 0 -> 1 -> 3 or 7).
  Value busy =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, old, cI32(1));
  // Bit 2, set with bit 1: the tile's V rows hold a NaN or an infinity
  // (vHasNonFinite), which P V must then keep away from the rows that mask
  // their keys (microPV). The builder scans them once; a private builder
  // scans them itself; everyone else reads the bit.
  auto built = scf::IfOp::create(
      b, loc, mine,
      [&](OpBuilder &, Location) {
        transpose(kt, sharedBase);
        Value bad = vHasNonFinite(k0, cols);
        Value bits = arith::OrIOp::create(
            b, loc, cI32(2),
            arith::ShLIOp::create(
                b, loc, arith::ExtUIOp::create(b, loc, b.getI32Type(), bad),
                cI32(2)));
        memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::ori, bits,
                                    kflags, ValueRange{word});
        scf::YieldOp::create(b, loc, bad); // release: the tile is written
      },
      [&](OpBuilder &, Location) {
        auto other = scf::IfOp::create(
            b, loc, busy,
            [&](OpBuilder &, Location) {
              transpose(ktPrivate, cIdx(0));
              scf::YieldOp::create(b, loc, vHasNonFinite(k0, cols));
            },
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(
                  b, loc,
                  arith::CmpIOp::create(
                      b, loc, arith::CmpIPredicate::ne,
                      arith::AndIOp::create(b, loc, old, cI32(4)), cI32(0))
                      .getResult());
            });
        scf::YieldOp::create(b, loc, other.getResult(0));
      });
  tileVNonFinite = built.getResult(0);
  return {arith::SelectOp::create(b, loc, busy, ktPrivate, kt),
          arith::SelectOp::create(b, loc, busy, cIdx(0), sharedBase)};
}

Value TiledKernelBuilder::vHasNonFinite(Value k0, Value cols) {
  // The sum of v - v over the tile's V rows: 0 while every value is finite,
  // NaN once one is NaN or infinite (and NaN from then on).
  auto loop = scf::ForOp::create(
      b, loc, cIdx(0), cols, cIdx(1), ValueRange{splatF(0.0)},
      [&](OpBuilder &, Location, Value j, ValueRange acc) {
        Value sum = acc[0];
        Value key = arith::AddIOp::create(b, loc, k0, j);
        for (int64_t c = 0; c < dvp / cfg.vw; ++c) {
          Value x = vector::LoadOp::create(
              b, loc, vf, vp, ValueRange{bi, hkv, key, cIdx(c * cfg.vw)});
          sum = arith::AddFOp::create(b, loc, sum,
                                      arith::SubFOp::create(b, loc, x, x));
        }
        scf::YieldOp::create(b, loc, sum);
      });
  Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                          loop.getResult(0));
  return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, sum, sum);
}

void TiledKernelBuilder::microQK(Value rows, Value src, Value base) {
  // S[r][j] = sum_d Qp[r][d] K[b][hkv][k0 + j][d], R rows x Tk columns per
  // block, the accumulators held in vector registers across the d loop,
  // from the tile's K^T (ensureKt). A block whose live window is narrower
  // (a band of the mask through the tile) computes only the window, still
  // register-blocked; every later stage reads only the window too.
  int64_t R = cfg.rows, nv = cfg.tk / cfg.vw;
  Value ub = rowsInBlocks(rows);
  forLoop(cIdx(0), ub, R, [&](Value rb) {
    std::pair<Value, Value> range = liveRange(rb);
    Value col0 = range.first;
    forCount(range.second, [&](int64_t n) {
      microQKBlock(rb, src, base, n < nv ? col0 : cIdx(0), n);
    });
  });
}

void TiledKernelBuilder::microPV(Value rows, Value k0, Value cols,
                                 bool guarded) {
  // Oacc[r][c] += sum_j P[r][j] Vf[b][hkv][k0 + j][c], R rows x up to 4
  // vectors of columns per block, accumulators in registers across j.
  int64_t R = cfg.rows, nvd = dvp / cfg.vw, group = 4;
  Value ub = rowsInBlocks(rows);
  forLoop(cIdx(0), ub, R, [&](Value rb) {
    // The block's exact keys (P is 0 outside them); keys past Lkv (a
    // partial last tile) have no V row: V may be the caller's own tensor.
    // In a block that the mask cuts through, a key may be masked for some
    // of its rows only. Where the tile's V holds a NaN or an infinity
    // (`guarded`), the guarded micro-kernel skips those rows' entries (their
    // weights mark them, see softmaxRows), so that it never reaches the rows
    // that mask its key (0 * NaN is NaN); finite V takes the plain
    // micro-kernel.
    Value jBegin = cIdx(0), jEnd = cIdx(cfg.tk), mixed;
    if (liveKeyLo) {
      Value i = arith::DivUIOp::create(b, loc, rb, cIdx(cfg.rows));
      jBegin = memref::LoadOp::create(b, loc, liveKeyLo, ValueRange{i});
      jEnd = memref::LoadOp::create(b, loc, liveKeyEnd, ValueRange{i});
      if (guarded)
        mixed = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ne,
            memref::LoadOp::create(b, loc, liveMixed, ValueRange{i}), cIdx(0));
    }
    jEnd = minIdx(jEnd, cols);
    for (int64_t g0 = 0; g0 < nvd; g0 += group) {
      int64_t gn = std::min(group, nvd - g0);
      SmallVector<Value> init;
      for (int64_t r = 0; r < R; ++r) {
        Value row = arith::AddIOp::create(b, loc, rb, cIdx(r));
        for (int64_t c = 0; c < gn; ++c)
          init.push_back(
              vload(oacc, offset(nullptr, dvp, row, (g0 + c) * cfg.vw)));
      }
      auto block = [&](bool skipMasked) {
        return rank1Block(
            jBegin, jEnd, init, gn,
            [&](Value j, int64_t c) -> Value {
              return vector::LoadOp::create(
                  b, loc, vf, vp,
                  ValueRange{bi, hkv, arith::AddIOp::create(b, loc, k0, j),
                             cIdx((g0 + c) * cfg.vw)});
            },
            [&](Value j, int64_t r) -> Value {
              Value row = arith::AddIOp::create(b, loc, rb, cIdx(r));
              return memref::LoadOp::create(b, loc, s,
                                            ValueRange{offset(j, cfg.tk, row)});
            },
            !skipMasked                       ? MaskedWeights::kept
            : norm == attn::NormKind::softmax ? MaskedWeights::zero
                                              : MaskedWeights::negativeZero);
      };
      SmallVector<Value> acc;
      if (!mixed) {
        acc = block(false);
      } else {
        auto ifMixed = scf::IfOp::create(
            b, loc, mixed,
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc, block(true));
            },
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc, block(false));
            });
        acc.assign(ifMixed.getResults().begin(), ifMixed.getResults().end());
      }
      for (int64_t r = 0; r < R; ++r) {
        Value row = arith::AddIOp::create(b, loc, rb, cIdx(r));
        for (int64_t c = 0; c < gn; ++c)
          vstore(acc[r * gn + c], oacc,
                 offset(nullptr, dvp, row, (g0 + c) * cfg.vw));
      }
    }
  });
}

void TiledKernelBuilder::computeLiveRanges(const TileEnv &tileEnv,
                                           const TileFacts &facts, Value q0,
                                           Value rows) {
  // A mixed tile asks the mask's facts again over each block of R rows:
  // the closed-form kv range of the block, clipped to the tile, gives its
  // live window (a causal diagonal, a window's band, a neighbourhood's
  // columns): n = ceil(width / vw) vectors from the range's first column,
  // moved left where it would leave the tile. Blocks proven all true skip
  // the mask. Tiles that are all true keep every vector and need no mask.
  int64_t R = cfg.rows, nv = cfg.tk / cfg.vw;
  Value ub = rowsInBlocks(rows);
  auto store = [&](Value rb, Value start, Value count, Value mixed, Value keyLo,
                   Value keyEnd) {
    Value i = arith::DivUIOp::create(b, loc, rb, cIdx(R));
    memref::StoreOp::create(b, loc, start, liveStart, ValueRange{i});
    memref::StoreOp::create(b, loc, count, liveCount, ValueRange{i});
    memref::StoreOp::create(b, loc, mixed, liveMixed, ValueRange{i});
    memref::StoreOp::create(b, loc, keyLo, liveKeyLo, ValueRange{i});
    memref::StoreOp::create(b, loc, keyEnd, liveKeyEnd, ValueRange{i});
  };
  scf::IfOp::create(
      b, loc, facts.mayBeFalse,
      [&](OpBuilder &, Location) {
        forLoop(cIdx(0), ub, R, [&](Value rb) {
          Value last = arith::SubIOp::create(
              b, loc, minIdx(arith::AddIOp::create(b, loc, rb, cIdx(R)), rows),
              cIdx(1));
          TileEnv blockEnv = tileEnv;
          blockEnv.q = {toI64(arith::AddIOp::create(b, loc, q0, rb)),
                        toI64(arith::AddIOp::create(b, loc, q0, last))};
          TileFacts bf = emitTileFacts(b, loc, variant.getMaskOp(), blockEnv);
          Value lo = arith::SubIOp::create(
              b, loc, arith::MaxSIOp::create(b, loc, bf.kvLo, tileEnv.kv.lo),
              tileEnv.kv.lo);
          Value hi = arith::SubIOp::create(
              b, loc, arith::MinSIOp::create(b, loc, bf.kvHi, tileEnv.kv.hi),
              tileEnv.kv.lo);
          Value live = arith::AndIOp::create(
              b, loc, bf.mayBeTrue,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, lo, hi));
          Value n = arith::DivSIOp::create(
              b, loc,
              arith::AddIOp::create(
                  b, loc, arith::SubIOp::create(b, loc, hi, lo), cI64(cfg.vw)),
              cI64(cfg.vw));
          Value start = arith::MinSIOp::create(
              b, loc, lo,
              arith::SubIOp::create(
                  b, loc, cI64(cfg.tk),
                  arith::MulIOp::create(b, loc, n, cI64(cfg.vw))));
          auto idx = [&](Value x) {
            return arith::IndexCastOp::create(b, loc, b.getIndexType(), x)
                .getResult();
          };
          store(rb, arith::SelectOp::create(b, loc, live, idx(start), cIdx(0)),
                arith::SelectOp::create(b, loc, live, idx(n), cIdx(0)),
                idx(arith::ExtUIOp::create(b, loc, b.getI64Type(),
                                           bf.mayBeFalse)),
                arith::SelectOp::create(b, loc, live, idx(lo), cIdx(0)),
                arith::SelectOp::create(
                    b, loc, live,
                    idx(arith::AddIOp::create(b, loc, hi, cI64(1))), cIdx(0)));
        });
        scf::YieldOp::create(b, loc);
      },
      [&](OpBuilder &, Location) {
        forLoop(cIdx(0), ub, R, [&](Value rb) {
          store(rb, cIdx(0), cIdx(nv), cIdx(0), cIdx(0), cIdx(cfg.tk));
        });
        scf::YieldOp::create(b, loc);
      });
}

bool TiledKernelBuilder::vectorizedModifiers() {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  return (!scoreOp || isVectorizable(scoreOp.getBody())) &&
         (!maskOp || isVectorizable(maskOp.getBody()));
}

Value TiledKernelBuilder::modifyVector(Value sv, Value col, Value q32,
                                       Value k032, Value cols, Value needMask) {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  SmallVector<Attribute> lanes;
  for (int64_t l = 0; l < cfg.vw; ++l)
    lanes.push_back(b.getI32IntegerAttr(l));
  Value iota =
      arith::ConstantOp::create(b, loc, DenseElementsAttr::get(vi, lanes));
  Value jl = arith::AddIOp::create(
      b, loc, iota, vector::BroadcastOp::create(b, loc, vi, toI32(col)));
  Value kvv = arith::AddIOp::create(
      b, loc, jl, vector::BroadcastOp::create(b, loc, vi, k032));
  if (scoreOp)
    sv = vectorizedRegion(scoreOp.getBody(), {b32, h32, q32}, {kvv, sv});
  if (scoreOp && foldLog2e == false && norm == attn::NormKind::softmax)
    sv = arith::MulFOp::create(b, loc, sv, splatF(kLog2e));
  auto maskIf = scf::IfOp::create(
      b, loc, needMask,
      [&](OpBuilder &, Location) {
        Value keep = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, jl,
            vector::BroadcastOp::create(b, loc, vi, toI32(cols)));
        if (maskOp)
          keep = arith::AndIOp::create(
              b, loc, keep,
              vectorizedRegion(maskOp.getBody(), {b32, h32, q32}, {kvv}));
        scf::YieldOp::create(
            b, loc,
            arith::SelectOp::create(b, loc, keep, sv, splatF(-INFINITY))
                .getResult());
      },
      [&](OpBuilder &, Location) { scf::YieldOp::create(b, loc, sv); });
  return maskIf.getResult(0);
}

void TiledKernelBuilder::modifyScores(Value sRow, Value q32, Value k0,
                                      Value cols, Value needMask,
                                      std::pair<Value, Value> range) {
  attn::ScoreOp scoreOp = variant.getScoreOp();
  attn::MaskOp maskOp = variant.getMaskOp();
  Value negInf = cF32(-INFINITY);
  // Scalar path: the mask first, the score only where the mask keeps the
  // entry (so its checked reads never fire on masked entries). Without a
  // score modifier, all-true tiles need none of it.
  scf::IfOp guard;
  if (!scoreOp) {
    guard = scf::IfOp::create(b, loc, needMask, /*withElseRegion=*/false);
    b.setInsertionPointToStart(guard.thenBlock());
  }
  forLoop(
      range.first,
      arith::AddIOp::create(
          b, loc, range.first,
          arith::MulIOp::create(b, loc, range.second, cIdx(cfg.vw))),
      1, [&](Value j) {
        Value off = arith::AddIOp::create(b, loc, sRow, j);
        Value sv = memref::LoadOp::create(b, loc, s, ValueRange{off});
        Value kv32 = toI32(arith::AddIOp::create(b, loc, k0, j));
        Value inCol =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j, cols);
        auto keepIf = scf::IfOp::create(
            b, loc, arith::AndIOp::create(b, loc, needMask, inCol),
            [&](OpBuilder &, Location) {
              Value keep =
                  maskOp
                      ? inlineItemRegion(b, maskOp.getBody(),
                                         {b32, h32, q32, kv32})
                      : arith::ConstantOp::create(b, loc, b.getBoolAttr(true))
                            .getResult();
              scf::YieldOp::create(b, loc, keep);
            },
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc, inCol);
            });
        auto sIf = scf::IfOp::create(
            b, loc, keepIf.getResult(0),
            [&](OpBuilder &, Location) {
              Value x = sv;
              if (scoreOp) {
                x = inlineItemRegion(b, scoreOp.getBody(),
                                     {b32, h32, q32, kv32, sv});
                if (norm == attn::NormKind::softmax)
                  x = arith::MulFOp::create(b, loc, x, cF32(kLog2e));
              }
              scf::YieldOp::create(b, loc, x);
            },
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc, negInf);
            });
        memref::StoreOp::create(b, loc, sIf.getResult(0), s, ValueRange{off});
      });
  if (guard)
    b.setInsertionPointAfter(guard);
}

void TiledKernelBuilder::softmaxRows(Value rows, const RowModifier &modify) {
  // Per row, over the row block's live window only (nothing for an empty
  // one). The row sum l is kept as a vector of partial sums and reduced
  // once, in the epilogue.
  int64_t nvd = dvp / cfg.vw;
  forLoop(cIdx(0), rows, 1, [&](Value r) {
    Value sRow = offset(nullptr, cfg.tk, r);
    Value lOff = offset(nullptr, cfg.vw, r);
    std::pair<Value, Value> range = liveRange(r);
    std::function<Value(Value, Value)> rowModify;
    if (modify)
      rowModify = modify(r);
    forCount(range.second, [&](int64_t n) {
      SmallVector<Value> offs, sv;
      for (int64_t jv = 0; jv < n; ++jv) {
        Value col =
            arith::AddIOp::create(b, loc, range.first, cIdx(jv * cfg.vw));
        offs.push_back(arith::AddIOp::create(b, loc, sRow, col));
        sv.push_back(vload(s, offs.back()));
        if (rowModify)
          sv.back() = rowModify(sv.back(), col);
      }
      Value l = vload(lrow, lOff);
      // How P V recognises masked entries where V is not finite (microPV):
      // softmax weights 2^(S - m) are 0 exactly for masked entries (-inf)
      // and for kept ones below 2^-126 of the row's largest, which count
      // as masked there; plain weights of masked entries are -0.0, which
      // no kept one is (sigmoid is never -0.0, relu's maximum(-0.0, 0.0)
      // is +0.0, and linear weights get + 0.0, which turns -0.0 into +0.0
      // and leaves the rest alone), since relu and linear weights of kept
      // entries are often exactly +0.0.
      if (norm != attn::NormKind::softmax) {
        // Plain weights: sigmoid(s), max(s, 0) or s; masked (-inf) gives -0.
        for (int64_t jv = 0; jv < n; ++jv) {
          Value x = sv[jv], w;
          Value masked = arith::CmpFOp::create(
              b, loc, arith::CmpFPredicate::OEQ, x, splatF(-INFINITY));
          if (norm == attn::NormKind::sigmoid) // 1 / (1 + 2^(-s log2 e))
            w = arith::DivFOp::create(
                b, loc, splatF(1.0),
                arith::AddFOp::create(
                    b, loc, splatF(1.0),
                    vexp2(arith::MulFOp::create(b, loc, x, splatF(-kLog2e)))));
          else if (norm == attn::NormKind::relu)
            w = arith::MaximumFOp::create(b, loc, x, splatF(0.0));
          else
            w = arith::AddFOp::create(b, loc, x, splatF(0.0));
          w = arith::SelectOp::create(b, loc, masked, splatF(-0.0), w);
          l = arith::AddFOp::create(b, loc, l, w);
          vstore(w, s, offs[jv]);
        }
        vstore(l, lrow, lOff);
        return;
      }
      // Online softmax with lazy rescaling: the running max m moves (and
      // O and l are rescaled by alpha = 2^(m - m')) only when a score
      // exceeds m + 8, so P = 2^(S - m) stays below 2^8 and most tiles
      // need neither the row max reduction nor the rescale. maxnum (one
      // vmaxps) rather than NaN-propagating maximum: a NaN score still
      // reaches the output through 2^(NaN - m).
      Value m = memref::LoadOp::create(b, loc, mrow, ValueRange{r});
      Value mx = sv[0];
      for (int64_t jv = 1; jv < n; ++jv)
        mx = arith::MaxNumFOp::create(b, loc, mx, sv[jv]);
      Value above = arith::CmpFOp::create(
          b, loc, arith::CmpFPredicate::OGT, mx,
          vector::BroadcastOp::create(
              b, loc, vf, arith::AddFOp::create(b, loc, m, cF32(8.0))));
      Value grow =
          vector::ReductionOp::create(b, loc, vector::CombiningKind::OR, above);
      auto growIf = scf::IfOp::create(
          b, loc, grow,
          [&](OpBuilder &, Location) {
            Value mNew = vector::ReductionOp::create(
                b, loc, vector::CombiningKind::MAXNUMF, mx);
            memref::StoreOp::create(b, loc, mNew, mrow, ValueRange{r});
            // m = -inf (nothing kept yet): O and l are 0, nothing to
            // rescale (the row's first live tile).
            Value first = arith::CmpFOp::create(
                b, loc, arith::CmpFPredicate::OEQ, m, cF32(-INFINITY));
            auto rescaled = scf::IfOp::create(
                b, loc, first,
                [&](OpBuilder &, Location) { scf::YieldOp::create(b, loc, l); },
                [&](OpBuilder &, Location) {
                  Value alphaV = vexp2(vector::BroadcastOp::create(
                      b, loc, vf, arith::SubFOp::create(b, loc, m, mNew)));
                  for (int64_t c = 0; c < nvd; ++c) {
                    Value off = offset(nullptr, dvp, r, c * cfg.vw);
                    vstore(
                        arith::MulFOp::create(b, loc, vload(oacc, off), alphaV),
                        oacc, off);
                  }
                  scf::YieldOp::create(
                      b, loc,
                      arith::MulFOp::create(b, loc, l, alphaV).getResult());
                });
            scf::YieldOp::create(b, loc,
                                 ValueRange{mNew, rescaled.getResult(0)});
          },
          [&](OpBuilder &, Location) {
            scf::YieldOp::create(b, loc, ValueRange{m, l});
          });
      Value mCur = growIf.getResult(0);
      l = growIf.getResult(1);
      // While every entry so far is masked, m = -inf: use 0 so that
      // -inf - m stays -inf (P = 0) and never NaN.
      Value allMasked = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                              mCur, cF32(-INFINITY));
      Value mSafe = arith::SelectOp::create(b, loc, allMasked, cF32(0.0), mCur);
      Value mSafeV = vector::BroadcastOp::create(b, loc, vf, mSafe);
      for (int64_t jv = 0; jv < n; ++jv) {
        Value p = vexp2(arith::SubFOp::create(b, loc, sv[jv], mSafeV));
        l = arith::AddFOp::create(b, loc, l, p);
        vstore(p, s, offs[jv]);
      }
      vstore(l, lrow, lOff);
    });
  });
}

void TiledKernelBuilder::epilogue(Value q0, Value rows) {
  attn::NormalizeOp normOp = variant.getNormalizeOp();
  forLoop(cIdx(0), rows, 1, [&](Value r) {
    Value row = arith::AddIOp::create(b, loc, q0, r);
    Value l =
        vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                    vload(lrow, offset(nullptr, cfg.vw, r)));
    Value factor, lseValue, empty;
    if (norm == attn::NormKind::softmax) {
      Value m = memref::LoadOp::create(b, loc, mrow, ValueRange{r});
      // Empty: nothing kept (m = -inf, l = 0). A row whose kept scores are
      // all NaN also has m = -inf (maxnum skips NaN), but l = NaN: not
      // empty, so that its O and LSE are NaN.
      empty = arith::AndIOp::create(
          b, loc,
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, m,
                                cF32(-INFINITY)),
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ORD, l, l));
      Value mSafe = arith::SelectOp::create(b, loc, empty, cF32(0.0), m);
      Value denom = l, top = mSafe, keep = cF32(1.0);
      if (normOp && normOp.hasSink()) {
        // The sink joins at the end: M = max(m, e); l' = l 2^(m-M) + 2^(e-M).
        Value e = arith::MulFOp::create(
            b, loc, inlineItemRegion(b, normOp.getSink(), {b32, h32}),
            cF32(kLog2e));
        top = arith::MaximumFOp::create(b, loc, mSafe, e);
        Value pair = vexp2(vector::BroadcastOp::create(
            b, loc, vf, arith::SubFOp::create(b, loc, mSafe, top)));
        keep = vector::ExtractOp::create(b, loc, pair, ArrayRef<int64_t>{0});
        Value sinkW = vector::ExtractOp::create(
            b, loc,
            vexp2(vector::BroadcastOp::create(
                b, loc, vf, arith::SubFOp::create(b, loc, e, top))),
            ArrayRef<int64_t>{0});
        denom = arith::AddFOp::create(
            b, loc, arith::MulFOp::create(b, loc, l, keep), sinkW);
      }
      factor = arith::DivFOp::create(b, loc, keep, denom);
      // LSE = ln(sum e^s) = (M + log2 l') ln 2
      lseValue = arith::MulFOp::create(
          b, loc,
          arith::AddFOp::create(b, loc, top,
                                math::Log2Op::create(b, loc, denom)),
          cF32(kLn2));
    } else if (norm == attn::NormKind::linear) {
      empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, l,
                                    cF32(0.0));
      factor = arith::DivFOp::create(b, loc, cF32(1.0), l);
    } else {
      empty = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
      factor = cF32(1.0);
    }
    factor = arith::SelectOp::create(b, loc, empty, cF32(0.0), factor);
    forLoop(cIdx(0), cIdx(cfg.valueDim), 1, [&](Value c) {
      Value a =
          memref::LoadOp::create(b, loc, oacc,
                                 ValueRange{arith::AddIOp::create(
                                     b, loc, offset(nullptr, dvp, r), c)});
      Value out = arith::MulFOp::create(b, loc, a, factor);
      if (!elementType.isF32())
        out = arith::TruncFOp::create(b, loc, elementType, out);
      memref::StoreOp::create(b, loc, out, entry.o, ValueRange{bi, hi, row, c});
    });
    if (norm == attn::NormKind::softmax || norm == attn::NormKind::linear) {
      // The row statistic the backward needs: LSE (softmax), the row sum
      // (linear).
      Value wantLse = arith::CmpIOp::create(
          b, loc, arith::CmpIPredicate::ne,
          arith::AndIOp::create(b, loc, entry.flags, cI32(kFlagWriteLSE)),
          cI32(0));
      scf::IfOp::create(b, loc, wantLse, [&](OpBuilder &, Location) {
        Value value = norm == attn::NormKind::linear
                          ? l
                          : arith::SelectOp::create(b, loc, empty,
                                                    cF32(-INFINITY), lseValue)
                                .getResult();
        memref::StoreOp::create(b, loc, value, entry.lse,
                                ValueRange{bi, hi, row});
        scf::YieldOp::create(b, loc);
      });
    }
  });
}

func::FuncOp TiledKernelBuilder::build() {
  loc = variant.getLoc();
  norm = variant.getNormKind();
  func::FuncOp fn = createFunction();
  allocScratch();

  // scale, with log2(e) folded in when no score modifier needs the true
  // scaled dot product.
  Value qscale = emitQScale(b, loc, variant, entry.sizeI32[5], foldLog2e);

  Value q0 = arith::MulIOp::create(b, loc, qtIdx, cIdx(cfg.tq));
  Value rows =
      minIdx(cIdx(cfg.tq), arith::SubIOp::create(b, loc, entry.sizeIdx[3], q0));
  packQ(q0, rows, qscale);
  forLoop(cIdx(0), cIdx(cfg.tq), 1, [&](Value r) {
    memref::StoreOp::create(b, loc, cF32(-INFINITY), mrow, ValueRange{r});
    vstore(splatF(0.0), lrow, offset(nullptr, cfg.vw, r));
  });
  forLoop(cIdx(0), cIdx(cfg.tq * dvp), cfg.vw,
          [&](Value i) { vstore(splatF(0.0), oacc, i); });

  // The tile abstraction: params as the kernel sees them.
  attn::MaskOp maskOp = variant.getMaskOp();
  initEnv();

  // Closed-form kv range of this q-tile: loop bounds over kv-tiles.
  Value qLast = arith::SubIOp::create(
      b, loc, toI64(arith::AddIOp::create(b, loc, q0, rows)), cI64(1));
  env.q = {toI64(q0), qLast};
  rowQLo = env.q.lo;
  rowQHi = env.q.hi;
  env.kv = {cI64(0), arith::SubIOp::create(b, loc, sizeI64[4], cI64(1))};
  TileFacts rowFacts = emitTileFacts(b, loc, maskOp, env);
  Value nonEmpty = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                         rowFacts.kvLo, rowFacts.kvHi);
  Value ktBegin =
      arith::FloorDivSIOp::create(b, loc, rowFacts.kvLo, cI64(cfg.tk));
  Value ktEnd = arith::SelectOp::create(
      b, loc, nonEmpty,
      arith::AddIOp::create(
          b, loc,
          arith::FloorDivSIOp::create(b, loc, rowFacts.kvHi, cI64(cfg.tk)),
          cI64(1)),
      ktBegin);
  Value ktB = arith::IndexCastOp::create(b, loc, b.getIndexType(), ktBegin);
  Value ktE = arith::IndexCastOp::create(b, loc, b.getIndexType(), ktEnd);
  countWorkerTiles(
      kStatusTilesInRange,
      arith::TruncIOp::create(b, loc, b.getI32Type(),
                              arith::SubIOp::create(b, loc, ktEnd, ktBegin)));
  // Last kv-tile first: scores that grow towards the diagonal (ALiBi, a
  // causal row's nearest keys) set the running max early, so later tiles
  // rarely exceed it and need no rescale.
  forLoop(ktB, ktE, 1, [&](Value i) {
    Value ktIdx = arith::SubIOp::create(
        b, loc, arith::SubIOp::create(b, loc, ktE, cIdx(1)),
        arith::SubIOp::create(b, loc, i, ktB));
    emitKvTile(ktIdx, q0, rows);
  });
  epilogue(q0, rows);
  func::ReturnOp::create(b, loc);
  expandAttnOps(fn, kctx);
  return fn;
}

func::FuncOp TiledKernelBuilder::createFunction() {
  MLIRContext *ctx = variant.getContext();
  SmallVector<attn::ParamOp> runtimeParams;
  SmallVector<Type> inputs =
      kernelArgumentTypes(b, variant, elementType, runtimeParams);
  // The work item: (b, h, q-tile), then four buffers the host provides
  // per call: K^T, flat [B, Hkv, kvTiles, DP, Tk] (each kv-tile's K^T one
  // contiguous block, filled by the kernels themselves, see ensureKt); V
  // and K as f32 rows [B, Hkv, >= Lkv, DvP or DP] (head dims rounded up to
  // the vector width, any outer strides: the caller's own tensors when they
  // are already that, else padded copies); and one state word per kv-tile
  // of K^T, zero on entry.
  inputs.append(3, b.getIndexType());
  SmallVector<int64_t> dyn4(4, ShapedType::kDynamic);
  auto rowsType = MemRefType::get(
      dyn4, b.getF32Type(),
      StridedLayoutAttr::get(ctx, ShapedType::kDynamic,
                             {ShapedType::kDynamic, ShapedType::kDynamic,
                              ShapedType::kDynamic, 1}));
  inputs.push_back(MemRefType::get({ShapedType::kDynamic},
                                   b.getF32Type())); // K^T tiles
  inputs.push_back(rowsType);                        // V rows
  inputs.push_back(rowsType);                        // K rows
  inputs.push_back(MemRefType::get({ShapedType::kDynamic},
                                   b.getI32Type())); // K^T tile states
  // Tile summaries of data-dependent masks: for every rank-1 i32 or bool
  // tensor param, its (min, max) per tile of tile-q entries and per tile of
  // tile-kv entries, computed by the host in O(length) once per call (or
  // reused across calls), so that classifying a tile is O(1) whenever the
  // mask reads the param at q_idx or kv_idx.
  for (attn::ParamOp p : runtimeParams)
    if (p.isTensor() && p.getRank() == 1 && !p.getElementType().isF32()) {
      summarized.push_back(p);
      inputs.append(2,
                    MemRefType::get({ShapedType::kDynamic, 2}, b.getI32Type()));
    }
  auto fn = func::FuncOp::create(b, loc, variant.getSymName(),
                                 FunctionType::get(ctx, inputs, {}));
  body = fn.addEntryBlock();
  b.setInsertionPointToStart(body);
  entry = bindKernelEntry(b, loc, variant, body, runtimeParams, kctx);
  for (int i = 0; i < 7; ++i)
    sizeI64[i] = toI64(entry.sizeIdx[i]);
  unsigned prefix = entry.numLeading;
  bi = body->getArgument(prefix);
  hi = body->getArgument(prefix + 1);
  qtIdx = body->getArgument(prefix + 2);
  kt = body->getArgument(prefix + 3);
  vp = body->getArgument(prefix + 4);
  kr = body->getArgument(prefix + 5);
  kflags = body->getArgument(prefix + 6);
  for (auto [i, p] : llvm::enumerate(summarized))
    summaries[p.getSymName()] = {body->getArgument(prefix + 7 + 2 * i),
                                 body->getArgument(prefix + 8 + 2 * i)};
  b32 = toI32(bi);
  h32 = toI32(hi);
  hkv = arith::DivUIOp::create(
      b, loc, hi,
      arith::DivUIOp::create(b, loc, entry.sizeIdx[1], entry.sizeIdx[2]));
  return fn;
}

void TiledKernelBuilder::allocScratch() {
  auto scratch = [&](int64_t size) {
    auto op = memref::AllocaOp::create(b, loc,
                                       MemRefType::get({size}, b.getF32Type()));
    op.setAlignment(64);
    return op->getResult(0);
  };
  qp = scratch(cfg.tq * cfg.headDim);
  ktPrivate = memref::CastOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      scratch(dp * cfg.tk));
  s = scratch(cfg.tq * cfg.tk);
  oacc = scratch(cfg.tq * dvp);
  mrow = scratch(cfg.tq);
  lrow = scratch(cfg.tq * cfg.vw);
  if (variant.getMaskOp()) {
    auto ranges = [&]() {
      return memref::AllocaOp::create(
                 b, loc, MemRefType::get({cfg.tq / cfg.rows}, b.getIndexType()))
          ->getResult(0);
    };
    liveStart = ranges();
    liveCount = ranges();
    liveMixed = ranges();
    liveKeyLo = ranges();
    liveKeyEnd = ranges();
  }
}

void TiledKernelBuilder::initEnv() {
  env.b = toI64(bi);
  env.h = toI64(hi);
  for (int i = 0; i < 7; ++i)
    env.sizes[i] = sizeI64[i];
  env.scalarParam = [this](attn::ParamOp p) -> Value {
    auto it = kctx.params.find(p.getSymName());
    if (it == kctx.params.end() || !it->second.arg.getType().isInteger(32))
      return Value();
    return arith::ExtSIOp::create(b, loc, b.getI64Type(), it->second.arg);
  };
  // Ranges over index boxes, memoised by the box's SSA bounds: the q-side
  // box of a q-tile (e.g. doc[q_idx]) is first computed for the row of
  // tiles, before the kv loop, and reused by every kv-tile's facts.
  env.tensorRange = [this](attn::ParamOp p, ArrayRef<IntervalValues> idx) {
    return summaryRange(p, idx);
  };
}

std::optional<IntervalValues>
TiledKernelBuilder::summaryRange(attn::ParamOp p,
                                 ArrayRef<IntervalValues> idx) {
  std::pair<std::string, SmallVector<void *>> key;
  key.first = p.getSymName().str();
  for (const IntervalValues &r : idx) {
    key.second.push_back(r.lo.getAsOpaquePointer());
    key.second.push_back(r.hi.getAsOpaquePointer());
  }
  if (auto it = memo.find(key); it != memo.end())
    return it->second;
  std::optional<IntervalValues> result =
      [&]() -> std::optional<IntervalValues> {
    // p[q_idx] over this q-tile or p[kv_idx] over this kv-tile: one row
    // of the host's tile summary (its tile covers the box, possibly more).
    auto sum = summaries.find(p.getSymName());
    if (sum != summaries.end() && idx.size() == 1) {
      Value table, row;
      if (idx[0].lo == rowQLo && idx[0].hi == rowQHi) {
        table = sum->second.first;
        row = qtIdx;
      } else if (curKvLo && idx[0].lo == curKvLo && idx[0].hi == curKvHi) {
        table = sum->second.second;
        row = curKtIdx;
      }
      if (table) {
        Value t = kctx.params.find(p.getSymName())->second.arg;
        Value len = toI64(memref::DimOp::create(b, loc, t, 0));
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                             idx[0].hi, len);
        bool isBool = p.getElementType().isInteger(1);
        auto ifOp = scf::IfOp::create(
            b, loc, inside,
            [&](OpBuilder &, Location) {
              auto word = [&](int64_t col) {
                Value x = memref::LoadOp::create(b, loc, table,
                                                 ValueRange{row, cIdx(col)});
                return arith::ExtSIOp::create(b, loc, b.getI64Type(), x)
                    .getResult();
              };
              scf::YieldOp::create(b, loc, ValueRange{word(0), word(1)});
            },
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc,
                                   ValueRange{cI64(isBool ? 0 : INT32_MIN),
                                              cI64(isBool ? 1 : INT32_MAX)});
            });
        return IntervalValues{ifOp.getResult(0), ifOp.getResult(1)};
      }
    }
    // Other boxes: scanned when small, unknown otherwise.
    auto it = kctx.params.find(p.getSymName());
    if (it == kctx.params.end())
      return std::nullopt;
    return emitTensorBoxRange(b, loc, it->second.arg,
                              p.getElementType().isInteger(1), idx);
  }();
  // Only a box bounded by values of the function body (not of a loop
  // iteration) is reused: those dominate every later use.
  bool functionLevel = llvm::all_of(idx, [&](const IntervalValues &r) {
    return Value(r.lo).getParentBlock() == body &&
           Value(r.hi).getParentBlock() == body;
  });
  if (result && functionLevel && b.getInsertionBlock() == body)
    memo[key] = *result;
  return result;
}

void TiledKernelBuilder::emitKvTile(Value ktIdx, Value q0, Value rows) {
  attn::MaskOp maskOp = variant.getMaskOp();
  Value k0 = arith::MulIOp::create(b, loc, ktIdx, cIdx(cfg.tk));
  Value cols =
      minIdx(cIdx(cfg.tk), arith::SubIOp::create(b, loc, entry.sizeIdx[4], k0));
  TileEnv tileEnv = env;
  tileEnv.kv = {
      toI64(k0),
      arith::SubIOp::create(
          b, loc, toI64(arith::AddIOp::create(b, loc, k0, cols)), cI64(1))};
  curKvLo = tileEnv.kv.lo;
  curKvHi = tileEnv.kv.hi;
  curKtIdx = ktIdx;
  TileFacts facts = emitTileFacts(b, loc, maskOp, tileEnv);
  // All-false tiles are skipped; all-true ones run without the mask.
  scf::IfOp::create(b, loc, facts.mayBeTrue, [&](OpBuilder &, Location) {
    countWorkerTiles(kStatusTilesComputed, cI32(1));
    if (maskOp)
      computeLiveRanges(tileEnv, facts, q0, rows);
    curKvLo = curKvHi = curKtIdx = Value();
    std::pair<Value, Value> ktTile = ensureKt(ktIdx, k0, cols);
    microQK(rows, ktTile.first, ktTile.second);
    Value partial = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                          cols, cIdx(cfg.tk));
    // Whether row r needs the mask: its block is mixed, or the tile is
    // partial (its padding).
    auto rowNeedsMask = [&](Value r) -> Value {
      if (!liveMixed)
        return arith::OrIOp::create(b, loc, facts.mayBeFalse, partial);
      Value mixed = memref::LoadOp::create(
          b, loc, liveMixed,
          ValueRange{arith::DivUIOp::create(b, loc, r, cIdx(cfg.rows))});
      return arith::OrIOp::create(
          b, loc, partial,
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, mixed,
                                cIdx(0)));
    };
    RowModifier fused;
    if ((variant.getScoreOp() || maskOp) && vectorizedModifiers()) {
      // Score and mask on each vector as the softmax loads it: one pass
      // over the window.
      Value k032 = toI32(k0);
      fused = [&, k032](Value r) -> std::function<Value(Value, Value)> {
        Value q32 = toI32(arith::AddIOp::create(b, loc, q0, r));
        Value needMask = rowNeedsMask(r);
        return [this, q32, needMask, k032, cols](Value sv, Value col) {
          return modifyVector(sv, col, q32, k032, cols, needMask);
        };
      };
    } else if (variant.getScoreOp() || maskOp) {
      forLoop(cIdx(0), rows, 1, [&](Value r) {
        Value q32 = toI32(arith::AddIOp::create(b, loc, q0, r));
        modifyScores(offset(nullptr, cfg.tk, r), q32, k0, cols, rowNeedsMask(r),
                     liveRange(r));
      });
    } else {
      // No mask: only the padding of a partial tile is masked out.
      scf::IfOp::create(b, loc, partial, [&](OpBuilder &, Location) {
        forLoop(cIdx(0), rows, 1, [&](Value r) {
          forLoop(cols, cIdx(cfg.tk), 1, [&](Value j) {
            memref::StoreOp::create(
                b, loc, cF32(-INFINITY), s,
                ValueRange{arith::AddIOp::create(
                    b, loc, offset(nullptr, cfg.tk, r), j)});
          });
        });
        scf::YieldOp::create(b, loc);
      });
    }
    softmaxRows(rows, fused);
    if (liveMixed) {
      // The guarded P V only for tiles whose V is not all finite.
      scf::IfOp::create(
          b, loc, tileVNonFinite,
          [&](OpBuilder &, Location) {
            microPV(rows, k0, cols, /*guarded=*/true);
            scf::YieldOp::create(b, loc);
          },
          [&](OpBuilder &, Location) {
            microPV(rows, k0, cols, /*guarded=*/false);
            scf::YieldOp::create(b, loc);
          });
    } else {
      microPV(rows, k0, cols, /*guarded=*/false);
    }
    scf::YieldOp::create(b, loc);
  });
}

struct ConvertAttnToTiledKernelPass
    : public attnc::impl::ConvertAttnToTiledKernelBase<
          ConvertAttnToTiledKernelPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    static constexpr llvm::StringRef kTypes[] = {"f32", "f16"};
    Type elemType = parseElementType(b, elementType, kTypes);
    if (!elemType) {
      module.emitError() << "convert-attn-to-tiled-kernel: element-type must "
                            "be "
                         << elementTypeChoices(kTypes) << ", got '"
                         << elementType << "'";
      return signalPassFailure();
    }
    TileConfig cfg;
    cfg.tq = tileQ;
    cfg.tk = tileKV;
    cfg.vw = vectorWidth;
    cfg.headDim = headDim;
    cfg.valueDim = valueDim;
    if (cfg.vw <= 0 || cfg.tk % cfg.vw != 0 || cfg.tq % cfg.rows != 0 ||
        cfg.headDim <= 0 || cfg.valueDim <= 0) {
      module.emitError() << "convert-attn-to-tiled-kernel: tile-kv must be a "
                            "multiple of vector-width, tile-q a multiple of "
                         << cfg.rows << ", and head dims positive";
      return signalPassFailure();
    }
    SmallVector<attn::VariantOp> variants(module.getOps<attn::VariantOp>());
    for (attn::VariantOp variant : variants) {
      TiledKernelBuilder(variant, elemType, cfg).build();
      variant.erase();
    }
  }
};

} // namespace
