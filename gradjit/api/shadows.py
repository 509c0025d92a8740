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


def overlapping(x) -> bool:
    """Does array ``x`` reach one memory location through several indices (a zero
    stride on an axis longer than 1, as ``np.broadcast_to`` makes)?"""
    return any(s == 0 and n > 1 for n, s in zip(x.shape, x.strides))


def distinct(x):
    """``x``, or for an :func:`overlapping` view a contiguous copy: a shadow laid
    out like a broadcast view would sum the gradients of the entries that share
    memory, where each entry of the array is an input of its own."""
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) and overlapping(x) else x


def zeros_like(x):
    """Zero shadow of ``x``: a Python float for scalars, else :func:`like_strides`."""
    if isinstance(x, np.ndarray):
        return like_strides(x)
    return 0.0


# --- the same checks inside @njit code (``df`` called from compiled code) -------------


def _contiguous(a) -> bool:
    """Compiled: is array ``a`` C-contiguous (axes of length 1 ignored)?"""
    step = a.itemsize
    for ax in range(a.ndim - 1, -1, -1):
        if a.shape[ax] > 1 and a.strides[ax] != step:
            return False
        step *= a.shape[ax]
    return True


def _layout_checker(name: str, lanes: int):
    """A compiled ``check(x, dx)`` for argument ``name``: raises ``ValueError`` when
    the shadow ``dx`` does not have the shape and (on axes longer than 1) the
    strides the derivative assumes.  Width 1 (``lanes == 0``): ``x``'s shape and
    strides.  Vector mode: a leading axis of ``lanes``, then ``x``'s shape and
    strides; a float scalar's tangents are a contiguous ``(lanes,)`` array.  A
    no-op for other types (tuples).  The derivative applies the primal's offsets
    to the shadow's data pointer, so any other layout would read and write the
    wrong elements (``df`` called from Python copies such shadows instead)."""
    import numba
    from numba import types
    from numba.extending import overload

    off = 1 if lanes else 0
    arg = f"argument '{name}': "
    m_shape = arg + "the shadow's shape differs from " + (
        f"({lanes}, *x.shape)" if lanes else "x's shape") + ": axis "
    m_strides = (arg + "inside @njit code the shadow must be laid out like its primal "
                 "(same strides, e.g. np.zeros_like(x)); call the derivative from Python to "
                 "have other layouts copied")
    m_lanes = arg + f"the tangents of a scalar must be a contiguous array of {lanes}"
    contiguous = numba.njit(_contiguous, inline="always")

    def check(x, dx):
        pass

    @overload(check, jit_options={"nogil": True}, inline="always")
    def _check(x, dx):
        if lanes and isinstance(x, types.Float) and isinstance(dx, types.Array):
            def scalar_lanes(x, dx):
                if dx.ndim != 1 or dx.shape[0] != lanes or not contiguous(dx):
                    raise ValueError(m_lanes)
            return scalar_lanes
        if not (isinstance(x, types.Array) and isinstance(dx, types.Array)):
            return lambda x, dx: None
        if dx.ndim != x.ndim + off:
            def bad_ndim(x, dx):
                raise ValueError(m_shape + "count: the shadow has " + str(dx.ndim) + " axes")
            return bad_ndim

        def impl(x, dx):
            if off == 1 and dx.shape[0] != lanes:
                raise ValueError(m_shape + "0 of the shadow has " + str(dx.shape[0]) +
                                 ", not " + str(lanes))
            for ax in range(x.ndim):
                if dx.shape[ax + off] != x.shape[ax]:
                    raise ValueError(m_shape + str(ax + off) + " of the shadow has " +
                                     str(dx.shape[ax + off]) + ", the primal's has " +
                                     str(x.shape[ax]))
            if x.size > 1 and dx.shape[0] > 0:
                for ax in range(x.ndim):
                    if x.shape[ax] > 1 and dx.strides[ax + off] != x.strides[ax]:
                        raise ValueError(m_strides)
        return impl

    return numba.njit(lambda x, dx: check(x, dx), inline="always")


