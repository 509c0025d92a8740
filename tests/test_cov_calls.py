"""Coverage: calls between @njit functions.

Small helpers (LLVM inlines them), call chains, self-recursive functions
(LLVM cannot inline them: the AD must differentiate through a real call),
a large helper called from several sites, helpers taking arrays, helpers
writing into arrays and helpers returning arrays.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit  # noqa: F401
from gradjit import Dual, Duplicated
from conftest import (
    DTYPES,
    MODES,
    ad_grads,
    assert_close,
    check_grads,
    fd_grad,
    fd_jvp,
    get_autodiff,
    scalar,
)


def _ids(dtype):
    return "f32" if dtype == np.float32 else "f64"


mode_p = pytest.mark.parametrize("mode", MODES)
dtype_p = pytest.mark.parametrize("dtype", DTYPES, ids=_ids)


@njit
def helper(a, b):
    return a * math.sin(b) + b * b


@njit
def calls_helper(x, y):
    return helper(x, y) * helper(y, x) + helper(x * y, 1.0)


@mode_p
@dtype_p
def test_small_helper(mode, dtype):
    for x, y in [(0.4, 1.3), (-1.1, 0.7)]:
        check_grads(mode, calls_helper, (scalar(x, dtype), scalar(y, dtype)))


@njit
def level3(x):
    return math.exp(-x * x)


@njit
def level2(x, y):
    return level3(x) * y + level3(y)


@njit
def level1(x, y):
    return level2(x, y) + level2(y, x) ** 2


@mode_p
def test_call_chain(mode):
    for x, y in [(0.4, 1.3), (-1.1, 0.7)]:
        check_grads(mode, level1, (x, y))


# ------------------------------------------------------------- recursion
@njit
def rpow(x, n):
    if n <= 0:
        return 1.0
    return x * rpow(x, n - 1)


@njit
def uses_rpow(x, n):
    return rpow(x, n) + math.sin(x) * rpow(x, 2)


@mode_p
@dtype_p
def test_recursive_scalar(mode, dtype):
    xs = scalar(1.3, dtype)
    x = float(xs)
    for n in [0, 1, 3, 6]:
        (g,) = check_grads(mode, uses_rpow, (xs, n))
        want = (n * x ** (n - 1) if n else 0.0) + math.cos(x) * x * x + math.sin(x) * 2 * x
        assert_close(g, want, dtype, "ad", err_msg=f"n={n}")


@njit
def rsum(x, i):
    if i >= x.shape[0]:
        return 0.0
    return x[i] * x[i] * (i + 1) + math.sin(x[i]) * rsum(x, i + 1)


@njit
def uses_rsum(x):
    return rsum(x, 0)


@mode_p
def test_recursive_over_array(mode, rng):
    for n in [1, 4, 9]:
        check_grads(mode, uses_rsum, (rng.uniform(-1, 1, n),))


def test_recursive_duplicated_accumulates(rng):
    x = rng.uniform(-1, 1, 6)
    g = fd_grad(uses_rsum, (x,), 0)
    dx = np.ones(6)
    primal = get_autodiff(uses_rsum, "reverse", Duplicated)(x, dx, 2.0)
    assert_close(primal, uses_rsum(x), np.float64, "ad")
    assert_close(dx, 1.0 + 2.0 * g)


# ---------------------------------------------------- a large helper
@njit
def big(x, y):
    a = x * y + 1.0
    b = math.sin(a) * x
    c = math.cos(b) + y * a
    d = math.exp(-0.1 * c * c) * b
    e = a * b - c * d + math.tanh(d)
    f = math.sqrt(1.0 + e * e) + a
    g = f * math.log(2.0 + c * c) - b
    h = math.atan(g) * d + e / (1.0 + f * f)
    i = h * h + math.sin(g) * math.cos(e)
    j = i / (1.0 + abs(h)) + a * b * c
    k = math.exp(-0.05 * j * j) + math.sinh(0.1 * i)
    m = k * j - h * g + f * e - d * c + b * a
    n = math.hypot(m, k) + math.atan2(j, 1.0 + i * i)
    o = n * math.tanh(m) + math.log1p(k * k)
    p = o + math.expm1(-0.01 * n * n) * m
    q = p * p * 0.01 + math.sin(p) * math.cos(o) * math.sin(n)
    r = q + a - b + c - d + e - f + g - h + i - j + k - m + n - o + p
    s = r * math.exp(-0.001 * r * r) + math.cos(q) * math.sin(r)
    t = s * x - r * y + q * a + p * b
    u = math.tanh(t * 0.1) + math.atan(s) * math.sin(t)
    return u + s * 0.1


@njit
def calls_big(v):
    s = 0.0
    for i in range(v.shape[0] - 1):
        s += big(v[i], v[i + 1])
    return s + big(s * 0.01, v[0]) * big(v[-1], 0.5)


@mode_p
def test_large_helper_multiple_call_sites(mode, rng):
    v = rng.uniform(-0.8, 0.8, 5)
    check_grads(mode, calls_big, (v,))


# ---------------------------------------------------- array-taking helpers
@njit
def pair_term(x, i):
    return x[i] * x[i + 1] - math.cos(x[i])


@njit
def sum_pairs(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += pair_term(x, i)
    return s


@mode_p
@dtype_p
def test_helper_taking_array(mode, dtype, rng):
    x = rng.uniform(-1, 1, 6).astype(dtype)
    (g,) = check_grads(mode, sum_pairs, (x,))
    x64 = x.astype(np.float64)
    want = np.zeros(6)
    want[:-1] += x64[1:] + np.sin(x64[:-1])
    want[1:] += x64[:-1]
    assert_close(g, want, dtype, "ad")


@njit
def fill(out, x):
    for i in range(x.shape[0]):
        out[i] = math.exp(0.5 * x[i]) * x[(i + 1) % x.shape[0]]


@njit
def uses_fill(x):
    out = np.empty_like(x)
    fill(out, x)
    return np.sum(out * out)


@mode_p
def test_helper_writing_local_array(mode, rng):
    check_grads(mode, uses_fill, (rng.uniform(-1, 1, 5),))


@njit
def make_sq(x):
    return x * x + 0.5 * x


@njit
def uses_make_sq(x):
    y = make_sq(x)
    return np.sum(np.sqrt(y + 1.0))


@mode_p
def test_helper_returning_array(mode, rng):
    x = rng.uniform(-0.2, 1, (2, 3))
    (g,) = check_grads(mode, uses_make_sq, (x,))
    assert_close(g, (2 * x + 0.5) * 0.5 / np.sqrt(x * x + 0.5 * x + 1.0), np.float64, "ad")


@njit
def outer_writes_via_helper(x, out):
    fill(out, x)


def test_helper_writing_duplicated_output(rng):
    x = rng.uniform(-1, 1, 5)
    out = np.zeros(5)
    seed = rng.standard_normal(5)
    dx = np.zeros(5)
    dout = seed.copy()
    get_autodiff(outer_writes_via_helper, "reverse", Duplicated, Duplicated)(x, dx, out, dout)
    assert np.all(np.abs(dout) <= 1e-12)

    def contracted(x):
        o = np.empty(5)
        fill(o, x)
        return float(seed @ o)

    assert_close(dx, fd_grad(contracted, (x,), 0))

    tx = rng.standard_normal(5)
    out2 = np.zeros(5)
    dout2 = np.zeros(5)
    get_autodiff(outer_writes_via_helper, "forward", Dual, Dual)(x, tx.copy(), out2, dout2)

    def filled(x):
        o = np.empty(5)
        fill(o, x)
        return o

    assert_close(dout2, fd_jvp(filled, (x,), (tx,)))


@njit
def noisy_energy(x):
    np.random.seed(7)
    eps = np.random.normal() + np.random.standard_normal()   # noise: constant in x
    return np.sum(x ** 2) * (1.0 + 0.0 * eps) + eps


@pytest.mark.parametrize("mode", MODES)
def test_gaussian_draws_are_not_differentiated(mode):
    # Numba's Gaussian generator keeps its second draw in the random state through a
    # stack slot written by its compiled helper: that slot holds no derivative (it
    # was taken for active and the store into the state reported)
    x = np.array([1.0, -2.0, 0.5])
    g = ad_grads(mode, noisy_energy, (x,), (0,))[0]
    np.testing.assert_allclose(g, 2 * x, rtol=1e-15)
