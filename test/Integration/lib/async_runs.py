"""Asynchronous GPU runs (attn_run_args_set_async) and their errors.

1. Three queued runs of a causal variant on fresh inputs, back to back on
   one stream, each into its own NaN-poisoned O: every result must match
   its float64 reference (relative error at most 1e-2 in bfloat16) with
   every element written.
2. A queued run that reads a param out of range returns ATTN_OK; the error
   comes from attn_kernel_synchronize ("earlier asynchronous run", the
   param's name), once: a second synchronize is ATTN_OK.
3. The same queued error, then a synchronous run: that run reports the
   earlier error instead of running; the next one runs.
4. A queued error, then a queued run on another stream: that run reports
   the earlier error instead of running.
5. A queued error, then a synchronous run with Lq = 0 (nothing to launch):
   it reports the earlier error; the next one returns ATTN_OK.

Usage: async_runs.py LIBATTN   (needs PyTorch with CUDA; exits 1 on a failure)
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
    rt = C.c_void_p()
    check(lib, lib.attn_runtime_create(C.byref(rt)), "runtime")
    failures = []

    def expect(cond, what):
        print(("PASS " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    stream = torch.cuda.current_stream().cuda_stream
    torch.manual_seed(2)
    B, H, L, D = 2, 4, 700, 64
    idx = torch.arange(L, device="cuda")

    # 1. Queued runs, each checked against its own reference.
    kern = compile_kernel(lib, rt, "attention v { mask = causal(); }", ATTN_BF16, D)
    runs = []
    for _ in range(3):
        q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16)
                   for _ in range(3))
        o = torch.full_like(q, float("nan"))
        keep = []
        args = run_args(lib, q, k, v, o, keep, stream=stream, asynchronous=True)
        runs.append((q, k, v, o, keep, args))
    for q, k, v, o, keep, args in runs:
        check(lib, lib.attn_kernel_run(kern, args), "queued run")
    expect(lib.attn_kernel_synchronize(kern) == 0, "queued runs: synchronize")
    torch.cuda.synchronize()
    for i, (q, k, v, o, keep, args) in enumerate(runs):
        ref = reference(q, k, v, idx[None, :] <= idx[:, None])
        err = relerr(o, ref)
        unwritten = int(torch.isnan(o).sum().item())
        expect(err <= 1e-2 and unwritten == 0,
               "queued run %d: relerr=%.2e unwritten=%d" % (i, err, unwritten))

    # 2. An error found by a queued run, reported by synchronize, once.
    bad = compile_kernel(lib, rt, "attention t { param bias: f32[2]; "
                         "score = score + bias[kv_idx]; }", ATTN_BF16, D)
    q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16)
               for _ in range(3))
    o = torch.empty_like(q)
    bias2 = torch.zeros(2, device="cuda", dtype=torch.float32)
    keep = []
    # bias has its declared 2 entries; the kernel reads bias[kv_idx] for
    # kv_idx up to L - 1, which only the kernel can find.
    args = run_args(lib, q, k, v, o, keep, [("bias", bias2)], stream,
                    asynchronous=True)
    expect(lib.attn_kernel_run(bad, args) == 0, "queued bad run: returns ok")
    st = lib.attn_kernel_synchronize(bad)
    msg = lib.attn_last_error().decode()
    expect(st != 0 and "earlier asynchronous run" in msg and "'bias'" in msg,
           "synchronize reports it: %d %s" % (st, msg))
    expect(lib.attn_kernel_synchronize(bad) == 0, "reported once")

    # 3. The queued error surfaces at the next synchronous run.
    expect(lib.attn_kernel_run(bad, args) == 0, "queued bad run again")
    check(lib, lib.attn_run_args_set_async(args, 0), "sync")
    st = lib.attn_kernel_run(bad, args)
    msg = lib.attn_last_error().decode()
    expect(st != 0 and "earlier asynchronous run" in msg,
           "synchronous run reports the earlier error: %d %s" % (st, msg))
    st = lib.attn_kernel_run(bad, args)
    msg = lib.attn_last_error().decode()
    expect(st != 0 and "earlier" not in msg and "out of range" in msg,
           "then runs itself (and finds its own error): %d %s" % (st, msg))

    # 4. A queued run on another stream waits for the pending ones first
    # (their clear of the error words is not ordered before it) and reports
    # what they found instead of running.
    check(lib, lib.attn_run_args_set_async(args, 1), "async")
    expect(lib.attn_kernel_run(bad, args) == 0, "queued bad run on the first stream")
    other = torch.cuda.Stream()
    args2 = run_args(lib, q, k, v, o, keep, [("bias", bias2)], other.cuda_stream,
                     asynchronous=True)
    st = lib.attn_kernel_run(bad, args2)
    msg = lib.attn_last_error().decode()
    expect(st != 0 and "earlier asynchronous run" in msg,
           "a queued run on another stream reports the pending error: %d %s" % (st, msg))
    expect(lib.attn_kernel_synchronize(bad) == 0, "nothing left pending")

    # 5. A synchronous run with nothing to launch (Lq = 0) still reports
    # the pending error.
    expect(lib.attn_kernel_run(bad, args) == 0, "queued bad run before an empty one")
    q0 = torch.empty(B, H, 0, D, device="cuda", dtype=torch.bfloat16)
    o0 = torch.empty_like(q0)
    args3 = run_args(lib, q0, k, v, o0, keep, [("bias", bias2)], stream)
    st = lib.attn_kernel_run(bad, args3)
    msg = lib.attn_last_error().decode()
    expect(st != 0 and "earlier asynchronous run" in msg,
           "an empty synchronous run reports the pending error: %d %s" % (st, msg))
    expect(lib.attn_kernel_run(bad, args3) == 0, "the next empty run is ok")
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
