"""PyTorch tensors: CPU tensors everywhere torch is installed, CUDA tensors
where a GPU is; the attnc::attention custom op under torch.compile.
Skipped where PyTorch is not installed."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import attnc  # noqa: E402  (after torch: the custom op is registered at import)
from reference import attention, max_rel_err  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}

ALIBI = """
attention alibi {
  param slopes: f32[H];
  score = score + slopes[h] * f32(kv_idx - q_idx);
  mask = causal();
}
attention softcap_window {
  const param cap: f32 = 30.0;
  param window: i32 = 4096;
  score = cap * tanh(score / cap);
  mask = causal() && q_idx - kv_idx < window;
}
"""


@pytest.fixture(scope="module")
def alibi():
    return attnc.compile(ALIBI, variant="alibi")


@pytest.fixture(scope="module")
def softcap():
    return attnc.compile(ALIBI, variant="softcap_window")


def f64(t):
    return t.detach().to("cpu", torch.float64).numpy()


def alibi_ref(q, k, v, slopes):
    s = f64(slopes)
    return attention(f64(q), f64(k), f64(v),
                     score=lambda x, b, h, i, j: x + s[h] * (j - i),
                     mask=lambda b, h, i, j: j <= i)


def softcap_ref(q, k, v, window, cap=30.0):
    return attention(f64(q), f64(k), f64(v),
                     score=lambda x, b, h, i, j: cap * np.tanh(x / cap),
                     mask=lambda b, h, i, j: (j <= i) & (i - j < window))


def slopes_for(H, device="cpu"):
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)],
                        dtype=torch.float32, device=device)


def qkv(B, H, Hkv, Lq, Lkv, D, Dv, dtype, device, gen):
    return (torch.randn(B, H, Lq, D, generator=gen).to(device, dtype),
            torch.randn(B, Hkv, Lkv, D, generator=gen).to(device, dtype),
            torch.randn(B, Hkv, Lkv, Dv, generator=gen).to(device, dtype))


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(1 << 31)))


# --- CPU tensors ----------------------------------------------------------

def test_cpu_forward_lse_gqa(alibi, gen):
    q, k, v = qkv(2, 4, 2, 40, 56, 32, 32, torch.float32, "cpu", gen)
    slopes = slopes_for(4)
    out = torch.full_like(q, float("nan"))
    lse_out = torch.full((2, 4, 40), float("nan"))
    o, lse = alibi(q, k, v, slopes=slopes, return_lse=True, out=(out, lse_out))
    assert o is out and lse is lse_out
    ref_o, ref_lse = alibi_ref(q, k, v, slopes)
    assert max_rel_err(f64(o), ref_o) < TOL[torch.float32]
    np.testing.assert_allclose(f64(lse), ref_lse, atol=2e-5, rtol=0)


def test_cpu_strided_views(alibi, gen):
    """Q, K and V as views of one fused [B, L, 3H, D] projection."""
    B, L, H, D = 2, 48, 4, 32
    fused = torch.randn(B, L, 3 * H, D, generator=gen).transpose(1, 2)
    q, k, v = fused.split([H, H, H], dim=1)
    assert not q.is_contiguous()
    slopes = slopes_for(H)
    o = alibi(q, k, v, slopes=slopes)
    assert max_rel_err(f64(o), alibi_ref(q, k, v, slopes)[0]) < TOL[torch.float32]


def test_cpu_float16_and_scalars(softcap, gen):
    q, k, v = qkv(1, 2, 2, 33, 33, 16, 16, torch.float16, "cpu", gen)
    for window in (4096, 5):
        o = softcap(q, k, v, window=window) if window != 4096 else softcap(q, k, v)
        assert o.dtype == torch.float16
        assert max_rel_err(f64(o), softcap_ref(q, k, v, window)[0]) < TOL[torch.float16]


def test_grad_mode_is_refused_until_backward_exists(alibi, gen):
    q, k, v = qkv(1, 2, 2, 8, 8, 16, 16, torch.float32, "cpu", gen)
    slopes = slopes_for(2)
    with pytest.raises(attnc.BackwardUnavailableError, match="no backward kernels"):
        alibi(q.requires_grad_(), k, v, slopes=slopes)
    with pytest.raises(attnc.BackwardUnavailableError):
        alibi(q.detach(), k, v, slopes=slopes.clone().requires_grad_())
    with torch.no_grad():
        o = alibi(q, k, v, slopes=slopes)
    with torch.inference_mode():
        o2 = alibi(q, k, v, slopes=slopes)
    assert torch.equal(o, o2)
    assert max_rel_err(f64(o), alibi_ref(q, k, v, slopes)[0]) < TOL[torch.float32]


def test_cpu_errors(alibi, gen):
    q, k, v = qkv(1, 2, 2, 8, 8, 16, 16, torch.float32, "cpu", gen)
    with pytest.raises(attnc.UnavailableError, match="bfloat16 runs on CUDA only"):
        alibi(q.bfloat16(), k.bfloat16(), v.bfloat16(), slopes=slopes_for(2))
    with pytest.raises(attnc.RunError, match="K and V must be too"):
        alibi(q, k.numpy(), v, slopes=slopes_for(2))
    with pytest.raises(attnc.RunError, match="Q has dtype torch.float64"):
        alibi(q.double(), k, v, slopes=slopes_for(2))
    with pytest.raises(attnc.RunError, match="out must be a torch tensor"):
        alibi(q, k, v, slopes=slopes_for(2), out=np.empty((1, 2, 8, 16), np.float32))
    with pytest.raises(attnc.RunError, match="zero stride"):
        alibi(q, k, v, slopes=slopes_for(2),
              out=torch.empty(1, 2, 8, 1).expand(1, 2, 8, 16))


# --- the custom op and torch.compile ---------------------------------------

def test_op_schema_and_fake_impl(alibi, gen):
    """torch.library.opcheck: schema, fake (meta) implementation, dispatch
    under AOTAutograd with dynamic shapes."""
    q, k, v = qkv(1, 4, 2, 16, 24, 32, 16, torch.float32, "cpu", gen)
    for return_lse in (False, True):
        torch.library.opcheck(torch.ops.attnc.attention.default,
                              (alibi.op_id, q, k, v, [slopes_for(4)], [], [],
                               return_lse))


def test_torch_compile_keeps_the_op_in_the_graph(alibi, softcap, gen):
    q, k, v = qkv(2, 4, 2, 32, 32, 32, 32, torch.float32, "cpu", gen)
    slopes = slopes_for(4)

    def f(q, k, v, slopes, window):
        o = alibi(q, k, v, slopes=slopes)
        return softcap(o, k, v, window=window) * 2.0

    explanation = torch._dynamo.explain(f)(q, k, v, slopes, 7)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    compiled = torch.compile(f, fullgraph=True)
    for window in (7, 11, 7):      # a new scalar value: a recompile, no break
        want = f(q, k, v, slopes, window)
        got = compiled(q, k, v, slopes, window)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        ref = softcap_ref(torch.from_numpy(alibi_ref(q, k, v, slopes)[0]).float(),
                          k, v, window)[0] * 2.0
        assert max_rel_err(f64(got), ref) < 1e-4


def test_torch_compile_float_scalar(gen):
    """An f32 runtime scalar passed as a Python float argument."""
    kern = attnc.compile("attention t { param temp: f32 = 1.0; "
                         "score = score / temp; mask = causal(); }")
    q, k, v = qkv(1, 2, 2, 16, 16, 16, 16, torch.float32, "cpu", gen)

    def f(q, k, v, temp):
        return kern(q, k, v, temp=temp)

    explanation = torch._dynamo.explain(f)(q, k, v, 0.5)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(f, fullgraph=True)
    for temp in (0.5, 2.0):
        got = compiled(q, k, v, temp)
        ref = attention(f64(q), f64(k), f64(v),
                        score=lambda x, b, h, i, j: x / temp,
                        mask=lambda b, h, i, j: j <= i)[0]
        assert max_rel_err(f64(got), ref) < TOL[torch.float32]


def test_torch_compile_out_and_lse(alibi, gen):
    q, k, v = qkv(1, 4, 4, 16, 16, 32, 32, torch.float32, "cpu", gen)
    slopes = slopes_for(4)

    @torch.compile(fullgraph=True)
    def f(q, k, v, slopes, out, lse):
        return alibi(q, k, v, slopes=slopes, return_lse=True, out=(out, lse))

    out = torch.full_like(q, float("nan"))
    lse = torch.full((1, 4, 16), float("nan"))
    o, l2 = f(q, k, v, slopes, out, lse)
    ref_o, ref_lse = alibi_ref(q, k, v, slopes)
    assert max_rel_err(f64(out), ref_o) < TOL[torch.float32]
    np.testing.assert_allclose(f64(lse), ref_lse, atol=2e-5, rtol=0)


def test_torch_compile_refuses_grad(alibi, gen):
    q, k, v = qkv(1, 2, 2, 8, 8, 16, 16, torch.float32, "cpu", gen)
    f = torch.compile(lambda q: alibi(q, k, v, slopes=slopes_for(2)))
    with pytest.raises(attnc.BackwardUnavailableError):
        f(q.requires_grad_())


# --- CUDA tensors -----------------------------------------------------------

@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(2, 8, 2, 128, 128, 64, 64),
                                   (1, 4, 4, 100, 300, 128, 128),
                                   (1, 6, 3, 77, 45, 32, 64)])
def test_cuda_forward(alibi, gen, dtype, shape):
    """B, H, Hkv, Lq, Lkv, D, Dv: GQA, Lq != Lkv (both ways), D != Dv."""
    q, k, v = qkv(*shape, dtype, "cuda", gen)
    B, H, _, Lq, _, _, Dv = shape
    slopes = slopes_for(H, "cuda")
    out = torch.full((B, H, Lq, Dv), float("nan"), dtype=dtype, device="cuda")
    lse = torch.full((B, H, Lq), float("nan"), device="cuda")
    o, l2 = alibi(q, k, v, slopes=slopes, return_lse=True, out=(out, lse))
    torch.cuda.synchronize()
    ref_o, ref_lse = alibi_ref(q, k, v, slopes)
    assert max_rel_err(f64(o), ref_o) < TOL[dtype]
    np.testing.assert_allclose(f64(lse), ref_lse, atol=TOL[dtype], rtol=0)
    assert ("cuda", str(dtype).replace("torch.", "")) in \
        {(c.target, c.dtype) for c in alibi.compiled}


@cuda
def test_cuda_fused_qkv_views_and_side_stream(alibi, gen):
    B, L, H, D = 2, 256, 8, 64
    fused = torch.randn(B, L, 3 * H, D, generator=gen).to("cuda", torch.bfloat16)
    q, k, v = fused.transpose(1, 2).split([H, H, H], dim=1)
    slopes = slopes_for(H, "cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        outs = [alibi(q, k, v, slopes=slopes) for _ in range(4)]
    stream.synchronize()
    ref = alibi_ref(q, k, v, slopes)[0]
    for o in outs:
        assert max_rel_err(f64(o), ref) < TOL[torch.bfloat16]


@cuda
def test_cuda_async_errors_reach_synchronize(gen):
    kern = attnc.compile("""
        attention x {
          param idx: i32[Lq];
          param tab: f32[4];
          score = score + tab[idx[q_idx]];
        }""")
    q, k, v = qkv(1, 2, 2, 16, 16, 64, 64, torch.bfloat16, "cuda", gen)
    idx = torch.zeros(16, dtype=torch.int32, device="cuda")
    idx[5] = 9
    tab = torch.zeros(4, device="cuda")
    kern(q, k, v, idx=idx, tab=tab)      # queued: returns at once
    with pytest.raises(attnc.KernelError, match="out of range: index 9"):
        kern.synchronize()
    idx[5] = 1
    kern(q, k, v, idx=idx, tab=tab)
    kern.synchronize()
    sync = attnc.compile("""
        attention x {
          param idx: i32[Lq];
          param tab: f32[4];
          score = score + tab[idx[q_idx]];
        }""", synchronous=True)
    idx[5] = 9
    with pytest.raises(attnc.KernelError, match="out of range"):
        sync(q, k, v, idx=idx, tab=tab)


@cuda
def test_cuda_device_errors(alibi, gen):
    q, k, v = qkv(1, 2, 2, 16, 16, 64, 64, torch.bfloat16, "cuda", gen)
    with pytest.raises(attnc.RunError, match="param 'slopes' is on the host but Q "
                       "is on cuda:0"):
        alibi(q, k, v, slopes=slopes_for(2))
    with pytest.raises(attnc.RunError, match="one device"):
        alibi(q, k.cpu(), v, slopes=slopes_for(2, "cuda"))
    if torch.cuda.device_count() > 1:
        with pytest.raises(attnc.RunError, match="GPU 0"):
            alibi(q.to("cuda:1"), k.to("cuda:1"), v.to("cuda:1"),
                  slopes=slopes_for(2, "cuda:1"))


@cuda
def test_cuda_torch_compile_inductor(alibi, gen):
    q, k, v = qkv(2, 8, 2, 128, 128, 64, 64, torch.bfloat16, "cuda", gen)
    slopes = slopes_for(8, "cuda")
    lin = torch.nn.Linear(64, 64, device="cuda", dtype=torch.bfloat16)

    def f(q, k, v):
        return lin(alibi(lin(q), k, v, slopes=slopes)).sum(-1)

    with torch.no_grad():
        explanation = torch._dynamo.explain(f)(q, k, v)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        got = torch.compile(f, fullgraph=True)(q, k, v)
        want = f(q, k, v)
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


@cuda
def test_cuda_compile_is_single_flight(tmp_path):
    """Two threads ask one fresh runtime for the same GPU kernel at once:
    the runtime compiles it once (the GPU path shares the CPU path's
    single-flight), and both get the same kernel."""
    import threading
    rt = attnc.Runtime(cache_dir=str(tmp_path), disk_cache=False)
    # Two Kernel objects: one object's own lock would serialise the calls.
    kerns = [attnc.compile(ALIBI, variant="alibi", runtime=rt) for _ in range(2)]
    before = rt.stats()  # the CPU probe of each compile: one compile, one hit
    barrier = threading.Barrier(2)
    got, errors = [], []

    def worker(kern):
        try:
            barrier.wait()
            got.append(kern.specialize("cuda", "float16", 64))
        except Exception as e:  # reported below, with the thread's error
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in kerns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    after = rt.stats()
    assert after["compiles"] - before["compiles"] == 1, (before, after)
    assert after["memory_hits"] - before["memory_hits"] == 1, (before, after)
    assert len(got) == 2 and got[0].key == got[1].key
