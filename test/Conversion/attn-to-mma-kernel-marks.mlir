// convert-attn-to-mma-kernel with mark-kernel=true: a data-dependent mask
// gets a second kernel, @<variant>_marks, that the launcher runs first on
// the same arguments plus the marks buffer (memref<?xi32>, the last
// argument of both). Its block per (b', h', q-tile) item summarises the
// row's kv-tiles and marks the live and the all-kept ones in shared memory,
// then writes the 34 words (two bitmaps of 16 words, the first and last
// live tile) of its item. A block of the attention kernel copies its
// q-tile's 34 words into the same shared memory instead of working them
// out: no summaries, no shuffles and no atomics of its own.
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true mark-kernel=true" | FileCheck %s
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=f16 head-dim=64 value-dim=64 mark-kernel=true" | FileCheck %s --check-prefix=MMA
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true mark-kernel=true persistent=true" | FileCheck %s --check-prefix=PERSIST
// RUN: attn-opt %s --split-input-file --convert-attn-to-mma-kernel="element-type=bf16 head-dim=128 value-dim=128 wgmma=true" | FileCheck %s --check-prefix=OFF

// The mark kernel: its items differ neither in b nor in h (the mask reads
// neither), 34 words each; shared memory for the table (4096 bytes) and the
// marks only. Block -> q-tile; the summaries (shuffles), a barrier, the
// marks (shared atomics), a barrier, the words out at block * 34.
// CHECK-LABEL: gpu.func @documents_marks
// CHECK-SAME: %[[MARKS:[^:]+]]: memref<?xi32>)
// CHECK-SAME: attnc.dynamic_shared_bytes = 4232 : i64, attnc.mark_kernel = array<i64: 0, 0, 34>
// First it waits for the kernel before it on the stream (a programmatic
// dependent launch on Hopper), then lets the attention kernel launch.
// CHECK-NOT: memref.load
// CHECK: nvvm.griddepcontrol wait
// CHECK-NEXT: nvvm.griddepcontrol launch_dependents
// CHECK: %[[WORDS:.+]] = memref.view %{{.+}}[%c4096][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<34xi32, #gpu.address_space<workgroup>>
// CHECK: arith.remui %block_id_x
// CHECK: gpu.shuffle xor
// CHECK: gpu.barrier
// CHECK: memref.atomic_rmw ori
// CHECK: gpu.barrier
// CHECK: %[[BASE:.+]] = arith.muli %block_id_x, %c34
// CHECK: memref.load %[[WORDS]][%thread_id_x]
// CHECK: memref.store %{{.+}}, %[[MARKS]][%{{.+}}] : memref<?xi32>
// CHECK: gpu.return
// The attention kernel: the same arguments; its q-tile's words in (item
// (q0 / 128) * 34 + tid), a barrier, then the loop bounds from them.
// CHECK-LABEL: gpu.func @documents(
// CHECK-SAME: %[[MARKS2:[^:]+]]: memref<?xi32>)
// CHECK-SAME: attnc.dynamic_shared_bytes = 165000 : i64
// CHECK-NOT: attnc.mark_kernel
// It lets the next kernel launch, copies Q, and waits for the mark
// kernel only before it reads the marks.
// CHECK-NOT: nvvm.griddepcontrol wait
// CHECK: nvvm.griddepcontrol launch_dependents
// CHECK: %[[WORDS2:.+]] = memref.view %{{.+}}[%c164864][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<34xi32, #gpu.address_space<workgroup>>
// CHECK-NOT: gpu.shuffle
// CHECK-NOT: memref.atomic_rmw ori
// CHECK-NOT: nvvm.griddepcontrol wait
// CHECK: nvgpu.device_async_copy
// CHECK-NOT: gpu.shuffle
// CHECK-NOT: memref.atomic_rmw ori
// CHECK: nvvm.griddepcontrol wait
// CHECK: %[[W:.+]] = memref.load %[[MARKS2]][%{{.+}}] : memref<?xi32>
// CHECK-NEXT: memref.store %[[W]], %[[WORDS2]][%thread_id_x]
// CHECK-NOT: memref.atomic_rmw ori
// CHECK: gpu.barrier
// CHECK-NOT: memref.atomic_rmw ori
// CHECK: scf.while
// CHECK: gpu.return

