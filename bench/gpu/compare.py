#!/usr/bin/env python3
"""Times attnc's GPU kernels beside PyTorch's on the same tensors.

Runs each variant through libattn's C API (ctypes, on torch's device
pointers and current stream) and, where they apply, SDPA's FlashAttention-2
and cuDNN backends and FlexAttention (torch.compile'd; its block-mask
construction timed separately and reported without and with it). Prints a
table of TFLOP/s over unmasked score entries only and ratios, and writes
JSON. Needs a CUDA GPU, PyTorch and a libattn built for it; use a fresh
cache directory per run (ATTN_CACHE_DIR) so compile times are honest.

Each timing queues --batch calls (default 10) back to back between two
device events, so the host's cost of a call (ctypes for ours; Python,
guards and wrappers for torch.compile'd FlexAttention, about 0.1 to 0.25 ms
on an H100 host) overlaps the kernels: the ratios compare kernels. Our runs
are queued too (attn_run_args_set_async; their errors are collected with
attn_kernel_synchronize after the timing); --sync-runs times synchronous
runs, which wait for the kernel and read its error words back. With
--batch 1 every call is timed alone and its launch cost counts.

  python3 bench/gpu/compare.py --lib build/lib/libattn.so --json out.json
"""
import argparse
import ctypes as C
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ATTN_F32, ATTN_F16, ATTN_BF16 = 0, 1, 4
ATTN_TARGET_NVPTX = 1


class Tensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("dtype", C.c_int), ("rank", C.c_int32),
                ("shape", C.POINTER(C.c_int64)), ("strides", C.POINTER(C.c_int64))]


def load(lib_path):
    lib = C.CDLL(lib_path)
    lib.attn_last_error.restype = C.c_char_p
    for name, args in [
        ("attn_runtime_create", [C.POINTER(C.c_void_p)]),
        ("attn_compile_options_create", [C.POINTER(C.c_void_p)]),
        ("attn_compile_options_set_target", [C.c_void_p, C.c_int]),
        ("attn_compile_options_set_dtype", [C.c_void_p, C.c_int]),
        ("attn_compile_options_set_head_dims", [C.c_void_p, C.c_int64, C.c_int64]),
        ("attn_compile_options_set_tiling", [C.c_void_p, C.c_int, C.c_int64, C.c_int64]),
        ("attn_compile_options_set_gpu_kernel", [C.c_void_p, C.c_int]),
        ("attn_compile_options_set_gpu_persistent", [C.c_void_p, C.c_int]),
        ("attn_compile_options_set_gpu_mark_kernel", [C.c_void_p, C.c_int]),
        ("attn_compile", [C.c_void_p, C.c_char_p, C.c_void_p, C.POINTER(C.c_void_p)]),
        ("attn_run_args_create", [C.POINTER(C.c_void_p)]),
        ("attn_run_args_set_tensors", [C.c_void_p] + [C.POINTER(Tensor)] * 5),
        ("attn_run_args_set_tensor", [C.c_void_p, C.c_char_p, C.POINTER(Tensor)]),
        ("attn_run_args_set_stream", [C.c_void_p, C.c_void_p]),
        ("attn_run_args_set_async", [C.c_void_p, C.c_int]),
        ("attn_kernel_run", [C.c_void_p, C.c_void_p]),
        ("attn_kernel_synchronize", [C.c_void_p]),
    ]:
        if not hasattr(lib, name):  # an older libattn (the GPU options)
            continue
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = C.c_int
    return lib


def check(lib, status, what):
    if status != 0:
        raise RuntimeError("%s: %s" % (what, lib.attn_last_error().decode()))


def view(t, keep):
    shape = (C.c_int64 * t.dim())(*t.shape)
    strides = (C.c_int64 * t.dim())(*t.stride())
    keep += [shape, strides]
    dtype = {torch.float16: ATTN_F16, torch.bfloat16: ATTN_BF16,
             torch.float32: ATTN_F32, torch.int32: 2, torch.bool: 3}[t.dtype]
    return Tensor(t.data_ptr(), dtype, t.dim(), shape, strides)


GPU_KERNELS = {"auto": 0, "mma": 1, "wgmma": 2, "simt": 3}


def compile_kernel(lib, rt, src, dtype, D, tile_kv=0, what=None,
                   gpu_kernel="auto", persistent=False, mark_kernel=True):
    """Compiles `src` for nvptx: Q, K, V and O of `dtype` (ATTN_BF16 or
    ATTN_F16), head dims D and D, `tile_kv` keys per kv-tile (0: the
    compiler's choice), the kernel `gpu_kernel` (a GPU_KERNELS name) with
    `persistent` and `mark_kernel` (the library's defaults are not set, so
    that an older libattn takes them too). Errors name `what` (default:
    the source)."""
    opts = C.c_void_p()
    check(lib, lib.attn_compile_options_create(C.byref(opts)), "options")
    lib.attn_compile_options_set_target(opts, ATTN_TARGET_NVPTX)
    lib.attn_compile_options_set_dtype(opts, dtype)
    lib.attn_compile_options_set_head_dims(opts, D, D)
    if tile_kv:
        check(lib, lib.attn_compile_options_set_tiling(opts, 2, 128, tile_kv), "tiling")
    if gpu_kernel != "auto":
        check(lib, lib.attn_compile_options_set_gpu_kernel(opts, GPU_KERNELS[gpu_kernel]),
              "gpu kernel")
    if persistent:
        check(lib, lib.attn_compile_options_set_gpu_persistent(opts, 1), "persistent")
    if not mark_kernel:
        check(lib, lib.attn_compile_options_set_gpu_mark_kernel(opts, 0), "mark kernel")
    kern = C.c_void_p()
    check(lib, lib.attn_compile(rt, src.encode(), opts, C.byref(kern)), what or src)
    return kern


