"""The public API contract (shared/API.md): call and return conventions.

Numbers are checked against finite differences or analytic derivatives, the
focus here is on shapes, types, argument order and return conventions.
"""

import math
import time

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import (
    Active,
    ActiveOnly,
    Const,
    Dual,
    DualOnly,
    Duplicated,
    DuplicatedNoNeed,
)
from conftest import assert_close, fd_grad, get_autodiff, get_grad


@njit
def f3(x, a, y):
    # float, array, float
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * a[i] * x + math.sin(a[i] * y)
    return s + x * y


def f3_grads(x, a, y):
    gx = np.sum(a * a) + y
    ga = 2 * a * x + np.cos(a * y) * y
    gy = np.sum(np.cos(a * y) * a) + x
    return gx, ga, gy


X, A, Y = 0.7, np.array([0.3, -1.2, 0.8, 0.5]), -0.4


# --------------------------------------------------------------------- grad
@pytest.mark.parametrize("argnum", [0, 1, 2])
def test_grad_int_argnums(argnum):
    a = A.copy()
    g = get_grad(f3, argnums=argnum)(X, a, Y)
    np.testing.assert_array_equal(a, A)
    want = f3_grads(X, A, Y)[argnum]
    if argnum == 1:
        assert isinstance(g, np.ndarray) and g.shape == A.shape and g.dtype == A.dtype
        assert not np.shares_memory(g, a)
    else:
        assert type(g) is float
    assert_close(g, want, np.float64, "ad")


def test_grad_default_argnum_is_zero():
    g = gradjit.grad(f3)(X, A, Y)
    assert type(g) is float
    assert_close(g, f3_grads(X, A, Y)[0], np.float64, "ad")


def test_grad_tuple_argnums_order():
    gy, gx, ga = get_grad(f3, argnums=(2, 0, 1))(X, A.copy(), Y)
    want_x, want_a, want_y = f3_grads(X, A, Y)
    assert type(gx) is float and type(gy) is float
    assert_close(gx, want_x, np.float64, "ad")
    assert_close(gy, want_y, np.float64, "ad")
    assert_close(ga, want_a, np.float64, "ad")


def test_grad_single_element_tuple_argnums():
    g = get_grad(f3, argnums=(1,))(X, A.copy(), Y)
    assert isinstance(g, tuple) and len(g) == 1
    assert_close(g[0], f3_grads(X, A, Y)[1], np.float64, "ad")


@njit
def sumsq(x):
    return np.sum(x * x * x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 2, 2)], ids=["1d", "2d", "3d"])
def test_array_grad_shape_and_dtype(dtype, shape):
    x = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape).astype(dtype)
    g = get_grad(sumsq)(x)
    assert isinstance(g, np.ndarray)
    assert g.shape == x.shape and g.dtype == x.dtype
    assert_close(g, 3 * x.astype(np.float64) ** 2, dtype, "ad")


def test_float32_scalar_grad_is_python_float():
    @njit
    def cube(x):
        return x * x * x

    g = gradjit.grad(cube)(np.float32(1.5))
    assert type(g) is float
    assert g == pytest.approx(6.75, rel=1e-6)


# ---------------------------------------------------------- value_and_grad
def test_value_and_grad():
    v, g = gradjit.value_and_grad(f3)(X, A.copy(), Y)
    assert v == pytest.approx(f3(X, A, Y), rel=1e-14)
    assert type(g) is float
    assert_close(g, f3_grads(X, A, Y)[0], np.float64, "ad")


def test_value_and_grad_tuple():
    v, (gx, ga) = gradjit.value_and_grad(f3, argnums=(0, 1))(X, A.copy(), Y)
    want = f3_grads(X, A, Y)
    assert v == pytest.approx(f3(X, A, Y), rel=1e-14)
    assert_close(gx, want[0], np.float64, "ad")
    assert_close(ga, want[1], np.float64, "ad")


