// convert-attn-to-loops: each variant becomes a reference kernel function.
// RUN: attn-opt %s --split-input-file --convert-attn-to-loops | FileCheck %s
// RUN: attn-opt %s --split-input-file --convert-attn-to-loops=element-type=f16 | FileCheck %s --check-prefix=F16
// RUN: not attn-opt %s --split-input-file --convert-attn-to-loops=element-type=f64 2>&1 | FileCheck %s --check-prefix=BAD

// The kernel takes Q, K, V, O, LSE, the runtime params, flags and status.
// CHECK-LABEL: func.func @plain(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>, %{{.+}}: i32, %{{.+}}: memref<8xi32>)
// CHECK-NOT: attn.
// Default scale 1 / sqrt(D).
// CHECK: %[[D:.+]] = memref.dim %[[Q]], %c3
// CHECK: math.sqrt
// Pass 1 and pass 2 over the keys, exp for softmax, LSE = M + log(denom).
// CHECK: scf.for
// CHECK: math.fma
// CHECK: math.exp
// CHECK: math.log
// F16-LABEL: func.func @plain(
// F16-SAME: memref<?x?x?x?xf16, strided<[?, ?, ?, ?], offset: ?>>
// F16: arith.extf
// F16: arith.truncf
// BAD: element-type must be f32 or f16, got 'f64'
attn.variant @plain {
}

// -----

// Runtime params become arguments in declaration order; const ones fold.
// CHECK-LABEL: func.func @params(
// CHECK-SAME: memref<?xf32, strided<[?], offset: ?>>, %[[W:[a-z0-9]+]]: i32, %[[FLAG:[a-z0-9]+]]: i32, %{{.+}}: i32, %[[ST:[a-z0-9]+]]: memref<8xi32>)
// Integer division checks its divisor and records code 2.
// CHECK: arith.floordivsi
// CHECK: memref.store %c2_i32, %[[ST]]
// Tensor reads are bounds-checked; the error (code 1) goes to the status word.
// CHECK: scf.if
// CHECK: memref.load
// CHECK: } else {
// CHECK: memref.store %c1_i32{{.*}}, %[[ST]]
// CHECK: arith.constant 5.000000e+01 : f32
// CHECK-NOT: attn.
attn.variant @params {
  attn.param @slopes : f32[H]
  attn.param const @cap : f32 = 50.0
  attn.param @w : i32 = 4
  attn.param @flag : i1 = true
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %slope = attn.param_load @slopes[%h] : f32
    %c = attn.param_get @cap : f32
    %x = arith.mulf %slope, %c : f32
    %r = arith.addf %s, %x : f32
    attn.yield %r : f32
  }
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %w = attn.param_get @w : i32
    %d = attn.floordiv %q, %w
    %m = arith.cmpi sle, %kv, %d : i32
    %f = attn.param_get @flag : i1
    %r = arith.andi %m, %f : i1
    attn.yield %r : i1
  }
}

// -----

// Sigmoid: no row maximum or LSE, weights 1 / (1 + exp(-s)).
// CHECK-LABEL: func.func @sig(
// CHECK: arith.negf
// CHECK: math.exp
// CHECK-NOT: math.log
attn.variant @sig {
  attn.normalize sigmoid
}
