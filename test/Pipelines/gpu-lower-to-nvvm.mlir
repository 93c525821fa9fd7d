// attn-gpu-kernel then attn-gpu-lower-to-nvvm: the kernel in the LLVM and
// NVVM dialects, shared tiles as address-space-3 globals, memrefs passed as
// expanded descriptors, exp2 as ex2.approx.ftz and no libdevice call.
// RUN: attn-opt %s --attn-gpu-kernel="element-type=f16 head-dim=64 value-dim=64 kernel=simt" | attn-opt --attn-gpu-lower-to-nvvm | FileCheck %s
// RUN: attn-opt %s --attn-gpu-kernel="element-type=f16 head-dim=64 value-dim=64" | attn-opt --attn-gpu-lower-to-nvvm | FileCheck %s --check-prefix=MMA
// A kernel that cannot take the options is an error, not another kernel:
// RUN: not attn-opt %s --attn-gpu-kernel="element-type=f32 kernel=mma" 2>&1 | FileCheck %s --check-prefix=BADKERNEL
// RUN: not attn-opt %s --attn-gpu-kernel="kernel=tensor" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// BADKERNEL: error: the tensor-core GPU kernel needs f16 or bf16
// UNKNOWN: error: unknown GPU kernel 'tensor' (expected auto, mma, wgmma or simt)

// The tensor-core kernel: nvgpu ops become NVVM ops, dynamic shared memory
// a zero-sized address-space-3 global.
// MMA: gpu.module @causal
// MMA: llvm.mlir.global internal @__dynamic_shmem__0() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
// MMA: llvm.func @causal(
// MMA-SAME: nvvm.maxntid = array<i32: 128, 1, 1>
// MMA-DAG: nvvm.cp.async.shared.global
// MMA-DAG: nvvm.ldmatrix
// MMA-DAG: nvvm.mma.sync
// MMA-DAG: nvvm.shfl.sync bfly
// MMA-NOT: nvgpu.

// CHECK: gpu.module @causal
// CHECK-DAG: llvm.mlir.global internal @__wg_causal_0() {addr_space = 3 : i32} : !llvm.array<4096 x f16>
// CHECK-DAG: llvm.mlir.global internal @__wg_causal_1() {addr_space = 3 : i32} : !llvm.array<4096 x f16>
// Q, K, V, O: 11 words each (2 pointers, offset, 4 sizes, 4 strides).
// CHECK: llvm.func @causal(%{{.+}}: !llvm.ptr, %{{.+}}: !llvm.ptr, %{{.+}}: i64,
// CHECK-SAME: gpu.kernel
// CHECK-SAME: nvvm.kernel
// CHECK-SAME: nvvm.maxntid = array<i32: 128, 1, 1>
// CHECK: nvvm.read.ptx.sreg.ctaid.x
// CHECK: nvvm.read.ptx.sreg.tid.x
// CHECK: nvvm.barrier
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK-NOT: llvm.call @__nv_
// CHECK-NOT: math.
// CHECK-NOT: memref.
attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}
