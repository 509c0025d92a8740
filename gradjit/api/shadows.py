"""Shadow buffers laid out exactly like their primal (the derivative code applies
the primal's strides to the shadow's data pointer)."""
from __future__ import annotations

import numba
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
    strides = x.strides
    if 0 not in strides:              # the common case, without a Python-level loop
        return False
    return any(s == 0 and n > 1 for n, s in zip(x.shape, strides))


def const_alias_error(names, activities, args, written):
    """The ``ValueError`` to raise when an array held constant (``Const``, alone or
    inside a tuple) that the function stores derivatives into (``written``: its
    activity indices) shares memory with a differentiated argument's primal, else
    None.  A Const array carries no derivative, so what the function writes
    through it would reach the differentiated array without one: a wrong result."""
    for j, other in const_array_overlaps(names, activities, args):
        if j in written:
            return ValueError(
                f"argument '{names[j]}' is Const but shares memory with '{other}', and the "
                f"function stores values depending on the active arguments through it: a "
                f"Const array carries no derivative, so the result would be wrong.  Pass a "
                f"copy, or make '{names[j]}' differentiated with the same shadow as '{other}'")
    return None


def const_array_overlaps(names, activities, args) -> list:
    """``[(activity index, name)]``: the Const arguments holding an array (itself,
    or an array inside a tuple) that may share memory with the primal of a
    differentiated array argument ``name``."""
    from .activities import Const
    prim, consts, k = [], [], 0
    for j, (name, act) in enumerate(zip(names, activities)):
        if k >= len(args):
            break
        a = args[k]
        if act is Const:
            held = [a] if isinstance(a, np.ndarray) else \
                [m for m in a if isinstance(m, np.ndarray)] if isinstance(a, tuple) else []
            if held:
                consts.append((j, held))
        elif isinstance(a, np.ndarray):
            prim.append((name, a))
        k += 2 if act.shadowed else 1
    out = []
    for j, held in consts:
        for name, x in prim:
            if any(np.may_share_memory(h, x) for h in held):
                out.append((j, name))
                break
    return out


def distinct(x):
    """``x``, or for an :func:`overlapping` view a contiguous copy: a shadow laid
    out like a broadcast view would sum the gradients of the entries that share
    memory, where each entry of the array is an input of its own."""
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) and overlapping(x) else x


def check_writable(name: str, dx, mode: str):
    """Raise ``ValueError`` for a read-only shadow ``dx`` of argument ``name`` in
    reverse mode, which adds the gradient to it."""
    if mode == "reverse" and not dx.flags.writeable:
        raise ValueError(f"argument '{name}': the shadow is read-only; reverse mode adds the "
                         "gradient to it")


def zeros_like(x):
    """Zero shadow of ``x``: a Python float for scalars, else :func:`like_strides`."""
    if isinstance(x, np.ndarray):
        return like_strides(x)
    return 0.0


# --- the same checks inside @njit code (``df`` called from compiled code) -------------
# They are compiled into the caller before each call (``cpu.make_intrinsic``) and
# see an array as its descriptor ``d = (address, shape, strides, itemsize)``
# (``cpu.descriptor_type``), never the array itself: taking a reference to the
# arrays (an atomic increment and decrement each) cost more than the derivative of
# a small function.  Messages with numbers are formatted in Python, by
# :class:`LayoutError`, from the numbers the compiled code raises it with
# (``str(int)`` in compiled code added about a second of compile time per check).


class LayoutError(ValueError):
    """``ValueError`` raised by the compiled shadow checks: ``args`` are a
    ``str.format`` template and the numbers to put in it."""

    def __str__(self):
        return self.args[0].format(*self.args[1:]) if self.args else ""


# raised from compiled functions of their own: a check compiled into the caller
# (``compile_internal``) has no environment to box an exception's runtime arguments
@numba.njit
def _raise_layout1(template, a):
    raise LayoutError(template, a)


@numba.njit
def _raise_layout3(template, a, b, c):
    raise LayoutError(template, a, b, c)


def _contiguous(shape, strides, item) -> bool:
    """Compiled: are ``shape`` and ``strides`` (bytes) C-contiguous for items of
    ``item`` bytes (axes of length 1 ignored)?"""
    step = item
    for ax in range(len(shape) - 1, -1, -1):
        if shape[ax] > 1 and strides[ax] != step:
            return False
        step *= shape[ax]
    return True


_contiguous_jit = numba.njit(_contiguous, inline="always")


