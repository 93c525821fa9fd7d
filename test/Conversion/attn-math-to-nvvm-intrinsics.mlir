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

// CHECK-LABEL: func.func @f64_stays
// CHECK: math.exp2 %{{.+}} : f64
func.func @f64_stays(%x: f64) -> f64 {
  %a = math.exp2 %x : f64
  return %a : f64
}
