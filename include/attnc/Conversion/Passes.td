//===- Passes.td - attnc conversion passes --------------------------------===//

#ifndef ATTNC_CONVERSION_PASSES
#define ATTNC_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def ConvertAttnToLoops : Pass<"convert-attn-to-loops", "mlir::ModuleOp"> {
  let summary = "Lower each attn.variant to a plain reference kernel of scf loops";
  let description = [{
    Replaces every `attn.variant @name` by `func.func @name`, a
    straightforward, single-threaded kernel that is the numerical reference
    for every optimised path. For each query row `(b, h, i)` it makes two
    passes over the keys:

    1. `s_j = score(scale * dot(Q[b,h,i,:], K[b,hkv,j,:]), b, h, i, j)` for
       every `j` whose mask is true (the score is not evaluated where the
       mask is false), keeping the row maximum `M`;
    2. the weights (`exp(s_j - M)` for softmax, `sigmoid(s_j)`,
       `max(s_j, 0)`, or `s_j` for linear), accumulated in float32 against
       `V[b,hkv,j,:]` and divided by the row's denominator (softmax adds
       `exp(sink - M)` when there is a sink; linear divides by `sum_j s_j`).

    A row with no unmasked key gets `O = 0` and `LSE = -inf`.

    The kernel takes, in order: `Q, K, V, O` as strided rank-4 memrefs of
    `element-type`, `LSE` as a strided rank-3 f32 memref, then each runtime
    parameter in declaration order (tensors as strided memrefs of f32, i32
    or i8 for bool; scalars as f32 or i32, bool as i32), then an `i32` flag
    word (bit 0: write LSE) and an `i32` status memref of 8 entries. Const
    parameters are folded in. Run-time errors (a tensor index outside its
    shape, integer division by zero) are recorded in the status as
    `[code, param, dim, index, size]` and reported by the host.

    ```mlir
    // attn-opt --convert-attn-to-loops
    attn.variant @plain {}
    // becomes
    func.func @plain(%q: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, ...)
    ```
  }];
  let options = [
    Option<"elementType", "element-type", "std::string", "\"f32\"",
           "Element type of Q, K, V and O: f32 or f16">,
  ];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::func::FuncDialect",
    "mlir::math::MathDialect", "mlir::memref::MemRefDialect",
    "mlir::scf::SCFDialect"
  ];
}

def ConvertAttnToTiledKernel
    : Pass<"convert-attn-to-tiled-kernel", "mlir::ModuleOp"> {
  let summary = "Lower each attn.variant to a tiled, vectorised flash-attention work item";
  let description = [{
    Replaces every `attn.variant @name` by `func.func @name` computing one
    work item: the q-tile `qt` (`tile-q` rows) of one `(b, h)`. The kernel
    takes the arguments of `convert-attn-to-loops` followed by three
    `index` arguments `b, h, qt`; the host runs all work items, in any order
    and in parallel.

    Per q-tile it visits only the kv-tiles inside the closed-form kv range
    that the tile abstraction gives (loop bounds), skips tiles it proves
    all false, evaluates the mask only in mixed tiles, and runs FlashAttention's
    online softmax in log2 units (`exp2` with `log2(e)` folded into the
    scale) with register-blocked vector micro-kernels for `Q K^T` and `P V`.
    Sigmoid and relu accumulate plain weights and linear a running sum; the
    sink joins the denominator at the end. Head dimensions are compile-time
    constants (`head-dim`, `value-dim`); the run checks them.

    ```mlir
    // attn-opt --convert-attn-to-tiled-kernel="head-dim=64 value-dim=64"
    attn.variant @causal { ... }
    // becomes
    func.func @causal(..., %b: index, %h: index, %qt: index)
    ```
  }];
  let options = [
    Option<"elementType", "element-type", "std::string", "\"f32\"",
           "Element type of Q, K, V and O: f32 or f16">,
    Option<"headDim", "head-dim", "int64_t", "64", "Head dimension D">,
    Option<"valueDim", "value-dim", "int64_t", "64", "Value head dimension Dv">,
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes per vector (16 for AVX-512, 8 for AVX2 and NEON pairs)">,
    Option<"tileQ", "tile-q", "int64_t", "128", "Rows per q-tile (work item)">,
    Option<"tileKV", "tile-kv", "int64_t", "64", "Keys per kv-tile">,
  ];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::func::FuncDialect",
    "mlir::math::MathDialect", "mlir::memref::MemRefDialect",
    "mlir::scf::SCFDialect", "mlir::vector::VectorDialect"
  ];
}

#endif // ATTNC_CONVERSION_PASSES
