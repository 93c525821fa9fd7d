#!/usr/bin/env python3
"""Host overhead of one attnc call from Python, beside FlexAttention's.

On a tiny problem (causal ALiBi, B=1, H=2, L=128, D=64; the kernel takes a
few microseconds) it measures, per call, in microseconds:

  host    the time until the call returns, for calls queued back to back
          (CUDA: runs are asynchronous, so no kernel time is in it; CPU,
          the reference kernel at L = 16: the time of the C API alone on
          the same arguments, timed in turn, is subtracted)
  sync    CUDA only: a call followed by torch.cuda.synchronize(), minus the
          kernel's device time
  device  CUDA only: the kernel's device time per call, from events around
          calls queued behind a sleeping kernel (so the GPU runs them back
          to back, whatever the host's speed)

for: the C API alone (attn_kernel_run on prepared arguments: the floor),
an attnc call (``kernel(q, k, v, slopes=...)``), the custom op called
directly (``torch.ops.attnc.attention``), a torch.compile'd function
holding the attnc call, and torch.compile'd FlexAttention (CUDA; its block
mask made once, outside the timing). The target is host <= 20 us for a
queued CUDA call. Medians of --repeats batches of --calls calls.

  python3 bench/python/overhead.py                  # CUDA when available
  python3 bench/python/overhead.py --device cpu     # NumPy and torch CPU
  python3 bench/python/overhead.py --json overhead.json

Needs the attnc package (PYTHONPATH=python, or installed) and libattn;
PyTorch for the torch rows, a GPU and PyTorch with CUDA for the CUDA rows.
"""

import argparse
import ctypes as C
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import attnc
from attnc import _capi as capi

SOURCE = """
attention alibi {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask = causal();
}
"""
B, H, L, D = 1, 2, 128, 64


def median_us(fn, calls, repeats, after_batch=None):
    """Median over `repeats` batches of the host time per call of `calls`
    calls of fn(); after_batch() (not timed) runs after each batch."""
    fn()
    if after_batch:
        after_batch()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
        if after_batch:
            after_batch()
    return statistics.median(times)


class RawRun:
    """attn_kernel_run on arguments prepared once: the C API's own cost."""

    def __init__(self, compiled, views, stream=None, asynchronous=False):
        lib = capi.lib()
        self.lib, self.handle = lib, compiled._handle
        args = C.c_void_p()
        lib.check(lib.run_args_create(C.byref(args)))
        self.args = args.value
        self.keep = []
        descs = []
        for ptr, dtype, shape, strides in views:
            s = (C.c_int64 * len(shape))(*shape)
            st = (C.c_int64 * len(shape))(*strides)
            t = capi.Tensor(ptr, dtype, len(shape), s, st)
            self.keep += [s, st, t]
            descs.append(t)
        q, k, v, o, slopes = descs
        lib.check(lib.run_args_set_tensors(self.args, C.addressof(q), C.addressof(k),
                                           C.addressof(v), C.addressof(o), None))
        lib.check(lib.run_args_set_tensor(self.args, b"slopes", C.addressof(slopes)))
        if stream is not None:
            lib.check(lib.run_args_set_stream(self.args, stream))
        if asynchronous:
            lib.check(lib.run_args_set_async(self.args, 1))

    def __call__(self):
        self.lib.check(self.lib.kernel_run(self.handle, self.args))


