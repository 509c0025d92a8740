"""Coverage: elementary functions from ``math`` and numpy scalar ufuncs.

Each function is evaluated at points inside its domain (away from kinks and
integer jumps) and differentiated in both modes; the result is compared with
an analytic derivative and with central differences.

Compile budget: one @njit function per ``math`` function (float64), and a
single selector function (``k`` picks the operation, an int held constant)
for the numpy ufuncs and for the float32 sweep.
"""

import itertools
import math

import numpy as np
import pytest
from numba import njit

import gradjit  # noqa: F401
from conftest import MODES, ad_grads, assert_close, fd_grad, scalar

SQRT_PI = math.sqrt(math.pi)


# ---------------------------------------------------------------- math.* f64
@njit
def m_sin(x):
    return math.sin(x)


@njit
def m_cos(x):
    return math.cos(x)


@njit
def m_tan(x):
    return math.tan(x)


@njit
def m_exp(x):
    return math.exp(x)


@njit
def m_log(x):
    return math.log(x)


@njit
def m_log1p(x):
    return math.log1p(x)


@njit
def m_expm1(x):
    return math.expm1(x)


@njit
def m_sqrt(x):
    return math.sqrt(x)


@njit
def m_tanh(x):
    return math.tanh(x)


@njit
def m_sinh(x):
    return math.sinh(x)


@njit
def m_cosh(x):
    return math.cosh(x)


@njit
def m_asin(x):
    return math.asin(x)


@njit
def m_acos(x):
    return math.acos(x)


@njit
def m_atan(x):
    return math.atan(x)


@njit
def m_floor(x):
    # math.floor returns an int in numba: its derivative must be zero
    return math.floor(x) * x + x * x


@njit
def m_ceil(x):
    return math.ceil(x) * x - x * x


@njit
def m_fabs(x):
    return math.fabs(x)


@njit
def m_erf(x):
    return math.erf(x)


@njit
def m_erfc(x):
    return math.erfc(x)


@njit
def m_log10(x):
    return math.log10(x)


@njit
def m_log2(x):
    return math.log2(x)


def _sec2(x):
    return 1.0 / math.cos(x) ** 2


# name -> (math njit fn, points, analytic derivative)
UNARY = {
    "sin": (m_sin, [-1.3, 0.4, 2.2], math.cos),
    "cos": (m_cos, [-1.3, 0.4, 2.2], lambda x: -math.sin(x)),
    "tan": (m_tan, [-1.0, 0.3, 1.2], _sec2),
    "exp": (m_exp, [-1.5, 0.2, 2.0], math.exp),
    "log": (m_log, [0.3, 1.7, 12.0], lambda x: 1.0 / x),
    "log1p": (m_log1p, [-0.5, 0.2, 3.0], lambda x: 1.0 / (1.0 + x)),
    "expm1": (m_expm1, [-1.0, 0.3, 1.5], math.exp),
    "sqrt": (m_sqrt, [0.2, 2.5, 9.0], lambda x: 0.5 / math.sqrt(x)),
    "tanh": (m_tanh, [-1.2, 0.1, 0.8], lambda x: 1.0 - math.tanh(x) ** 2),
    "sinh": (m_sinh, [-1.2, 0.1, 0.8], math.cosh),
    "cosh": (m_cosh, [-1.2, 0.1, 0.8], math.sinh),
    "asin": (m_asin, [-0.7, 0.1, 0.6], lambda x: 1.0 / math.sqrt(1 - x * x)),
    "acos": (m_acos, [-0.7, 0.1, 0.6], lambda x: -1.0 / math.sqrt(1 - x * x)),
    "atan": (m_atan, [-2.0, 0.3, 5.0], lambda x: 1.0 / (1 + x * x)),
    "floor": (m_floor, [-1.3, 0.4, 2.6], lambda x: math.floor(x) + 2 * x),
    "ceil": (m_ceil, [-1.3, 0.4, 2.6], lambda x: math.ceil(x) - 2 * x),
    "fabs": (m_fabs, [-1.3, 0.7], lambda x: math.copysign(1.0, x)),
    "erf": (m_erf, [-1.0, 0.2, 1.5], lambda x: 2.0 / SQRT_PI * math.exp(-x * x)),
    "erfc": (m_erfc, [-1.0, 0.2, 1.5], lambda x: -2.0 / SQRT_PI * math.exp(-x * x)),
    "log10": (m_log10, [0.3, 4.0], lambda x: 1.0 / (x * math.log(10.0))),
    "log2": (m_log2, [0.3, 4.0], lambda x: 1.0 / (x * math.log(2.0))),
}
NAMES = list(UNARY)


