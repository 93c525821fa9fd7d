"""PyTorch integration: the ``attnc::attention`` custom op.

Imported only once the program has imported torch. Eager calls on torch
tensors take the direct ctypes path of ``Kernel.__call__`` (the op's
dispatch costs several microseconds); while ``torch.compile`` traces a
call (``torch.compiler.is_compiling()``), ``Kernel.__call__`` hands it to
:func:`traced_call`, which puts one ``torch.ops.attnc.attention`` node in
the graph: Dynamo keeps it without a graph break, its fake implementation
gives the output shapes to AOTAutograd and Inductor, and the compiled graph
calls the real implementation, which runs the kernel through the same
ctypes path on the current stream.

The ops' schemas::

    attnc::attention(str kernel, Tensor q, Tensor k, Tensor v,
                     Tensor[] tensors, SymInt[] ints, float[] floats,
                     bool return_lse, bool save_stats)
        -> (Tensor o, Tensor lse, Tensor stats)
    attnc::attention_backward(str kernel, Tensor q, Tensor k, Tensor v,
                              Tensor o, Tensor do, Tensor stats,
                              Tensor[] tensors, SymInt[] ints,
                              float[] floats, bool[] wrt) -> Tensor[]

``kernel`` is the kernel's ``op_id`` (a hash of its source and options, so
a graph holds no Python object; ``Kernel`` objects register themselves by
it); ``tensors``, ``ints`` (i32 and bool scalars) and ``floats`` (f32
scalars) are the variant's runtime params of each kind in declaration
order; ``lse`` is a 0-element tensor unless ``return_lse`` or the backward
needs it. Integer scalars may stay symbolic in a graph (a new value reuses
it); f32 scalars are Python floats, so a new value is a new graph, as for
the Python constants of a FlexAttention ``score_mod``.

Autograd: a call whose inputs (Q, K, V or tensor params) require grad in
grad mode goes through the op, eagerly too, with ``save_stats``: the
forward then saves the row statistics of the backward (the LSE for
softmax, the row sums for linear, in ``lse`` or ``stats``), and the
registered formula runs ``attnc::attention_backward`` (the compiler's
derived backward kernel, CPU only for now), which returns dQ, dK, dV and
the gradients of the f32 tensor params that require grad (``wrt``). f32
scalars passed as Python numbers get no gradient. A loss that depends on
the LSE output raises :class:`attnc.BackwardUnavailableError` (the kernels
take dO only); CUDA inputs that require grad raise it at the call.
"""

from typing import Any, Dict, List, Optional, Tuple

import torch

from . import _arrays, _capi, _grad, _kernel
from ._errors import BackwardUnavailableError, RunError

_registered = False
_has_custom_op = hasattr(torch.library, "custom_op")


def _dynamo_compiling() -> bool:
    return torch.compiler.is_compiling()


def _never() -> bool:
    return False


# Without torch.library.custom_op (PyTorch < 2.4) there is no op to put in
# a graph: calls stay on the ctypes path, which Dynamo runs as a graph break.
is_compiling = (_dynamo_compiling if _has_custom_op and
                hasattr(torch, "compiler") else _never)


def registered() -> bool:
    """Whether the attnc::attention op (and its autograd formula) exists."""
    return _registered and _has_custom_op


