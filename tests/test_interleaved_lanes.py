"""Vector forward mode with the lane axis fastest (``dx.strides[0] == itemsize``).

Such tangent arrays (the transpose of a row-major Jacobian) are used in place:
the derivative addresses lane ``k`` of an element at byte offset ``o`` as
``dx + o * N + k * itemsize``.  Each program is run with lane-major and with
interleaved tangent arrays; the tangents must agree, and agree with central
finite differences.  Programs whose pointers the layout cannot follow fall back
to lane-major copies, with the same results.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Dual
from conftest import assert_close


@njit
def neighbours(x, y):
    n = x.shape[0]
    for i in range(n):
        y[i] = math.sin(x[i]) * x[(i + 1) % n]


@njit
def elementwise(x, y):                 # vectorized by LLVM in the primal
    for i in range(x.shape[0]):
        y[i] = 2.0 * x[i] * x[i] + 1.0


@njit
def zero_then_accumulate(x, y):        # y[:] = 0 becomes a memset
    y[:] = 0.0
    for i in range(x.shape[0]):
        y[i] += math.exp(-x[i]) * x[i]
        y[(i + 3) % y.shape[0]] += x[i] * x[i]


@njit
def gather_rows(A, idx, out):          # 2-D primal, indirect reads (the ht pattern)
    for i in range(idx.shape[0]):
        r = idx[i]
        for j in range(A.shape[1]):
            out[i, j] = A[r, j] * A[r, (j + 1) % A.shape[1]] - out[i, j]


@njit
def shifted_copy(x, y):                # a slice copy through a raw temporary: fallback
    y[:] = 0.0
    y[1:] = x[:-1]
    for i in range(x.shape[0]):
        y[i] += x[i] ** 2


@njit
def _inner(x, y):
    for i in range(x.shape[0]):
        y[i] = math.tanh(x[i])


def _outer(x, y):
    _inner(x, y)
    y[0] += x[-1]


def _interleaved(a, like):
    """``a`` (N, *s) copied to a fresh array whose lane axis is the fastest and
    whose other axes are ordered like ``like``'s (C or F)."""
    if like.flags.f_contiguous and not like.flags.c_contiguous:
        return np.asfortranarray(a)            # strides (item, N item, N item s0, ...)
    out = np.empty(a.shape[1:] + a.shape[:1], a.dtype)
    view = np.moveaxis(out, -1, 0)
    view[...] = a
    return view


def _run(fn, xs, ys, dxs, width):
    """Tangents of ``ys`` for ``fn(*xs, *ys)`` with lane-major and interleaved
    tangent arrays (ints in ``xs`` are Const)."""
    acts = [Const if x.dtype.kind == "i" else Dual for x in xs] + [Dual] * len(ys)
    df = gradjit.autodiff(fn, "forward", *acts, width=width)
    results = []
    for layout in ("lane-major", "interleaved"):
        args = []
        douts = []
        for x, dx in zip(xs, dxs):
            args.append(x.copy(order="K"))
            if dx is not None:
                args.append(dx.copy() if layout == "lane-major" else _interleaved(dx, x))
        for y in ys:
            args.append(y.copy(order="K"))
            dy = np.zeros((width,) + y.shape, y.dtype)
            if layout == "interleaved":
                dy = _interleaved(dy, y)
            args.append(dy)
            douts.append(dy)
        df(*args)
        results.append([np.array(d) for d in douts])
    return df, results


def _fd(fn, xs, ys, direction, h):
    def run(sign):
        xx = [x + sign * h * d if d is not None else x for x, d in zip(xs, direction)]
        yy = [y.copy(order="K") for y in ys]
        fn(*xx, *yy)
        return yy
    plus, minus = run(1.0), run(-1.0)
    return [(p - m) / (2 * h) for p, m in zip(plus, minus)]


