"""Coverage: arrays.

1-D/2-D/3-D arguments in C, Fortran and strided layouts, float64 and float32;
array expressions and reductions; local arrays (np.empty / np.zeros /
np.empty_like); functions returning arrays (jvp, vjp); integer index
arithmetic and boolean code (inactive); in-place overwrite with Duplicated and
Dual shadows: seed semantics, accumulation and zeroing of consumed seeds.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Dual, Duplicated, DuplicatedNoNeed
from conftest import (
    MODES,
    ad_grads,
    assert_close,
    check_grads,
    fd_grad,
    fd_jvp,
    fd_vjp,
    final_state,
    get_autodiff,
    get_grad,
    get_jvp,
    get_vjp,
    make_array,
    state_fn,
)


# ------------------------------------------------------------- scalar output
@njit
def loop1d(x):
    s = 0.0
    n = x.shape[0]
    for i in range(n):
        s += x[i] * x[i] * (i + 1) + math.sin(x[i]) * x[(i + 1) % n]
    return s


@njit
def loop2d(x):
    s = 0.0
    m, n = x.shape
    for i in range(m):
        for j in range(n):
            s += x[i, j] ** 2 * (i + 1) - x[i, j] * x[(i + 1) % m, j] * (j + 0.5)
    return s


@njit
def loop3d(x):
    s = 0.0
    a, b, c = x.shape
    for i in range(a):
        for j in range(b):
            for k in range(c):
                v = x[i, j, k]
                s += math.exp(0.3 * v) * (i + 2 * j + 3 * k + 1) + v * x[i, j, (k + 1) % c]
    return s


LOOP_FNS = {1: loop1d, 2: loop2d, 3: loop3d}
SHAPES = {1: (7,), 2: (3, 4), 3: (2, 3, 4)}
LAYOUT_CASES = [
    (1, "C", np.float64),
    (1, "A", np.float64),
    (1, "C", np.float32),
    (1, "A", np.float32),
    (2, "C", np.float64),
    (2, "F", np.float64),
    (2, "A", np.float64),
    (2, "F", np.float32),
    (3, "C", np.float64),
    (3, "F", np.float64),
    (3, "A", np.float64),
    (3, "C", np.float32),
]


def _case_id(c):
    nd, layout, dt = c
    return f"{nd}d-{layout}-{np.dtype(dt).name}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=_case_id)
def test_layouts(mode, case, rng):
    nd, layout, dt = case
    x = make_array(rng, SHAPES[nd], layout, dt)
    x_before = x.copy()
    (g,) = check_grads(mode, LOOP_FNS[nd], (x,))
    np.testing.assert_array_equal(x, x_before)  # primal input untouched
    if mode == "reverse":
        assert isinstance(g, np.ndarray)
        assert g.shape == x.shape and g.dtype == x.dtype


@pytest.mark.parametrize("mode", MODES)
def test_negative_stride_view(mode, rng):
    # x[::-1] has the same numba type (1-D, layout A) as a forward strided view
    base = rng.uniform(-1, 1, 15)
    x = base[::-2]
    check_grads(mode, loop1d, (x,))


@njit
def contiguous_copies(A, W):
    # an 'A'-layout slice made contiguous (a copy at run time) and a Fortran copy:
    # Numba merges "the input itself" and "a copy" as whole array structs
    C = np.ascontiguousarray(A[:, 1:])
    F = np.asfortranarray(A[1:, :])
    return np.sum(W * (C @ C.T)) + np.sum(F * F * F)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ascontiguousarray_asfortranarray_of_views(mode, dtype, rng):
    A = rng.standard_normal((4, 5)).astype(dtype)
    W = rng.standard_normal((4, 4)).astype(dtype)
    check_grads(mode, contiguous_copies, (A, W), wrt=(0,))


@njit
def array_expr(x):
    return np.sum(x * x) + x.sum() + np.sum(np.sin(x) * x)


def array_expr_grad(x):
    return 2 * x + 1 + np.cos(x) * x + np.sin(x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "shape,layout", [((6,), "A"), ((3, 4), "F"), ((2, 3, 2), "C")], ids=["1d-A", "2d-F", "3d-C"]
)
def test_array_expressions(mode, shape, layout, rng):
    x = make_array(rng, shape, layout)
    (g,) = check_grads(mode, array_expr, (x,))
    assert_close(g, array_expr_grad(x), np.float64, "ad")


@njit
def reductions(x):
    return np.sum(x) * 0.5 + x.sum() ** 2 + np.mean(x) + np.sum(x[1:] * x[:-1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_reductions(mode, dtype, rng):
    x = rng.uniform(-1, 1, 6).astype(dtype)
    (g,) = check_grads(mode, reductions, (x,))
    x64 = x.astype(np.float64)
    want = 0.5 + 2 * x64.sum() + 1.0 / x64.size + np.r_[x64[1:], 0.0] + np.r_[0.0, x64[:-1]]
    assert_close(g, want, dtype, "ad")


@njit
def weighted(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j] * b[j] * b[j] + math.tanh(a[i, j] * b[i])
    return s


@pytest.mark.parametrize("mode", MODES)
def test_two_arrays_mixed_layouts(mode, rng):
    a = make_array(rng, (3, 5), "F")
    b = make_array(rng, (5,), "A")
    check_grads(mode, weighted, (a, b))


@pytest.mark.parametrize("mode", MODES)
def test_grad_wrt_one_of_two_arrays(mode, rng):
    a = rng.uniform(-1, 1, (3, 5))
    b = rng.uniform(-1, 1, 5)
    if mode == "reverse":
        g = get_grad(weighted, argnums=1)(a, b)
    else:
        (g,) = ad_grads("forward", weighted, (a, b), wrt=(1,))
    assert_close(g, fd_grad(weighted, (a, b), 1))


# ------------------------------------------------------------- local arrays
@njit
def local_arrays(x):
    n = x.shape[0]
    t = np.empty(n)
    for i in range(n):
        t[i] = x[i] * x[i]
    c = np.zeros(n + 1)
    for i in range(n):
        c[i + 1] = c[i] + t[i]  # prefix sums in a local buffer
    u = np.empty_like(x)
    for i in range(n):
        u[i] = math.sin(c[i + 1]) * x[i]
    s = 0.0
    for i in range(n):
        s += u[i]
    return s


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_local_arrays(mode, dtype, rng):
    x = rng.uniform(-1, 1, 6).astype(dtype)
    check_grads(mode, local_arrays, (x,))


@njit
def local_2d(x):
    m, n = x.shape
    w = np.zeros((n, m))
    for i in range(m):
        for j in range(n):
            w[j, i] = x[i, j] * (i - j)
    return np.sum(w * w) + np.sum(np.exp(0.1 * w))


@pytest.mark.parametrize("mode", MODES)
def test_local_2d_array(mode, rng):
    check_grads(mode, local_2d, (rng.uniform(-1, 1, (3, 4)),))


# ------------------------------------------------- index arithmetic, booleans
@njit
def index_arith(x):
    n = x.shape[0]
    s = 0.0
    cnt = 0
    for i in range(n):
        j = (i * 7 + 3) % n
        k = n - 1 - i
        pos = x[i] > 0.0
        if pos:
            cnt += 1
        s += x[j] * x[k] * cnt + (x[i] if pos and (i & 1) == 0 else 0.0)
    return s


def index_arith_grad(x):
    n = x.size
    g = np.zeros(n)
    cnt = 0
    for i in range(n):
        j = (i * 7 + 3) % n
        k = n - 1 - i
        if x[i] > 0:
            cnt += 1
        g[j] += x[k] * cnt
        g[k] += x[j] * cnt
        if x[i] > 0 and i % 2 == 0:
            g[i] += 1.0
    return g


@pytest.mark.parametrize("mode", MODES)
def test_index_arithmetic_and_booleans(mode, rng):
    x = rng.uniform(-1, 1, 9)
    (g,) = check_grads(mode, index_arith, (x,))
    assert_close(g, index_arith_grad(x), np.float64, "ad")


# ------------------------------------------------- functions returning arrays
@njit
def elementwise(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = math.sin(x[i]) * x[i] + x[i] ** 2
    return out


@njit
def matvec(A, x):
    m, n = A.shape
    y = np.zeros(m)
    for i in range(m):
        for j in range(n):
            y[i] += A[i, j] * math.tanh(x[j])
    return y


@njit
def expr_out_2d(x):
    return np.sin(x) * x + 2.0 * x


def test_forward_autodiff_of_array_function_returns_the_primal(rng):
    """API.md: forward mode with a Const return gives the primal return, here an
    array (it was None)."""
    x = rng.uniform(-1, 1, 6)
    # equal up to the few ulp of the vector math library (gradjit.backend.vecmath)
    out = gradjit.autodiff(elementwise, "forward", Dual)(x, rng.standard_normal(6))
    np.testing.assert_allclose(out, elementwise(x), rtol=1e-15, atol=1e-300)
    out = gradjit.autodiff(elementwise, "forward", Dual, width=3)(x, rng.standard_normal((3, 6)))
    np.testing.assert_allclose(out, elementwise(x), rtol=1e-15, atol=1e-300)


_LEAK_CHECK = """
import numpy as np, numba, gradjit
from gradjit import Dual, Duplicated
from numba.core.runtime import rtsys

