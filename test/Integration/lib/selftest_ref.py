"""Checks attn_ref.attention against a naive triple loop in plain Python
floats (math module only) on tiny shapes: every normalisation, a sink
(constant and per head), GQA, Lq != Lkv, D != Dv, a score function, floor
division in a mask, and fully masked rows. Then checks the gradient
reference (attn_grad_ref) against central differences of attn_ref.attention
in float64: every normalisation, sinks, GQA, scores using every builtin, and
scalar and tensor params. Prints one PASS line per check and exits non-zero
if any failed.
"""

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attn_grad_ref  # noqa: E402
import attn_ref  # noqa: E402


def naive(q, k, v, score, mask, scale, norm, sink):
    """O and LSE as nested lists, straight from the contract's table."""
    B, H, Lq, D = q.shape
    Hkv, Lkv, Dv = k.shape[1], k.shape[2], v.shape[3]
    O = [[[[0.0] * Dv for _ in range(Lq)] for _ in range(H)] for _ in range(B)]
    LSE = [[[-math.inf] * Lq for _ in range(H)] for _ in range(B)]
    for b in range(B):
        for h in range(H):
            hkv = h // (H // Hkv)
            for i in range(Lq):
                s, js = [], []
                for j in range(Lkv):
                    if mask is not None and not mask(b, h, i, j):
                        continue
                    dot = sum(float(q[b, h, i, d]) * float(k[b, hkv, j, d])
                              for d in range(D))
                    x = scale * dot
                    s.append(score(x, b, h, i, j) if score else x)
                    js.append(j)
                if not js:
                    continue  # O = 0, LSE = -inf
                if norm == "softmax":
                    z = sum(math.exp(x) for x in s)
                    if sink is not None:
                        z += math.exp(sink(b, h))
                    w = [math.exp(x) / z for x in s]
                    LSE[b][h][i] = math.log(z)
                elif norm == "sigmoid":
                    w = [1.0 / (1.0 + math.exp(-x)) for x in s]
                elif norm == "relu":
                    w = [max(x, 0.0) for x in s]
                else:
                    w = [x / sum(s) for x in s]
                for d in range(Dv):
                    O[b][h][i][d] = sum(wj * float(v[b, hkv, j, d])
                                        for wj, j in zip(w, js))
    return np.array(O), np.array(LSE)


def vec(f):
    """Lifts a scalar function of ints to NumPy grids (for the reference)."""
    return np.vectorize(f, otypes=[object])


