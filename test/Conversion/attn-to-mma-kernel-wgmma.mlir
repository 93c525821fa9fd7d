// convert-attn-to-mma-kernel with wgmma=true: the Hopper kernel. Two
// warpgroups (256 threads, 128 query rows); Q, K and V tiles in 128-byte
// swizzled shared memory (64-element rows, K and V double-buffered) at a
// 1024-byte-aligned start; S = Q K^T and O += P V as wgmma.mma_async groups,
// the P V group of the previous tile overlapping this tile's softmax
// (wait_group 1, then 0), in two copies (with and without the mask);
// fence.proxy.async after each cp.async wait; Q, K_0, K_1 and V_0 in
// flight before the first wait.
// RUN: attn-opt %s --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true" | FileCheck %s
// RUN: attn-opt %s --convert-attn-to-mma-kernel="element-type=f16 head-dim=64 value-dim=64 wgmma=true" | FileCheck %s --check-prefix=F16
// RUN: not attn-opt %s --convert-attn-to-mma-kernel="element-type=f16 head-dim=96 wgmma=true" 2>&1 | FileCheck %s --check-prefix=BADDIM
// RUN: not attn-opt %s --convert-attn-to-mma-kernel="element-type=f16 head-dim=128 tile-kv=272 wgmma=true" 2>&1 | FileCheck %s --check-prefix=BADTILE

// BADDIM: the wgmma kernel needs head dims that are multiples of 64 up to 256
// BADTILE: the wgmma kernel's tile-kv must be a multiple of 16 up to 256

// Q 128 x 128, K and V 2 x 128 x 128 bf16, plus 1024 bytes of alignment slack.
// CHECK: gpu.func @causal
// CHECK-SAME: attnc.dynamic_shared_bytes = 164864 : i64, known_block_size = array<i32: 256, 1, 1>
// A programmatic dependent launch: first thing, the kernel waits for the
// one before it on the stream, then lets the next one launch.
// CHECK-NOT: memref.load
// CHECK: nvvm.griddepcontrol wait
// CHECK-NEXT: nvvm.griddepcontrol launch_dependents
// CHECK: memref.extract_aligned_pointer_as_index
// CHECK: memref.view {{.*}} to memref<256x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<512x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<512x64xbf16, #gpu.address_space<workgroup>>
// Q goes in flight before the kv range is known, then K_0; the prologue
// starts K_1 (a group even when there is none) and V_0 before it waits for
// Q and K_0 only (two groups may stay pending).
// CHECK: nvgpu.device_async_copy
// CHECK: nvvm.cp.async.commit.group
// CHECK: arith.floordivsi
// CHECK-NOT: nvvm.cp.async.wait.group
// CHECK: nvvm.cp.async.commit.group
// CHECK-NOT: nvvm.cp.async.wait.group
// CHECK: nvvm.cp.async.commit.group
// CHECK-NOT: nvvm.cp.async.wait.group
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: nvvm.cp.async.wait.group 2
// Prologue: S_0 alone.
// CHECK: "fence.proxy.async.shared::cta;"
// CHECK: "wgmma.fence.sync.aligned;"
// CHECK: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1, 1, 0, 0;
// CHECK: "wgmma.wait_group.sync.aligned 0;"
// The loop: S_i, then P_{i-1} V_{i-1} (P from registers, V transposed).
// CHECK: scf.while
// CHECK: "fence.proxy.async.shared::cta;"
// CHECK: "wgmma.fence.sync.aligned; // tile with mask"
// CHECK: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1, 1, 0, 0;
// CHECK: "wgmma.commit_group.sync.aligned;"
// CHECK: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1, 1, 1;
// CHECK: "wgmma.commit_group.sync.aligned;"
// CHECK: "wgmma.wait_group.sync.aligned 1;"
// CHECK: math.exp2
// CHECK: "wgmma.wait_group.sync.aligned 0;"
// CHECK: "wgmma.fence.sync.aligned; // tile without mask"
// CHECK: "wgmma.wait_group.sync.aligned 1;"
// CHECK: "wgmma.wait_group.sync.aligned 0;"
// The last tile's P V after the loop.
// CHECK: "wgmma.fence.sync.aligned;"
// CHECK: p, 1, 1, 1;
// CHECK: "wgmma.wait_group.sync.aligned 0;"
// O staged in shared memory from the aligned start (the Q tile's place),
// rows padded by 8 elements, and written in 16-byte chunks of rows.
// CHECK: memref.view {{.*}} to memref<128x136xbf16, #gpu.address_space<workgroup>>
// CHECK-NEXT: nvvm.cp.async.wait.group 0
// CHECK-NEXT: gpu.barrier
// CHECK: vector.store {{.*}} : memref<128x136xbf16, #gpu.address_space<workgroup>>, vector<2xbf16>
// CHECK: gpu.barrier
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<128x136xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
// CHECK: vector.store {{.*}} {alignment = 16 : i64} : memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, vector<8xbf16>

// Small heads take 64-key tiles and two blocks per SM (128 registers).
// F16: attnc.dynamic_shared_bytes = 50176 : i64, known_block_size = array<i32: 256, 1, 1>
// F16-SAME: nvvm.minctasm = 2
// F16: memref<128x64xf16, #gpu.address_space<workgroup>>
// F16: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, 1, 1, 0, 0;
// F16: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, p, 1, 1, 1;

attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}