@numba.njit
def f(x):
    return np.sin(x) * 2.0

@numba.njit
def g(x):                              # arrays inside a (nested) tuple
    return 3, np.sin(x), (1.5, x * 2.0)

@numba.njit
def v(x):                              # a view of the argument: its reference escapes
    return x[1:]

@numba.njit
def sq(x, out):
    out[0] = x[0] * x[1]

dsq = gradjit.autodiff(sq, "reverse", Duplicated, Duplicated)

@numba.njit
def rows(a, da, out, dout):           # views passed to a derivative from @njit code
    for i in range(a.shape[0]):
        dout[0] = 1.0
        dsq(a[i], da[i], out, dout)
    return da

x = np.linspace(0.0, 1.0, 50)
for df, shadow in [(gradjit.autodiff(h, "forward", Dual), np.ones(50)) for h in (f, g, v)] + \
                  [(gradjit.autodiff(h, "forward", Dual, width=3), np.ones((3, 50))) for h in (f, g, v)] + \
                  [(gradjit.autodiff(h, "reverse", Duplicated), np.zeros(50)) for h in (f, g)]:
    r = df(x, shadow)
    del r
    s0 = rtsys.get_allocation_stats()
    for _ in range(200):
        r = df(x, shadow)
        del r
    s1 = rtsys.get_allocation_stats()
    print(s1.mi_alloc - s0.mi_alloc - (s1.mi_free - s0.mi_free))