def run_args(lib, q, k, v, o, keep, params=(), stream=None, asynchronous=False):
    """attn_run_args for device tensors Q, K, V and O (no LSE) and the
    tensor params `params` ((name, tensor) pairs), on `stream` (a CUstream
    handle, or None for the default stream), queued when `asynchronous`.
    `keep` holds what the descriptors point at."""
    args = C.c_void_p()
    check(lib, lib.attn_run_args_create(C.byref(args)), "args")
    tq, tk, tv, to = (view(t, keep) for t in (q, k, v, o))
    check(lib, lib.attn_run_args_set_tensors(args, C.byref(tq), C.byref(tk), C.byref(tv),
                                             C.byref(to), None), "tensors")
    for name, t in params:
        tp = view(t, keep)
        check(lib, lib.attn_run_args_set_tensor(args, name.encode(), C.byref(tp)), name)
    if stream is not None:
        check(lib, lib.attn_run_args_set_stream(args, C.c_void_p(stream)), "stream")
    if asynchronous:
        check(lib, lib.attn_run_args_set_async(args, 1), "async")
    return args


def reference(q, k, v, keep=None, modify=None, dtype=torch.float64):
    """Softmax attention in `dtype` (float64 for tests; float32 fits the
    benchmark's sizes): scores Q K^T / sqrt(D), changed by `modify(s)`,
    entries where the boolean `keep` (broadcast over the scores) is false
    dropped. A row with no key left gets O = 0, as the kernels write it."""
    s = (q.to(dtype) @ k.to(dtype).transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if modify is not None:
        s = modify(s)
    if keep is not None:
        s = s.masked_fill(~keep, float("-inf"))
    p = torch.nan_to_num(torch.softmax(s, -1), nan=0.0)
    del s
    return p @ v.to(dtype)


def relerr(o, ref):
    """||o - ref|| / ||ref|| in ref's dtype."""
    return ((o.to(ref.dtype) - ref).norm() / ref.norm()).item()


def cuda_time(fn, reps, batch=1):
    """Median milliseconds per call over `reps` timings of `batch` calls
    each, between two device events. With batch > 1 the calls queue back to
    back, so the host's launch cost (ctypes, torch.compile's guards) hides
    behind the device work: the time of the kernels alone. With batch 1 the
    device idles while the host launches, and that idle time is counted."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / batch)
    times.sort()
    return times[len(times) // 2]  # median, ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=10,
                    help="calls queued back to back per timing (1: each call "
                         "timed alone, the host's launch cost included)")
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--tile-kv", type=int, default=0,
                    help="keys per kv-tile of our kernel (0: the compiler's choice)")
    ap.add_argument("--gpu-kernel", choices=sorted(GPU_KERNELS), default="auto",
                    help="our kernel's kind (attn_compile_options_set_gpu_kernel)")
    ap.add_argument("--gpu-persistent", action="store_true",
                    help="a persistent wgmma kernel for data-dependent masks")
    ap.add_argument("--no-gpu-mark-kernel", action="store_true",
                    help="data-dependent masks without the mark kernel")
    ap.add_argument("--no-baselines", action="store_true",
                    help="time our kernel only")
    ap.add_argument("--sync-runs", action="store_true",
                    help="time our runs as synchronous calls (each waits for "
                         "its kernel and reads its error words back) instead "
                         "of queued ones (attn_run_args_set_async)")
    ap.add_argument("--json")
    a = ap.parse_args()
    B, H, L, D = a.B, a.H, a.L, a.D
    lib = load(a.lib)
    rt = C.c_void_p()
    check(lib, lib.attn_runtime_create(C.byref(rt)), "runtime")
    torch.manual_seed(0)
    tdt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=tdt) for _ in range(3))
    ndoc = 16
    doc = (torch.arange(L, device="cuda", dtype=torch.int32) * ndoc // L).contiguous()
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)],
                          device="cuda", dtype=torch.float32)
    idx = torch.arange(L, device="cuda")

    # name, .attn source, entries kept per (b, h), FlexAttention score_mod / mask_mod
    def causal_m(b, h, qi, ki):
        return ki <= qi
    variants = [
        ("dense", "attention v {}", L * L, None, None),
        ("causal", "attention v { mask = causal(); }", L * (L + 1) // 2, None, causal_m),
        ("sliding_window_1024", "attention v { mask = sliding_window(1024); }",
         sum(min(i + 1, 1024) for i in range(L)), None,
         lambda b, h, qi, ki: (ki <= qi) & (qi - ki < 1024)),
        ("documents_16", "attention v { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx]; }",
         ndoc * (L // ndoc) ** 2, None, lambda b, h, qi, ki: doc[qi] == doc[ki]),
        ("prefix_lm_1024", "attention v { mask = prefix_lm(1024); }",
         sum(max(1024, i + 1) for i in range(L)), None,
         lambda b, h, qi, ki: (ki < 1024) | (ki <= qi)),
        ("alibi_causal", "attention v { param slopes: f32[H]; score = score + slopes[h] * f32(kv_idx - q_idx); mask = causal(); }",
         L * (L + 1) // 2, lambda s, b, h, qi, ki: s + slopes[h] * (ki - qi), causal_m),
        ("softcap_causal", "attention v { score = softcap(score, 50.0); mask = causal(); }",
         L * (L + 1) // 2, lambda s, b, h, qi, ki: 50.0 * torch.tanh(s / 50.0), causal_m),
    ]
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        flex = torch.compile(flex_attention)
    except Exception as e:  # FlexAttention missing: report, go on
        print("FlexAttention unavailable:", e)
        flex = None

    if a.only:
        variants = [x for x in variants if x[0] in a.only.split(",")]
    rows, results = [], []
    for name, src, kept, score_mod, mask_mod in variants:
        flops = 4.0 * B * H * kept * D
        tf = lambda ms: flops / (ms * 1e-3) / 1e12 if ms else float("nan")
        r = {"variant": name, "gflop": flops / 1e9}
        # attnc
        t0 = time.time()
        kern = compile_kernel(lib, rt, src, ATTN_BF16 if a.dtype == "bf16" else ATTN_F16,
                              D, a.tile_kv, name, a.gpu_kernel, a.gpu_persistent,
                              not a.no_gpu_mark_kernel)
        r["attnc_compile_s"] = time.time() - t0
        o = torch.full_like(q, float("nan"))
        keep = []
        params = [(n, t) for n, t in (("doc", doc), ("slopes", slopes)) if n in src]
        args = run_args(lib, q, k, v, o, keep, params,
                        torch.cuda.current_stream().cuda_stream, not a.sync_runs)
        run = lambda: check(lib, lib.attn_kernel_run(kern, args), name)
        r["attnc_ms"] = cuda_time(run, a.reps, a.batch)
        # errors the kernel found in the queued runs
        check(lib, lib.attn_kernel_synchronize(kern), name)
        # correctness against a float32 reference (float64 would not fit)
        qi, ki = idx[:, None], idx[None, :]
        heads = torch.arange(H, device="cuda")[None, :, None, None]
        ref = reference(q, k, v, mask_mod(None, None, qi, ki) if mask_mod else None,
                        (lambda s: score_mod(s, None, heads, qi, ki)) if score_mod else None,
                        torch.float32)
        r["attnc_relerr"] = relerr(o, ref)
        del ref
        # SDPA backends (dense and causal only)
        if name in ("dense", "causal") and not a.no_baselines:
            for backend, label in [(SDPBackend.FLASH_ATTENTION, "fa2"), (SDPBackend.CUDNN_ATTENTION, "cudnn")]:
                try:
                    with sdpa_kernel(backend):
                        r[label + "_ms"] = cuda_time(lambda: F.scaled_dot_product_attention(
                            q, k, v, is_causal=(name == "causal")), a.reps, a.batch)
                except Exception as e:
                    r[label + "_error"] = str(e)[:200]
        if flex is not None and not a.no_baselines:
            try:
                bm = None
                if mask_mod is not None:
                    torch.cuda.synchronize()
                    t0 = time.time()
                    bm = create_block_mask(mask_mod, None, None, L, L, device="cuda")
                    torch.cuda.synchronize()
                    r["flex_blockmask_ms"] = (time.time() - t0) * 1e3
                sm = (lambda s, b, h, qi, ki: score_mod(s, b, h, qi, ki)) if score_mod else None
                r["flex_ms"] = cuda_time(lambda: flex(q, k, v, score_mod=sm, block_mask=bm), a.reps, a.batch)
            except Exception as e:
                r["flex_error"] = str(e)[:200]
        results.append(r)
        line = "%-20s attnc %8.3f ms %7.1f TF/s (err %.1e)" % (name, r["attnc_ms"], tf(r["attnc_ms"]), r["attnc_relerr"])
        for label in ("fa2", "cudnn", "flex"):
            if label + "_ms" in r:
                line += " | %s %7.1f TF/s x%.2f" % (label, tf(r[label + "_ms"]), r[label + "_ms"] / r["attnc_ms"])
        if "flex_blockmask_ms" in r:
            line += " | flex+mask x%.2f" % ((r["flex_ms"] + r["flex_blockmask_ms"]) / r["attnc_ms"])
        print(line, flush=True)
    out = {"gpu": torch.cuda.get_device_name(), "B": B, "H": H, "L": L, "D": D,
           "reps": a.reps, "batch": a.batch, "sync_runs": a.sync_runs,
           "dtype": "bfloat16" if a.dtype == "bf16" else "float16", "results": results}
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
