// convert-attn-to-mma-kernel with wgmma=true and a data-dependent mask: a
// persistent kernel. Block i works on items i, i + gridDim.x, ... (the
// launcher starts only as many blocks as fit on the GPU); the first item's
// prologue (its tile, the Q copy, the summaries and live-tile marks, the
// copies of K_0, K_1 and V_0) runs before the loop, and each iteration runs
// the next item's prologue after its last P V and before its epilogue, so
// those copies fly while O is written. O is staged in shared memory of its
// own, after the V tiles, with no wait for the copies in flight. Off by
// default (the pass's `persistent` option): measured slower on an H100.
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true persistent=true" | FileCheck %s
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true persistent=true" | grep -B2 "arith.addi .*%grid_dim_x" | FileCheck %s --check-prefix=MID
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true" | FileCheck %s --check-prefix=OFF
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=256 value-dim=256 wgmma=true persistent=true" | FileCheck %s --check-prefix=D256
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=128 value-dim=128 persistent=true" | FileCheck %s --check-prefix=MMA

// Q 32 KiB, K and V 2 x 32 KiB, the staging tile 128 x 136 x 2 = 34816,
// the alignment slack 1024: 199680; then the two bitmaps (64 each) and the
// first and last live tile (8). The summaries (4096) lie in the second K
// buffer, at 1024-aligned 32 KiB + 32 KiB.
// CHECK-LABEL: gpu.func @documents
// CHECK-SAME: attnc.dynamic_shared_bytes = 199816 : i64, attnc.persistent
// CHECK: %[[AT:.+]] = arith.addi %{{.+}}, %c65536
// CHECK-NEXT: memref.view %{{.+}}[%[[AT]]][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<512x2xi32, #gpu.address_space<workgroup>>
// CHECK: memref.view %{{.+}}[%c199680][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<16xi32, #gpu.address_space<workgroup>>
// CHECK: %[[GRID:.+]] = gpu.grid_dim x
// The first item's prologue: Q, the summaries, K_0, then K_1 and V_0.
// CHECK: scf.if
// CHECK: nvgpu.device_async_copy
// CHECK: gpu.shuffle xor
// CHECK: memref.atomic_rmw ori
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.cp.async.commit.group
// CHECK: scf.while (%[[ITEM:[^ ]+]] = %block_id_x
// CHECK: scf.condition
// The item's tile again from its number; no copy of its own before the
// wait for Q and K_0.
// CHECK: llvm.inline_asm has_side_effects {{.*}}"=r,0"
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: nvvm.cp.async.wait.group 2
// CHECK: wgmma.mma_async
// After the last P V: nothing in flight, a barrier (MID), then the next
// item's prologue with its copies.
// CHECK: arith.addi %[[ITEM]], %[[GRID]]
// CHECK: scf.if
// CHECK: nvgpu.device_async_copy
// CHECK: memref.atomic_rmw ori
// CHECK: nvvm.cp.async.commit.group
// The epilogue: O staged after the V tiles, with no wait for those copies.
// CHECK: llvm.inline_asm has_side_effects {{.*}}"=r,0"
// CHECK: arith.addi %{{.+}}, %c163840
// CHECK-NEXT: memref.view {{.+}} to memref<128x136xbf16, #gpu.address_space<workgroup>>
// CHECK-NOT: nvvm.cp.async.wait.group
// CHECK: vector.store
// CHECK: gpu.barrier
// CHECK: scf.yield
// CHECK-NEXT: }
// CHECK-NEXT: gpu.return

// MID: nvvm.cp.async.wait.group 0
// MID-NEXT: gpu.barrier
// MID-NEXT: arith.addi

// Off (the default): one item per block, O staged over the Q and K tiles after a
// wait for every copy. 165000 bytes: the tiles and slack (164864), the
// bitmaps and the ends, so that the 164 KiB shared-memory carve-out holds it.
// OFF-LABEL: gpu.func @documents
// OFF-SAME: attnc.dynamic_shared_bytes = 165000 : i64, known_block_size
// OFF-NOT: gpu.grid_dim
// OFF: memref.view {{.+}} to memref<128x136xbf16, #gpu.address_space<workgroup>>
// OFF-NEXT: nvvm.cp.async.wait.group 0
// OFF-NEXT: gpu.barrier

// Head dim 256: the tiles (192 KiB) and a staging tile of its own (66 KiB)
// would not fit in 227 KiB, so the kernel is not persistent.
// D256-LABEL: gpu.func @documents
// D256-SAME: attnc.dynamic_shared_bytes = 197768 : i64, known_block_size
// D256-NOT: gpu.grid_dim

// The mma.sync kernel is never persistent.
// MMA-LABEL: gpu.func @documents
// MMA-NOT: attnc.persistent
// MMA-NOT: gpu.grid_dim
// MMA: gpu.return
attn.variant @documents {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %dq = attn.param_load @doc[%q] : i32
    %dk = attn.param_load @doc[%kv] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    attn.yield %m : i1
  }
}

// -----

// A mask the tile abstraction solves in closed form: not persistent (the
// hardware's block scheduler balances the rows of different lengths).
// CHECK-LABEL: gpu.func @causal
// CHECK-NOT: attnc.persistent
// CHECK-NOT: gpu.grid_dim
// CHECK: gpu.return
// OFF-LABEL: gpu.func @causal
// D256-LABEL: gpu.func @causal
// MMA-LABEL: gpu.func @causal
attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sge, %q, %kv : i32
    attn.yield %m : i1
  }
}
