"""Float64 NumPy reference of one attention variant, written from section 1 of
the language contract (../shared/spec/attn-language.md) and nothing
else: no code is shared with the compiler.

For every (b, h, i) and key index j:
    s_ij = scale * dot(Q[b,h,i,:], K[b,hkv,j,:])      hkv = h // (H // Hkv)
    s_ij = score_fn(s_ij, b, h, i, j)
    m_ij = mask_fn(b, h, i, j)
    O[b,h,i,:] = sum_j w_ij V[b,hkv,j,:] over unmasked j, w from the
                 normalisation; a row with no unmasked j has O = 0, LSE = -inf.

score_fn, mask_fn and sink_fn receive NumPy index grids that broadcast to
[B, H, Lq, Lkv] (b: [B,1,1,1], h: [1,H,1,1], i: [1,1,Lq,1], j: [1,1,1,Lkv],
all int64), so a variant's integer `/` and `%` map to NumPy's `//` and `%`,
which are floor division and floor modulo like the language's.
"""

import numpy as np

NORMALISATIONS = ("softmax", "sigmoid", "relu", "linear")


def index_grids(B, H, Lq, Lkv):
    """The (b, h, q_idx, kv_idx) grids, broadcastable to [B, H, Lq, Lkv]."""
    return (np.arange(B).reshape(B, 1, 1, 1), np.arange(H).reshape(1, H, 1, 1),
            np.arange(Lq).reshape(1, 1, Lq, 1),
            np.arange(Lkv).reshape(1, 1, 1, Lkv))


def attention(q, k, v, score_fn=None, mask_fn=None, scale=None,
              norm="softmax", sink_fn=None):
    """Returns (O, LSE) in float64; LSE is None unless norm is softmax.

    q: [B, H, Lq, D], k: [B, Hkv, Lkv, D], v: [B, Hkv, Lkv, Dv], any float
    dtype (converted to float64). sink_fn(b, h) gives the sink logit e of
    `softmax(sink = e)`; it is only valid with norm == "softmax".
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, H, Lq, D = q.shape
    Bk, Hkv, Lkv, Dk = k.shape
    Bv, Hv, Lv, Dv = v.shape
    if (Bk, Dk) != (B, D) or (Bv, Hv, Lv) != (B, Hkv, Lkv) or H % Hkv:
        raise ValueError("inconsistent shapes q%s k%s v%s" %
                         (q.shape, k.shape, v.shape))
    if norm not in NORMALISATIONS:
        raise ValueError("unknown normalisation %r" % norm)
    if sink_fn is not None and norm != "softmax":
        raise ValueError("a sink needs softmax")

    # Grouped-query attention: query head h reads KV head h // (H // Hkv).
    kv_head = np.arange(H) // (H // Hkv)
    kh, vh = k[:, kv_head], v[:, kv_head]            # [B, H, Lkv, D|Dv]
    if scale is None:
        scale = 1.0 / np.sqrt(D)
    s = scale * np.einsum("bhid,bhjd->bhij", q, kh)  # [B, H, Lq, Lkv]

    b, h, i, j = index_grids(B, H, Lq, Lkv)
    full = (B, H, Lq, Lkv)
    if score_fn is not None:
        s = np.broadcast_to(np.asarray(score_fn(s, b, h, i, j),
                                       dtype=np.float64), full)
    mask = np.ones(full, dtype=bool)
    if mask_fn is not None:
        mask = np.broadcast_to(np.asarray(mask_fn(b, h, i, j)), full)
        if mask.dtype != bool:
            raise TypeError("mask_fn must return bool, got %s" % mask.dtype)
    empty = ~mask.any(axis=-1)                       # [B, H, Lq]

    lse = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if norm == "softmax":
            # w_ij = exp(s_ij - m) / (exp(e - m) + sum_j exp(s_ij - m)),
            # m = max(e, max_j s_ij) for stability; no sink means e = -inf.
            e = np.full((B, H, 1, 1), -np.inf)
            if sink_fn is not None:
                e = np.broadcast_to(np.asarray(sink_fn(b, h), dtype=np.float64),
                                    (B, H, 1, 1))
            m = np.maximum(np.where(mask, s, -np.inf).max(axis=-1,
                                                          keepdims=True), e)
            m = np.where(np.isfinite(m), m, 0.0)
            p = np.where(mask, np.exp(s - m), 0.0)
            denom = p.sum(axis=-1, keepdims=True) + np.exp(e - m)
            w = p / np.where(denom > 0, denom, 1.0)
            lse = (np.log(denom) + m)[..., 0]
            lse = np.where(empty, -np.inf, lse)
        elif norm == "sigmoid":
            w = np.where(mask, 1.0 / (1.0 + np.exp(-s)), 0.0)
        elif norm == "relu":
            w = np.where(mask, np.maximum(s, 0.0), 0.0)
        else:  # linear: w_ij = s_ij / sum_j s_ij, s non-negative
            if np.any(mask & (s < 0)):
                raise ValueError("linear attention needs a non-negative score")
            p = np.where(mask, s, 0.0)
            denom = p.sum(axis=-1, keepdims=True)
            w = p / np.where(denom > 0, denom, 1.0)
    w = np.where(empty[..., None], 0.0, w)
    o = np.einsum("bhij,bhjd->bhid", w, vh)
    if not np.all(np.isfinite(o)) or (lse is not None and
                                      np.any(np.isnan(lse))):
        raise FloatingPointError("reference produced a non-finite output")
    return o, lse
