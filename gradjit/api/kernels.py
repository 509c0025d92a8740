"""Differentiating ``numba.cuda.jit`` kernels (the kernel launch is the parallel
marker; Moses et al., "Reverse-Mode Automatic Differentiation and Optimization of
GPU Kernels via Enzyme", SC'21).

``df = gradjit.autodiff(kernel, mode, *activities)`` returns a
:class:`KernelDerivative`, launched like a Numba kernel, ``df[blocks, threads](...)``
(arguments expanded per activity as for :func:`gradjit.autodiff`), or run on the
CPU grid emulator with NumPy arrays, ``df.emulate[blocks, threads](...)``.
``gradjit.emulate(kernel)[blocks, threads](...)`` runs the primal kernel there.

Semantics: thread and block indices are inactive; shadows live in global memory;
in reverse mode every thread runs its augmented primal then its reverse sweep (with
a tape of its own) and ``+=`` into shadow memory is an atomic add; a
``cuda.syncthreads()`` is mirrored in the reverse sweep.

Launches on a device are asynchronous (the legacy default stream, or the stream
in ``df[blocks, threads, stream]``).  Array arguments and shadows must be distinct
memory where the kernel writes one of them (checked at each launch: ``ValueError``),
as the device code reads and reorders memory assuming so
(:mod:`gradjit.backend.schedule`).  Device launches take device arrays (``TypeError``
for NumPy arrays: use ``df.emulate``).
"""
from __future__ import annotations

import functools
import inspect
import threading

import numba
import numpy as np
from numba.core import types

from ..ad.driver import differentiate
from ..backend import cpu, cuda as cuda_backend, schedule
from ..errors import ActivityError, UnsupportedError
from ..frontend.cuda_capture import DEFAULT_CC, capture_kernel, kernel_py_func
from ..ir.reader import read_module
from . import activities as A
from .autodiff import plan_arguments


def typeof_value(v):
    """Numba type of a kernel argument (NumPy arrays, device arrays with
    ``__cuda_array_interface__``, scalars)."""
    if isinstance(v, np.ndarray):
        return numba.typeof(v)
    iface = getattr(v, "__cuda_array_interface__", None)
    if iface is not None:
        return _DeviceArg(iface).type
    if isinstance(v, tuple):
        return types.BaseTuple.from_types([typeof_value(e) for e in v])
    return _scalar_type(type(v)) if type(v) in _SCALARS else numba.typeof(v)


# types whose Numba type does not depend on the value (not int: 2**63 is uint64)
_SCALARS = (float, bool, np.float64, np.float32, np.int64, np.int32, np.bool_)


def _host_array_inside(v) -> bool:
    return isinstance(v, np.ndarray) or (isinstance(v, tuple) and any(map(_host_array_inside, v)))


@functools.lru_cache(maxsize=None)
def _scalar_type(cls):
    return numba.typeof(cls(0))


@functools.lru_cache(maxsize=None)
def _array_type(typestr, ndim, layout):
    return types.Array(numba.from_dtype(np.dtype(typestr)), ndim, layout)


class _DeviceArg:
    """A device array read once from its ``__cuda_array_interface__``: Numba type,
    flat kernel arguments (Numba's array model) and byte extent."""
    __slots__ = ("shape", "strides", "ptr", "item", "type")

    def __init__(self, iface):
        typestr = iface["typestr"]
        self.item = int(typestr[2:])
        self.shape = tuple(iface["shape"])
        self.ptr = iface["data"][0]
        strides = iface.get("strides")
        c_strides, acc = [], self.item
        for n in reversed(self.shape):
            c_strides.append(acc)
            acc *= n
        c_strides = tuple(reversed(c_strides))
        self.strides = c_strides if strides is None else tuple(strides)
        self.type = _array_type(typestr, len(self.shape),
                                "C" if self.strides == c_strides else "A")

    def flat(self):
        n = 1
        for d in self.shape:
            n *= d
        return [None, None, n, self.item, self.ptr, *self.shape, *self.strides]

    def extent(self):
        return schedule.byte_extent(self.ptr, self.shape, self.strides, self.item)


class _Config:
    def __init__(self, run, config):
        if not isinstance(config, tuple) or len(config) not in (2, 3):
            raise ValueError("launch configuration must be [blocks, threads] or "
                             "[blocks, threads, stream]")
        self.run, self.config = run, config

    def __call__(self, *args):
        grid, block = (_dims(self.config[0]), _dims(self.config[1]))
        stream = self.config[2] if len(self.config) == 3 else None
        return self.run(grid, block, stream, args)


