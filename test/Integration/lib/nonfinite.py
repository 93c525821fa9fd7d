#!/usr/bin/env python3
"""Non-finite inputs against the documented contract (docs/language.md,
"Masked entries and non-finite inputs").

Each case poisons fresh random Q, K and V with NaN and infinities at chosen
places: in V and K at keys that the mask removes for most rows but keeps
for a few, in Q at a row with kept keys and at a row the mask empties. A
float64 reference written from the contract alone (for each row, only its
kept keys, in plain NumPy that propagates NaN and infinity) says which
elements of O and LSE are finite; attnc's must be finite exactly there,
and close to the reference where they are. Masked entries must leave no
trace: what Q, K or V hold there never reaches a row that masks it.

The GPU's tensor-core kernels (float16 and bfloat16 with head dims that are
multiples of 16) multiply whole tiles, so a NaN or an infinity in V at a key
masked for a row may still reach that row when its q-tile computes the
kv-tile holding the key (0 * NaN is NaN): --tensor-core allows that, and
only that, for rows and keys that share such a pair of tiles (any tiles of
up to 128 rows and 128 keys).

Usage: nonfinite.py --attnc BIN [--target cpu|nvptx] [--reference]
                    [--dtype float32|float16] [--head-dim N] [--tensor-core]
                    [--seed N]
Prints PASS/FAIL per case; exits 1 if any failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

L = 200  # several 64-row q-tiles and 64-key kv-tiles, a partial last one


def causal(i, j):
    return j <= i


CASES = [
    # name, source, mask(i, j) on int64 grids, normalisation, score(s)
    ("causal-softmax", "attention a { mask = causal(); }", causal, "softmax",
     None),
    ("window-relu",
     "attention a { mask = sliding_window(24); normalize relu; }",
     lambda i, j: (j <= i) & (i - j < 24), "relu", None),
    ("chunked-sigmoid",
     "attention a { mask = chunked(50); normalize sigmoid; }",
     lambda i, j: i // 50 == j // 50, "sigmoid", None),
    ("documents-linear",
     "attention a { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx] && "
     "kv_idx <= q_idx; score = 1.0 + score * score; normalize linear; }",
     None, "linear", lambda s: 1.0 + s * s),
    ("empty-rows-softmax",
     "attention a { mask = causal() && q_idx >= 9; }",
     lambda i, j: (j <= i) & (i >= 9), "softmax", None),
]


def documents():
    """Sorted document ids of random lengths, as an int32[L]."""
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, L), size=6, replace=False))
    doc = np.zeros(L, np.int32)
    for c in cuts:
        doc[c:] += 1
    return doc


def reference(q, k, v, kept, norm, score):
    """Float64 O [H, L, Dv] and LSE [H, L] from each row's kept keys only."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    H, _, D = q.shape
    o = np.zeros((H, L, v.shape[-1]))
    lse = np.full((H, L), -np.inf)
    with np.errstate(all="ignore"):
        for h in range(H):
            for i in range(L):
                js = np.nonzero(kept[i])[0]
                if js.size == 0:
                    continue  # O = 0, LSE = -inf
                s = (k[h, js] @ q[h, i]) / np.sqrt(D)
                if score is not None:
                    s = score(s)
                if norm == "softmax":
                    m = np.max(s)  # NaN if any kept score is NaN
                    w = np.exp(s - m)
                    total = np.sum(w)
                    o[h, i] = (w @ v[h, js]) / total
                    lse[h, i] = m + np.log(total)
                elif norm == "linear":  # s / sum(s), s non-negative
                    o[h, i] = (s @ v[h, js]) / np.sum(s)
                else:
                    w = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)),
                         "relu": lambda x: np.maximum(x, 0)}[norm](s)
                    o[h, i] = w @ v[h, js]
    return o, lse


def leak_allowed(kept, v_bad):
    """[L, Dv]: where a tensor-core kernel may show a NaN from V at a
    masked key: row i, column c, for some non-finite V[j, c] whose key's
    kv-tile some row of i's q-tile keeps any key of (tiles up to 128)."""
    near = np.zeros((L, L), bool)  # near[i, j]: kept (i', j') within 127
    ii, jj = np.nonzero(kept)
    for a, b in zip(ii, jj):
        near[max(a - 127, 0):a + 128, max(b - 127, 0):b + 128] = True
    return (near.astype(np.int64) @ v_bad.astype(np.int64)) > 0


