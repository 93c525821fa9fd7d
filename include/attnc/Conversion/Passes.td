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
    all false, and in a mixed tile asks the abstraction again for every
    block of 4 rows: the block's kv range, clipped to the tile, is its live
    window (whole vectors from the range's first key), and `Q K^T`, the
    mask, the softmax and `P V` run only over that window (a causal
    diagonal, a sliding window's band, a 2-D neighbourhood's columns);
    blocks proven all true skip the mask. It runs FlashAttention's online
    softmax in log2 units (`exp2` with `log2(e)` folded into the scale,
    the running max moved only when a score exceeds it by more than 8, so
    most tiles need no rescale) with register-blocked vector micro-kernels
    for `Q K^T` and `P V`.
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

def ConvertAttnToGPUKernel
    : Pass<"convert-attn-to-gpu-kernel", "mlir::ModuleOp"> {
  let summary = "Lower each attn.variant to a flash-attention GPU kernel (gpu.func)";
  let description = [{
    Replaces every `attn.variant @name` by `gpu.module @name` holding the
    kernel `gpu.func @name`, and marks the module `gpu.container_module`.
    Its tile-q and tile-kv are its plan's (`GpuKernelPlan`, from
    `planGpuKernel`, or given whole: `createConvertAttnToGPUKernel(plan)`).
    The kernel takes the arguments of `convert-attn-to-loops` (Q, K, V, O,
    LSE, the runtime params, the flag word and the status memref); there
    are no index arguments: the host launches `B * H * ceil(Lq / tile-q)`
    blocks of `tile-q` threads. The B * H heads fall into groups of G
    consecutive heads (h fastest), G = clamp(16 MiB / (Lkv * (D + Dv) *
    element bytes), 1, B * H), so that the K and V of the heads whose blocks
    run at once stay in the L2 cache; the groups run one after another and
    inside a group block `i` takes the q-tile `ceil(Lq / tile-q) - 1 - i /
    Gg` of head `i mod Gg` of the group (Gg: the group's heads, fewer in the
    last), so the last q-tiles (the longest under causal masks) start
    first.

    Each thread owns one query row. For every kv-tile inside the closed-form
    kv range of the q-tile (loop bounds from the tile abstraction) that the
    abstraction does not prove all false, the block stages the K and V rows
    of the tile in shared memory (`#gpu.address_space<workgroup>`
    attributions, in the element type), then every thread computes its
    scores, applies the score modifier and (only in mixed or partial tiles)
    the mask per element, and updates its online softmax in f32 with `exp2`
    (log2(e) folded into the scale). Sigmoid, relu and linear accumulate
    plain weights; the sink joins the denominator at the end. Run-time
    errors go to the global status buffer; thread 0 of each block counts
    tiles in status words 5 and 6 with atomics.

    ```mlir
    // attn-opt --convert-attn-to-gpu-kernel="element-type=f16"
    attn.variant @causal { ... }
    // becomes
    module attributes {gpu.container_module} {
      gpu.module @causal {
        gpu.func @causal(...) workgroup(%kt : memref<4096xf16, #gpu.address_space<workgroup>>, ...)
            kernel attributes {known_block_size = array<i32: 128, 1, 1>} { ... }
      }
    }
    ```
  }];
  let options = [
    Option<"elementType", "element-type", "std::string", "\"f16\"",
           "Element type of Q, K, V and O: f16, bf16 or f32">,
    Option<"headDim", "head-dim", "int64_t", "64", "Head dimension D">,
    Option<"valueDim", "value-dim", "int64_t", "64", "Value head dimension Dv">,
    Option<"tileQ", "tile-q", "int64_t", "128",
           "Rows per q-tile, which is also the number of threads per block">,
    Option<"tileKV", "tile-kv", "int64_t", "0",
           "Keys per kv-tile (0: the largest power of two up to 64 whose K "
           "and V tiles fit in 32 KiB of shared memory)">,
  ];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::gpu::GPUDialect",
    "mlir::math::MathDialect", "mlir::memref::MemRefDialect",
    "mlir::scf::SCFDialect"
  ];
}