a = np.arange(1.0, 41.0).reshape(20, 2)
da = np.zeros_like(a)
rows(a, da, np.zeros(1), np.zeros(1))
s0 = rtsys.get_allocation_stats()
for _ in range(200):
    da[:] = 0.0
    r = rows(a, da, np.zeros(1), np.zeros(1))
    del r
s1 = rtsys.get_allocation_stats()
print(s1.mi_alloc - s0.mi_alloc - (s1.mi_free - s0.mi_free))
assert np.array_equal(da, a[:, ::-1]), da        # d(x0 x1) = (x1, x0) per row
assert np.array_equal(gradjit.autodiff(v, "forward", Dual)(x, np.ones(50)), x[1:])
"""


def test_array_returning_derivatives_release_their_arrays():
    """The tangent arrays of a returned array (one per lane) are released: every
    NRT allocation made by 200 calls is freed (they leaked one per lane and call;
    arrays in a returned tuple leaked in both modes).  Also with the reference
    counts of borrowed arguments dropped (``ir.refcounts``): a returned view of an
    argument keeps its reference, and views passed to a derivative from ``@njit``
    code in a loop are neither leaked nor freed early."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    out = subprocess.run([sys.executable, "-c", _LEAK_CHECK], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0"] * 9, out.stdout


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_array_output_jvp(dtype, rng):
    x = rng.uniform(-1, 1, 6).astype(dtype)
    t = rng.standard_normal(6).astype(dtype)
    out, t_out = get_jvp(elementwise)((x,), (t,))
    assert isinstance(t_out, np.ndarray) and t_out.shape == x.shape
    assert_close(out, elementwise(x), dtype, "ad")
    x64 = x.astype(np.float64)
    want = (np.cos(x64) * x64 + np.sin(x64) + 2 * x64) * t
    assert_close(t_out, want, dtype, "ad")
    assert_close(t_out, fd_jvp(elementwise, (x,), (t,)), dtype, "fd")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_array_output_vjp(dtype, rng):
    x = rng.uniform(-1, 1, 6).astype(dtype)
    cot = rng.standard_normal(6).astype(dtype)
    out, pullback = get_vjp(elementwise)(x)
    assert_close(out, elementwise(x), dtype, "ad")
    g = pullback(cot)
    assert isinstance(g, np.ndarray) and g.shape == x.shape and g.dtype == x.dtype
    assert_close(g, fd_vjp(elementwise, (x,), 0, cot), dtype, "fd")


