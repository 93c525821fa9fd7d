"""Kernels: a variant compiled once per source, specialised per (target,
dtype, head dims) on first use, called on NumPy arrays or torch tensors.

The call path is built for a small host cost: the argument descriptors of
a call are written with one ``struct.pack_into`` into a buffer that each
thread keeps per compiled kernel (with its ``attn_run_args``), pointers go
to ctypes as plain integers, the stream and the set of bound param names are
passed to the C API only when they change, and CUDA runs are queued
(``attn_run_args_set_async``) unless the kernel was compiled with
``synchronous=True``.
"""

import ctypes as C
import hashlib
import struct
import threading
import warnings
import weakref
from typing import (Any, Dict, List, Mapping, NamedTuple, Optional, Tuple,
                    Union)

from . import _arrays as arrays
from . import _capi as capi
from ._errors import (BackwardUnavailableError, Error, RunError,
                      UnavailableError)

TARGET_NAMES = {capi.TARGET_CPU: "cpu", capi.TARGET_NVPTX: "cuda"}


def _not_compiling() -> bool:
    return False


def _never_compiling() -> bool:
    return False


# torch.compiler.is_compiling once PyTorch is seen (see note_torch): True
# while Dynamo traces a call, which then goes to the torch.library custom op
# instead of the ctypes path.
_compiling = _not_compiling
_torch_module = None  # attnc._torch, once imported


def note_torch() -> bool:
    """Sets up the PyTorch integration when the program has imported torch
    (called by ``import attnc``, ``attnc.compile`` and the first call on a
    torch tensor). Returns True when torch is there."""
    global _compiling, _torch_module
    if not arrays.find_torch():
        return False
    if _compiling is _not_compiling:
        try:
            from . import _torch
            _torch.register()
            _torch_module = _torch
            _compiling = _torch.is_compiling
        except Exception as e:  # a torch this package does not know: eager only
            _compiling = _never_compiling
            warnings.warn("attnc: no torch.compile support with this PyTorch "
                          "(%s: %s); eager calls work" % (type(e).__name__, e))
    return True


class Param(NamedTuple):
    """One param of a variant, from its signature.

    ``dtype`` is the language's name (``"f32"``, ``"i32"``, ``"bool"``);
    ``shape`` has a size name (``"H"``), a literal extent or ``None`` (``?``)
    per dim, and is empty for scalars; ``default`` is a runtime scalar's
    default or a const param's value; ``declared_type`` is the type as
    written (``"f32[H]"``).
    """

    name: str
    dtype: str
    is_const: bool
    is_tensor: bool
    shape: Tuple[Union[str, int, None], ...]
    default: Optional[float]
    declared_type: str

    def __str__(self) -> str:
        text = "%s%s: %s" % ("const " if self.is_const else "", self.name,
                             self.declared_type)
        if self.default is not None:
            text += " = %g" % self.default
        return text


def _params_of(lib, handle: int) -> Tuple[Param, ...]:
    params = []
    info = capi.ParamInfo()
    for i in range(lib.kernel_num_params(handle)):
        lib.check(lib.kernel_param(handle, i, C.byref(info)))
        shape = []
        for d in range(info.rank):
            dim = info.dims[d]
            shape.append(capi.SIZE_NAMES[dim.value] if dim.kind == capi.DIM_SIZE
                         else dim.value if dim.kind == capi.DIM_LITERAL else None)
        params.append(Param(info.name.decode(), capi.DTYPE_LANG[info.dtype],
                            bool(info.is_const), bool(info.is_tensor),
                            tuple(shape),
                            info.value if info.has_value else None,
                            info.declared_type.decode()))
    return tuple(params)


