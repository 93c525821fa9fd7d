"""attnc: attention variants written in the .attn language, compiled by
libattn and called on NumPy arrays and PyTorch tensors.

    import attnc
    alibi = attnc.compile_file("examples/alibi.attn", variant="alibi")
    o = alibi(q, k, v, slopes=slopes)            # numpy or torch (CPU/CUDA)
    o, lse = alibi(q, k, v, slopes=slopes, return_lse=True)

A pure-Python binding (ctypes) over libattn's C API: it loads under any
CPython 3.8+, imports without NumPy, PyTorch or a GPU, and finds libattn
next to the package, in a checkout's ``build/lib``, or at
``$ATTNC_LIBRARY``. See docs/python.md.
"""

import os
from typing import Any, Mapping, Optional

from ._capi import lib as _lib
from ._errors import (BackwardUnavailableError, CompileError, Diagnostic,
                      Error, FileError, InternalError, KernelError,
                      LibraryError, RunError, UnavailableError)
from ._kernel import (CompiledKernel, Kernel, Param, Runtime, cache_stats,
                      note_torch, synchronize)

__version__ = "0.1.0"

__all__ = [
    "compile", "compile_file", "Kernel", "CompiledKernel", "Param", "Runtime",
    "cache_stats", "synchronize", "version", "library_path", "Error",
    "CompileError", "FileError", "RunError", "KernelError",
    "UnavailableError", "BackwardUnavailableError", "LibraryError",
    "InternalError", "Diagnostic",
]


def compile(source: str, variant: Optional[str] = None, *,
            tiling: Any = "auto", threads: int = 0, synchronous: bool = False,
            runtime: Optional[Runtime] = None,
            consts: Optional[Mapping[str, float]] = None,
            **const_params: float) -> Kernel:
    """Compiles ``.attn`` source text into a callable :class:`Kernel`.

    ``variant`` names the ``attention`` block (needed when the source has
    several). ``const`` params take their values from keyword arguments
    (``attnc.compile(src, cap=30.0)``) or ``consts={...}`` (for names that
    clash with the options); each value is part of the kernel's identity.
    Options: ``tiling`` (CPU kernels) ``"auto"`` (the tiled, multi-threaded
    kernel for the head dims of each call), ``"reference"`` (the
    single-threaded loop kernel, any head dims) or ``(block_q, block_kv)``;
    ``threads`` CPU worker threads (0: the kernel chooses);
    ``synchronous=True`` makes CUDA calls wait for the kernel (and report a
    data error at once) instead of queuing it; ``runtime`` a
    :class:`Runtime` (default: the process-wide kernel cache).

    The source, variant and consts are checked now (a CPU reference build,
    about 0.1 s, disk-cached): errors raise :class:`CompileError` with the
    located diagnostics (``<source>:LINE:COL: error: ...``, the line and a
    caret). Kernels for actual dtypes, head dims and targets are compiled
    on first use and cached.
    """
    if not isinstance(source, str):
        raise TypeError("source must be a str of .attn text, got %s"
                        % type(source).__name__)
    return Kernel(source, None, variant, _consts(consts, const_params),
                  tiling, threads, synchronous, runtime)


def compile_file(path: "os.PathLike[str] | str", variant: Optional[str] = None,
                 *, tiling: Any = "auto", threads: int = 0,
                 synchronous: bool = False, runtime: Optional[Runtime] = None,
                 consts: Optional[Mapping[str, float]] = None,
                 **const_params: float) -> Kernel:
    """Like :func:`compile`, for the ``.attn`` file at ``path``; diagnostics
    name the file. The text is read once: later edits of the file do not
    change the kernel. A missing file raises :class:`FileError` (an
    ``OSError``)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        raise FileError("%s: cannot read the file (%s)"
                        % (path, e.strerror or e), "i/o error") from None
    except UnicodeDecodeError as e:
        raise FileError("%s: not UTF-8 text (%s)" % (path, e), "i/o error") \
            from None
    return Kernel(source, path, variant, _consts(consts, const_params),
                  tiling, threads, synchronous, runtime)


def _consts(consts: Optional[Mapping[str, float]],
            const_params: Mapping[str, float]) -> Mapping[str, float]:
    merged = dict(consts or {})
    for name, value in const_params.items():
        if name in merged:
            raise TypeError("const param %s given twice (consts= and as a "
                            "keyword)" % name)
        merged[name] = value
    return merged


def version() -> str:
    """libattn's version line: "attnc 0.1 (build ..., LLVM 22.1.x)"."""
    return _lib().version().decode()


def library_path() -> str:
    """The path of the libattn that the package loaded (loading it now if
    no call did yet); raises :class:`LibraryError` when there is none."""
    return _lib().path


# A program that imported torch before attnc gets the torch.library op now,
# outside any torch.compile trace.
note_torch()