def _check_point(mode, fn, args, want, dtype, label):
    got = ad_grads(mode, fn, args, wrt=(0,))[0]
    assert_close(got, want, dtype, "ad", err_msg=f"{label} vs analytic")
    assert_close(got, fd_grad(fn, args, 0), dtype, "fd", err_msg=f"{label} vs FD")


@pytest.mark.parametrize("name", NAMES)
def test_math_unary_f64(name):
    fn, points, d = UNARY[name]
    for mode in MODES:
        for x in points:
            _check_point(mode, fn, (x,), d(x), np.float64, f"{mode}: math.{name}'({x})")


# ------------------------------------------------ selector functions (k const)
NP_NAMES = [
    "sin", "cos", "tan", "exp", "log", "log1p", "expm1", "sqrt", "tanh", "sinh",
    "cosh", "asin", "acos", "atan", "floor", "ceil", "fabs", "abs",
]


@njit
def np_unary(x, k):
    if k == 0:
        return np.sin(x)
    elif k == 1:
        return np.cos(x)
    elif k == 2:
        return np.tan(x)
    elif k == 3:
        return np.exp(x)
    elif k == 4:
        return np.log(x)
    elif k == 5:
        return np.log1p(x)
    elif k == 6:
        return np.expm1(x)
    elif k == 7:
        return np.sqrt(x)
    elif k == 8:
        return np.tanh(x)
    elif k == 9:
        return np.sinh(x)
    elif k == 10:
        return np.cosh(x)
    elif k == 11:
        return np.arcsin(x)
    elif k == 12:
        return np.arccos(x)
    elif k == 13:
        return np.arctan(x)
    elif k == 14:
        return np.floor(x) * x + x * x
    elif k == 15:
        return np.ceil(x) * x - x * x
    elif k == 16:
        return np.fabs(x)
    else:
        return np.abs(x)


MATH_F32_NAMES = NAMES


@njit
def math_unary(x, k):
    if k == 0:
        return math.sin(x)
    elif k == 1:
        return math.cos(x)
    elif k == 2:
        return math.tan(x)
    elif k == 3:
        return math.exp(x)
    elif k == 4:
        return math.log(x)
    elif k == 5:
        return math.log1p(x)
    elif k == 6:
        return math.expm1(x)
    elif k == 7:
        return math.sqrt(x)
    elif k == 8:
        return math.tanh(x)
    elif k == 9:
        return math.sinh(x)
    elif k == 10:
        return math.cosh(x)
    elif k == 11:
        return math.asin(x)
    elif k == 12:
        return math.acos(x)
    elif k == 13:
        return math.atan(x)
    elif k == 14:
        return math.floor(x) * x + x * x
    elif k == 15:
        return math.ceil(x) * x - x * x
    elif k == 16:
        return math.fabs(x)
    elif k == 17:
        return math.erf(x)
    elif k == 18:
        return math.erfc(x)
    elif k == 19:
        return math.log10(x)
    else:
        return math.log2(x)


def _deriv(name):
    return UNARY["fabs" if name == "abs" else name][2]


def _points(name):
    return UNARY["fabs" if name == "abs" else name][1]


@pytest.mark.parametrize("name", NP_NAMES)
def test_numpy_ufunc(name):
    k = NP_NAMES.index(name)
    for mode, dtype in itertools.product(MODES, (np.float64, np.float32)):
        for x in _points(name):
            xs = scalar(x, dtype)
            label = f"{mode}: np.{name}'({x}) {np.dtype(dtype).name}"
            _check_point(mode, np_unary, (xs, k), _deriv(name)(float(xs)), dtype, label)


