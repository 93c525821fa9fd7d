// convert-attn-to-tiled-backward-kernel: the two work items of the CPU
// backward pass, their arguments, the tile skipping, the register-blocked
// micro-kernels, and the param gradients: vectorised (a reduction over the
// lanes) for a read that is the same for every lane, entry by entry on the
// scalar path for a read that varies along kv.
// RUN: attn-opt %s --split-input-file --attn-differentiate --convert-attn-to-tiled-backward-kernel="head-dim=32 value-dim=32 tile-q=32 tile-kv=32 vector-width=16" | FileCheck %s
// RUN: attn-opt %s --split-input-file --attn-differentiate --convert-attn-to-tiled-backward-kernel="head-dim=32 value-dim=32 tile-q=32 tile-kv=32 vector-width=8" | FileCheck %s --check-prefix=AVX2
// RUN: not attn-opt %s --split-input-file --attn-differentiate --convert-attn-to-tiled-backward-kernel="tile-kv=24 vector-width=16" 2>&1 | FileCheck %s --check-prefix=BAD
// BAD: tile-kv must be a multiple of vector-width

// Causal ALiBi with per-head slopes.
// The rows item: (b, h), the row statistic and D buffers.
// CHECK-LABEL: func.func @alibi_bwd_rows(
// CHECK-SAME: %{{[a-z0-9]+}}: memref<8xi32>, %{{[a-z0-9]+}}: index, %{{[a-z0-9]+}}: index, %[[ROWA:[a-z0-9]+]]: memref<?xf32>, %[[ROWD:[a-z0-9]+]]: memref<?xf32>)
// CHECK: memref.store %{{.+}}, %[[ROWD]]
// LSE in log2 units, +inf for an empty row.
// CHECK: %[[EMPTY:.+]] = arith.cmpf oeq
// CHECK: arith.select %[[EMPTY]], %{{.+}}, %{{.+}} : f32
// CHECK: memref.store %{{.+}}, %[[ROWA]]
// The work item: (b, hkv, kv-tiles [k0, k1)), the row buffers, Q, dO, K, V,
// dQ, dK, dV as f32 rows of whole vectors; S, dP, K^T, V^T, dK, dV tiles on
// the stack.
// CHECK-LABEL: func.func @alibi_bwd(
// CHECK-SAME: %{{[a-z0-9]+}}: memref<8xi32>, %[[B:[a-z0-9]+]]: index, %[[HKV:[a-z0-9]+]]: index, %[[K0:[a-z0-9]+]]: index, %[[K1:[a-z0-9]+]]: index, %{{[a-z0-9]+}}: memref<?xf32>, %{{[a-z0-9]+}}: memref<?xf32>,
// CHECK-SAME: %[[QR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[DOR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[KR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[VR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[DQR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[DKR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %[[DVR:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>)
// CHECK-COUNT-6: memref.alloca() {alignment = 64 : i64} : memref<1024xf32>
// The item's dQ rows start at zero.
// CHECK: vector.store %{{.+}}, %[[DQR]]
// kv-tiles of the range; K^T by register transposes.
// CHECK: scf.for %[[KT:.+]] = %[[K0]] to %[[K1]]
// CHECK: vector.shuffle
// Heads of the group, q-tiles, and the tile facts: only tiles the mask may
// keep are computed.
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.if %{{.+}} {
// S = Q K^T: Q scalars broadcast against K^T vectors.
// CHECK: memref.load %[[QR]]
// CHECK: vector.fma
// The score's derivative: slopes[h] is one place for every lane, so the
// lanes' contributions are reduced first, then added in f64.
// CHECK: %[[RED:.+]] = vector.reduction <add>
// CHECK: arith.extf %[[RED]] : f32 to f64
// dV += P^T dO, dK += dS^T Q, dQ += dS K
// CHECK: vector.load %[[DOR]]
// CHECK: vector.load %[[QR]]
// CHECK: vector.load %[[KR]]
// CHECK: vector.store %{{.+}}, %[[DQR]]
// The tile's dK and dV.
// CHECK: vector.store %{{.+}}, %[[DKR]]
// CHECK: vector.store %{{.+}}, %[[DVR]]
// AVX2-LABEL: func.func @alibi_bwd(
// AVX2: vector.fma %{{.+}} : vector<8xf32>
attn.variant @alibi {
  attn.param @slopes : f32[H]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %sl = attn.param_load @slopes[%h] : f32
    %d = arith.subi %kv, %q : i32
    %df = arith.sitofp %d : i32 to f32
    %x = arith.mulf %sl, %df : f32
    %r = arith.addf %s, %x : f32
    attn.yield %r : f32
  }
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}

// -----

// A bias read at (h, q, kv): the scalar path, where each kept entry adds to
// its own gradient entry (bounds-checked).
// CHECK-LABEL: func.func @bias_bwd(
// CHECK-SAME: %[[BIAS:[a-z0-9]+]]: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>, %[[GB:[a-z0-9]+]]: memref<?x?x?xf64, strided<[?, ?, ?], offset: ?>>,
// CHECK-NOT: vector.reduction
// CHECK: memref.load %[[BIAS]]
// CHECK: %[[OLD:.+]] = memref.load %[[GB]]
// CHECK: %[[NEW:.+]] = arith.addf %[[OLD]], %{{.+}} : f64
// CHECK: memref.store %[[NEW]], %[[GB]]
attn.variant @bias {
  attn.param @bias : f32[H, Lq, Lkv]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %x = attn.param_load @bias[%h, %q, %kv] : f32
    %r = arith.addf %s, %x : f32
    attn.yield %r : f32
  }
}