def register() -> None:
    """Defines ``attnc::attention`` and its fake implementation (once)."""
    global _registered
    if _registered or not _has_custom_op:
        return
    _registered = True
    try:  # already defined (a reloaded package): keep the first definition
        torch.ops.attnc.attention
        return
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op("attnc::attention", mutates_args=())
    def attention(kernel: str, q: torch.Tensor, k: torch.Tensor,
                  v: torch.Tensor, tensors: List[torch.Tensor], ints: List[int],
                  floats: List[float], return_lse: bool, save_stats: bool
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kern = _kernel.kernels_by_id(kernel)
        params = _bind(kern, tensors, ints, floats)
        empty = q.new_empty((0,), dtype=torch.float32)
        if save_stats:
            return _forward_saving(kern, q, k, v, params, return_lse, empty)
        if return_lse:
            o, lse = kern._call_torch(q, k, v, None, True, params,
                                      check_grad=False)
            return o, lse, empty
        o = kern._call_torch(q, k, v, None, False, params, check_grad=False)
        return o, empty, empty.clone()

    @attention.register_fake
    def _(kernel, q, k, v, tensors, ints, floats, return_lse, save_stats):
        for name, t in (("Q", q), ("K", k), ("V", v)):
            if t.dim() != 4:
                raise RunError("%s must have rank 4, got shape %s"
                               % (name, tuple(t.shape)))
        B, H, Lq, _ = q.shape
        kind = _grad.stats_kind(_kernel.kernels_by_id(kernel)) \
            if save_stats else "none"
        o = q.new_empty((B, H, Lq, v.shape[3]))
        lse = q.new_empty((B, H, Lq) if return_lse or kind == "lse" else (0,),
                          dtype=torch.float32)
        stats = q.new_empty((B, H, Lq) if kind == "sums" else (0,),
                            dtype=torch.float32)
        return o, lse, stats

    @torch.library.custom_op("attnc::attention_backward", mutates_args=())
    def attention_backward(kernel: str, q: torch.Tensor, k: torch.Tensor,
                           v: torch.Tensor, o: torch.Tensor, do: torch.Tensor,
                           stats: torch.Tensor, tensors: List[torch.Tensor],
                           ints: List[int], floats: List[float],
                           wrt: List[bool]) -> List[torch.Tensor]:
        kern = _kernel.kernels_by_id(kernel)
        params = _bind(kern, tensors, ints, floats)
        return _backward(kern, q, k, v, o, do, stats, params, tensors, wrt)

    @attention_backward.register_fake
    def _(kernel, q, k, v, o, do, stats, tensors, ints, floats, wrt):
        grads = [torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)]
        grads += [torch.empty_like(t, dtype=torch.float32)
                  for t, w in zip(tensors, wrt) if w]
        return grads

    def setup_context(ctx, inputs, output):
        kernel, q, k, v, tensors, ints, floats, return_lse, save_stats = inputs
        o, lse, stats = output
        kern = _kernel.kernels_by_id(kernel)
        kind = _grad.stats_kind(kern) if save_stats else "none"
        ctx.kernel, ctx.ints, ctx.floats = kernel, ints, floats
        ctx.saved = save_stats
        ctx.wrt = [t.requires_grad and t.dtype == torch.float32 for t in tensors]
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(q, k, v, o, lse if kind == "lse" else stats,
                              *tensors)

    def backward(ctx, grad_o, grad_lse, grad_stats):
        kern = _kernel.kernels_by_id(ctx.kernel)
        if grad_lse is not None:
            raise BackwardUnavailableError(
                "variant '%s': the loss depends on the LSE output, and attnc's "
                "backward kernels take dO only; detach the LSE (lse.detach()) "
                "where it enters the loss" % kern.name)
        if not ctx.saved:
            raise BackwardUnavailableError(
                "variant '%s': the forward ran without saving the statistics "
                "of a backward (no input required grad in grad mode then)"
                % kern.name)
        q, k, v, o, stats, *tensors = ctx.saved_tensors
        # The gradients mirror the inputs' structure: a list of tensors gets
        # a list (of gradients or None), an empty list an empty list, and a
        # list of numbers None.
        ints = [] if not ctx.ints else None
        floats = [] if not ctx.floats else None
        if grad_o is None:
            return (None, None, None, None, [None] * len(tensors), ints, floats,
                    None, None)
        grads = torch.ops.attnc.attention_backward(
            ctx.kernel, q, k, v, o, grad_o.contiguous(), stats, tensors,
            ctx.ints, ctx.floats, ctx.wrt)
        it = iter(grads[3:])
        dparams = [next(it) if w else None for w in ctx.wrt]
        return (None, grads[0], grads[1], grads[2], dparams, ints, floats, None,
                None)

    torch.library.register_autograd("attnc::attention", backward,
                                    setup_context=setup_context)


def _forward_saving(kern, q, k, v, params, return_lse, empty):
    """The op's forward when gradients are wanted: O, the LSE (softmax) and
    the row statistics (linear) of the backward run."""
    if q.is_cuda:
        raise _grad.gpu_unavailable(kern.name)
    view = _arrays.torch_view
    qv, kv, vv = view(q, "Q"), view(k, "K"), view(v, "V")
    if len(qv[2]) != 4 or len(kv[2]) != 4 or len(vv[2]) != 4:
        _kernel._rank_error(qv, kv, vv)
    B, H, Lq, D = qv[2]
    Dv = vv[2][3]
    inst = kern._instance(_capi.TARGET_CPU, qv[1], D, Dv)
    kind = _grad.stats_kind(kern)
    o = q.new_empty((B, H, Lq, Dv))
    lse = q.new_empty((B, H, Lq), dtype=torch.float32) \
        if return_lse or kind == "lse" else empty
    stats = q.new_empty((B, H, Lq), dtype=torch.float32) \
        if kind == "sums" else empty.clone()
    keep: List[Any] = []
    pviews, _ = kern._params(params, -1, keep) if params else ({}, 0)
    _grad.forward_saving(kern, inst, qv, kv, vv, view(o, "O"),
                         view(lse, "LSE") if lse is not empty else None,
                         view(stats, "stats") if kind == "sums" else None,
                         pviews)
    return o, lse, stats


