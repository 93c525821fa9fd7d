//===- AttnOps.td - The attn dialect: attention variants as IR -----------===//
//
// One `attn.variant` holds one attention variant of the .attn language: its
// parameters and the four items of the contract (scale, score modifier, mask,
// normalisation), each item an op whose region computes one scalar from the
// indices of a score entry. Expressions inside the regions are `arith` and
// `math` ops plus the few `attn` ops below that need run-time checks or name
// the problem's sizes and parameters. Later passes read the regions to
// analyse masks and inline the expressions into kernels.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_OPS
#define ATTN_OPS

include "mlir/IR/OpBase.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

//===----------------------------------------------------------------------===//
// Dialect
//===----------------------------------------------------------------------===//

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::mlir::attn";
  let hasConstantMaterializer = 1;
  let dependentDialects = ["::mlir::arith::ArithDialect"];
  let summary = "Attention variants: parameters, score modifier, mask and normalisation";
  let description = [{
    The `attn` dialect is the compiler's representation of an attention
    variant written in the `.attn` language. A variant computes, for every
    query row `(b, h, i)`,

    ```
    s_ij = scale * dot(Q[b,h,i,:], K[b,hkv,j,:])
    s_ij = score(s_ij, b, h, i, j)
    O[b,h,i,:] = normalise { (s_ij, V[b,hkv,j,:]) : mask(b, h, i, j) }
    ```

    Each part is an op with a region of scalar code, so that analyses (mask
    tile classification, whether the score reads the indices) and lowerings
    (reference loops, tiled kernels, GPU code) all read the same source of
    truth. Regions are isolated from above: everything they read comes from
    their block arguments, `attn.size`, `attn.param_get` and
    `attn.param_load`.

    ```mlir
    attn.variant @alibi {
      attn.param @slopes : f32[H]
      attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
        %slope = attn.param_load @slopes[%h] : f32
        %d = arith.subi %kv, %q : i32
        %df = arith.sitofp %d : i32 to f32
        %bias = arith.mulf %slope, %df : f32
        %r = arith.addf %s, %bias : f32
        attn.yield %r : f32
      }
      attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
        %m = arith.cmpi sle, %kv, %q : i32
        attn.yield %m : i1
      }
      attn.normalize softmax
    }
    ```
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Attn_SizeKind : I32EnumAttr<"SizeKind", "a named size of the problem", [
    I32EnumAttrCase<"B", 0>, I32EnumAttrCase<"H", 1>,
    I32EnumAttrCase<"Hkv", 2>, I32EnumAttrCase<"Lq", 3>,
    I32EnumAttrCase<"Lkv", 4>, I32EnumAttrCase<"D", 5>,
    I32EnumAttrCase<"Dv", 6>]> {
  let cppNamespace = "::mlir::attn";
}

def Attn_NormKind : I32EnumAttr<"NormKind", "a normalisation of the scores", [
    I32EnumAttrCase<"softmax", 0>, I32EnumAttrCase<"sigmoid", 1>,
    I32EnumAttrCase<"relu", 2>, I32EnumAttrCase<"linear", 3>]> {
  let cppNamespace = "::mlir::attn";
}

//===----------------------------------------------------------------------===//
// Variant and its items
//===----------------------------------------------------------------------===//

def Attn_VariantOp : Attn_Op<"variant", [
    Symbol, SymbolTable, IsolatedFromAbove, NoTerminator, SingleBlock,
    NoRegionArguments]> {
  let summary = "One attention variant";
  let description = [{
    Holds one `attention NAME { ... }` block of the language. The body holds
    `attn.param` declarations and at most one each of `attn.scale`,
    `attn.score`, `attn.mask` and `attn.normalize`. A missing item takes the
    language's default: scale `1 / sqrt(D)`, the identity score, the
    all-true mask and plain softmax. After `attn-differentiate` it may also
    hold `attn.score_grad` (when it has a score) and `attn.sink_grad` (when
    its sink reads float runtime parameters): the backward form.

    ```mlir
    attn.variant @causal {
      attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
        %m = arith.cmpi sle, %kv, %q : i32
        attn.yield %m : i1
      }
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
  let hasVerifier = 1;
  let skipDefaultBuilders = 1;
  let builders = [OpBuilder<(ins "::llvm::StringRef":$name)>];
  let extraClassDeclaration = [{
    /// The items of the variant, or null when absent.
    ScaleOp getScaleOp();
    ScoreOp getScoreOp();
    MaskOp getMaskOp();
    NormalizeOp getNormalizeOp();
    ScoreGradOp getScoreGradOp();
    SinkGradOp getSinkGradOp();
    /// The normalisation (softmax when the item is absent).
    NormKind getNormKind();
    /// The parameters in declaration order.
    ::llvm::SmallVector<ParamOp> getParams();
  }];
}

def Attn_ParamOp : Attn_Op<"param", [Symbol, HasParent<"VariantOp">]> {
  let summary = "A parameter of a variant: runtime scalar, runtime tensor or const";
  let description = [{
    Declares a parameter. `element_type` is `i1` (bool), `i32` or `f32`.
    When `dims` is present the parameter is a tensor whose dimensions are
    size names (`B`, `H`, `Hkv`, `Lq`, `Lkv`, `D`, `Dv`), positive integers
    or `?`; shapes are checked when a kernel runs. `value` is the default of
    a runtime scalar, or the value of a `const` parameter, which is baked into
    compiled kernels (it is part of the kernel's identity).

    ```mlir
    attn.param @slopes : f32[H]
    attn.param @window : i32 = 4096
    attn.param const @cap : f32 = 5.000000e+01
    attn.param @blocks : i1[?, 64]
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttr:$element_type,
                   OptionalAttr<ArrayAttr>:$dims, UnitAttr:$is_const,
                   OptionalAttr<TypedAttrInterface>:$value);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool isTensor() { return getDims().has_value(); }
    unsigned getRank() { return getDims() ? getDims()->size() : 0; }
  }];
}

def Attn_ScaleOp : Attn_Op<"scale", [
    HasParent<"VariantOp">, IsolatedFromAbove]> {
  let summary = "The factor applied to the dot product";
  let description = [{
    A region with no arguments yielding the `f32` scale. It may read sizes
    and `const` parameters only (the verifier rejects `attn.param_load` and
    `attn.param_get` of a runtime parameter here): it is one value per
    kernel, worked out once before the kernel's loops.

    ```mlir
    attn.scale {
      %c = arith.constant 1.250000e-01 : f32
      attn.yield %c : f32
    }
    ```
  }];
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "attr-dict-with-keyword $body";
  let hasRegionVerifier = 1;
}

def Attn_ScoreOp : Attn_Op<"score", [
    HasParent<"VariantOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "The score modifier";
  let description = [{
    A region over `(b, h, q_idx, kv_idx : i32, score : f32)` yielding the
    modified `f32` score; `score` is the scaled dot product.

    ```mlir
    attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
      %c = arith.constant 5.000000e+01 : f32
      %d = arith.divf %s, %c : f32
      %t = math.tanh %d : f32
      %r = arith.mulf %c, %t : f32
      attn.yield %r : f32
    }
    ```
  }];
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    /// True when the region reads b, h, q_idx or kv_idx.
    bool readsIndices();
  }];
}