def _layout_messages(name: str, lanes: int) -> tuple:
    """``(shape, strides)``: the texts of the layout errors of argument ``name``'s
    shadow inside @njit code."""
    arg = f"argument '{name}': "
    return (arg + "the shadow's shape differs from " + (
        f"({lanes}, *x.shape)" if lanes else "x's shape"),
        arg + "inside @njit code the shadow must be laid out like its primal "
        "(same strides, e.g. np.zeros_like(x)); call the derivative from Python to "
        "have other layouts copied")


def _tuple_layout_checker(name: str, dx_ty):
    """A ``check(x, dx)`` for a differentiated tuple of arrays and its shadow tuple
    (of the same Numba types, which the plan checks): every member's shadow has
    its primal's shape, and its strides on axes longer than 1.  Members reach it
    as arrays (the tuple is not a descriptor)."""
    lines = ["def check(x, d):"]
    msgs = {}
    for i, m in enumerate(dx_ty):
        msgs[f"s{i}"], msgs[f"t{i}"] = _layout_messages(f"{name}[{i}]", 0)
        for a in range(m.ndim):
            lines.append(f"    if x[{i}].shape[{a}] != d[{i}].shape[{a}]:")
            lines.append(f"        raise ValueError(s{i})")
            lines.append(f"    if x[{i}].shape[{a}] > 1 and x[{i}].strides[{a}] != d[{i}].strides[{a}]:")
            lines.append(f"        raise ValueError(t{i})")
    lines.append("    return None")
    ns = dict(msgs)
    exec("\n".join(lines), ns)
    return ns["check"]


def _layout_checker(name: str, lanes: int, x_ty, dx_ty):
    """A ``check(x, dx)`` for argument ``name`` whose primal and shadow have Numba
    types ``x_ty`` and ``dx_ty`` (arrays arrive as descriptors), or None when there
    is nothing to check (tuples and other types).  It raises ``ValueError`` when
    the shadow ``dx`` does not have the shape and (on axes longer than 1) the
    strides the derivative assumes.  Width 1 (``lanes == 0``): ``x``'s shape and
    strides.  Vector mode: a leading axis of ``lanes``, then ``x``'s shape and
    strides; a float scalar's tangents are a contiguous ``(lanes,)`` array.  The
    derivative applies the primal's offsets to the shadow's data pointer, so any
    other layout would read and write the wrong elements (``df`` called from
    Python copies such shadows instead)."""
    from numba import types

    off = 1 if lanes else 0
    arg = f"argument '{name}': "
    m_shape, m_strides = _layout_messages(name, lanes)
    m_shape += ": axis "
    m_lanes = arg + f"the tangents of a scalar must be a contiguous array of {lanes}"
    contiguous = _contiguous_jit
    if not lanes and isinstance(dx_ty, types.BaseTuple) and \
            all(isinstance(m, types.Array) for m in dx_ty):
        return _tuple_layout_checker(name, dx_ty)
    if not isinstance(dx_ty, types.Array):
        return None
    if lanes and isinstance(x_ty, types.Float):
        if dx_ty.ndim != 1:
            def wrong_lanes(x, d):
                raise ValueError(m_lanes)
            return wrong_lanes

        def scalar_lanes(x, d):
            if d[1][0] != lanes or not contiguous(d[1], d[2], d[3]):
                raise ValueError(m_lanes)
        return scalar_lanes
    if not isinstance(x_ty, types.Array):
        return None
    nd = x_ty.ndim
    if dx_ty.ndim != nd + off:
        m_ndim = m_shape + f"count: the shadow has {dx_ty.ndim} axes"

        def bad_ndim(x, d):
            raise ValueError(m_ndim)
        return bad_ndim

    m_lanes_axis = m_shape + "0 of the shadow has {}, not " + str(lanes)
    m_axis = m_shape + "{} of the shadow has {}, the primal's has {}"

    def check(x, d):
        xs, xst, ds, dst = x[1], x[2], d[1], d[2]
        if off == 1 and ds[0] != lanes:
            _raise_layout1(m_lanes_axis, ds[0])
        size = 1
        for ax in range(nd):
            if ds[ax + off] != xs[ax]:
                _raise_layout3(m_axis, ax + off, ds[ax + off], xs[ax])
            size *= xs[ax]
        if size > 1 and ds[0] > 0:
            for ax in range(nd):
                if xs[ax] > 1 and dst[ax + off] != xst[ax]:
                    raise ValueError(m_strides)
    return check


