// convert-attn-math-to-nvvm-intrinsics: f32 math ops that NVPTX implements
// in one instruction become NVVM intrinsic calls (no libdevice); other
// types and ops stay.
// RUN: attn-opt %s --convert-attn-math-to-nvvm-intrinsics | FileCheck %s

// CHECK-LABEL: func.func @f32_ops
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.f32"(%{{.+}}) : (f32) -> f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.f"(%{{.+}}) : (f32) -> f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.sqrt.rn.f"(%{{.+}}) : (f32) -> f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.floor.f"(%{{.+}}) : (f32) -> f32
// CHECK: llvm.call_intrinsic "llvm.fma.f32"(%{{.+}}, %{{.+}}, %{{.+}}) : (f32, f32, f32) -> f32
// CHECK: math.tanh
// CHECK-NOT: math.exp2
func.func @f32_ops(%x: f32) -> f32 {
  %a = math.exp2 %x : f32
  %b = math.log2 %a : f32
  %c = math.sqrt %b : f32
  %d = math.floor %c : f32
  %e = math.fma %d, %d, %x : f32
  %f = math.tanh %e : f32
  return %f : f32
}

// A softmax weight (afn) may flush denormal results: ex2.approx.ftz.
// CHECK-LABEL: func.func @exp2_afn
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"(%{{.+}}) : (f32) -> f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.f32"(%{{.+}}) : (f32) -> f32
func.func @exp2_afn(%x: f32) -> f32 {
  %a = math.exp2 %x fastmath<afn> : f32
  %b = math.exp2 %a fastmath<nnan> : f32
  return %b : f32
}

// maxnumf / minnumf as LLVM intrinsics (max.f32), not __nv_fmaxf.
// CHECK-LABEL: func.func @max_min
// CHECK: llvm.call_intrinsic "llvm.maxnum.f32"(%{{.+}}, %{{.+}}) : (f32, f32) -> f32
// CHECK: llvm.call_intrinsic "llvm.minnum.f32"(%{{.+}}, %{{.+}}) : (f32, f32) -> f32
// CHECK-NOT: arith.maxnumf
func.func @max_min(%x: f32, %y: f32) -> f32 {
  %a = arith.maxnumf %x, %y : f32
  %b = arith.minnumf %a, %y : f32
  return %b : f32
}

// CHECK-LABEL: func.func @f64_stays
// CHECK: math.exp2 %{{.+}} : f64
func.func @f64_stays(%x: f64) -> f64 {
  %a = math.exp2 %x : f64
  return %a : f64
}

// |x| on i32 as a compare and a select (no __nv_abs).
// CHECK-LABEL: func.func @absi
// CHECK: %[[NEG:.+]] = arith.cmpi slt, %[[X:.+]], %c0_i32
// CHECK: %[[M:.+]] = arith.subi %c0_i32, %[[X]]
// CHECK: arith.select %[[NEG]], %[[M]], %[[X]] : i32
// CHECK-NOT: math.absi
func.func @absi(%x: i32) -> i32 {
  %a = math.absi %x : i32
  return %a : i32
}

// powf as 2^(y log2 |x|) with the special cases (no __nv_powf).
// CHECK-LABEL: func.func @powf
// CHECK-DAG: arith.constant 0x7FC00000 : f32
// CHECK-DAG: arith.constant 1.000000e+00 : f32
// CHECK: llvm.call_intrinsic "llvm.fabs.f32"
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.f"
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.f32"
// CHECK: arith.cmpf olt
// CHECK: arith.negf
// CHECK-NOT: math.powf
func.func @powf(%x: f32, %y: f32) -> f32 {
  %a = math.powf %x, %y : f32
  return %a : f32
}
