"""``has_aux`` (JAX's): a function returning ``(value, aux)`` is differentiated in
``value`` and hands ``aux`` back from the same evaluation, through ``grad``,
``value_and_grad`` and ``autodiff`` in both modes, from Python and from @njit code.
Gradients are checked against analytic derivatives and central differences; aux
against an independent NumPy computation; NRT allocations are counted."""
import math
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Dual, Duplicated
from conftest import fd_grad


@njit
def _loss_and_stats(w, x, y):
    """Least squares with a ``tanh`` model; aux: (residuals, iterations, max |r|)."""
    r = np.empty(x.shape[0])
    s = 0.0
    for i in range(x.shape[0]):
        r[i] = math.tanh(w[0] * x[i] + w[1]) - y[i]
        s += r[i] * r[i]
    return 0.5 * s, (r, x.shape[0], np.max(np.abs(r)))


@njit
def _scalar_aux(a, b):
    return a * a * b, a + b


@njit
def _not_a_pair(a):
    return a * a, a, 2.0 * a


@njit
def _int_first(a):
    return 3, a


def _data(n=40):
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, n)
    return np.array([0.7, -0.2]), x, np.tanh(0.5 * x + 0.1)


def _expected(w, x, y):
    r = np.tanh(w[0] * x + w[1]) - y
    d = (1 - np.tanh(w[0] * x + w[1]) ** 2) * r
    return 0.5 * float(r @ r), r, np.array([float(d @ x), float(d.sum())])


def test_grad_with_aux():
    w, x, y = _data()
    g, (r, n, rmax) = gradjit.grad(_loss_and_stats, has_aux=True)(w, x, y)
    value, r_want, g_want = _expected(w, x, y)
    np.testing.assert_allclose(g, g_want, rtol=1e-13)
    np.testing.assert_allclose(g, fd_grad(lambda w_: _loss_and_stats(w_, x, y)[0], (w,), 0),
                               rtol=1e-7)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)
    assert n == 40 and rmax == pytest.approx(np.abs(r_want).max(), rel=1e-14)


def test_value_and_grad_with_aux_and_argnums():
    w, x, y = _data()
    (value, (r, n, _)), (gw, gx) = gradjit.value_and_grad(
        _loss_and_stats, argnums=(0, 1), has_aux=True)(w, x, y)
    v_want, r_want, g_want = _expected(w, x, y)
    assert value == pytest.approx(v_want, rel=1e-14)
    np.testing.assert_allclose(gw, g_want, rtol=1e-13)
    d = (1 - np.tanh(w[0] * x + w[1]) ** 2) * r_want * w[0]
    np.testing.assert_allclose(gx, d, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)


def test_scalar_arguments_and_scalar_aux():
    (ga, gb), aux = gradjit.grad(_scalar_aux, argnums=(0, 1), has_aux=True)(1.5, -2.0)
    assert (ga, gb) == (pytest.approx(2 * 1.5 * -2.0), pytest.approx(1.5 ** 2))
    assert aux == pytest.approx(-0.5)


def test_has_aux_errors():
    with pytest.raises(TypeError, match="pair"):
        gradjit.grad(_not_a_pair, has_aux=True)(2.0)
    with pytest.raises(TypeError, match="first element is a float"):
        gradjit.grad(_int_first, has_aux=True)(2.0)
    with pytest.raises(TypeError):            # a tuple return without has_aux
        gradjit.grad(_scalar_aux)(1.0, 2.0)
    with pytest.raises(ValueError, match="vector mode"):
        gradjit.autodiff(_loss_and_stats, "reverse", Duplicated, gradjit.Const,
                         gradjit.Const, width=2, has_aux=True)


def test_autodiff_reverse_and_forward_with_aux():
    w, x, y = _data()
    v_want, r_want, g_want = _expected(w, x, y)
    df = gradjit.autodiff(_loss_and_stats, "reverse", Duplicated, gradjit.Const, gradjit.Const,
                          has_aux=True)
    dw = np.zeros(2)
    (value, (r, n, _)) = df(w, dw, x, y, 2.0)
    assert value == pytest.approx(v_want, rel=1e-14)
    np.testing.assert_allclose(dw, 2.0 * g_want, rtol=1e-13)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)
    jf = gradjit.autodiff(_loss_and_stats, "forward", Dual, gradjit.Const, gradjit.Const,
                          has_aux=True)
    t = np.array([0.3, -1.1])
    (value, (r, n, _)), tangent = jf(w, t, x, y)
    assert tangent == pytest.approx(float(g_want @ t), rel=1e-13)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)

    @njit
    def from_njit(w, dw, x, y):
        out = df(w, dw, x, y, 1.0)
        return out[0], out[1][0]

    dw[:] = 0.0
    value, r = from_njit(w, dw, x, y)
    np.testing.assert_allclose(dw, g_want, rtol=1e-13)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)