def _dims(d):
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    if not 1 <= len(d) <= 3 or any(int(x) < 1 for x in d):
        raise ValueError(f"bad launch dimension {d!r}")
    return tuple(int(x) for x in d)


class _Indexer:
    def __init__(self, run):
        self.run = run

    def __getitem__(self, config):
        return _Config(self.run, config)


def _data_params(argtys):
    """``{argument position: flat index of its data pointer}`` for the top-level
    array arguments (Numba's array model: meminfo, parent, nitems, itemsize, data,
    shape..., strides...); empty when a tuple argument holds arrays (those could
    overlap the others unchecked, so no array is taken as distinct memory)."""
    if any(isinstance(t, types.BaseTuple) and _holds_array(t) for t in argtys):
        return {}
    out, k = {}, 0
    for pos, t in enumerate(argtys):
        if isinstance(t, types.Array):
            out[pos] = k + 4
        k += _flat_count(t)
    return out


def _holds_array(t):
    if isinstance(t, types.Array):
        return True
    return isinstance(t, types.BaseTuple) and any(_holds_array(e) for e in t)


def _flat_count(t):
    if isinstance(t, types.Array):
        return 5 + 2 * t.ndim
    if isinstance(t, types.BaseTuple):
        return sum(_flat_count(e) for e in t)
    return 1


class _Compiled:
    def __init__(self, text, entry, params, argtys):
        self.text, self.entry, self.params, self.argtys = text, entry, params, argtys
        self._emu = None
        self._ptx = {}
        self._device = None
        self.data_params = _data_params(argtys)
        assert all(params[i] == "ptr" for i in self.data_params.values()), "array model"
        self.written = None           # argument positions the kernel writes (after ptx())

    def emulator(self, call=None, has_retptr=False):
        if self._emu is None:
            self._emu = cuda_backend.Emulator(self.text, call or self.entry, self.params, has_retptr)
        return self._emu

    def ptx(self, cc=DEFAULT_CC):
        if cc not in self._ptx:
            ptx, written = cuda_backend.to_ptx(self.text, self.entry, cc,
                                               sorted(self.data_params.values()))
            self._ptx[cc] = ptx
            self.written = frozenset(p for p, i in self.data_params.items() if i in written)
        return self._ptx[cc]