def _lane_array_checker(what: str, shape: tuple, a_ty):
    """A ``check(a)`` for an array (Numba type ``a_ty``, of the right dtype and
    number of axes, reaching the check as its descriptor) after the activities'
    arguments of a vector-mode call (the tangents of the return, the seeds, the
    gradients of ``Active`` arguments): C-contiguous with exactly ``shape``, else
    ``ValueError`` (the derivative reads and writes ``prod(shape)`` entries)."""
    contiguous = _contiguous_jit
    nd = len(shape)
    m_axis = f"{what}: axis {{}} has {{}} entries, not {{}} (expected shape {shape})"
    m_contig = f"{what}: the array of shape {shape} must be C-contiguous"

    def check(a):
        for ax in range(nd):
            if a[1][ax] != shape[ax]:
                _raise_layout3(m_axis, ax, a[1][ax], shape[ax])
        if not contiguous(a[1], a[2], a[3]):
            raise ValueError(m_contig)

    return check


def trailing_arrays(mode: str, lanes: int, activities, argtys, nshadowed: int, ret_dtype=None):
    """``[(index, what, dtype, shape)]``: the arrays a width-``lanes`` derivative
    called from ``@njit`` code takes after the activities' ``nshadowed`` arguments
    (forward: the return's tangents, of the return's dtype ``ret_dtype``, float64
    when it has none; reverse: the seeds, with an Active return, then the
    gradients of the ``Active`` arguments, both float64).  Raises
    :class:`~gradjit.ActivityError` when one of ``argtys`` there is not an array of
    that dtype and number of axes (a float scalar seed is not broadcast there, as
    it is from Python)."""
    from numba import types
    from ..errors import ActivityError
    from .activities import Active
    tail = list(range(nshadowed, len(argtys)))
    if mode == "forward":
        want = [("the tangents of the return", ret_dtype or types.float64, (lanes,))]
    else:
        rows = max(1, sum(1 for a in activities if a is Active))
        want = ([("the seeds", types.float64, (lanes,))] if len(tail) > 1 else []) + \
            [("the gradients of the Active arguments", types.float64, (rows, lanes))]
    out = []
    for i, (what, dtype, shape) in zip(tail, want):
        t = argtys[i]
        if not (isinstance(t, types.Array) and t.dtype == dtype and t.ndim == len(shape)):
            raise ActivityError(f"{what}: a width-{lanes} {mode} derivative called from @njit code "
                            f"takes a C-contiguous {dtype} array of shape {shape} there, got {t}")
        out.append((i, what, dtype, shape))
    return out


def interleaved_types(activities, argtys, lanes: int) -> tuple:
    """Per activity of a width-``lanes`` forward call from ``@njit`` code: are the
    lanes interleaved?  That is a 1-D C-contiguous primal with an F-contiguous
    ``(lanes, n)`` shadow of its dtype (``J.T`` of a C-contiguous ``(n, lanes)``
    array), whose strides are ``(itemsize, lanes * itemsize)``: the interleaved
    layout of :mod:`gradjit.analysis.interleave`.  Only the types are known when
    the caller compiles, so only this case, where the layout follows from them,
    is taken in place there."""
    from numba import types
    out, k = [], 0
    for act in activities:
        hit = False
        if act.shadowed and k + 1 < len(argtys):
            x, dx = argtys[k], argtys[k + 1]
            hit = (lanes > 1 and isinstance(x, types.Array) and isinstance(dx, types.Array)
                   and x.ndim == 1 and x.layout == "C" and dx.ndim == 2 and dx.layout == "F"
                   and dx.dtype == x.dtype)
            k += 2
        else:
            k += 1
        out.append(hit)
    return tuple(out)


def _interleaved_checker(name: str, lanes: int):
    """A ``check(x, dx)`` of an interleaved pair (see :func:`interleaved_types`):
    ``dx`` has shape ``(lanes, x.shape[0])``, else ``ValueError``."""
    m_axis = (f"argument '{name}': the interleaved shadow (an F-contiguous array) must have "
              f"shape ({lanes}, x.shape[0]); axis {{}} has {{}}, not {{}}")

    def check(x, d):
        if d[1][0] != lanes:
            _raise_layout3(m_axis, 0, d[1][0], lanes)
        if d[1][1] != x[1][0]:
            _raise_layout3(m_axis, 1, d[1][1], x[1][0])
    return check