class Runtime:
    """A kernel cache with its own settings; ``None`` (the default of
    ``compile``) is libattn's process-wide runtime, configured from the
    environment (``ATTN_CACHE``, ``ATTN_CACHE_DIR``,
    ``ATTN_CACHE_MAX_BYTES``).

    ``cache_dir`` ``None`` for the default folder, ``disk_cache=False`` to
    keep kernels in memory only, ``max_bytes`` 0 for the default cap.
    Kernels compiled by a runtime stay valid after it is gone.
    """

    def __init__(self, cache_dir: Optional[str] = None, disk_cache: bool = True,
                 max_bytes: int = 0):
        lib = capi.lib()
        handle = C.c_void_p()
        lib.check(lib.runtime_create_with_cache(
            cache_dir.encode() if cache_dir else None, int(bool(disk_cache)),
            int(max_bytes), C.byref(handle)))
        self._lib = lib
        self._handle = handle.value
        self.cache_dir = cache_dir
        self.disk_cache = bool(disk_cache)
        self.max_bytes = int(max_bytes)

    def stats(self) -> Dict[str, int]:
        """This runtime's counters: compiles, memory_hits, disk_hits,
        disk_writes, evictions, corrupt_entries."""
        return cache_stats(self)

    def clear_cache(self) -> None:
        """Empties the disk cache and forgets the kernels held in memory
        (kernels already handed out stay valid)."""
        self._lib.check(self._lib.runtime_clear_cache(self._handle))

    def __repr__(self) -> str:
        return "attnc.Runtime(cache_dir=%r, disk_cache=%r, max_bytes=%d)" % (
            self.cache_dir, self.disk_cache, self.max_bytes)

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            try:
                self._lib.runtime_destroy(handle)
            except Exception:  # interpreter shutdown: the library may be gone
                pass


def cache_stats(runtime: Optional[Runtime] = None) -> Dict[str, int]:
    """The kernel cache counters of ``runtime`` (default: the process-wide
    one) as a dict."""
    lib = capi.lib()
    s = capi.CacheStats()
    lib.check(lib.runtime_stats(runtime._handle if runtime else None,
                                C.byref(s)))
    return {name: getattr(s, name) for name, _ in capi.CacheStats._fields_}


# Layout of a thread's descriptor buffer: Q, K, V, O (rank 4), LSE (rank
# 3), then one block per tensor param (rank <= MAX_RANK). A block is an
# attn_tensor followed by its shape and strides.
MAX_RANK = 16
_BLOCK4 = "PiiPP4q4q"
_QKVO = struct.Struct("@" + _BLOCK4 * 4)
_QKVO_STEP = struct.calcsize("@" + _BLOCK4)
_LSE = struct.Struct("@PiiPP3q3q")
_LSE_AT = 4 * _QKVO_STEP
_PARAMS_AT = _LSE_AT + _LSE.size
_PARAM_STEP = capi.TENSOR_SIZE + 16 * MAX_RANK
_PARAM_STRUCTS = [struct.Struct("@PiiPP%dq%dq" % (r, r))
                  for r in range(MAX_RANK + 1)]


class _Slot:
    """One thread's run arguments and descriptor buffer for one kernel."""

    __slots__ = ("lib", "args", "buf", "mv", "base", "qkvo_ptrs", "lse_ptrs",
                 "capacity", "stream", "names")

    def __init__(self, lib, threads: int, asynchronous: bool, capacity: int):
        self.lib = lib
        handle = C.c_void_p()
        lib.check(lib.run_args_create(C.byref(handle)))
        self.args = handle.value
        if threads:
            lib.check(lib.run_args_set_threads(self.args, threads))
        if asynchronous:
            lib.check(lib.run_args_set_async(self.args, 1))
        self.stream = None
        self.names: Tuple[str, ...] = ()
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        """Room for `capacity` tensor params (the buffer is reallocated)."""
        self.capacity = capacity
        self.buf = (C.c_char * (_PARAMS_AT + capacity * _PARAM_STEP))()
        self.mv = memoryview(self.buf).cast("B")
        self.base = base = C.addressof(self.buf)
        ptrs = []
        for i in range(4):  # shape and strides pointers of Q, K, V, O
            at = base + i * _QKVO_STEP + capi.TENSOR_SIZE
            ptrs += [at, at + 32]
        self.qkvo_ptrs = ptrs
        at = base + _LSE_AT + capi.TENSOR_SIZE
        self.lse_ptrs = (at, at + 24)

    def __del__(self):
        args, self.args = getattr(self, "args", None), None
        if args:
            try:
                self.lib.run_args_destroy(args)
            except Exception:  # interpreter shutdown
                pass


