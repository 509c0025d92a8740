"""prange loops (``@njit(parallel=True)``): the parallel marker on the CPU.

Each parallel function is differentiated in both modes and checked against
central finite differences, against the derivative of the same code compiled
serially (``parallel=False``), and forward against reverse.
"""

import numpy as np
import pytest
from numba import njit, prange

import gradjit
from gradjit import Active, Dual, Duplicated
from conftest import assert_close, central, check_grads, fd_grad, get_grad


def _both(py):
    """(parallel, serial) njit versions of one Python function."""
    return njit(parallel=True)(py), njit(py)


def _elementwise(x, a):
    y = np.empty_like(x)
    for i in prange(x.shape[0]):
        y[i] = np.sin(a * x[i]) * x[i]
    return np.sum(y * y)


def _neighbours(x):
    # iterations read shared elements: their adjoints need atomic adds
    n = x.shape[0]
    s = 0.0
    for i in prange(n):
        s += x[i] * x[(i + 1) % n] + np.exp(-x[i] * x[i])
    return s


def _rows(A, w):
    # a prange over rows with an inner serial loop (tape per work item)
    m, n = A.shape
    out = np.zeros(m)
    for i in prange(m):
        acc = 0.0
        for j in range(n):
            acc += np.tanh(A[i, j] * w[j])
        out[i] = acc * acc
    return out.sum()


