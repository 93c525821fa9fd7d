// convert-attn-to-tiled-kernel: one work item (b, h, q-tile) per call, the
// kv loop bounded by the mask's closed-form range, all-false tiles skipped,
// the mask evaluated only where a tile is mixed, online softmax in log2
// units with vector micro-kernels.
// RUN: attn-opt %s --split-input-file --convert-attn-to-tiled-kernel="head-dim=64 value-dim=32 tile-q=64 tile-kv=32 vector-width=16" | FileCheck %s
// RUN: not attn-opt %s --split-input-file --convert-attn-to-tiled-kernel="tile-kv=24 vector-width=16" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: tile-kv must be a multiple of vector-width

// CHECK-LABEL: func.func @causal(
// CHECK-SAME: memref<8xi32>, %[[B:.+]]: index, %[[H:.+]]: index, %[[QT:.+]]: index, %[[KT:.+]]: memref<?xf32>, %[[VF:.+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[KR:.+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[ST:.+]]: memref<?xi32>)
// CHECK-NOT: attn.
// Scratch tiles on the stack: Q (64 x 64), S (64 x 32), O (64 x 32), row
// max and the row sums' partial vectors; K^T and V come from the host. A
// mask adds each 4-row block's live window (start, count, mixed).
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<4096xf32>
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<2048xf32>
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<1024xf32>
// CHECK-DAG: memref.alloca() : memref<16xindex>
// The kv-tile loop runs from the closed-form bounds (floor division of the
// kv range by the tile) and skips tiles the abstraction proves all false.
// CHECK: arith.floordivsi %{{.+}}, %c32_i64{{.*}} : i64
// CHECK: scf.for %{{.+}} = %{{.+}} to %{{.+}} step %c1{{.*}} {
// CHECK: scf.if %{{.+}} {
// A mixed tile gets every block's window from the abstraction again.
// CHECK: scf.for %{{.+}} = %c0{{.*}} to %{{.+}} step %c4{{.*}} {
// CHECK: memref.store %{{.+}}, %{{.+}}[%{{.+}}] : memref<16xindex>
// The first work item to reach a kv-tile claims it (bit 0 of its state
// word), builds its K^T from 16 rows of K by 16 x 16 register transposes
// (4 rounds of 16 shuffles) and publishes it (bit 1); one that finds it
// claimed but not ready builds a private copy instead of waiting.
// CHECK: memref.atomic_rmw ori %{{.+}}, %[[ST]][%{{.+}}] : (i32, memref<?xi32>) -> i32
// CHECK: vector.load %[[KR]]
// CHECK-COUNT-64: vector.shuffle
// CHECK: vector.store %{{.+}}, %[[KT]]
// CHECK: memref.atomic_rmw ori %{{.+}}, %[[ST]]
// CHECK-NOT: scf.while
// CHECK: %[[SRC:.+]] = arith.select %{{.+}}, %{{.+}}, %[[KT]] : memref<?xf32>
// Q K^T per block, one straight-line body per window width: 4 rows x 1
// vector for a one-vector window, 4 rows x 2 vectors for the whole tile.
// CHECK: scf.index_switch
// CHECK: case 1 {
// CHECK: %{{.+}}:4 = scf.for %{{.+}} = %c0{{.*}} to %c64{{.*}} step %c1{{.*}} iter_args({{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: vector.load %[[SRC]]
// CHECK: vector.fma
// CHECK: default {
// CHECK: %{{.+}}:8 = scf.for %{{.+}} = %c0{{.*}} to %c64{{.*}} step %c1{{.*}} iter_args({{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// The mask only where the block is mixed or the tile partial.
// CHECK: scf.if %{{.+}} -> (vector<16xf32>) {
// CHECK: arith.cmpi sle, %{{.+}}, %{{.+}} : vector<16xi32>
// Online softmax with lazy rescaling: the row max is reduced (and O and l
// rescaled) only when some score exceeds the running max by 8; then exp2 as
// a polynomial (bit tricks) into a vector of partial row sums.
// CHECK: arith.cmpf ogt, %{{.+}}, %{{.+}} : vector<16xf32>
// CHECK: vector.reduction <or>
// CHECK: scf.if %{{.+}} -> (f32, vector<16xf32>) {
// CHECK: vector.reduction <maxnumf>
// CHECK: arith.shli
// CHECK: arith.bitcast %{{.+}} : vector<16xi32> to vector<16xf32>
// P V accumulates into O over the block's exact keys (never past Lkv).
// CHECK: arith.minsi
// CHECK: vector.load %[[VF]]
// CHECK: vector.fma
// Epilogue: l = sum of the partial sums, O / l and LSE = (m + log2 l) ln 2.
// CHECK: vector.reduction <add>
// CHECK: math.log2
attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}

// -----

// A score reading a tensor by head is uniform per row: a scalar checked
// load (scf.if) broadcast into the vector expression.
// CHECK-LABEL: func.func @alibi(
// CHECK: memref.load %arg5[%{{.+}}] : memref<?xf32, strided<[?], offset: ?>>
// CHECK: vector.broadcast %{{.+}} : f32 to vector<16xf32>
// CHECK: arith.sitofp %{{.+}} : vector<16xi32> to vector<16xf32>
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

// Sigmoid: plain weights, no running max.
// CHECK-LABEL: func.func @sig(
// CHECK-NOT: vector.reduction <maxnumf>
// CHECK: arith.divf %{{.+}}, %{{.+}} : vector<16xf32>
attn.variant @sig {
  attn.normalize sigmoid
}

// -----

// A data-dependent mask: the kernel takes the host's per-tile (min, max)
// summaries of the rank-1 param (per q-tile, per kv-tile) and classifies a
// tile from one row of each, instead of scanning the param.
// CHECK-LABEL: func.func @documents(
// CHECK-SAME: %[[SQ:[a-z0-9]+]]: memref<?x2xi32>, %[[SK:[a-z0-9]+]]: memref<?x2xi32>)
// CHECK: memref.load %[[SQ]][%{{.+}}, %c0{{.*}}] : memref<?x2xi32>
// CHECK: memref.load %[[SQ]][%{{.+}}, %c1{{.*}}] : memref<?x2xi32>
// CHECK: scf.for
// CHECK: memref.load %[[SK]][%{{.+}}, %c0{{.*}}] : memref<?x2xi32>
attn.variant @documents {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %dq = attn.param_load @doc[%q] : i32
    %dk = attn.param_load @doc[%kv] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    attn.yield %m : i1
  }
}
