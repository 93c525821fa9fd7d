// A const parameter folds to its value; a runtime one stays a read.
// RUN: attn-opt %s --canonicalize | FileCheck %s

// CHECK-LABEL: attn.variant @fold
// CHECK: attn.score
// CHECK-NOT: attn.param_get @cap
// CHECK: %[[C:.+]] = arith.constant 5.000000e+01 : f32
// CHECK: attn.param_get @bias : f32
// CHECK: arith.mulf %{{.+}}, %[[C]]
attn.variant @fold {
  attn.param const @cap : f32 = 50.0
  attn.param @bias : f32 = 1.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %c = attn.param_get @cap : f32
    %bias = attn.param_get @bias : f32
    %x = arith.addf %s, %bias : f32
    %r = arith.mulf %x, %c : f32
    attn.yield %r : f32
  }
}