# ------------------------------------------------------------------- vjp
def test_vjp_scalar_output():
    out, pullback = gradjit.vjp(f3, argnums=(0, 1))(X, A.copy(), Y)
    assert out == pytest.approx(f3(X, A, Y), rel=1e-14)
    gx, ga = pullback(1.0)
    want = f3_grads(X, A, Y)
    assert_close(gx, want[0], np.float64, "ad")
    assert_close(ga, want[1], np.float64, "ad")
    gx2, ga2 = pullback(-2.5)  # linear in the cotangent, reusable
    assert_close(gx2, -2.5 * want[0], np.float64, "ad")
    assert_close(ga2, -2.5 * want[1], np.float64, "ad")


def test_vjp_default_argnum():
    _, pullback = gradjit.vjp(f3)(X, A.copy(), Y)
    g = pullback(1.0)
    assert type(g) is float
    assert_close(g, f3_grads(X, A, Y)[0], np.float64, "ad")


# ------------------------------------------------------------------- jvp
@njit
def with_int(x, a, n):
    s = 0.0
    for i in range(n):
        s += a[i % a.shape[0]] * x ** 2
    return s


def test_jvp_none_tangents():
    a = np.array([0.5, -0.25, 2.0])
    n = 5
    jvp = gradjit.jvp(with_int)
    primal, t = jvp((1.5, a, n), (1.0, None, None))
    assert primal == pytest.approx(with_int(1.5, a, n), rel=1e-14)
    assert np.ndim(t) == 0
    assert float(t) == pytest.approx(fd_grad(with_int, (1.5, a, n), 0), rel=1e-6)
    ta = np.array([1.0, 0.0, -1.0])
    _, t2 = jvp((1.5, a, n), (None, ta, None))
    assert float(t2) == pytest.approx(float(fd_grad(with_int, (1.5, a, n), 1) @ ta), rel=1e-6)


def test_jvp_all_tangents_linear():
    jvp = gradjit.jvp(f3)
    ta = np.array([0.1, 0.2, -0.3, 0.4])
    _, t1 = jvp((X, A.copy(), Y), (1.0, ta, -0.5))
    _, t2 = jvp((X, A.copy(), Y), (2.0, 2 * ta, -1.0))
    gx, ga, gy = f3_grads(X, A, Y)
    assert_close(t1, gx + ga @ ta - 0.5 * gy, np.float64, "ad")
    assert_close(t2, 2 * float(t1), np.float64, "ad")


# ---------------------------------------------------------------- autodiff
@njit
def conv(x, y, a):
    return x * y + x * np.sum(a * a) + math.sin(y)


CX, CY = 0.6, 1.1
CA = np.array([0.5, -1.0, 0.25])


def conv_grads():
    return CY + np.sum(CA * CA), CX + math.cos(CY), 2 * CX * CA


def test_reverse_active_returns_primal_then_grads():
    da = np.zeros(3)
    res = get_autodiff(conv, "reverse", Active, Active, Duplicated, ret=Active)(CX, CY, CA.copy(), da, 1.0)
    assert isinstance(res, tuple) and len(res) == 3
    primal, gx, gy = res
    wx, wy, wa = conv_grads()
    assert primal == pytest.approx(conv(CX, CY, CA), rel=1e-14)
    assert_close([gx, gy], [wx, wy], np.float64, "ad")
    assert_close(da, wa, np.float64, "ad")


def test_reverse_default_ret_is_active_for_float_return():
    res = get_autodiff(conv, "reverse", Active, Active, Duplicated)(CX, CY, CA.copy(), np.zeros(3), 1.0)
    assert isinstance(res, tuple) and len(res) == 3
    assert res[0] == pytest.approx(conv(CX, CY, CA), rel=1e-14)


def test_reverse_seed_scales():
    da = np.zeros(3)
    _, gx, gy = get_autodiff(conv, "reverse", Active, Active, Duplicated, ret=Active)(CX, CY, CA.copy(), da, -3.0)
    wx, wy, wa = conv_grads()
    assert_close([gx, gy], [-3 * wx, -3 * wy], np.float64, "ad")
    assert_close(da, -3 * wa, np.float64, "ad")


