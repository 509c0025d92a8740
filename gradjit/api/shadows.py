"""Shadow buffers laid out exactly like their primal (the derivative code applies
the primal's strides to the shadow's data pointer)."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def like_strides(x: np.ndarray) -> np.ndarray:
    """A zero array with ``x``'s shape, dtype *and strides* (any view, negative
    strides included), backed by its own buffer."""
    if x.size == 0 or x.flags.c_contiguous:
        return np.zeros(x.shape, x.dtype)
    if x.flags.f_contiguous:
        return np.zeros(x.shape, x.dtype, order="F")
    item = x.itemsize
    lo = sum(min(0, (n - 1) * s) for n, s in zip(x.shape, x.strides))
    hi = sum(max(0, (n - 1) * s) for n, s in zip(x.shape, x.strides)) + item
    buf = np.zeros((hi - lo + item - 1) // item + 1, x.dtype)
    start = buf[(-lo) // item:] if lo % item == 0 else buf
    return as_strided(start, x.shape, x.strides)


def zeros_like(x):
    """Zero shadow of ``x``: a Python float for scalars, else :func:`like_strides`."""
    if isinstance(x, np.ndarray):
        return like_strides(x)
    return 0.0
