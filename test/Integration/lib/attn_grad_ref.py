"""Float64 NumPy reference of the backward pass of one attention variant,
written from the definition of the forward pass (attn_ref.py, section 1 of
the language contract) by hand, with no code shared with the compiler.

With P the weights, O = P V and L a loss with dL/dO = dO, per row i of
(b, h) and key j (masked entries contribute nothing):

    D_i   = sum_c dO_ic O_ic                 dP_ij = dO_i . V_j
    dT_ij = P_ij (dP_ij - D_i)               softmax, LSE with the sink
          = dP_ij w_ij (1 - w_ij)            sigmoid (w = sigmoid(t))
          = dP_ij [t_ij > 0]                 relu
          = (dP_ij - D_i) / S_i              linear (w = t / S, S = sum_j t)
    dL/de = -sum_i exp(e - LSE_i) D_i        a softmax sink e(b, h)
    dS    = dT dt/ds;  dQ = scale dS K;  dK = scale dS^T Q;  dV = P^T dO
    (dK, dV summed over the query heads of a KV head)

The derivatives of the score and sink expressions (dt/ds, dt/dp for the
params they read) come from running the case's own Python mirror of the
expression on `Var`s: a minimal reverse-mode differentiation of NumPy
arithmetic and ufuncs, indexing (whose gradient is a scatter-add) and
np.where. It follows PyTorch's conventions at non-differentiable points
(abs'(0) = 0, max/min to the first argument on ties, relu'(0) = 0).
"""

import numpy as np

import attn_ref


def _unbroadcast(g, shape):
    """Sums g down to `shape` (the inverse of NumPy broadcasting)."""
    g = np.asarray(g, dtype=np.float64)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, n in enumerate(shape):
        if n == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return g


def _value(x):
    return x.value if isinstance(x, Var) else x


