"""Arguments of types gradjit does not model (strings, typed lists and dicts,
jitclass instances, @njit functions, complex numbers) held constant: passed
through opaquely (TypeTree leaves from Numba's flattened parameters); values of
the differentiated arguments stored into them are reported, never dropped."""
import numba
import numpy as np
import pytest
from numba import njit, typed
from numba.experimental import jitclass

import gradjit

X = np.array([0.5, -1.5, 2.0])


@njit
def _by_mode(x, mode):
    if mode == "sum":
        return np.sum(x * x)
    return np.max(x * x)


def test_string_flag():
    np.testing.assert_allclose(gradjit.grad(_by_mode)(X, "sum"), 2 * X, rtol=1e-15)
    np.testing.assert_allclose(gradjit.grad(_by_mode)(X, "max"), [0.0, 0.0, 4.0], rtol=1e-15)
    _, t = gradjit.jvp(_by_mode)((X, "sum"), (np.ones(3), None))
    assert t == pytest.approx(float(np.sum(2 * X)), rel=1e-15)


@njit
def _weighted(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i] * w[i]
    return s


def test_typed_list_and_dict_read_only():
    w = typed.List([1.0, 2.0, 3.0])
    np.testing.assert_allclose(gradjit.grad(_weighted)(X, w), 2 * X * np.array(w), rtol=1e-15)

    @njit
    def scaled(x, d):
        return np.sum(x * x) * d["a"]

    d = typed.Dict.empty(numba.types.unicode_type, numba.float64)
    d["a"] = 2.5
    np.testing.assert_allclose(gradjit.grad(scaled)(X, d), 5.0 * X, rtol=1e-15)


@njit
def _rhs(y):
    return -2.0 * y * y


@njit
def _with_callback(x, f):
    s = 0.0
    for i in range(x.shape[0]):
        s += f(x[i])
    return s


def test_function_argument():
    np.testing.assert_allclose(gradjit.grad(_with_callback)(X, _rhs), -4.0 * X, rtol=1e-15)


def test_complex_scalar():
    @njit
    def f(x, z):
        return np.sum(x * z.real) + z.imag * x[0]

    np.testing.assert_allclose(gradjit.grad(f)(X, 2.0 + 3.0j), [5.0, 2.0, 2.0], rtol=1e-15)


@jitclass([("w", numba.float64[:]), ("b", numba.float64)])
class _Linear:
    def __init__(self, w, b):
        self.w = w
        self.b = b


@njit
def _apply(x, m):
    return np.sum(x * m.w) + m.b


@njit
def _apply_storing(x, m):
    m.w[0] = 3.0 * x[0]                   # a differentiated value into the model
    return np.sum(x * m.w)


def test_jitclass_read_only_and_written():
    m = _Linear(np.array([1.0, 2.0, 3.0]), 0.5)
    np.testing.assert_allclose(gradjit.grad(_apply)(X, m), [1.0, 2.0, 3.0], rtol=1e-15)
    with pytest.raises(gradjit.UnsupportedError, match="held constant: only NumPy float arrays"):
        gradjit.grad(_apply_storing)(X, _Linear(np.array([1.0, 2.0, 3.0]), 0.5))


def test_differentiating_an_opaque_argument_is_a_type_error():
    with pytest.raises(TypeError, match="argument 1 .*cannot be differentiated"):
        gradjit.grad(_by_mode, argnums=1)(X, "sum")
    with pytest.raises(gradjit.ActivityError):
        gradjit.autodiff(_by_mode, "reverse", gradjit.Duplicated, gradjit.Duplicated)(
            X, np.zeros(3), "sum", "sum", 1.0)


@njit
def _through_buffer(x, buf):
    for i in range(x.shape[0]):
        buf[i] = np.sin(x[i])
    return np.sum(buf * buf)


def test_const_buffer_receiving_differentiated_values_warns_in_autodiff_only():
    x = np.array([0.3, 0.5, 0.9])
    df = gradjit.autodiff(_through_buffer, "reverse", gradjit.Duplicated, gradjit.Const)
    with pytest.warns(gradjit.ActivityWarning, match="argument 'buf' of _through_buffer is Const"):
        df(x, np.zeros(3), np.zeros(3), 1.0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", gradjit.ActivityWarning)
        # grad gives the buffer a scratch shadow: no warning, the right gradient
        np.testing.assert_allclose(gradjit.grad(_through_buffer)(x, np.zeros(3)), np.sin(2 * x),
                                   rtol=1e-15)
