"""Kernel.grad on the CPU against gradients of the float64 reference
(tests/reference.py) by central differences: every normalisation, GQA,
Lq != Lkv, D != Dv, fully masked rows, tensor and scalar param gradients,
both tilings, torch-free (the autograd path is in test_torch.py)."""

import numpy as np
import pytest

import attnc
from reference import attention

TOL = 2e-4  # f32 kernels against float64 central differences


def randn(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def numeric_grads(f, inputs, do, h=1e-6):
    """d(sum(f(**inputs) * do)) / d(each input), by central differences in
    float64."""
    inputs = {n: np.array(x, np.float64) for n, x in inputs.items()}
    grads = {}
    for name, x in inputs.items():
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            keep = x[idx]
            x[idx] = keep + h
            up = np.sum(f(**inputs) * do)
            x[idx] = keep - h
            down = np.sum(f(**inputs) * do)
            x[idx] = keep
            g[idx] = (up - down) / (2 * h)
        grads[name] = g
    return grads


def rel(got, want):
    got = np.asarray(got, np.float64)
    assert np.all(np.isfinite(got)), "non-finite gradient"
    return float(np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want))))


# name: (source, reference score, mask, norm, sink param)
CASES = {
    "softmax_alibi": (
        """attention a { param slopes: f32[H];
             score = score + slopes[h] * f32(kv_idx - q_idx);
             mask = kv_idx <= q_idx + 2; }""",
        lambda s, p, b, h, i, j: s + p["slopes"][h] * (j - i),
        lambda b, h, i, j: j <= i + 2, "softmax", None),
    "softmax_masked_rows": (
        """attention a { param bias: f32; score = score * bias;
             mask = kv_idx + 2 <= q_idx; }""",
        lambda s, p, b, h, i, j: s * p["bias"],
        lambda b, h, i, j: j + 2 <= i, "softmax", None),
    "softcap_tanh": (
        """attention a { param cap: f32 = 3.0;
             score = cap * tanh(score / cap); }""",
        lambda s, p, b, h, i, j: p["cap"] * np.tanh(s / p["cap"]),
        None, "softmax", None),
    "sink": (
        """attention a { param sinks: f32[H]; mask = kv_idx <= q_idx;
             normalize softmax(sink = sinks[h]); }""",
        None, lambda b, h, i, j: j <= i, "softmax", "sinks"),
    "sigmoid": (
        """attention a { param shift: f32[H];
             score = score - shift[h]; normalize sigmoid; }""",
        lambda s, p, b, h, i, j: s - p["shift"][h], None, "sigmoid", None),
    "relu": (
        """attention a { mask = kv_idx <= q_idx; normalize relu; }""",
        None, lambda b, h, i, j: j <= i, "relu", None),
    "linear": (
        """attention a { score = exp(score - 3.0); normalize linear; }""",
        lambda s, p, b, h, i, j: np.exp(s - 3.0), None, "linear", None),
}


def params_for(name, rng, H):
    return {"softmax_alibi": {"slopes": randn(rng, (H,))},
            "softmax_masked_rows": {"bias": 0.75},
            "softcap_tanh": {"cap": 2.5},
            "sink": {"sinks": randn(rng, (H,))},
            "sigmoid": {"shift": randn(rng, (H,))},
            }.get(name, {})


@pytest.mark.parametrize("tiling", ["auto", "reference"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_against_central_differences(rng, name, tiling):
    source, score, mask, norm, sink = CASES[name]
    kern = attnc.compile(source, tiling=tiling)
    # GQA (two query heads per KV head), Lq != Lkv, D != Dv
    B, H, Hkv, Lq, Lkv, D, Dv = 1, 4, 2, 7, 9, 8, 4
    q, k, v = randn(rng, (B, H, Lq, D)), randn(rng, (B, Hkv, Lkv, D)), \
        randn(rng, (B, Hkv, Lkv, Dv))
    do = randn(rng, (B, H, Lq, Dv))
    params = params_for(name, rng, H)
    wrt = sorted(params)

    def f(q, k, v, **p):
        sc = None if score is None else \
            (lambda s, b, h, i, j: score(s, p, b, h, i, j))
        sk = None if sink is None else (lambda b, h: p[sink][h])
        return attention(q, k, v, score=sc, mask=mask, norm=norm, sink=sk)[0]

    want = numeric_grads(f, dict(q=q, k=k, v=v, **params), do)
    g = kern.grad(q, k, v, do, wrt=wrt, **params)
    assert g.dq.shape == q.shape and g.dk.shape == k.shape and \
        g.dv.shape == v.shape and g.dq.dtype == np.float32
    for got, n in ((g.dq, "q"), (g.dk, "k"), (g.dv, "v")):
        assert rel(got, want[n]) < TOL, n
    assert sorted(g.params) == wrt
    for n in wrt:
        assert g.params[n].shape == np.shape(params[n])
        assert rel(g.params[n], want[n]) < TOL, n
    if name == "softmax_masked_rows":  # rows 0 and 1 see no key
        assert np.all(g.dq[:, :, :2] == 0)


def test_grad_of_a_param_only_the_mask_reads_is_zero(rng):
    kern = attnc.compile("""attention a { param w: i32 = 3; param t: f32 = 1.0;
        mask = q_idx - kv_idx < w && f32(kv_idx) < t * 100.0; }""")
    q, k, v, do = (randn(rng, (1, 2, 8, 4)) for _ in range(4))
    g = kern.grad(q, k, v, do, wrt="t", t=0.5)
    assert g.params["t"] == 0.0


def test_grad_errors(rng):
    kern = attnc.compile("""attention a { param s: f32[H]; param n: i32 = 1;
        const param c: f32 = 1.0; score = score + s[h] * c; }""")
    q, k, v, do = (randn(rng, (1, 2, 8, 4)) for _ in range(4))
    s = randn(rng, (2,))
    with pytest.raises(attnc.RunError, match="no param 'x'"):
        kern.grad(q, k, v, do, s=s, wrt=["x"])
    with pytest.raises(attnc.RunError, match="'n'.*no gradient"):
        kern.grad(q, k, v, do, s=s, wrt=["n"])
    with pytest.raises(attnc.RunError, match="'c'.*no gradient"):
        kern.grad(q, k, v, do, s=s, wrt=["c"])
    with pytest.raises(attnc.Error, match="(?i)dO"):
        kern.grad(q, k, v, do[:, :, :4], s=s)
