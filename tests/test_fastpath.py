"""The fast path of reverse-mode transform calls (gradjit.api.fastpath).

After the first call of a call pattern, ``grad`` / ``value_and_grad`` / ``vjp``
reuse its decisions.  The results must be the slow path's (both call the same
compiled derivative), for every kind of argument the fast path takes, and calls
it must not take (arrays sharing memory where the derivative writes argument
memory, other layouts) must still give the slow path's results.
"""

import math

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit.api import autodiff as autodiff_mod
from gradjit.api import fastpath
from conftest import assert_close, fd_grad
from test_cov_arrays import square_into


@njit
def quad(x, w, c):
    s = 0.0
    for i in range(x.shape[0]):
        s += w[i] * x[i] * x[i] + math.sin(c * x[i])
    return s * c


@njit
def mat(a, b, k, flag):
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j] * b[j] ** k
    return s if flag else -s


@njit
def scaled_in_place(x, y):
    """Writes its argument ``y``: where x and y share memory the derivative
    variant made for aliased arguments is needed."""
    for i in range(x.shape[0]):
        y[i] = 2.0 * x[i] + y[i]
    s = 0.0
    for i in range(x.shape[0]):
        s += y[i] * x[i]
    return s


def _slow_calls(monkeypatch):
    """A list that grows by one on each slow-path derivative call."""
    calls = []
    real = autodiff_mod.Derivative.call_unchecked

    def counting(self, args):
        calls.append(1)
        return real(self, args)
    monkeypatch.setattr(autodiff_mod.Derivative, "call_unchecked", counting)
    return calls


