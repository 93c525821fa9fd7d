"""What attnc needs to know of an array: data pointer, dtype, shape, strides.

NumPy arrays (and anything ``numpy.asarray`` views without a copy through
the array interface or the buffer protocol) and PyTorch tensors are read in
place: a view is ``(pointer, attn_dtype, shape, strides in elements,
device)``, where device is -1 for host memory and the CUDA device index for
a torch CUDA tensor. Neither NumPy nor PyTorch is imported here; torch is
picked up from ``sys.modules`` once the program has imported it.
"""

import sys
from typing import Any, Optional, Tuple

from . import _capi as capi
from ._errors import RunError

try:
    import numpy as np
except ImportError:  # torch-only installs: NumPy arrays are then unavailable
    np = None

ndarray = np.ndarray if np is not None else None

if np is not None:
    NUMPY_DTYPES = {np.dtype(np.float32): capi.F32, np.dtype(np.float16): capi.F16,
                    np.dtype(np.int32): capi.I32, np.dtype(np.bool_): capi.BOOL}
    NUMPY_FROM_CODE = {v: k for k, v in NUMPY_DTYPES.items()}
else:
    NUMPY_DTYPES, NUMPY_FROM_CODE = {}, {}

View = Tuple[int, int, Tuple[int, ...], Tuple[int, ...], int]

# PyTorch, once imported by the program: the Tensor class and the dtype map.
torch = None
torch_tensor = None
TORCH_DTYPES = {}
TORCH_FROM_CODE = {}


def find_torch() -> bool:
    """Notices a PyTorch that the program imported; True when there is one."""
    global torch, torch_tensor, TORCH_DTYPES, TORCH_FROM_CODE
    if torch is not None:
        return True
    t = sys.modules.get("torch")
    if t is None or not hasattr(t, "Tensor"):
        return False
    TORCH_DTYPES = {t.float32: capi.F32, t.float16: capi.F16,
                    t.bfloat16: capi.BF16, t.int32: capi.I32, t.bool: capi.BOOL}
    TORCH_FROM_CODE = {v: k for k, v in TORCH_DTYPES.items()}
    torch_tensor = t.Tensor
    torch = t
    return True


def is_torch(x: Any) -> bool:
    return (torch_tensor is not None or find_torch()) and \
        isinstance(x, torch_tensor)


def _bad_dtype(what: str, dtype: Any) -> RunError:
    return RunError("%s has dtype %s; attnc takes float32, float16 and "
                    "bfloat16 (CUDA only) for Q, K, V and O, and float32, "
                    "int32 and bool for tensor params" % (what, dtype))


# Element strides and overlap of the layouts seen so far, by (shape,
# strides, itemsize): most programs call with a few layouts, and the
# conversion and checks then cost one dict lookup.
_LAYOUTS: dict = {}


def layout(shape, strides, size: int, what: str) -> Tuple[Tuple[int, ...], bool]:
    """(strides in elements, whether a written view would overlap itself)
    of a view with byte (size > 1) or element (size 1) strides."""
    key = (shape, strides, size)
    got = _LAYOUTS.get(key)
    if got is None:
        # a dim of extent 0 or 1 never steps its stride
        if any(s % size and n > 1 for s, n in zip(strides, shape)):
            raise RunError("%s has strides %s (bytes) that are not whole "
                           "elements of %d bytes; pass a copy "
                           "(numpy.ascontiguousarray)" % (what, strides, size))
        elements = tuple(s // size for s in strides)
        overlap = 0 not in shape and any(s == 0 and n > 1
                                         for s, n in zip(strides, shape))
        if len(_LAYOUTS) >= 4096:
            _LAYOUTS.clear()
        got = _LAYOUTS[key] = (elements, overlap)
    return got


def numpy_view(a: Any, what: str) -> View:
    """The view of a NumPy array (pointer to element 0, strides in elements)."""
    code = NUMPY_DTYPES.get(a.dtype)
    if code is None:
        raise _bad_dtype(what, a.dtype)
    shape = a.shape
    return (a.ctypes.data, code, shape,
            layout(shape, a.strides, a.itemsize, what)[0], -1)


def numpy_out_view(a: Any, what: str) -> View:
    """The view of a NumPy array that a run writes."""
    if type(a) is not ndarray:
        raise RunError("%s must be a NumPy array for NumPy inputs, got %s"
                       % (what, type(a).__name__))
    if not a.flags.writeable:
        raise RunError("%s is read-only" % what)
    code = NUMPY_DTYPES.get(a.dtype)
    if code is None:
        raise _bad_dtype(what, a.dtype)
    shape = a.shape
    elements, overlap = layout(shape, a.strides, a.itemsize, what)
    if overlap:
        raise RunError("%s has a zero stride: its elements overlap" % what)
    return a.ctypes.data, code, shape, elements, -1


def torch_view(t: Any, what: str) -> View:
    """The view of a torch tensor (CPU or CUDA)."""
    code = TORCH_DTYPES.get(t.dtype)
    if code is None:
        raise _bad_dtype(what, t.dtype)
    return t.data_ptr(), code, t.shape, t.stride(), t.get_device()


def torch_out_view(t: Any, what: str, device: int) -> View:
    """The view of a torch tensor that a run writes, on ``device``."""
    if not is_torch(t):
        raise RunError("%s must be a torch tensor for torch inputs, got %s"
                       % (what, type(t).__name__))
    view = torch_view(t, what)
    if view[4] != device:
        raise RunError("%s is on %s but Q is on %s" % (
            what, device_name(view[4]), device_name(device)))
    if layout(view[2], view[3], 1, what)[1]:
        raise RunError("%s has a zero stride: its elements overlap" % what)
    return view


def device_name(device: int) -> str:
    return "the host" if device < 0 else "cuda:%d" % device


def as_numpy(x: Any, what: str) -> Any:
    """A NumPy view of an array-like object, without a copy where the object
    exposes its memory (array interface, buffer protocol)."""
    if np is None:
        raise RunError("%s is a %s; without NumPy installed attnc takes torch "
                       "tensors only" % (what, type(x).__name__))
    try:
        a = np.asarray(x)
    except Exception as e:  # whatever the object raises: report it as ours
        raise RunError("%s: cannot read a %s as an array (%s)"
                       % (what, type(x).__name__, e)) from None
    if a.dtype == object:
        raise RunError("%s: cannot read a %s as an array" % (what, type(x).__name__))
    return a


def scalar_value(x: Any, name: str) -> Optional[float]:
    """A Python number (bool, int, float, NumPy scalar, 0-d array) as the
    double the C API takes; None when ``x`` is not a scalar."""
    if isinstance(x, (bool, int, float)):
        return float(x)
    if np is not None and isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return float(x)
    return None