class Var:
    """A float64 array that records how it was computed, for backward()."""
    __array_priority__ = 1000

    def __init__(self, value, parents=()):
        self.value = np.asarray(value, dtype=np.float64)
        self.parents = parents  # [(Var, vjp: g -> contribution)]
        self.grad = None

    @property
    def shape(self):
        return self.value.shape

    # -- reverse mode ----------------------------------------------------
    def backward(self, g, magnitudes=False):
        """Adds g (broadcast to this Var's shape) to every reachable leaf's
        .grad, in reverse topological order. With `magnitudes`, the leaves
        get sum |g| |d/dleaf| instead: every contribution counted by its
        magnitude, the scale of the sums the gradient is made of (what
        float32 rounding of those sums is proportional to)."""
        order, seen = [], set()

        def visit(v):
            stack = [(v, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    order.append(node)
                    continue
                if id(node) in seen:
                    continue
                seen.add(id(node))
                stack.append((node, True))
                for p, _ in node.parents:
                    if id(p) not in seen:
                        stack.append((p, False))
        visit(self)
        if magnitudes:
            g = np.abs(g)
        grads = {id(self): _unbroadcast(g, self.shape)}
        for node in reversed(order):
            gn = grads.pop(id(node), None)
            if gn is None:
                continue
            if not node.parents:
                node.grad = gn if node.grad is None else node.grad + gn
                continue
            for p, vjp in node.parents:
                with np.errstate(all="ignore"):
                    c = vjp(gn)
                # An entry with no incoming gradient contributes nothing,
                # even where the local derivative is infinite.
                c = np.where(np.broadcast_to(gn, np.shape(c)) == 0, 0.0, c) \
                    if np.shape(c) == np.shape(gn) else c
                if magnitudes:
                    c = np.abs(c)
                c = _unbroadcast(c, p.shape)
                grads[id(p)] = c if id(p) not in grads else grads[id(p)] + c

    # -- arithmetic ------------------------------------------------------
    @staticmethod
    def _lift(x):
        return x if isinstance(x, Var) else None

    def _binary(self, other, f, da, db, swap=False):
        a, b = (other, self) if swap else (self, other)
        av, bv = _value(a), _value(b)
        with np.errstate(all="ignore"):
            out = f(av, bv)
        parents = []
        if isinstance(a, Var):
            parents.append((a, lambda g: da(g, av, bv, out)))
        if isinstance(b, Var):
            parents.append((b, lambda g: db(g, av, bv, out)))
        return Var(out, parents)

    def __add__(self, o):
        return self._binary(o, np.add, lambda g, a, b, r: g,
                            lambda g, a, b, r: g)

    def __radd__(self, o):
        return self._binary(o, np.add, lambda g, a, b, r: g,
                            lambda g, a, b, r: g, swap=True)

    def __sub__(self, o):
        return self._binary(o, np.subtract, lambda g, a, b, r: g,
                            lambda g, a, b, r: -g)

    def __rsub__(self, o):
        return self._binary(o, np.subtract, lambda g, a, b, r: g,
                            lambda g, a, b, r: -g, swap=True)

    def __mul__(self, o):
        return self._binary(o, np.multiply, lambda g, a, b, r: g * b,
                            lambda g, a, b, r: g * a)

    def __rmul__(self, o):
        return self._binary(o, np.multiply, lambda g, a, b, r: g * b,
                            lambda g, a, b, r: g * a, swap=True)

    def __truediv__(self, o):
        return self._binary(o, np.divide, lambda g, a, b, r: g / b,
                            lambda g, a, b, r: -g * a / (b * b))

    def __rtruediv__(self, o):
        return self._binary(o, np.divide, lambda g, a, b, r: g / b,
                            lambda g, a, b, r: -g * a / (b * b), swap=True)

    def __pow__(self, o):
        return _pow(self, o)

    def __rpow__(self, o):
        return _pow(o, self)

    def __neg__(self):
        return Var(-self.value, [(self, lambda g: -g)])

    def __pos__(self):
        return self

    # Comparisons are not differentiated: plain boolean arrays.
    def __lt__(self, o):
        return self.value < _value(o)

    def __le__(self, o):
        return self.value <= _value(o)

    def __gt__(self, o):
        return self.value > _value(o)

    def __ge__(self, o):
        return self.value >= _value(o)

    def __getitem__(self, idx):
        idx_v = tuple(_value(i) for i in idx) if isinstance(idx, tuple) \
            else _value(idx)
        out = self.value[idx_v]
        shape = self.shape

        def scatter(g):
            acc = np.zeros(shape)
            np.add.at(acc, idx_v, np.broadcast_to(g, out.shape))
            return acc
        return Var(out, [(self, scatter)])

    # -- NumPy functions -------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            return NotImplemented
        if ufunc in _UNARY and len(inputs) == 1:
            x = inputs[0]
            with np.errstate(all="ignore"):
                r = ufunc(x.value)
            d = _UNARY[ufunc]
            return Var(r, [(x, lambda g: g * d(x.value, r))])
        if ufunc in (np.add, np.subtract, np.multiply, np.true_divide,
                     np.power):
            a, b = inputs
            if ufunc is np.power:
                return _pow(a, b)
            op = {np.add: "__add__", np.subtract: "__sub__",
                  np.multiply: "__mul__", np.true_divide: "__truediv__"}
            if isinstance(a, Var):
                return getattr(a, op[ufunc])(b)
            return getattr(b, "__r" + op[ufunc][2:])(a)
        if ufunc in (np.maximum, np.minimum):
            a, b = inputs
            av, bv = _value(a), _value(b)
            first = av >= bv if ufunc is np.maximum else av <= bv
            out = np.where(first, av, bv)
            parents = []
            if isinstance(a, Var):
                parents.append((a, lambda g: np.where(first, g, 0.0)))
            if isinstance(b, Var):
                parents.append((b, lambda g: np.where(first, 0.0, g)))
            return Var(out, parents)
        if ufunc in (np.greater, np.less, np.greater_equal, np.less_equal,
                     np.equal, np.not_equal):
            return ufunc(*[_value(x) for x in inputs])
        if ufunc in (np.floor, np.ceil, np.trunc, np.rint):
            return ufunc(inputs[0].value)
        return NotImplemented

    def __array_function__(self, func, types, args, kwargs):
        if func is np.where and len(args) == 3 and not kwargs:
            c, a, b = args
            c = np.asarray(_value(c), dtype=bool)
            av, bv = _value(a), _value(b)
            out = np.where(c, av, bv)
            parents = []
            if isinstance(a, Var):
                parents.append((a, lambda g: np.where(c, g, 0.0)))
            if isinstance(b, Var):
                parents.append((b, lambda g: np.where(c, 0.0, g)))
            return Var(out, parents)
        if func in (np.broadcast_to, np.asarray):
            return NotImplemented
        return NotImplemented


def _pow(a, b):
    """a ** b with PyTorch's derivatives: d/da = b a^(b-1), 0 where b == 0;
    d/db = a^b log a, 0 where a == 0 and b >= 0."""
    av, bv = _value(a), _value(b)
    with np.errstate(all="ignore"):
        r = np.power(av, bv)
    parents = []
    if isinstance(a, Var):
        parents.append((a, lambda g: g * np.where(
            bv == 0, 0.0, bv * np.power(av, bv - 1.0))))
    if isinstance(b, Var):
        parents.append((b, lambda g: g * np.where(
            (av == 0) & (bv >= 0), 0.0, r * np.log(np.abs(av)))))
    return Var(r, parents)


_UNARY = {
    np.exp: lambda x, r: r,
    np.log: lambda x, r: 1.0 / x,
    np.sqrt: lambda x, r: 0.5 / r,
    np.tanh: lambda x, r: 1.0 - r * r,
    np.abs: lambda x, r: np.sign(x),  # 0 at 0
    np.absolute: lambda x, r: np.sign(x),
    np.negative: lambda x, r: -np.ones_like(x),
}


def attention_backward(q, k, v, do, score_fn=None, mask_fn=None, scale=None,
                       norm="softmax", sink_fn=None, magnitudes=False):
    """Returns dict(dq, dk, dv) in float64 and runs backward() on the Vars
    that score_fn and sink_fn read (their .grad then holds dL/dparam; with
    `magnitudes`, the sum of the magnitudes of its contributions instead,
    see Var.backward).

    score_fn(s, b, h, i, j) receives s as a Var; sink_fn(b, h) may return a
    Var. Shapes and grids as in attn_ref.attention.
    """
    q, k, v, do = (np.asarray(x, dtype=np.float64) for x in (q, k, v, do))
    B, H, Lq, D = q.shape
    _, Hkv, Lkv, _ = k.shape
    Dv = v.shape[3]
    group = H // Hkv
    kv_head = np.arange(H) // group
    kh, vh = k[:, kv_head], v[:, kv_head]
    if scale is None:
        scale = 1.0 / np.sqrt(D)
    s = scale * np.einsum("bhid,bhjd->bhij", q, kh)
    b, h, i, j = attn_ref.index_grids(B, H, Lq, Lkv)
    full = (B, H, Lq, Lkv)
    S = Var(s)
    T = score_fn(S, b, h, i, j) if score_fn is not None else S
    if not isinstance(T, Var):
        T = Var(np.asarray(T, dtype=np.float64))
    t = np.broadcast_to(T.value, full)
    mask = np.ones(full, dtype=bool)
    if mask_fn is not None:
        mask = np.broadcast_to(np.asarray(mask_fn(b, h, i, j)), full)
    empty = ~mask.any(axis=-1)
    live = mask & ~empty[..., None]

    E = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if norm == "softmax":
            e = np.full((B, H, 1, 1), -np.inf)
            if sink_fn is not None:
                E = sink_fn(b, h)
                e = np.broadcast_to(np.asarray(_value(E), dtype=np.float64),
                                    (B, H, 1, 1))
            m = np.maximum(np.where(mask, t, -np.inf).max(-1, keepdims=True),
                           e)
            m = np.where(np.isfinite(m), m, 0.0)
            p = np.where(mask, np.exp(t - m), 0.0)
            denom = p.sum(-1, keepdims=True) + np.exp(e - m)
            lse = np.log(denom) + m
            w = np.where(live, np.exp(t - lse), 0.0)
        elif norm == "sigmoid":
            w = np.where(mask, 1.0 / (1.0 + np.exp(-t)), 0.0)
        elif norm == "relu":
            w = np.where(mask, np.maximum(t, 0.0), 0.0)
        else:
            rows = np.where(mask, t, 0.0).sum(-1, keepdims=True)
            inv = np.where(rows != 0, 1.0 / np.where(rows != 0, rows, 1.0),
                           0.0)
            w = np.where(mask, t, 0.0) * inv
        w = np.where(empty[..., None], 0.0, w)
        o = np.einsum("bhij,bhjd->bhid", w, vh)
        Drow = (do * o).sum(-1)[..., None]                # [B, H, Lq, 1]
        dP = np.einsum("bhid,bhjd->bhij", do, vh)
        if norm == "softmax":
            dT = w * (dP - Drow)
        elif norm == "sigmoid":
            dT = dP * w * (1.0 - w)
        elif norm == "relu":
            dT = np.where(t > 0, dP, 0.0)
        else:
            dT = (dP - Drow) * inv
        dT = np.where(live, dT, 0.0)

    T.backward(dT, magnitudes)
    dS = np.zeros(full) if S.grad is None else np.where(live, S.grad, 0.0)
    if E is not None and isinstance(E, Var):
        nonempty = ~empty[..., None]
        de_rows = -np.where(nonempty, np.exp(e - lse) * Drow, 0.0)
        if magnitudes:
            de_rows = np.abs(de_rows)
        de = de_rows.sum(axis=2, keepdims=True)           # [B, H, 1, 1]
        E.backward(de, magnitudes)

    dq = scale * np.einsum("bhij,bhjd->bhid", dS, kh)
    dk_h = scale * np.einsum("bhij,bhid->bhjd", dS, q)
    dv_h = np.einsum("bhij,bhid->bhjd", w, do)
    dk = dk_h.reshape(B, Hkv, group, Lkv, D).sum(axis=2)
    dv = dv_h.reshape(B, Hkv, group, Lkv, Dv).sum(axis=2)
    out = dict(dq=dq, dk=dk, dv=dv)
    for name, x in out.items():
        if not np.all(np.isfinite(x)):
            raise FloatingPointError("reference %s is not finite" % name)
    return out