_live_cuda_kernels: "weakref.WeakSet[CompiledKernel]" = weakref.WeakSet()


class CompiledKernel:
    """A variant compiled for one target, dtype and pair of head dims.

    Made by :meth:`Kernel.specialize` or by the first call that needs it;
    ``key`` is libattn's cache key (64 hex digits), ``target`` ``"cpu"`` or
    ``"cuda"``, ``dtype`` the element type of Q, K, V and O, ``head_dims``
    ``(D, Dv)`` (``(0, 0)`` for the CPU reference kernel, which takes any).
    """

    def __init__(self, lib, handle: int, target: int, head_dims: Tuple[int, int],
                 threads: int, synchronous: bool, tensor_params: int):
        self._lib = lib
        self._handle = handle
        self._target = target
        self.target = TARGET_NAMES[target]
        self.variant = lib.kernel_name(handle).decode()
        self.normalization = lib.kernel_normalization(handle).decode()
        self.key = lib.kernel_key(handle).decode()
        self._dtype = lib.kernel_dtype(handle)
        self.dtype = capi.DTYPE_NAMES[self._dtype]
        self.head_dims = head_dims
        self._threads = threads
        self._async = target == capi.TARGET_NVPTX and not synchronous
        self._tensor_params = tensor_params
        self._tls = threading.local()
        self._names: Dict[str, bytes] = {}
        if target == capi.TARGET_NVPTX:
            _live_cuda_kernels.add(self)

    def synchronize(self) -> None:
        """Waits for this kernel's queued CUDA runs and raises
        :class:`KernelError` if one found an error in its data (a param read
        out of range, an integer division by zero). Returns at once for CPU
        kernels and when no run is pending."""
        self._lib.check(self._lib.kernel_synchronize(self._handle))

    def __repr__(self) -> str:
        return ("<attnc.CompiledKernel %r target=%s dtype=%s head_dims=%s "
                "key=%s>" % (self.variant, self.target, self.dtype,
                             self.head_dims, self.key[:16]))

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            try:
                self._lib.kernel_release(handle)
            except Exception:  # interpreter shutdown
                pass

    def _new_slot(self, tensors: int) -> _Slot:
        slot = _Slot(self._lib, self._threads, self._async,
                     max(tensors, self._tensor_params))
        self._tls.slot = slot
        return slot

    def _launch(self, q, k, v, o, lse, params: Dict[str, Any], tensors: int,
                stream) -> None:
        """Runs on views (pointer, dtype, shape, strides, device) of Q, K,
        V, O (rank 4, checked by the caller) and LSE (rank 3) or None;
        ``params`` maps names to views or floats, ``tensors`` of them views."""
        try:
            slot = self._tls.slot
        except AttributeError:
            slot = self._new_slot(tensors)
        if tensors > slot.capacity:
            slot.grow(tensors)
        lib = self._lib
        p = slot.qkvo_ptrs
        _QKVO.pack_into(slot.mv, 0,
                        q[0], q[1], 4, p[0], p[1], *q[2], *q[3],
                        k[0], k[1], 4, p[2], p[3], *k[2], *k[3],
                        v[0], v[1], 4, p[4], p[5], *v[2], *v[3],
                        o[0], o[1], 4, p[6], p[7], *o[2], *o[3])
        base = slot.base
        lse_at = None
        if lse is not None:
            lp = slot.lse_ptrs
            _LSE.pack_into(slot.mv, _LSE_AT, lse[0], lse[1], 3, lp[0], lp[1],
                           *lse[2], *lse[3])
            lse_at = base + _LSE_AT
        args = slot.args
        status = lib.run_args_set_tensors(args, base, base + _QKVO_STEP,
                                          base + 2 * _QKVO_STEP,
                                          base + 3 * _QKVO_STEP, lse_at)
        if status:
            raise lib.error(status, False)
        if params or slot.names:
            names = tuple(params)
            if names != slot.names:
                lib.check(lib.run_args_clear_params(args))
                slot.names = names
            at = _PARAMS_AT
            for name, value in params.items():
                nb = self._names.get(name)
                if nb is None:
                    nb = self._names[name] = name.encode()
                if type(value) is float:
                    status = lib.run_args_set_scalar(args, nb, value)
                else:
                    r = len(value[2])
                    ptr = base + at + capi.TENSOR_SIZE
                    _PARAM_STRUCTS[r].pack_into(
                        slot.mv, at, value[0], value[1], r, ptr, ptr + 8 * r,
                        *value[2], *value[3])
                    status = lib.run_args_set_tensor(args, nb, base + at)
                    at += _PARAM_STEP
                if status:
                    raise lib.error(status, False)
        if stream is not None and stream != slot.stream:
            lib.check(lib.run_args_set_stream(args, stream))
            slot.stream = stream
        status = lib.kernel_run(self._handle, args)
        if status:
            raise lib.error(status, False)