def paired_us(fn, base, calls, repeats):
    """(time of fn) - (time of base) per call, each the fastest of
    `repeats` batches, the two timed in turn (a shared machine's noise only
    ever adds time, so the minimum is the cost)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, g in enumerate((base, fn)):
            t0 = time.perf_counter()
            for _ in range(calls):
                g()
            best[i] = min(best[i], (time.perf_counter() - t0) / calls * 1e6)
    return best[1] - best[0]


def cpu_rows(args, rows):
    """CPU: the reference kernel at L = 16, so the run is short; every row
    is the time of the call minus that of the C API alone, timed in turn."""
    rng = np.random.default_rng(0)
    kern = attnc.compile(SOURCE, tiling="reference")
    Lc = 16
    q, k, v = (rng.standard_normal((B, H, Lc, D)).astype(np.float32)
               for _ in range(3))
    slopes = np.array([0.5, 0.25], np.float32)
    o = np.empty_like(q)
    compiled = kern.specialize("cpu", "float32", D)

    def view(a):
        return (a.ctypes.data, capi.F32, a.shape,
                tuple(s // a.itemsize for s in a.strides))
    raw = RawRun(compiled, [view(x) for x in (q, k, v, o, slopes)])
    rows.append(("cpu", "C API alone (kernel + checks)",
                 paired_us(raw, lambda: None, args.calls, args.repeats),
                 None, None))

    def row(name, fn):
        fn()
        rows.append(("cpu", name, paired_us(fn, raw, args.calls, args.repeats),
                     None, None))
    row("attnc, NumPy (out allocated)", lambda: kern(q, k, v, slopes=slopes))
    row("attnc, NumPy, out=", lambda: kern(q, k, v, slopes=slopes, out=o))
    try:
        import torch
    except ImportError:
        return
    tq, tk, tv, ts = (torch.from_numpy(x) for x in (q, k, v, slopes))
    with torch.no_grad():
        row("attnc, torch CPU", lambda: kern(tq, tk, tv, slopes=ts))
        op = torch.ops.attnc.attention
        row("torch.ops.attnc.attention",
            lambda: op(kern.op_id, tq, tk, tv, [ts], [], [], False, False))
        f = torch.compile(lambda q, k, v, s: kern(q, k, v, slopes=s), fullgraph=True)
        row("torch.compile(fn calling attnc)", lambda: f(tq, tk, tv, ts))


def cuda_rows(args, rows):
    import torch
    dev = "cuda"
    dtype = torch.bfloat16
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, L, D, device=dev, dtype=dtype) for _ in range(3))
    slopes = torch.tensor([0.5, 0.25], device=dev)
    kern = attnc.compile(SOURCE)
    compiled = kern.specialize("cuda", "bfloat16", D)
    o = torch.empty_like(q)
    sync = torch.cuda.synchronize

    def device_us(fn, calls=200):
        """Device time per call: calls queued behind a sleeping kernel run
        back to back however slow the host is."""
        fn()
        sync()
        times = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(True), torch.cuda.Event(True)
            torch.cuda._sleep(int(2e8))        # ~0.1 s: the host queues meanwhile
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            sync()
            times.append(start.elapsed_time(end) * 1e3 / calls)
        return statistics.median(times)

    def row(name, fn):
        dev_us = device_us(fn)
        host = median_us(fn, args.calls, args.repeats, sync)

        def call_sync():
            fn()
            sync()
        sync_us = median_us(call_sync, args.calls, args.repeats) - dev_us
        rows.append(("cuda", name, host, sync_us, dev_us))
        print("%-36s host %7.2f us  sync %7.2f us  device %7.2f us"
              % (name, host, sync_us, dev_us), flush=True)

    stream = torch.cuda.current_stream().cuda_stream

    def tview(t):
        return (t.data_ptr(), {torch.bfloat16: capi.BF16, torch.float32: capi.F32}[
            t.dtype], tuple(t.shape), t.stride())
    raw = RawRun(compiled, [tview(x) for x in (q, k, v, o, slopes)], stream, True)
    row("C API alone (queued)", raw)
    with torch.no_grad():
        row("attnc call (out allocated)", lambda: kern(q, k, v, slopes=slopes))
        row("attnc call, out=", lambda: kern(q, k, v, slopes=slopes, out=o))
        op = torch.ops.attnc.attention
        row("torch.ops.attnc.attention",
            lambda: op(kern.op_id, q, k, v, [slopes], [], [], False, False))
        f = torch.compile(lambda q, k, v, s: kern(q, k, v, slopes=s), fullgraph=True)
        row("torch.compile(fn calling attnc)", lambda: f(q, k, v, slopes))
        try:
            from torch.nn.attention.flex_attention import (create_block_mask,
                                                           flex_attention)
        except ImportError as e:
            print("FlexAttention unavailable:", e)
            return
        bm = create_block_mask(lambda b, h, qi, ki: ki <= qi, None, None, L, L,
                               device=dev)
        flex = torch.compile(flex_attention)

        def score_mod(s, b, h, qi, ki):
            return s + slopes[h] * (ki - qi)
        row("FlexAttention (torch.compile'd)",
            lambda: flex(q, k, v, score_mod=score_mod, block_mask=bm))


def host_isa():
    """AVX-512, AVX2 or the machine name, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return platform.machine()
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags \
        else platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json")
    a = ap.parse_args()
    device = a.device
    if device is None:
        try:
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
    rows = []
    info = {"device": device, "python": platform.python_version(),
            "attnc": attnc.version(),
            "shape": [B, H, L if device == "cuda" else 16, D],
            "cpu": platform.machine(), "isa": host_isa(),
            "cpu_threads": os.cpu_count()}
    if device == "cuda":
        import torch
        info["gpu"] = torch.cuda.get_device_name()
        info["torch"] = torch.__version__
        cuda_rows(a, rows)
    else:
        cpu_rows(a, rows)
    print("\n%s; host %s, %d CPU threads; Python %s; %s" % (
        info.get("gpu", "CPU"), info["isa"], info["cpu_threads"], info["python"],
        info["attnc"]))
    print("%-4s %-36s %10s %10s %10s" % ("", "call", "host us", "sync us", "device us"))
    fmt = lambda x: "%10.2f" % x if x is not None else "%10s" % "-"
    for dev, name, host, sync_us, dev_us in rows:
        print("%-4s %-36s %s %s %s" % (dev, name, fmt(host), fmt(sync_us), fmt(dev_us)))
    if device == "cuda":
        attnc_host = [r[2] for r in rows if r[1] == "attnc call (out allocated)"][0]
        print("\nattnc queued call: %.2f us of host time (target <= 20 us)" % attnc_host)
    if a.json:
        info["rows"] = [dict(zip(("device", "call", "host_us", "sync_overhead_us",
                                  "device_us"), r)) for r in rows]
        with open(a.json, "w") as f:
            json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
