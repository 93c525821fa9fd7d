// Round trip of every attn op, in custom form and through the generic form.
// RUN: attn-opt %s --split-input-file | attn-opt --split-input-file | FileCheck %s
// RUN: attn-opt %s --split-input-file --mlir-print-op-generic | attn-opt --split-input-file | FileCheck %s

// CHECK-LABEL: attn.variant @empty {
// CHECK-NEXT: }
attn.variant @empty {
}

// -----

// CHECK-LABEL: attn.variant @params
// CHECK: attn.param @slopes : f32[H]
// CHECK: attn.param @doc : i32[B, Lkv]
// CHECK: attn.param @blocks : i1[?, 64]
// CHECK: attn.param @window : i32 = 4096
// CHECK: attn.param @flag : i1 = true
// CHECK: attn.param @bias : f32 = 5.000000e-01
// CHECK: attn.param const @cap : f32 = 5.000000e+01
// CHECK: attn.param const @n : i32 = -3
attn.variant @params {
  attn.param @slopes : f32[H]
  attn.param @doc : i32[B, Lkv]
  attn.param @blocks : i1[?, 64]
  attn.param @window : i32 = 4096
  attn.param @flag : i1 = true
  attn.param @bias : f32 = 0.5
  attn.param const @cap : f32 = 50.0
  attn.param const @n : i32 = -3
}

// -----

// CHECK-LABEL: attn.variant @items
// CHECK: attn.scale {
// CHECK:   %[[D:.+]] = attn.size D
// CHECK:   attn.yield %{{.+}} : f32
// CHECK: attn.score(%[[B:.+]]: i32, %[[H:.+]]: i32, %[[Q:.+]]: i32, %[[KV:.+]]: i32, %[[S:.+]]: f32) {
// CHECK:   %[[SL:.+]] = attn.param_load @slopes[%[[H]]] : f32
// CHECK:   attn.yield %{{.+}} : f32
// CHECK: attn.mask(%{{.+}}: i32, %{{.+}}: i32, %[[MQ:.+]]: i32, %[[MKV:.+]]: i32) {
// CHECK:   attn.floordiv %[[MQ]], %{{.+}}
// CHECK:   attn.floormod %[[MKV]], %{{.+}}
// CHECK:   attn.param_get @window : i32
// CHECK:   attn.yield %{{.+}} : i1
// CHECK: attn.normalize softmax sink(%{{.+}}: i32, %{{.+}}: i32) {
// CHECK:   attn.yield %{{.+}} : f32
attn.variant @items {
  attn.param @slopes : f32[H]
  attn.param @window : i32 = 16
  attn.scale {
    %d = attn.size D
    %f = arith.sitofp %d : i32 to f32
    %r = math.rsqrt %f : f32
    attn.yield %r : f32
  }
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %slope = attn.param_load @slopes[%h] : f32
    %r = arith.addf %s, %slope : f32
    attn.yield %r : f32
  }
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %c = arith.constant 4 : i32
    %qd = attn.floordiv %q, %c
    %km = attn.floormod %kv, %c
    %w = attn.param_get @window : i32
    %x = arith.addi %qd, %km : i32
    %m = arith.cmpi slt, %x, %w : i32
    attn.yield %m : i1
  }
  attn.normalize softmax sink(%b: i32, %h: i32) {
    %z = arith.constant 0.0 : f32
    attn.yield %z : f32
  }
}

// -----

// CHECK-LABEL: attn.variant @sigmoid
// CHECK: attn.normalize sigmoid
attn.variant @sigmoid {
  attn.normalize sigmoid
}

// -----

// CHECK-LABEL: attn.variant @relu
// CHECK: attn.normalize relu
attn.variant @relu {
  attn.normalize relu
}

// -----

// CHECK-LABEL: attn.variant @linear
// CHECK: attn.normalize linear
attn.variant @linear {
  attn.normalize linear
}

// -----

// The scale may read const params.
// CHECK-LABEL: attn.variant @const_scale
// CHECK: attn.scale {
// CHECK:   attn.param_get @c : f32
attn.variant @const_scale {
  attn.param const @c : f32 = 2.500000e-01
  attn.scale {
    %x = attn.param_get @c : f32
    attn.yield %x : f32
  }
}

// -----

// The backward form: the score's and the sink's vector-Jacobian products,
// accumulating into the gradients of scalar and tensor params.
// CHECK-LABEL: attn.variant @grads
// CHECK: attn.score_grad(%[[B:.+]]: i32, %[[H:.+]]: i32, %[[Q:.+]]: i32, %[[KV:.+]]: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[T:.+]] = attn.param_get @temp : f32
// CHECK:   %[[G:.+]] = arith.mulf %[[DT]], %[[S]] : f32
// CHECK:   attn.accumulate_grad %[[G]] to @temp
// CHECK:   attn.accumulate_grad %[[DT]] to @bias[%[[H]], %[[Q]], %[[KV]]]
// CHECK:   %[[DS:.+]] = arith.mulf %[[DT]], %[[T]] : f32
// CHECK:   attn.yield %[[DS]] : f32
// CHECK: attn.sink_grad(%{{.+}}: i32, %[[SH:.+]]: i32, %[[DE:.+]]: f32) {
// CHECK:   attn.accumulate_grad %[[DE]] to @sinks[%[[SH]]]
// CHECK:   attn.yield{{$}}
attn.variant @grads {
  attn.param @temp : f32 = 1.0
  attn.param @bias : f32[H, Lq, Lkv]
  attn.param @sinks : f32[H]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %t = attn.param_get @temp : f32
    %x = attn.param_load @bias[%h, %q, %kv] : f32
    %m = arith.mulf %s, %t : f32
    %r = arith.addf %m, %x : f32
    attn.yield %r : f32
  }
  attn.normalize softmax sink(%b: i32, %h: i32) {
    %e = attn.param_load @sinks[%h] : f32
    attn.yield %e : f32
  }
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    %t = attn.param_get @temp : f32
    %g = arith.mulf %dt, %s : f32
    attn.accumulate_grad %g to @temp
    attn.accumulate_grad %dt to @bias[%h, %q, %kv]
    %ds = arith.mulf %dt, %t : f32
    attn.yield %ds : f32
  }
  attn.sink_grad(%b: i32, %h: i32, %de: f32) {
    attn.accumulate_grad %de to @sinks[%h]
    attn.yield
  }
}
