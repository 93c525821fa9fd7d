// attn-reassociate-index-offsets: integer constants move out of index
// arithmetic and through int-to-float conversions, so that the elements of
// an accumulator tile, whose kv indices differ by constants, share one
// conversion.
// RUN: attn-opt %s --attn-reassociate-index-offsets --cse | FileCheck %s
// With integer=false (the mma.sync and SIMT kernels) only what a conversion
// reads is rewritten; other integer arithmetic keeps its form.
// RUN: attn-opt %s --attn-reassociate-index-offsets=integer=false --cse | FileCheck %s --check-prefix=CONV

// Two elements of one row, at kv = base + 1 and base + 9: one conversion,
// two float adds of 1.0 and 9.0.
// CHECK-LABEL: func.func @alibi_pair
// CHECK-SAME: (%[[BASE:.+]]: index, %[[Q:.+]]: i32)
// CHECK-DAG: %[[C9:.+]] = arith.constant 9.000000e+00 : f32
// CHECK-DAG: %[[C1:.+]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[B32:.+]] = arith.index_cast %[[BASE]] : index to i32
// CHECK: %[[D:.+]] = arith.subi %[[B32]], %[[Q]] : i32
// CHECK: %[[F:.+]] = arith.sitofp %[[D]] : i32 to f32
// CHECK-NOT: arith.sitofp
// CHECK: %[[R1:.+]] = arith.addf %[[F]], %[[C1]] : f32
// CHECK: %[[R9:.+]] = arith.addf %[[F]], %[[C9]] : f32
// CHECK: return %[[R1]], %[[R9]]
// CONV-LABEL: func.func @alibi_pair
// CONV: arith.sitofp
// CONV-NOT: arith.sitofp
// CONV: return
func.func @alibi_pair(%base: index, %q: i32) -> (f32, f32) {
  %c1 = arith.constant 1 : index
  %c9 = arith.constant 9 : index
  %k1 = arith.addi %base, %c1 : index
  %k9 = arith.addi %base, %c9 : index
  %k1i = arith.index_cast %k1 : index to i32
  %k9i = arith.index_cast %k9 : index to i32
  %d1 = arith.subi %k1i, %q : i32
  %d9 = arith.subi %k9i, %q : i32
  %f1 = arith.sitofp %d1 : i32 to f32
  %f9 = arith.sitofp %d9 : i32 to f32
  return %f1, %f9 : f32, f32
}

// Constants on both sides of a subtraction and under a multiplication by a
// constant: (q + 8) - 2 (kv + 3) = (q - 2 kv) + 2.
// CHECK-LABEL: func.func @nested
// CHECK-SAME: (%[[Q:.+]]: i32, %[[KV:.+]]: i32)
// CHECK: %[[C2F:.+]] = arith.constant 2.000000e+00 : f32
// CHECK: %[[M:.+]] = arith.muli %[[KV]], %c2{{.*}} : i32
// CHECK: %[[D:.+]] = arith.subi %[[Q]], %[[M]] : i32
// CHECK: %[[F:.+]] = arith.sitofp %[[D]] : i32 to f32
// CHECK: arith.addf %[[F]], %[[C2F]] : f32
func.func @nested(%q: i32, %kv: i32) -> f32 {
  %c8 = arith.constant 8 : i32
  %c3 = arith.constant 3 : i32
  %c2 = arith.constant 2 : i32
  %q8 = arith.addi %q, %c8 : i32
  %k3 = arith.addi %kv, %c3 : i32
  %m = arith.muli %k3, %c2 : i32
  %d = arith.subi %q8, %m : i32
  %f = arith.sitofp %d : i32 to f32
  return %f : f32
}

// Left alone: a constant too large to be exact in f32 (2^25), a conversion
// to f16, and a widening index cast (sign extension does not commute with
// a wrapping add).
// CHECK-LABEL: func.func @unchanged
// CHECK: %[[A:.+]] = arith.addi %{{.+}}, %c33554432{{.*}} : i32
// CHECK: arith.sitofp %[[A]] : i32 to f32
// CHECK: %[[H:.+]] = arith.addi %{{.+}}, %c3{{.*}} : i32
// CHECK: arith.sitofp %[[H]] : i32 to f16
// CHECK: arith.index_cast %[[H]] : i32 to index
func.func @unchanged(%x: i32) -> (f32, f16, index) {
  %big = arith.constant 33554432 : i32
  %c3 = arith.constant 3 : i32
  %a = arith.addi %x, %big : i32
  %fa = arith.sitofp %a : i32 to f32
  %h = arith.addi %x, %c3 : i32
  %fh = arith.sitofp %h : i32 to f16
  %w = arith.index_cast %h : i32 to index
  return %fa, %fh, %w : f32, f16, index
}

// Integer arithmetic that no conversion reads: the constant moves outwards
// with integer=true, and stays with integer=false.
// CHECK-LABEL: func.func @integer_only
// CHECK-SAME: (%[[X:.+]]: i32, %[[Y:.+]]: i32)
// CHECK: %[[D:.+]] = arith.subi %[[X]], %[[Y]] : i32
// CHECK: %[[R:.+]] = arith.addi %[[D]], %c3{{.*}} : i32
// CHECK: return %[[R]]
// CONV-LABEL: func.func @integer_only
// CONV-SAME: (%[[X:.+]]: i32, %[[Y:.+]]: i32)
// CONV: %[[A:.+]] = arith.addi %[[X]], %c3{{.*}} : i32
// CONV: %[[R:.+]] = arith.subi %[[A]], %[[Y]] : i32
// CONV: return %[[R]]
func.func @integer_only(%x: i32, %y: i32) -> i32 {
  %c3 = arith.constant 3 : i32
  %a = arith.addi %x, %c3 : i32
  %r = arith.subi %a, %y : i32
  return %r : i32
}

// Left alone in both modes: narrow integers (x + 1 wraps in i8 long before
// 2^24) and vectors.
// CHECK-LABEL: func.func @narrow_and_vector
// CHECK: %[[N:.+]] = arith.addi %{{.+}}, %c1{{.*}} : i8
// CHECK: arith.sitofp %[[N]] : i8 to f32
// CHECK: %[[V:.+]] = arith.addi %{{.+}}, %{{.+}} : vector<4xi32>
// CHECK: %[[W:.+]] = arith.subi %[[V]], %{{.+}} : vector<4xi32>
// CHECK: arith.sitofp %[[W]] : vector<4xi32> to vector<4xf32>
func.func @narrow_and_vector(%n: i8, %v: vector<4xi32>, %w: vector<4xi32>)
    -> (f32, vector<4xf32>) {
  %c1 = arith.constant 1 : i8
  %a = arith.addi %n, %c1 : i8
  %fa = arith.sitofp %a : i8 to f32
  %s = arith.constant dense<5> : vector<4xi32>
  %b = arith.addi %v, %s : vector<4xi32>
  %d = arith.subi %b, %w : vector<4xi32>
  %fd = arith.sitofp %d : vector<4xi32> to vector<4xf32>
  return %fa, %fd : f32, vector<4xf32>
}
