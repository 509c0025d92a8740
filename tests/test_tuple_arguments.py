"""Tuples of float arrays as differentiated arguments (JAX users' parameter
tuples): ``autodiff`` with a shadow tuple in both modes and from @njit code;
``grad`` / ``value_and_grad`` / ``vjp`` return a tuple of gradient arrays, ``jvp``
takes a tuple of tangents.  Checked against analytic derivatives and central
differences; member aliasing and vector mode are reported."""
import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Dual, Duplicated
from conftest import fd_grad

RNG = np.random.default_rng(7)
W, B, X = RNG.normal(size=(3, 4)), RNG.normal(size=3), RNG.normal(size=4)


@njit
def _layer(p, x):
    w, b = p
    s = 0.0
    for i in range(w.shape[0]):
        t = b[i]
        for j in range(w.shape[1]):
            t += w[i, j] * x[j]
        s += np.tanh(t)
    return s


def _layer_grads(w, b, x):
    d = 1.0 - np.tanh(b + w @ x) ** 2
    return np.outer(d, x), d, w.T @ d


def test_autodiff_reverse_and_forward():
    dw, db = np.zeros_like(W), np.zeros_like(B)
    value = gradjit.autodiff(_layer, "reverse", Duplicated, Const)((W, B), (dw, db), X, 1.0)
    gw, gb, _ = _layer_grads(W, B, X)
    assert value == pytest.approx(_layer((W, B), X), rel=1e-15)
    np.testing.assert_allclose(dw, gw, rtol=1e-14)
    np.testing.assert_allclose(db, gb, rtol=1e-14)
    tw, tb = RNG.normal(size=W.shape), RNG.normal(size=B.shape)
    _, t = gradjit.autodiff(_layer, "forward", Dual, Const)((W, B), (tw, tb), X)
    assert t == pytest.approx(float(np.sum(gw * tw) + gb @ tb), rel=1e-13)


def test_strided_member_shadow_and_njit_caller():
    wf = np.asfortranarray(W)
    dw, db = np.zeros_like(W), np.zeros_like(B)        # C-ordered shadow of an F member
    gradjit.autodiff(_layer, "reverse", Duplicated, Const)((wf, B), (dw, db), X, 1.0)
    gw, gb, _ = _layer_grads(W, B, X)
    np.testing.assert_allclose(dw, gw, rtol=1e-14)
    df = gradjit.autodiff(_layer, "reverse", Duplicated, Const)

    @njit
    def batch(w, b, xs, out):
        dw, db = np.zeros_like(w), np.zeros_like(b)
        for k in range(xs.shape[0]):
            df((w, b), (dw, db), xs[k], 1.0)
        out[:] = db
        return out

    xs = RNG.normal(size=(5, 4))
    got = batch(W, B, xs, np.empty(3))
    np.testing.assert_allclose(got, sum(_layer_grads(W, B, x)[1] for x in xs), rtol=1e-13)


def test_grad_returns_a_tuple_of_arrays():
    (gw, gb), gx = gradjit.grad(_layer, argnums=(0, 1))((W, B), X)
    np.testing.assert_allclose(gw, fd_grad(lambda w: _layer((w, B), X), (W,), 0), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gb, fd_grad(lambda b: _layer((W, b), X), (B,), 0), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gx, _layer_grads(W, B, X)[2], rtol=1e-14)
    value, (gw2, gb2) = gradjit.value_and_grad(_layer)((W, B), X)
    assert value == pytest.approx(_layer((W, B), X), rel=1e-15)
    np.testing.assert_array_equal(gw2, gw)
    out, pullback = gradjit.vjp(_layer)((W, B), X)
    pw, pb = pullback(2.0)
    np.testing.assert_allclose(pb, 2 * gb, rtol=1e-14)


def test_jvp_takes_a_tuple_of_tangents():
    tw, tb = RNG.normal(size=W.shape), RNG.normal(size=B.shape)
    value, t = gradjit.jvp(_layer)(((W, B), X), ((tw, tb), None))
    gw, gb, _ = _layer_grads(W, B, X)
    assert value == pytest.approx(_layer((W, B), X), rel=1e-15)
    assert t == pytest.approx(float(np.sum(gw * tw) + gb @ tb), rel=1e-13)
    with pytest.raises(ValueError, match=r"tangent 0\[1\] has shape \(4,\)"):
        gradjit.jvp(_layer)(((W, B), X), ((tw, np.ones(4)), None))
    with pytest.raises(ValueError, match="tangent 0 must be a tuple of 2 arrays"):
        gradjit.jvp(_layer)(((W, B), X), (tw, None))


@njit
def _pair(p):
    return np.sum(p[0] * p[1])


def test_members_sharing_memory_are_reported():
    x = np.arange(4.0)
    with pytest.raises(ValueError, match="array 1 of the tuple shares memory"):
        gradjit.grad(_pair)((x, x))
    with pytest.raises(ValueError, match="array 1 of the tuple shares memory"):
        gradjit.autodiff(_pair, "reverse", Duplicated)((x, x[::-1]), (np.zeros(4), np.zeros(4)), 1.0)
    y = x + 1
    np.testing.assert_allclose(gradjit.grad(_pair)((x, y))[0], y, rtol=1e-15)


def test_shadow_of_another_kind_and_vector_mode():
    with pytest.raises(gradjit.ActivityError, match="shadow tuple of the same length"):
        gradjit.autodiff(_layer, "reverse", Duplicated, Const)((W, B), (np.zeros_like(W),), X, 1.0)
    with pytest.raises(ValueError, match=r"'p\[1\]': shadow shape \(4,\)"):
        gradjit.autodiff(_layer, "reverse", Duplicated, Const)((W, B), (np.zeros_like(W), np.zeros(4)),
                                                               X, 1.0)
    with pytest.raises(gradjit.ActivityError, match="cannot be Duplicated in vector mode"):
        gradjit.autodiff(_layer, "reverse", Duplicated, Const, width=2)(
            (W, B), (np.zeros((2, 3, 4)), np.zeros((2, 3))), X)


def test_njit_caller_with_a_wrong_member_shadow_raises():
    df = gradjit.autodiff(_layer, "reverse", Duplicated, Const)

    @njit
    def call(w, b, x, n):
        dw, db = np.zeros_like(w), np.zeros(n)
        df((w, b), (dw, db), x, 1.0)
        return db

    with pytest.raises(ValueError, match=r"'p\[1\]': the shadow's shape differs"):
        call(W, B, X, 2)
    np.testing.assert_allclose(call(W, B, X, 3), _layer_grads(W, B, X)[1], rtol=1e-14)
