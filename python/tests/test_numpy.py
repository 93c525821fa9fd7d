"""NumPy arrays on the CPU against the float64 reference: forward, LSE,
params, GQA, Lq != Lkv, strided views, preallocated (poisoned) outputs."""

import threading

import numpy as np
import pytest

import attnc
from reference import attention, max_rel_err

F32_TOL = 2e-5
F16_TOL = 4e-3


def randn(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def poisoned(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype)


def check_lse(got, want):
    assert got.dtype == np.float32
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    live = np.isfinite(want)
    assert np.all(np.isfinite(got[live]))
    np.testing.assert_allclose(got[live], want[live], rtol=0, atol=2e-5)


def alibi_slopes(H):
    return np.array([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], np.float32)


def alibi_ref(q, k, v, slopes):
    return attention(q, k, v,
                     score=lambda s, b, h, i, j: s + slopes.astype(np.float64)[h] * (j - i),
                     mask=lambda b, h, i, j: j <= i)


@pytest.fixture(scope="module")
def alibi(examples):
    return attnc.compile_file(examples + "/alibi.attn", variant="alibi")


def test_alibi_forward_and_lse(alibi, rng):
    B, H, L, D = 2, 4, 70, 32  # 70: partial tiles
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    slopes = alibi_slopes(H)
    o, lse = alibi(q, k, v, slopes=slopes, out=(poisoned((B, H, L, D)),
                                                  poisoned((B, H, L))),
                   return_lse=True)
    ref_o, ref_lse = alibi_ref(q, k, v, slopes)
    assert o.dtype == np.float32 and o.shape == (B, H, L, D)
    assert max_rel_err(o, ref_o) < F32_TOL
    check_lse(lse, ref_lse)
    # allocated outputs: the same values
    o2 = alibi(q, k, v, slopes=slopes)
    assert np.array_equal(o2, o)


@pytest.mark.parametrize("tiling", ["reference", (16, 32)])
def test_tilings(examples, rng, tiling):
    kern = attnc.compile_file(examples + "/alibi.attn", variant="alibi",
                              tiling=tiling)
    B, H, L, D = 1, 2, 45, 16
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    slopes = alibi_slopes(H)
    o = kern(q, k, v, slopes=slopes, out=poisoned((B, H, L, D)))
    assert max_rel_err(o, alibi_ref(q, k, v, slopes)[0]) < F32_TOL


def test_float16(alibi, rng):
    B, H, L, D = 1, 4, 64, 32
    q, k, v = (randn(rng, (B, H, L, D), np.float16) for _ in range(3))
    slopes = alibi_slopes(H)
    o, lse = alibi(q, k, v, slopes=slopes, return_lse=True,
                   out=(poisoned((B, H, L, D), np.float16), poisoned((B, H, L))))
    assert o.dtype == np.float16
    ref_o, ref_lse = alibi_ref(q, k, v, slopes)
    assert max_rel_err(o, ref_o) < F16_TOL
    np.testing.assert_allclose(lse, ref_lse, atol=F16_TOL, rtol=0)
    assert {(c.dtype, c.target) for c in alibi.compiled} >= {("float16", "cpu")}


def test_gqa_lq_ne_lkv_and_dv(rng):
    """H = 6 query heads over Hkv = 2, Lq = 50 > Lkv = 30, D != Dv; the
    mask leaves queries 30.. without a key (O = 0, LSE = -inf)."""
    kern = attnc.compile("""
        attention later_keys {
          param bias: f32[Hkv];
          score = score + bias[h / (H / Hkv)];
          mask = kv_idx >= q_idx;
        }""")
    B, H, Hkv, Lq, Lkv, D, Dv = 2, 6, 2, 50, 30, 24, 40
    q = randn(rng, (B, H, Lq, D))
    k = randn(rng, (B, Hkv, Lkv, D))
    v = randn(rng, (B, Hkv, Lkv, Dv))
    bias = randn(rng, (Hkv,))
    o, lse = kern(q, k, v, bias=bias, return_lse=True,
                  out=(poisoned((B, H, Lq, Dv)), poisoned((B, H, Lq))))
    ref_o, ref_lse = attention(
        q, k, v, score=lambda s, b, h, i, j: s + bias.astype(np.float64)[h // 3],
        mask=lambda b, h, i, j: j >= i)
    assert max_rel_err(o, ref_o) < F32_TOL
    check_lse(lse, ref_lse)
    assert np.all(o[:, :, Lkv:] == 0) and np.all(np.isneginf(lse[:, :, Lkv:]))
    # Lq < Lkv, causal from the start of both
    q2 = randn(rng, (B, H, 7, D))
    o2 = kern(q2, k, v, bias=bias, out=poisoned((B, H, 7, Dv)))
    assert max_rel_err(o2, attention(
        q2, k, v, score=lambda s, b, h, i, j: s + bias.astype(np.float64)[h // 3],
        mask=lambda b, h, i, j: j >= i)[0]) < F32_TOL


def test_scalar_and_const_params(examples, rng):
    B, H, L, D = 1, 2, 40, 16
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))

    def ref(cap, window):
        return attention(q, k, v,
                         score=lambda s, b, h, i, j: cap * np.tanh(s / cap),
                         mask=lambda b, h, i, j: (j <= i) & (i - j < window))[0]

    path = examples + "/alibi.attn"
    default = attnc.compile_file(path, variant="gemma_softcap", tiling="reference")
    assert default.consts == {"cap": 50.0}
    assert max_rel_err(default(q, k, v), ref(50.0, 4096)) < F32_TOL
    # a runtime scalar, then its default again (no value left behind)
    assert max_rel_err(default(q, k, v, window=5), ref(50.0, 5)) < F32_TOL
    assert max_rel_err(default(q, k, v, window=np.int32(3)), ref(50.0, 3)) < F32_TOL
    assert max_rel_err(default(q, k, v), ref(50.0, 4096)) < F32_TOL
    assert max_rel_err(default(q, k, v, params={"window": 7}), ref(50.0, 7)) < F32_TOL
    # const params as keywords or consts=: another kernel
    capped = attnc.compile_file(path, variant="gemma_softcap", cap=0.5,
                                tiling="reference")
    assert capped.consts == {"cap": 0.5}
    assert max_rel_err(capped(q, k, v, window=9), ref(0.5, 9)) < F32_TOL
    other = attnc.compile_file(path, "gemma_softcap", consts={"cap": 2},
                               tiling="reference")
    assert max_rel_err(other(q, k, v), ref(2.0, 4096)) < F32_TOL
    assert other.compiled[0].key != capped.compiled[0].key


def test_int_bool_and_dynamic_tensor_params(rng):
    kern = attnc.compile("""
        attention docs {
          param doc: i32[Lkv];
          param keep: bool[Lq, Lkv];
          param table: f32[?];
          param use_table: bool = true;
          score = score + select(use_table, table[h], 0.0);
          mask = doc[q_idx] == doc[kv_idx] && keep[q_idx, kv_idx];
        }""", tiling="reference")
    B, H, L, D = 2, 3, 33, 8
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    doc = np.sort(rng.integers(0, 4, L)).astype(np.int32)
    keep = rng.random((L, L)) < 0.7
    table = randn(rng, (H + 2,))

    def ref(use):
        return attention(
            q, k, v, score=lambda s, b, h, i, j: s + (table.astype(np.float64)[h]
                                                      if use else 0.0),
            mask=lambda b, h, i, j: (doc[i] == doc[j]) & keep[i, j])

    o, lse = kern(q, k, v, doc=doc, keep=keep, table=table, return_lse=True)
    ref_o, ref_lse = ref(True)
    assert max_rel_err(o, ref_o) < F32_TOL
    check_lse(lse, ref_lse)
    o = kern(q, k, v, doc=doc, keep=keep, table=table, use_table=False)
    assert max_rel_err(o, ref(False)[0]) < F32_TOL


@pytest.mark.parametrize("name,source,norm,has_sink", [
    ("sigmoid", "attention a { score = score - 1.0; normalize sigmoid; }",
     "sigmoid", False),
    ("relu", "attention a { mask = causal(); normalize relu; }", "relu", False),
    ("linear", "attention a { score = exp(score - 4.0); normalize linear; }",
     "linear", False),
    ("sink", "attention a { param sinks: f32[H]; mask = causal(); "
     "normalize softmax(sink = sinks[h]); }", "softmax", True),
    ("scale", "attention a { scale = 0.25; }", "softmax", False),
])
def test_normalisations_and_scale(rng, name, source, norm, has_sink):
    kern = attnc.compile(source, tiling="reference")
    assert kern.normalization == norm and kern.defines_lse == (norm == "softmax")
    B, H, L, D = 1, 3, 21, 12
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    score = {"sigmoid": lambda s, b, h, i, j: s - 1.0,
             "linear": lambda s, b, h, i, j: np.exp(s - 4.0)}.get(name)
    mask = (lambda b, h, i, j: j <= i) if name in ("relu", "sink") else None
    params = {}
    sink = None
    if has_sink:
        params["sinks"] = randn(rng, (H,))
        sink = lambda b, h: params["sinks"].astype(np.float64)[h]
    ref_o, ref_lse = attention(q, k, v, score=score, mask=mask, norm=norm,
                               sink=sink, scale=0.25 if name == "scale" else None)
    o = kern(q, k, v, out=poisoned((B, H, L, D)), **params)
    assert max_rel_err(o, ref_o) < F32_TOL
    if kern.defines_lse:
        check_lse(kern(q, k, v, return_lse=True, **params)[1], ref_lse)


VIEWS = {
    # [B, L, H, D] memory seen as [B, H, L, D]
    "transposed": lambda rng, s: np.ascontiguousarray(
        randn(rng, (s[0], s[2], s[1], s[3]))).transpose(0, 2, 1, 3),
    "every_other_key": lambda rng, s: randn(rng, (s[0], s[1], 2 * s[2], s[3]))[:, :, ::2],
    "inner_stride_2": lambda rng, s: randn(rng, s[:3] + (2 * s[3],))[..., ::2],
    "reversed": lambda rng, s: randn(rng, s)[:, ::-1, ::-1],
    "broadcast_batch": lambda rng, s: np.broadcast_to(randn(rng, (1,) + s[1:]), s),
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_strided_inputs(alibi, rng, view):
    """Views are read in place: no copy, any strides (elements)."""
    B, H, L, D = 2, 4, 36, 32
    make = VIEWS[view]
    q, k, v = (make(rng, (B, H, L, D)) for _ in range(3))
    assert not q.flags.c_contiguous
    slopes = alibi_slopes(H)
    o = alibi(q, k, v, slopes=slopes, out=poisoned((B, H, L, D)))
    assert max_rel_err(o, alibi_ref(q, k, v, slopes)[0]) < F32_TOL


def test_strided_out(alibi, rng):
    """O written through views; nothing outside them is touched."""
    B, H, L, D = 1, 4, 36, 32
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    slopes = alibi_slopes(H)
    ref = alibi_ref(q, k, v, slopes)[0]
    big = poisoned((B, L, H, 2 * D))
    view = big.transpose(0, 2, 1, 3)[..., D:]      # [B, H, L, D], strided
    got = alibi(q, k, v, slopes=slopes, out=view)
    assert got is view
    assert max_rel_err(view, ref) < F32_TOL
    assert np.all(np.isnan(big[..., :D]))          # the other half untouched
    lse_big = poisoned((B, H, 2 * L))
    o, lse = alibi(q, k, v, slopes=slopes, return_lse=True,
                   out=(poisoned((B, H, L, D)), lse_big[:, :, ::2]))
    assert np.all(np.isnan(lse_big[:, :, 1::2]))
    check_lse(lse, alibi_ref(q, k, v, slopes)[1])


def test_array_likes_are_viewed(alibi, rng):
    """Array-likes (an ndarray subclass, a memoryview) are read in place."""
    class Sub(np.ndarray):
        pass

    B, H, L, D = 1, 4, 16, 32
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    slopes = alibi_slopes(H)
    o = alibi(q.view(Sub), memoryview(k), v.view(Sub), slopes=memoryview(slopes))
    assert max_rel_err(o, alibi_ref(q, k, v, slopes)[0]) < F32_TOL


def test_threads_option(examples, rng):
    B, H, L, D = 2, 4, 130, 32
    q, k, v = (randn(rng, (B, H, L, D)) for _ in range(3))
    slopes = alibi_slopes(H)
    ref = alibi_ref(q, k, v, slopes)[0]
    for threads in (1, 3):
        kern = attnc.compile_file(examples + "/alibi.attn", variant="alibi",
                                  threads=threads)
        assert max_rel_err(kern(q, k, v, slopes=slopes), ref) < F32_TOL


def test_concurrent_calls(alibi, rng):
    """Threads share a kernel; each has its own argument buffers."""
    B, H, L, D = 1, 4, 50, 32
    slopes = alibi_slopes(H)
    inputs = [tuple(randn(rng, (B, H, L, D)) for _ in range(3)) for _ in range(4)]
    refs = [alibi_ref(*x, slopes)[0] for x in inputs]
    errors = []

    def work(i):
        try:
            for _ in range(20):
                assert max_rel_err(alibi(*inputs[i], slopes=slopes), refs[i]) < F32_TOL
        except BaseException as e:  # report in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_empty_batch(alibi):
    o = alibi(*(np.zeros((0, 4, 8, 32), np.float32) for _ in range(3)),
              slopes=alibi_slopes(4))
    assert o.shape == (0, 4, 8, 32)
