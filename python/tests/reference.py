"""A float64 NumPy reference of one attention variant, from section 1 of the
language contract (../shared/spec/attn-language.md); no code is shared with
attnc or its other test suites.

``score``, ``mask`` and ``sink`` are Python functions of NumPy index grids
that broadcast to [B, H, Lq, Lkv] (b, h, i, j) and, for ``score``, the
scaled dot products ``s``.
"""

import numpy as np


def grids(B, H, Lq, Lkv):
    return (np.arange(B)[:, None, None, None], np.arange(H)[None, :, None, None],
            np.arange(Lq)[None, None, :, None], np.arange(Lkv)[None, None, None, :])


def attention(q, k, v, score=None, mask=None, scale=None, norm="softmax",
              sink=None):
    """(O, LSE) in float64; LSE is None unless ``norm`` is softmax. A row
    without an unmasked key has O = 0 and LSE = -inf."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    B, H, Lq, D = q.shape
    Hkv, Lkv = k.shape[1], k.shape[2]
    group = H // Hkv
    kh = np.repeat(k, group, axis=1)        # query head h reads KV head h // group
    vh = np.repeat(v, group, axis=1)
    s = (1.0 / np.sqrt(D) if scale is None else scale) * (q @ kh.swapaxes(-1, -2))
    b, h, i, j = grids(B, H, Lq, Lkv)
    shape = (B, H, Lq, Lkv)
    if score is not None:
        s = np.broadcast_to(score(s, b, h, i, j), shape).astype(np.float64)
    keep = np.ones(shape, bool) if mask is None else \
        np.broadcast_to(mask(b, h, i, j), shape)
    alive = keep.any(-1)                     # [B, H, Lq]
    lse = None
    if norm == "softmax":
        e = np.full((B, H, 1, 1), -np.inf) if sink is None else \
            np.broadcast_to(np.asarray(sink(b, h), np.float64), (B, H, 1, 1))
        m = np.maximum(np.where(keep, s, -np.inf).max(-1, keepdims=True), e)
        m = np.where(np.isfinite(m), m, 0.0)
        p = np.where(keep, np.exp(s - m), 0.0)
        total = p.sum(-1, keepdims=True) + np.exp(e - m)
        w = p / np.where(total > 0, total, 1.0)
        with np.errstate(divide="ignore"):
            lse = np.where(alive, (np.log(total) + m)[..., 0], -np.inf)
    elif norm == "sigmoid":
        w = np.where(keep, 1.0 / (1.0 + np.exp(-s)), 0.0)
    elif norm == "relu":
        w = np.where(keep, np.maximum(s, 0.0), 0.0)
    elif norm == "linear":
        p = np.where(keep, s, 0.0)
        total = p.sum(-1, keepdims=True)
        w = p / np.where(total > 0, total, 1.0)
    else:
        raise ValueError(norm)
    w = np.where(alive[..., None], w, 0.0)
    return w @ vh, lse


def max_rel_err(got, want):
    """max |got - want| / max(1, max |want|), in float64."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got)), "non-finite output (an unwritten element?)"
    return float(np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want))))
