// attn-expand-integer-division: floor and ceil divisions become plain
// divisions; float min and max stay single ops (arith-expand would turn
// them into compares and selects).
// RUN: attn-opt %s --attn-expand-integer-division | FileCheck %s

// CHECK-LABEL: func.func @divisions
// CHECK-NOT: arith.floordivsi
// CHECK-NOT: arith.ceildivsi
// CHECK-NOT: arith.ceildivui
// CHECK: arith.divsi
// CHECK: arith.select
// CHECK: arith.divui
func.func @divisions(%a: i32, %b: i32) -> (i32, i32, i32) {
  %f = arith.floordivsi %a, %b : i32
  %c = arith.ceildivsi %a, %b : i32
  %u = arith.ceildivui %a, %b : i32
  return %f, %c, %u : i32, i32, i32
}

// CHECK-LABEL: func.func @float_max_min
// CHECK-NEXT: %[[M:.+]] = arith.maxnumf %arg0, %arg1 : f32
// CHECK-NEXT: %[[N:.+]] = arith.maximumf %[[M]], %arg1 : f32
// CHECK-NEXT: %[[O:.+]] = arith.minnumf %[[N]], %arg0 : f32
// CHECK-NEXT: %[[P:.+]] = arith.minimumf %[[O]], %arg0 : f32
// CHECK-NEXT: return %[[P]]
func.func @float_max_min(%x: f32, %y: f32) -> f32 {
  %m = arith.maxnumf %x, %y : f32
  %n = arith.maximumf %m, %y : f32
  %o = arith.minnumf %n, %x : f32
  %p = arith.minimumf %o, %x : f32
  return %p : f32
}