def Attn_MaskOp : Attn_Op<"mask", [
    HasParent<"VariantOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "The mask: which score entries take part";
  let description = [{
    A region over `(b, h, q_idx, kv_idx : i32)` yielding `i1`: true keeps
    the entry.

    ```mlir
    attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
      %m = arith.cmpi sle, %kv, %q : i32
      attn.yield %m : i1
    }
    ```
  }];
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasRegionVerifier = 1;
}

def Attn_NormalizeOp : Attn_Op<"normalize", [
    HasParent<"VariantOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "The normalisation of the scores";
  let description = [{
    `softmax`, `sigmoid`, `relu` or `linear`. Softmax may carry a `sink`
    region over `(b, h : i32)` yielding the `f32` sink logit `e`, which adds
    `exp(e)` to the denominator.

    ```mlir
    attn.normalize softmax sink(%b: i32, %h: i32) {
      %z = arith.constant 0.000000e+00 : f32
      attn.yield %z : f32
    }
    ```
  }];
  let arguments = (ins Attn_NormKind:$kind);
  let regions = (region AnyRegion:$sink);
  let hasCustomAssemblyFormat = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    bool hasSink() { return !getSink().empty(); }
  }];
}

//===----------------------------------------------------------------------===//
// Gradients (attn-differentiate)
//===----------------------------------------------------------------------===//

def Attn_ScoreGradOp : Attn_Op<"score_grad", [
    HasParent<"VariantOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "The derivative of the score modifier, as a vector-Jacobian product";
  let description = [{
    The backward form of `attn.score`, made by the `attn-differentiate`
    pass. A region over `(b, h, q_idx, kv_idx : i32, score : f32,
    dt : f32)`: `score` is the scaled dot product `s` of the entry, as in
    `attn.score`, and `dt` is the gradient of the loss with respect to the
    modified score `t = score(s)`. The region yields `dt * dt/ds`, the
    gradient with respect to `s`, and adds `dt * dt/dp` to the gradient of
    every float runtime parameter `p` that the score reads, with
    `attn.accumulate_grad` at the indices it reads (a scatter-add for
    tensors). It recomputes from `score` whatever primal values the
    derivative needs; kernels run it only for entries the mask keeps.

    ```mlir
    attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %score: f32, %dt: f32) {
      %slope = attn.param_load @slopes[%h] : f32
      %d = arith.subi %kv, %q : i32
      %df = arith.sitofp %d : i32 to f32
      %g = arith.mulf %dt, %df : f32
      attn.accumulate_grad %g to @slopes[%h]
      attn.yield %dt : f32
    }
    ```
  }];
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasRegionVerifier = 1;
}