_LEAK_CHECK = """
import math, numpy as np, numba, gradjit
from gradjit import Dual, Duplicated, Const
from numba.core.runtime import rtsys

@numba.njit
def f(x):
    y = np.exp(x)              # an array computed from the differentiated argument
    return np.sum(y * x), (y, x[1:], 3)

x = np.linspace(0.0, 1.0, 50)
for df, shadow in [(gradjit.autodiff(f, "reverse", Duplicated, has_aux=True), np.zeros(50)),
                   (gradjit.autodiff(f, "forward", Dual, has_aux=True), np.ones(50)),
                   (gradjit.autodiff(f, "forward", Dual, ret=Const, has_aux=True), np.ones(50))]:
    args = (x, shadow, 1.0) if df.mode == "reverse" else (x, shadow)
    r = df(*args)
    del r
    s0 = rtsys.get_allocation_stats()
    for _ in range(200):
        r = df(*args)
        del r
    s1 = rtsys.get_allocation_stats()
    print(s1.alloc - s0.alloc - (s1.free - s0.free), s1.mi_alloc - s0.mi_alloc - (s1.mi_free - s0.mi_free))
"""


def test_aux_arrays_do_not_leak():
    import os
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    out = subprocess.run([sys.executable, "-c", _LEAK_CHECK], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0"] * 6, out.stdout


def test_jvp_with_aux():
    w, x, y = _data()
    v_want, r_want, g_want = _expected(w, x, y)
    t = np.array([-0.4, 2.0])
    jv = gradjit.jvp(_loss_and_stats, has_aux=True)
    value, tangent, (r, n, _) = jv((w, x, y), (t, None, None))
    assert value == pytest.approx(v_want, rel=1e-14)
    assert tangent == pytest.approx(float(g_want @ t), rel=1e-13)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)
    with pytest.raises(TypeError, match="pair"):
        gradjit.jvp(_not_a_pair, has_aux=True)((2.0,), (1.0,))


def test_return_activities_with_aux():
    """Forward mode with a Const return hands back (value, aux); the activities that
    drop the primal return cannot carry aux and are refused."""
    w, x, y = _data()
    v_want, r_want, _ = _expected(w, x, y)
    jf = gradjit.autodiff(_loss_and_stats, "forward", Dual, gradjit.Const, gradjit.Const,
                          ret=gradjit.Const, has_aux=True)
    value, (r, n, _) = jf(w, np.ones(2), x, y)
    assert value == pytest.approx(v_want, rel=1e-14)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)
    for mode, ret, shadow in (("reverse", gradjit.Const, np.zeros(2)),
                              ("reverse", gradjit.ActiveOnly, np.zeros(2)),
                              ("forward", gradjit.DualOnly, np.ones(2))):
        df = gradjit.autodiff(_loss_and_stats, mode, Duplicated if mode == "reverse" else Dual,
                              gradjit.Const, gradjit.Const, ret=ret, has_aux=True)
        with pytest.raises(gradjit.ActivityError, match="has_aux"):
            args = (w, shadow, x, y) + ((1.0,) if ret is gradjit.ActiveOnly else ())
            df(*args)


def test_vjp_with_aux():
    w, x, y = _data()
    v_want, r_want, g_want = _expected(w, x, y)
    value, pullback, (r, n, _) = gradjit.vjp(_loss_and_stats, has_aux=True)(w, x, y)
    assert value == pytest.approx(v_want, rel=1e-14)
    np.testing.assert_allclose(r, r_want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(pullback(0.5), 0.5 * g_want, rtol=1e-13)
    with pytest.raises(TypeError, match="pair"):
        gradjit.vjp(_not_a_pair, has_aux=True)(2.0)


@njit
def _f32_loss(x):
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s, x * np.float32(2.0)


@njit
def _f64_loss_f32_aux(x):
    return np.sum(np.exp(x)), (x * 2.0, np.float32(1.5))


def test_float32_next_to_arrays_in_the_returned_tuple():
    """The tuple is stored as one aggregate with padding (LLVM keeps it whole): the
    pre-AD pass splits the store per member (gradjit.ir.aggregate_stores)."""
    x = np.linspace(0.1, 1.0, 7).astype(np.float32)
    g, aux = gradjit.grad(_f32_loss, has_aux=True)(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * x, rtol=1e-6)
    np.testing.assert_allclose(aux, 2 * x, rtol=1e-7)
    value, tangent, aux = gradjit.jvp(_f32_loss, has_aux=True)((x,), (np.ones_like(x),))
    assert tangent == pytest.approx(float(np.sum(2 * x)), rel=1e-6)
    x64 = x.astype(np.float64)
    g, (y, c) = gradjit.grad(_f64_loss_f32_aux, has_aux=True)(x64)
    np.testing.assert_allclose(g, np.exp(x64), rtol=1e-14)
    np.testing.assert_allclose(y, 2 * x64, rtol=1e-15)
    assert c == np.float32(1.5)