def _same(a, b, ulps=0):
    """Equal bit for bit (types and dtypes too), or to ``ulps`` units in the last
    place (another derivative signature, e.g. for another layout, may run a
    loop's ``sin`` as glibc's vector variant, accurate to 4 ulp)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v, ulps)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=ulps * np.finfo(a.dtype).eps, atol=0)
    else:
        assert type(a) is type(b) and a == b


CASES = [
    # (function, argnums, arguments)
    (quad, 0, lambda r: (r.standard_normal(7), r.uniform(1, 2, 7), 0.7)),
    (quad, (0, 2), lambda r: (r.standard_normal(7), r.uniform(1, 2, 7), 0.7)),
    (quad, (2, 1, 0), lambda r: (r.standard_normal(7).astype(np.float32),
                                 r.uniform(1, 2, 7).astype(np.float32), np.float32(0.7))),
    (quad, -1, lambda r: (r.standard_normal(3), r.uniform(1, 2, 3), 1.3)),
    (mat, (0, 1), lambda r: (r.standard_normal((3, 4)), r.uniform(1, 2, 4), 3, True)),
    (mat, 1, lambda r: (r.standard_normal((2, 5)), r.uniform(1, 2, 5), 2, False)),
]


@pytest.mark.parametrize("fn,argnums,make", CASES)
def test_fast_calls_match_slow_calls(fn, argnums, make, rng, monkeypatch):
    args = make(rng)
    monkeypatch.setattr(fastpath, "ENABLED", False)
    want_g = gradjit.grad(fn, argnums=argnums)(*args)
    want_vg = gradjit.value_and_grad(fn, argnums=argnums)(*args)
    monkeypatch.setattr(fastpath, "ENABLED", True)
    slow = _slow_calls(monkeypatch)
    g = gradjit.grad(fn, argnums=argnums)
    vg = gradjit.value_and_grad(fn, argnums=argnums)
    for k in range(4):
        _same(g(*args), want_g)
        _same(vg(*args), want_vg)
    # the first call of each transform took the slow path, the rest the fast one
    assert len(slow) == 2


def test_fast_path_gradient_against_finite_differences(rng):
    x, w = rng.standard_normal(6), rng.uniform(1, 2, 6)
    g = gradjit.grad(quad, argnums=(0, 2))
    for _ in range(2):
        gx, gc = g(x, w, 0.9)
    assert_close(gx, fd_grad(quad, [x, w, 0.9], argnum=0))
    assert_close(gc, fd_grad(quad, [x, w, 0.9], argnum=2))
    gx[:] = 0.0                       # the gradient is the caller's own array
    assert g(x, w, 0.9)[0].any()


def test_aliased_arguments_keep_the_slow_path(rng, monkeypatch):
    x = rng.standard_normal(5)
    monkeypatch.setattr(fastpath, "ENABLED", False)
    z = x.copy()
    want = gradjit.grad(scaled_in_place, argnums=(0, 1))(z, z)
    monkeypatch.setattr(fastpath, "ENABLED", True)
    g = gradjit.grad(scaled_in_place, argnums=(0, 1))
    for _ in range(2):
        g(x.copy(), np.ones(5))
    slow = _slow_calls(monkeypatch)
    z = x.copy()
    _same(g(z, z), want)              # one array as both: the slow path's variant
    assert len(slow) == 1
    # distinct arrays again: the fast path; y = 2x + y0, s = sum(y x):
    # ds/dx = y + 2x = 4x + y0, ds/dy0 = x
    gx, gy = g(x.copy(), np.ones(5))
    assert len(slow) == 1
    assert_close(gx, 4 * x + 1, rtol=1e-12, atol=0)
    assert_close(gy, x, rtol=1e-12, atol=0)


def test_other_layouts_and_new_types_keep_working(rng, monkeypatch):
    g = gradjit.grad(quad, argnums=0)
    x, w = rng.standard_normal(8), rng.uniform(1, 2, 8)
    for _ in range(2):
        want = g(x, w, 0.5)
    slow = _slow_calls(monkeypatch)
    xs = np.zeros(16)
    xs[::2] = x
    _same(g(xs[::2], w, 0.5), want, ulps=8)   # strided: the slow path
    assert len(slow) == 1
    ro = x.copy()
    ro.flags.writeable = False        # another pattern: slow, then fast
    for _ in range(3):
        _same(g(ro, w, 0.5), want)
    assert len(slow) == 2
    assert_close(g(x, w, 1), fd_grad(quad, [x, w, 1.0], argnum=0))   # an int c


def test_errors_after_warm_up(rng):
    g = gradjit.grad(mat, argnums=0)
    a, b = rng.standard_normal((2, 3)), rng.uniform(1, 2, 3)
    for _ in range(2):
        g(a, b, 2, True)
    with pytest.raises(TypeError, match="cannot be differentiated"):
        g(np.ones((2, 3), np.int64), b, 2, True)
    with pytest.raises(TypeError, match="cannot be differentiated"):
        g(1, b, 2, True)


@njit
def sum_sq(x):
    return (x * x).sum()


@njit
def squares(x):
    return x * x


def test_jvp_return_type_follows_the_call_pattern(rng):
    """jvp keeps the function's return type per call pattern: a float32 array
    gives a float32 result, a 2-D array an array of its shape."""
    jv, ja = gradjit.jvp(sum_sq), gradjit.jvp(squares)
    for dtype in (np.float64, np.float32, np.float64, np.float32):
        for shape in ((5,), (2, 3), (5,)):
            x = rng.standard_normal(shape).astype(dtype)
            v = rng.standard_normal(shape).astype(dtype)
            tol = 1e-12 if dtype == np.float64 else 1e-5
            p, t = jv((x,), (v,))
            np.testing.assert_allclose([p, t], [(x * x).sum(), 2 * (x * v).sum()],
                                       rtol=tol, atol=tol)
            p, t = ja((x,), (v,))
            assert p.shape == t.shape == shape and t.dtype == dtype
            np.testing.assert_allclose(t, 2 * x * v, rtol=tol, atol=tol)


@pytest.mark.filterwarnings("ignore::gradjit.ActivityWarning")   # Const b, written: on purpose
def test_direct_calls_keep_their_memory_checks_after_warm_up(rng):
    """``autodiff`` objects keep per call pattern whether the derivative writes
    argument memory; later calls of the pattern still check aliasing."""
    x = rng.standard_normal(4)
    df = gradjit.autodiff(square_into, "reverse", gradjit.Duplicated, gradjit.Const,
                          ret=gradjit.Active)
    for _ in range(3):
        dx = np.zeros(4)
        df(x, dx, np.zeros(4), 1.0)
    # b is Const: its dependence on x is dropped (what the ActivityWarning says)
    assert_close(dx, x * x, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="shares memory with 'x'"):
        df(x, np.zeros(4), x, 1.0)
    # both differentiated, one array as both: the variant for aliased arguments,
    # as on a first call
    def aliased_call(d):
        a = x.copy()
        da, db = np.zeros(4), np.zeros(4)
        d(a, da, a, db, 1.0)
        return da, db
    fresh = gradjit.autodiff(scaled_in_place, "reverse", gradjit.Duplicated,
                             gradjit.Duplicated, ret=gradjit.Active)
    want = aliased_call(fresh)
    warm = gradjit.autodiff(scaled_in_place, "reverse", gradjit.Duplicated,
                            gradjit.Duplicated, checkpointing="store", ret=gradjit.Active)
    for _ in range(3):
        warm(x.copy(), np.zeros(4), np.ones(4), np.zeros(4), 1.0)
    got = aliased_call(warm)
    assert_close(got[0], want[0], rtol=1e-12, atol=0)
    assert_close(got[1], want[1], rtol=1e-12, atol=0)


def test_an_argument_named_twice_gets_two_gradient_arrays(rng):
    x, w = rng.standard_normal(5), rng.uniform(1, 2, 5)
    g = gradjit.grad(quad, argnums=(0, 0, 2))
    for _ in range(3):                # slow, then fast
        a, b, c = g(x, w, 0.4)
        assert a is not b
        np.testing.assert_array_equal(a, b)
        a[:] = 0.0
        assert b.any()


def test_argument_types_match_numba_typeof():
    """The cached array types are Numba's, for every layout, rank, dtype and
    writability (and the uncached kinds pass through)."""
    import numba
    from gradjit.api.fastpath import argument_types
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    args = [np.zeros(3), np.zeros((3, 4)), np.zeros((3, 4)).T, np.zeros((3, 4))[:, ::2],
            np.zeros((1, 4)), np.zeros(()), np.zeros(0), np.zeros(5, np.float32),
            np.zeros(4, np.int32), np.zeros(3, np.complex128), np.zeros(3, np.bool_),
            np.zeros((2, 3), order="F")[:, :1], readonly,
            np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]), 1.0, 3, np.float32(2), (1.0, 2)]
    want = tuple(numba.typeof(a) for a in args)
    assert argument_types(args) == want
    assert argument_types(args) == want  # from the cache
