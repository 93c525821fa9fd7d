// convert-attn-to-backward-loops: the reference backward kernel of a
// differentiated variant (KernelABI.h's backward arguments), its per-entry
// formulas, the param gradients and the sink's.
// RUN: attn-opt %s --split-input-file --attn-differentiate --convert-attn-to-backward-loops --canonicalize --cse | FileCheck %s
// RUN: attn-opt %s --split-input-file --attn-differentiate --convert-attn-to-backward-loops=element-type=f16 | FileCheck %s --check-prefix=F16
// RUN: not attn-opt %s --split-input-file --convert-attn-to-backward-loops 2>&1 | FileCheck %s --check-prefix=UNDIFF

// Softmax with a scalar param: Q K V O dO, the LSE, dQ dK dV, the param,
// its gradient (f64, rank 1 of size 1), flags, status.
// CHECK-LABEL: func.func @temp_bwd(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[K:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[V:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[O:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DO:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[LSE:[a-z0-9]+]]: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DQ:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DK:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DV:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[T:[a-z0-9]+]]: f32, %[[GT:[a-z0-9]+]]: memref<?xf64, strided<[?], offset: ?>>,
// CHECK-SAME: %{{[a-z0-9]+}}: i32, %{{[a-z0-9]+}}: memref<8xi32>)
// D = dO . O, then the LSE of the row and whether it is empty.
// CHECK: scf.for
// CHECK: memref.load %[[DO]]
// CHECK: memref.load %[[O]]
// CHECK: %[[L:.+]] = memref.load %[[LSE]]
// CHECK: %[[EMPTY:.+]] = arith.cmpf oeq, %[[L]], %{{.+}} : f32
// Per kept key: dP = dO . V, P = exp(t - LSE) (0 on an empty row),
// dT = P (dP - D), then dS, the gradient of t and the updates.
// CHECK: scf.if
// CHECK: memref.load %[[V]]
// CHECK: %[[X:.+]] = arith.subf %{{.+}}, %[[L]] : f32
// CHECK: %[[E:.+]] = math.exp %[[X]] : f32
// CHECK: %[[P:.+]] = arith.select %[[EMPTY]], %{{.+}}, %[[E]] : f32
// CHECK: %[[DPD:.+]] = arith.subf
// CHECK: %[[DT:.+]] = arith.mulf %[[P]], %[[DPD]] : f32
// The score's derivative: dS = dT * t, d/dt += dT * s (added in f64).
// CHECK: arith.mulf %[[DT]], %[[T]] : f32
// CHECK: %[[G:.+]] = arith.mulf %[[DT]], %{{.+}} : f32
// CHECK: %[[OLD:.+]] = memref.load %[[GT]][%{{.+}}]
// CHECK: %[[G64:.+]] = arith.extf %[[G]] : f32 to f64
// CHECK: %[[NEW:.+]] = arith.addf %[[OLD]], %[[G64]] : f64
// CHECK: memref.store %[[NEW]], %[[GT]]
// dV += P dO; dQ and dK from scale * dS.
// CHECK: math.fma %[[P]]
// CHECK: memref.store %{{.+}}, %[[DQ]]
// CHECK: memref.store %{{.+}}, %[[DK]]
// CHECK: memref.store %{{.+}}, %[[DV]]
// F16-LABEL: func.func @temp_bwd(
// F16-SAME: memref<?x?x?x?xf16
// F16: arith.extf
// F16: arith.truncf
// UNDIFF: error: variant 'temp' has a score but no attn.score_grad: run attn-differentiate before convert-attn-to-backward-loops
attn.variant @temp {
  attn.param @t : f32 = 1.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %x = attn.param_get @t : f32
    %r = arith.mulf %s, %x : f32
    attn.yield %r : f32
  }
}

// -----

// A sink read from a tensor param: dL/de = -sum_i exp(e - LSE_i) D_i over
// the rows that keep a key (in f64), then attn.sink_grad's scatter into its
// entry.
// CHECK-LABEL: func.func @sink_bwd(
// CHECK-SAME: %[[SINKS:[a-z0-9]+]]: memref<?xf32, strided<[?], offset: ?>>, %[[GS:[a-z0-9]+]]: memref<?xf64, strided<[?], offset: ?>>,
// CHECK: %[[DE:.+]] = memref.alloc() : memref<1xf64>
// CHECK: scf.for %{{.+}} = %{{.+}} to %{{.+}} step
// CHECK: memref.load %[[SINKS]]
// CHECK: memref.store %{{.+}}, %[[DE]]
// CHECK: math.exp
// CHECK: arith.subf
// CHECK: memref.store %{{.+}}, %[[DE]]
// CHECK: %[[SUM:.+]] = memref.load %[[DE]]
// CHECK: %[[S32:.+]] = arith.truncf %[[SUM]] : f64 to f32
// CHECK: %[[OLD:.+]] = memref.load %[[GS]]
// CHECK: %[[S64:.+]] = arith.extf %[[S32]] : f32 to f64
// CHECK: arith.addf %[[OLD]], %[[S64]] : f64
// CHECK: memref.store %{{.+}}, %[[GS]]
attn.variant @sink {
  attn.param @sinks : f32[H]
  attn.normalize softmax sink(%b: i32, %h: i32) {
    %e = attn.param_load @sinks[%h] : f32
    attn.yield %e : f32
  }
}

// -----

// Linear: the row sum S from the forward, 1 / S (0 when S = 0) and
// dT = (dP - D) / S.
// CHECK-LABEL: func.func @lin_bwd(
// CHECK: %[[S:.+]] = memref.load %{{.+}}[%{{.+}}, %{{.+}}, %{{.+}}] : memref<?x?x?xf32
// CHECK: %[[Z:.+]] = arith.cmpf oeq, %[[S]], %{{.+}} : f32
// CHECK: %[[INV:.+]] = arith.divf %{{.+}}, %[[S]] : f32
// CHECK: %[[I:.+]] = arith.select %[[Z]], %{{.+}}, %[[INV]] : f32
// CHECK: %[[DPD:.+]] = arith.subf
// CHECK: arith.mulf %[[DPD]], %[[I]] : f32
attn.variant @lin {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %e = math.exp %s : f32
    attn.yield %e : f32
  }
  attn.normalize linear
}
