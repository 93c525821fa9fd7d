#!/usr/bin/env python3
"""End-to-end checks of `attnc run` against the float64 reference.

Each named case holds an .attn source, sizes, input dtype, parameters and the
Python mirror of the variant's score/mask/sink. A run draws fresh random
inputs (seeded from os.urandom unless --seed is given; the seed is printed),
writes them as .npy files in a temporary directory, pre-fills the output
files with NaN (so an output the tool never wrote cannot pass), runs

    attnc run CASE.attn [--variant V] --q Q.npy --k K.npy --v V.npy
          [--param NAME=VALUE | NAME=FILE.npy]... -o O.npy [--lse LSE.npy]

and compares with attn_ref: ||O - ref|| / ||ref|| <= 2e-5 (float32 inputs)
or 3e-3 (float16 inputs, reference from the float16 values), rows with no
unmasked key exactly 0, |LSE - ref| <= 1e-4 and LSE exactly -inf where the
reference is, O of the inputs' dtype and LSE float32. Error cases instead
expect a non-zero exit, no crash, an `error:` line and a message matching a
pattern.

With --grad a case instead checks the backward pass: a fresh random dO,

    attnc grad CASE.attn --q Q.npy --k K.npy --v V.npy --do DO.npy
          [--param ...]... --dq DQ.npy --dk DK.npy --dv DV.npy
          [--dparam NAME=FILE.npy for every f32 param]

(the tool runs the forward pass itself), compared with attn_grad_ref (the
float64 backward written from the definition): ||x - ref|| / ||ref|| <= 1e-4
for dQ, dK and dV, ||x - ref|| / ||M|| <= 1e-4 for every param gradient,
where M is the sum of the magnitudes of the terms the gradient sums (it is
||ref|| when no terms cancel; a softmax's param gradients cancel by
construction, and float32 rounding is relative to M) (float32 inputs; 3e-3
for float16), all finite, dQ exactly 0 on fully masked rows. --fd adds a finite-difference
check of a few entries of every gradient against the float64 forward
reference. The `gerr` cases are the backward's bad inputs.

Usage: run_case.py --attnc BIN [--target T] [--seed N] [--grad [--fd]]
                   CASE|GROUP...
       run_case.py --list [CASE|GROUP...]
       run_case.py --ref-only CASE|GROUP...   (check the cases themselves)
Prints `PASS name ...` or `FAIL name ...` per case; exits 1 if any failed.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import attn_grad_ref  # noqa: E402
import attn_ref  # noqa: E402

GROUPS = ("softmax", "prelude", "norm", "shape", "param", "lang", "err",
          "gerr")
CASES = {}

F32_TOL, F16_TOL, LSE_TOL = 2e-5, 3e-3, 1e-4
GRAD_F32_TOL, GRAD_F16_TOL = 1e-4, 3e-3
# --target nvptx: exp2/log2 are the GPU's approximate instructions.
GPU_F32_TOL, GPU_LSE_TOL = 1e-4, 2e-2


class Case:
    """One end-to-end check. Python mirrors take a context `c` first: c holds
    the sizes (B, H, Hkv, Lq, Lkv, D, Dv, group = H // Hkv), every param and
    every `env` value by name; index grids are int64 and broadcast."""

    def __init__(self, name, src, variant=None, B=1, H=2, Hkv=None, Lq=64,
                 Lkv=None, D=32, Dv=None, dtype="float32", params=None,
                 env=None, score=None, mask=None, sink=None, scale=None,
                 norm="softmax", lse=None, error=None, raw_params=(),
                 shapes=None, dtypes=None, corrupt=None,
                 out_path=None, dims_fixed=False, grad_error=None,
                 grad_args=(), grad_do_shape=None, grad_dparams=None,
                 grad_output=None):
        self.name, self.src, self.variant = name, src, variant
        self.sizes = dict(B=B, H=H, Hkv=Hkv or H, Lq=Lq, Lkv=Lkv or Lq, D=D,
                          Dv=Dv or D)
        self.dtype, self.params, self.env = dtype, params or {}, env or {}
        self.score, self.mask, self.sink = score, mask, sink
        self.scale, self.norm = scale, norm
        self.lse = (norm == "softmax") if lse is None else lse
        self.error, self.raw_params = error, list(raw_params)
        self.shapes, self.dtypes = shapes or {}, dtypes or {}
        self.corrupt, self.out_path = corrupt or {}, out_path
        # The reference hard-codes something derived from D or Dv, so the
        # case cannot run at other head dims (--head-dim).
        self.dims_fixed = dims_fixed
        # Backward error cases (group gerr): the expected message, extra
        # `attnc grad` arguments, a dO of another shape, and --dparam
        # names to request instead of the f32 params.
        self.grad_error, self.grad_args = grad_error, list(grad_args)
        self.grad_do_shape, self.grad_dparams = grad_do_shape, grad_dparams
        # A pattern the output of a successful `attnc grad` must match.
        self.grad_output = grad_output


def case(name, src, **kw):
    assert name.split("-")[0] in GROUPS and name not in CASES, name
    CASES[name] = Case(name, src, **kw)


def err(name, src, pattern, **kw):
    case(name, src, error=pattern, **kw)


# -- softmax ---------------------------------------------------------------
case("softmax-default", "attention dense {}\n", B=2, H=4, D=64)
case("softmax-explicit", "attention dense { normalize softmax; }", Lq=50,
     lse=False)
case("softmax-scale-literal", "attention a { scale = 0.3; }", D=16,
     scale=0.3)
case("softmax-scale-expr", "attention a { scale = 2.0 / sqrt(f32(D)); }",
     scale=2.0 / np.sqrt(32), dims_fixed=True)
case("softmax-scale-sizes",
     "attention a { scale = 1.0 / sqrt(f32(D + Dv)); }", D=16, Dv=48,
     scale=1.0 / 8.0, dims_fixed=True)
case("softmax-scale-const", """
attention a {
  const param t: f32 = 0.5;
  scale = t / sqrt(f32(D));
}""", scale=0.5 / np.sqrt(32), dims_fixed=True)
# Scores with a standard deviation of 8: needs a stable (max-subtracted) sum.
case("softmax-large-scores", "attention a { scale = 1.0; }", D=64, Lq=96,
     scale=1.0)

# -- prelude ---------------------------------------------------------------
causal = lambda c, b, h, i, j: j <= i  # noqa: E731
case("prelude-causal", "attention a { mask = causal(); }", B=2, mask=causal)
case("prelude-causal-bottom-right",
     "attention a { mask = causal_bottom_right(); }", Lq=16, Lkv=80,
     mask=lambda c, b, h, i, j: j <= i + (c.Lkv - c.Lq))
case("prelude-causal-bottom-right-empty-rows",
     "attention a { mask = causal_bottom_right(); }", Lq=40, Lkv=24,
     mask=lambda c, b, h, i, j: j <= i + (c.Lkv - c.Lq))
case("prelude-chunked", "attention a { mask = chunked(16); }",
     mask=lambda c, b, h, i, j: i // 16 == j // 16)
case("prelude-chunked-ragged", "attention a { mask = chunked(12); }", Lq=50,
     mask=lambda c, b, h, i, j: i // 12 == j // 12)
case("prelude-streaming", "attention a { mask = streaming(4, 16); }", Lq=96,
     mask=lambda c, b, h, i, j: (j <= i) & ((j < 4) | (i - j < 16)))
case("prelude-sliding-window", "attention a { mask = sliding_window(8); }",
     mask=lambda c, b, h, i, j: (j <= i) & (i - j < 8))
case("prelude-prefix-lm", "attention a { mask = prefix_lm(10); }", Lq=48,
     mask=lambda c, b, h, i, j: (j < 10) | (j <= i))


def alibi_slopes(c, rng):
    return (2.0 ** (-8.0 * (np.arange(c.H) + 1) / c.H)).astype(np.float32)


case("prelude-alibi-param", """
def causal_mask() = causal();
attention alibi {
  param slopes: f32[H];                       // one value per head
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask  = causal_mask();
}""", H=8, params=dict(slopes=alibi_slopes),
     score=lambda c, s, b, h, i, j: s + c.slopes[h] * (j - i), mask=causal)
case("prelude-alibi-inline", """
attention alibi {
  score = score + alibi_slope(h, H) * f32(kv_idx - q_idx);
  mask = causal();
}""", H=8,
     score=lambda c, s, b, h, i, j:
         s + 2.0 ** (-8.0 * (h + 1) / c.H) * (j - i), mask=causal)
case("prelude-softcap",
     "attention a { scale = 1.0; score = softcap(score, 5.0); }",
     scale=1.0, score=lambda c, s, b, h, i, j: 5.0 * np.tanh(s / 5.0))
case("prelude-softcap-const", """
attention gemma_softcap {
  const param cap: f32 = 20.0;                // baked into the kernel
  param window: i32 = 24;
  scale = 1.0;
  score = softcap(score, cap);
  mask  = causal() && q_idx - kv_idx < window;
}""", scale=1.0, score=lambda c, s, b, h, i, j: 20.0 * np.tanh(s / 20.0),
     mask=lambda c, b, h, i, j: (j <= i) & (i - j < 24))


def neighborhood(W, ry, rx):
    return lambda c, b, h, i, j: ((abs(i // W - j // W) <= ry) &
                                  (abs(i % W - j % W) <= rx))


case("prelude-neighborhood-2d",
     "attention natten { mask = neighborhood_2d(8, 1, 2); }",
     mask=neighborhood(8, 1, 2))
case("prelude-neighborhood-2d-ragged",
     "attention natten { mask = neighborhood_2d(5, 2, 1); }", Lq=23,
     mask=neighborhood(5, 2, 1))
# Many q-tiles and kv-tiles: a grid as wide as a kv-tile, so the kernel's
# per-block windows follow the columns (kv % W inside one grid row), with a
# ragged last row; a long sliding window and a chunked mask whose bands
# cross tiles at every offset; a sigmoid over a neighbourhood (windows with
# plain weights).
case("prelude-neighborhood-2d-wide",
     "attention natten { mask = neighborhood_2d(64, 3, 3); }", Lq=700,
     H=1, D=16, mask=neighborhood(64, 3, 3))
case("prelude-neighborhood-2d-offset",
     "attention natten { mask = neighborhood_2d(64, 2, 9); }", Lq=330,
     Lkv=400, H=1, D=16, mask=neighborhood(64, 2, 9))
case("prelude-sliding-window-long",
     "attention a { mask = sliding_window(100); }", Lq=530, H=1, D=16,
     mask=lambda c, b, h, i, j: (j <= i) & (i - j < 100))
case("prelude-chunked-long", "attention a { mask = chunked(37); }", Lq=300,
     H=1, D=16, mask=lambda c, b, h, i, j: i // 37 == j // 37)
case("prelude-neighborhood-2d-sigmoid",
     "attention natten { mask = neighborhood_2d(64, 1, 5); normalize sigmoid; }",
     Lq=300, H=1, D=16, norm="sigmoid", mask=neighborhood(64, 1, 5))

# -- normalisations --------------------------------------------------------
case("norm-sink-zero", "attention a { normalize softmax(sink = 0.0); }",
     sink=lambda c, b, h: 0.0 * h)
case("norm-sink-param", """
attention a {
  param sinks: f32[H];
  mask = causal();
  normalize softmax(sink = sinks[h]);
}""", H=4, params=dict(sinks=lambda c, rng:
                       (2 * rng.standard_normal(c.H)).astype(np.float32)),
     mask=causal, sink=lambda c, b, h: c.sinks[h])
case("norm-sink-expr",
     "attention a { normalize softmax(sink = 0.5 * f32(h) - f32(b)); }",
     B=2, H=4, sink=lambda c, b, h: 0.5 * h - b)
# A row with no unmasked key: O = 0 and LSE = -inf even with a sink.
case("norm-sink-empty-rows", """
attention a {
  mask = q_idx >= 4 && kv_idx <= q_idx;
  normalize softmax(sink = 1.0);
}""", mask=lambda c, b, h, i, j: (i >= 4) & (j <= i),
     sink=lambda c, b, h: 1.0 + 0.0 * h)
case("norm-sigmoid", "attention a { score = score - 2.0; normalize sigmoid; }",
     norm="sigmoid", score=lambda c, s, b, h, i, j: s - 2.0)
case("norm-sigmoid-param-bias", """
attention a {
  param bias: f32 = -3.0;
  score = score + bias;
  mask = causal();
  normalize sigmoid;
}""", norm="sigmoid", params=dict(bias=-1.25),
     score=lambda c, s, b, h, i, j: s + c.bias, mask=causal)
case("norm-sigmoid-empty-rows", """
attention a { mask = q_idx >= 5; normalize sigmoid; }""", norm="sigmoid",
     mask=lambda c, b, h, i, j: (i >= 5) & (j >= 0))
case("norm-relu", "attention a { normalize relu; }", norm="relu")
case("norm-relu-causal", """
attention a { scale = 0.5; mask = causal(); normalize relu; }""",
     norm="relu", scale=0.5, mask=causal)
case("norm-linear-square", """
attention a { score = 1.0 + score * score; normalize linear; }""",
     norm="linear", score=lambda c, s, b, h, i, j: 1.0 + s * s)
case("norm-linear-exp-causal", """
attention a { score = exp(score); mask = causal(); normalize linear; }""",
     norm="linear", score=lambda c, s, b, h, i, j: np.exp(s), mask=causal)
case("norm-linear-empty-rows", """
attention a {
  score = 1.0 + score * score;
  mask = q_idx >= 2 && kv_idx <= q_idx;
  normalize linear;
}""", norm="linear", score=lambda c, s, b, h, i, j: 1.0 + s * s,
     mask=lambda c, b, h, i, j: (i >= 2) & (j <= i))

# -- shapes and dtypes -----------------------------------------------------
case("shape-gqa", "attention a { mask = causal(); }", H=8, Hkv=2, B=2,
     mask=causal)
case("shape-mqa", "attention a {}", H=4, Hkv=1)
case("shape-lq-ne-lkv", "attention a {}", Lq=24, Lkv=72)
case("shape-decode", "attention a { mask = causal_bottom_right(); }", Lq=1,
     Lkv=77, H=8, Hkv=2,
     mask=lambda c, b, h, i, j: j <= i + (c.Lkv - c.Lq))
case("shape-lkv-1", "attention a {}", Lq=5, Lkv=1)
case("shape-odd", "attention a { mask = causal(); }", Lq=37, D=24,
     mask=causal)
case("shape-dv-gt-d", "attention a {}", D=32, Dv=48)
# Dv four times D: the tensor-core kernel's O staging tile is larger than
# its Q, K and V tiles, and the block's shared memory grows to hold it;
# Lq = 200 leaves the second block 72 rows.
case("shape-dv-wide", "attention a { mask = causal(); }", D=32, Dv=128,
     Lq=200, mask=causal)
case("shape-dv-lt-d", "attention a { mask = causal(); }", D=64, Dv=8,
     mask=causal)
for _d, _l in ((1, 64), (3, 64), (64, 64), (128, 48), (256, 32)):
    case("shape-d%d" % _d, "attention a { mask = causal(); }", D=_d, Lq=_l,
         H=2, B=2 if _d < 128 else 1, mask=causal)
case("shape-f16", "attention a {}", dtype="float16", B=2)
case("shape-f16-gqa-causal", "attention a { mask = causal(); }",
     dtype="float16", H=8, Hkv=2, mask=causal)
case("shape-f16-d256", "attention a {}", dtype="float16", D=256, Lq=32)
# D != Dv as MLA's decode has them (one KV head, two query rows): the
# tensor-core kernel's block needs exactly 48 KiB of dynamic shared memory.
case("shape-f16-mla-decode", "attention a { mask = causal_bottom_right(); }",
     dtype="float16", H=16, Hkv=1, Lq=2, Lkv=300, D=96, Dv=64,
     mask=lambda c, b, h, i, j: j <= i + (c.Lkv - c.Lq))
case("shape-f16-sigmoid", """
attention a { score = score - 1.0; normalize sigmoid; }""", dtype="float16",
     norm="sigmoid", score=lambda c, s, b, h, i, j: s - 1.0)
case("shape-f16-sink", """
attention a { param sinks: f32[H]; normalize softmax(sink = sinks[h]); }""",
     dtype="float16", H=4, params=dict(sinks=lambda c, rng: rng.standard_normal(
         c.H).astype(np.float32)), sink=lambda c, b, h: c.sinks[h])
case("shape-empty-rows", "attention a { mask = q_idx >= 3; }",
     mask=lambda c, b, h, i, j: (i >= 3) & (j >= 0))
case("shape-all-masked", "attention a { mask = false; }",
     mask=lambda c, b, h, i, j: (i < 0) & (j < 0))
case("shape-long", "attention a { mask = causal(); }", B=2, H=8, Hkv=4,
     Lq=256, D=64, mask=causal)
case("shape-len-1", "attention a {}", Lq=1)

# -- params ----------------------------------------------------------------
SLIDING = """
attention a {
  param window: i32 = 8;
  mask = sliding_window(window);
}"""
case("param-i32-default", SLIDING, env=dict(window=8),
     mask=lambda c, b, h, i, j: (j <= i) & (i - j < c.window))
case("param-i32-override", SLIDING, params=dict(window=3),
     mask=lambda c, b, h, i, j: (j <= i) & (i - j < c.window))
case("param-i32-negative", """
attention a { param off: i32; mask = kv_idx <= q_idx + off; }""",
     params=dict(off=-5), mask=lambda c, b, h, i, j: j <= i + c.off)
case("param-f32-scalar", """
attention a { param temp: f32; score = score / temp; }""",
     params=dict(temp=0.7), score=lambda c, s, b, h, i, j: s / c.temp)
case("param-f32-default", """
attention a { param temp: f32 = 2.5; score = score / temp; }""",
     env=dict(temp=2.5), score=lambda c, s, b, h, i, j: s / c.temp)
case("param-f32-exponent-literal", """
attention a { param temp: f32 = 2.5; score = score / temp; }""",
     raw_params=["temp=5e-1"], env=dict(temp=0.5),
     score=lambda c, s, b, h, i, j: s / c.temp)
CAUSAL_SWITCH = """
attention a { param on: bool%s; mask = !on || causal(); }"""
case("param-bool-true", CAUSAL_SWITCH % "", params=dict(on=True),
     mask=lambda c, b, h, i, j: ~np.bool_(c.on) | (j <= i))
case("param-bool-false", CAUSAL_SWITCH % "", params=dict(on=False),
     mask=lambda c, b, h, i, j: ~np.bool_(c.on) | (j <= i))
case("param-bool-default", CAUSAL_SWITCH % " = true", env=dict(on=True),
     mask=lambda c, b, h, i, j: ~np.bool_(c.on) | (j <= i))


def documents(c, rng, batch=False):
    """Sorted document ids: packed sequences of random lengths."""
    n = (c.B, c.Lkv) if batch else (c.Lkv,)
    return np.sort(rng.integers(0, 5, size=n), axis=-1).astype(np.int32)


case("param-i32-tensor-doc", """
attention a { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx]; }""",
     params=dict(doc=documents),
     mask=lambda c, b, h, i, j: c.doc[i] == c.doc[j])
case("param-i32-tensor-doc-batch", """
attention a {
  param doc: i32[B, Lkv];
  mask = doc[b, q_idx] == doc[b, kv_idx] && causal();
}""", B=3, params=dict(doc=lambda c, rng: documents(c, rng, batch=True)),
     mask=lambda c, b, h, i, j: (c.doc[b, i] == c.doc[b, j]) & (j <= i))

# Many kv-tiles with a ragged end: the per-kv-tile summaries cover several
# rounds of the GPU kernel's summary pass and a partial last tile.
case("param-i32-tensor-doc-long", """
attention a { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx]; }""",
     Lq=1100, H=1, D=32, params=dict(doc=lambda c, rng: np.sort(
         rng.integers(0, 9, size=(c.Lkv,))).astype(np.int32)),
     mask=lambda c, b, h, i, j: c.doc[i] == c.doc[j])


def doc_runs(c, rng):
    """Document ids in runs of 50 to 300 keys, ids 0 to 6 recurring along
    the row: a q-tile's live kv-tiles are scattered over all of it."""
    doc = []
    while len(doc) < c.Lkv:
        doc += [int(rng.integers(0, 7))] * int(rng.integers(50, 300))
    return np.array(doc[:c.Lkv], dtype=np.int32)


