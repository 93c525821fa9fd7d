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
    word (bit 0: write LSE) and an `i32` status memref of 5 entries. Const
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

#endif // ATTNC_CONVERSION_PASSES
