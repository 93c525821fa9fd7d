//===- PrintTileMap.cpp - Print the mask analysis as tile maps ------------===//
//
// Evaluates the tile abstraction with constant sizes into a scratch module,
// where every emitted op folds to a constant, and prints the result: the
// closed-form kv range per q-tile and the class of every tile.
//
//===----------------------------------------------------------------------===//

#include "attnc/Analysis/TileAbstraction.h"
#include "attnc/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "llvm/Support/raw_ostream.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNPRINTTILEMAP
#include "attnc/Transforms/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;

namespace {

std::optional<int64_t> constantOf(Value v) {
  APInt x;
  if (matchPattern(v, m_ConstantInt(&x)))
    return v.getType().isInteger(1) ? (int64_t)x.getZExtValue()
                                    : x.getSExtValue();
  return std::nullopt;
}

struct AttnPrintTileMapPass
    : public attnc::impl::AttnPrintTileMapBase<AttnPrintTileMapPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::StringMap<int64_t> known;
    for (const std::string &p : params) {
      size_t eq = p.find('=');
      int64_t v;
      if (eq == std::string::npos ||
          llvm::StringRef(p).substr(eq + 1).getAsInteger(10, v)) {
        module.emitError() << "attn-print-tile-map: params entry '" << p
                           << "' is not NAME=INT";
        return signalPassFailure();
      }
      known[p.substr(0, eq)] = v;
    }
    if (tq <= 0 || tk <= 0 || lq < 0 || lkv < 0 || blockRows < 0) {
      module.emitError() << "attn-print-tile-map: tile sizes must be "
                            "positive, lengths and block-rows non-negative";
      return signalPassFailure();
    }
    for (auto variant : module.getOps<attn::VariantOp>())
      print(variant, known);
  }

  void print(attn::VariantOp variant, const llvm::StringMap<int64_t> &known) {
    llvm::raw_ostream &os = llvm::outs();
    OpBuilder b(variant.getContext());
    Location loc = variant.getLoc();
    OwningOpRef<ModuleOp> scratch = ModuleOp::create(b, loc);
    b.setInsertionPointToStart(scratch->getBody());
    auto cst = [&](int64_t v) -> Value {
      return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
    };
    TileEnv env;
    env.b = cst(0);
    env.h = cst(0);
    int64_t sizes[7] = {1, heads, heads, lq, lkv, headDim, headDim};
    for (int i = 0; i < 7; ++i)
      env.sizes[i] = cst(sizes[i]);
    env.scalarParam = [&](attn::ParamOp p) -> Value {
      auto it = known.find(p.getSymName());
      return it == known.end() ? Value() : cst(it->second);
    };
    attn::MaskOp mask = variant.getMaskOp();
    attn::ScoreOp score = variant.getScoreOp();
    int64_t nq = (lq + tq - 1) / tq, nk = (lkv + tk - 1) / tk;

    os << "variant " << variant.getSymName() << ": Tq=" << tq << " Tk=" << tk
       << " Lq=" << lq << " Lkv=" << lkv << "\n";
    os << "  score reads indices: "
       << (score && score.readsIndices() ? "yes" : "no") << "\n";
    // The closed-form range over a whole row of tiles decides whether loop
    // bounds alone skip the empty tiles.
    env.q = {cst(0), cst(std::max<int64_t>(lq - 1, 0))};
    env.kv = {cst(0), cst(std::max<int64_t>(lkv - 1, 0))};
    TileFacts whole = emitTileFacts(b, loc, mask, env);
    os << "  closed-form kv range: " << (whole.boundedKv ? "yes" : "no")
       << "\n";
    os << "  data-dependent: " << (whole.readsTensors ? "yes" : "no") << "\n";
    int64_t counts[3] = {0, 0, 0}; // false, true, mixed
    int64_t outside = 0, insideFalse = 0;
    for (int64_t qt = 0; qt < nq; ++qt) {
      int64_t q0 = qt * tq, q1 = std::min<int64_t>(lq, q0 + tq) - 1;
      env.q = {cst(q0), cst(q1)};
      env.kv = {cst(0), cst(std::max<int64_t>(lkv - 1, 0))};
      TileFacts row = emitTileFacts(b, loc, mask, env);
      std::optional<int64_t> lo = constantOf(row.kvLo),
                             hi = constantOf(row.kvHi);
      os << "  q-tile " << qt << " kv ";
      if (lo && hi && *lo > *hi)
        os << "[]";
      else if (lo && hi)
        os << "[" << *lo << ", " << *hi << "]";
      else
        os << "[?]";
      os << "  ";
      std::string blocks;
      for (int64_t kt = 0; kt < nk; ++kt) {
        int64_t k0 = kt * tk, k1 = std::min<int64_t>(lkv, k0 + tk) - 1;
        env.kv = {cst(k0), cst(k1)};
        TileFacts t = emitTileFacts(b, loc, mask, env);
        std::optional<int64_t> mayT = constantOf(t.mayBeTrue),
                               mayF = constantOf(t.mayBeFalse);
        char c = '?';
        if (mayT && mayF) {
          c = !*mayT ? '.' : (!*mayF ? 'T' : 'M');
          counts[c == '.' ? 0 : c == 'T' ? 1 : 2]++;
        }
        bool inRange = !(lo && hi) || (k1 >= *lo && k0 <= *hi);
        if (!inRange)
          ++outside;
        else if (c == '.')
          ++insideFalse;
        os << c;
        if (blockRows > 0 && inRange && c == 'M') {
          blocks += "    kv-tile " + std::to_string(kt) + " blocks:";
          for (int64_t r0 = q0; r0 <= q1; r0 += blockRows) {
            TileEnv blockEnv = env;
            blockEnv.q = {cst(r0), cst(std::min(q1, r0 + blockRows - 1))};
            TileFacts bf = emitTileFacts(b, loc, mask, blockEnv);
            // Clipped to the tile, as the kernel does.
            std::optional<int64_t> mayT = constantOf(bf.mayBeTrue),
                                   blo = constantOf(bf.kvLo),
                                   bhi = constantOf(bf.kvHi);
            std::string r = "[?]";
            if (mayT && blo && bhi) {
              int64_t lo = std::max(*blo, k0), hi = std::min(*bhi, k1);
              r = !*mayT || lo > hi ? "[]"
                                    : "[" + std::to_string(lo) + ", " +
                                          std::to_string(hi) + "]";
            }
            blocks += " " + r;
          }
          blocks += "\n";
        }
      }
      os << "\n" << blocks;
    }
    os << "  tiles: " << counts[1] << " all-true, " << counts[2] << " mixed, "
       << counts[0] << " all-false (" << outside << " skipped by loop bounds, "
       << insideFalse << " by classification)\n";
  }
};

} // namespace