def _lane_array_checker(lanes: int):
    """A compiled ``check(a)`` for an array after the activities' arguments of a
    vector-mode call (the tangents of the return, seeds, gradients of ``Active``
    arguments): C-contiguous with a last axis of ``lanes``, else ``ValueError``."""
    import numba

    msg = f"the seed/result arrays of a width-{lanes} derivative must be contiguous with a last axis of {lanes}"
    contiguous = numba.njit(_contiguous, inline="always")

    def check(a):
        if a.ndim == 0 or a.shape[a.ndim - 1] != lanes or not contiguous(a):
            raise ValueError(msg)

    return numba.njit(check, inline="always")


def layout_checks(names, activities, lanes: int, skip=lambda: ()):
    """The entry check of ``df.jit``: a function ``checks(args)``, callable from
    ``@njit`` code, that runs :func:`_layout_checker` on every (primal, shadow)
    pair of the tuple ``args`` (laid out as ``activities`` say), except the pairs
    whose activity index ``skip()`` marks (interleaved lanes, checked in Python),
    and in vector mode :func:`_lane_array_checker` on the arrays after them.
    ``skip`` is read when the entry is first compiled."""
    import numba
    from numba import types
    from numba.extending import overload

    checkers = {}

    def checks(args):
        pass

    @overload(checks, jit_options={"nogil": True})
    def _checks(args):
        n, mask, k, calls = len(args), skip(), 0, []
        for j, (name, act) in enumerate(zip(names, activities)):
            if act.shadowed:
                if k + 1 < n and not (j < len(mask) and mask[j]):
                    fn = checkers.get(j) or checkers.setdefault(j, _layout_checker(name, lanes))
                    calls.append(((k, k + 1), fn))
                k += 2
            else:
                k += 1
        if lanes:
            for i in range(k, n):
                if isinstance(args[i], types.Array):
                    fn = checkers.get("tail") or checkers.setdefault("tail", _lane_array_checker(lanes))
                    calls.append(((i,), fn))
        scope = {f"c{i}": fn for i, (_, fn) in enumerate(calls)}
        body = "".join(f"    c{i}({', '.join(f'args[{a}]' for a in at)})\n"
                       for i, (at, _) in enumerate(calls))
        exec("def impl(args):\n" + body + "    return None\n", scope)
        return scope["impl"]

    return checks


def _extent(a):
    """``(lo, hi)``: the byte addresses ``[lo, hi)`` an array's entries lie in
    (``(0, 0)`` for an empty array); its bounds, as ``np.may_share_memory``.  The
    compiled counterpart of :func:`gradjit.backend.schedule.byte_extent` (which uses
    generator expressions Numba cannot compile)."""
    lo = a.ctypes.data
    hi = lo
    for ax in range(a.ndim):
        if a.shape[ax] == 0:
            return 0, 0
        span = (a.shape[ax] - 1) * a.strides[ax]
        if span < 0:
            lo += span
        else:
            hi += span
    return lo, hi + a.itemsize


def overlap_raiser(names):
    """A Python function ``check(a_0, ..., a_k)`` (compiled into the entry of
    ``df`` called from ``@njit`` code) raising ValueError when two of the primal
    arrays ``names`` may share memory (bounds overlap, as ``np.may_share_memory``)."""
    import numba

    extent = numba.njit(_extent, inline="always")
    params = [f"a{i}" for i in range(len(names))]
    lines = [f"def check({', '.join(params)}):"]
    for i in range(len(names)):
        lines.append(f"    lo{i}, hi{i} = extent(a{i})")
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            msg = (f"arguments '{names[i]}' and '{names[j]}' share memory: the derivative "
                   "writes argument memory, and inside @njit code it needs distinct arrays "
                   "(called from Python, aliased arguments are differentiated correctly)")
            lines.append(f"    if lo{i} < hi{j} and lo{j} < hi{i}:")
            lines.append(f"        raise ValueError({msg!r})")
    scope = {"extent": extent}
    exec("\n".join(lines), scope)
    return scope["check"]