def test_reverse_active_only():
    res = get_autodiff(conv, "reverse", Active, Active, Duplicated, ret=ActiveOnly)(CX, CY, CA.copy(), np.zeros(3), 1.0)
    assert isinstance(res, tuple) and len(res) == 2
    wx, wy, _ = conv_grads()
    assert_close(list(res), [wx, wy], np.float64, "ad")


def test_reverse_single_result_is_bare():
    g = get_autodiff(conv, "reverse", Active, Const, Const, ret=ActiveOnly)(CX, CY, CA, 1.0)
    assert np.ndim(g) == 0 and not isinstance(g, tuple)
    assert_close(g, conv_grads()[0], np.float64, "ad")
    p = get_autodiff(conv, "reverse", Const, Const, Duplicated)(CX, CY, CA.copy(), np.zeros(3), 1.0)
    assert not isinstance(p, tuple)
    assert p == pytest.approx(conv(CX, CY, CA), rel=1e-14)


@njit
def writes_and_returns(x, out):
    out[0] = x * x
    out[1] = math.sin(x)
    return 3.0 * x


@njit
def writes_only(x, out):
    out[0] = x * x
    out[1] = math.sin(x)


def test_reverse_ret_const_takes_no_seed():
    out = np.zeros(2)
    dout = np.array([1.5, -2.0])
    g = get_autodiff(writes_and_returns, "reverse", Active, Duplicated, ret=Const)(0.8, out, dout)
    assert not isinstance(g, tuple)
    # the return value is not differentiated: only the seeds in dout count
    assert_close(g, 2 * 0.8 * 1.5 - 2.0 * math.cos(0.8), np.float64, "ad")
    assert_close(out, [0.64, math.sin(0.8)], np.float64, "ad")
    assert np.all(np.abs(dout) <= 1e-12)


def test_reverse_function_returning_nothing():
    out = np.zeros(2)
    dout = np.array([1.5, -2.0])
    g = get_autodiff(writes_only, "reverse", Active, Duplicated)(0.8, out, dout)
    assert not isinstance(g, tuple)
    assert_close(g, 2 * 0.8 * 1.5 - 2.0 * math.cos(0.8), np.float64, "ad")


def test_reverse_no_results_is_none():
    out = np.zeros(2)
    dout = np.array([1.0, 1.0])
    assert get_autodiff(writes_only, "reverse", Const, Duplicated)(0.8, out, dout) is None
    assert_close(out, [0.64, math.sin(0.8)], np.float64, "ad")


def test_reverse_const_float_is_not_differentiated():
    res = get_autodiff(conv, "reverse", Const, Active, Const)(CX, CY, CA, 1.0)
    assert isinstance(res, tuple) and len(res) == 2
    assert_close(res[1], conv_grads()[1], np.float64, "ad")


def test_forward_dual_returns_primal_and_tangent():
    ta = np.array([0.1, 0.2, 0.3])
    res = get_autodiff(conv, "forward", Dual, Dual, Dual)(CX, 1.0, CY, 0.5, CA.copy(), ta.copy())
    assert isinstance(res, tuple) and len(res) == 2
    primal, tangent = res
    wx, wy, wa = conv_grads()
    assert primal == pytest.approx(conv(CX, CY, CA), rel=1e-14)
    assert_close(tangent, wx + 0.5 * wy + wa @ ta, np.float64, "ad")


def test_forward_default_ret_is_dual():
    res = get_autodiff(conv, "forward", Dual, Const, Const)(CX, 1.0, CY, CA)
    assert isinstance(res, tuple) and len(res) == 2
    assert_close(res[1], conv_grads()[0], np.float64, "ad")


def test_forward_dual_only_returns_bare_tangent():
    t = get_autodiff(conv, "forward", Dual, Const, Const, ret=DualOnly)(CX, 1.0, CY, CA)
    assert not isinstance(t, tuple) and np.ndim(t) == 0
    assert_close(t, conv_grads()[0], np.float64, "ad")


def test_forward_dual_only_argument():
    t = get_autodiff(conv, "forward", DualOnly, Const, Const, ret=DualOnly)(CX, 1.0, CY, CA)
    assert_close(t, conv_grads()[0], np.float64, "ad")


