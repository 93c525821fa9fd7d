"""The exceptions attnc raises.

Every failure of libattn's C API comes back as an ``attn_status`` and a
message; they become one of these classes, all derived from
:class:`attnc.Error`. Python argument mistakes (a wrong rank, a NumPy dtype
that has no attnc equivalent, tensors on different devices) raise
:class:`RunError` too, so one ``except attnc.RunError`` catches every
"these arguments do not fit this kernel" case.
"""

import re
from typing import List, NamedTuple, Optional

# attn_status codes (attn/attn_types.h).
STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_COMPILE = 2
STATUS_UNAVAILABLE = 3
STATUS_KERNEL = 4
STATUS_IO = 5
STATUS_INTERNAL = 6
STATUS_OUT_OF_MEMORY = 7

STATUS_NAMES = {
    STATUS_OK: "ok",
    STATUS_INVALID_ARGUMENT: "invalid argument",
    STATUS_COMPILE: "compile error",
    STATUS_UNAVAILABLE: "unavailable",
    STATUS_KERNEL: "kernel error",
    STATUS_IO: "i/o error",
    STATUS_INTERNAL: "internal error",
    STATUS_OUT_OF_MEMORY: "out of memory",
}


class Diagnostic(NamedTuple):
    """One located diagnostic of a compile error: ``file:line:col: severity: message``."""

    file: str
    line: int
    column: int
    severity: str
    message: str


_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\n]*?):(?P<line>\d+):(?P<col>\d+): "
    r"(?P<sev>error|warning|note): (?P<msg>.*)$", re.M)


def parse_diagnostics(text: str) -> List[Diagnostic]:
    """The located diagnostics in a compiler message, in order."""
    return [Diagnostic(m.group("file"), int(m.group("line")),
                       int(m.group("col")), m.group("sev"), m.group("msg"))
            for m in _DIAGNOSTIC.finditer(text)]


class Error(Exception):
    """Base class of every attnc error.

    ``message`` is libattn's text (for compile errors: the located
    diagnostics with the source line and a caret), ``status`` the name of the
    C API's status code (``"invalid argument"``, ...) or ``None`` for errors
    found by the Python package itself.
    """

    def __init__(self, message: str, status: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status


class LibraryError(Error, ImportError):
    """libattn could not be found or loaded (see ``ATTNC_LIBRARY``)."""


class CompileError(Error):
    """The source, variant name, const params or compile options were rejected.

    ``diagnostics`` holds the located diagnostics (file, line, column,
    severity, message); ``str(err)`` is the whole text, with each diagnostic's
    source line and caret::

        <source>:3:19: error: unknown name 'slope'; did you mean 'slopes'?
          score = score + slope[h];
                          ^
    """

    def __init__(self, message: str, status: Optional[str] = None):
        super().__init__(message, status)
        self.diagnostics = parse_diagnostics(message)

    @property
    def line(self) -> Optional[int]:
        """The line of the first diagnostic, if the message has one."""
        return self.diagnostics[0].line if self.diagnostics else None

    @property
    def column(self) -> Optional[int]:
        """The column of the first diagnostic, if the message has one."""
        return self.diagnostics[0].column if self.diagnostics else None


class FileError(CompileError, OSError):
    """``compile_file`` could not read its file."""


class RunError(Error, ValueError):
    """The tensors or params of a call do not fit the kernel (shapes, dtypes,
    devices, unknown or missing params, values out of range)."""


class KernelError(RunError):
    """The kernel stopped on something in the data: a tensor param indexed out
    of its shape, an integer division by zero. The outputs are unspecified.
    For asynchronous CUDA runs it is raised by ``Kernel.synchronize()`` or by
    the kernel's next synchronous run."""


class UnavailableError(Error):
    """The target is not available here (no CUDA driver or GPU for CUDA
    tensors, bfloat16 on the CPU)."""


class BackwardUnavailableError(Error, NotImplementedError):
    """Gradients were asked for (an input requires grad while grad mode is on),
    but libattn has no backward kernels yet: run the forward under
    ``torch.no_grad()`` or pass detached tensors."""


class InternalError(Error):
    """A bug in attnc; please report it with the message."""


def error_for(status: int, message: str, at_compile: bool) -> Error:
    """The exception for a failed C API call with ``status`` and ``message``;
    ``at_compile`` picks the class of an ``invalid argument`` (an unknown
    variant or const is a compile error, a bad shape a run error)."""
    name = STATUS_NAMES.get(status, "status %d" % status)
    if status == STATUS_COMPILE:
        return CompileError(message, name)
    if status == STATUS_IO:
        return FileError(message, name)
    if status == STATUS_INVALID_ARGUMENT:
        return (CompileError if at_compile else RunError)(message, name)
    if status == STATUS_KERNEL:
        return KernelError(message, name)
    if status == STATUS_UNAVAILABLE:
        return UnavailableError(message, name)
    if status == STATUS_OUT_OF_MEMORY:
        return Error(message, name)
    return InternalError(message, name)