def _backward(kern, q, k, v, o, do, stats, params, tensors, wrt):
    if q.is_cuda:
        raise _grad.gpu_unavailable(kern.name)
    view = _arrays.torch_view
    qv, kv, vv = view(q, "Q"), view(k, "K"), view(v, "V")
    B, H, Lq, D = qv[2]
    Dv = vv[2][3]
    inst = kern._backward_instance(qv[1], D, Dv)
    keep: List[Any] = []
    pviews, _ = kern._params(params, -1, keep) if params else ({}, 0)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    names = [p.name for p in kern._runtime_params if p.is_tensor]
    pgrads = {}
    for name, t, w in zip(names, tensors, wrt):
        if w:
            pgrads[name] = torch.empty_like(t, dtype=torch.float32)
    _grad.backward_run(kern, inst, qv, kv, vv, view(o, "O"), view(do, "dO"),
                       view(stats, "stats") if stats.numel() else None,
                       view(dq, "dQ"), view(dk, "dK"), view(dv, "dV"), pviews,
                       {n: view(g, "the gradient of " + n)
                        for n, g in pgrads.items()})
    return [dq, dk, dv] + list(pgrads.values())


def _bind(kernel: "_kernel.Kernel", tensors: List[torch.Tensor],
          ints: List[int], floats: List[float]) -> Dict[str, Any]:
    """The op's lists of params as the kernel's keyword params."""
    params: Dict[str, Any] = {}
    lists = {"tensor": iter(tensors), "int": iter(ints), "float": iter(floats)}
    for p in kernel._runtime_params:
        params[p.name] = next(lists[_kind(p)])
    return params


def _kind(p) -> str:
    return "tensor" if p.is_tensor else "float" if p.dtype == "f32" else "int"


def traced_call(kernel: "_kernel.Kernel", q: Any, k: Any, v: Any,
                out: Optional[torch.Tensor], return_lse: bool,
                kwargs: Dict[str, Any]):
    """A call through the attnc::attention op: while torch.compile traces
    (one node in the graph), and eagerly when gradients are wanted (the op
    carries the autograd formula).

    ``out`` is filled with a copy of the op's result."""
    grads = False
    if torch.is_grad_enabled():
        grads = q.requires_grad or k.requires_grad or v.requires_grad
        for x in kwargs.values():
            if isinstance(x, torch.Tensor) and x.requires_grad:
                grads = True
        if grads and q.is_cuda:
            raise _grad.gpu_unavailable(kernel.name)
    names = tuple(p.name for p in kernel._runtime_params)
    for name in kwargs:
        if name not in names:
            raise RunError("unknown param '%s' for variant '%s' (its params: "
                           "%s)" % (name, kernel.name, ", ".join(names) or "none"))
    tensors: List[torch.Tensor] = []
    ints: List[int] = []
    floats: List[float] = []
    for p in kernel._runtime_params:
        x = kwargs.get(p.name)
        if p.is_tensor:
            if x is None:
                raise RunError("missing tensor param '%s' (%s)"
                               % (p.name, p.declared_type))
            tensors.append(x)
            continue
        if x is None:
            if p.default is None:
                raise RunError("missing param '%s' (%s, no default)"
                               % (p.name, p.declared_type))
            x = p.default
        if p.dtype == "f32":
            floats.append(float(x))
        else:
            if isinstance(x, float) and not x.is_integer():
                raise RunError("param '%s' is %s and cannot take the value %r"
                               % (p.name, p.dtype, x))
            ints.append(int(x))
    o, lse, _ = torch.ops.attnc.attention(kernel.op_id, q, k, v, tensors,
                                          ints, floats, bool(return_lse), grads)
    if isinstance(out, tuple):
        if not return_lse or len(out) != 2:
            raise RunError("out=(o, lse) preallocates both outputs and needs "
                           "return_lse=True; pass out=o for O alone")
        out[1].copy_(lse)
        lse = out[1]
        out = out[0]
    if out is not None:
        out.copy_(o)
        o = out
    return (o, lse) if return_lse else o
