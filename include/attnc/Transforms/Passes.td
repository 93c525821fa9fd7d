//===- Passes.td - attnc transformation and analysis passes ---------------===//

#ifndef ATTNC_TRANSFORMS_PASSES
#define ATTNC_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def AttnPrintTileMap : Pass<"attn-print-tile-map", "mlir::ModuleOp"> {
  let summary = "Print the mask analysis of every variant as a tile map";
  let description = [{
    Runs the tile abstraction (lib/Analysis/TileAbstraction.cpp) on each
    variant's mask for concrete sizes and prints, per q-tile, the
    closed-form range of kv indices that loop bounds visit, and per
    (q-tile, kv-tile) whether the mask is all true (`T`), all false (`.`) or
    mixed (`M`). It also says whether the score modifier reads the indices,
    whether the kv range is closed-form (no per-tile table is needed to skip
    the empty tiles of a row) and whether the mask depends on tensor data.
    Runtime scalar params are unknown unless given with `params`. With
    `block-rows=R`, every mixed tile inside the range also gets a line with
    the kv range of each block of R rows clipped to the tile (`[]`: none):
    the live windows of the tiled CPU kernel (R = 4 there).

    ```
    // attn-opt --attn-print-tile-map="tq=2 tk=2 lq=8 lkv=8"
    variant causal: Tq=2 Tk=2 Lq=8 Lkv=8
      closed-form kv range: yes
      q-tile 0 kv [0, 1]  T...
      q-tile 1 kv [0, 3]  MT..
    ```
  }];
  let options = [
    Option<"tq", "tq", "int64_t", "64", "Rows per q-tile">,
    Option<"tk", "tk", "int64_t", "64", "Keys per kv-tile">,
    Option<"lq", "lq", "int64_t", "256", "Query length Lq">,
    Option<"lkv", "lkv", "int64_t", "256", "Key length Lkv">,
    Option<"heads", "h", "int64_t", "1", "Number of heads H (= Hkv)">,
    Option<"headDim", "d", "int64_t", "64", "Head dimension D (= Dv)">,
    ListOption<"params", "params", "std::string",
               "Runtime scalar params as NAME=INT">,
    Option<"blockRows", "block-rows", "int64_t", "0",
           "Also print the kv range of each block of this many rows in "
           "every mixed tile (0: no)">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect"];
}

def AttnDifferentiate : Pass<"attn-differentiate", "mlir::ModuleOp"> {
  let summary = "Derive the backward form of every variant";
  let description = [{
    Adds to each `attn.variant` the derivatives its backward pass needs,
    as ordinary `attn` IR: an `attn.score_grad` region (when the variant
    has a score modifier) that receives `dt`, the gradient of the loss with
    respect to the modified score, recomputes the score expression from the
    raw score, and yields `ds = dt * dt/ds` while adding `dt * dt/dp` to the
    gradient of every `f32` runtime param `p` the score reads
    (`attn.accumulate_grad` at the indices it reads: a scatter-add for
    tensors); and an `attn.sink_grad` region when the sink reads such
    params. Differentiation is symbolic and reverse-mode: `+ - * /`, `exp`,
    `log`, `sqrt`, `tanh`, MLIRGen's expanded `sigmoid` (as
    `sigmoid (1 - sigmoid)`), `pow`, `abs`, `min`/`max`, `select`, casts,
    `floor`/`ceil` (zero) and the lazy `scf.if` of guarded reads. At
    non-differentiable points it follows PyTorch: `abs'(0) = 0`, `max` and
    `min` route the gradient to their first argument on ties. Masks,
    comparisons and integer expressions are not differentiated; a float
    param that only the mask reads gets a zero gradient and a warning.
    Another op on a differentiable path is an error at that op.

    ```mlir
    attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %score: f32) {
      %t = attn.param_get @temp : f32
      %r = arith.divf %score, %t : f32
      attn.yield %r : f32
    }
    // gains (attn-opt --attn-differentiate --canonicalize)
    attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %score: f32, %dt: f32) {
      %t = attn.param_get @temp : f32
      %r = arith.divf %score, %t : f32
      %0 = arith.mulf %dt, %r : f32
      %1 = arith.divf %0, %t : f32
      %2 = arith.negf %1 : f32
      attn.accumulate_grad %2 to @temp
      %ds = arith.divf %dt, %t : f32
      attn.yield %ds : f32
    }
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::math::MathDialect",
                           "mlir::scf::SCFDialect"];
}

def AttnApproximateMath : Pass<"attn-approximate-math"> {
  let summary = "Replace math functions by vectorisable polynomial approximations";
  let description = [{
    Rewrites `math.tanh`, `math.exp`, `math.log`, `math.erf` and the other
    functions that MLIR's polynomial approximations cover into arithmetic
    that LLVM vectorises, accurate to a few ulp in f32. Without it a vector
    `math.tanh` becomes one libm call per lane. The tiled CPU pipeline runs
    it; the reference pipeline keeps libm.

    ```mlir
    %t = math.tanh %x : vector<16xf32>
    // becomes clamps, a rational polynomial and selects on vector<16xf32>
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::math::MathDialect",
                           "mlir::vector::VectorDialect"];
}