@pytest.mark.parametrize("fn", [neighbours, elementwise, zero_then_accumulate])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_interleaved_matches_lane_major_and_fd(rng, fn, dtype):
    n, width = 37, 5
    x = rng.uniform(0.2, 1.5, n).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    dx = rng.standard_normal((width, n)).astype(dtype)
    df, (major, inter) = _run(fn, [x], [y], [dx], width)
    assert df._variants[(True, True)] is not None      # used in place, no copies
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(inter[0], major[0], rtol=tol, atol=tol)
    for k in range(width):
        fd = _fd(fn, [x.astype(np.float64)], [y.astype(np.float64)], [dx[k].astype(np.float64)],
                 1e-6)[0]
        assert_close(inter[0][k], fd, rtol=1e-5 if dtype == np.float64 else 2e-3,
                     atol=1e-6 if dtype == np.float64 else 2e-3)


@pytest.mark.parametrize("order", ["C", "F"])
def test_interleaved_two_dimensional(rng, order):
    m, n, width = 6, 4, 3
    A = np.asarray(rng.standard_normal((m, n)), order=order)
    idx = rng.integers(0, m, 9)
    out = np.asarray(rng.standard_normal((9, n)), order=order)
    dA = rng.standard_normal((width, m, n))
    df, (major, inter) = _run(gather_rows, [A, idx], [out], [dA, None], width)
    assert df._variants[(True, False, True)] is not None
    assert_close(inter[0], major[0], rtol=1e-13, atol=1e-13)
    for k in range(width):
        fd = _fd(gather_rows, [A, idx], [out], [dA[k], None], 1e-6)[0]
        assert_close(inter[0][k], fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fn", [shifted_copy, njit(_outer)])
def test_interleaved_fallback_copies(rng, fn):
    """A slice copy through a temporary, or the array passed to another compiled
    function: the lanes are copied to lane-major temporaries and back."""
    n, width = 11, 4
    x = rng.uniform(0.2, 1.5, n)
    y = np.zeros(n)
    dx = rng.standard_normal((width, n))
    df, (major, inter) = _run(fn, [x], [y], [dx], width)
    assert_close(inter[0], major[0], rtol=1e-13, atol=1e-13)
    for k in range(width):
        fd = _fd(fn, [x], [y], [dx[k]], 1e-6)[0]
        assert_close(inter[0][k], fd, rtol=1e-6, atol=1e-7)


def test_interleaved_jacobian_rows(rng):
    """The use case: a row-major Jacobian ``J[i, k] = d y[i] / d x[k]`` filled in
    place by seeding the identity, checked against finite differences."""
    n = 7
    x = rng.uniform(0.2, 1.5, n)
    y = np.zeros(n)
    J = np.empty((n, n))
    df = gradjit.autodiff(neighbours, "forward", Dual, Dual, width=n)
    df(x, np.eye(n), y, J.T)
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        assert_close(J[:, k], _fd(neighbours, [x], [y], [e], 1e-6)[0], rtol=1e-6, atol=1e-8)


# --- arrays the function allocates itself --------------------------------------
# Their shadows take the interleaved layout too (one block of N times the bytes)
# whenever nothing but reference counting sees the meminfo; with lane-major and
# with interleaved arguments alike.


@njit
def scratch_product(x, y):             # np.empty scratch (x's dtype), read at another index
    n = x.shape[0]
    t = np.empty(n, x.dtype)
    for i in range(n):
        t[i] = math.sin(x[i]) + x[i] * x[i]
    for i in range(n):
        y[i] = t[i] * t[(i + 2) % n] - y[i]


@njit
def zeros_2d_accumulate(x, y):         # np.zeros (a memset of the lanes too), 2-D
    n = x.shape[0]
    acc = np.zeros((3, n))
    for r in range(3):
        for i in range(n):
            acc[r, i] += math.exp(-x[i] * (r + 1)) * x[(i + r) % n]
    for i in range(n):
        y[i] = acc[0, i] * acc[1, i] + acc[2, i]


@njit
def scratch_per_iteration(x, y):       # a fresh allocation in every iteration
    n = x.shape[0]
    for i in range(n):
        w = np.empty(3)
        for j in range(3):
            w[j] = x[(i + j) % n] ** (j + 1)
        y[i] = w[0] * w[1] + w[2]


@njit
def copied_argument(x, y):             # x.copy(): a memcpy from the argument
    t = x.copy()
    for i in range(t.shape[0]):
        t[i] = math.cos(t[i]) * t[i]
    for i in range(y.shape[0]):
        y[i] = t[i] + t[-1 - i]


def _lane_allocations(df, mask):
    """Shadow allocations for lanes >= 1 (``%name.s1 = call @NRT_MemInfo_alloc*``)
    in the module of the interleaved variant (``mask``) or the lane-major one."""
    d = df._variants[mask] if mask else df
    text = d._cache[next(iter(d._cache))].text
    import re
    return len(re.findall(r"\.s[1-9]\d*\"? = (?:tail )?call ptr @NRT_MemInfo_alloc", text))


@pytest.mark.parametrize("fn", [scratch_product, zeros_2d_accumulate, scratch_per_iteration,
                                copied_argument])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_interleaved_allocations(rng, fn, dtype):
    n, width = 13, 6
    x = rng.uniform(0.2, 1.2, n).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    dx = rng.standard_normal((width, n)).astype(dtype)
    df, (major, inter) = _run(fn, [x], [y], [dx], width)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(inter[0], major[0], rtol=tol, atol=tol)
    for k in range(width):
        fd = _fd(fn, [x.astype(np.float64)], [y.astype(np.float64)], [dx[k].astype(np.float64)],
                 1e-6)[0]
        assert_close(major[0][k], fd, rtol=1e-5 if dtype == np.float64 else 2e-3,
                     atol=1e-6 if dtype == np.float64 else 2e-3)
    # the local arrays' shadows are single interleaved blocks: no per-lane
    # allocations, except x.copy() from a lane-major x (the copy cannot change layout)
    assert _lane_allocations(df, (True, True)) == 0
    expected_major = width - 1 if fn is copied_argument else 0
    assert _lane_allocations(df, None) == expected_major


@njit
def _fill(t, x):
    for i in range(t.shape[0]):
        t[i] = x[i] * x[i]


@njit
def escaping_scratch(x, y):            # the scratch goes to another compiled function
    t = np.empty(x.shape[0])
    _fill(t, x)
    for i in range(y.shape[0]):
        y[i] = t[i] * x[i]


def test_allocation_passed_on_stays_lane_major(rng):
    n, width = 9, 3
    x = rng.uniform(0.2, 1.2, n)
    y = np.zeros(n)
    dx = rng.standard_normal((width, n))
    df, (major, inter) = _run(escaping_scratch, [x], [y], [dx], width)
    assert_close(inter[0], major[0], rtol=1e-13, atol=1e-13)
    for k in range(width):
        assert_close(major[0][k], 3 * x * x * dx[k], rtol=1e-12, atol=1e-12)


# --- from @njit code ------------------------------------------------------------
# There only the types are known when the caller compiles: an F-contiguous
# (N, n) shadow of a 1-D C-contiguous array (``J.T`` of a C-contiguous (n, N)
# Jacobian) is taken as interleaved lanes; other layouts must be laid out like
# their primal.

_d_neigh = gradjit.autodiff(neighbours, "forward", Dual, Dual, width=4)


@njit
def _jacobian_rows_njit(x, y, J, dret):
    seeds = np.zeros((x.shape[0], 4))          # seeds.T: interleaved too
    for k in range(4):
        seeds[k, k] = 1.0
    _d_neigh(x, seeds.T, y, J.T, dret)


def test_interleaved_from_njit(rng):
    n = 6
    x = rng.uniform(0.2, 1.5, n)
    y = np.zeros(n)
    J = np.full((n, 4), np.nan)                 # every entry is written
    _jacobian_rows_njit(x, y, J, np.zeros(4))
    for k in range(4):
        e = np.zeros(n)
        e[k] = 1.0
        assert_close(J[:, k], _fd(neighbours, [x], [y], [e], 1e-6)[0], rtol=1e-6, atol=1e-8)
    # the interleaved variant was compiled for these types
    key = next(t for t in _d_neigh.signatures if t[1].layout == "F")
    assert key[3].layout == "F"


@njit
def _wrong_shape_njit(x, y, J, dret):
    seeds = np.zeros((x.shape[0] + 1, 4))
    _d_neigh(x, seeds.T, y, J.T, dret)


def test_interleaved_from_njit_shape_error(rng):
    x, y = rng.uniform(0.2, 1.5, 5), np.zeros(5)
    with pytest.raises(ValueError, match="interleaved shadow"):
        _wrong_shape_njit(x, y, np.zeros((5, 4)), np.zeros(4))