@pytest.mark.parametrize("mode", MODES)
def test_math_unary_f32(mode):
    failures = []
    for k, name in enumerate(MATH_F32_NAMES):
        for x in _points(name):
            xs = np.float32(x)
            try:
                _check_point(mode, math_unary, (xs, k), _deriv(name)(float(xs)), np.float32, name)
            except AssertionError as e:  # collect, report all at once
                failures.append(f"math.{name}'({x}) float32: {e}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------- binary ops
@njit
def m_atan2(y, x):
    return math.atan2(y, x)


@njit
def m_hypot(x, y):
    return math.hypot(x, y)


@njit
def m_copysign(x, y):
    return math.copysign(x, y) * y


@njit
def m_pow(x, y):
    return math.pow(x, y)


def _atan2_d(y, x):
    r2 = x * x + y * y
    return (x / r2, -y / r2)


def _hypot_d(x, y):
    h = math.hypot(x, y)
    return (x / h, y / h)


def _copysign_d(x, y):
    # copysign(x, y) * y = |x| sign(y) y = |x| |y|  ->  (sign(x) |y|, |x| sign(y));
    # the sign of y is piecewise constant, so copysign has no y-derivative
    return (math.copysign(1.0, x) * abs(y), abs(x) * math.copysign(1.0, y))


def _pow_d(x, y):
    return (y * x ** (y - 1), x**y * math.log(x))


BINARY = {
    "atan2": (m_atan2, [(0.5, 1.2), (-0.7, -0.3), (1.5, -2.0)], _atan2_d),
    "hypot": (m_hypot, [(0.5, 1.2), (-0.7, -0.3), (3.0, -4.0)], _hypot_d),
    "copysign": (m_copysign, [(0.5, 1.2), (-0.7, -0.3), (1.5, -2.0)], _copysign_d),
    "pow": (m_pow, [(0.5, 1.2), (2.5, -0.3), (1.5, 2.0)], _pow_d),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BINARY))
def test_math_binary_f64(mode, name):
    fn, points, d = BINARY[name]
    for a, b in points:
        got = ad_grads(mode, fn, (a, b))
        assert_close(got, d(a, b), np.float64, "ad", err_msg=f"{name}{(a, b)}")
        want_fd = [fd_grad(fn, (a, b), 0), fd_grad(fn, (a, b), 1)]
        assert_close(got, want_fd, np.float64, "fd", err_msg=f"{name}{(a, b)}")


@njit
def m_ldexp(x, n):
    return math.ldexp(x * x, n) - math.ldexp(x, -n)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [0, 3, -2, 30])
def test_ldexp(mode, n):
    """d/dx (x^2 2^n - x 2^-n) = 2x 2^n - 2^-n; the int exponent has no derivative."""
    for x in (0.5, -1.3, 3.0):
        got = ad_grads(mode, m_ldexp, (x, n))[0]
        want = 2 * x * 2.0 ** n - 2.0 ** -n
        assert_close([got], [want], np.float64, "ad", err_msg=f"ldexp({x}, {n})")
        assert_close([got], [fd_grad(m_ldexp, (x, n), 0)], np.float64, "fd", err_msg=f"ldexp({x}, {n})")


@njit
def m_frexp(x):
    m, e = math.frexp(x * x + x)
    return m * 3.0 + e


@pytest.mark.parametrize("mode", MODES)
def test_frexp(mode):
    """m = u 2^-e for u = x^2 + x: dm/dx = (2x + 1) 2^-e, e piecewise constant; at u = 0
    (x = 0 or x = -1) m = 0, e = 0 and dm/du = 1."""
    for x in (0.3, -1.7, 2.0, 5.5, 1e-3, 0.0, -1.0):
        u = x * x + x
        e = math.frexp(u)[1]
        want = 3.0 * (2 * x + 1) * 2.0 ** -e
        got = ad_grads(mode, m_frexp, (x,))[0]
        assert_close([got], [want], np.float64, "ad", err_msg=f"frexp at {x}")
        if x not in (0.0, -1.0, 2.0):                 # not at a jump of e (u = 6 is inside)
            assert_close([got], [fd_grad(m_frexp, (x,), 0)], np.float64, "fd",
                         err_msg=f"frexp at {x}")


@njit
def m_frexp_mantissa(x):
    return 3.0 * math.frexp(x)[0]