def _parse_tiling(tiling: Any) -> Tuple[int, int, int]:
    if tiling is None or tiling == "auto":
        return (capi.TILING_AUTO, 0, 0)
    if tiling == "reference":
        return (capi.TILING_REFERENCE, 0, 0)
    if (isinstance(tiling, (tuple, list)) and len(tiling) == 2 and
            all(isinstance(t, int) and not isinstance(t, bool) for t in tiling)):
        return (capi.TILING_FIXED, tiling[0], tiling[1])
    raise TypeError("tiling must be 'auto', 'reference' or a pair of ints "
                    "(block_q, block_kv), got %r" % (tiling,))


_DTYPE_CODES = {"float32": capi.F32, "float16": capi.F16,
                "bfloat16": capi.BF16, "f32": capi.F32, "f16": capi.F16,
                "bf16": capi.BF16}


def _dtype_code(dtype: Any) -> int:
    if isinstance(dtype, str):
        name = dtype
    elif str(dtype).startswith("torch."):  # torch.float32
        name = str(dtype)[len("torch."):]
    else:  # numpy.float32, numpy.dtype("float16"), ...
        try:
            name = arrays.np.dtype(dtype).name
        except Exception:  # not a dtype NumPy knows (or no NumPy)
            name = None
    code = _DTYPE_CODES.get(name)
    if code is None:
        raise TypeError("dtype must be float32, float16 or bfloat16, got %r"
                        % (dtype,))
    return code


# Kernels by op id, for the torch.library op (which names its kernel by a
# string so that compiled graphs hold no Python object).
registry: "weakref.WeakValueDictionary[str, Kernel]" = weakref.WeakValueDictionary()