def test_forward_ret_const_returns_primal():
    out = np.zeros(2)
    dout = np.zeros(2)
    p = get_autodiff(writes_and_returns, "forward", Dual, Dual, ret=Const)(0.8, 1.0, out, dout)
    assert not isinstance(p, tuple)
    assert p == pytest.approx(2.4, rel=1e-14)
    assert_close(dout, [1.6, math.cos(0.8)], np.float64, "ad")


def test_forward_function_returning_nothing():
    out = np.zeros(2)
    dout = np.zeros(2)
    r = get_autodiff(writes_only, "forward", Dual, Dual)(0.8, 2.0, out, dout)
    assert r is None
    assert_close(dout, [2 * 1.6, 2 * math.cos(0.8)], np.float64, "ad")


def test_mode_constants():
    r1 = get_autodiff(conv, gradjit.Reverse, Active, Const, Const)(CX, CY, CA, 1.0)
    r2 = get_autodiff(conv, "reverse", Active, Const, Const)(CX, CY, CA, 1.0)
    assert_close(r1[1], r2[1], np.float64, "ad")
    f1 = get_autodiff(conv, gradjit.Forward, Dual, Const, Const)(CX, 1.0, CY, CA)
    f2 = get_autodiff(conv, "forward", Dual, Const, Const)(CX, 1.0, CY, CA)
    assert_close(f1[1], f2[1], np.float64, "ad")


def test_activity_instances_equal_classes():
    da1 = np.zeros(3)
    da2 = np.zeros(3)
    r1 = gradjit.autodiff(conv, "reverse", Active(), Const(), Duplicated(), ret=Active())(CX, CY, CA.copy(), da1, 1.0)
    r2 = get_autodiff(conv, "reverse", Active, Const, Duplicated, ret=Active)(CX, CY, CA.copy(), da2, 1.0)
    assert_close(list(r1), list(r2), np.float64, "ad")
    assert_close(da1, da2, np.float64, "ad")
    t1 = gradjit.autodiff(conv, "forward", Dual(), Const(), DualOnly())(CX, 1.0, CY, CA.copy(), np.zeros(3))
    assert_close(t1[1], conv_grads()[0], np.float64, "ad")


def test_all_activity_names_exported():
    for act in (Const, Active, ActiveOnly, Duplicated, DuplicatedNoNeed, Dual, DualOnly):
        assert act is getattr(gradjit, act.__name__)


# ----------------------------------------------------------- vector mode
@njit
def cubic_sum(a):
    return np.sum(a * a * a) + a[0] * a[1]


def test_forward_width_gives_full_gradient():
    a = np.array([0.5, -0.3, 1.2])
    da = np.eye(3)  # shape (3, *a.shape): one basis tangent per row
    primal, tangents = gradjit.autodiff(cubic_sum, "forward", Dual, width=3)(a.copy(), da)
    want = 3 * a**2 + np.array([a[1], a[0], 0.0])
    assert primal == pytest.approx(cubic_sum(a), rel=1e-14)
    assert isinstance(tangents, np.ndarray) and tangents.shape == (3,)
    assert_close(tangents, want, np.float64, "ad")


def test_reverse_width_seeds():
    a = np.array([0.5, -0.3, 1.2])
    da = np.zeros((2, 3))
    gradjit.autodiff(cubic_sum, "reverse", Duplicated, width=2)(a.copy(), da, np.array([1.0, -2.0]))
    want = 3 * a**2 + np.array([a[1], a[0], 0.0])
    assert_close(da[0], want, np.float64, "ad")
    assert_close(da[1], -2 * want, np.float64, "ad")


def test_reverse_width_active_scalar():
    res = gradjit.autodiff(conv, "reverse", Active, Const, Const, width=2)(CX, CY, CA, np.array([1.0, 0.5]))
    gx = res[1]
    assert isinstance(gx, np.ndarray) and gx.shape == (2,)
    assert_close(gx, [conv_grads()[0], 0.5 * conv_grads()[0]], np.float64, "ad")