@pytest.mark.parametrize("mode", MODES)
def test_frexp_at_zero_and_infinity(mode):
    """C's frexp returns m = x, e = 0 at x = 0 and x = +-inf: dm/dx = 1 there (not
    inf / inf); elsewhere 2^-e; NaN stays NaN."""
    for x, want in ((math.inf, 3.0), (-math.inf, 3.0), (0.0, 3.0), (-0.0, 3.0),
                    (6.0, 3.0 / 8.0), (-0.2, 3.0 * 4.0)):
        got = ad_grads(mode, m_frexp_mantissa, (x,))[0]
        assert got == want, f"frexp at {x}: {got}"
    assert math.isnan(ad_grads(mode, m_frexp_mantissa, (math.nan,))[0])


NP_BINARY = ["arctan2", "hypot", "copysign", "power"]


@njit
def np_binary(x, y, k):
    if k == 0:
        return np.arctan2(x, y)
    elif k == 1:
        return np.hypot(x, y)
    elif k == 2:
        return np.copysign(x, y) * y
    else:
        return np.power(x, y)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_numpy_binary(mode, dtype):
    failures = []
    for k, name in enumerate(NP_BINARY):
        key = {"arctan2": "atan2", "power": "pow"}.get(name, name)
        _, points, d = BINARY[key]
        for a, b in points:
            args = (scalar(a, dtype), scalar(b, dtype))
            try:
                got = ad_grads(mode, np_binary, args + (k,))
                want = d(float(args[0]), float(args[1]))
                assert_close(got, want, dtype, "ad")
                fd = [fd_grad(np_binary, args + (k,), i) for i in (0, 1)]
                assert_close(got, fd, dtype, "fd")
            except AssertionError as e:
                failures.append(f"np.{name}{(a, b)} {np.dtype(dtype).name}: {e}")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------- composition
@njit
def composite(x, y):
    return math.exp(math.sin(x) * y) + math.log(1.0 + x * x) * math.sqrt(y) - math.tanh(x * y)


@pytest.mark.parametrize("mode", MODES)
def test_composite(mode):
    for x, y in [(0.3, 1.2), (-1.1, 0.4), (2.0, 3.0)]:
        got = ad_grads(mode, composite, (x, y))
        s, c = math.sin(x), math.cos(x)
        e = math.exp(s * y)
        sech2 = 1.0 - math.tanh(x * y) ** 2
        dx = e * c * y + 2 * x / (1 + x * x) * math.sqrt(y) - sech2 * y
        dy = e * s + math.log(1 + x * x) * 0.5 / math.sqrt(y) - sech2 * x
        assert_close(got, (dx, dy), np.float64, "ad", err_msg=str((x, y)))


# --- sin and cos of one operand: the reverse sweep takes the partial from the
# primal's companion call (rules.COMPANIONS) where that call dominates


@njit
def rotate_sum(theta, v):
    """A rotation per entry: sin and cos of the same angle in one block."""
    s = 0.0
    for i in range(theta.shape[0]):
        c = math.cos(theta[i])
        sn = math.sin(theta[i])
        s += (c * v[i] - sn * v[i] * v[i]) * (1.0 + c * sn)
    return s


@njit
def companion_in_branch(x, flag):
    """cos(x) only on one side of a branch: it does not dominate sin(x), whose
    partial must then be computed, not taken."""
    c = 0.0
    if flag > 0:
        c = math.cos(x)
    return math.sin(x) * 2.0 + c


@pytest.mark.parametrize("policy", ["auto", "recompute", "store"])
def test_sin_cos_companions(policy, rng):
    theta = rng.uniform(-3.0, 3.0, 7)
    v = rng.uniform(-1.0, 1.0, 7)
    df = gradjit.autodiff(rotate_sum, "reverse", gradjit.Duplicated, gradjit.Const,
                          checkpointing=policy)
    dtheta = np.zeros(7)
    df(theta, dtheta, v, 1.0)
    c, s = np.cos(theta), np.sin(theta)
    # d/dt of (c v - s v^2)(1 + c s) with c' = -s, s' = c
    want = (-s * v - c * v * v) * (1 + c * s) + (c * v - s * v * v) * (c * c - s * s)
    assert_close(dtheta, want, np.float64, "ad")
    assert_close(dtheta, fd_grad(rotate_sum, (theta, v), 0), np.float64, "fd")
    for flag in (0, 1):
        d = gradjit.autodiff(companion_in_branch, "reverse", gradjit.Active, gradjit.Const,
                             checkpointing=policy)
        _, g = d(0.7, flag, 1.0)
        assert_close(g, 2.0 * math.cos(0.7) - flag * math.sin(0.7), np.float64, "ad")