def AttnExpandIntegerDivision : Pass<"attn-expand-integer-division"> {
  let summary = "Expand floor and ceil integer division, keep float min/max";
  let description = [{
    Rewrites `arith.floordivsi`, `arith.ceildivsi` and `arith.ceildivui`,
    which have no LLVM counterpart, into plain divisions, compares and
    selects, and leaves every other op alone. The GPU pipeline runs it
    instead of `arith-expand`, which also expands `arith.maxnumf` and
    `arith.maximumf` into compares and selects: left alone, arith-to-llvm
    maps them to `llvm.maxnum` and `llvm.maximum`, which are one PTX
    `max.f32` (`max.NaN.f32`) each, the row max of every softmax entry.

    ```mlir
    %q = arith.floordivsi %a, %b : i32   // becomes divsi, compares, select
    %m = arith.maxnumf %x, %y : f32      // unchanged
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect"];
}

def AttnReassociateIndexOffsets : Pass<"attn-reassociate-index-offsets"> {
  let summary = "Move integer constants out of index arithmetic and int-to-float conversions";
  let description = [{
    The GPU kernels evaluate the score modifier and the mask once per
    accumulator element, at kv index `k0 + 2 tig + c` with `c` a constant per
    element. A score such as ALiBi's `slopes[h] * f32(kv_idx - q_idx)` would
    then convert an integer to float once per element, on the unit that also
    computes the softmax's `exp2`, at an eighth of the rate of float adds.
    This pass moves the constants outwards through `arith.addi`,
    `arith.subi`, `arith.muli` by a constant and `arith.index_cast` to 32
    bits or fewer (all exact in two's complement), and then through
    `arith.sitofp` to f32 or f64, so that CSE keeps one conversion per row
    and tile and each element pays a float add.

    ```mlir
    %k = arith.addi %base, %c9 : index
    %k32 = arith.index_cast %k : index to i32
    %d = arith.subi %k32, %q : i32
    %f = arith.sitofp %d : i32 to f32
    // becomes
    %b32 = arith.index_cast %base : index to i32
    %d0 = arith.subi %b32, %q : i32
    %f0 = arith.sitofp %d0 : i32 to f32
    %f = arith.addf %f0, %cst9 : f32   // 9.0
    ```

    Moving the constant through the conversion (i32 or wider operands, f32
    or f64 results, constants up to 2^24) is exact while the integers stay
    below 2^24 in magnitude (f32) and the remaining sum does not wrap where
    the original did not: every index expression of a sequence shorter
    than 16M keys. Beyond that the two may differ by a rounding. Vectors
    are left alone.
    The GPU pipeline runs it right after building the kernel, with
    `integer=true` for the wgmma kernel only.
  }];
  let options = [
    Option<"integer", "integer", "bool", "true",
           "Also move the constants outwards in all integer arithmetic "
           "(adds, subtractions, index casts to 32 bits or fewer), not only "
           "in the expressions that int-to-float conversions read. On the "
           "H100 this helped the wgmma kernel's masked variants by 3 to 14% "
           "at D=64 and cost the mma.sync kernel's 2 to 7% at D=128.">,
  ];
  let dependentDialects = ["mlir::arith::ArithDialect"];
}

#endif // ATTNC_TRANSFORMS_PASSES
