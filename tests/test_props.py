"""Property tests (hypothesis): random inputs inside smooth domains.

Reverse mode, forward mode and central differences must agree; forward and
reverse must satisfy <cotangent, J t> == <J^T cotangent, t>; derivatives are
linear in tangents and seeds. Few examples each (compile once, evaluate many).
"""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

import gradjit  # noqa: F401
from gradjit import Dual, Duplicated
from conftest import (
    ad_grads,
    assert_close,
    fd_grad,
    fd_jvp,
    final_state,
    get_autodiff,
    get_jvp,
    get_vjp,
)

SETTINGS = settings(max_examples=20, deadline=None, database=None)

floats = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, allow_infinity=False)


@njit
def prop_f(x, y):
    return math.sin(x) * math.exp(y / 3.0) + x * y**2 / (1.0 + x * x) + math.tanh(x - y)


def prop_f_grad(x, y):
    e = math.exp(y / 3.0)
    sech2 = 1.0 - math.tanh(x - y) ** 2
    dx = math.cos(x) * e + y**2 * (1 - x * x) / (1 + x * x) ** 2 + sech2
    dy = math.sin(x) * e / 3.0 + 2 * x * y / (1 + x * x) - sech2
    return dx, dy


@SETTINGS
@given(x=floats, y=floats)
def test_scalar_reverse_forward_analytic(x, y):
    rev = ad_grads("reverse", prop_f, (x, y))
    fwd = ad_grads("forward", prop_f, (x, y))
    want = prop_f_grad(x, y)
    assert_close(rev, want, np.float64, "ad")
    assert_close(fwd, want, np.float64, "ad")
    assert_close(rev, [fd_grad(prop_f, (x, y), 0), fd_grad(prop_f, (x, y), 1)])


@SETTINGS
@given(x=floats, y=floats)
def test_scalar_float32(x, y):
    args = (np.float32(x), np.float32(y))
    want = prop_f_grad(float(args[0]), float(args[1]))
    assert_close(ad_grads("reverse", prop_f, args), want, np.float32, "fd")
    assert_close(ad_grads("forward", prop_f, args), want, np.float32, "fd")


@njit
def prop_g(a):
    n = a.shape[0]
    s = 0.0
    for i in range(n):
        s += math.tanh(a[i]) * a[(i + 1) % n] + math.log1p(a[i] * a[i])
    return s


vectors = hnp.arrays(
    np.float64,
    st.integers(min_value=1, max_value=8),
    elements=st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
)


@SETTINGS
@given(a=vectors, seed=st.integers(0, 2**31 - 1), strided=st.booleans())
def test_array_grad_vs_jvp_vs_fd(a, seed, strided):
    if strided:
        buf = np.zeros(2 * a.size)
        buf[::2] = a
        a = buf[::2]
    rng = np.random.default_rng(seed)
    (g,) = ad_grads("reverse", prop_g, (a,))
    assert_close(g, fd_grad(prop_g, (a,), 0))
    t = rng.standard_normal(a.shape)
    primal, t_out = get_jvp(prop_g)((a,), (t,))
    assert_close(primal, prop_g(a), np.float64, "ad")
    assert_close(t_out, float(np.dot(g, t)), np.float64, "ad")


@SETTINGS
@given(a=vectors, c=floats, seed=st.integers(0, 2**31 - 1))
def test_jvp_linear_in_tangent(a, c, seed):
    rng = np.random.default_rng(seed)
    t1 = rng.standard_normal(a.shape)
    t2 = rng.standard_normal(a.shape)
    jvp = get_jvp(prop_g)
    _, d1 = jvp((a,), (t1,))
    _, d2 = jvp((a,), (t2,))
    _, d12 = jvp((a,), (t1 + c * t2,))
    assert_close(d12, d1 + c * d2, np.float64, "ad", atol=1e-10)


@njit
def prop_map(x):
    out = np.empty_like(x)
    n = x.shape[0]
    for i in range(n):
        out[i] = math.sin(x[i]) * x[(i + 1) % n] + math.exp(-x[i] * x[i])
    return out


@SETTINGS
@given(a=vectors, seed=st.integers(0, 2**31 - 1))
def test_array_output_adjoint_identity(a, seed):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(a.shape)
    cot = rng.standard_normal(a.shape)
    out, t_out = get_jvp(prop_map)((a,), (t,))
    out2, pullback = get_vjp(prop_map)(a)
    assert_close(out, out2, np.float64, "ad")
    g = pullback(cot)
    assert_close(float(cot @ t_out), float(g @ t), np.float64, "ad", atol=1e-10)
    assert_close(t_out, fd_jvp(prop_map, (a,), (t,)))


@njit
def prop_inplace(x):
    for i in range(1, x.shape[0]):
        x[i] = math.sin(x[i]) + x[i - 1] * x[i] * 0.5


@SETTINGS
@given(a=vectors, seed=st.integers(0, 2**31 - 1))
def test_inplace_forward_reverse_duality(a, seed):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(a.shape)
    s = rng.standard_normal(a.shape)
    dx_f = t.copy()
    get_autodiff(prop_inplace, "forward", Dual)(a.copy(), dx_f)
    dx_r = s.copy()
    get_autodiff(prop_inplace, "reverse", Duplicated)(a.copy(), dx_r)
    assert_close(float(s @ dx_f), float(dx_r @ t), np.float64, "ad", atol=1e-10)
    assert_close(dx_f, fd_jvp(final_state(prop_inplace, 0), (a,), (t,)))