class Kernel:
    """An attention variant, ready to be called on arrays.

    Made by :func:`attnc.compile` or :func:`attnc.compile_file`. Calling it
    runs the variant::

        o = kernel(q, k, v, slopes=slopes)
        o, lse = kernel(q, k, v, slopes=slopes, return_lse=True)
        kernel(q, k, v, out=o, window=1024)

    ``q`` ``[B, H, Lq, D]``, ``k`` ``[B, Hkv, Lkv, D]`` and ``v``
    ``[B, Hkv, Lkv, Dv]`` are NumPy arrays (run on the CPU) or torch tensors
    (CPU tensors on the CPU, CUDA tensors on GPU 0, on the current stream).
    They are read in place, with their strides; the dtype (float32,
    float16; bfloat16 on CUDA) and the head dims pick the compiled kernel,
    compiled on first use and cached (``compiled``). The variant's runtime
    params are keyword arguments: arrays/tensors for tensor params, numbers
    for scalar params (omitted scalars take their declared defaults); a
    param whose name clashes with ``out``, ``return_lse`` or ``params`` goes
    in ``params={...}``. Returns ``O`` ``[B, H, Lq, Dv]`` of Q's dtype, and
    with ``return_lse=True`` also the float32 log-sum-exp ``[B, H, Lq]``
    (softmax variants only). ``out`` is a preallocated O (or, with
    ``return_lse=True``, a pair ``(o, lse)``), written in place and
    returned.

    Raises :class:`RunError` for arguments that do not fit,
    :class:`KernelError` when the kernel finds an error in the data,
    :class:`UnavailableError` when the target is missing, and
    :class:`BackwardUnavailableError` when a torch input requires grad
    while grad mode is on (libattn has no backward kernels yet).
    """

    def __init__(self, source: str, path: Optional[str], variant: Optional[str],
                 consts: Mapping[str, float], tiling: Any, threads: int,
                 synchronous: bool, runtime: Optional[Runtime]):
        if not isinstance(threads, int) or threads < 0:
            raise TypeError("threads must be an int >= 0, got %r" % (threads,))
        self._lib = lib = capi.lib()
        self.source = source
        self.path = path
        self._variant = variant
        self._consts = {}
        for name, value in consts.items():
            v = arrays.scalar_value(value, name)
            if v is None:
                raise TypeError("const param %s must be a number, got %r"
                                % (name, value))
            self._consts[name] = v
        self._tiling = _parse_tiling(tiling)
        self.tiling = tiling if tiling is not None else "auto"
        self.threads = threads
        self.synchronous = bool(synchronous)
        self.runtime = runtime
        # Compiled kernels by (target, dtype, D, Dv); _lookup also maps the
        # head dims of calls that share one (the reference kernel's).
        self._instances: Dict[Tuple[int, int, int, int], CompiledKernel] = {}
        self._lookup: Dict[Tuple[int, int, int, int], CompiledKernel] = {}
        self._what: Dict[str, str] = {}
        self._lock = threading.Lock()
        # The signature: the CPU reference kernel compiles in ~0.1 s and
        # reports every error of the source, variant name and consts now.
        probe = self._compile(capi.TARGET_CPU, capi.F32, 0, 0,
                              (capi.TILING_REFERENCE, 0, 0), from_path=path)
        try:
            self.name = lib.kernel_name(probe).decode()
            self.normalization = lib.kernel_normalization(probe).decode()
            self.defines_lse = bool(lib.kernel_defines_lse(probe))
            self.params = _params_of(lib, probe)
        finally:
            lib.kernel_release(probe)
        self.consts = {p.name: p.default for p in self.params if p.is_const}
        self._runtime_params = tuple(p for p in self.params if not p.is_const)
        self._tensor_params = sum(p.is_tensor for p in self._runtime_params)
        identity = repr((source, self.name, sorted(self._consts.items()),
                         self._tiling, threads, self.synchronous,
                         (runtime.cache_dir, runtime.disk_cache,
                          runtime.max_bytes) if runtime else None))
        self.op_id = "%s-%s" % (self.name, hashlib.sha256(
            identity.encode()).hexdigest()[:20])
        registry[self.op_id] = self
        note_torch()

    def _compile(self, target: int, dtype: int, d: int, dv: int,
                 tiling: Tuple[int, int, int], from_path: Optional[str] = None) -> int:
        lib = self._lib
        opts = C.c_void_p()
        lib.check(lib.compile_options_create(C.byref(opts)), True)
        try:
            o = opts.value
            lib.check(lib.compile_options_set_target(o, target), True)
            lib.check(lib.compile_options_set_dtype(o, dtype), True)
            if self._variant is not None:
                lib.check(lib.compile_options_set_variant(
                    o, self._variant.encode()), True)
            for name, value in self._consts.items():
                lib.check(lib.compile_options_set_const(o, name.encode(), value),
                          True)
            lib.check(lib.compile_options_set_tiling(o, *tiling), True)
            if d or dv:
                lib.check(lib.compile_options_set_head_dims(o, d, dv), True)
            handle = C.c_void_p()
            rt = self.runtime._handle if self.runtime else None
            if from_path is not None:
                status = lib.compile_file(rt, from_path.encode(), o,
                                          C.byref(handle))
            else:
                status = lib.compile(rt, self.source.encode(), o, C.byref(handle))
            lib.check(status, True)
            return handle.value
        finally:
            lib.compile_options_destroy(opts)

    def specialize(self, target: str = "cpu", dtype: Any = "float32",
                   head_dim: int = 0, value_dim: Optional[int] = None
                   ) -> CompiledKernel:
        """The kernel for ``target`` (``"cpu"`` or ``"cuda"``), ``dtype`` and
        head dims (``value_dim`` defaults to ``head_dim``), compiled now if
        no call compiled it yet: a warm-up before timing, or a check that a
        target is available. Calls with matching tensors use it."""
        code = {"cpu": capi.TARGET_CPU, "cuda": capi.TARGET_NVPTX,
                "nvptx": capi.TARGET_NVPTX}.get(target)
        if code is None:
            raise ValueError("target must be 'cpu' or 'cuda', got %r" % (target,))
        dv = head_dim if value_dim is None else value_dim
        return self._instance(code, _dtype_code(dtype), head_dim, dv)

    def _instance(self, target: int, dtype: int, d: int, dv: int) -> CompiledKernel:
        asked = (target, dtype, d, dv)
        if target == capi.TARGET_CPU and self._tiling[0] == capi.TILING_REFERENCE:
            d = dv = 0  # the reference kernel takes any head dims
        key = (target, dtype, d, dv)
        inst = self._instances.get(key)
        if inst is not None:
            self._lookup[asked] = inst
            return inst
        if dtype not in (capi.F32, capi.F16, capi.BF16):
            raise RunError("Q has dtype %s; Q, K, V and O take float32, float16 "
                           "or bfloat16 (CUDA only)" % capi.DTYPE_NAMES[dtype])
        if target == capi.TARGET_CPU and dtype == capi.BF16:
            raise UnavailableError("bfloat16 runs on CUDA only; on the CPU use "
                                   "float32 or float16")
        with self._lock:
            inst = self._instances.get(key)
            if inst is None:
                handle = self._compile(target, dtype, d, dv, self._tiling)
                inst = CompiledKernel(self._lib, handle, target, (d, dv),
                                      self.threads, self.synchronous,
                                      self._tensor_params)
                self._instances[key] = inst
            self._lookup[asked] = inst
        return inst

    @property
    def compiled(self) -> List[CompiledKernel]:
        """The kernels compiled so far (one per target, dtype, head dims)."""
        return list(self._instances.values())

    def synchronize(self) -> None:
        """Waits for the queued CUDA runs of this variant's kernels and raises
        :class:`KernelError` for an error one of them found in its data."""
        for inst in self.compiled:
            inst.synchronize()

    def __repr__(self) -> str:
        params = ", ".join(str(p) for p in self.params)
        text = "<attnc.Kernel %r (%s) params=(%s)" % (self.name,
                                                     self.normalization, params)
        if self._instances:
            text += " compiled=[%s]" % ", ".join(
                "%s %s D=%d Dv=%d key=%s" % (i.target, i.dtype, i.head_dims[0],
                                            i.head_dims[1], i.key[:16])
                for i in self._instances.values())
        return text + ">"

    def __call__(self, q: Any, k: Any, v: Any, *, out: Any = None,
                 return_lse: bool = False,
                 params: Optional[Mapping[str, Any]] = None, **kwargs: Any):
        if params:
            clash = set(params) & set(kwargs)
            if clash:
                raise RunError("param %s given twice (in params= and as a "
                               "keyword)" % ", ".join(sorted(clash)))
            kwargs.update(params)
        if _compiling():  # no import here: Dynamo traces this code
            return _torch_module.traced_call(self, q, k, v, out, return_lse,
                                             kwargs)
        if type(q) is arrays.ndarray:
            return self._call_host(q, k, v, out, return_lse, kwargs)
        if arrays.is_torch(q):
            if _compiling is _not_compiling:
                note_torch()
            return self._call_torch(q, k, v, out, return_lse, kwargs)
        return self._call_host(arrays.as_numpy(q, "Q"), k, v, out, return_lse,
                               kwargs)

    def _params(self, kwargs: Dict[str, Any], device: int, keep: List[Any]
                ) -> Tuple[Dict[str, Any], int]:
        """Views of tensor params (on ``device``) and floats of scalars."""
        out: Dict[str, Any] = {}
        tensors = 0
        for name, x in kwargs.items():
            what = self._what.get(name) or self._what.setdefault(
                name, "param '%s'" % name)
            if type(x) is arrays.ndarray:
                view = arrays.numpy_view(x, what)
            elif arrays.is_torch(x):
                view = arrays.torch_view(x, what)
            else:
                value = arrays.scalar_value(x, name)
                if value is not None:
                    out[name] = value
                    continue
                if x is None or isinstance(x, (str, bytes)):
                    raise RunError("%s must be a number or an array, got %s"
                                   % (what, type(x).__name__))
                a = arrays.as_numpy(x, what)
                keep.append(a)
                view = arrays.numpy_view(a, what)
            if view[4] != device:
                raise RunError("%s is on %s but Q is on %s" % (
                    what, arrays.device_name(view[4]),
                    arrays.device_name(device)))
            if len(view[2]) > MAX_RANK:
                raise RunError("%s has rank %d; attnc takes at most %d"
                               % (what, len(view[2]), MAX_RANK))
            out[name] = view
            tensors += 1
        return out, tensors

    def _call_host(self, q, k, v, out, return_lse, kwargs):
        """NumPy arrays (and array-likes) on the CPU."""
        ndarray = arrays.ndarray
        if type(k) is not ndarray:
            k = arrays.as_numpy(k, "K")
        if type(v) is not ndarray:
            v = arrays.as_numpy(v, "V")
        view = arrays.numpy_view
        qv = view(q, "Q")
        kv = view(k, "K")
        vv = view(v, "V")
        qs, vs = qv[2], vv[2]
        if len(qs) != 4 or len(kv[2]) != 4 or len(vs) != 4:
            _rank_error(qv, kv, vv)
        B, H, Lq, D = qs
        Dv = vs[3]
        inst = self._lookup.get((capi.TARGET_CPU, qv[1], D, Dv)) or \
            self._instance(capi.TARGET_CPU, qv[1], D, Dv)
        lse = lv = None
        if type(out) is tuple:
            out, lse = _split_out(out, return_lse)
        if out is None:
            out = arrays.np.empty((B, H, Lq, Dv), dtype=q.dtype)
            ov = view(out, "out")
        else:
            ov = arrays.numpy_out_view(out, "out")
            if len(ov[2]) != 4:
                _rank_error(ov=ov)
        if return_lse:
            if lse is None:
                lse = arrays.np.empty((B, H, Lq), dtype=arrays.np.float32)
                lv = view(lse, "LSE")
            else:
                lv = arrays.numpy_out_view(lse, "the LSE out")
        if kwargs:
            keep: List[Any] = []
            params, tensors = self._params(kwargs, -1, keep)
        else:
            params, tensors = _NO_PARAMS, 0
        inst._launch(qv, kv, vv, ov, lv, params, tensors, None)
        return (out, lse) if return_lse else out

    def _call_torch(self, q, k, v, out, return_lse, kwargs, check_grad=True):
        """torch tensors: CPU tensors on the CPU, CUDA tensors on GPU 0.
        ``check_grad`` False: the caller (the custom op) handled autograd."""
        torch = arrays.torch
        tensor = arrays.torch_tensor
        if not (isinstance(k, tensor) and isinstance(v, tensor)):
            raise RunError("Q is a torch tensor, so K and V must be too (got %s "
                           "and %s)" % (type(k).__name__, type(v).__name__))
        # Where autograd plugs in: once libattn has backward kernels, calls
        # that need gradients go through the custom op's registered autograd
        # formula (attnc/_torch.py) instead of failing here.
        if check_grad and (q.requires_grad or k.requires_grad or
                           v.requires_grad) and torch.is_grad_enabled():
            raise _no_backward(self.name)
        view = arrays.torch_view
        qv = view(q, "Q")
        kv = view(k, "K")
        vv = view(v, "V")
        dev = qv[4]
        if kv[4] != dev or vv[4] != dev:
            raise RunError("Q, K and V must be on one device, got %s, %s and %s"
                           % (q.device, k.device, v.device))
        qs, vs = qv[2], vv[2]
        if len(qs) != 4 or len(kv[2]) != 4 or len(vs) != 4:
            _rank_error(qv, kv, vv)
        B, H, Lq, D = qs
        Dv = vs[3]
        if dev < 0:
            target, stream = capi.TARGET_CPU, None
        else:
            if dev != 0:
                raise RunError("attnc runs CUDA kernels on GPU 0 (cuda:0); the "
                               "tensors are on cuda:%d (CUDA_VISIBLE_DEVICES "
                               "picks which GPU is 0)" % dev)
            target = capi.TARGET_NVPTX
            stream = _current_stream(torch, dev)
        inst = self._lookup.get((target, qv[1], D, Dv)) or \
            self._instance(target, qv[1], D, Dv)
        lse = lv = None
        if type(out) is tuple:
            out, lse = _split_out(out, return_lse)
        if out is None:
            out = q.new_empty((B, H, Lq, Dv))
            ov = view(out, "out")
        else:
            ov = arrays.torch_out_view(out, "out", dev)
            if len(ov[2]) != 4:
                _rank_error(ov=ov)
        if return_lse:
            if lse is None:
                lse = q.new_empty((B, H, Lq), dtype=torch.float32)
                lv = view(lse, "LSE")
            else:
                lv = arrays.torch_out_view(lse, "the LSE out", dev)
        if kwargs:
            keep: List[Any] = []
            params, tensors = self._params(kwargs, dev, keep)
            if check_grad and tensors and torch.is_grad_enabled() and any(
                    getattr(x, "requires_grad", False) for x in kwargs.values()):
                raise _no_backward(self.name)
        else:
            params, tensors = _NO_PARAMS, 0
        inst._launch(qv, kv, vv, ov, lv, params, tensors, stream)
        return (out, lse) if return_lse else out