def run_case(case, opts, seed, tmp):
    name, src, mask, norm, score = case
    rng = np.random.default_rng(seed)
    H, D = 2, opts.head_dim
    dt = np.dtype(opts.dtype)
    q = rng.standard_normal((H, L, D)).astype(np.float32)
    k = rng.standard_normal((H, L, D)).astype(np.float32)
    v = rng.standard_normal((H, L, D)).astype(np.float32)
    i, j = np.arange(L).reshape(L, 1), np.arange(L).reshape(1, L)
    doc = documents()
    kept = (doc[i] == doc[j]) & (j <= i) if mask is None else mask(i, j)
    kept = np.broadcast_to(kept, (L, L))
    # V poisoned at keys that some block of 4 rows both keeps and masks;
    # K at keys that some rows mask, kept by none of the rows a leak of V
    # would show in (so that the rows K spoils do not hide it); Q at such a
    # row with kept keys, and at a row without.
    keep_count = kept.sum(axis=0)
    order = np.argsort(keep_count, kind="stable")
    # Keys that a block of 4 consecutive rows both keeps and masks.
    blocks = kept[:L // 4 * 4].reshape(L // 4, 4, L)
    split = (blocks.any(axis=1) & ~blocks.all(axis=1)).any(axis=0)
    middle = np.argsort(np.abs(keep_count - np.median(keep_count[split])),
                        kind="stable")
    vk = [jj for jj in middle if split[jj]][:3]
    # The rows a leak of V would show in: they mask a poisoned key that
    # another row of their block keeps. K and Q are poisoned elsewhere.
    leak = np.zeros(L, bool)
    for x in vk:
        block_keeps = np.repeat(blocks[:, :, x].any(axis=1), 4)
        leak[:L // 4 * 4] |= block_keeps & ~kept[:L // 4 * 4, x]
    kk = [jj for jj in order if 0 < keep_count[jj] < L and
          not kept[leak, jj].any()][:2]
    assert len(vk) == 3 and len(kk) == 2 and leak.any(), name
    v[:, vk[0], 1] = np.nan
    v[:, vk[1], :] = np.inf
    v[:, vk[2], 3] = -np.inf
    k[:, kk[0], 0] = np.nan
    k[:, kk[1], 2] = np.inf
    rows = kept.any(axis=1)
    quiet = np.nonzero(rows & ~leak)[0]
    q[0, quiet[len(quiet) // 2], 5] = np.nan
    if not rows.all():
        q[1, np.nonzero(~rows)[0][0], :] = np.nan
    q, k, v = (x.astype(dt) for x in (q, k, v))

    paths = {}
    for t, x in (("q", q), ("k", k), ("v", v)):
        paths[t] = os.path.join(tmp, name + "." + t + ".npy")
        np.save(paths[t], x[None])
    attn = os.path.join(tmp, name + ".attn")
    with open(attn, "w") as f:
        f.write(src + "\n")
    out, lse_path = (os.path.join(tmp, name + "." + n + ".npy")
                     for n in ("o", "lse"))
    cmd = [opts.attnc, "run", attn, "--q", paths["q"], "--k", paths["k"],
           "--v", paths["v"], "-o", out, "--target", opts.target]
    if norm == "softmax":
        cmd += ["--lse", lse_path]
    if mask is None:
        np.save(os.path.join(tmp, "doc.npy"), doc)
        cmd += ["--param", "doc=" + os.path.join(tmp, "doc.npy")]
    if opts.reference:
        cmd += ["--reference"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace", timeout=300)
    if p.returncode != 0:
        return ["attnc exited %d: %s" % (p.returncode, p.stdout.strip()[-500:])]
    got = np.load(out)[0].astype(np.float64)
    want, want_lse = reference(q, k, v, kept, norm, score)
    problems = []
    allowed = np.zeros(got.shape, bool)
    if opts.tensor_core:
        v_bad = ~np.isfinite(v.astype(np.float64))  # [H, L, Dv]
        for h in range(H):
            allowed[h] = leak_allowed(kept, v_bad[h])
    fin_want, fin_got = np.isfinite(want), np.isfinite(got)
    extra = fin_want & ~fin_got & ~allowed
    missing = ~fin_want & fin_got
    if extra.any():
        h, r, c = np.argwhere(extra)[0]
        problems.append("%d elements of O non-finite where the contract "
                        "says finite (first: head %d row %d column %d = %r)" %
                        (extra.sum(), h, r, c, got[h, r, c]))
    if missing.any():
        h, r, c = np.argwhere(missing)[0]
        problems.append("%d elements of O finite where the contract says "
                        "non-finite (first: head %d row %d column %d = %r)" %
                        (missing.sum(), h, r, c, got[h, r, c]))
    both = fin_want & fin_got
    tol = 2e-3 if dt == np.float32 else 2e-2
    err = np.abs(got[both] - want[both]) / (1 + np.abs(want[both]))
    if err.size and err.max() > tol:
        problems.append("finite elements differ by %.3g (tolerance %g)" %
                        (err.max(), tol))
    empty = ~rows
    if np.any(got[:, empty][np.isfinite(got[:, empty])] != 0):
        problems.append("rows with no kept key are not 0")
    if norm == "softmax":
        lse = np.load(lse_path)[0].astype(np.float64)
        if not np.array_equal(np.isfinite(lse), np.isfinite(want_lse)) or \
                not np.array_equal(np.isneginf(lse), np.isneginf(want_lse)):
            h, r = np.argwhere((np.isfinite(lse) != np.isfinite(want_lse)) |
                               (np.isneginf(lse) != np.isneginf(want_lse)))[0]
            problems.append("LSE is non-finite at other rows than the "
                            "contract's (first: head %d row %d: %r, "
                            "contract %r)" % (h, r, lse[h, r], want_lse[h, r]))
        f = np.isfinite(want_lse)
        if f.any() and np.max(np.abs(lse[f] - want_lse[f])) > 50 * tol:
            problems.append("LSE differs by %.3g" %
                            np.max(np.abs(lse[f] - want_lse[f])))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--target", default="cpu", choices=["cpu", "nvptx"])
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--dtype", default="float32",
                    choices=["float32", "float16"])
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--tensor-core", action="store_true",
                    help="allow V at masked keys to reach rows of q-tiles "
                         "that compute its kv-tile")
    ap.add_argument("--seed", type=int)
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="attnc-nonfinite-")
    failed = 0
    try:
        for case in CASES:
            seed = opts.seed if opts.seed is not None else \
                int.from_bytes(os.urandom(4), "little")
            problems = run_case(case, opts, seed, tmp)
            print("%s %s seed=%d" % ("FAIL" if problems else "PASS", case[0],
                                     seed))
            for prob in problems:
                print("  " + prob)
            failed += bool(problems)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