# --------------------------------------------------------------- decorator
def test_grad_as_decorator_above_njit():
    @gradjit.grad
    @njit
    def dcube(x):
        return x * x * x

    assert dcube(2.0) == pytest.approx(12.0, rel=1e-10)
    assert dcube(-1.0) == pytest.approx(3.0, rel=1e-10)


def test_grad_of_plain_python_function():
    def plain(x, a):
        s = 0.0
        for i in range(a.shape[0]):
            s += math.exp(a[i] * x)
        return s

    a = np.array([0.1, -0.2, 0.3])
    g = gradjit.grad(plain)(0.5, a)
    assert g == pytest.approx(float(np.sum(a * np.exp(a * 0.5))), rel=1e-12)


# ------------------------------------------------------ called from @njit
@njit
def bowl(x, y):
    return (x - 3.0) ** 2 + 2.0 * (y + 1.0) ** 2 + 0.5 * x * y


def test_autodiff_callable_from_njit():
    dbowl = gradjit.autodiff(bowl, "reverse", Active, Active)

    @njit
    def descend(x, y, lr, steps):
        for _ in range(steps):
            v, gx, gy = dbowl(x, y, 1.0)
            x -= lr * gx
            y -= lr * gy
        return x, y

    # the minimum solves [[2, .5], [.5, 4]] @ [x, y] = [6, -4]
    want = np.linalg.solve(np.array([[2.0, 0.5], [0.5, 4.0]]), np.array([6.0, -4.0]))
    x, y = descend(0.0, 0.0, 0.1, 500)
    assert_close([x, y], want, np.float64, "fd", rtol=1e-8, atol=1e-10)
    # one step in numba equals one step in Python
    _, gx, gy = dbowl(0.3, -0.2, 1.0)
    x1, y1 = descend(0.3, -0.2, 0.1, 1)
    assert_close([x1, y1], [0.3 - 0.1 * gx, -0.2 - 0.1 * gy], np.float64, "ad")


@njit
def weighted_quad(a, w):
    s = 0.0
    for i in range(a.shape[0]):
        s += w[i] * (a[i] - i) ** 2
    return s


def test_autodiff_duplicated_callable_from_njit():
    dq = gradjit.autodiff(weighted_quad, "reverse", Duplicated, Const)

    @njit
    def fit(a, w, lr, steps):
        da = np.zeros_like(a)
        for _ in range(steps):
            da[:] = 0.0
            dq(a, da, w, 1.0)
            for i in range(a.shape[0]):
                a[i] -= lr * da[i]
        return a

    w = np.array([1.0, 2.0, 0.5, 1.5])
    a = fit(np.zeros(4), w, 0.2, 300)
    assert_close(a, np.arange(4.0), np.float64, "fd", rtol=1e-8, atol=1e-10)


def test_autodiff_passed_to_njit_as_argument():
    """A derivative passed to ``@njit`` code as an argument (a dispatcher there)
    gives what the one named as a global gives: the analytic gradient."""
    dq = gradjit.autodiff(weighted_quad, "reverse", Duplicated, Const)

    @njit
    def apply(d, a, da, w):
        return d(a, da, w, 1.0)

    a = np.array([0.5, -1.0, 2.5, 1.0])
    w = np.array([1.0, 2.0, 0.5, 1.5])
    da = np.zeros(4)
    value = apply(dq, a, da, w)
    assert_close(value, weighted_quad(a, w), np.float64, "ad")
    assert_close(da, 2.0 * w * (a - np.arange(4.0)), np.float64, "ad")


# ----------------------------------------------------------------- caching
@njit
def cache_probe(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i]) * x[i]
    return s


def test_second_call_does_not_recompile():
    g = gradjit.grad(cache_probe)
    x = np.linspace(0, 1, 8)
    t0 = time.perf_counter()
    g1 = g(x)
    t1 = time.perf_counter()
    g2 = g(x + 0.0)
    t2 = time.perf_counter()
    g3 = g(x * 0.5)
    t3 = time.perf_counter()
    np.testing.assert_array_equal(g1, g2)
    assert_close(g3, np.cos(x * 0.5) * x * 0.5 + np.sin(x * 0.5), np.float64, "ad")
    first, second, third = t1 - t0, t2 - t1, t3 - t2
    assert second < 0.2 and third < 0.2, (first, second, third)
    assert second < first


