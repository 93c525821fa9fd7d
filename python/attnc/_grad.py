"""Gradients: libattn's backward kernels (CPU) behind ``Kernel.grad`` and
the autograd formula of the ``attnc::attention`` op.

A gradient needs two runs. The forward run saves the row statistics that
the backward run reads (softmax: the LSE; linear: the row sums of the
scores; sigmoid and relu: none). The backward run takes Q, K, V, O, dO,
those statistics and the params, and writes dQ, dK, dV and the gradients of
the f32 params asked for. Both run through plain ctypes descriptors (one
run of a training step costs milliseconds; the forward call path's packed
descriptors are not worth it here).

The backward kernels run on the CPU only for now; a CUDA input raises
:class:`BackwardUnavailableError`.
"""

import ctypes as C
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _arrays as arrays
from . import _capi as capi
from ._errors import BackwardUnavailableError, RunError

View = Tuple[int, int, Tuple[int, ...], Tuple[int, ...], int]


def _descriptor(view: View, keep: List[Any]) -> int:
    """The address of an attn_tensor describing `view` (kept alive by `keep`)."""
    ptr, dtype, shape, strides, _ = view
    rank = len(shape)
    s = (C.c_int64 * max(rank, 1))(*shape)
    st = (C.c_int64 * max(rank, 1))(*strides)
    t = capi.Tensor(ptr, dtype, rank, s, st)
    keep += [s, st, t]
    return C.addressof(t)


def gpu_unavailable(name: str) -> BackwardUnavailableError:
    return BackwardUnavailableError(
        "variant '%s': gradients of CUDA tensors need GPU backward kernels, "
        "which attnc does not have yet; the CPU has them (move the tensors "
        "to the CPU), or run under torch.no_grad() for the forward alone"
        % name)


def stats_kind(kernel) -> str:
    """What the forward saves for the backward: "lse", "sums" or "none"."""
    if kernel.defines_lse:
        return "lse"
    return "sums" if kernel.has_row_stats else "none"


def forward_saving(kernel, inst, q: View, k: View, v: View, o: View,
                   lse: Optional[View], stats: Optional[View],
                   params: Dict[str, Any]) -> None:
    """One forward run of `inst` writing O, the LSE (softmax) and the row
    statistics (linear). `params` maps names to views or floats."""
    lib = kernel._lib
    keep: List[Any] = []
    args = C.c_void_p()
    lib.check(lib.run_args_create(C.byref(args)))
    try:
        a = args.value
        if kernel.threads:
            lib.check(lib.run_args_set_threads(a, kernel.threads))
        lib.check(lib.run_args_set_tensors(
            a, _descriptor(q, keep), _descriptor(k, keep), _descriptor(v, keep),
            _descriptor(o, keep), _descriptor(lse, keep) if lse else None))
        if stats is not None:
            lib.check(lib.run_args_set_row_stats(a, _descriptor(stats, keep)))
        _bind(lib, lib.run_args_set_scalar, lib.run_args_set_tensor, a, params,
              keep)
        lib.check(lib.kernel_run(inst._handle, a))
    finally:
        lib.run_args_destroy(args.value)


def backward_run(kernel, inst, q: View, k: View, v: View, o: View, do: View,
                 stats: Optional[View], dq: View, dk: View, dv: View,
                 params: Dict[str, Any], param_grads: Dict[str, View]) -> None:
    """One run of the backward kernel `inst`."""
    lib = kernel._lib
    keep: List[Any] = []
    args = C.c_void_p()
    lib.check(lib.backward_args_create(C.byref(args)))
    try:
        a = args.value
        if kernel.threads:
            lib.check(lib.backward_args_set_threads(a, kernel.threads))
        lib.check(lib.backward_args_set_tensors(
            a, _descriptor(q, keep), _descriptor(k, keep), _descriptor(v, keep),
            _descriptor(o, keep), _descriptor(do, keep),
            _descriptor(stats, keep) if stats else None))
        lib.check(lib.backward_args_set_grads(
            a, _descriptor(dq, keep), _descriptor(dk, keep),
            _descriptor(dv, keep)))
        _bind(lib, lib.backward_args_set_scalar, lib.backward_args_set_tensor,
              a, params, keep)
        for name, view in param_grads.items():
            lib.check(lib.backward_args_set_param_grad(
                a, name.encode(), _descriptor(view, keep)))
        lib.check(lib.kernel_run_backward(inst._handle, a))
    finally:
        lib.backward_args_destroy(args.value)


def _bind(lib, set_scalar, set_tensor, args: int, params: Dict[str, Any],
          keep: List[Any]) -> None:
    for name, value in params.items():
        if type(value) is float:
            lib.check(set_scalar(args, name.encode(), value))
        else:
            lib.check(set_tensor(args, name.encode(), _descriptor(value, keep)))


def check_wrt(kernel, wrt: Sequence[str]) -> None:
    """Each name in `wrt` is an f32 runtime param of the variant."""
    by_name = {p.name: p for p in kernel.params}
    for name in wrt:
        p = by_name.get(name)
        if p is None:
            raise RunError("variant '%s' has no param '%s' to differentiate "
                           "(its params: %s)" % (kernel.name, name, ", ".join(
                               by_name) or "none"))
        if p.is_const or p.dtype != "f32":
            raise RunError("param '%s' (%s%s) has no gradient: only f32 "
                           "runtime params do" % (name, "const " if p.is_const
                                                  else "", p.declared_type))
