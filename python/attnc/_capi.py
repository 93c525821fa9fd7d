"""ctypes declarations of libattn's C API (attn/attn.h) and the library search.

The library is loaded on first use, not at import, so ``import attnc``
works on any machine and ``ATTNC_LIBRARY`` may be set after the import.
Where it is looked for, first match wins:

1. ``$ATTNC_LIBRARY``: the path of a ``libattn.so`` (a developer's build);
2. ``attnc/_lib/libattn.so`` inside the installed package (the wheel bundles
   it there);
3. ``build/lib/libattn.so`` of the checkout that holds this file, when the
   package is used straight from ``python/`` (``PYTHONPATH=python`` or an
   editable install);
4. the dynamic loader's search path (``LD_LIBRARY_PATH``, ldconfig).
"""

import ctypes as C
import os
import struct
import threading
from typing import List, Optional

from ._errors import LibraryError, error_for

# attn_dtype codes.
F32, F16, I32, BOOL, BF16 = 0, 1, 2, 3, 4
DTYPE_NAMES = {F32: "float32", F16: "float16", I32: "int32", BOOL: "bool",
               BF16: "bfloat16"}
DTYPE_ITEMSIZE = {F32: 4, F16: 2, I32: 4, BOOL: 1, BF16: 2}
# Short names as the language writes them (param dtypes).
DTYPE_LANG = {F32: "f32", F16: "f16", I32: "i32", BOOL: "bool", BF16: "bf16"}

TARGET_CPU, TARGET_NVPTX = 0, 1
TILING_AUTO, TILING_REFERENCE, TILING_FIXED = 0, 1, 2
DIM_SIZE, DIM_LITERAL, DIM_DYNAMIC = 0, 1, 2
SIZE_NAMES = ("B", "H", "Hkv", "Lq", "Lkv", "D", "Dv")


class Tensor(C.Structure):
    """attn_tensor: a strided view (strides in elements)."""
    _fields_ = [("data", C.c_void_p), ("dtype", C.c_int), ("rank", C.c_int32),
                ("shape", C.POINTER(C.c_int64)),
                ("strides", C.POINTER(C.c_int64))]


# The packed form of one attn_tensor, written with struct.pack_into on the
# call path: data, dtype, rank, shape pointer, strides pointer.
TENSOR_FORMAT = "PiiPP"
TENSOR_SIZE = C.sizeof(Tensor)
assert struct.calcsize("@" + TENSOR_FORMAT) == TENSOR_SIZE


class Dim(C.Structure):
    _fields_ = [("kind", C.c_int), ("value", C.c_int64)]


class ParamInfo(C.Structure):
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int), ("is_const", C.c_int),
                ("is_tensor", C.c_int), ("rank", C.c_int32),
                ("dims", C.POINTER(Dim)), ("has_value", C.c_int),
                ("value", C.c_double), ("declared_type", C.c_char_p)]


class CacheStats(C.Structure):
    _fields_ = [("compiles", C.c_uint64), ("memory_hits", C.c_uint64),
                ("disk_hits", C.c_uint64), ("disk_writes", C.c_uint64),
                ("evictions", C.c_uint64), ("corrupt_entries", C.c_uint64)]