def ConvertAttnToMMAKernel
    : Pass<"convert-attn-to-mma-kernel", "mlir::ModuleOp"> {
  let summary = "Lower each attn.variant to a tensor-core flash-attention GPU kernel";
  let description = [{
    Replaces every `attn.variant @name` by `gpu.module @name` holding the
    kernel `gpu.func @name` (same arguments and block numbering as
    `convert-attn-to-gpu-kernel`), computed on tensor cores: Q K^T and P V
    are `nvvm.mma.sync` m16n8k16 operations on f16 or bf16 fragments with
    f32 accumulators. What the kernel is (its tile, warps, shared memory,
    persistence and mark kernel) is its plan (`GpuKernelPlan`), which
    `planGpuKernel` decides for each variant from these options; a pipeline
    that has planned the kernel already passes the plan itself
    (`createConvertAttnToMMAKernel(plan)`), and the pass builds exactly
    that. `attnc --emit=plan --target nvptx` prints it. For mma.sync: 4
    warps per block, each owning 32 query rows (two m16 tiles, so that every
    K or V fragment read from shared memory feeds two mma) when Dv <= 128
    and 16 otherwise; the host launches `B * H * ceil(Lq / rows)` blocks of
    128 threads with the plan's dynamic shared memory (`MMAKernelConfig.h`
    lays it out).

    The Q tile and K and V tiles of `tile-kv` rows live in
    `gpu.dynamic_shared_memory`, padded to `D + 8` elements per row
    (conflict-free `nvgpu.ldmatrix`), filled by `nvgpu.device_async_copy`
    (cp.async, 16 bytes, zero fill past Lq and Lkv): Q first, before the
    kv range and the mask summaries are worked out; V of tile j is copied
    while S = Q K_j^T is computed, K of the next live tile while
    O += P V_j is (with `wgmma=true`, K of the second live tile and V of
    the first go in flight before the block waits for Q and the first K). Q and K fragments come from `ldmatrix`, V fragments from
    `ldmatrix.trans`, and P goes from the S accumulators to A fragments in
    registers.

    The score modifier and mask are inlined per accumulator element from its
    (q_idx, kv_idx); the mask runs only in mixed or partial tiles (an
    `scf.if` over the whole tile). There, a score or mask that reads no
    tensors and cannot fail runs on every entry, a select dropping the
    masked ones (straight-line code whose index arithmetic CSE shares);
    one that may fail runs only on entries inside the shape (and, for the
    score, kept), under an `scf.if` per entry.
    kv-tiles outside the closed-form range of the tile abstraction are never
    visited, all-false tiles inside it are never loaded. Data-dependent
    masks: for every rank-1 integer tensor param the mask reads, each block
    first writes the (min, max) of every kv-tile into shared memory (groups
    of tk / 16 lanes take one kv-tile each, issue all their loads, then
    reduce with shuffles; rows of up to 512 kv-tiles), and a tile whose box
    is exactly that kv-tile is classified from those two words; other boxes
    are read by the 32 lanes of a warp in parallel, the q-tile's once per
    block. Then every thread classifies its own kv-tiles from the table and
    marks the live ones in a shared bitmap (and the first and last of
    them, by shared atomics; a read whose box is neither the tile's
    summary nor the q-tile's side is made per thread there, since it
    differs between lanes), and the tiles the mask keeps whole in a second
    bitmap: the kv loop runs from the first to the last, steps to the next
    set bit and takes a tile's full/mixed class from the second bitmap, so
    no thread scans the row's tiles or reads the whole row's entries. Only
    the marking reads the table, so the wgmma kernel keeps it in its second
    K buffer and its V buffers (nothing is copied there before the
    marking's barrier), which keeps the document mask's block at D=128
    within the 164 KiB shared-memory carve-out. The gpu.func's
    `attnc.dynamic_shared_bytes` repeats the plan's dynamic shared memory
    of a block (tiles, summaries and the bitmaps) for readers of the IR. Softmax runs online in log2
    units (`exp2`), with the row max and sum reduced over the four lanes of
    a quad by `gpu.shuffle xor`; sigmoid, relu and linear accumulate plain
    weights; the sink joins at the end. The per-head parts of the score
    and mask (a slope read, say) are computed once per block, and f32
    `math.tanh` (softcap) becomes `llvm.tanh` with `afn`, which NVPTX
    selects to `tanh.approx.f32`.

    The epilogue normalises each row and writes LSE from the quad's first
    lane. O is staged in shared memory over the Q and K tiles (rows padded
    by 8 elements; after a barrier, once no copy is in flight; where Dv is
    much larger than D the block's shared memory grows to hold it; see
    `MmaKernelConfig::sharedBytes`) and leaves in
    16-byte chunks of rows, consecutive threads on consecutive chunks: each
    chunk as one vector store when the flag word's `kFlagVectorO` says O
    allows it (the host sets it for a unit inner stride and 16-byte aligned
    data and strides), else element by element.

    Q, K and V must have a unit inner stride and 16-byte aligned rows (the
    launcher checks it). Head dims must be multiples of 16; `tile-kv`
    defaults to 64 when D + Dv <= 256 and to 32 otherwise.

    With `wgmma` (Hopper, PTX for sm_90a) the products run on warpgroup
    MMA instead: 8 warps form two warpgroups of 64 query rows; Q, K and V
    tiles are stored in the canonical 128-byte-swizzled layout (64-element
    atoms, 16-byte chunks XOR-ed with the row within each 8-row group) at a
    1024-byte-aligned start, so `wgmma.mma_async` reads them through matrix
    descriptors: S = Q K^T with both operands in shared memory (K-major), O
    += P V with P in registers (the same fragment layout as mma.sync's A)
    and V as a transposed (N-major) operand. After each cp.async wait every
    thread issues `fence.proxy.async.shared::cta` so that wgmma sees the
    copied bytes. Head dims must be multiples of 64 up to 256.

    With `wgmma`, `persistent` (off by default: correct on an H100 but
    measured slower, see docs/performance.md) and a data-dependent mask (one
    that reads a rank-1 integer tensor, whose summaries decide the live
    kv-tiles at run time: a document mask leaves a block only a few), the
    kernel is persistent (the `attnc.persistent` attribute): block i works
    on items i, i + gridDim.x, ... of the usual numbering, and the launcher
    starts only as many blocks as fit on the GPU at once. Once an item's
    last P V is done, the block works out the next item's live kv-tiles
    and starts copying its Q, its first K and V and its second K, and only
    then normalises and writes this item's O, staged in shared memory of
    its own (after the V tiles); the next item then finds its tiles landed
    or in flight instead of paying the copies' latency with nothing to
    overlap it. Where the tiles, the staging tile and the summaries do not
    fit in 227 KiB (head dim 256), the kernel is not persistent.

    With `mark-kernel` and a data-dependent mask (kernel not persistent),
    the module holds a second kernel, `@<variant>_marks` (the
    `attnc.mark_kernel` attribute), that the launcher runs first on the
    same arguments. Its block per (b, h, q-tile) item summarises the row's
    kv-tiles and marks the live and the all-kept ones, as the attention
    kernel's blocks otherwise do each for itself, and writes the two
    bitmaps and the first and last live tile to a buffer of the launcher's,
    the last argument of both kernels. Items differ in b or h only when the
    mask reads them, so a document mask is worked out once per q-tile for
    all the heads; a mask that reads both b and h gets no mark kernel (an
    item per block would be the same work plus a launch). A block of the attention kernel then reads its q-tile's
    34 words instead (rows of more than 512 kv-tiles still take the row
    facts).

    With `wgmma` every kernel is ready to be a programmatic dependent
    launch (the launcher starts it so): it executes `griddepcontrol.wait`
    before it touches global memory, then `griddepcontrol.launch_dependents`
    so that the next kernel on the stream may launch; the attention kernel
    after a mark kernel copies its Q before it waits, and waits before it
    reads the marks. Both are no-ops in an ordinary launch.

    ```mlir
    // attn-opt --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128"
    gpu.module @causal {
      gpu.func @causal(...) kernel attributes {known_block_size = array<i32: 128, 1, 1>} {
        %smem = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
        ... nvgpu.device_async_copy ... nvgpu.ldmatrix ... nvvm.mma.sync ...
      }
    }
    ```
  }];
  let options = [
    Option<"elementType", "element-type", "std::string", "\"f16\"",
           "Element type of Q, K, V and O: f16 or bf16">,
    Option<"headDim", "head-dim", "int64_t", "64",
           "Head dimension D (a multiple of 16)">,
    Option<"valueDim", "value-dim", "int64_t", "64",
           "Value head dimension Dv (a multiple of 16)">,
    Option<"tileKV", "tile-kv", "int64_t", "0",
           "Keys per kv-tile, a multiple of 16 (0: 64 when D + Dv <= 256, "
           "else 32; with wgmma 128 when 64 < max(D, Dv) <= 128, else 64)">,
    Option<"wgmma", "wgmma", "bool", "false",
           "Hopper warpgroup MMA (sm_90a): two warpgroups of 64 rows, "
           "128-byte-swizzled tiles read by wgmma.mma_async">,
    Option<"persistent", "persistent", "bool", "false",
           "With wgmma and a data-dependent mask: a persistent kernel that "
           "copies the next work item's Q, K and V while it writes this "
           "item's O (where its shared memory fits)">,
    Option<"markKernel", "mark-kernel", "bool", "false",
           "With a data-dependent mask (kernel not persistent): a mark "
           "kernel, run first, works out each q-tile's live kv-tiles once "
           "per launch for all the blocks">,
  ];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::gpu::GPUDialect",
    "mlir::LLVM::LLVMDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::NVVM::NVVMDialect",
    "mlir::nvgpu::NVGPUDialect", "mlir::scf::SCFDialect",
    "mlir::vector::VectorDialect"
  ];
}