# More than 32 kv-tiles of 128 keys (more than one word of the GPU kernel's
# live-tile bitmap), with live tiles scattered and gaps between them.
case("param-i32-tensor-doc-wide", """
attention a { param doc: i32[Lkv]; mask = doc[q_idx] == doc[kv_idx]; }""",
     Lq=300, Lkv=4700, H=1, D=32, params=dict(doc=doc_runs),
     mask=lambda c, b, h, i, j: c.doc[i] == c.doc[j])


# Document masks that also read h, b, or both: the GPU's mark kernel then
# works out one item per (h, q-tile) or (b, q-tile) instead of one per
# q-tile for every head; with both, the blocks mark their own tiles.
case("param-i32-tensor-doc-heads", """
attention a {
  param doc: i32[Lkv];
  param reach: i32[H];
  mask = doc[q_idx] == doc[kv_idx] && q_idx - kv_idx < reach[h];
}""", H=4, Lq=400, Lkv=500, params=dict(
    doc=doc_runs,
    reach=lambda c, rng: rng.integers(20, 300, size=(c.H,)).astype(np.int32)),
     mask=lambda c, b, h, i, j: (c.doc[i] == c.doc[j]) & (i - j < c.reach[h]))
case("param-i32-tensor-doc-batch-heads", """
attention a {
  param doc: i32[Lkv];
  mask = doc[q_idx] == doc[kv_idx] && kv_idx >= 37 * (b + h);
}""", B=2, H=3, Lq=300, Lkv=500, params=dict(doc=doc_runs),
     mask=lambda c, b, h, i, j: (c.doc[i] == c.doc[j]) & (j >= 37 * (b + h)))