def test_matvec_jvp_and_vjp_agree(rng):
    A = rng.uniform(-1, 1, (4, 3))
    x = rng.uniform(-1, 1, 3)
    tA = rng.standard_normal(A.shape)
    tx = rng.standard_normal(x.shape)
    cot = rng.standard_normal(4)
    y, t_out = get_jvp(matvec)((A, x), (tA, tx))
    assert_close(y, A @ np.tanh(x), np.float64, "ad")
    assert_close(t_out, tA @ np.tanh(x) + A @ ((1 - np.tanh(x) ** 2) * tx), np.float64, "ad")
    y2, pullback = get_vjp(matvec, argnums=(0, 1))(A, x)
    gA, gx = pullback(cot)
    assert_close(gA, np.outer(cot, np.tanh(x)), np.float64, "ad")
    assert_close(gx, (A.T @ cot) * (1 - np.tanh(x) ** 2), np.float64, "ad")
    # <cot, J t> == <J^T cot, t>
    assert_close(cot @ t_out, np.sum(gA * tA) + gx @ tx, np.float64, "ad")


def test_array_output_2d_fortran(rng):
    x = make_array(rng, (3, 4), "F")
    t = rng.standard_normal((3, 4))
    cot = rng.standard_normal((3, 4))
    _, t_out = get_jvp(expr_out_2d)((x,), (t,))
    assert t_out.shape == (3, 4)
    assert_close(t_out, (np.cos(x) * x + np.sin(x) + 2) * t, np.float64, "ad")
    _, pullback = get_vjp(expr_out_2d)(x)
    assert_close(pullback(cot), (np.cos(x) * x + np.sin(x) + 2) * cot, np.float64, "ad")


# --------------------------------------------------------- in-place, seeds
@njit
def inplace_map(x):
    for i in range(x.shape[0]):
        x[i] = math.sin(x[i]) * x[i] + 0.5


@njit
def inplace_scan(x):
    # uses already-overwritten x[i - 1]: a lower-bidiagonal, non-diagonal Jacobian
    for i in range(1, x.shape[0]):
        x[i] = x[i] + 0.5 * x[i - 1] * x[i]


@njit
def inplace_and_return(x):
    s = 0.0
    for i in range(x.shape[0]):
        x[i] = x[i] * x[i]
        s += math.exp(0.2 * x[i])  # reads the new value
    return s


