"""Every kind of bad input gives an attnc exception with a clear message,
and the kernel stays usable after it."""

import os
import subprocess
import sys

import numpy as np
import pytest

import attnc
from reference import attention, max_rel_err

PACKAGE_PARENT = os.path.dirname(os.path.dirname(attnc.__file__))


def randn(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def test_compile_error_is_located():
    source = ("attention a {\n"
              "  param slopes: f32[H];\n"
              "  score = score + slope[h];\n"
              "}\n")
    with pytest.raises(attnc.CompileError) as info:
        attnc.compile(source)
    err = info.value
    assert err.status == "compile error"
    assert (err.line, err.column) == (3, 19)
    assert err.diagnostics[0].file == "<source>"
    assert err.diagnostics[0].severity == "error"
    assert "slope" in err.diagnostics[0].message
    text = str(err).splitlines()
    assert text[0].startswith("<source>:3:19: error:")
    assert text[1] == "  score = score + slope[h];"
    assert text[2] == " " * 18 + "^"


def test_compile_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.attn"
    path.write_text("attention a {\n  mask = kv_idx <= ;\n}\n")
    with pytest.raises(attnc.CompileError) as info:
        attnc.compile_file(path)
    assert str(info.value).startswith(str(path) + ":2:")
    assert info.value.diagnostics[0].file == str(path)
    with pytest.raises(attnc.FileError) as info:
        attnc.compile_file(tmp_path / "missing.attn")
    assert isinstance(info.value, OSError)
    assert "missing.attn" in str(info.value)


def test_variant_and_const_errors(examples):
    path = examples + "/alibi.attn"
    with pytest.raises(attnc.CompileError, match="alibi.*gemma_softcap|variant"):
        attnc.compile_file(path)  # two blocks, none named
    with pytest.raises(attnc.CompileError, match="nope"):
        attnc.compile_file(path, variant="nope")
    with pytest.raises(attnc.CompileError, match="capp"):
        attnc.compile_file(path, variant="gemma_softcap", capp=3.0)
    with pytest.raises(attnc.CompileError, match="window"):
        attnc.compile_file(path, variant="gemma_softcap", window=3)  # not const
    with pytest.raises(TypeError, match="cap"):
        attnc.compile_file(path, variant="gemma_softcap", cap="big")
    with pytest.raises(TypeError, match="given twice"):
        attnc.compile_file(path, variant="gemma_softcap", cap=1.0,
                           consts={"cap": 2.0})
    with pytest.raises(TypeError, match="tiling"):
        attnc.compile_file(path, variant="alibi", tiling="fast")
    with pytest.raises(TypeError, match="threads"):
        attnc.compile_file(path, variant="alibi", threads=-1)
    with pytest.raises(TypeError, match="source"):
        attnc.compile(b"attention a {}")


@pytest.fixture(scope="module")
def kern():
    return attnc.compile("""
        attention e {
          param slopes: f32[H];
          param window: i32 = 8;
          param doc: i32[Lkv];
          score = score + slopes[h];
          mask = q_idx - kv_idx < window && doc[q_idx] == doc[kv_idx];
        }""", tiling="reference")


def good(rng, B=1, H=2, L=12, D=8):
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    return (q, k, v), {"slopes": randn(rng, (H,)),
                       "doc": np.zeros(L, np.int32)}


RUN_ERRORS = [
    # name, change to (tensors, params), exception, message regex
    ("q_rank", lambda t, p: ((t[0][0],) + t[1:], p), attnc.RunError,
     r"Q must have rank 4 \(\[B, H, Lq, D\]\), got shape \(2, 12, 8\)"),
    ("kv_len", lambda t, p: ((t[0], t[1], t[2][:, :, :5]), p), attnc.RunError,
     "same length Lkv"),
    ("head_dim", lambda t, p: ((t[0], t[1][..., :4], t[2]), p), attnc.RunError,
     "head dimension D"),
    ("gqa", lambda t, p: ((np.concatenate([t[0], t[0][:, :1]], 1),) + t[1:], p),
     attnc.RunError, "multiple of the number of KV heads"),
    ("float64", lambda t, p: ((t[0].astype(np.float64),) + t[1:], p),
     attnc.RunError, "Q has dtype float64"),
    ("int32", lambda t, p: (tuple(x.astype(np.int32) for x in t), p),
     attnc.RunError, "Q has dtype int32; Q, K, V and O take float32"),
    ("mixed_dtypes", lambda t, p: ((t[0], t[1].astype(np.float16), t[2]), p),
     attnc.RunError, "same dtype"),
    ("missing_tensor", lambda t, p: (t, {"slopes": p["slopes"]}), attnc.RunError,
     "missing tensor param 'doc'"),
    ("unknown_param", lambda t, p: (t, dict(p, slope=1.0)), attnc.RunError,
     "unknown param 'slope'.*its params: slopes, window, doc"),
    ("scalar_for_tensor", lambda t, p: (t, dict(p, slopes=1.0)), attnc.RunError,
     "'slopes' is a tensor"),
    ("array_for_scalar", lambda t, p: (t, dict(p, window=np.ones(2, np.int32))),
     attnc.RunError, "'window' is a scalar"),
    ("fractional_i32", lambda t, p: (t, dict(p, window=1.5)), attnc.RunError,
     "'window' is i32 and cannot take the value 1.5"),
    ("param_shape", lambda t, p: (t, dict(p, slopes=p["slopes"][:1])),
     attnc.RunError, r"'slopes' must have shape f32\[H\]"),
    ("param_dtype", lambda t, p: (t, dict(p, doc=p["doc"].astype(np.int64))),
     attnc.RunError, "param 'doc' has dtype int64"),
    ("string_param", lambda t, p: (t, dict(p, window="8")), attnc.RunError,
     "'window' must be a number or an array, got str"),
    ("object_array", lambda t, p: (t, dict(p, doc=[object()] * 12)),
     attnc.RunError, "param 'doc': cannot read a list"),
]


@pytest.mark.parametrize("name,change,exc,message", RUN_ERRORS,
                         ids=[e[0] for e in RUN_ERRORS])
def test_run_errors(kern, rng, name, change, exc, message):
    tensors, params = good(rng)
    bad_tensors, bad_params = change(tensors, params)
    with pytest.raises(exc, match=message):
        kern(*bad_tensors, **bad_params)
    # the kernel (and this thread's argument buffer) is still good
    q, k, v = tensors
    want = attention(q, k, v, score=lambda s, b, h, i, j: s + params["slopes"]
                     .astype(np.float64)[h], mask=lambda b, h, i, j: i - j < 8)[0]
    assert max_rel_err(kern(q, k, v, **params), want) < 2e-5


def test_output_errors(kern, rng):
    (q, k, v), params = good(rng)
    with pytest.raises(attnc.RunError, match=r"O must have shape \(1, 2, 12, 8\)"):
        kern(q, k, v, out=np.empty((1, 2, 12, 4), np.float32), **params)
    ro = np.empty(q.shape, np.float32)
    ro.flags.writeable = False
    with pytest.raises(attnc.RunError, match="out is read-only"):
        kern(q, k, v, out=ro, **params)
    with pytest.raises(attnc.RunError, match="zero stride"):
        kern(q, k, v, out=np.lib.stride_tricks.as_strided(
            np.empty(8, np.float32), (1, 2, 12, 8), (0, 0, 0, 4)), **params)
    with pytest.raises(attnc.RunError, match="out must be a NumPy array"):
        kern(q, k, v, out=[0.0], **params)
    with pytest.raises(attnc.RunError, match=r"needs return_lse=True"):
        kern(q, k, v, out=(np.empty(q.shape, np.float32),
                           np.empty(q.shape[:3], np.float32)), **params)
    with pytest.raises(attnc.RunError, match="LSE must be float32"):
        kern(q, k, v, return_lse=True, out=(np.empty(q.shape, np.float32),
                                            np.empty(q.shape[:3], np.float16)),
             **params)


def test_lse_of_a_sigmoid_variant(rng):
    sig = attnc.compile("attention s { normalize sigmoid; }", tiling="reference")
    q = randn(rng, (1, 1, 4, 8))
    with pytest.raises(attnc.RunError, match="LSE is not defined for 'normalize "
                       "sigmoid'"):
        sig(q, q, q, return_lse=True)


def test_params_given_twice(kern, rng):
    (q, k, v), params = good(rng)
    with pytest.raises(attnc.RunError, match="window given twice"):
        kern(q, k, v, params={"window": 1}, window=2, **params)


def test_kernel_errors_from_the_data(rng):
    """Errors the kernel finds while running: KernelError (a RunError)."""
    kern = attnc.compile("""
        attention x {
          param idx: i32[Lq];
          param tab: f32[4];
          param d: i32 = 1;
          score = score + tab[idx[q_idx]];
          mask = kv_idx / d >= 0;
        }""", tiling="reference")
    q = randn(rng, (1, 2, 6, 8))
    tab = randn(rng, (4,))
    idx = rng.integers(0, 4, 6).astype(np.int32)
    idx[3] = 9
    with pytest.raises(attnc.KernelError,
                       match="read param 'tab' out of range: index 9 in "
                       "dimension 0 of size 4"):
        kern(q, q, q, idx=idx, tab=tab)
    idx[3] = 2
    with pytest.raises(attnc.KernelError, match="divided an integer by zero"):
        kern(q, q, q, idx=idx, tab=tab, d=0)
    want = attention(q, q, q, score=lambda s, b, h, i, j: s + tab.astype(
        np.float64)[idx[i]])[0]
    assert max_rel_err(kern(q, q, q, idx=idx, tab=tab), want) < 2e-5


def run_python(code, **env):
    """Runs `code` in a fresh interpreter that imports this checkout's attnc."""
    full_env = dict(os.environ, **env)
    full_env["PYTHONPATH"] = PACKAGE_PARENT
    return subprocess.run([sys.executable, "-c", code], env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_missing_library_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "libattn.so")
    r = run_python("""
import attnc
try:
    attnc.compile("attention a {}")
except attnc.LibraryError as e:
    assert isinstance(e, ImportError)
    print("LibraryError:", e)
""", ATTNC_LIBRARY=missing)
    assert r.returncode == 0, r.stderr
    assert "cannot load libattn; tried: %s (no such file)" % missing in r.stdout
    assert "ATTNC_LIBRARY" in r.stdout


def test_import_needs_neither_numpy_nor_torch(examples):
    """`import attnc` pulls in neither NumPy nor PyTorch; without NumPy
    kernels still compile, and array inputs say what is missing."""
    r = run_python("""
import sys
sys.modules["numpy"] = None          # as if NumPy were not installed
import attnc
assert "torch" not in sys.modules
k = attnc.compile("attention a { mask = causal(); }")
print(repr(k))
try:
    k([[[[1.0]]]], [[[[1.0]]]], [[[[1.0]]]])
except attnc.RunError as e:
    print("RunError:", e)
""")
    assert r.returncode == 0, r.stderr
    assert "<attnc.Kernel 'a' (softmax) params=()>" in r.stdout
    assert "without NumPy installed attnc takes torch tensors only" in r.stdout
