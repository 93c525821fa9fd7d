"""The tensor-core GPU kernel writing O through views of every kind.

O is given as contiguous memory, [B, L, H, D] memory seen as [B, H, L, D]
(strides in whole 16 bytes: 16-byte vector stores), one element off 16-byte
alignment, rows of D + 1 elements (element stores) and rows of D + 8
(vectors again), for a causal and a document mask at D = 64 and 128 with
Lq = 1000 (a partial last block), and for a mask whose query and key
documents differ, so that some query rows (whole q-tiles among them) keep
no key at all (O = 0 there).
B H = 80 heads of 8 q-tiles: more work items than blocks that fit on an
H100 at once, so the persistent kernel (data-dependent masks on Hopper)
works on several items per block. Each O is poisoned with NaN, the memory
around the view holds a sentinel; the result must match a float64 reference
(relative error at most 1e-2 in bfloat16), every element of the view must
be written and nothing outside it touched.

Usage: o_views.py LIBATTN [--gpu-persistent]
  (needs PyTorch with CUDA; exits 1 on a failure; --gpu-persistent: the
  persistent wgmma kernel for the data-dependent masks, on Hopper)
"""
import ctypes as C
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "..", "bench", "gpu"))
from compare import (load, check, compile_kernel, run_args, reference,  # noqa: E402
                     relerr, ATTN_BF16)


def main():
    lib = load(sys.argv[1])
    persistent = "--gpu-persistent" in sys.argv[2:]
    rt = C.c_void_p()
    check(lib, lib.attn_runtime_create(C.byref(rt)), "runtime")
    torch.manual_seed(1)
    B, H, L = 2, 40, 1000
    failures = 0
    for D in (64, 128):
        q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16)
                   for _ in range(3))
        doc = (torch.arange(L, device="cuda", dtype=torch.int32) * 5 // L).contiguous()
        # Three query documents, the middle one missing from the keys: its
        # rows (334 to 666, whole q-tiles among them) keep no key.
        hdoc = (torch.arange(L, device="cuda", dtype=torch.int32) * 3 // L).contiguous()
        kdoc = torch.where(hdoc == 1, 99, hdoc).to(torch.int32).contiguous()
        idx = torch.arange(L, device="cuda")
        masks = [
            ("causal", "attention v { mask = causal(); }",
             lambda qi, ki: ki <= qi),
            ("documents", "attention v { param doc: i32[Lkv]; "
             "mask = doc[q_idx] == doc[kv_idx]; }",
             lambda qi, ki: doc[qi] == doc[ki]),
            ("holes", "attention v { param qd: i32[Lq]; param kd: i32[Lkv]; "
             "mask = qd[q_idx] == kd[kv_idx]; }",
             lambda qi, ki: hdoc[qi] == kdoc[ki]),
        ]
        for name, src, mask in masks:
            kern = compile_kernel(lib, rt, src, ATTN_BF16, D, what=name,
                                  persistent=persistent)
            # Rows with no key: O = 0.
            ref = reference(q, k, v, mask(idx[:, None], idx[None, :]))
            for layout in ("contiguous", "blhd", "offset", "pad1", "pad8"):
                n = B * H * L * D
                pitch = D + {"pad1": 1, "pad8": 8}.get(layout, 0)
                raw = torch.full((B * H * L * pitch + 8,), 7.0, device="cuda",
                                 dtype=torch.bfloat16)
                if layout == "blhd":
                    o = raw[:n].view(B, L, H, D).permute(0, 2, 1, 3)
                elif layout == "offset":
                    o = raw[1:n + 1].view(B, H, L, D)
                else:
                    o = raw[:B * H * L * pitch].view(B, H, L, pitch)[..., :D]
                o.fill_(float("nan"))
                keep = []
                params = {"documents": [("doc", doc)],
                          "holes": [("qd", hdoc), ("kd", kdoc)]}.get(name, [])
                args = run_args(lib, q, k, v, o, keep, params)
                check(lib, lib.attn_kernel_run(kern, args), name)
                torch.cuda.synchronize()
                err = relerr(o, ref)
                unwritten = torch.isnan(o.float()).sum().item()
                inside = torch.zeros_like(raw, dtype=torch.bool)
                inside.as_strided(o.shape, o.stride(), o.storage_offset()).fill_(True)
                touched = (raw[~inside] != 7.0).sum().item()
                ok = err <= 1e-2 and unwritten == 0 and touched == 0
                failures += not ok
                print("%s %-10s D=%-3d strides=%-26s relerr=%.2e unwritten=%d "
                      "outside_changed=%d" % ("PASS" if ok else "FAIL", name, D,
                                              tuple(o.stride()), err, unwritten,
                                              touched), flush=True)
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
