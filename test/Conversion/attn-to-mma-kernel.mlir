// convert-attn-to-mma-kernel: the tensor-core kernel. One block of 4 warps
// (32 query rows each when Dv <= 128, else 16) per (b, h, q-tile); Q, K and
// V tiles in padded dynamic shared memory filled by cp.async (V of the tile
// while S = Q K^T runs, K of the next live tile while P V runs); ldmatrix
// (Q, K) and ldmatrix.trans (V) fragments; mma.sync m16n8k16 with f32
// accumulators; the row statistics reduced over a quad with shuffles; the
// mask only in mixed tiles.
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=64" | FileCheck %s
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=64 value-dim=64" | FileCheck %s --check-prefix=F16
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=256 value-dim=256" | FileCheck %s --check-prefix=D256
// Three blocks per SM (168 registers) for small heads with 64-key tiles
// only: 128-key tiles need their S accumulators.
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=64 value-dim=64" | FileCheck %s --check-prefix=MINCTA
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=64 value-dim=64 tile-kv=128" | FileCheck %s --check-prefix=NOMINCTA
// MINCTA: known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 3 : i32}
// NOMINCTA: known_block_size = array<i32: 128, 1, 1>}
// NOMINCTA-NOT: nvvm.minctasm
// Dv = 4 D: the O staging tile (128 x 136 halves, 34816 bytes) is larger
// than the Q, K and V tiles (32768), and sets the block's shared memory.
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=32 value-dim=128" | FileCheck %s --check-prefix=WIDE
// WIDE-LABEL: gpu.module @causal
// WIDE: attnc.dynamic_shared_bytes = 34816 : i64
// WIDE: memref.view {{.+}} to memref<128x40xf16, #gpu.address_space<workgroup>>
// WIDE: memref.view {{.+}} to memref<128x136xf16, #gpu.address_space<workgroup>>
// WIDE-NEXT: nvvm.cp.async.wait.group 0
// RUN: not attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f32" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=72" 2>&1 | FileCheck %s --check-prefix=BADDIM
// RUN: not attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=256 value-dim=256 tile-kv=256" 2>&1 | FileCheck %s --check-prefix=BADSMEM

// BAD: element-type must be f16 or bf16, got 'f32'
// BADDIM: the tensor-core GPU kernel needs f16 or bf16 and head dims that are multiples of 16 up to 256 (got f16, D = 72, Dv = 64)
// BADSMEM: the Q, K and V tiles need 304128 bytes of shared memory, more than 200 KiB

// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: gpu.module @causal
// CHECK: gpu.func @causal(%[[Q:.+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[STATUS:.+]]: memref<8xi32>)
// CHECK-SAME: kernel attributes {attnc.dynamic_shared_bytes = 61440 : i64, known_block_size = array<i32: 128, 1, 1>}
// CHECK-NOT: attn.
// Q (128 rows), K and V (64 keys) tiles, rows padded by 8 elements.
// CHECK: %[[SMEM:.+]] = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
// CHECK: %[[QT:.+]] = memref.view %[[SMEM]][%c0{{.*}}][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<128x136xbf16, #gpu.address_space<workgroup>>
// CHECK: %[[KT:.+]] = memref.view %[[SMEM]][%c34816][] : {{.+}} to memref<64x136xbf16, #gpu.address_space<workgroup>>
// CHECK: %[[VT:.+]] = memref.view %[[SMEM]][%c52224][] : {{.+}} to memref<64x72xbf16, #gpu.address_space<workgroup>>
// K and V seen with a unit inner stride (cp.async needs contiguous rows).
// CHECK: memref.reinterpret_cast {{.+}} to memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
// Blocks in groups of heads whose K and V, Lkv * (128 + 64) * 2 bytes a
// head, fit in 16 MiB of L2 (the order itself: attn-to-gpu-kernel.mlir).
// CHECK: gpu.block_id x
// CHECK: arith.muli %{{.+}}, %c384 : index
// CHECK: arith.divui %c16777216, %{{.+}} : index
// The prologue: Q, then K of the first live tile.
// CHECK: nvgpu.device_async_copy {{.+}}, %[[QT]][{{.+}}], 8, {{.+}} {bypassL1}
// CHECK: nvvm.cp.async.commit.group
// CHECK: scf.while
// CHECK: nvgpu.device_async_copy {{.+}}, %[[KT]][{{.+}}], 8, {{.+}} {bypassL1}
// CHECK: nvvm.cp.async.commit.group
// The kv-tile loop carries kt and, per m-tile, m and l of two rows and
// 8 x 4 accumulators.
// CHECK: %{{.+}}:73 = scf.while
// CHECK: nvvm.cp.async.wait.group 0
// CHECK-NEXT: gpu.barrier
// V of this tile is copied while the scores are computed.
// CHECK: nvgpu.device_async_copy {{.+}}, %[[VT]][{{.+}}], 8
// CHECK: nvgpu.ldmatrix %[[QT]][{{.+}}] {numTiles = 4 : i32, transpose = false} : memref<128x136xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
// CHECK: nvgpu.ldmatrix %[[KT]][{{.+}}] {numTiles = 4 : i32, transpose = false} : memref<64x136xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
// CHECK: llvm.bitcast {{.+}} : vector<2xbf16> to i32
// CHECK: nvvm.mma.sync A[{{.+}}] B[{{.+}}] C[{{.+}}] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
// The mask only where the tile is mixed or partial. It reads nothing and
// cannot fail, so it runs on every entry of such a tile, not under an
// scf.if per entry.
// CHECK: scf.if %{{.+}} -> (f32,
// CHECK-NOT: -> (i1)
// CHECK: arith.cmpi sle
// The tile's second barrier comes before the softmax, and the next live
// tile's K is copied while the softmax and P V run.
// CHECK: nvvm.cp.async.wait.group 0
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.device_async_copy {{.+}}, %[[KT]][{{.+}}], 8
// The row max over the quad.
// CHECK: gpu.shuffle xor %{{.+}}, %c1_i32{{.*}}, %c32_i32
// CHECK: gpu.shuffle xor %{{.+}}, %c2_i32{{.*}}, %c32_i32
// CHECK: math.exp2 {{.+}} fastmath<afn>
// CHECK-NOT: gpu.barrier
// CHECK: nvgpu.ldmatrix %[[VT]][{{.+}}] {numTiles = 4 : i32, transpose = true}
// CHECK: nvvm.mma.sync
// CHECK: scf.yield
// Epilogue: sums over the quad, LSE by the quad's first lane, then O
// staged in shared memory over the Q tile (rows padded by 8 elements) once
// every warp is done with the tiles and no copy is in flight, and written
// in 16-byte chunks of rows: as one vector when the host sets kFlagVectorO
// (2), else element by element.
// CHECK: gpu.shuffle xor
// CHECK: memref.store {{.+}} : memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>
// CHECK: %[[ST:.+]] = memref.view %[[SMEM]][%c0{{.*}}][] : {{.+}} to memref<128x72xbf16, #gpu.address_space<workgroup>>
// CHECK-NEXT: nvvm.cp.async.wait.group 0
// CHECK-NEXT: gpu.barrier
// CHECK: vector.store %{{.+}}, %[[ST]][{{.+}}] {alignment = 4 : i64} : memref<128x72xbf16, #gpu.address_space<workgroup>>, vector<2xbf16>
// CHECK: gpu.barrier
// CHECK: %[[VF:.+]] = arith.andi %{{.+}}, %c2_i32{{.*}} : i32
// CHECK: %[[VEC:.+]] = arith.cmpi ne, %[[VF]]
// CHECK: %[[CH:.+]] = vector.load %[[ST]][{{.+}}] {alignment = 16 : i64} : memref<128x72xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
// CHECK: scf.if %[[VEC]] {
// CHECK: vector.store %[[CH]], %{{.+}}[{{.+}}] {alignment = 16 : i64} : memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, vector<8xbf16>
// CHECK: } else {
// CHECK: vector.extract %[[CH]][0]
// CHECK: memref.store {{.+}} : memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>
// CHECK: vector.extract %[[CH]][7]

// F16-LABEL: gpu.module @causal
// F16: memref.view {{.+}} to memref<128x72xf16, #gpu.address_space<workgroup>>
// F16: memref.view {{.+}} to memref<64x72xf16, #gpu.address_space<workgroup>>
// f16 operands stay vector<2xf16>.
// F16: nvvm.mma.sync {{.+}} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>

// D256-LABEL: gpu.module @causal
// D = Dv = 256: 16 rows per warp (the accumulators of 32 would not fit in
// registers) and 32 keys per tile.
// D256: memref.view {{.+}} to memref<64x264xf16, #gpu.address_space<workgroup>>
// D256: memref.view {{.+}} to memref<32x264xf16, #gpu.address_space<workgroup>>
attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}

// -----

// A score modifier: its uniform part (the slope of the head) read once per
// block, the rest inlined per accumulator element in both the masked and
// the all-true path. What is left reads nothing and cannot fail, so the
// masked path computes it on every entry and selects -inf for the dropped
// ones: straight-line code, whose conversions CSE can share.
// CHECK-LABEL: gpu.module @alibi
// CHECK: memref.load %{{.+}}[%{{.+}}] : memref<?xf32, strided<[?], offset: ?>>
// CHECK: scf.while
// CHECK: scf.if %{{.+}} -> (f32,
// CHECK-NOT: scf.if
// CHECK-NOT: memref.load
// CHECK: %[[F:.+]] = arith.sitofp
// CHECK: %[[B:.+]] = arith.mulf %{{.+}}, %[[F]] : f32
// CHECK: %[[S:.+]] = arith.addf %{{.+}}, %[[B]] : f32
// CHECK: %[[L:.+]] = arith.mulf %[[S]], %{{.+}} : f32
// CHECK: arith.select %{{.+}}, %[[L]], %{{.+}} : f32
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
}

// -----

