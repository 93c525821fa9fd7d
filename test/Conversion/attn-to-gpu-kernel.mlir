// convert-attn-to-gpu-kernel: one gpu.func kernel per variant in a
// gpu.module of the same name; one block per (b, h, q-tile) numbered
// longest-first within groups of heads, one thread per query row, K and V tiles staged in shared
// memory, the kv loop bounded by the mask's closed-form range, all-false
// tiles skipped, the mask only in mixed tiles, online softmax with exp2.
// RUN: attn-opt %s --split-input-file --convert-attn-to-gpu-kernel="element-type=f16 head-dim=64 value-dim=32 tile-q=128" | FileCheck %s
// RUN: attn-opt %s --split-input-file --convert-attn-to-gpu-kernel="element-type=f32 head-dim=128 value-dim=128" | FileCheck %s --check-prefix=F32
// RUN: not attn-opt %s --split-input-file --convert-attn-to-gpu-kernel="element-type=f64" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: element-type must be f32, f16 or bf16, got 'f64'

// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: gpu.module @causal
// CHECK: gpu.func @causal(%[[Q:.+]]: memref<?x?x?x?xf16, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[FLAGS:.+]]: i32, %[[STATUS:.+]]: memref<8xi32>)
// CHECK-SAME: workgroup(%[[KT:.+]] : memref<4096xf16, #gpu.address_space<workgroup>>, %[[VT:.+]] : memref<2048xf16, #gpu.address_space<workgroup>>)
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK-NOT: attn.
// Block -> (b, h, q-tile), the last q-tile first within groups of G heads:
// G = clamp(16 MiB / (Lkv * (64 + 32) * 2 bytes), 1, B * H).
// CHECK-DAG: %[[BID:.+]] = gpu.block_id x
// CHECK-DAG: %[[TID:.+]] = gpu.thread_id x
// CHECK: %[[NQ:.+]] = arith.ceildivui
// CHECK: %[[BH:.+]] = arith.muli
// CHECK: %[[KVB:.+]] = arith.muli %{{.+}}, %c192 : index
// CHECK: %[[HB:.+]] = arith.maxui %[[KVB]], %c1{{.*}} : index
// CHECK: %[[G0:.+]] = arith.divui %c16777216, %[[HB]] : index
// CHECK: %[[G1:.+]] = arith.maxui %[[G0]], %c1{{.*}} : index
// CHECK: %[[G:.+]] = arith.minui %[[BH]], %[[G1]] : index
// CHECK: %[[GB:.+]] = arith.muli %[[G]], %[[NQ]] : index
// CHECK: %[[GRP:.+]] = arith.divui %[[BID]], %[[GB]] : index
// CHECK: %[[FIRST:.+]] = arith.muli %[[GRP]], %[[G]] : index
// CHECK: %[[LEFT:.+]] = arith.subi %[[BH]], %[[FIRST]] : index
// CHECK: %[[HERE:.+]] = arith.minui %[[G]], %[[LEFT]] : index
// CHECK: %[[IN:.+]] = arith.subi %[[BID]], %{{.+}} : index
// CHECK: %[[REV:.+]] = arith.divui %[[IN]], %[[HERE]] : index
// CHECK: arith.subi %{{.+}}, %[[REV]] : index
// CHECK: %[[HEAD:.+]] = arith.remui %[[IN]], %[[HERE]] : index
// CHECK: arith.addi %[[FIRST]], %[[HEAD]] : index
// Per-thread q row, o accumulator, scores.
// CHECK-DAG: memref.alloca() : memref<64xf32>
// CHECK-DAG: memref.alloca() : memref<32xf32>
// The kv-tile loop from the closed-form bounds; tile counts by thread 0.
// CHECK: arith.floordivsi %{{.+}}, %c64_i64{{.*}} : i64
// CHECK: memref.atomic_rmw addi %{{.+}}, %[[STATUS]][%{{.+}}] : (i32, memref<8xi32>) -> i32
// CHECK: scf.for %{{.+}} = %{{.+}} to %{{.+}} step %c1{{.*}} {
// Skip all-false tiles; stage K and V between barriers.
// CHECK: scf.if %{{.+}} {
// CHECK: gpu.barrier
// CHECK: scf.for %{{.+}} = %[[TID]] to %{{.+}} step %c128
// CHECK: memref.store %{{.+}}, %[[KT]][%{{.+}}] : memref<4096xf16, #gpu.address_space<workgroup>>
// CHECK: memref.store %{{.+}}, %[[VT]][%{{.+}}] : memref<2048xf16, #gpu.address_space<workgroup>>
// CHECK: gpu.barrier
// Scores: dot product against the shared K tile, the mask only where the
// tile is mixed or partial.
// CHECK: math.fma
// CHECK: arith.cmpi sle, %{{.+}}, %{{.+}} : i32
// Online softmax in log2 units.
// CHECK: arith.maximumf
// CHECK: math.exp2
// CHECK: memref.load %[[VT]]
// Epilogue: O and LSE.
// CHECK: math.log2
// CHECK: arith.truncf %{{.+}} : f32 to f16
// CHECK: gpu.return
attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}

// F32-LABEL: gpu.module @causal
// Two f32 tiles of 128-wide rows fit 32 KiB at 32 keys per tile.
// F32: workgroup(%{{.+}} : memref<4096xf32, #gpu.address_space<workgroup>>, %{{.+}} : memref<4096xf32, #gpu.address_space<workgroup>>)

// -----

// A tensor param read by the score: a bounds-checked load that records
// errors in the status buffer.
// CHECK-LABEL: gpu.module @alibi
// CHECK: gpu.func @alibi(
// CHECK-SAME: %[[SLOPES:[^:]+]]: memref<?xf32, strided<[?], offset: ?>>
// CHECK: scf.if
// CHECK: memref.load %[[SLOPES]]
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

// F32-LABEL: gpu.module @alibi

// -----

// Sigmoid: plain weights 1 / (1 + 2^(-s log2 e)), no running max.
// CHECK-LABEL: gpu.module @sig
// CHECK: math.exp2
// CHECK: arith.divf
// CHECK-NOT: math.log2
// CHECK: gpu.return
attn.variant @sig {
  attn.normalize sigmoid
}

// F32-LABEL: gpu.module @sig