_NO_PARAMS: Dict[str, Any] = {}


def _rank_error(qv=None, kv=None, vv=None, ov=None):
    for what, view in (("Q", qv), ("K", kv), ("V", vv), ("O", ov)):
        if view is not None and len(view[2]) != 4:
            raise RunError("%s must have rank 4 ([B, H%s, %s, %s]), got shape %s"
                           % (what, "kv" if what in "KV" else "",
                              "Lq" if what in "QO" else "Lkv",
                              "Dv" if what in "VO" else "D", tuple(view[2])))


def _split_out(out: tuple, return_lse: bool):
    if not return_lse or len(out) != 2:
        raise RunError("out=(o, lse) preallocates both outputs and needs "
                       "return_lse=True; pass out=o for O alone")
    return out


def _no_backward(name: str) -> BackwardUnavailableError:
    return BackwardUnavailableError(
        "variant '%s': an input requires grad, but attnc has no backward "
        "kernels yet (the C API is forward-only); run it under "
        "torch.no_grad() or torch.inference_mode(), or pass detached tensors"
        % name)


_raw_stream = None


def _current_stream(torch, device: int) -> int:
    """The current CUDA stream of ``device`` as a CUstream integer."""
    global _raw_stream
    if _raw_stream is None:
        # torch's C binding returns the handle without building a Stream
        # object; fall back to the public API where it is missing.
        fast = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        _raw_stream = fast if fast is not None else (
            lambda d: torch.cuda.current_stream(d).cuda_stream)
    return _raw_stream(device)


def synchronize() -> None:
    """Waits for every queued CUDA run of every live kernel and raises
    :class:`KernelError` for the first error one found in its data."""
    first: Optional[Error] = None
    for inst in list(_live_cuda_kernels):
        try:
            inst.synchronize()
        except Error as e:
            first = first or e
    if first is not None:
        raise first


def kernels_by_id(op_id: str) -> Kernel:
    kernel = registry.get(op_id)
    if kernel is None:
        raise RunError("no live attnc kernel has the id %r (a compiled graph "
                       "outlived its kernel, or came from another process's "
                       "cache: compile the variant with attnc.compile first)"
                       % op_id)
    return kernel