def _reduction_max(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += np.log1p(x[i] * x[i])
    return s / x.shape[0]


def _two_reductions(x):
    s = 0.0
    t = 0.0
    for i in prange(x.shape[0]):
        s += x[i] * x[i]
        t += np.sin(x[i])
    return s * t


def _max_reduction(x):
    m = -1e300
    for i in prange(x.shape[0]):
        m = max(m, x[i] * x[i])
    return m


def _rows_2d(A):
    # 2-D arrays and a 2-D parallel reduction (np.sum of an array expression)
    m, n = A.shape
    B = np.empty_like(A)
    for i in prange(m):
        for j in range(n):
            B[i, j] = A[i, j] * A[i, (j + 1) % n]
    return np.sum(np.sin(B))


def _array_expression(x):
    y = np.sin(x) * np.exp(-x)          # parallel=True turns this into a parfor
    return np.sum(y * y)


PROGRAMS = {
    "elementwise": (_elementwise, lambda r: (r.standard_normal(67), 0.7)),
    "neighbours": (_neighbours, lambda r: (r.standard_normal(101),)),
    "rows": (_rows, lambda r: (r.standard_normal((23, 9)), r.standard_normal(9))),
    "reduction": (_reduction_max, lambda r: (r.standard_normal(333),)),
    "two_reductions": (_two_reductions, lambda r: (r.standard_normal(41),)),
    "max_reduction": (_max_reduction, lambda r: (r.standard_normal(41),)),
    "rows_2d": (_rows_2d, lambda r: (r.standard_normal((6, 4)),)),
    "array_expression": (_array_expression, lambda r: (r.standard_normal(37),)),
}
_COMPILED = {k: _both(py) for k, (py, _) in PROGRAMS.items()}


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_prange_against_fd(name, mode, rng):
    par, _ = _COMPILED[name]
    args = PROGRAMS[name][1](rng)
    check_grads(mode, par, args)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_prange_matches_serial(name, rng):
    par, ser = _COMPILED[name]
    args = PROGRAMS[name][1](rng)
    wrt = tuple(range(len(args)))
    gp = get_grad(par, wrt)(*args)
    gs = get_grad(ser, wrt)(*args)
    for a, b in zip(gp, gs):
        assert_close(a, b, kind="ad", rtol=1e-10, atol=1e-12)


@njit(parallel=True)
def _scale_into(x, y, c):
    for i in prange(x.shape[0]):
        y[i] = c * x[i] * x[i]


def test_prange_autodiff_duplicated_output(rng):
    """The shadow of an output array is consumed as a seed; the shadow of the
    input receives the vector-Jacobian product; a float scalar captured by the
    loop (through the gufunc's scalar slot) gets its adjoint."""
    x = rng.standard_normal(1000)
    y = np.zeros_like(x)
    seed = rng.standard_normal(1000)
    dx, dy = np.zeros_like(x), seed.copy()
    df = gradjit.autodiff(_scale_into, "reverse", Duplicated, Duplicated, Active)
    dc = df(x, dx, y, dy, 1.5)
    assert_close(dx, seed * 2 * 1.5 * x, kind="ad")
    assert_close(dc, float(np.sum(seed * x * x)), kind="ad")
    assert np.all(dy == 0.0)
    assert_close(y, 1.5 * x * x, kind="ad")


def test_prange_forward_duplicated_output(rng):
    x = rng.standard_normal(500)
    tx = rng.standard_normal(500)
    y, ty = np.zeros_like(x), np.zeros_like(x)
    df = gradjit.autodiff(_scale_into, "forward", Dual, Dual, Dual)
    df(x, tx, y, ty, 2.0, 0.5)
    assert_close(ty, 2 * 2.0 * x * tx + 0.5 * x * x, kind="ad")


def test_prange_const_array_untouched(rng):
    """A Const array read inside the loop has no shadow: nothing is written to it."""
    @njit(parallel=True)
    def f(x, w):
        s = 0.0
        for i in prange(x.shape[0]):
            s += w[i] * x[i] ** 2
        return s

    x, w = rng.standard_normal(200), rng.standard_normal(200)
    w0 = w.copy()
    g = gradjit.grad(f)(x, w)
    assert_close(g, 2 * w0 * x, kind="ad")
    assert np.array_equal(w, w0)


def test_prange_large_parallel_grad(rng):
    """A size where every thread gets many iterations: reverse vs forward mode."""
    par, _ = _COMPILED["neighbours"]
    x = rng.standard_normal(200_000)
    g = gradjit.grad(par)(x)
    t = rng.standard_normal(x.shape)
    _, jv = gradjit.jvp(par)((x,), (t,))
    assert_close(float(np.dot(g, t)), jv, kind="ad", rtol=1e-9)
    for idx in (0, 1, 77_777, 199_999):
        assert_close(g[idx], central(par, (x,), 0, idx), kind="fd")


@njit(parallel=True)
def _sin2(x):
    y = np.empty_like(x)
    for i in prange(x.shape[0]):
        y[i] = np.sin(x[i]) ** 2
    return y


def test_prange_vjp_array_return(rng):
    x = rng.standard_normal(50)
    ct = rng.standard_normal(50)
    out, pullback = gradjit.vjp(_sin2)(x)
    assert_close(out, np.sin(x) ** 2, kind="ad")
    assert_close(pullback(ct), ct * 2 * np.sin(x) * np.cos(x), kind="ad")


@njit(parallel=True)
def _cube_sum_2d(A):
    m, n = A.shape
    s = 0.0
    for i in prange(m):
        for j in prange(n):
            s += A[i, j] ** 3
    return s


@njit(parallel=True)
def _shift_product_2d(A, out):
    m, n = A.shape
    for i in prange(m):
        for j in prange(n):
            out[i, j] = A[i, j] * A[(i + 1) % m, j]


def test_prange_2d_both_modes(rng):
    A = rng.standard_normal((30, 20))
    assert_close(gradjit.grad(_cube_sum_2d)(A), 3 * A ** 2, kind="ad")
    T = rng.standard_normal(A.shape)
    _, t = gradjit.jvp(_cube_sum_2d)((A,), (T,))
    assert_close(t, float(np.sum(3 * A ** 2 * T)), kind="ad")


def test_prange_2d_shared_reads(rng):
    A = rng.standard_normal((30, 20))
    dk = gradjit.autodiff(_shift_product_2d, "reverse", Duplicated, Duplicated)
    out, dA, dout = np.zeros_like(A), np.zeros_like(A), rng.standard_normal(A.shape)
    seed = dout.copy()
    dk(A, dA, out, dout)
    want = seed * np.roll(A, -1, axis=0) + np.roll(seed * A, 1, axis=0)
    assert_close(dA, want, kind="ad")


@njit(parallel=True)
def _cos_times(x, y):
    for i in prange(x.shape[0]):
        y[i] = np.cos(x[i]) * x[i]


@njit
def _two_launches_in_place(x):
    y = np.empty_like(x)
    _cos_times(x, y)
    _cos_times(y, x)           # the second launch overwrites the input in place
    return np.sum(y * y) + np.sum(x)


def test_prange_called_from_serial_code_with_overwrites(rng):
    x = rng.uniform(0.1, 1.0, 30)
    g = gradjit.grad(_two_launches_in_place)(x.copy())
    assert_close(g, fd_grad(_two_launches_in_place, (x,), 0))


def _heat(u0, kappa, steps):
    # explicit time stepping: two launches per step, the second a plain copy
    # (which LLVM turns into a memcpy inside the parallel body)
    u = u0.copy()
    n = u.shape[0]
    v = np.empty_like(u)
    for t in range(steps):
        for i in prange(n):
            left = u[i - 1] if i > 0 else u[n - 1]
            right = u[i + 1] if i < n - 1 else u[0]
            v[i] = u[i] + kappa * (left - 2.0 * u[i] + right) - 0.01 * u[i] ** 3
        for i in prange(n):
            u[i] = v[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def _local_array_in_body(x):
    s = 0.0
    for i in prange(x.shape[0]):
        tmp = np.empty(3)
        for j in range(3):
            tmp[j] = np.sin(x[i] * (j + 1))
        s += tmp[0] * tmp[1] + tmp[2]
    return s


@pytest.mark.parametrize("py,make,wrt", [
    (_heat, lambda r: (r.uniform(0, 1, 40), 0.2, 15), (0, 1)),
    (_local_array_in_body, lambda r: (r.uniform(0.1, 2.0, 50),), (0,)),
], ids=["heat_time_stepping", "local_array_in_body"])
def test_prange_patterns_against_serial_and_fd(py, make, wrt, rng):
    par, ser = njit(parallel=True)(py), njit(py)
    args = make(rng)
    gp = gradjit.grad(par, wrt)(*args)
    gs = gradjit.grad(ser, wrt)(*args)
    for a, b in zip(gp, gs):
        assert_close(a, b, kind="ad", rtol=1e-10, atol=1e-12)
    for k, g in zip(wrt, gp):
        assert_close(g, fd_grad(ser, args, k))


def _shared_weights_loss(X, w, y):
    # the per-sample loss pattern: every iteration reads all of w
    s = 0.0
    for i in prange(X.shape[0]):
        z = 0.0
        for j in range(X.shape[1]):
            z += X[i, j] * w[j]
        r = np.tanh(z) - y[i]
        s += r * r
    return s / X.shape[0]


def test_prange_shared_weights_private_shadow_copies(rng):
    """w's adjoint gets per-thread shadow copies (no contended atomics); the
    result must match the serial gradient and finite differences, for sizes
    below and above the copy limit."""
    from gradjit.ad import parallel_for
    par, ser = njit(parallel=True)(_shared_weights_loss), njit(_shared_weights_loss)
    for nfeat in (8, parallel_for.PRIVATE_SHADOW_BYTES // 8 + 5):
        m = 64 if nfeat == 8 else 6
        X = rng.standard_normal((m, nfeat)) / np.sqrt(nfeat)
        w = rng.standard_normal(nfeat)
        y = rng.standard_normal(m)
        gp = gradjit.grad(par, (0, 1))(X, w, y)
        gs = gradjit.grad(ser, (0, 1))(X, w, y)
        for a, b in zip(gp, gs):
            assert_close(a, b, kind="ad", rtol=1e-10, atol=1e-14)
        if nfeat == 8:
            assert_close(gp[1], fd_grad(ser, (X, w, y), 1))


def test_prange_vector_modes_one_launch_for_all_lanes(rng):
    from gradjit import Active, Const
    par = njit(parallel=True)(_heat)
    x = rng.uniform(0, 1, 30)
    N = 3
    seeds = np.array([1.0, -2.0, 0.5])
    g = gradjit.grad(par, (0, 1))(x, 0.2, 5)
    dx = np.zeros((N, 30))
    _, dk = gradjit.autodiff(par, "reverse", Duplicated, Active, Const, width=N)(x, dx, 0.2, 5, seeds)
    assert_close(dx, seeds[:, None] * g[0], kind="ad")
    assert_close(dk, seeds * g[1], kind="ad")
    T = rng.standard_normal((N, 30))
    _, t = gradjit.autodiff(par, "forward", Dual, Dual, Const, width=N)(x, T, 0.2, np.ones(N), 5)
    assert_close(t, T @ g[0] + g[1], kind="ad")


@njit(parallel=True)
def _dot_rows(X, w):
    out = np.empty(X.shape[0])
    for i in prange(X.shape[0]):
        out[i] = np.tanh(X[i] @ w)          # BLAS dot; w is read by every iteration
    return np.sum(out ** 2)


@njit(parallel=True)
def _dot_rows_local_weights(X, w0):
    w = w0 * 2.0                             # not an argument: no per-thread copy
    out = np.empty(X.shape[0])
    for i in prange(X.shape[0]):
        out[i] = np.tanh(X[i] @ w)
    return np.sum(out ** 2)


def test_blas_in_prange_shared_operand():
    # the dot's adjoint adds into dw with plain stores: dw gets a per-thread copy
    # (its adds raced: lost updates on most calls); where no copy can be made
    # (w computed in the function) the call is reported
    rng = np.random.default_rng(1)
    X, w = rng.uniform(-1, 1, (2000, 16)), rng.uniform(-1, 1, 16) * 0.3
    t = np.tanh(X @ w)
    want_w = X.T @ (2 * t * (1 - t ** 2))
    want_x = np.outer(2 * t * (1 - t ** 2), w)
    g = gradjit.grad(_dot_rows, argnums=(0, 1))
    for _ in range(20):
        gx, gw = g(X, w)
        np.testing.assert_allclose(gw, want_w, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, want_x, rtol=1e-12, atol=1e-12)
    with pytest.raises(gradjit.UnsupportedError, match="prange loop"):
        gradjit.grad(_dot_rows_local_weights, argnums=1)(X, w)


@njit(parallel=True)
def _two_views(x):
    n = x.shape[0]
    y = x[n // 4:]                           # a view of x: its shadow overlaps dx
    s = 0.0
    for i in prange(n // 2):
        s += x[i] * 2.0 + y[i] * 3.0
    return s


def test_views_of_one_array_in_prange_add_atomically():
    # x[i] and y[i] are each indexed by the iteration only, but y's entries are x's:
    # iterations of different threads add into the same dx entries (lost updates)
    n = 400_000
    want = np.zeros(n)
    want[: n // 2] += 2.0
    want[n // 4: n // 4 + n // 2] += 3.0
    g = gradjit.grad(_two_views)
    for _ in range(5):
        np.testing.assert_array_equal(g(np.ones(n)), want)