def Attn_SinkGradOp : Attn_Op<"sink_grad", [
    HasParent<"VariantOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "The derivative of the sink expression, as a vector-Jacobian product";
  let description = [{
    The backward form of the `sink` region of `attn.normalize`, made by
    `attn-differentiate` when the sink reads float runtime parameters. A
    region over `(b, h : i32, de : f32)`, where `de` is the gradient of the
    loss with respect to the sink logit `e` of the head `(b, h)` (summed
    over its rows); it adds `de * de/dp` to the gradient of every float
    runtime parameter `p` the sink reads and ends with a plain
    `attn.yield`.

    ```mlir
    attn.sink_grad(%b: i32, %h: i32, %de: f32) {
      attn.accumulate_grad %de to @sinks[%h]
      attn.yield
    }
    ```
  }];
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasRegionVerifier = 1;
}

def Attn_AccumulateGradOp : Attn_Op<"accumulate_grad", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Adds to the gradient of a float runtime parameter";
  let description = [{
    `grad(param)[indices...] += value`, inside `attn.score_grad` or
    `attn.sink_grad`. The parameter is a runtime `f32` scalar (no indices)
    or tensor (one `i32` index per dimension, the indices at which the
    primal expression read it). Kernels give every float runtime parameter
    a gradient buffer of its shape, zero on entry, and sum the
    contributions of all score entries (tensors: a scatter-add). An index
    outside the shape adds nothing: the primal read at the same indices
    already reported the error.

    ```mlir
    attn.accumulate_grad %g to @temp
    attn.accumulate_grad %g to @bias[%h, %q, %kv]
    ```
  }];
  let arguments = (ins F32:$value, FlatSymbolRefAttr:$param,
                   Variadic<I32>:$indices);
  let assemblyFormat =
      "$value `to` $param (`[` $indices^ `]`)? attr-dict";
  let hasVerifier = 1;
}

def Attn_YieldOp : Attn_Op<"yield", [
    Pure, Terminator, ReturnLike,
    ParentOneOf<["ScaleOp", "ScoreOp", "MaskOp", "NormalizeOp",
                 "ScoreGradOp", "SinkGradOp"]>]> {
  let summary = "Yields the value of an item's region";
  let description = [{
    Ends an item's region with the value it computes. `attn.sink_grad`,
    which only accumulates gradients, ends with an `attn.yield` of no
    value.
  }];
  let arguments = (ins Optional<AnyTypeOf<[I1, I32, F32]>>:$value);
  let assemblyFormat = "attr-dict ($value^ `:` type($value))?";
}

//===----------------------------------------------------------------------===//
// Expression ops
//===----------------------------------------------------------------------===//

def Attn_SizeOp : Attn_Op<"size", [Pure]> {
  let summary = "A named size of the problem";
  let description = [{
    The value of `B`, `H`, `Hkv`, `Lq`, `Lkv`, `D` or `Dv` as `i32`.

    ```mlir
    %d = attn.size D
    ```
  }];
  let arguments = (ins Attn_SizeKind:$kind);
  let results = (outs I32:$result);
  let assemblyFormat = "$kind attr-dict";
}

def Attn_ParamGetOp : Attn_Op<"param_get", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "The value of a scalar parameter";
  let description = [{
    Reads a scalar parameter of the enclosing variant. A `const` parameter
    folds to its value.

    ```mlir
    %w = attn.param_get @window : i32
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param);
  let results = (outs AnyTypeOf<[I1, I32, F32]>:$result);
  let assemblyFormat = "$param attr-dict `:` type($result)";
  let hasFolder = 1;
}

def Attn_ParamLoadOp : Attn_Op<"param_load", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "An element of a tensor parameter";
  let description = [{
    Reads `param[indices...]`. An index outside the shape is an error that
    the run reports (kernels record it and the runtime turns it into a
    message naming the parameter); it is never undefined behaviour.

    ```mlir
    %s = attn.param_load @slopes[%h] : f32
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param, Variadic<I32>:$indices);
  let results = (outs AnyTypeOf<[I1, I32, F32]>:$result);
  let assemblyFormat = "$param `[` $indices `]` attr-dict `:` type($result)";
}

def Attn_FloorDivOp : Attn_Op<"floordiv", []> {
  let summary = "Integer floor division with a checked divisor";
  let description = [{
    `lhs / rhs` rounded toward negative infinity (`-3 / 2 == -2`). A zero
    divisor is an error that the run reports.
  }];
  let arguments = (ins I32:$lhs, I32:$rhs);
  let results = (outs I32:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
}

def Attn_FloorModOp : Attn_Op<"floormod", []> {
  let summary = "Integer floor modulo with a checked divisor";
  let description = [{
    `lhs - floor(lhs / rhs) * rhs`, which has the sign of `rhs`
    (`-3 % 2 == 1`). A zero divisor is an error that the run reports.
  }];
  let arguments = (ins I32:$lhs, I32:$rhs);
  let results = (outs I32:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
}

#endif // ATTN_OPS