def ConvertAttnMathToNVVMIntrinsics
    : Pass<"convert-attn-math-to-nvvm-intrinsics"> {
  let summary = "Lower f32 math ops to NVPTX instructions instead of libdevice";
  let description = [{
    Replaces f32 `math.exp2`, `math.log2`, `math.sqrt`, `math.floor`,
    `math.ceil`, `math.trunc`, `math.roundeven`, `math.fma` and
    `math.absf` by `llvm.call_intrinsic` of the NVVM intrinsics that NVPTX
    selects to single instructions (`ex2.approx.f32`, `lg2.approx.f32`,
    `sqrt.rn.f32`, `cvt.rmi/rpi/rzi/rni.f32.f32`, `fma.rn.f32`,
    `abs.f32`); an exp2 marked `fastmath<afn>` (the kernels' softmax
    weights and rescale factors) becomes `ex2.approx.ftz.f32`, which flushes
    denormal results to zero and saves a compare and two multiplies per
    call. f32 `arith.maxnumf` and `arith.minnumf` become `llvm.maxnum` and
    `llvm.minnum` (`max.f32`, `min.f32`). `math.absi` becomes arith (a compare and a select, which
    NVPTX selects to `abs.s32`) and f32 `math.powf` becomes
    `2^(y log2 |x|)` on `ex2.approx` and `lg2.approx` with C's special cases
    (`pow(x, 0) = pow(1, y) = 1`; a negative base gives the signed result
    for integral `y`, NaN otherwise). Run it inside gpu.modules before
    `convert-gpu-to-nvvm`, which would otherwise call libdevice
    (`__nv_exp2f`, `__nv_abs`, `__nv_powf`, ...) and need a CUDA toolkit
    at compile time. Other math ops are left alone (run
    `attn-approximate-math` first for exp, log, tanh and friends).

    ```mlir
    %y = math.exp2 %x : f32
    // becomes
    %y = llvm.call_intrinsic "llvm.nvvm.ex2.approx.f32"(%x) : (f32) -> f32
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::LLVM::LLVMDialect"];
}

#endif // ATTNC_CONVERSION_PASSES