CHECKS = [
    # name, norm, shapes (B, H, Hkv, Lq, Lkv, D, Dv), score, mask, sink, scale
    ("softmax-dense", "softmax", (1, 2, 2, 4, 4, 3, 3), None, None, None, None),
    ("softmax-gqa-causal", "softmax", (2, 4, 2, 5, 7, 3, 2), None,
     lambda b, h, i, j: j <= i + 2, None, None),
    ("softmax-empty-rows", "softmax", (1, 2, 1, 6, 5, 2, 3), None,
     lambda b, h, i, j: i >= 3 and j <= i, None, 0.7),
    ("softmax-floor-divmod", "softmax", (1, 2, 1, 7, 7, 2, 2),
     lambda x, b, h, i, j: x + 0.25 * ((j - i) // 3),
     lambda b, h, i, j: (i - j) % 3 != 1, None, None),
    ("sink-zero", "softmax", (1, 2, 1, 3, 6, 4, 2), None, None,
     lambda b, h: 0.0, None),
    ("sink-per-head-empty-rows", "softmax", (2, 4, 2, 4, 5, 2, 2),
     lambda x, b, h, i, j: 3.0 * math.tanh(x / 3.0),
     lambda b, h, i, j: i != 1 and j != i, lambda b, h: 0.5 * h - 1.0 + b,
     None),
    ("sigmoid", "sigmoid", (1, 3, 1, 4, 5, 3, 2),
     lambda x, b, h, i, j: x - 1.0, lambda b, h, i, j: i != 2, None, None),
    ("relu", "relu", (2, 2, 2, 4, 3, 2, 5), None,
     lambda b, h, i, j: j <= i, None, 1.5),
    ("linear", "linear", (1, 4, 2, 5, 4, 3, 3),
     lambda x, b, h, i, j: 1.0 + x * x, lambda b, h, i, j: j != 0 or i > 2,
     None, None),
    ("linear-exp-all-masked", "linear", (1, 1, 1, 2, 2, 2, 2),
     lambda x, b, h, i, j: math.exp(x), lambda b, h, i, j: False, None, None),
]


def main():
    rng = np.random.default_rng(1234)
    failed = 0
    for name, norm, shp, score, mask, sink, scale in CHECKS:
        B, H, Hkv, Lq, Lkv, D, Dv = shp
        q = rng.standard_normal((B, H, Lq, D)).astype(np.float32)
        k = rng.standard_normal((B, Hkv, Lkv, D)).astype(np.float16)
        v = rng.standard_normal((B, Hkv, Lkv, Dv))
        eff_scale = scale if scale is not None else 1.0 / math.sqrt(D)
        o_naive, lse_naive = naive(q, k, v, score, mask, eff_scale, norm, sink)
        as_float = lambda f: (lambda *a: np.asarray(f(*a), dtype=np.float64))
        o, lse = attn_ref.attention(
            q, k, v,
            score_fn=score and as_float(vec(score)),
            mask_fn=mask and (lambda *a: np.asarray(vec(mask)(*a),
                                                    dtype=bool)),
            scale=scale, norm=norm,
            sink_fn=sink and as_float(vec(sink)))
        err = np.max(np.abs(o - o_naive))
        ok = o.shape == (B, H, Lq, Dv) and err < 1e-12
        if norm == "softmax":
            same_inf = np.array_equal(np.isinf(lse), np.isinf(lse_naive))
            fin = np.isfinite(lse_naive)
            lerr = np.max(np.abs(lse[fin] - lse_naive[fin]), initial=0.0)
            ok = ok and same_inf and lerr < 1e-12
        else:
            ok = ok and lse is None
        empty_rows = int(np.sum(np.all(o_naive == 0, axis=-1)))
        print("%s selftest-%s maxerr=%.3g empty_rows=%d" %
              ("PASS" if ok else "FAIL", name, err, empty_rows))
        failed += not ok

    # Fully masked rows: exactly zero O and -inf LSE, with and without a sink.
    q = np.ones((1, 1, 2, 2))
    for sink in (None, lambda b, h: 0.0 * h + 1.0):
        o, lse = attn_ref.attention(
            q, q, q, mask_fn=lambda b, h, i, j: i + 0 * j > 0, sink_fn=sink)
        ok = np.all(o[0, 0, 0] == 0) and lse[0, 0, 0] == -np.inf and \
            np.isfinite(lse[0, 0, 1])
        print("%s selftest-empty-row%s" % ("PASS" if ok else "FAIL",
                                           "-sink" if sink else ""))
        failed += not ok
    failed += grad_checks(rng)
    return 1 if failed else 0


# name, norm, shapes (B, H, Hkv, Lq, Lkv, D, Dv), score(p, s, b, h, i, j),
# mask, sink(p, b, h), params {name: shape}; `p` holds the params.
GRAD_CHECKS = [
    ("softmax-gqa-causal", "softmax", (2, 4, 2, 5, 6, 3, 2), None,
     lambda b, h, i, j: j <= i + 1, None, {}),
    ("softmax-builtins", "softmax", (1, 2, 1, 4, 5, 3, 3),
     lambda p, s, b, h, i, j: (
         np.minimum(np.maximum(s, -0.7), 0.9) + 0.3 * np.tanh(s) +
         0.2 / (1 + np.exp(-s)) + 0.1 * np.log(1 + np.exp(s)) +
         0.1 * np.sqrt(np.abs(s) + 0.5) + 0.05 * np.abs(s + 0.3) ** 1.5 +
         np.where(s > 0, s, 0.5 * s)), None, None, {}),
    ("softmax-params", "softmax", (2, 3, 3, 4, 4, 2, 2),
     lambda p, s, b, h, i, j: s / p["temp"] + p["slopes"][h] * (j - i) +
     p["bias"][h, i, j] + p["pw"] ** 2 * s, lambda b, h, i, j: j <= i,
     None, {"temp": (), "slopes": (3,), "bias": (3, 4, 4), "pw": ()}),
    ("sink-per-head-empty-rows", "softmax", (1, 2, 1, 4, 3, 2, 2),
     lambda p, s, b, h, i, j: 2.0 * s, lambda b, h, i, j: i != 1,
     lambda p, b, h: p["sinks"][h] * 1.5, {"sinks": (2,)}),
    ("sigmoid", "sigmoid", (1, 2, 2, 3, 4, 2, 3),
     lambda p, s, b, h, i, j: s + p["bias"], lambda b, h, i, j: j != i,
     None, {"bias": ()}),
    ("relu", "relu", (1, 2, 1, 4, 4, 3, 2),
     lambda p, s, b, h, i, j: s * p["w"][0, h], None, None, {"w": (2, 2)}),
    ("linear-empty-rows", "linear", (1, 2, 1, 4, 5, 2, 2),
     lambda p, s, b, h, i, j: np.exp(s * p["t"]), lambda b, h, i, j: i > 0,
     None, {"t": ()}),
]


def grad_checks(rng):
    failed = 0
    for name, norm, shp, score, mask, sink, pshapes in GRAD_CHECKS:
        B, H, Hkv, Lq, Lkv, D, Dv = shp
        x = dict(q=rng.standard_normal((B, H, Lq, D)),
                 k=rng.standard_normal((B, Hkv, Lkv, D)),
                 v=rng.standard_normal((B, Hkv, Lkv, Dv)))
        params = {n: rng.uniform(0.5, 1.5, s) for n, s in pshapes.items()}
        do = rng.standard_normal((B, H, Lq, Dv))

        def loss(xs, ps):
            o, _ = attn_ref.attention(
                xs["q"], xs["k"], xs["v"],
                score_fn=score and (lambda *a: score(ps, *a)),
                mask_fn=mask, norm=norm,
                sink_fn=sink and (lambda *a: sink(ps, *a)))
            return float(np.sum(o * do))

        leaves = {n: attn_grad_ref.Var(v) for n, v in params.items()}
        got = attn_grad_ref.attention_backward(
            x["q"], x["k"], x["v"], do,
            score_fn=score and (lambda *a: score(leaves, *a)),
            mask_fn=mask, norm=norm,
            sink_fn=sink and (lambda *a: sink(leaves, *a)))
        for n, leaf in leaves.items():
            got["d" + n] = leaf.grad if leaf.grad is not None else \
                np.zeros(np.shape(params[n]))
        worst = 0.0
        for key, g in got.items():
            name_ = key[1:]
            base = x[name_] if name_ in x else params[name_]
            fd = np.zeros(np.shape(base))
            for idx in np.ndindex(*np.shape(base)):
                vals = []
                for sign in (1, -1):
                    xs, ps = dict(x), dict(params)
                    t = np.array(base, dtype=np.float64, copy=True)
                    t[idx] += sign * 1e-6
                    if name_ in x:
                        xs[name_] = t
                    else:
                        ps[name_] = t
                    vals.append(loss(xs, ps))
                fd[idx] = (vals[0] - vals[1]) / 2e-6
            worst = max(worst, float(np.max(np.abs(np.asarray(g) - fd),
                                            initial=0.0)))
        ok = worst < 1e-6
        print("%s selftest-grad-%s maxerr=%.3g" % ("PASS" if ok else "FAIL",
                                                   name, worst))
        failed += not ok
    return failed


if __name__ == "__main__":
    sys.exit(main())