def test_new_signature_compiles_separately():
    g = get_grad(cache_probe)
    x = np.linspace(0, 1, 8)
    g64 = g(x)
    g32 = g(x.astype(np.float32))
    assert g64.dtype == np.float64 and g32.dtype == np.float32
    assert_close(g32, g64, np.float32, "ad")
    g2d = g(x[::2])  # strided: another layout, still the right numbers
    assert_close(g2d, g64[::2], np.float64, "ad")


@njit
def _returns_new_array(x):
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = x[i] * x[i]
    return y


def test_autodiff_on_array_returning_function_with_const_return():
    # the returned array has no shadow: nothing flows back, and calling it
    # repeatedly must neither crash nor corrupt the inputs
    x = np.linspace(0.5, 1.5, 16)
    keep = x.copy()
    dx = np.zeros_like(x)
    df = gradjit.autodiff(_returns_new_array, "reverse", Duplicated, ret=Const)
    for _ in range(5):
        assert df(x, dx) is None
    np.testing.assert_array_equal(x, keep)
    assert not dx.any()
    fwd = gradjit.autodiff(_returns_new_array, "forward", Dual, ret=Const)
    for _ in range(5):      # API.md: forward mode with a Const return gives the primal return
        np.testing.assert_array_equal(fwd(x, np.ones_like(x)), _returns_new_array(x))


@njit
def _count_positive_squares(x, out):
    k = 0
    for i in range(x.shape[0]):
        out[i] = x[i] * x[i]
        if x[i] > 0:
            k += 1
    return k, out[0] > 0.5, (x.shape[0], out[0])


@pytest.mark.parametrize("width", [1, 3])
def test_forward_const_return_of_non_float_gives_the_primal(width):
    # API.md: forward mode with a Const return gives the primal return, whatever
    # its type (here a tuple of an int, a bool and a tuple); it was None
    x = np.array([0.3, -0.7, 1.1, 0.5])
    sh = (4,) if width == 1 else (width, 4)
    t = np.arange(1.0, 1.0 + np.prod(sh)).reshape(sh)
    out, dout = np.zeros(4), np.zeros(sh)
    df = gradjit.autodiff(_count_positive_squares, "forward", Dual, Dual, width=width)
    got = df(x, t, out, dout)
    assert got == _count_positive_squares(x, np.zeros(4))
    np.testing.assert_allclose(dout, 2 * x * t, rtol=1e-15)


# ------------------------------------------------- seeds and broadcast arguments
@njit
def _scaled_sum(x, a):
    return (x * a).sum()


@njit
def _cube_sum(x):
    s = 0.0
    for v in x.flat:
        s += v * v * v
    return s


def test_int_bool_and_0d_seeds_are_scalars():
    x = np.arange(1.0, 5.0)
    df = gradjit.autodiff(_scaled_sum, "reverse", Duplicated, Active)
    for seed, scale in ((2, 2.0), (True, 1.0), (np.uint8(3), 3.0), (np.array(0.5), 0.5)):
        dx = np.zeros(4)
        value, ga = df(x, dx, 0.5, seed)
        assert value == 5.0
        np.testing.assert_allclose(dx, np.full(4, 0.5 * scale), rtol=1e-15)
        assert ga == 10.0 * scale
    with pytest.raises(TypeError, match="seed"):
        df(x, np.zeros(4), 0.5, np.ones(2))


