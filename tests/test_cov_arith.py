"""Coverage: scalar arithmetic, powers, abs/min/max, comparisons and branches.

Every function is differentiated in reverse mode (``gradjit.grad``) and in
forward mode (``gradjit.jvp`` with basis tangents), for float64 and float32,
and checked against central finite differences and, where easy, analytic
derivatives.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit  # noqa: F401  (collection fails loudly if the package is missing)
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
def arith_mix(x, y):
    return x * y + x / y - y + (-x) + 3.0 * x * x - y / (x * x + 1.0)


def arith_mix_grad(x, y):
    dx = y + 1.0 / y - 1.0 + 6.0 * x + 2.0 * x * y / (x * x + 1.0) ** 2
    dy = x - x / (y * y) - 1.0 - 1.0 / (x * x + 1.0)
    return dx, dy


@njit
def arith_pure(x, y):
    # no float64 literals: stays in the arguments' dtype (pure float32 IR for float32)
    return x * y - y / x + x * x * y - (-y) * x


@njit
def int_pow(x):
    return x**2 + x**3 - 2.0 * x**4 + x**-1 + x**-2 + x**0 + x**1


def int_pow_grad(x):
    return 2 * x + 3 * x**2 - 8 * x**3 - x**-2 - 2 * x**-3 + 1.0


@njit
def int_pow_var(x, n):
    return x**n


@njit
def float_pow(x, y):
    return x**y + x**0.5 + x**1.5 + x**-0.25 + 2.0**y


def float_pow_grad(x, y):
    dx = y * x ** (y - 1) + 0.5 * x**-0.5 + 1.5 * x**0.5 - 0.25 * x**-1.25
    dy = x**y * math.log(x) + 2.0**y * math.log(2.0)
    return dx, dy


@njit
def abs_min_max(x, y):
    return abs(x) * y + min(x, y) + 2.0 * max(x, y) + min(x * x, y) - max(-x, y * y)


@njit
def piecewise(x):
    if x < -1.0:
        return x * x + 2.0
    elif x < 0.5:
        return 3.0 * x
    elif x <= 2.0:
        return x * x * x
    else:
        return -x + 10.0


def piecewise_grad(x):
    if x < -1.0:
        return 2 * x
    if x < 0.5:
        return 3.0
    if x <= 2.0:
        return 3 * x * x
    return -1.0


@njit
def ternaries(x, y):
    a = x * y if x > y else x + y
    b = x if y >= 0.0 else -x * x
    c = 2.0 if (x != y and x == x) else 0.0
    return a * b + c * x


@njit
def compare_mask(x, y):
    # booleans used as numbers are constants: d/dx[(x > y) * x * y] = (x > y) * y
    return (x > y) * x * y + (x <= y) * (x - y) + (x < 0.0) * x**2


def compare_mask_grad(x, y):
    gt = 1.0 if x > y else 0.0
    le = 1.0 - gt
    neg = 1.0 if x < 0.0 else 0.0
    return gt * y + le + 2 * neg * x, gt * x - le


def _ids(dtype):
    return "f32" if dtype == np.float32 else "f64"


mode_p = pytest.mark.parametrize("mode", MODES)
dtype_p = pytest.mark.parametrize("dtype", DTYPES, ids=_ids)


def _pts(points, dtype):
    return [tuple(scalar(v, dtype) for v in p) for p in points]


@mode_p
@dtype_p
def test_arith_mix(mode, dtype):
    for args in _pts([(1.3, -0.7), (-2.1, 0.4), (0.6, 2.5)], dtype):
        got = check_grads(mode, arith_mix, args)
        assert_close(got, arith_mix_grad(*map(float, args)), dtype, "fd", err_msg=str(args))


@mode_p
@dtype_p
def test_arith_pure(mode, dtype):
    for args in _pts([(1.5, 0.5), (-0.7, 1.9)], dtype):
        got = check_grads(mode, arith_pure, args)
        xf, yf = map(float, args)
        want = (yf + yf / xf**2 + 2 * xf * yf + yf, xf - 1.0 / xf + xf * xf + xf)
        assert_close(got, want, dtype, "fd", err_msg=str(args))


@mode_p
@dtype_p
def test_int_pow(mode, dtype):
    for args in _pts([(0.7,), (-1.3,), (2.0,)], dtype):
        (g,) = check_grads(mode, int_pow, args)
        assert_close(g, int_pow_grad(float(args[0])), dtype, "fd", err_msg=str(args))


@mode_p
def test_int_pow_runtime_exponent(mode):
    x = 1.7
    for n in [0, 1, 2, 5, -3]:
        (g,) = check_grads(mode, int_pow_var, (x, n))
        want = 0.0 if n == 0 else n * x ** (n - 1)
        assert_close(g, want, np.float64, "ad", rtol=1e-9, err_msg=f"n={n}")


@mode_p
@dtype_p
def test_float_pow(mode, dtype):
    for args in _pts([(0.8, 1.7), (2.3, -0.6), (1.1, 3.0)], dtype):
        got = check_grads(mode, float_pow, args)
        assert_close(got, float_pow_grad(*map(float, args)), dtype, "fd", err_msg=str(args))


@mode_p
@dtype_p
def test_abs_min_max(mode, dtype):
    # one point per branch combination, all away from ties
    for args in _pts([(1.5, -0.5), (-0.8, 0.3), (0.2, 0.9), (-1.2, -2.0)], dtype):
        check_grads(mode, abs_min_max, args)


@mode_p
@dtype_p
def test_if_elif_else(mode, dtype):
    for args in _pts([(-2.0,), (-0.3,), (1.2,), (3.5,)], dtype):
        (g,) = check_grads(mode, piecewise, args)
        assert_close(g, piecewise_grad(float(args[0])), dtype, "ad", err_msg=str(args))


@mode_p
def test_ternaries(mode):
    for args in [(1.0, 0.5), (0.3, 0.8), (-0.5, -1.2), (2.0, -0.25)]:
        check_grads(mode, ternaries, args)


@mode_p
@dtype_p
def test_comparisons_are_constant(mode, dtype):
    for args in _pts([(1.0, 0.5), (0.3, 0.8), (-0.5, -1.2), (-1.5, 0.7)], dtype):
        got = ad_grads(mode, compare_mask, args)
        want = compare_mask_grad(*map(float, args))
        assert_close(got, want, dtype, "ad", err_msg=str(args))


@dtype_p
def test_forward_matches_reverse_random_tangent(dtype):
    rng = np.random.default_rng(0)
    for _ in range(3):
        args = (scalar(rng.uniform(0.5, 2.0), dtype), scalar(rng.uniform(0.5, 2.0), dtype))
        grads = ad_grads("reverse", float_pow, args)
        tangents = random_tangents(rng, args)
        primal, t_out = get_jvp(float_pow)(args, tuple(tangents))
        assert_close(primal, float_pow(*args), dtype, "ad")
        assert_close(t_out, dot_grads_tangents(grads, (0, 1), tangents), dtype, "ad")