// mma.sync (sm_80) takes the mark kernel too.
// Hopper only: no griddepcontrol on mma.sync.
// MMA-LABEL: gpu.func @documents_marks
// MMA-SAME: attnc.mark_kernel = array<i64: 0, 0, 34>
// MMA-NOT: griddepcontrol
// MMA-LABEL: gpu.func @documents(
// MMA-SAME: memref<?xi32>)
// MMA-NOT: memref.atomic_rmw ori
// MMA-NOT: griddepcontrol
// MMA-LABEL: gpu.func @per_head_marks

// The persistent kernel works out its next item's marks itself: no mark
// kernel, no marks argument.
// PERSIST-NOT: _marks
// PERSIST: gpu.func @documents(
// PERSIST-NOT: memref<?xi32>)
// PERSIST-SAME: attnc.persistent
// PERSIST: memref.atomic_rmw ori

// Off (the pass's default): one kernel that marks its own tiles.
// OFF-NOT: _marks
// OFF: gpu.func @documents(
// OFF-NOT: memref<?xi32>)
// OFF: memref.atomic_rmw ori
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

// A mask that reads h: an item per (h, q-tile), q-tile fastest; the
// attention kernel's item is (h * numQTiles + q0 / 128).
// CHECK-LABEL: gpu.func @per_head_marks
// CHECK-SAME: attnc.mark_kernel = array<i64: 0, 1, 34>
// CHECK: arith.remui %block_id_x, %[[NQ:[^ ]+]] :
// CHECK-NEXT: %[[REST:.+]] = arith.divui %block_id_x, %[[NQ]]
// CHECK: arith.remui %[[REST]], %{{.+}}
// CHECK-LABEL: gpu.func @per_head(
// CHECK: %[[QT:.+]] = arith.divui %{{.+}}, %c128
// CHECK: %[[NQ2:.+]] = arith.ceildivui %{{.+}}, %c128
// CHECK: %[[HN:.+]] = arith.muli %{{.+}}, %[[NQ2]]
// CHECK: %[[ITEM:.+]] = arith.addi %[[HN]], %[[QT]]
// CHECK: arith.muli %[[ITEM]], %c34
attn.variant @per_head {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %dq = attn.param_load @doc[%q] : i32
    %dk = attn.param_load @doc[%kv] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    %c3 = arith.constant 3 : i32
    %hm = arith.cmpi ne, %h, %c3 : i32
    %r = arith.andi %m, %hm : i1
    attn.yield %r : i1
  }
}

// -----

// A document mask that reads b and h: a mark item per block of the
// attention kernel would be the same work plus a launch, so none.
// CHECK-NOT: _marks
// CHECK-LABEL: gpu.func @per_batch_and_head(
// CHECK-NOT: memref<?xi32>)
// CHECK-SAME: kernel
// CHECK: memref.atomic_rmw ori
attn.variant @per_batch_and_head {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %dq = attn.param_load @doc[%q] : i32
    %dk = attn.param_load @doc[%kv] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    %bh = arith.cmpi ne, %b, %h : i32
    %r = arith.andi %m, %bh : i1
    attn.yield %r : i1
  }
}

// -----

// A mask that reads b only: an item per (b, q-tile).
// CHECK-LABEL: gpu.func @per_batch_marks
// CHECK-SAME: attnc.mark_kernel = array<i64: 1, 0, 34>
attn.variant @per_batch {
  attn.param @doc : i32[Lkv]
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %dq = attn.param_load @doc[%q] : i32
    %dk = attn.param_load @doc[%kv] : i32
    %m = arith.cmpi eq, %dq, %dk : i32
    %c0 = arith.constant 0 : i32
    %b0 = arith.cmpi ne, %b, %c0 : i32
    %r = arith.andi %m, %b0 : i1
    attn.yield %r : i1
  }
}

// -----

// A mask that reads no tensor: no mark kernel.
// CHECK-NOT: _marks
// CHECK-LABEL: gpu.func @causal(
// CHECK-NOT: memref<?xi32>)
// CHECK-SAME: kernel
attn.variant @causal {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
}