def test_broadcast_view_entries_are_separate_inputs():
    """A stride-0 view (np.broadcast_to) is differentiated entry by entry, like a
    materialized array (as JAX and PyTorch do), not summed over shared memory."""
    x = np.broadcast_to(np.array([0.3, 0.5]), (3, 2))
    want = 3.0 * np.asarray(x) ** 2
    np.testing.assert_allclose(gradjit.grad(_cube_sum)(x), want, rtol=1e-14)
    dx = np.zeros((3, 2))
    gradjit.autodiff(_cube_sum, "reverse", Duplicated)(x, dx, 1.0)
    np.testing.assert_allclose(dx, want, rtol=1e-14)
    T = np.zeros((2, 3, 2))
    T[0, 0, 0] = T[1, 2, 1] = 1.0
    _, tN = gradjit.autodiff(_cube_sum, "forward", Dual, width=2)(x, T)
    np.testing.assert_allclose(tN, [want[0, 0], want[2, 1]], rtol=1e-14)
    _, t = gradjit.jvp(_cube_sum)((x,), (T[1],))
    np.testing.assert_allclose(t, want[2, 1], rtol=1e-14)


@njit
def _square(x):
    return x * x


def test_python_number_tangent_of_float32_scalar():
    # a Python float (or int) tangent of a float32 scalar is taken as float32
    df = gradjit.autodiff(_square, "forward", Dual)
    for t in (1.0, 2):
        y, dy = df(np.float32(1.5), t)
        assert isinstance(dy, (float, np.floating))
        assert dy == pytest.approx(3.0 * t, rel=1e-6)


@njit
def _square_in_place_sum(x):
    for i in range(x.shape[0]):
        x[i] = x[i] * x[i]
    return np.sum(x)


@njit
def _square_in_place(x):
    for i in range(x.shape[0]):
        x[i] = x[i] * x[i]
    return x.copy()


def test_vjp_and_jvp_differentiate_at_the_arguments_given():
    # the function writes its input: the pullback must not re-run on the written
    # values, nor on values the caller writes before calling it
    x0 = np.array([1.0, 2.0, 3.0])
    out, pullback = gradjit.vjp(_square_in_place_sum)(x0.copy())
    assert out == pytest.approx(14.0)
    np.testing.assert_allclose(pullback(1.0), 2 * x0, rtol=1e-15)
    x = x0.copy()
    _, pullback = gradjit.vjp(lambda v: np.sum(v ** 3))(x)
    x[:] = 10.0
    np.testing.assert_allclose(pullback(1.0), 3 * x0 ** 2, rtol=1e-15)
    y, t = gradjit.jvp(_square_in_place)((x0.copy(),), (np.ones(3),))
    np.testing.assert_allclose(y, x0 ** 2, rtol=1e-15)
    np.testing.assert_allclose(t, 2 * x0, rtol=1e-15)


def test_negative_argnums_and_nested_transforms():
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_allclose(gradjit.grad(_scaled_sum, argnums=-1)(x, y), x, rtol=1e-15)
    with pytest.raises(gradjit.UnsupportedError, match="higher-order"):
        gradjit.grad(gradjit.grad(_square))(2.0)


@njit
def _through_buffer(x, buf):
    for i in range(x.shape[0]):
        buf[i] = x[i] * x[i]
    return np.sum(buf * x)


def test_transforms_follow_derivatives_through_a_scratch_argument():
    # buf is not differentiated but the function stores x-dependent values into it
    # and reads them back: the transforms give it a scratch shadow (as Const the
    # derivative was dropped: zero gradients)
    x = np.array([0.3, 0.6, 0.2])
    want = 3 * x ** 2
    np.testing.assert_allclose(gradjit.grad(_through_buffer)(x, np.zeros(3)), want, rtol=1e-14)
    value, g = gradjit.value_and_grad(_through_buffer)(x, np.zeros(3))
    assert value == pytest.approx(np.sum(x ** 3))
    np.testing.assert_allclose(g, want, rtol=1e-14)
    _, pullback = gradjit.vjp(_through_buffer)(x, np.zeros(3))
    np.testing.assert_allclose(pullback(2.0), 2 * want, rtol=1e-14)
    t = np.array([1.0, -1.0, 0.5])
    _, dy = gradjit.jvp(_through_buffer)((x, np.zeros(3)), (t, None))
    assert dy == pytest.approx(float(np.dot(want, t)), rel=1e-14)
    buf = np.zeros(3)
    gradjit.grad(_through_buffer)(x, buf)
    np.testing.assert_allclose(buf, x ** 2, rtol=1e-15)    # the primal still writes it