_VP = C.c_void_p
_PVP = C.POINTER(C.c_void_p)
# name: (restype, argtypes); pointers to our own buffers are passed as
# integers (c_void_p), which ctypes converts fastest.
_FUNCTIONS = {
    "attn_last_error": (C.c_char_p, []),
    "attn_version": (C.c_char_p, []),
    "attn_status_name": (C.c_char_p, [C.c_int]),
    "attn_runtime_create": (C.c_int, [_PVP]),
    "attn_runtime_create_with_cache": (C.c_int, [C.c_char_p, C.c_int,
                                                 C.c_uint64, _PVP]),
    "attn_runtime_destroy": (None, [_VP]),
    "attn_runtime_stats": (C.c_int, [_VP, C.POINTER(CacheStats)]),
    "attn_runtime_clear_cache": (C.c_int, [_VP]),
    "attn_compile_options_create": (C.c_int, [_PVP]),
    "attn_compile_options_destroy": (None, [_VP]),
    "attn_compile_options_set_target": (C.c_int, [_VP, C.c_int]),
    "attn_compile_options_set_dtype": (C.c_int, [_VP, C.c_int]),
    "attn_compile_options_set_variant": (C.c_int, [_VP, C.c_char_p]),
    "attn_compile_options_set_const": (C.c_int, [_VP, C.c_char_p, C.c_double]),
    "attn_compile_options_set_tiling": (C.c_int, [_VP, C.c_int, C.c_int64,
                                                  C.c_int64]),
    "attn_compile_options_set_head_dims": (C.c_int, [_VP, C.c_int64,
                                                     C.c_int64]),
    "attn_compile": (C.c_int, [_VP, C.c_char_p, _VP, _PVP]),
    "attn_compile_file": (C.c_int, [_VP, C.c_char_p, _VP, _PVP]),
    "attn_kernel_release": (None, [_VP]),
    "attn_kernel_name": (C.c_char_p, [_VP]),
    "attn_kernel_normalization": (C.c_char_p, [_VP]),
    "attn_kernel_key": (C.c_char_p, [_VP]),
    "attn_kernel_dtype": (C.c_int, [_VP]),
    "attn_kernel_defines_lse": (C.c_int, [_VP]),
    "attn_kernel_num_params": (C.c_size_t, [_VP]),
    "attn_kernel_param": (C.c_int, [_VP, C.c_size_t, C.POINTER(ParamInfo)]),
    "attn_run_args_create": (C.c_int, [_PVP]),
    "attn_run_args_destroy": (None, [_VP]),
    "attn_run_args_set_tensors": (C.c_int, [_VP, _VP, _VP, _VP, _VP, _VP]),
    "attn_run_args_set_scalar": (C.c_int, [_VP, C.c_char_p, C.c_double]),
    "attn_run_args_set_tensor": (C.c_int, [_VP, C.c_char_p, _VP]),
    "attn_run_args_clear_params": (C.c_int, [_VP]),
    "attn_run_args_set_threads": (C.c_int, [_VP, C.c_int]),
    "attn_run_args_set_stream": (C.c_int, [_VP, _VP]),
    "attn_run_args_set_async": (C.c_int, [_VP, C.c_int]),
    "attn_kernel_run": (C.c_int, [_VP, _VP]),
    "attn_kernel_synchronize": (C.c_int, [_VP]),
}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LIBRARY_NAME = "libattn.so"


def candidate_paths() -> List[str]:
    """Where the library is looked for, in order (see the module docstring);
    the last entry is a bare name for the dynamic loader."""
    paths = []
    env = os.environ.get("ATTNC_LIBRARY")
    if env:
        return [env]
    paths.append(os.path.join(_PACKAGE_DIR, "_lib", LIBRARY_NAME))
    checkout = os.path.dirname(os.path.dirname(_PACKAGE_DIR))
    paths.append(os.path.join(checkout, "build", "lib", LIBRARY_NAME))
    paths.append(LIBRARY_NAME)
    return paths


class _Library:
    """The loaded library: its functions as attributes."""

    def __init__(self, path: str, cdll: C.CDLL):
        self.path = path
        self.cdll = cdll
        for name, (restype, argtypes) in _FUNCTIONS.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                raise LibraryError(
                    "%s does not export %s: it is not a libattn of this "
                    "package's version (rebuild it, or point ATTNC_LIBRARY "
                    "at a current build)" % (path, name)) from None
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name[len("attn_"):], fn)

    def error(self, status: int, at_compile: bool):
        """The exception for a failed call (message of this thread)."""
        text = self.last_error()
        return error_for(status, text.decode("utf-8", "replace") if text else "",
                         at_compile)

    def check(self, status: int, at_compile: bool = False) -> None:
        if status != 0:
            raise self.error(status, at_compile)


_lock = threading.Lock()
_library: Optional[_Library] = None


def lib() -> _Library:
    """The library, loaded on first call; raises LibraryError with every
    place tried when it cannot be found."""
    global _library
    if _library is not None:
        return _library
    with _lock:
        if _library is not None:
            return _library
        tried = []
        for path in candidate_paths():
            if os.sep in path and not os.path.exists(path):
                tried.append("%s (no such file)" % path)
                continue
            try:
                cdll = C.CDLL(path)
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
                continue
            real = path
            if os.sep not in path:
                real = _loaded_path(cdll) or path
            _library = _Library(real, cdll)
            return _library
        raise LibraryError(
            "cannot load libattn; tried: " + "; ".join(tried) +
            ". Build it (ninja -C build libattn) and install the package "
            "(see docs/python.md), or set ATTNC_LIBRARY to its path.")


def _loaded_path(cdll: C.CDLL) -> Optional[str]:
    """The file the dynamic loader picked for a library opened by name."""
    try:
        addr = C.cast(cdll.attn_version, C.c_void_p).value

        class DlInfo(C.Structure):
            _fields_ = [("dli_fname", C.c_char_p), ("dli_fbase", C.c_void_p),
                        ("dli_sname", C.c_char_p), ("dli_saddr", C.c_void_p)]
        info = DlInfo()
        libdl = C.CDLL(None)
        if libdl.dladdr(C.c_void_p(addr), C.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    except (AttributeError, OSError):
        pass
    return None