def layout_checks(names, activities, lanes: int, skip=lambda t: (), mode="reverse"):
    """The entry checks of ``df.jit`` (``cpu.make_intrinsic``): a function of the
    call's argument types returning ``[(indices, check)]``: :func:`_layout_checker`
    on every (primal, shadow) pair of the arguments (laid out as ``activities``
    say), :func:`_interleaved_checker` on the pairs whose activity index
    ``skip(argtys)`` marks (interleaved lanes), and in vector mode
    :func:`_lane_array_checker` on the arrays after them.  Each check is compiled
    in separately, on its own arguments
    (a function of the whole argument tuple cost ~70 ns per call of the BA
    residual's derivative, a third of the call)."""
    from numba import types

    checkers = {}

    def checker(key, make):
        if key not in checkers:
            checkers[key] = make()
        return checkers[key]

    def entry_checks(argtys, ret_dtype=None):
        n, mask, k, calls = len(argtys), skip(argtys), 0, []
        for j, (name, act) in enumerate(zip(names, activities)):
            if act.shadowed and mode == "reverse" and k + 1 < n:
                sh = argtys[k + 1]
                members = sh if isinstance(sh, types.BaseTuple) else (sh,)
                if any(isinstance(m, types.Array) and not m.mutable for m in members):
                    raise ValueError(f"argument '{name}': the shadow is read-only; reverse mode "
                                     "adds the gradient to it")
            k += 2 if act.shadowed else 1
        k = 0
        for j, (name, act) in enumerate(zip(names, activities)):
            if act.shadowed:
                if k + 1 < n and j < len(mask) and mask[j]:
                    calls.append(((k, k + 1), checker(("inter", j),
                                                      lambda: _interleaved_checker(name, lanes))))
                elif k + 1 < n:
                    x, dx = argtys[k], argtys[k + 1]
                    fn = checker((j, x, dx), lambda: _layout_checker(name, lanes, x, dx))
                    if fn is not None:
                        calls.append(((k, k + 1), fn))
                k += 2
            else:
                k += 1
        if lanes:
            for i, what, _, shape in trailing_arrays(mode, lanes, activities, argtys, k, ret_dtype):
                a = argtys[i]
                calls.append(((i,), checker(("tail", a, what, shape),
                                            lambda: _lane_array_checker(what, shape, a))))
        return calls

    return entry_checks


def _extent(ptr, shape, strides, item):
    """``(lo, hi)``: the byte addresses ``[lo, hi)`` the entries of an array with
    data address ``ptr``, ``shape``, ``strides`` (bytes) and ``item`` bytes per
    entry lie in (``(0, 0)`` for an empty array); its bounds, as
    ``np.may_share_memory``.  The compiled counterpart of
    :func:`gradjit.backend.schedule.byte_extent` (which uses generator expressions
    Numba cannot compile)."""
    lo = ptr
    hi = lo
    for ax in range(len(shape)):
        if shape[ax] == 0:
            return 0, 0
        span = (shape[ax] - 1) * strides[ax]
        if span < 0:
            lo += span
        else:
            hi += span
    return lo, hi + item


_extent_jit = numba.njit(_extent, inline="always")


def overlap_raiser(names):
    """A Python function ``check(a_0, ..., a_k)`` (compiled into the entry of
    ``df`` called from ``@njit`` code) raising ValueError when two of the primal
    arrays ``names`` (given as descriptors, ``cpu.descriptor_type``) may share
    memory (bounds overlap, as ``np.may_share_memory``)."""

    extent = _extent_jit
    params = [f"a{i}" for i in range(len(names))]
    lines = [f"def check({', '.join(params)}):"]
    for i in range(len(names)):
        lines.append(f"    lo{i}, hi{i} = extent(a{i}[0], a{i}[1], a{i}[2], a{i}[3])")
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


def check_tuple_members(name: str, xs: tuple, others) -> None:
    """Raise ``ValueError`` when an array of the differentiated tuple ``xs``
    (argument ``name``) shares memory with another of its arrays or with one of
    the arrays ``others`` (the other arguments' arrays, tuples flattened): the
    aliasing checks of separate array arguments do not look into tuples."""
    flat = [m for a in others for m in (a if isinstance(a, tuple) else (a,))
            if isinstance(m, np.ndarray)]
    for i, m in enumerate(xs):
        if any(np.may_share_memory(m, o) for o in list(xs[:i]) + flat):
            raise ValueError(f"argument '{name}': array {i} of the tuple shares memory "
                             "with another array argument; pass copies")
