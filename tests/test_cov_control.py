"""Coverage: control flow.

for-range loops (nested, data-dependent bounds, zero trips), break, continue,
early return from inside a loop, while loops (counter driven and value
driven), loop-carried scalar recurrences (needs the tape). Both modes, checked
against central differences and analytic derivatives.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit  # noqa: F401
from conftest import (
    DTYPES,
    MODES,
    ad_grads,
    assert_close,
    check_grads,
    dot_grads_tangents,
    get_jvp,
    random_tangents,
    scalar,
)


@njit
def nested_loops(x, n):
    s = 0.0
    for i in range(n):
        for j in range(i + 1):
            s += x[i] * x[j] * (j + 1)
    return s


def nested_loops_grad(x, n):
    g = np.zeros_like(x, dtype=np.float64)
    for i in range(n):
        for j in range(i + 1):
            g[i] += x[j] * (j + 1)
            g[j] += x[i] * (j + 1)
    return g


@njit
def nested_2d(a, b):
    # triangular nest with continue on a 2-D array and a 1-D array
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if j > i:
                continue
            s += a[i, j] * b[j] * b[i]
    return s


@njit
def data_dependent_bounds(x):
    # trip counts computed from float data
    m = int(abs(x[0]) * 4.0) + 1
    s = 0.0
    for i in range(m):
        for j in range(i % x.shape[0], x.shape[0]):
            s += x[j] * x[(i + j) % x.shape[0]] * 0.25
    return s


@njit
def loop_break(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            break
        s += x[i] * x[i] + math.sin(x[i]) * s
    return s


@njit
def loop_continue(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            continue
        s = 0.5 * s * x[i] + math.exp(0.3 * x[i])
    return s


@njit
def early_return(x, thresh):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i]) * (i + 1)
        if s > thresh:
            return s * x[i]
    return s + x[0]


@njit
def newton_sqrt(a):
    y = a if a > 1.0 else 1.0
    k = 0
    while abs(y * y - a) > 1e-14 * a and k < 100:
        y = 0.5 * (y + a / y)
        k += 1
    return y


@njit
def while_horner(c, x):
    i = c.shape[0] - 1
    s = 0.0
    while i >= 0:
        s = s * x + c[i]
        i -= 1
    return s


@njit
def while_value_driven(x):
    s = x
    k = 0
    while s < 10.0 and k < 100:
        s = s * 1.5 + x * x
        k += 1
    return s


@njit
def recurrence(x, n):
    s = x
    for i in range(n):
        s = math.sin(s) + x * 0.5
    return s


@njit
def pow_loop(x, n):
    r = 1.0
    for i in range(n):
        r *= x
    return r


def _ids(dtype):
    return "f32" if dtype == np.float32 else "f64"


mode_p = pytest.mark.parametrize("mode", MODES)
dtype_p = pytest.mark.parametrize("dtype", DTYPES, ids=_ids)


@mode_p
@dtype_p
def test_nested_loops(mode, dtype):
    x = np.linspace(-1.0, 1.2, 7).astype(dtype)
    for n in [0, 1, 4, 7]:
        (g,) = check_grads(mode, nested_loops, (x, n))
        if n == 0:
            assert np.all(np.abs(np.asarray(g)) <= 1e-12)
        assert_close(g, nested_loops_grad(x.astype(np.float64), n), dtype, "ad", err_msg=f"n={n}")


@mode_p
def test_nested_triangular_continue(mode, rng):
    a = rng.uniform(-1, 1, (4, 5))
    b = rng.uniform(-1, 1, 5)
    check_grads(mode, nested_2d, (a, b))


@mode_p
def test_data_dependent_bounds(mode):
    for x0 in [0.1, 0.6, -0.9]:
        x = np.array([x0, 0.5, -0.3, 0.8, 1.1])
        check_grads(mode, data_dependent_bounds, (x,))


@mode_p
@dtype_p
def test_break(mode, dtype):
    for where in [0, 2, 5, None]:
        x = np.array([0.3, 0.9, 0.4, 1.2, 0.7, 0.2, 0.5], dtype=dtype)
        if where is not None:
            x[where] = -0.5
        (g,) = check_grads(mode, loop_break, (x,))
        g = np.asarray(g)
        if where is not None:
            # elements at and after the break never influence the result
            assert np.all(np.abs(g[where:]) <= 1e-12), (where, g)


@mode_p
def test_continue(mode):
    for negatives in [(), (1,), (0, 3, 4)]:
        x = np.array([0.3, 0.9, 0.4, 1.2, 0.7])
        for k in negatives:
            x[k] = -0.6
        (g,) = check_grads(mode, loop_continue, (x,))
        for k in negatives:
            assert abs(g[k]) <= 1e-12, (negatives, g)


@mode_p
def test_early_return(mode):
    x = np.array([0.4, 0.3, 0.9, 0.2, 0.6])
    for thresh in [0.5, 2.0, 100.0]:  # returns inside the loop at i = 1, at i = 2, never
        gx, gt = check_grads(mode, early_return, (x, thresh))
        assert abs(gt) <= 1e-12  # the threshold only selects a branch


@mode_p
def test_while_newton_sqrt(mode):
    for a in [0.3, 2.0, 17.5]:
        (g,) = check_grads(mode, newton_sqrt, (a,))
        assert_close(g, 0.5 / math.sqrt(a), np.float64, "fd", rtol=1e-6, err_msg=f"a={a}")


@mode_p
@dtype_p
def test_while_horner(mode, dtype):
    c = np.array([0.5, -1.0, 2.0, 0.25, -0.75], dtype=dtype)
    for x in [0.7, -1.4]:
        xs = scalar(x, dtype)
        gc, gx = check_grads(mode, while_horner, (c, xs))
        xf = float(xs)
        assert_close(gc, xf ** np.arange(5), dtype, "ad")
        dpoly = np.polynomial.polynomial.polyder(c.astype(np.float64))
        assert_close(gx, np.polynomial.polynomial.polyval(xf, dpoly), dtype, "ad")


@mode_p
def test_while_value_driven(mode):
    for x in [0.7, 1.3, 2.9]:
        check_grads(mode, while_value_driven, (x,))


@mode_p
@dtype_p
def test_loop_carried_recurrence(mode, dtype):
    x = scalar(0.8, dtype)
    for n in [0, 1, 10, 50]:
        (g,) = check_grads(mode, recurrence, (x, n))
        if n == 0:
            assert_close(g, 1.0, dtype, "ad")


@mode_p
def test_pow_loop(mode):
    x = 1.1
    for n in [0, 1, 3, 8]:
        (g,) = check_grads(mode, pow_loop, (x, n))
        assert_close(g, n * x ** (n - 1) if n else 0.0, np.float64, "ad", err_msg=f"n={n}")


def test_forward_matches_reverse_random_tangent():
    rng = np.random.default_rng(0)
    for _ in range(3):
        c = rng.uniform(-1, 1, 5)
        args = (c, float(rng.uniform(-1.5, 1.5)))
        grads = ad_grads("reverse", while_horner, args)
        tangents = random_tangents(rng, args)
        _, t_out = get_jvp(while_horner)(args, tuple(tangents))
        assert_close(t_out, dot_grads_tangents(grads, (0, 1), tangents), np.float64, "ad")


# ------------------------------------------- guarded branches: strong zero in reverse
# The reverse sweep gives the untaken side of a branch (or select) a zero adjoint;
# its partials are evaluated where the program guarded against them (a division by
# zero, log(0), cbrt's branch for the other sign) and are inf or NaN, and
# 0 * inf must stay 0.  Checked analytically at the guarded point, where central
# differences would straddle the guard, and against FD elsewhere.

@njit
def safe_div(x, y):
    return x / y if y != 0.0 else x


@njit
def safe_log(x):
    return math.log(x) if x > 0.0 else 0.0


@njit
def inverse_sum(a):
    s = 0.0
    for i in range(a.shape[0]):
        if a[i] != 0.0:
            s += 1.0 / a[i]
        else:
            s += a[i]
    return s


@njit
def cube_roots(a):
    return np.sum(np.cbrt(a))


def test_guarded_division_reverse_is_finite():
    df = gradjit.autodiff(safe_div, "reverse", gradjit.Active, gradjit.Active)
    for policy in ("auto", "recompute", "store"):
        dfp = gradjit.autodiff(safe_div, "reverse", gradjit.Active, gradjit.Active,
                               checkpointing=policy)
        assert dfp(0.4, 0.0, 1.0) == (0.4, 1.0, 0.0)
    _, gx, gy = df(0.4, 2.0, 1.0)
    assert_close(np.array([gx, gy]), np.array([0.5, -0.1]), kind="ad")
    assert gradjit.grad(safe_log)(0.0) == 0.0
    assert_close(gradjit.grad(safe_log)(2.0), 0.5, kind="ad")


@pytest.mark.parametrize("mode", MODES)
def test_guarded_loop_branch_and_cbrt(mode):
    a = np.array([2.0, 0.0, -4.0])
    g = ad_grads(mode, inverse_sum, (a,), (0,))[0]
    np.testing.assert_allclose(g, [-0.25, 1.0, -1.0 / 16.0], rtol=1e-14)
    b = np.array([0.4, -2.0, 27.0])
    g = ad_grads(mode, cube_roots, (b,), (0,))[0]
    np.testing.assert_allclose(g, np.abs(b) ** (-2.0 / 3.0) / 3.0, rtol=1e-12)
    check_grads(mode, cube_roots, (b,))


@njit
def power(x, y):
    return x ** y


@pytest.mark.parametrize("mode", MODES)
def test_pow_at_zero_base_and_zero_exponent(mode):
    # d/dy x**y = x**y log x reads 0 * -inf at x = 0 and d/dx x**y = y x**(y-1)
    # reads 0 * inf at x = 0, y = 0; both are 0 (as JAX takes them): 0**y is flat
    # in y for y > 0, x**0 is flat in x.  Elsewhere the analytic partials.
    for x, y, want in [(0.0, 3.0, (0.0, 0.0)), (0.0, 0.0, (0.0, 0.0)),
                       (2.0, 0.0, (0.0, math.log(2.0))),
                       (2.0, 3.0, (12.0, 8.0 * math.log(2.0))),
                       (0.5, 2.5, (2.5 * 0.5 ** 1.5, 0.5 ** 2.5 * math.log(0.5)))]:
        g = ad_grads(mode, power, (x, y), (0, 1))
        np.testing.assert_allclose(np.array(g, dtype=float), want, rtol=1e-14, atol=0)
    check_grads(mode, power, (1.3, 2.2))


@njit
def entropy_terms(x):
    return np.sum(np.where(x > 0, x * np.log(x), 0.0))


@pytest.mark.parametrize("mode", MODES)
def test_masked_entropy_has_finite_gradient(mode):
    # np.where computes x * log(x) everywhere (-inf * 0 at x = 0) and masks it: the
    # masked entries' derivatives are 0 (README: strong zero), the others log x + 1
    x = np.array([0.0, 0.5, 2.0])
    g = ad_grads(mode, entropy_terms, (x,), (0,))[0] if mode == "reverse" else \
        np.array([get_jvp(entropy_terms)((x,), (e,))[1] for e in np.eye(3)[1:]])
    want = np.log(x[1:]) + 1.0
    np.testing.assert_allclose(g[1:] if mode == "reverse" else g, want, rtol=1e-14)
    if mode == "reverse":
        assert g[0] == 0.0


@njit
def clamped_roots(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sqrt(max(x[i], 0.0)) + math.acos(min(y[i], 1.0))
    return s


@pytest.mark.parametrize("mode", MODES)
def test_zero_tangent_through_clamp_is_zero(mode):
    # the clamped entries have partials sqrt'(0) = inf and acos'(1) = -inf times a
    # zero tangent/adjoint: 0 (strong zero in both modes; forward gave NaN)
    x, y = np.array([-1.0, 0.25]), np.array([1.5, 0.25])
    gx, gy = ad_grads(mode, clamped_roots, (x, y), (0, 1))
    np.testing.assert_allclose(gx, [0.0, 0.5 / math.sqrt(0.25)], rtol=1e-14)
    np.testing.assert_allclose(gy, [0.0, -1.0 / math.sqrt(1 - 0.0625)], rtol=1e-14)


# --- adjoints of loop-invariant loads, summed over the loop (reverse_sweep._defer_add)


@njit
def invariant_and_varying(a, w):
    """a[k] is read at the same address in every iteration of the inner loop
    (its adjoint is summed in a register; the store to buf keeps LLVM from
    hoisting the load), a[i] at a varying one that meets it at i == k: both
    adjoints reach the same shadow entry."""
    n = a.shape[0]
    buf = np.zeros(n)
    for k in range(n):
        for i in range(n):
            buf[i] += w[i] * a[i] * a[k]
    s = 0.0
    for i in range(n):
        s += buf[i] * buf[i]
    return s


@njit
def invariant_in_inner_loop(x, l):
    """The GMM pattern: xc[j] is loop-invariant in the triangular inner loop,
    which accumulates into a local array (another root)."""
    d = x.shape[0]
    xc = np.empty(d)
    qx = np.zeros(d)
    s = 0.0
    for rep in range(3):
        for j in range(d):
            xc[j] = x[j] * (rep + 1.0)
        t = 0
        for j in range(d):
            for i in range(j + 1, d):
                qx[i] += l[t] * xc[j]
                t += 1
        for j in range(d):
            s += qx[j] * qx[j]
    return s


@njit
def invariant_then_written(x, n):
    """x[0] is invariant in the first loop, then written in the second: the
    deferred sum must reach the shadow before the write's adjoint reads it."""
    s = 0.0
    for i in range(n):
        s += x[0] * (i + 1.0)
    for i in range(n):
        x[0] = x[0] * 0.5 + 1.0
    return s + x[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_loop_invariant_load_adjoints(dtype, rng):
    a = rng.uniform(0.5, 1.5, 5).astype(dtype)
    w = rng.uniform(-1, 1, 5).astype(dtype)
    check_grads("reverse", invariant_and_varying, (a, w))
    x = rng.uniform(-1, 1, 6).astype(dtype)
    l = rng.uniform(-1, 1, 15).astype(dtype)
    check_grads("reverse", invariant_in_inner_loop, (x, l))
    # analytic: d/dx0 of sum_i x0 (i + 1) is n (n + 1) / 2; the writes then
    # compose x0 -> 0.5 x0 + 1 n times (slope 0.5**n), a scratch the transforms
    # give a shadow
    x = rng.uniform(-1, 1, 3).astype(dtype)
    n = 4
    g = gradjit.grad(invariant_then_written)(x.copy(), n)
    want = np.zeros(3)
    want[0] = n * (n + 1) / 2 + 0.5 ** n
    assert_close(g, want, dtype, "ad")


def test_loop_invariant_load_adjoints_vector_mode(rng):
    """Width 2: one sum per lane."""
    a = rng.uniform(0.5, 1.5, 5)
    w = rng.uniform(-1, 1, 5)
    df = gradjit.autodiff(invariant_and_varying, "reverse", gradjit.Duplicated,
                          gradjit.Const, width=2)
    da = np.zeros((2, 5))
    df(a, da, w, np.array([1.0, -2.0]))
    from conftest import fd_grad
    g = fd_grad(invariant_and_varying, (a, w), 0)
    assert_close(da[0], g, np.float64, "fd")
    assert_close(da[1], -2.0 * g, np.float64, "fd")
