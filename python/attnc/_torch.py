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

The op's schema::

    attnc::attention(str kernel, Tensor q, Tensor k, Tensor v,
                     Tensor[] tensors, SymInt[] ints, float[] floats,
                     bool return_lse) -> (Tensor o, Tensor lse)

``kernel`` is the kernel's ``op_id`` (a hash of its source and options, so
a graph holds no Python object; ``Kernel`` objects register themselves by
it); ``tensors``, ``ints`` (i32 and bool scalars) and ``floats`` (f32
scalars) are the variant's runtime params of each kind in declaration
order; ``lse`` is a 0-element tensor unless ``return_lse``. Integer scalars
may stay symbolic in a graph (a new value reuses it); f32 scalars are
Python floats, so a new value is a new graph, as for the Python constants
of a FlexAttention ``score_mod``.

Autograd: libattn has no backward kernels yet, so no autograd formula is
registered, and a call whose inputs require grad in grad mode raises
``attnc.BackwardUnavailableError`` (eagerly and while tracing) instead of
failing later in ``backward()``. When the C API gains backward entry
points, ``register()`` adds the formula with
``torch.library.register_autograd("attnc::attention", ...)`` (saving Q, K,
V, O and LSE) and the grad checks route such calls through the op.
"""

from typing import Any, Dict, List, Optional, Tuple

import torch

from . import _kernel
from ._errors import RunError

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
                  floats: List[float], return_lse: bool
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        kern = _kernel.kernels_by_id(kernel)
        params = _bind(kern, tensors, ints, floats)
        if return_lse:
            return kern._call_torch(q, k, v, None, True, params, check_grad=False)
        o = kern._call_torch(q, k, v, None, False, params, check_grad=False)
        return o, q.new_empty((0,), dtype=torch.float32)

    @attention.register_fake
    def _(kernel, q, k, v, tensors, ints, floats, return_lse):
        for name, t in (("Q", q), ("K", k), ("V", v)):
            if t.dim() != 4:
                raise RunError("%s must have rank 4, got shape %s"
                               % (name, tuple(t.shape)))
        B, H, Lq, _ = q.shape
        o = q.new_empty((B, H, Lq, v.shape[3]))
        lse = q.new_empty((B, H, Lq) if return_lse else (0,),
                          dtype=torch.float32)
        return o, lse


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
    """A call while torch.compile traces: one attnc::attention node.

    ``out`` is filled with a copy of the op's result."""
    if torch.is_grad_enabled():
        grads = q.requires_grad or k.requires_grad or v.requires_grad
        for x in kwargs.values():
            if isinstance(x, torch.Tensor) and x.requires_grad:
                grads = True
        if grads:
            raise _kernel._no_backward(kernel.name)
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
    o, lse = torch.ops.attnc.attention(kernel.op_id, q, k, v, tensors, ints,
                                       floats, bool(return_lse))
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