case("param-i32-tensor-doc-per-batch", """
attention a {
  param doc: i32[Lkv];
  mask = doc[q_idx] == doc[kv_idx] && kv_idx >= 53 * b;
}""", B=3, H=2, Lq=300, Lkv=500, params=dict(doc=doc_runs),
     mask=lambda c, b, h, i, j: (c.doc[i] == c.doc[j]) & (j >= 53 * b))


# A tensor read whose box is not the kv-tile itself (kv_idx / 2): the GPU
# kernel's per-thread tile classification must read it per thread.
case("param-i32-tensor-doc-half", """
attention a {
  param doc: i32[Lkv];
  mask = doc[q_idx / 2] == doc[kv_idx / 2];
}""",
     Lq=600, Lkv=2400, H=1, D=32, params=dict(doc=doc_runs),
     mask=lambda c, b, h, i, j: c.doc[i // 2] == c.doc[j // 2])


def key_runs(c, rng):
    """A bool per key in runs of 1 to 200: whole tiles false, true, mixed."""
    keep, v = [], bool(rng.integers(0, 2))
    while len(keep) < c.Lkv:
        keep += [v] * int(rng.integers(1, 200))
        v = not v
    return np.array(keep[:c.Lkv], dtype=bool)


case("param-bool-tensor-keys-long", """
attention a { param keep: bool[Lkv]; mask = keep[kv_idx] && causal(); }""",
     Lq=900, H=1, D=32, params=dict(keep=key_runs),
     mask=lambda c, b, h, i, j: c.keep[j] & (j <= i))


def blocks(c, rng):
    n = -(-c.Lq // 16)
    m = rng.random((n, -(-c.Lkv // 16))) < 0.4
    m[0, :] = False  # rows 0..15 fully masked
    return m


case("param-bool-tensor-blocks", """
attention a {
  param blocks: bool[?, ?];
  mask = blocks[q_idx / 16, kv_idx / 16];
}""", Lq=80, Lkv=64, params=dict(blocks=blocks),
     mask=lambda c, b, h, i, j: c.blocks[i // 16, j // 16])
case("param-f32-tensor-bias", """
attention a {
  param bias: f32[H, Lq, Lkv];
  score = score + bias[h, q_idx, kv_idx];
}""", H=4, Lq=32, Lkv=48,
     params=dict(bias=lambda c, rng: rng.standard_normal(
         (c.H, c.Lq, c.Lkv)).astype(np.float32)),
     score=lambda c, s, b, h, i, j: s + c.bias[h, i, j])
case("param-f32-tensor-literal-dims", """
attention a {
  param w: f32[2, 4];
  score = score * w[0, h] + w[1, h];
}""", H=4, params=dict(w=lambda c, rng: rng.random((2, 4)).astype(np.float32)),
     score=lambda c, s, b, h, i, j: s * c.w[0, h] + c.w[1, h])
# A float param that only the mask reads: a zero gradient, and attnc grad
# says why.
case("param-f32-mask-only", """
attention a { param thr: f32 = 20.0; mask = f32(kv_idx) < thr; }""",
     params=dict(thr=37.5), mask=lambda c, b, h, i, j: j < c.thr,
     grad_output=r"warning: the gradient of param 'thr' of variant 'a' is "
                 r"zero: only the mask reads it")
case("param-const-i32", """
attention a { const param w: i32 = 5; mask = sliding_window(w); }""",
     mask=lambda c, b, h, i, j: (j <= i) & (i - j < 5))
case("param-const-f32", """
attention a { const param k: f32 = -0.5; score = score * 2.0 + k; }""",
     score=lambda c, s, b, h, i, j: s * 2.0 - 0.5)
case("param-const-bool", """
attention a {
  const param use_causal: bool = false;
  mask = use_causal ? causal() : kv_idx < Lkv - 3;
}""", mask=lambda c, b, h, i, j: (j < c.Lkv - 3) & (i >= 0))
case("param-mixed", """
attention a {
  const param cap: f32 = 30.0;
  param window: i32 = 1000;
  param sinks: f32[H];
  param keep: bool[Lkv];
  param shift: f32;
  score = softcap(score + shift, cap);
  mask = keep[kv_idx] && sliding_window(window);
  normalize softmax(sink = sinks[h]);
}""", H=4, Lq=40, params=dict(
    window=12, shift=0.25,
    sinks=lambda c, rng: rng.standard_normal(c.H).astype(np.float32),
    keep=lambda c, rng: rng.random(c.Lkv) < 0.7),
     score=lambda c, s, b, h, i, j: 30.0 * np.tanh((s + c.shift) / 30.0),
     mask=lambda c, b, h, i, j: c.keep[j] & (j <= i) & (i - j < c.window),
     sink=lambda c, b, h: c.sinks[h])

# -- language semantics ----------------------------------------------------
case("lang-floor-mod-negative", """
attention a { mask = (q_idx - kv_idx) % 3 == 0; }""", Lq=30,
     mask=lambda c, b, h, i, j: (i - j) % 3 == 0)
case("lang-floor-div-negative", """
attention a { score = score + 0.25 * f32((kv_idx - q_idx) / 4); }""",
     Lq=30, score=lambda c, s, b, h, i, j: s + 0.25 * ((j - i) // 4))
case("lang-mod-negative-divisor", """
attention a { mask = (q_idx + kv_idx) % -4 == -1 || kv_idx == q_idx; }""",
     Lq=24, mask=lambda c, b, h, i, j: ((i + j) % -4 == -1) | (j == i))
# i32(x) truncates toward zero: i32(-1.25) == -1 (floor would give -2).
case("lang-trunc-cast", """
attention a { score = score + 0.5 * f32(i32(f32(kv_idx - q_idx) * 0.25)); }""",
     Lq=24, score=lambda c, s, b, h, i, j: s + 0.5 * np.trunc((j - i) * 0.25))
case("lang-i32-promotion", "attention a { score = score + q_idx / 8; }",
     Lq=24, score=lambda c, s, b, h, i, j: s + (i // 8))
case("lang-lets-defs", """
def band(lo, hi) = q_idx - kv_idx >= lo && q_idx - kv_idx <= hi;
def bump(x, k) = x + 0.5 * k;

attention banded {
  let d = q_idx - kv_idx;
  let near = abs(d) < 4;
  score = bump(score, select(near, 1.0, 0.0));
  mask = band(0, 20) || near;
}""", score=lambda c, s, b, h, i, j: s + 0.5 * (abs(i - j) < 4),
     mask=lambda c, b, h, i, j: ((i - j >= 0) & (i - j <= 20)) |
     (abs(i - j) < 4))
case("lang-builtins", """
attention a {
  // Continuous in score; floor/ceil only see exact index values. sqrt's
  // argument stays away from 0, where its derivative is unbounded (a
  // score of 1e-6 in float32 then gives gradients no float32 kernel
  // matches to 1e-4).
  score = min(max(score, -1.5), 2.0) + 0.2 * sigmoid(score)
        + 0.1 * log(1.0 + exp(score)) + 0.01 * pow(abs(score), 1.5)
        + 0.1 * sqrt(abs(score) + 0.25) + 0.1 * tanh(score)
        + 0.05 * floor(f32(kv_idx) / 3.0) - 0.05 * ceil(f32(q_idx) / 5.0)
        + select(score > 0.0, score, 0.5 * score);
}""", score=lambda c, s, b, h, i, j: (
    np.minimum(np.maximum(s, -1.5), 2.0) + 0.2 / (1 + np.exp(-s)) +
    0.1 * np.log(1 + np.exp(s)) + 0.01 * np.abs(s) ** 1.5 +
    0.1 * np.sqrt(np.abs(s) + 0.25) + 0.1 * np.tanh(s) + 0.05 * np.floor(j / 3.0) -
    0.05 * np.ceil(i / 5.0) + np.where(s > 0, s, 0.5 * s)))
# A guarded read (a lazy ?: whose taken side reads a tensor): the forward
# and the backward read t only where kv_idx < n.
case("lang-guarded-read", """
attention a {
  param n: i32 = 20;
  param t: f32[Lkv];
  score = kv_idx < n ? score + t[kv_idx] : score * 2.0;
}""", Lq=40, params=dict(n=20, t=lambda c, rng: rng.standard_normal(
    c.Lkv).astype(np.float32)),
     score=lambda c, s, b, h, i, j: np.where(
         j < c.n, s + c.t[np.minimum(j, c.n - 1)], 2.0 * s))
case("lang-ternary", """
attention a { mask = q_idx % 2 == 0 ? kv_idx <= q_idx : kv_idx >= q_idx; }""",
     Lq=20, mask=lambda c, b, h, i, j: np.where(i % 2 == 0, j <= i, j >= i))
case("lang-unary", """
attention a {
  mask = !(kv_idx > q_idx) && -q_idx <= -kv_idx;
  score = -score;
}""",
     mask=causal, score=lambda c, s, b, h, i, j: -s)
case("lang-indices", """
attention a {
  score = score + 0.3 * f32(hkv) - 0.2 * f32(b);
  mask = kv_idx < Lkv - 5 * b - h;
}""", B=2, H=4, Hkv=2, Lq=16, Lkv=24,
     score=lambda c, s, b, h, i, j: s + 0.3 * (h // c.group) - 0.2 * b,
     mask=lambda c, b, h, i, j: j < c.Lkv - 5 * b - h)
case("lang-sizes", """
attention a {
  score = score * f32(Dv) / f32(D);
  mask = kv_idx >= Lkv - Lq + q_idx - 10 && kv_idx < Lkv && B == 1 && Hkv == H;
}""", Lq=20, Lkv=40, D=16, Dv=8,
     score=lambda c, s, b, h, i, j: s * 0.5,
     mask=lambda c, b, h, i, j: j >= c.Lkv - c.Lq + i - 10, dims_fixed=True)
case("lang-comments", """
// A file of comments.
def causal2() = kv_idx <= q_idx; // trailing comment
attention a { // block
  // mask = false;
  mask = causal2(); // mask
}
// end""", mask=causal)
TWO_BLOCKS = """
attention first { mask = causal(); }
attention second {
  param shift: i32 = 2;
  score = score * 0.5;
  mask = kv_idx >= q_idx - shift;
}"""
case("lang-two-blocks-first", TWO_BLOCKS, variant="first", mask=causal)
case("lang-two-blocks-second", TWO_BLOCKS, variant="second",
     params=dict(shift=5), score=lambda c, s, b, h, i, j: 0.5 * s,
     mask=lambda c, b, h, i, j: j >= i - c.shift)

# -- errors ----------------------------------------------------------------
ALIBI = """
attention alibi {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
}"""
err("err-missing-param", "attention a { param w: i32; mask = kv_idx < w; }",
    r"\bw\b")
err("err-param-shape", ALIBI, r"slopes", H=4,
    params=dict(slopes=np.zeros(5, np.float32)))
err("err-param-rank", ALIBI, r"slopes", H=4,
    params=dict(slopes=np.zeros((4, 1), np.float32)))
err("err-param-dtype", ALIBI, r"slopes", H=4,
    params=dict(slopes=np.zeros(4, np.int32)))
err("err-param-bool-for-f32", ALIBI, r"slopes", H=4,
    params=dict(slopes=np.zeros(4, bool)))
err("err-scalar-for-tensor", ALIBI, r"slopes|1\.0", H=4,
    raw_params=["slopes=1.0"])
err("err-unknown-param", "attention a {}", r"nosuch",
    raw_params=["nosuch=1"])
err("err-bad-literal-i32", "attention a { param w: i32 = 4; }", r"abc",
    raw_params=["w=abc"])
err("err-float-literal-for-i32", "attention a { param w: i32 = 4; }",
    r"1\.5|\bw\b", raw_params=["w=1.5"])
# Not a finite f32: inf, nan and values beyond f32's range alike.
for _n, _v in (("overflow", "1e39"), ("neg-overflow", "-3.5e38"),
               ("inf", "inf"), ("nan", "nan")):
    err("err-f32-param-" + _n, "attention a { param t: f32 = 1.0; "
        "score = score * t; }", r"--param t=.*finite f32",
        raw_params=["t=" + _v])
err("err-bad-literal-bool", "attention a { param on: bool = true; }",
    r"yes|\bon\b", raw_params=["on=yes"])
err("err-qkv-dtype", "attention a {}", r"float16|float32|dtype",
    dtypes=dict(q="float16"))
err("err-float64-input", "attention a {}", r"float64|<f8|dtype",
    dtypes=dict(k="float64"))
err("err-int32-input", "attention a {}", r"int32|<i4|dtype",
    dtypes=dict(v="int32"))
err("err-gqa-divisibility", "attention a {}", r"head|\bHkv\b|divisib",
    H=6, Hkv=4)
err("err-d-mismatch", "attention a {}", r"\bD\b|dim|shape",
    shapes=dict(k=(1, 2, 64, 16)))
err("err-kv-length-mismatch", "attention a {}", r"Lkv|length|shape",
    shapes=dict(v=(1, 2, 60, 32)))
err("err-batch-mismatch", "attention a {}", r"\bB\b|batch|shape",
    shapes=dict(k=(2, 2, 64, 32), v=(2, 2, 64, 32)))
err("err-q-rank", "attention a {}", r"rank|dimension|shape",
    shapes=dict(q=(2, 64, 32)))
err("err-unknown-variant", TWO_BLOCKS, r"nope", variant="nope")
err("err-no-variant", TWO_BLOCKS, r"variant")
err("err-lse-sigmoid", "attention a { normalize sigmoid; }",
    r"sigmoid|lse", norm="sigmoid", lse=True)
err("err-lse-linear", "attention a { normalize linear; score = exp(score); }",
    r"linear|lse", norm="linear", lse=True)
err("err-fortran-input", "attention a {}", r"Fortran",
    corrupt=dict(q="fortran"))
err("err-truncated-input", "attention a {}", r"truncated",
    corrupt=dict(v="truncate"))
err("err-missing-input", "attention a {}", r"cannot open|No such file",
    corrupt=dict(k="missing"))
err("err-index-out-of-range", """
attention a { param t: f32[4]; score = score + t[kv_idx]; }""",
    r"out of (range|bounds)|outside|index|bounds", Lq=16,
    params=dict(t=np.zeros(4, np.float32)))
err("err-index-negative", """
attention a { param t: f32[Lkv]; score = score + t[kv_idx - 1]; }""",
    r"out of (range|bounds)|outside|index|bounds", Lq=16,
    params=dict(t=lambda c, rng: np.zeros(c.Lkv, np.float32)))
err("err-division-by-zero", """
attention a { param d: i32 = 0; mask = q_idx / d == 0; }""",
    r"divi|zero", Lq=16)
err("err-modulo-by-zero", """
attention a { param d: i32 = 3; mask = q_idx % d == 0; }""",
    r"divi|zero|modulo", Lq=16, params=dict(d=0))
err("err-syntax", "attention a { mask = q_idx <= ; }",
    r"err-syntax\.attn:1:\d+: error: ")
err("err-output-unwritable", "attention a {}",
    r"cannot|No such file|unable|failed",
    out_path="no/such/dir/out.npy")


# -- backward: bad inputs --------------------------------------------------
def gerr(name, src, pattern, **kw):
    case(name, src, grad_error=pattern, **kw)


gerr("gerr-do-shape", "attention a {}", r"\bdO\b.*shape|shape.*\bdO\b",
     grad_do_shape=(1, 2, 64, 16))
gerr("gerr-do-rank", "attention a {}", r"\bdO\b|rank",
     grad_do_shape=(2, 64, 32))
gerr("gerr-missing-stats", "attention a { mask = causal(); }",
     r"LSE|row statistic|--lse|--stats", grad_args=["--o", "{O}"])
gerr("gerr-missing-stats-linear",
     "attention a { score = exp(score); normalize linear; }",
     r"row sum|--stats|row statistic", grad_args=["--o", "{O}"])
gerr("gerr-lse-for-sigmoid", "attention a { normalize sigmoid; }",
     r"sigmoid", grad_args=["--o", "{O}", "--lse", "{LSE}"])
gerr("gerr-int-param", SLIDING, r"window.*(i32|f32)|only f32",
     grad_dparams=["window"])
gerr("gerr-bool-param", CAUSAL_SWITCH % "", r"\bon\b.*(bool|f32)|only f32",
     params=dict(on=True), grad_dparams=["on"])
gerr("gerr-const-param", """
attention a { const param k: f32 = -0.5; score = score * 2.0 + k; }""",
     r"\bk\b.*const|const.*gradient", grad_dparams=["k"])
gerr("gerr-unknown-param", "attention a {}", r"nosuch",
     grad_dparams=["nosuch"])
# Run-time errors of the backward kernels themselves (the forward's output
# is given, so only the backward reads the params).
gerr("gerr-index-out-of-range", """
attention a { param t: f32[4]; score = score + t[kv_idx]; }""",
     r"read param 't' out of range", Lq=16,
     params=dict(t=np.zeros(4, np.float32)),
     grad_args=["--o", "{O}", "--lse", "{LSE}"])
gerr("gerr-division-by-zero", """
attention a { param d: i32 = 0; score = score + f32(q_idx / d); }""",
     r"divided an integer by zero", Lq=16,
     grad_args=["--o", "{O}", "--lse", "{LSE}"])


# -- driver ----------------------------------------------------------------

def context(cs, arrays):
    c = types.SimpleNamespace(**cs.sizes)
    c.group = max(cs.sizes["H"] // max(cs.sizes["Hkv"], 1), 1)
    for k, v in cs.env.items():
        setattr(c, k, v)
    for k, v in arrays.items():
        setattr(c, k, v)
    return c


def literal(v):
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return repr(v)


def build_inputs(cs, rng, tmp):
    """Writes Q, K, V and tensor params; returns (qkv, paths, params, ctx)."""
    s = cs.sizes
    shapes = dict(q=(s["B"], s["H"], s["Lq"], s["D"]),
                  k=(s["B"], s["Hkv"], s["Lkv"], s["D"]),
                  v=(s["B"], s["Hkv"], s["Lkv"], s["Dv"]))
    shapes.update(cs.shapes)
    qkv, paths = {}, {}
    for t in "qkv":
        dt = cs.dtypes.get(t, cs.dtype)
        x = rng.standard_normal(shapes[t])
        x = (x * 3).astype(dt) if dt == "int32" else x.astype(dt)
        qkv[t] = x
        paths[t] = os.path.join(tmp, t.upper() + ".npy")
        how = cs.corrupt.get(t)
        if how == "missing":
            continue
        np.save(paths[t], np.asfortranarray(x) if how == "fortran" else x)
        if how == "truncate":
            with open(paths[t], "r+b") as f:
                f.truncate(os.path.getsize(paths[t]) - 10)
    c = context(cs, {})
    args, values = [], {}
    for name, v in cs.params.items():
        if callable(v):
            v = v(c, rng)
        if isinstance(v, np.ndarray):
            p = os.path.join(tmp, "param_%s.npy" % name)
            np.save(p, v)
            args += ["--param", "%s=%s" % (name, p)]
        else:
            args += ["--param", "%s=%s" % (name, literal(v))]
        values[name] = v
    for raw in cs.raw_params:
        args += ["--param", raw]
    return qkv, paths, args, context(cs, values)


def reference(cs, qkv, c):
    bind = lambda f: f and (lambda *a: f(c, *a))  # noqa: E731
    return attn_ref.attention(qkv["q"], qkv["k"], qkv["v"],
                              score_fn=bind(cs.score), mask_fn=bind(cs.mask),
                              scale=cs.scale, norm=cs.norm,
                              sink_fn=bind(cs.sink))


def empty_rows(cs, c):
    s = cs.sizes
    b, h, i, j = attn_ref.index_grids(s["B"], s["H"], s["Lq"], s["Lkv"])
    if cs.mask is None:
        return np.zeros((s["B"], s["H"], s["Lq"]), bool)
    m = np.broadcast_to(cs.mask(c, b, h, i, j), (s["B"], s["H"], s["Lq"],
                                                  s["Lkv"]))
    return ~m.any(axis=-1)


def poison(path, shape, dtype):
    np.save(path, np.full(shape, np.nan, dtype=dtype))


def compare(cs, qkv, c, out_path, lse_path, target=None):
    """Returns (problems, summary) for a successful run."""
    s = cs.sizes
    o_ref, lse_ref = reference(cs, qkv, c)
    problems = []
    try:
        o = np.load(out_path)
        lse = np.load(lse_path) if lse_path else None
    except (OSError, ValueError) as e:
        return ["cannot load the output: %s" % e], ""
    o_shape = (s["B"], s["H"], s["Lq"], s["Dv"])
    if o.dtype != np.dtype(cs.dtype) or o.shape != o_shape:
        return ["O is %s%s, expected %s%s" % (o.dtype, o.shape, cs.dtype,
                                              o_shape)], ""
    o = o.astype(np.float64)
    if np.all(np.isnan(o)) and o.size:
        return ["O is all NaN: the tool did not write it (or wrote NaN)"], ""
    if not np.all(np.isfinite(o)):
        return ["O has %d NaN/inf values of %d" % (np.sum(~np.isfinite(o)),
                                                   o.size)], ""
    ref_norm = np.linalg.norm(o_ref)
    relerr = np.linalg.norm(o - o_ref) / (ref_norm if ref_norm else 1.0)
    gpu = target == "nvptx"
    tol = F16_TOL if cs.dtype == "float16" else (GPU_F32_TOL if gpu else
                                                 F32_TOL)
    lse_tol = GPU_LSE_TOL if gpu else LSE_TOL
    if not relerr <= tol:
        worst = np.unravel_index(np.argmax(np.abs(o - o_ref)), o.shape)
        problems.append("relerr %.3g > %.0e (worst at %s: %r vs %r)" %
                        (relerr, tol, tuple(int(x) for x in worst), o[worst],
                         o_ref[worst]))
    empty = empty_rows(cs, c)
    if np.any(o[empty] != 0):
        problems.append("%d fully masked rows are not exactly 0" %
                        np.sum(np.any(o[empty] != 0, axis=-1)))
    summary = "relerr=%.2e" % relerr
    if lse is not None:
        l_shape = (s["B"], s["H"], s["Lq"])
        if lse.dtype != np.float32 or lse.shape != l_shape:
            problems.append("LSE is %s%s, expected float32%s" %
                            (lse.dtype, lse.shape, l_shape))
        else:
            lse = lse.astype(np.float64)
            neg = np.isneginf(lse_ref)
            if not np.array_equal(np.isneginf(lse), neg):
                problems.append("LSE is -inf at %d rows, reference at %d" %
                                (np.sum(np.isneginf(lse)), np.sum(neg)))
            fin = ~neg
            if np.any(np.isnan(lse)):
                problems.append("LSE has %d NaN" % np.sum(np.isnan(lse)))
            lerr = float(np.max(np.abs(lse[fin] - lse_ref[fin]), initial=0.0))
            if not lerr <= lse_tol:
                problems.append("LSE error %.3g > %.0e" % (lerr, lse_tol))
            summary += " lseerr=%.2e" % lerr
            if neg.any():
                summary += " empty_rows=%d" % np.sum(neg)
    return problems, summary


ERROR_LINE = re.compile(r"^(\S+:\d+:\d+: )?error: ", re.M)
CRASH = re.compile(r"Stack dump|PLEASE submit|Traceback|Assertion|"
                   r"AddressSanitizer|Segmentation fault|terminate called")


def run_one(cs, opts, seed):
    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix="attnc-e2e-%s-" % cs.name)
    keep = opts.keep
    try:
        src = os.path.join(tmp, cs.name + ".attn")
        with open(src, "w") as f:
            f.write(cs.src)
        qkv, paths, pargs, c = build_inputs(cs, rng, tmp)
        out = os.path.join(tmp, cs.out_path or "O.npy")
        lse = os.path.join(tmp, "LSE.npy") if cs.lse else None
        s = cs.sizes
        if not cs.error:
            poison(out, (s["B"], s["H"], s["Lq"], s["Dv"]), cs.dtype)
            if lse:
                poison(lse, (s["B"], s["H"], s["Lq"]), np.float32)
        cmd = [opts.attnc, "run", src]
        if cs.variant:
            cmd += ["--variant", cs.variant]
        cmd += ["--q", paths["q"], "--k", paths["k"], "--v", paths["v"]]
        cmd += pargs
        if opts.target:
            cmd += ["--target", opts.target]
        if opts.reference:
            cmd += ["--reference"]
        if opts.threads:
            cmd += ["--threads", str(opts.threads)]
        for flag in ("gpu_kernel", "gpu_persistent", "gpu_mark_kernel"):
            if getattr(opts, flag):
                cmd += ["--" + flag.replace("_", "-"), getattr(opts, flag)]
        cmd += ["-o", out] + (["--lse", lse] if lse else [])
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               errors="replace", timeout=opts.timeout)
            rc, text = p.returncode, p.stdout
        except subprocess.TimeoutExpired:
            rc, text = None, "timed out after %ds" % opts.timeout
        except OSError as e:
            rc, text = None, "cannot run %s: %s" % (opts.attnc, e.strerror)

        if cs.error:
            problems = []
            if rc is None or rc <= 0 or rc >= 128:
                problems.append("expected a clean failure, exit status %s" %
                                rc)
            if CRASH.search(text):
                problems.append("output looks like a crash")
            if not ERROR_LINE.search(text):
                problems.append("no line beginning with 'error:'")
            if not re.search(cs.error, text, re.I | re.M):
                problems.append("no match for /%s/" % cs.error)
            first = ERROR_LINE.search(text)
            summary = "rc=%s %s" % (rc, text[first.start():].splitlines()[0]
                                    if first else "")
        elif rc != 0:
            problems, summary = ["exit status %s" % rc], ""
        else:
            problems, summary = compare(cs, qkv, c, out, lse, opts.target)
        ok = not problems
        print("%s %s %s seed=%d" % ("PASS" if ok else "FAIL", cs.name,
                                    summary.strip(), seed))
        if not ok:
            keep = keep or opts.keep_failed
            for prob in problems:
                print("  " + prob)
            print("  command: " + " ".join(cmd))
            for line in text.splitlines()[-20:]:
                print("  | " + line)
        sys.stdout.flush()
        return ok
    finally:
        if keep:
            print("  files kept in " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def f32_param_names(cs, values):
    """The case's f32 params: float scalars and float32 arrays, given or
    defaulted."""
    names = []
    for name, v in list(cs.env.items()) + list(values.items()):
        is_f32 = (isinstance(v, (float, np.floating)) or
                  (isinstance(v, np.ndarray) and v.dtype == np.float32))
        if is_f32 and name not in names:
            names.append(name)
    return names


def grad_reference(cs, qkv, do, c, names, magnitudes=False):
    """The float64 gradients: dq, dk, dv and d_NAME for each f32 param
    (with `magnitudes`, d_NAME is the sum of its contributions'
    magnitudes)."""
    leaves = {n: attn_grad_ref.Var(np.asarray(getattr(c, n), np.float64))
              for n in names}
    cv = types.SimpleNamespace(**vars(c))
    for n, leaf in leaves.items():
        setattr(cv, n, leaf)
    bind = lambda f: f and (lambda *a: f(cv, *a))  # noqa: E731
    out = attn_grad_ref.attention_backward(
        qkv["q"], qkv["k"], qkv["v"], do, score_fn=bind(cs.score),
        mask_fn=bind(cs.mask), scale=cs.scale, norm=cs.norm,
        sink_fn=bind(cs.sink), magnitudes=magnitudes)
    for n, leaf in leaves.items():
        out["d_" + n] = leaf.grad if leaf.grad is not None else \
            np.zeros(leaf.shape)
    return out


def forward_loss(cs, qkv, do, c, overrides):
    """sum(O * dO) of the float64 forward with some inputs replaced."""
    cv = types.SimpleNamespace(**vars(c))
    x = dict(qkv)
    for key, val in overrides.items():
        if key in x:
            x[key] = val
        else:
            setattr(cv, key, val)
    bind = lambda f: f and (lambda *a: f(cv, *a))  # noqa: E731
    o, _ = attn_ref.attention(x["q"], x["k"], x["v"], score_fn=bind(cs.score),
                              mask_fn=bind(cs.mask), scale=cs.scale,
                              norm=cs.norm, sink_fn=bind(cs.sink))
    return float(np.sum(o * do))


def finite_differences(cs, qkv, do, c, got, rng, per_tensor=4):
    """Central differences of the float64 forward at a few entries of every
    gradient; returns a list of problems."""
    problems = []
    base = {t: qkv[t].astype(np.float64) for t in "qkv"}
    for key, grad in got.items():
        name = key[1:] if key in ("dq", "dk", "dv") else key[2:]
        x0 = base[name] if name in base else \
            np.asarray(getattr(c, name), np.float64)
        scale = np.linalg.norm(grad) / np.sqrt(max(grad.size, 1))
        for _ in range(per_tensor):
            idx = tuple(int(rng.integers(0, n)) for n in x0.shape)
            step = 1e-5 * max(1.0, abs(float(x0[idx])))
            xs = []
            for sign in (1, -1):
                x = x0.copy()
                x[idx] += sign * step
                xs.append(x)
            fd = (forward_loss(cs, base, do, c, {name: xs[0]}) -
                  forward_loss(cs, base, do, c, {name: xs[1]})) / (2 * step)
            g = float(np.asarray(grad)[idx])
            if not abs(g - fd) <= 1e-3 * (abs(fd) + scale) + 1e-7:
                problems.append("finite differences: %s%s = %.6g, attnc %.6g"
                                % (key, list(idx), fd, g))
    return problems


def compare_grads(cs, got, ref, c):
    problems, worst = [], 0.0
    tol = GRAD_F16_TOL if cs.dtype == "float16" else GRAD_F32_TOL
    for key, r in ref.items():
        if key.startswith("m_"):
            continue
        x = got.get(key)
        if x is None:
            problems.append("%s was not written" % key)
            continue
        want_dtype = np.float32 if key.startswith("d_") else np.dtype(cs.dtype)
        r = np.asarray(r)
        if x.dtype != want_dtype or x.shape != r.shape:
            problems.append("%s is %s%s, expected %s%s" % (
                key, x.dtype, x.shape, np.dtype(want_dtype), r.shape))
            continue
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            problems.append("%s has %d NaN/inf of %d" % (
                key, np.sum(~np.isfinite(x)), x.size))
            continue
        rn = np.linalg.norm(r)
        err = np.linalg.norm(x - r)
        if "m_" + key[2:] in ref and key.startswith("d_"):
            # A param's gradient: relative to the magnitudes of its terms.
            rn = max(rn, np.linalg.norm(ref["m_" + key[2:]]))
        # A gradient that is 0 in exact arithmetic (a row with one key: its
        # softmax weight is 1 whatever the score) is rounding on both sides.
        if rn <= 1e-9 * np.sqrt(r.size):
            if not np.max(np.abs(x), initial=0.0) <= 1e-5:
                problems.append("%s should be 0, max |x| = %.3g" % (
                    key, np.max(np.abs(x))))
            continue
        rel = err / rn
        worst = max(worst, rel)
        if not rel <= tol:
            at = np.unravel_index(np.argmax(np.abs(x - r)), r.shape)
            problems.append("%s relerr %.3g > %.0e (worst at %s: %r vs %r)" % (
                key, rel, tol, tuple(int(a) for a in at), x[at], r[at]))
    empty = empty_rows(cs, c)
    if "dq" in got and got["dq"].shape == ref["dq"].shape and \
            np.any(got["dq"][empty] != 0):
        problems.append("dQ is not exactly 0 on %d fully masked rows" %
                        np.sum(np.any(got["dq"][empty] != 0, axis=-1)))
    return problems, "grad relerr<=%.2e params=%d" % (
        worst, sum(k.startswith("d_") for k in ref))


def rerun_identical(cmd, out, opts):
    """Runs `cmd` again with every output elsewhere; the outputs must be
    the same bits (param gradients are summed in a fixed order)."""
    again = list(cmd)
    for path in out.values():
        i = again.index(path) if path in again else None
        if i is None:  # --dparam NAME=PATH
            i = next(k for k, a in enumerate(again) if a.endswith("=" + path))
            again[i] = again[i][:-len(path)] + path + ".again.npy"
        else:
            again[i] = path + ".again.npy"
    p = subprocess.run(again, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace", timeout=opts.timeout)
    if p.returncode != 0:
        return ["the second run failed: exit status %s" % p.returncode]
    problems = []
    for key, path in out.items():
        a, b = np.load(path), np.load(path + ".again.npy")
        if a.tobytes() != b.tobytes():
            problems.append("%s differs between two identical runs" % key)
    return problems


def run_grad_one(cs, opts, seed):
    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix="attnc-grad-%s-" % cs.name)
    keep = opts.keep
    try:
        src = os.path.join(tmp, cs.name + ".attn")
        with open(src, "w") as f:
            f.write(cs.src)
        qkv, paths, pargs, c = build_inputs(cs, rng, tmp)
        s = cs.sizes
        o_shape = (s["B"], s["H"], s["Lq"], s["Dv"])
        do = rng.standard_normal(cs.grad_do_shape or o_shape).astype(cs.dtype)
        do_path = os.path.join(tmp, "DO.npy")
        np.save(do_path, do)
        values = {n: getattr(c, n) for n in cs.params}
        names = cs.grad_dparams if cs.grad_dparams is not None else \
            f32_param_names(cs, values)
        out = {k: os.path.join(tmp, k.upper() + ".npy")
               for k in ("dq", "dk", "dv")}
        for name in names:
            out["d_" + name] = os.path.join(tmp, "grad_%s.npy" % name)
        if not cs.grad_error:
            shapes = dict(dq=qkv["q"].shape, dk=qkv["k"].shape,
                          dv=qkv["v"].shape)
            for key, path in out.items():
                if key in shapes:
                    poison(path, shapes[key], cs.dtype)
                else:
                    poison(path, np.shape(getattr(c, key[2:])), np.float32)
        extra = [a.replace("{O}", os.path.join(tmp, "O_in.npy"))
                  .replace("{LSE}", os.path.join(tmp, "LSE_in.npy"))
                 for a in cs.grad_args]
        if "{O}" in " ".join(cs.grad_args):
            np.save(os.path.join(tmp, "O_in.npy"),
                    np.zeros(o_shape, cs.dtype))
            np.save(os.path.join(tmp, "LSE_in.npy"),
                    np.zeros(o_shape[:3], np.float32))
        if opts.saved_forward and not cs.grad_error:
            # The forward as its own run: attnc run -o O --stats S, then
            # attnc grad --o O --stats S (or --lse for softmax).
            fwd = [opts.attnc, "run", src]
            if cs.variant:
                fwd += ["--variant", cs.variant]
            o_path = os.path.join(tmp, "O_saved.npy")
            s_path = os.path.join(tmp, "S_saved.npy")
            fwd += ["--q", paths["q"], "--k", paths["k"], "--v", paths["v"]]
            fwd += pargs + ["-o", o_path]
            if cs.norm in ("softmax", "linear"):
                fwd += ["--lse" if cs.norm == "softmax" else "--stats",
                        s_path]
            if opts.reference:
                fwd += ["--reference"]
            p = subprocess.run(fwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               errors="replace", timeout=opts.timeout)
            if p.returncode != 0:
                print("FAIL %s the forward run failed: %s" % (
                    cs.name, p.stdout.strip()[-300:]))
                return False
            extra = ["--o", o_path]
            if cs.norm in ("softmax", "linear"):
                extra += ["--lse" if cs.norm == "softmax" else "--stats",
                          s_path]
        cmd = [opts.attnc, "grad", src]
        if cs.variant:
            cmd += ["--variant", cs.variant]
        cmd += ["--q", paths["q"], "--k", paths["k"], "--v", paths["v"],
                "--do", do_path] + pargs + extra
        cmd += ["--dq", out["dq"], "--dk", out["dk"], "--dv", out["dv"]]
        for name in names:
            cmd += ["--dparam", "%s=%s" % (name, out["d_" + name])]
        if opts.reference:
            cmd += ["--reference"]
        if opts.threads:
            cmd += ["--threads", str(opts.threads)]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               errors="replace", timeout=opts.timeout)
            rc, text = p.returncode, p.stdout
        except subprocess.TimeoutExpired:
            rc, text = None, "timed out after %ds" % opts.timeout
        except OSError as e:
            rc, text = None, "cannot run %s: %s" % (opts.attnc, e.strerror)

        if cs.grad_error:
            problems = []
            if rc is None or rc <= 0 or rc >= 128:
                problems.append("expected a clean failure, exit status %s" %
                                rc)
            if CRASH.search(text):
                problems.append("output looks like a crash")
            if not ERROR_LINE.search(text):
                problems.append("no line beginning with 'error:'")
            if not re.search(cs.grad_error, text, re.I | re.M):
                problems.append("no match for /%s/" % cs.grad_error)
            first = ERROR_LINE.search(text)
            summary = "rc=%s %s" % (rc, text[first.start():].splitlines()[0]
                                    if first else "")
        elif rc != 0:
            problems, summary = ["exit status %s" % rc], ""
        else:
            ref = grad_reference(cs, qkv, do.astype(np.float64), c, names)
            if names:
                mags = grad_reference(cs, qkv, do.astype(np.float64), c,
                                      names, magnitudes=True)
                for n in names:
                    ref["m_" + n] = mags["d_" + n]
            got, problems = {}, []
            for key, path in out.items():
                try:
                    got[key] = np.load(path)
                except (OSError, ValueError) as e:
                    problems.append("cannot load %s: %s" % (key, e))
            more, summary = compare_grads(cs, got, ref, c)
            problems += more
            if cs.grad_output and not re.search(cs.grad_output, text):
                problems.append("no output matching /%s/" % cs.grad_output)
            if opts.determinism and not problems:
                problems += rerun_identical(cmd, out, opts)
                summary += " identical-rerun" if not problems else ""
            if opts.fd and not problems:
                problems += finite_differences(
                    cs, qkv, do.astype(np.float64), c,
                    {k: v.astype(np.float64) for k, v in got.items()}, rng)
                summary += " fd=ok" if not problems else ""
        ok = not problems
        print("%s %s %s seed=%d" % ("PASS" if ok else "FAIL", cs.name,
                                    summary.strip(), seed))
        if not ok:
            keep = keep or opts.keep_failed
            for prob in problems:
                print("  " + prob)
            print("  command: " + " ".join(cmd))
            for line in text.splitlines()[-20:]:
                print("  | " + line)
        sys.stdout.flush()
        return ok
    finally:
        if keep:
            print("  files kept in " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def check_case(cs, seed):
    """--ref-only: the case's inputs and reference are well formed."""
    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix="attnc-ref-")
    try:
        qkv, _, _, c = build_inputs(cs, rng, tmp)
        if cs.error:
            print("PASS %s (error case)" % cs.name)
            return True
        o, lse = reference(cs, qkv, c)
        empty = empty_rows(cs, c)
        ok = np.all(np.isfinite(o)) and np.all(o[empty] == 0) and (
            lse is None or np.array_equal(np.isneginf(lse), empty))
        print("%s %s ref-norm=%.3g empty_rows=%d" % (
            "PASS" if ok else "FAIL", cs.name, np.linalg.norm(o),
            np.sum(empty)))
        return bool(ok)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ptxas_one(cs, opts):
    """Emits the PTX of a case for each --gpu-arch and assembles it with
    ptxas; returns a list of problems (empty when all assembled)."""
    tmp = tempfile.mkdtemp(prefix="attnc-ptx-%s-" % cs.name)
    try:
        src = os.path.join(tmp, cs.name + ".attn")
        with open(src, "w") as f:
            f.write(cs.src)
        s = cs.sizes
        dt = {"float32": "f32", "float16": "f16"}[cs.dtype]
        problems = []
        for arch in opts.gpu_arch.split(","):
            ptx = os.path.join(tmp, arch + ".ptx")
            cmd = [opts.attnc, src, "--emit=ptx", "--dtype", dt,
                   "--head-dim", str(s["D"]), "--value-dim", str(s["Dv"]),
                   "--gpu-arch", arch, "-o", ptx]
            if cs.variant:
                cmd += ["--variant", cs.variant]
            for step in (cmd, [opts.ptxas, "-arch=" + arch, ptx, "-o",
                               ptx + ".cubin"]):
                if step is not cmd:
                    # The PTX's own target: attnc raises sm_90 to sm_90a
                    # for the wgmma kernel.
                    with open(ptx) as f:
                        m = re.search(r"^\.target\s+(\w+)", f.read(), re.M)
                    if m:
                        step[1] = "-arch=" + m.group(1)
                p = subprocess.run(step, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True,
                                   errors="replace", timeout=opts.timeout)
                if p.returncode != 0:
                    problems.append("%s (%s): %s exited %d: %s" % (
                        arch, dt, os.path.basename(step[0]), p.returncode,
                        p.stdout.strip()[-400:]))
                    break
                if step is cmd:
                    with open(ptx) as f:
                        if "__nv_" in f.read():
                            problems.append("%s (%s): the PTX calls libdevice"
                                            % (arch, dt))
                            break
        return problems
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def select(names):
    if not names:
        return list(CASES)
    picked = []
    for n in names:
        if n in GROUPS:
            picked += [k for k in CASES if k.split("-")[0] == n]
        elif n in CASES:
            picked.append(n)
        else:
            sys.exit("run_case.py: unknown case or group '%s' (see --list)" % n)
    return picked


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help="case names or group names (%s)"
                    % ", ".join(GROUPS))
    ap.add_argument("--attnc", help="path to the attnc binary")
    ap.add_argument("--target", help="forwarded as --target")
    ap.add_argument("--reference", action="store_true",
                    help="run attnc's reference loop lowering (--reference)")
    ap.add_argument("--threads", type=int, help="forwarded as --threads")
    ap.add_argument("--gpu-kernel", help="forwarded as --gpu-kernel")
    ap.add_argument("--gpu-persistent", choices=["on", "off"],
                    help="forwarded as --gpu-persistent")
    ap.add_argument("--gpu-mark-kernel", choices=["on", "off"],
                    help="forwarded as --gpu-mark-kernel")
    ap.add_argument("--dtype", choices=["float16"],
                    help="run every non-error case with Q, K, V of this "
                         "dtype (and its tolerance)")
    ap.add_argument("--head-dim", type=int,
                    help="run every non-error case with D = Dv = this "
                         "(e.g. 64 or 128 to reach the GPU kernels that "
                         "need those head dims)")
    ap.add_argument("--seed", type=int, help="input seed (default: random)")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--ref-only", action="store_true",
                    help="check the cases' references without attnc")
    ap.add_argument("--keep", action="store_true", help="keep temp files")
    ap.add_argument("--ptxas", help="instead of running: emit each case's "
                    "PTX (--emit=ptx, the case's sizes and dtype) and "
                    "assemble it with this ptxas")
    ap.add_argument("--gpu-arch", default="sm_80,sm_90",
                    help="comma-separated targets for --ptxas")
    ap.add_argument("--keep-failed", action="store_true",
                    help="keep temp files of failed cases")
    ap.add_argument("--grad", action="store_true",
                    help="check the backward pass (attnc grad) instead")
    ap.add_argument("--saved-forward", action="store_true",
                    help="with --grad: run the forward first (attnc run -o "
                         "--lse/--stats) and give its files to attnc grad")
    ap.add_argument("--determinism", action="store_true",
                    help="with --grad: run each case twice, the outputs must "
                         "be bitwise identical")
    ap.add_argument("--fd", action="store_true",
                    help="with --grad: also finite differences of the "
                         "float64 forward at a few entries")
    opts = ap.parse_args()
    names = select(opts.cases)
    # Forward error cases do not run backwards, nor backward ones forwards.
    names = [n for n in names if (CASES[n].error is None) or not opts.grad]
    names = [n for n in names if (CASES[n].grad_error is None) or opts.grad]
    if opts.dtype:
        for n in names:
            if not CASES[n].error and not CASES[n].dtypes:
                CASES[n].dtype = opts.dtype
    if opts.head_dim:
        fixed = [n for n in names if CASES[n].dims_fixed]
        if fixed:
            print("SKIP (reference fixed to the case's head dims): " +
                  " ".join(fixed))
        names = [n for n in names if not CASES[n].dims_fixed]
        for n in names:
            if not CASES[n].error and not CASES[n].shapes:
                CASES[n].sizes["D"] = CASES[n].sizes["Dv"] = opts.head_dim
    if opts.list:
        for n in names:
            print(n)
        return 0
    if not opts.ref_only and not opts.attnc:
        ap.error("--attnc is required")
    if not opts.ref_only and not (os.path.isfile(opts.attnc) and
                                  os.access(opts.attnc, os.X_OK)):
        ap.error("cannot run --attnc %s: not an executable file" % opts.attnc)
    if opts.ptxas:
        import concurrent.futures
        todo = [CASES[n] for n in names if not CASES[n].error]
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
            results = list(ex.map(lambda cs: (cs, ptxas_one(cs, opts)), todo))
        bad = 0
        for cs, problems in results:
            print("%s %s %s" % ("FAIL" if problems else "PASS", cs.name,
                                "; ".join(problems)))
            bad += bool(problems)
        print("%d of %d cases assembled for %s" % (len(todo) - bad, len(todo),
                                                   opts.gpu_arch))
        return 1 if bad else 0
    failed = 0
    for n in names:
        seed = opts.seed if opts.seed is not None else \
            int.from_bytes(os.urandom(4), "little")
        if opts.ref_only:
            ok = check_case(CASES[n], seed)
        elif opts.grad:
            ok = run_grad_one(CASES[n], opts, seed)
        else:
            ok = run_one(CASES[n], opts, seed)
        failed += not ok
    if failed:
        print("%d of %d cases failed" % (failed, len(names)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