class KernelDerivative:
    """Derivative of a CUDA kernel; see the module docstring."""

    def __init__(self, kernel, mode, acts, cc=DEFAULT_CC):
        self.kernel = kernel
        self.py_func = kernel_py_func(kernel)
        self.mode, self.activities, self.cc = mode, tuple(acts), tuple(cc)
        self.params = list(inspect.signature(self.py_func).parameters)
        for name, act in zip(self.params, acts):
            if act in (A.Active, A.ActiveOnly):
                raise ActivityError(f"argument '{name}': kernels cannot return gradients of "
                                    "scalars; pass it in a Duplicated one-element array")
        self._cache = {}
        self._lock = threading.RLock()

    def __repr__(self):
        return f"<gradjit kernel derivative of {self.py_func.__name__} ({self.mode})>"

    def compile(self, argtys) -> _Compiled:
        argtys = tuple(argtys)
        with self._lock:
            got = self._cache.get(argtys)
            if got is None:
                got = self._cache[argtys] = self._build(argtys)
            return got

    def _build(self, argtys):
        plan, primal_types = plan_arguments(self.py_func.__name__, self.params, self.activities,
                                            self.mode, argtys)
        if plan.seed:
            raise ActivityError("kernels return nothing: the derivative takes no seed")
        cap = capture_kernel(self.kernel, primal_types, self.cc)
        entry = cpu.new_entry_name(self.py_func.__name__ + "_kernel")
        params = cpu.flat_param_types(argtys)
        try:
            text = differentiate(read_module(cap.module), cap.name, plan, params, None, [], entry,
                                 target="cuda")
        except UnsupportedError as e:
            if e.location is None:
                code = self.py_func.__code__
                e.with_location(f"{code.co_filename}:{code.co_firstlineno}", self.py_func.__qualname__)
            raise
        cpu.build_library(text, entry, vector_math=False)  # parse + verify (+ GRADJIT_DEBUG_DIR)
        return _Compiled(text, entry, params, argtys)

    def ptx(self, *example_args, cc=None):
        """PTX of the derivative kernel for the types of ``example_args``."""
        c = self.compile(tuple(typeof_value(a) for a in example_args))
        return c.ptx(tuple(cc) if cc else self.cc)

    def _check(self, args):
        self._check_shapes([tuple(a.__cuda_array_interface__["shape"])
                            if hasattr(a, "__cuda_array_interface__") else
                            a.shape if isinstance(a, np.ndarray) else None for a in args])

    def _arg_names(self):
        """Names of the derivative kernel's arguments: ``x`` and ``shadow of x``."""
        names = []
        for name, act in zip(self.params, self.activities):
            names.append(f"'{name}'")
            if act.shadowed:
                names.append(f"'{name}' (shadow)")
        return names

    @property
    def emulate(self):
        """``df.emulate[blocks, threads](*args)``: run on the CPU grid emulator."""
        def run(grid, block, stream, args):
            self._check(args)
            c = self.compile(tuple(typeof_value(a) for a in args))
            c.emulator().run(grid, block, cuda_backend.flatten_args(args, c.argtys))
        return _Indexer(run)

    def __getitem__(self, config):
        def run(grid, block, stream, args):
            views = []
            for a in args:
                iface = getattr(a, "__cuda_array_interface__", None)
                views.append(_DeviceArg(iface) if iface is not None else None)
            argtys = tuple(v.type if v is not None else typeof_value(a)
                           for a, v in zip(args, views))
            c = self.compile(argtys)
            if c._device is None:
                if not cuda_backend.have_device():
                    raise RuntimeError("no CUDA device is available; run the derivative on the "
                                       "CPU grid emulator with df.emulate[blocks, threads](...)")
                from numba import cuda
                cc = cuda.get_current_device().compute_capability
                c._device = cuda_backend.DeviceKernel(c.ptx(tuple(cc)), c.entry, c.params)
                c._names = self._arg_names()
            if any(_host_array_inside(a) for a in args):
                raise TypeError("a kernel launch takes device arrays (Numba device arrays, "
                                "CuPy arrays...), not NumPy arrays; use df.emulate for NumPy")
            self._check_shapes([v.shape if v is not None else None for v in views])
            flat = []
            for a, t, v in zip(args, argtys, views):
                flat += v.flat() if v is not None else cuda_backend.flatten_args([a], [t])
            if len(c.data_params) > 1:
                schedule.check_extents([(c._names[p], views[p].extent()) for p in c.data_params],
                                       {c._names[p] for p in c.written})
            c._device.launch(grid, block, flat, stream)
        return _Config(run, config)

    def _check_shapes(self, shapes):
        k = 0
        for name, act in zip(self.params, self.activities):
            if act.shadowed and k + 1 < len(shapes):
                if shapes[k] != shapes[k + 1]:
                    raise ValueError(f"argument '{name}': shadow shape {shapes[k + 1]} differs "
                                     f"from the primal's shape {shapes[k]}")
                k += 2
            else:
                k += 1


class EmulatedKernel:
    """``gradjit.emulate(kernel)[blocks, threads](*args)``: the primal kernel on the
    CPU grid emulator (NumPy arrays are read and written in place)."""

    def __init__(self, kernel, cc=DEFAULT_CC):
        self.kernel, self.cc = kernel, tuple(cc)
        self._cache = {}

    def __getitem__(self, config):
        def run(grid, block, stream, args):
            argtys = tuple(typeof_value(a) for a in args)
            c = self._cache.get(argtys)
            if c is None:
                cap = capture_kernel(self.kernel, argtys, self.cc)
                c = self._cache[argtys] = _Compiled(str(cap.module), cap.name,
                                                    cpu.flat_param_types(argtys), argtys)
                c._call = cap.name
            c.emulator(call=c._call, has_retptr=True).run(grid, block,
                                                          cuda_backend.flatten_args(args, argtys))
        return _Config(run, config)


def emulate(kernel, cc=DEFAULT_CC):
    """Run the primal ``kernel`` (a ``numba.cuda.jit`` kernel) on the CPU grid
    emulator: ``gradjit.emulate(kernel)[blocks, threads](*args)`` with NumPy arrays."""
    return EmulatedKernel(kernel, cc)