@njit
def write_out(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * x[i] + math.cos(x[i])


@njit
def accumulate_out(x, out):
    # out is read and written: out_final = out0 * (1 + x)
    for i in range(x.shape[0]):
        out[i] += x[i] * out[i]


@pytest.mark.parametrize("fn", [inplace_map, inplace_scan], ids=["map", "scan"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_inplace_reverse_seed_semantics(fn, dtype, rng):
    x0 = rng.uniform(-1, 1, 6).astype(dtype)
    seed = rng.standard_normal(6).astype(dtype)  # cotangent of the final x
    x = x0.copy()
    dx = seed.copy()
    df = get_autodiff(fn, "reverse", Duplicated)
    r = df(x, dx)
    assert r is None
    # primal effect happened
    assert_close(x, final_state(fn, 0)(x0.astype(np.float64)), dtype, "ad")
    # dx = J^T seed, J = d(final x)/d(initial x)
    want = fd_grad(state_fn(fn, {0: seed}), (x0,), 0)
    assert_close(dx, want, dtype, "fd")
    if fn is inplace_map:
        x64 = x0.astype(np.float64)
        assert_close(dx, (np.cos(x64) * x64 + np.sin(x64)) * seed, dtype, "ad")


def test_inplace_reverse_strided_view(rng):
    base = rng.uniform(-1, 1, 12)
    dbase = rng.standard_normal(12)
    x0 = base[::2].copy()
    seed = dbase[::2].copy()
    untouched = dbase[1::2].copy()
    df = get_autodiff(inplace_map, "reverse", Duplicated)
    df(base[::2], dbase[::2])
    assert_close(dbase[::2], fd_grad(state_fn(inplace_map, {0: seed}), (x0,), 0))
    np.testing.assert_array_equal(dbase[1::2], untouched)


def test_inplace_with_active_return(rng):
    x0 = rng.uniform(-1, 1, 5)
    seed = rng.standard_normal(5)
    ret_seed = 1.7
    x = x0.copy()
    dx = seed.copy()
    df = get_autodiff(inplace_and_return, "reverse", Duplicated)  # ret defaults to Active
    primal = df(x, dx, ret_seed)
    assert_close(primal, inplace_and_return(x0.copy()), np.float64, "ad")
    assert_close(x, x0 * x0, np.float64, "ad")
    want = fd_grad(state_fn(inplace_and_return, {0: seed}, ret_seed), (x0,), 0)
    assert_close(dx, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_output_seed_is_consumed(dtype, rng):
    x = rng.uniform(-1, 1, 6).astype(dtype)
    out = np.full(6, 123.0, dtype=dtype)
    seed = rng.standard_normal(6).astype(dtype)
    dx = np.zeros_like(x)
    dout = seed.copy()
    df = get_autodiff(write_out, "reverse", Duplicated, Duplicated)
    assert df(x, dx, out, dout) is None
    x64 = x.astype(np.float64)
    assert_close(out, x64 * x64 + np.cos(x64), dtype, "ad")
    assert np.all(np.abs(dout) <= 1e-12), "seed in the shadow of an overwritten array must be zeroed"
    assert_close(dx, (2 * x64 - np.sin(x64)) * seed, dtype, "ad")
    assert_close(dx, fd_grad(state_fn(write_out, {1: seed}), (x, out), 0), dtype, "fd")


def test_output_seed_prefilled_dx_accumulates(rng):
    x = rng.uniform(-1, 1, 6)
    out = np.zeros(6)
    seed = rng.standard_normal(6)
    prefill = rng.standard_normal(6)
    dx = prefill.copy()
    dout = seed.copy()
    get_autodiff(write_out, "reverse", Duplicated, Duplicated)(x, dx, out, dout)
    assert_close(dx, prefill + (2 * x - np.sin(x)) * seed, np.float64, "ad")


def test_read_and_written_output(rng):
    x = rng.uniform(-1, 1, 5)
    out0 = rng.uniform(-1, 1, 5)
    seed = rng.standard_normal(5)
    out = out0.copy()
    dx = np.zeros(5)
    dout = seed.copy()
    get_autodiff(accumulate_out, "reverse", Duplicated, Duplicated)(x, dx, out, dout)
    assert_close(out, out0 * (1 + x), np.float64, "ad")
    # the seed is consumed, then the read of out0 adds its adjoint back
    assert_close(dout, (1 + x) * seed, np.float64, "ad")
    assert_close(dx, out0 * seed, np.float64, "ad")
    assert_close(dout, fd_grad(state_fn(accumulate_out, {1: seed}), (x, out0), 1))


def test_gradients_accumulate(rng):
    x = rng.uniform(-1, 1, 7)
    g = fd_grad(loop1d, (x,), 0)
    df = get_autodiff(loop1d, "reverse", Duplicated)
    dx = np.zeros(7)
    p1 = df(x, dx, 1.0)
    assert_close(p1, loop1d(x), np.float64, "ad")
    assert_close(dx, g)
    df(x, dx, 1.0)
    assert_close(dx, 2 * g)
    df(x, dx, 2.5)
    assert_close(dx, 4.5 * g)


def test_duplicated_noneed(rng):
    x = rng.uniform(-1, 1, 6)
    out = np.zeros(6)
    seed = rng.standard_normal(6)
    x_keep = x.copy()
    dx = np.zeros(6)
    dout = seed.copy()
    df = get_autodiff(write_out, "reverse", DuplicatedNoNeed, Duplicated)
    df(x, dx, out, dout)
    # x's contents are unspecified afterwards; the gradient is not
    assert_close(dx, (2 * x_keep - np.sin(x_keep)) * seed, np.float64, "ad")
    assert_close(out, x_keep**2 + np.cos(x_keep), np.float64, "ad")


@pytest.mark.parametrize("fn", [inplace_map, inplace_scan], ids=["map", "scan"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_inplace_forward_output_tangent(fn, dtype, rng):
    x0 = rng.uniform(-1, 1, 6).astype(dtype)
    t = rng.standard_normal(6).astype(dtype)
    x = x0.copy()
    dx = t.copy()
    df = get_autodiff(fn, "forward", Dual)
    df(x, dx)
    assert_close(x, final_state(fn, 0)(x0.astype(np.float64)), dtype, "ad")
    # dx now holds the tangent of the final x
    assert_close(dx, fd_jvp(final_state(fn, 0), (x0,), (t,)), dtype, "fd")


def test_forward_written_output_receives_tangent(rng):
    x = rng.uniform(-1, 1, 6)
    t = rng.standard_normal(6)
    out = np.zeros(6)
    dout = rng.standard_normal(6)  # stale contents must be overwritten
    df = get_autodiff(write_out, "forward", Dual, Dual)
    df(x, t.copy(), out, dout)
    assert_close(out, x * x + np.cos(x), np.float64, "ad")
    assert_close(dout, (2 * x - np.sin(x)) * t, np.float64, "ad")


def test_forward_read_and_written_output(rng):
    x = rng.uniform(-1, 1, 5)
    out0 = rng.uniform(-1, 1, 5)
    tx = rng.standard_normal(5)
    tout = rng.standard_normal(5)
    out = out0.copy()
    dout = tout.copy()
    get_autodiff(accumulate_out, "forward", Dual, Dual)(x, tx.copy(), out, dout)
    assert_close(dout, tout * (1 + x) + out0 * tx, np.float64, "ad")


def test_forward_inplace_with_return(rng):
    x0 = rng.uniform(-1, 1, 5)
    t = rng.standard_normal(5)
    x = x0.copy()
    dx = t.copy()
    primal, tangent = get_autodiff(inplace_and_return, "forward", Dual)(x, dx)
    assert_close(primal, inplace_and_return(x0.copy()), np.float64, "ad")
    assert_close(tangent, fd_jvp(inplace_and_return, (x0,), (t,)))
    assert_close(dx, 2 * x0 * t, np.float64, "ad")


def test_forward_and_reverse_agree_inplace(rng):
    # <seed, J t> computed both ways for the scan (non-diagonal J)
    x0 = rng.uniform(-1, 1, 6)
    t = rng.standard_normal(6)
    seed = rng.standard_normal(6)
    dx_f = t.copy()
    get_autodiff(inplace_scan, "forward", Dual)(x0.copy(), dx_f)
    dx_r = seed.copy()
    get_autodiff(inplace_scan, "reverse", Duplicated)(x0.copy(), dx_r)
    assert_close(seed @ dx_f, dx_r @ t, np.float64, "ad")


# ------------------------------------------------ writes through reshape / ravel views
# Numba keeps the array struct of a no-copy reshape in a stack slot (its fields'
# addresses go to numba_attempt_nocopy_reshape); the data pointer loaded back from
# the slot writes the argument, and the reverse must not re-read the overwritten
# entries as if they were unchanged.

@njit
def overwrite_through_reshape(x):
    s = x[0] * x[3]                # the original entries
    v = x.reshape(-1)
    for i in range(v.shape[0]):
        v[i] = v[i] * v[i] + 0.1
    return s + x[0] * x[3]         # the new ones


@njit
def overwrite_through_ravel_2d(a):
    s = a[0, 0] * a[1, 1]
    v = a.ravel()
    for i in range(v.shape[0]):
        v[i] = math.sin(v[i])
    return s + a[0, 0] * a[1, 1] + a[0, 1]


@pytest.mark.parametrize("mode", MODES)
def test_overwrite_through_reshape_view(mode):
    x = np.array([0.3, -0.7, 1.1, 0.5])
    g = ad_grads(mode, overwrite_through_reshape, (x,), (0,))[0]
    x0, x3 = x[0], x[3]
    y0, y3 = x0 * x0 + 0.1, x3 * x3 + 0.1
    np.testing.assert_allclose(g, [x3 + 2 * x0 * y3, 0.0, 0.0, x0 + 2 * x3 * y0], rtol=1e-13)
    check_grads(mode, overwrite_through_ravel_2d, (np.array([[0.3, -0.7], [1.1, 0.5]]),))


# ------------------------------------------------ arguments that share memory
# Two array arguments of one call may be the same memory (in-place use of a
# function written with an output argument).  From Python the reverse mode then
# uses a version that records loads a write through another argument can change;
# from @njit code it raises ValueError (it cannot switch versions at run time).

@njit
def scale_by_first(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * x[0]


@njit
def in_place_scale(z):
    scale_by_first(z, z[::-1])
    return z


def test_aliased_arguments_reverse_from_python():
    a = np.array([0.5, 1.5, -0.3])
    w = np.array([1.0, 2.0, 3.0])
    df = gradjit.autodiff(scale_by_first, "reverse", Duplicated, Duplicated)
    aa, da = a.copy(), w.copy()
    df(aa, da, aa, da)                                  # out is x: in place
    a0, a1, a2 = a
    np.testing.assert_allclose(aa, [a0 ** 2, a1 * a0 ** 2, a2 * a0 ** 2], rtol=1e-15)
    want = [2 * a0 * w[0] + 2 * a1 * a0 * w[1] + 2 * a2 * a0 * w[2], a0 ** 2 * w[1], a0 ** 2 * w[2]]
    np.testing.assert_allclose(da, want, rtol=1e-14)
    # out is x reversed: compare with FD of the in-place function
    b = np.array([0.5, 1.5, -0.3, 2.0])
    bb, db = b.copy(), np.ones(4)
    df(bb, db, bb[::-1], db[::-1])
    fd = fd_grad(lambda z: float(np.sum(in_place_scale(z.copy()))), (b,))
    assert_close(db, fd, kind="fd")
    # distinct arrays still take the usual version
    out, dout, dx = np.zeros(3), w.copy(), np.zeros(3)
    df(a.copy(), dx, out, dout)
    np.testing.assert_allclose(dx, [a0 * w[0] + np.dot(a, w), a0 * w[1], a0 * w[2]], rtol=1e-14)


def test_aliased_arguments_from_njit_raise():
    df = gradjit.autodiff(scale_by_first, "reverse", Duplicated, Duplicated)

    @njit
    def run(a, da, b, db):
        df(a, da, b, db)

    a, da = np.array([0.5, 1.5, -0.3]), np.ones(3)
    run(a, da, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="'x' and 'out' share memory"):
        run(a, da, a, da)


@njit
def dot_args(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s


def test_aliased_read_only_arguments_from_njit():
    # nothing writes argument memory: aliasing changes nothing, no error
    df = gradjit.autodiff(dot_args, "reverse", Duplicated, Duplicated)

    @njit
    def run(a, da):
        return df(a, da, a, da, 1.0)

    a, da = np.array([0.5, 1.5, -0.3]), np.zeros(3)
    assert run(a, da) == pytest.approx(np.dot(a, a), rel=1e-15)
    np.testing.assert_allclose(da, 2 * a, rtol=1e-15)


# A Const array that is the memory of a differentiated one, and that the function
# stores derivative-carrying values through, would carry them without a
# derivative: ValueError (alone or inside a tuple, in every mode and transform);
# with the same shadow for both the derivative is right.

@njit
def square_into(x, b):
    for i in range(x.shape[0]):
        b[i] = x[i] * x[i]
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * b[i]
    return s


@njit
def square_into_first(x, bufs):
    return square_into(x, bufs[0])


@pytest.mark.filterwarnings("ignore::gradjit.ActivityWarning")   # Const b, written: on purpose
@pytest.mark.parametrize("pack", [lambda x: x, lambda x: (x,)], ids=["array", "tuple"])
def test_const_alias_written_raises(pack):
    fn = square_into if not isinstance(pack(np.zeros(1)), tuple) else square_into_first
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shares memory with 'x'"):
        gradjit.autodiff(fn, "reverse", Duplicated, Const)(x, np.zeros(3), pack(x), 1.0)
    with pytest.raises(ValueError, match="shares memory with 'x'"):
        gradjit.autodiff(fn, "forward", Dual, Const)(x, np.ones(3), pack(x))
    with pytest.raises(ValueError, match="shares memory with 'x'"):
        gradjit.autodiff(fn, "forward", Dual, Const, width=2)(x, np.ones((2, 3)), pack(x))
    with pytest.raises(ValueError, match="shares memory|is a tuple"):
        gradjit.grad(fn)(x, pack(x))
    # distinct memory: the gradient of x * x**2 summed (an array gets a scratch
    # shadow; inside a tuple it cannot, which grad says instead of dropping it)
    y = np.array([1.0, 2.0, 3.0])
    if fn is square_into:
        np.testing.assert_allclose(gradjit.grad(fn)(y, np.zeros(3)), 3 * y ** 2, rtol=1e-15)
    else:
        with pytest.raises(ValueError, match="argument 1 is a tuple"):
            gradjit.grad(fn)(y, (np.zeros(3),))


def test_const_alias_same_shadow_is_right():
    # differentiated with one shadow, the aliased program's derivative (4 x**3)
    x, dx = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    gradjit.autodiff(square_into, "reverse", Duplicated, Duplicated)(x, dx, x, dx, 1.0)
    np.testing.assert_allclose(dx, 4 * np.array([1.0, 2.0, 3.0]) ** 3, rtol=1e-14)


@njit
def dot_first(x, bufs):
    return np.sum(x * bufs[0])


def test_const_alias_read_only_is_allowed():
    # nothing is stored through the Const member: it is a constant copy of x
    x, dx = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    val = gradjit.autodiff(dot_first, "reverse", Duplicated, Const)(x, dx, (x,), 1.0)
    assert val == pytest.approx(14.0, rel=1e-15)
    np.testing.assert_allclose(dx, x, rtol=1e-15)


# ------------------------------------------------ Const arrays through reshape / ravel
@njit
def weighted_by_raveled(a, w):
    return np.sum(a * w.ravel())


@pytest.mark.parametrize("mode", MODES)
def test_const_array_through_ravel_is_left_alone(mode):
    # the Const array's struct sits in a stack slot; that slot must not get the
    # primal as its shadow (reverse added the gradient into w, forward read w's
    # values as its tangent)
    a = np.array([1.0, 2.0, 3.0, 4.0])
    w = np.array([[10.0, 20.0], [30.0, 40.0]])
    keep = w.copy()
    if mode == "reverse":
        g = gradjit.grad(weighted_by_raveled, argnums=0)(a, w)
        np.testing.assert_array_equal(g, keep.ravel())
    else:
        t = np.array([1.0, -2.0, 0.5, 3.0])
        _, dy = gradjit.jvp(weighted_by_raveled)((a, w), (t, None))
        assert dy == pytest.approx(float(np.dot(t, keep.ravel())), rel=1e-15)
    np.testing.assert_array_equal(w, keep)


# ------------------------------------------------ copies made in a callee (flatten, median)
@njit
def flattened_entry(a):
    t = a.flatten()                  # a callee: the memcpy into its new array is there
    t[2], t[4] = t[4], t[2]
    return t[2]


@njit
def two_flattened(a):
    return flattened_entry(a) + 2.0 * flattened_entry(a)


@njit
def two_medians(a):
    return np.median(a) + np.percentile(a, 30.0) + np.median(a[:5])


@pytest.mark.parametrize("mode", MODES)
def test_copies_in_callees(mode):
    # the callee copies memory it never reads; the copy's adjoint needs the
    # element type, which the caller knows (it was dropped: zero gradients)
    a = np.array([2.04, -2.55, 0.41, -0.56, -0.45, -0.21])
    g = ad_grads(mode, two_flattened, (a,), (0,))[0]
    np.testing.assert_array_equal(g, [0, 0, 0, 0, 3, 0])
    check_grads(mode, two_medians, (a,))


# ------------------------------------------------ arrays in lists: reported, not zero
@njit
def sum_over_list(a, b):
    arrays = [a, b]
    s = 0.0
    for arr in arrays:
        s += np.sum(arr * arr)
    return s


@njit
def broadcast_product(a, b):
    x, y = np.broadcast_arrays(a, b)
    return np.sum(x * y)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", [sum_over_list, broadcast_product])
def test_arrays_stored_in_a_list_are_reported(mode, fn):
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, -1.0, 2.0, 3.0])
    with pytest.raises(gradjit.UnsupportedError, match="list or dict"):
        ad_grads(mode, fn, (a, b), (0, 1))
