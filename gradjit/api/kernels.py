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
"""
from __future__ import annotations

import inspect
import threading

import numba
import numpy as np
from numba.core import types

from ..ad.driver import differentiate
from ..backend import cpu, cuda as cuda_backend
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
        dtype = numba.from_dtype(np.dtype(iface["typestr"]))
        shape = tuple(iface["shape"])
        strides = iface.get("strides")
        item = np.dtype(iface["typestr"]).itemsize
        contiguous = strides is None or tuple(strides) == tuple(
            int(np.prod(shape[k + 1:])) * item for k in range(len(shape)))
        return types.Array(dtype, len(shape), "C" if contiguous else "A")
    return numba.typeof(v)


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


class _Compiled:
    def __init__(self, text, entry, params, argtys):
        self.text, self.entry, self.params, self.argtys = text, entry, params, argtys
        self._emu = None
        self._ptx = {}
        self._device = None

    def emulator(self, call=None, has_retptr=False):
        if self._emu is None:
            self._emu = cuda_backend.Emulator(self.text, call or self.entry, self.params, has_retptr)
        return self._emu

    def ptx(self, cc=DEFAULT_CC):
        if cc not in self._ptx:
            self._ptx[cc] = cuda_backend.to_ptx(self.text, self.entry, cc)
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
        cpu.build_library(text, entry)            # parse + verify (and GRADJIT_DEBUG_DIR)
        return _Compiled(text, entry, params, argtys)

    def ptx(self, *example_args, cc=None):
        """PTX of the derivative kernel for the types of ``example_args``."""
        c = self.compile(tuple(typeof_value(a) for a in example_args))
        return c.ptx(tuple(cc) if cc else self.cc)

    def _check(self, args):
        k = 0
        for name, act in zip(self.params, self.activities):
            if act.shadowed and k + 1 < len(args):
                x, dx = args[k], args[k + 1]
                sx, sdx = np.shape(x) if not hasattr(x, "__cuda_array_interface__") else tuple(
                    x.__cuda_array_interface__["shape"]), np.shape(dx) if not hasattr(
                    dx, "__cuda_array_interface__") else tuple(dx.__cuda_array_interface__["shape"])
                if sx != sdx:
                    raise ValueError(f"argument '{name}': shadow shape {sdx} differs from the "
                                     f"primal's shape {sx}")
                k += 2
            else:
                k += 1

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
            if not cuda_backend.have_device():
                raise RuntimeError("no CUDA device is available; run the derivative on the CPU "
                                   "grid emulator with df.emulate[blocks, threads](...)")
            self._check(args)
            c = self.compile(tuple(typeof_value(a) for a in args))
            from numba import cuda
            cc = cuda.get_current_device().compute_capability
            if c._device is None:
                c._device = cuda_backend.DeviceKernel(c.ptx(tuple(cc)), c.entry, c.params)
            c._device.launch(grid, block, cuda_backend.flatten_args(args, c.argtys), stream)
        return _Config(run, config)


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
