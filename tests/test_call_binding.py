"""JAX-style transforms called the way the function is: keyword arguments,
parameter defaults (a None default included), and errors for calls that do not
bind.  Gradients are checked against analytic derivatives and central
differences."""
import math

import numpy as np
import pytest
from numba import njit

import gradjit
from conftest import fd_grad


@njit
def _loss(x, scale=2.0, shift=None, p=3.0):
    s = 0.0
    for i in range(x.shape[0]):
        s += scale * math.sin(x[i]) ** 2
    if shift is not None:
        s += shift * p
    return s


def _loss_grad_x(x, scale):
    return scale * 2 * np.sin(x) * np.cos(x)


X = np.linspace(-1.0, 2.0, 7)


def test_defaults_are_used():
    np.testing.assert_allclose(gradjit.grad(_loss)(X), _loss_grad_x(X, 2.0), rtol=1e-13)


@pytest.mark.parametrize("kwargs", [dict(scale=0.5), dict(shift=1.5), dict(scale=3.0, p=-1.0, shift=2.0)])
def test_keyword_arguments(kwargs):
    value, g = gradjit.value_and_grad(_loss)(X, **kwargs)
    assert value == pytest.approx(_loss(X, **kwargs), rel=1e-15)
    np.testing.assert_allclose(g, _loss_grad_x(X, kwargs.get("scale", 2.0)), rtol=1e-13)


def test_argnums_names_a_keyword_passed_parameter():
    gx, gscale, gp = gradjit.grad(_loss, argnums=(0, 1, 3))(X, scale=0.7, shift=2.0, p=0.25)
    np.testing.assert_allclose(gx, _loss_grad_x(X, 0.7), rtol=1e-13)
    assert gscale == pytest.approx(fd_grad(lambda s: _loss(X, s, 2.0, 0.25), (0.7,), 0), rel=1e-7)
    assert gp == pytest.approx(2.0, rel=1e-13)
    # a defaulted parameter can be differentiated too
    assert gradjit.grad(_loss, argnums=1)(X) == pytest.approx(float(np.sum(np.sin(X) ** 2)), rel=1e-13)


def test_negative_argnums_count_back_from_the_last_positional_argument():
    # as in JAX: -1 is the last argument passed by position, not the last parameter
    g = gradjit.grad(_loss, argnums=-1)(X, 0.7)
    assert g == pytest.approx(float(np.sum(np.sin(X) ** 2)), rel=1e-13)
    gx, gs = gradjit.value_and_grad(_loss, argnums=(-2, -1))(X, 0.7, shift=1.0)[1]
    np.testing.assert_allclose(gx, _loss_grad_x(X, 0.7), rtol=1e-13)
    assert gs == pytest.approx(g, rel=1e-13)
    np.testing.assert_allclose(gradjit.grad(_loss, argnums=-1)(X), _loss_grad_x(X, 2.0), rtol=1e-13)
    _, pullback = gradjit.vjp(_loss, argnums=-1)(X, 0.7)
    assert pullback(2.0) == pytest.approx(2 * g, rel=1e-13)
    with pytest.raises(TypeError, match="passed by position"):
        gradjit.grad(_loss, argnums=-2)(X)


def test_jvp_and_vjp_with_defaults_and_keywords():
    t = np.cos(np.arange(7.0))
    value, tangent = gradjit.jvp(_loss)((X,), (t,))
    assert value == pytest.approx(_loss(X), rel=1e-15)
    assert tangent == pytest.approx(float(_loss_grad_x(X, 2.0) @ t), rel=1e-13)
    out, pullback = gradjit.vjp(_loss)(X, scale=4.0)
    assert out == pytest.approx(_loss(X, 4.0), rel=1e-15)
    np.testing.assert_allclose(pullback(0.5), 0.5 * _loss_grad_x(X, 4.0), rtol=1e-13)


@njit
def _kwonly(x, *, scale=2.0, w=None):
    s = 0.0
    for i in range(x.shape[0]):
        v = scale * math.sin(x[i]) ** 2
        s += v if w is None else w[i] * v
    return s