// Sigmoid: plain weights, no running max, no rescaling shuffles before exp2.
// CHECK-LABEL: gpu.module @sig
// CHECK: scf.while
// CHECK-NOT: arith.maximumf
// CHECK: math.exp2
attn.variant @sig {
  attn.normalize sigmoid
}

// -----

// A score that reads per key (bias[kv_idx]) may fail on an entry the mask
// drops, so in the masked path it runs only on kept entries: an scf.if on
// the entry's keep bit (inside the shape and the mask) around the checked
// read, -inf in its else branch.
// CHECK-LABEL: gpu.module @kv_bias
// CHECK: scf.while
// CHECK: scf.if %{{.+}} -> (f32,
// CHECK: arith.cmpi sle
// CHECK-NEXT: %[[KEEP:.+]] = arith.andi %{{.+}}, %{{.+}} : i1
// CHECK-NEXT: scf.if %[[KEEP]] -> (f32) {
// CHECK: memref.load
// CHECK: arith.addf
// CHECK: } else {
// CHECK-NEXT: arith.constant 0xFF800000 : f32
attn.variant @kv_bias {
  attn.param @bias : f32[Lkv]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %x = attn.param_load @bias[%kv] : f32
    %r = arith.addf %s, %x : f32
    attn.yield %r : f32
  }
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}

// -----

// A data-dependent mask: per-kv-tile (min, max) of the document ids in
// shared memory, filled once per block by groups of lanes (loads, then
// shuffles; when the row has at most 512 kv-tiles). Then every thread
// classifies its own tiles from the table and marks the live ones in a
// bitmap, the full ones in a second, and the first and last live one
// (shared atomics); the loop runs from the first to the last and finds the
// next live tile by scanning the bitmap (cttz), reading the second bitmap
// once per visited tile for its full/mixed class. The launcher asks for the
// extra shared memory (the mma.sync kernel keeps the table after its tiles).
// CHECK-LABEL: gpu.module @documents
// CHECK: attnc.dynamic_shared_bytes = 65672 : i64
// CHECK: %[[SUM:.+]] = memref.view %{{.+}}[%c61440][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<512x2xi32, #gpu.address_space<workgroup>>
// CHECK: %[[BITS:.+]] = memref.view %{{.+}}[%c65536][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<16xi32, #gpu.address_space<workgroup>>
// CHECK: %[[FULL:.+]] = memref.view %{{.+}}[%c65600][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<16xi32, #gpu.address_space<workgroup>>
// CHECK: %[[ENDS:.+]] = memref.view %{{.+}}[%c65664][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<2xi32, #gpu.address_space<workgroup>>
// CHECK: arith.cmpi ule, %{{.+}}, %c512
// CHECK: gpu.shuffle xor
// CHECK: memref.store %{{.+}}, %[[SUM]][%{{.+}}, %c0{{.*}}] : memref<512x2xi32, #gpu.address_space<workgroup>>
// CHECK: gpu.barrier
// CHECK: memref.atomic_rmw ori %{{.+}}, %[[FULL]]
// CHECK: memref.atomic_rmw ori %{{.+}}, %[[BITS]]
// CHECK: memref.atomic_rmw mins %{{.+}}, %[[ENDS]]
// CHECK: memref.atomic_rmw maxs %{{.+}}, %[[ENDS]]
// CHECK: gpu.barrier
// CHECK: memref.load %[[ENDS]]
// CHECK: scf.while
// CHECK: memref.load %[[BITS]]
// CHECK: llvm.intr.cttz
// CHECK: memref.load %[[FULL]]
attn.variant @documents {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %dq = attn.param_load @doc[%q] : i32
    %dk = attn.param_load @doc[%kv] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    attn.yield %m : i1
  }
}

// -----

// A read whose box is not the kv-tile (doc[kv_idx / 2]) differs between the
// lanes of a warp while each thread classifies its own tiles: it is read
// per thread there, with no shuffle between the summaries' barrier and the
// marks (a warp-wide read would mix the lanes' boxes).
// CHECK-LABEL: gpu.module @doc_half
// CHECK: gpu.barrier
// CHECK-NOT: gpu.shuffle
// CHECK: memref.atomic_rmw ori
attn.variant @doc_half {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %c2 = arith.constant 2 : i32
    %q2 = arith.divsi %q, %c2 : i32
    %kv2 = arith.divsi %kv, %c2 : i32
    %dq = attn.param_load @doc[%q2] : i32
    %dk = attn.param_load @doc[%kv2] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    attn.yield %m : i1
  }
}

// -----

// tanh (softcap) becomes the hardware's tanh.approx.f32: llvm.tanh with
// `afn`, which NVPTX selects to it.
// CHECK-LABEL: gpu.module @softcap
// CHECK: llvm.call_intrinsic "llvm.tanh.f32"(%{{.+}}) {fastmathFlags = #llvm.fastmath<afn>} : (f32) -> f32
// CHECK-NOT: math.tanh
attn.variant @softcap {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %c = arith.constant 50.0 : f32
    %x = arith.divf %s, %c : f32
    %t = math.tanh %x : f32
    %r = arith.mulf %c, %t : f32
    attn.yield %r : f32
  }
}
