#!/usr/bin/env python3
"""The README's ALiBi example from Python: causal ALiBi attention
(examples/alibi.attn, variant `alibi`) on the shipped 1x4x128x64 float32
tensors (examples/data), through the attnc package and NumPy.

Checks O and LSE against a float64 NumPy implementation of its own and
exits 0 when they match; with --out DIR also writes DIR/o.npy and
DIR/lse.npy, like

    attnc run examples/alibi.attn --variant alibi --q examples/data/q.npy \
        --k examples/data/k.npy --v examples/data/v.npy \
        --param slopes=examples/data/slopes.npy -o o.npy --lse lse.npy

Run it from a checkout after `ninja -C build libattn` with
`PYTHONPATH=python python3 examples/python/alibi.py`, or with attnc
installed (docs/python.md).
"""

import argparse
import os
import sys

import numpy as np

import attnc

EXAMPLES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def alibi_float64(q, k, v, slopes):
    """O and LSE of causal ALiBi, written out in float64."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    L, D = q.shape[2], q.shape[3]
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    s = q @ k.swapaxes(-1, -2) / np.sqrt(D)
    s = s + slopes.astype(np.float64)[None, :, None, None] * (j - i)
    s = np.where(j <= i, s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    total = p.sum(-1, keepdims=True)
    return (p / total) @ v, (np.log(total) + m)[..., 0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for o.npy and lse.npy")
    a = ap.parse_args()

    data = os.path.join(EXAMPLES, "data")
    q, k, v, slopes = (np.load(os.path.join(data, n + ".npy"))
                       for n in ("q", "k", "v", "slopes"))

    alibi = attnc.compile_file(os.path.join(EXAMPLES, "alibi.attn"),
                               variant="alibi")
    o, lse = alibi(q, k, v, slopes=slopes, return_lse=True)
    print(alibi)

    ref_o, ref_lse = alibi_float64(q, k, v, slopes)
    err_o = np.abs(o - ref_o).max()
    err_lse = np.abs(lse - ref_lse).max()
    print("O %s %s, max |O - O_ref| = %.2e; max |LSE - LSE_ref| = %.2e"
          % (o.dtype, o.shape, err_o, err_lse))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        np.save(os.path.join(a.out, "o.npy"), o)
        np.save(os.path.join(a.out, "lse.npy"), lse)
        print("wrote %s and %s" % (os.path.join(a.out, "o.npy"),
                                   os.path.join(a.out, "lse.npy")))
    if not (err_o < 1e-5 and err_lse < 1e-5):
        print("MISMATCH against the float64 reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
