"""Vector forward mode (``width=N``): one primal sweep carries N tangents.

Every lane is checked against the width-1 forward derivative of the same
direction and against central finite differences.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Dual, DualOnly
from conftest import assert_close


@njit
def _helper(u, v):
    return math.exp(-u * v) + u * u


@njit
def calls_and_writes(x, a, out):
    s = 0.0
    for i in range(x.shape[0]):
        out[i] = _helper(x[i], a) * math.sin(x[i])
        s += out[i] * x[i]
    return s / (1.0 + a * a)


@njit
def matrix_energy(A, w):
    m, n = A.shape
    s = 0.0
    for i in range(m):
        r = 0.0
        for j in range(n):
            r += A[i, j] * w[j]
        s += math.tanh(r) ** 2
    return s


@njit
def scalar_only(a, b):
    return math.log1p(a * a) * math.cos(b) + a / (1.0 + b * b)


def _lane_vs_width1(fn, acts, args, shadows, width):
    """Run the vector derivative once and the width-1 one per lane; compare."""
    dv = gradjit.autodiff(fn, "forward", *acts, width=width)
    d1 = gradjit.autodiff(fn, "forward", *acts)

    def expand(lane):
        out = []
        for a, act, s in zip(args, acts, shadows):
            a = a.copy() if isinstance(a, np.ndarray) else a
            out.append(a)
            if act is not Const:
                if lane is None:
                    out.append(s.copy())
                else:
                    out.append(s[lane].copy() if isinstance(a, np.ndarray) else type(a)(s[lane]))
        return out

    vargs = expand(None)
    primal, tangents = dv(*vargs)
    for k in range(width):
        largs = expand(k)
        p1, t1 = d1(*largs)
        assert_close(primal, p1, kind="ad")
        assert_close(tangents[k], t1, kind="ad", err_msg=f"lane {k}")
        # shadows of written arrays hold the lane's output tangents
        j = 0
        for a, act in zip(args, acts):
            if act is not Const and isinstance(a, np.ndarray):
                assert_close(vargs[j + 1][k], largs[j + 1], kind="ad", err_msg=f"lane {k} shadow")
            j += 1 if act is Const else 2
    return primal, tangents


def test_vector_forward_calls_and_writes(rng):
    n, N = 9, 5
    x, a = rng.standard_normal(n), 0.3
    shadows = [rng.standard_normal((N, n)), rng.standard_normal(N), np.zeros((N, n))]
    _lane_vs_width1(calls_and_writes, (Dual, Dual, Dual), [x, a, np.zeros(n)], shadows, N)


@pytest.mark.parametrize("order", ["C", "F"])
def test_vector_forward_full_jacobian_row(rng, order):
    """Identity seeds give the whole gradient in one call; compared to central
    differences."""
    A = np.asarray(rng.standard_normal((4, 3)), order=order)
    w = rng.standard_normal(3)
    N = A.size
    dA = np.zeros((N,) + A.shape)
    for k, idx in enumerate(np.ndindex(*A.shape)):
        dA[(k,) + idx] = 1.0
    _, t = gradjit.autodiff(matrix_energy, "forward", Dual, Const, width=N)(A, dA, w)
    g = np.array(t).reshape(A.shape)
    eps = 1e-6
    for idx in np.ndindex(*A.shape):
        hi, lo = A.copy(), A.copy()
        hi[idx] += eps
        lo[idx] -= eps
        fd = (matrix_energy(hi, w) - matrix_energy(lo, w)) / (2 * eps)
        assert abs(g[idx] - fd) < 1e-6 * max(1.0, abs(fd))


def test_vector_forward_scalars(rng):
    N = 3
    da, db = rng.standard_normal(N), rng.standard_normal(N)
    _lane_vs_width1(scalar_only, (Dual, Dual), [0.4, 1.3], [da, db], N)
    t = gradjit.autodiff(scalar_only, "forward", Dual, Dual, ret=DualOnly, width=N)(0.4, da, 1.3, db)
    assert t.shape == (N,)


def test_vector_forward_float32(rng):
    x = rng.standard_normal(6).astype(np.float32)
    N = 2
    dx = rng.standard_normal((N, 6)).astype(np.float32)

    @njit
    def f(x):
        s = np.float32(0.0)
        for i in range(x.shape[0]):
            s += x[i] * x[i] * x[i]
        return s

    p, t = gradjit.autodiff(f, "forward", Dual, width=N)(x, dx)
    want = (3 * x.astype(np.float64) ** 2) @ dx.astype(np.float64).T
    assert_close(t, want, dtype=np.float32, kind="ad")


def test_vector_forward_shadow_shape_error(rng):
    df = gradjit.autodiff(matrix_energy, "forward", Dual, Const, width=3)
    with pytest.raises(ValueError, match="shadow shape"):
        df(np.zeros((2, 2)), np.zeros((2, 2, 2)), np.zeros(2))


# --------------------------------------------------------------------------
# batched reverse mode
# --------------------------------------------------------------------------

@njit
def local_array_and_calls(x, a):
    n = x.shape[0]
    tmp = np.empty(n)
    for i in range(n):
        tmp[i] = _helper(x[i], a)
    s = 0.0
    for i in range(n):
        if tmp[i] > 1.0:
            s += tmp[i] * tmp[(i + 1) % n]
        else:
            s -= math.sqrt(1.0 + tmp[i] ** 2)
    return s


def _reverse_lanes_vs_width1(fn, acts, args, seeds, shadows_out, width):
    dv = gradjit.autodiff(fn, "reverse", *acts, width=width)
    d1 = gradjit.autodiff(fn, "reverse", *acts)

    def expand(lane):
        out = []
        for a, act, s in zip(args, acts, shadows_out):
            out.append(a.copy() if isinstance(a, np.ndarray) else a)
            if act.shadowed:
                if lane is None:
                    out.append(s.copy())
                else:
                    out.append(s[lane].copy())
        return out

    vargs = expand(None)
    res = dv(*vargs, seeds)
    res = res if isinstance(res, tuple) else (res,)
    for k in range(width):
        largs = expand(k)
        r1 = d1(*largs, float(seeds[k]))
        r1 = r1 if isinstance(r1, tuple) else (r1,)
        assert_close(res[0], r1[0], kind="ad")                   # the primal
        for g, g1 in zip(res[1:], r1[1:]):
            assert_close(g[k], g1, kind="ad", err_msg=f"lane {k} gradient")
        j = 0
        for a, act in zip(args, acts):
            if act.shadowed:
                assert_close(vargs[j + 1][k], largs[j + 1], kind="ad", err_msg=f"lane {k} shadow")
            j += 2 if act.shadowed else 1
    return res


def test_batched_reverse_local_arrays_and_calls(rng):
    from gradjit import Active, Duplicated
    n, N = 11, 4
    x = rng.uniform(-1.5, 1.5, n)
    seeds = rng.standard_normal(N)
    _reverse_lanes_vs_width1(local_array_and_calls, (Duplicated, Active), [x, 0.6], seeds,
                             [np.zeros((N, n)), None], N)


def test_batched_reverse_written_outputs(rng):
    """Seeds in the output shadows (one cotangent per lane) are consumed; the
    return is Active too."""
    from gradjit import Active, Duplicated
    n, N = 9, 3
    x = rng.standard_normal(n)
    seeds = rng.standard_normal(N)
    out_seeds = rng.standard_normal((N, n))
    _reverse_lanes_vs_width1(calls_and_writes, (Duplicated, Active, Duplicated),
                             [x, 0.3, np.zeros(n)], seeds, [np.zeros((N, n)), None, out_seeds], N)


def test_batched_reverse_jacobian_rows_against_fd(rng):
    """Unit cotangents on the outputs give Jacobian rows in one call."""
    from gradjit import Duplicated

    @njit
    def squash(x, y):
        for i in range(x.shape[0]):
            y[i] = math.tanh(x[i] * x[(i + 2) % x.shape[0]])

    n = 6
    x = rng.standard_normal(n)
    dy = np.eye(n)                                               # lane k seeds y[k]
    dx = np.zeros((n, n))
    gradjit.autodiff(squash, "reverse", Duplicated, Duplicated, width=n)(
        x, dx, np.zeros(n), dy)
    eps = 1e-6
    for j in range(n):
        hi, lo = x.copy(), x.copy()
        hi[j] += eps
        lo[j] -= eps
        yh, yl = np.zeros(n), np.zeros(n)
        squash(hi, yh)
        squash(lo, yl)
        col = (yh - yl) / (2 * eps)
        np.testing.assert_allclose(dx[:, j], col, rtol=1e-6, atol=1e-8)
    assert not dy.any()                                          # seeds consumed


def test_batched_reverse_shadow_shape_error():
    from gradjit import Duplicated
    df = gradjit.autodiff(matrix_energy, "reverse", Duplicated, Const, width=2)
    with pytest.raises(ValueError, match="shadow shape"):
        df(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2), np.ones(2))


def test_vector_mode_through_prange(rng):
    """Vector modes through a prange launch: N shadow arrays per launch, one
    augmented launch and one reverse launch for all lanes."""
    from gradjit import Duplicated
    from numba import prange

    @njit(parallel=True)
    def cubes(x):
        s = 0.0
        for i in prange(x.shape[0]):
            s += x[i] ** 3
        return s

    x = rng.standard_normal(20)
    dx = np.zeros((2, 20))
    val, = (gradjit.autodiff(cubes, "reverse", Duplicated, width=2)(x, dx, np.array([1.0, 2.0])),)
    assert_close(val, float(np.sum(x ** 3)), kind="ad")
    assert_close(dx, np.array([3 * x ** 2, 6 * x ** 2]), kind="ad")
    _, t = gradjit.autodiff(cubes, "forward", Dual, width=2)(x, np.stack([np.ones(20), x]))
    assert_close(t, np.array([np.sum(3 * x ** 2), np.sum(3 * x ** 3)]), kind="ad")


@njit
def _recursive(x, n):
    if n == 0:
        return x
    return math.sin(_recursive(x, n - 1)) * x


def test_vector_modes_through_recursion():
    from gradjit import Active
    seeds = np.array([1.0, 2.0, -1.0])
    g1 = gradjit.grad(_recursive)(0.7, 4)
    eps = 1e-6
    fd = (_recursive(0.7 + eps, 4) - _recursive(0.7 - eps, 4)) / (2 * eps)
    assert abs(g1 - fd) < 1e-7
    val, g = gradjit.autodiff(_recursive, "reverse", Active, Const, width=3)(0.7, 4, seeds)
    assert_close(val, _recursive(0.7, 4), kind="ad")
    assert_close(g, g1 * seeds, kind="ad")
    _, t = gradjit.autodiff(_recursive, "forward", Dual, Const, width=3)(0.7, seeds, 4)
    assert_close(t, g1 * seeds, kind="ad")