@njit
def _kwonly_array(x, *, scale=2.0):
    return scale * np.sin(x) ** 2


def test_keyword_only_parameters():
    # they bind after the positional parameters, in order: argnums 1 is scale, 2 is w
    np.testing.assert_allclose(gradjit.grad(_kwonly)(X), _loss_grad_x(X, 2.0), rtol=1e-13)
    w = np.linspace(0.5, 1.5, X.size)
    value, (gx, gscale, gw) = gradjit.value_and_grad(_kwonly, argnums=(0, 1, 2))(
        X, w=w, scale=0.7)
    assert value == pytest.approx(_kwonly(X, scale=0.7, w=w), rel=1e-15)
    np.testing.assert_allclose(gx, w * _loss_grad_x(X, 0.7), rtol=1e-13)
    assert gscale == pytest.approx(fd_grad(lambda s: _kwonly(X, scale=s, w=w), (0.7,), 0),
                                   rel=1e-7)
    np.testing.assert_allclose(gw, 0.7 * np.sin(X) ** 2, rtol=1e-13)
    t = np.cos(np.arange(7.0))
    _, tangent = gradjit.jvp(_kwonly)((X,), (t,))
    assert tangent == pytest.approx(float(_loss_grad_x(X, 2.0) @ t), rel=1e-13)
    out, pullback = gradjit.vjp(_kwonly_array)(X, scale=3.0)       # array output
    np.testing.assert_allclose(out, 3.0 * np.sin(X) ** 2, rtol=1e-15)
    np.testing.assert_allclose(pullback(t), t * _loss_grad_x(X, 3.0), rtol=1e-13)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bias'"):
        gradjit.grad(_kwonly)(X, bias=1.0)
    with pytest.raises(TypeError, match="too many positional arguments"):
        gradjit.grad(_kwonly)(X, 0.7)


def test_variable_parameters_raise_type_error():
    @njit
    def h(*xs):
        return xs[0][0]

    with pytest.raises(TypeError, match=r"variable parameters \(xs\)"):
        gradjit.grad(h)(X)


def test_calls_that_do_not_bind_raise_type_error():
    g = gradjit.grad(_loss)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bias'"):
        g(X, bias=1.0)
    with pytest.raises(TypeError, match="multiple values for argument 'scale'"):
        g(X, 1.0, scale=2.0)
    with pytest.raises(TypeError, match="missing a required argument"):
        g()
    with pytest.raises(TypeError, match="too many positional arguments"):
        g(X, 1.0, None, 2.0, 5.0)


def test_fresh_transforms_reuse_the_compiled_derivative():
    @njit
    def h(x, a=1.5):
        return a * np.sum(np.cos(x) * x)

    for _ in range(3):                       # jax.grad(f)(x) written inline in a loop
        g = gradjit.grad(h)(X)
    np.testing.assert_allclose(g, 1.5 * (np.cos(X) - X * np.sin(X)), rtol=1e-13)
    d1 = gradjit.autodiff(h, "reverse", gradjit.Duplicated, gradjit.Const, ret=gradjit.Active)
    d2 = gradjit.autodiff(h, "reverse", gradjit.Duplicated, gradjit.Const, ret=gradjit.Active)
    assert d1 is d2 and len(d1.signatures) == 1     # the one grad compiled
    assert gradjit.autodiff(h, "reverse", gradjit.Duplicated, gradjit.Active) is not d1


def test_jvp_tangent_of_the_wrong_shape_raises():
    A = np.ones((3, 4))

    @njit
    def s(a, c):
        return np.sum(a * a) * c

    with pytest.raises(ValueError, match=r"tangent 0 has shape \(4,\) but its primal has shape \(3, 4\)"):
        gradjit.jvp(s)((A, 2.0), (np.ones(4), None))
    with pytest.raises(ValueError, match="tangent 1 has shape"):
        gradjit.jvp(s)((A, 2.0), (None, np.ones(2)))
    _, t = gradjit.jvp(s)((A, 2.0), (np.full((3, 4), 0.5), None))
    assert t == pytest.approx(2.0 * 2 * 0.5 * 12, rel=1e-14)
