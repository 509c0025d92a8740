"""Steady-state heap settings for timing: large blocks stay mapped between calls.

glibc's ``malloc`` serves blocks above a (dynamic) threshold with fresh ``mmap``
pages and gives freed memory above a trim threshold back to the kernel.  A kernel
that allocates a few MB of scratch arrays per call (the primal's and the
derivative's local arrays alike) then page-faults every page on every call, and
whether it does depends on what the process allocated before: the same
``ode`` n=100000 primal takes 0.25 ms or 2.1 ms on this machine.  Timing scripts
call :func:`keep_heap` once at start, so that every tool in the process (Numba,
gradjit, NumPy, JAX, PyTorch) reuses its memory the way a long-running program does.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_heap(mmap_threshold: int = 64 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (bytes) with
    ``mallopt``; returns False (and changes nothing) where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold))
