"""The kernel object: what it says of itself, lazy specialisation, caching,
runtimes, the library lookup."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import attnc

ALIBI = """
attention alibi {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask = causal();
}
"""


def has_cuda_gpu():
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        n = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and \
            cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 and n.value > 0
    except OSError:
        return False


def test_signature_and_repr():
    kern = attnc.compile_file(os.path.join(os.path.dirname(__file__), "..", "..",
                                           "examples", "alibi.attn"),
                              variant="gemma_softcap", cap=30.0)
    assert kern.name == "gemma_softcap"
    assert kern.normalization == "softmax" and kern.defines_lse
    assert kern.params == (
        attnc.Param("cap", "f32", True, False, (), 30.0, "f32"),
        attnc.Param("window", "i32", False, False, (), 4096.0, "i32"))
    assert repr(kern) == ("<attnc.Kernel 'gemma_softcap' (softmax) params=("
                          "const cap: f32 = 30, window: i32 = 4096)>")
    assert kern.compiled == []
    tensor = attnc.compile("attention t { param m: bool[Lq, ?]; param s: f32[3]; "
                           "mask = m[q_idx, kv_idx] && s[0] > 0.0; }")
    assert tensor.params[0].shape == ("Lq", None)
    assert tensor.params[1].shape == (3,)
    assert str(tensor.params[1]) == "s: f32[3]"


def test_lazy_specialisation_and_repr(rng):
    kern = attnc.compile(ALIBI)
    q = rng.standard_normal((1, 2, 16, 32)).astype(np.float32)
    slopes = np.ones(2, np.float32)
    kern(q, q, q, slopes=slopes)
    kern(q, q, q, slopes=slopes)                  # no new kernel
    kern(q[..., :16], q[..., :16], q, slopes=slopes)   # D = 16, Dv = 32
    kern(q.astype(np.float16), q.astype(np.float16), q.astype(np.float16),
         slopes=slopes)
    got = [(c.target, c.dtype, c.head_dims) for c in kern.compiled]
    assert got == [("cpu", "float32", (32, 32)), ("cpu", "float32", (16, 32)),
                   ("cpu", "float16", (32, 32))]
    c = kern.compiled[0]
    assert len(c.key) == 64 and int(c.key, 16) >= 0
    assert repr(c) == ("<attnc.CompiledKernel 'alibi' target=cpu dtype=float32 "
                       "head_dims=(32, 32) key=%s>" % c.key[:16])
    assert "compiled=[cpu float32 D=32 Dv=32 key=%s, " % c.key[:16] in repr(kern)
    assert kern.specialize("cpu", np.float32, 32) is c
    assert kern.specialize("cpu", "float16", 32, 32) is kern.compiled[2]
    kern.synchronize()  # CPU kernels: nothing pending
    attnc.synchronize()


def test_reference_kernel_takes_any_head_dims(rng):
    kern = attnc.compile(ALIBI, tiling="reference")
    for d in (8, 24):
        q = rng.standard_normal((1, 2, 5, d)).astype(np.float32)
        kern(q, q, q, slopes=np.ones(2, np.float32))
    assert [c.head_dims for c in kern.compiled] == [(0, 0)]


def test_unavailable_targets():
    kern = attnc.compile(ALIBI)
    with pytest.raises(attnc.UnavailableError, match="bfloat16 runs on CUDA only"):
        kern.specialize("cpu", "bfloat16", 64)
    with pytest.raises(ValueError, match="target must be"):
        kern.specialize("tpu")
    with pytest.raises(TypeError, match="dtype must be"):
        kern.specialize("cpu", "int8", 64)
    if has_cuda_gpu():
        c = kern.specialize("cuda", "bfloat16", 64)
        assert (c.target, c.dtype, c.head_dims) == ("cuda", "bfloat16", (64, 64))
    else:
        with pytest.raises(attnc.UnavailableError):
            kern.specialize("cuda", "bfloat16", 64)


def test_runtime_and_cache_counters(tmp_path, rng):
    rt = attnc.Runtime(cache_dir=str(tmp_path), disk_cache=True)
    assert "disk_cache=True" in repr(rt)
    before = rt.stats()
    assert before["compiles"] == 0
    kern = attnc.compile(ALIBI, runtime=rt)
    q = rng.standard_normal((1, 2, 8, 16)).astype(np.float32)
    for _ in range(3):
        kern(q, q, q, slopes=np.ones(2, np.float32))
    after = rt.stats()
    assert after["compiles"] == 2          # the signature check and D = 16
    assert after["disk_writes"] == 2
    assert os.listdir(tmp_path)
    attnc.compile(ALIBI, runtime=rt)       # the same source again: memory
    assert rt.stats()["memory_hits"] == after["memory_hits"] + 1
    fresh = attnc.Runtime(cache_dir=str(tmp_path))
    attnc.compile(ALIBI, runtime=fresh).specialize("cpu", "float32", 16)
    assert fresh.stats()["disk_hits"] == 2 and fresh.stats()["compiles"] == 0
    rt.clear_cache()
    assert set(attnc.cache_stats()) == set(after)


def test_op_id_is_stable_across_processes():
    """torch.compile graphs name kernels by op_id: it depends on the source
    and options only."""
    a = attnc.compile(ALIBI)
    assert a.op_id == attnc.compile(ALIBI).op_id
    assert a.op_id != attnc.compile(ALIBI, threads=2).op_id
    assert a.op_id.startswith("alibi-")
    code = "import attnc, sys; print(attnc.compile(sys.argv[1]).op_id)"
    env = dict(os.environ,
               PYTHONPATH=os.path.dirname(os.path.dirname(attnc.__file__)))
    out = subprocess.run([sys.executable, "-c", code, ALIBI], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == a.op_id, out.stderr


def test_version_and_library_path():
    assert attnc.version().startswith("attnc ")
    path = attnc.library_path()
    assert os.path.exists(path) and os.path.basename(path).startswith("libattn")
    assert attnc.__version__
