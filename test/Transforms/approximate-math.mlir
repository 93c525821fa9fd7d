// attn-approximate-math: vector math becomes polynomial arithmetic.
// RUN: attn-opt %s --attn-approximate-math | FileCheck %s

// CHECK-LABEL: func.func @softcap
// CHECK-NOT: math.tanh
// CHECK: arith.mulf %{{.+}}, %{{.+}} : vector<16xf32>
// CHECK: arith.select
func.func @softcap(%x: vector<16xf32>) -> vector<16xf32> {
  %t = math.tanh %x : vector<16xf32>
  return %t : vector<16xf32>
}

// CHECK-LABEL: func.func @exp
// CHECK-NOT: math.exp
// CHECK: arith.bitcast
func.func @exp(%x: vector<16xf32>) -> vector<16xf32> {
  %e = math.exp %x : vector<16xf32>
  return %e : vector<16xf32>
}
