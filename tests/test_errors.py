"""The errors table of API.md, row by row.

| activity does not fit the argument          | gradjit.ActivityError (a TypeError), names the argument |
| shadow shape or dtype differs from primal   | ValueError naming the argument and both shapes           |
| grad of a function not returning a float    | TypeError                                                |
| a construct the AD cannot differentiate     | gradjit.UnsupportedError (a NotImplementedError) naming  |
|                                             | the construct and the Python file:line                   |

Errors may be raised when ``autodiff``/``grad`` is called or when the
derivative is first called (compilation is lazy), so each ``pytest.raises``
block covers both.
"""

import ctypes
import ctypes.util
import inspect
import math
import re

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import (
    Active,
    ActiveOnly,
    Const,
    Dual,
    DualOnly,
    Duplicated,
    DuplicatedNoNeed,
)


@njit
def sum_weights(weights):
    s = 0.0
    for i in range(weights.shape[0]):
        s += weights[i] * weights[i]
    return s


@njit
def scale_sq(alpha):
    return alpha * alpha


@njit
def two_args(alpha, beta):
    return alpha * beta


@njit
def write_into(source, target):
    for i in range(source.shape[0]):
        target[i] = 2.0 * source[i]


@njit
def returns_array(vec):
    return vec * 2.0


@njit
def returns_int(vec):
    return vec.shape[0]


@njit
def returns_tuple(alpha):
    return alpha, alpha * 2.0


@njit
def int_arg(count, alpha):
    return alpha * count


def _no_ir_leak(msg):
    # "No error path leaks LLVM IR to the user by default"
    assert "!dbg" not in msg
    assert not re.search(r"\bdefine\s+(internal\s+)?\w+\s+@", msg)
    assert not re.search(r"%\.?\d+\s*=", msg)


# --------------------------------------------------------------- ActivityError
def test_activity_error_is_type_error():
    assert issubclass(gradjit.ActivityError, TypeError)
    assert issubclass(gradjit.UnsupportedError, NotImplementedError)


def test_active_on_array():
    x = np.ones(4)
    with pytest.raises(gradjit.ActivityError) as ei:
        df = gradjit.autodiff(sum_weights, "reverse", Active)
        df(x, 1.0)
    assert "weights" in str(ei.value)
    _no_ir_leak(str(ei.value))


def test_active_on_int():
    with pytest.raises(gradjit.ActivityError) as ei:
        df = gradjit.autodiff(int_arg, "reverse", Active, Active)
        df(3, 1.5, 1.0)
    assert "count" in str(ei.value)


@pytest.mark.parametrize("act", [Dual, DualOnly, Dual()], ids=["Dual", "DualOnly", "Dual()"])
def test_forward_activity_in_reverse_mode(act):
    with pytest.raises(gradjit.ActivityError) as ei:
        df = gradjit.autodiff(sum_weights, "reverse", act)
        df(np.ones(3), np.zeros(3), 1.0)
    assert "weights" in str(ei.value)


@pytest.mark.parametrize(
    "act", [Active, Duplicated, DuplicatedNoNeed], ids=["Active", "Duplicated", "DuplicatedNoNeed"]
)
def test_reverse_activity_in_forward_mode(act):
    with pytest.raises(gradjit.ActivityError):
        df = gradjit.autodiff(scale_sq if act is Active else sum_weights, "forward", act)
        if act is Active:
            df(1.5)
        else:
            df(np.ones(3), np.zeros(3))


@pytest.mark.parametrize("acts", [(Active,), (Active, Active, Active), ()], ids=["1", "3", "0"])
def test_wrong_activity_count(acts):
    with pytest.raises(gradjit.ActivityError):
        df = gradjit.autodiff(two_args, "reverse", *acts)
        df(*([1.0] * len(acts)), 1.0)


@pytest.mark.parametrize(
    "mode,ret", [("reverse", Dual), ("reverse", DualOnly), ("forward", Active), ("forward", ActiveOnly)]
)
def test_return_activity_wrong_mode(mode, ret):
    arg = Active if mode == "reverse" else Dual
    with pytest.raises(TypeError):
        df = gradjit.autodiff(scale_sq, mode, arg, ret=ret)
        df(1.5, 1.0)  # (x, seed) in reverse, (x, dx) in forward


def test_grad_activity_error_not_raised_for_const_int():
    # an int argument held constant is fine
    g = gradjit.grad(int_arg, argnums=1)(3, 1.5)
    assert g == pytest.approx(3.0)


# --------------------------------------------------------------- ValueError
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_shadow_wrong_shape(mode):
    x = np.ones(7)
    dx = np.zeros(6)
    act = Duplicated if mode == "reverse" else Dual
    with pytest.raises(ValueError) as ei:
        df = gradjit.autodiff(sum_weights, mode, act)
        if mode == "reverse":
            df(x, dx, 1.0)
        else:
            df(x, dx)
    msg = str(ei.value)
    assert not isinstance(ei.value, TypeError)
    assert "weights" in msg
    assert "7" in msg and "6" in msg
    _no_ir_leak(msg)


def test_shadow_wrong_shape_2d_transposed():
    x = np.ones((3, 5))
    dx = np.zeros((5, 3))

    @njit
    def f2(matrix):
        return np.sum(matrix * matrix)

    with pytest.raises(ValueError) as ei:
        gradjit.autodiff(f2, "reverse", Duplicated)(x, dx, 1.0)
    msg = str(ei.value)
    assert "matrix" in msg
    assert "3" in msg and "5" in msg


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_shadow_wrong_dtype(mode):
    x = np.ones(4)
    dx = np.zeros(4, dtype=np.float32)
    act = Duplicated if mode == "reverse" else Dual
    with pytest.raises(ValueError) as ei:
        df = gradjit.autodiff(sum_weights, mode, act)
        if mode == "reverse":
            df(x, dx, 1.0)
        else:
            df(x, dx)
    assert "weights" in str(ei.value)


def test_shadow_wrong_shape_second_argument():
    src = np.ones(5)
    with pytest.raises(ValueError) as ei:
        gradjit.autodiff(write_into, "reverse", Duplicated, Duplicated)(
            src, np.zeros(5), np.zeros(5), np.zeros(4)
        )
    msg = str(ei.value)
    assert "target" in msg


def test_jvp_tangent_wrong_shape():
    with pytest.raises(ValueError):
        gradjit.jvp(sum_weights)((np.ones(4),), (np.ones(3),))


# ------------------------------------- ValueError: shadows passed from @njit code
# From Python, shadows laid out differently from their primal are copied; inside
# @njit code (``df.jit``) they cannot be, and the derivative applies the primal's
# offsets to the shadow's data pointer, so the entry checks the layout and raises.


@njit
def weighted_sq(m):
    s = 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            s += (i + 1.0) * m[i, j] * m[i, j]
    return s


def _weighted_sq_grad(m):
    return 2.0 * (np.arange(m.shape[0]) + 1.0)[:, None] * m


def test_njit_shadow_layout_reverse():
    df = gradjit.autodiff(weighted_sq, "reverse", Duplicated).jit

    @njit
    def call(m, dm):
        return df(m, dm, 1.0)

    m = np.arange(12.0).reshape(3, 4) / 7.0
    dm = np.zeros_like(m)
    call(m, dm)
    np.testing.assert_allclose(dm, _weighted_sq_grad(m), rtol=1e-13)
    with pytest.raises(ValueError, match="'m'.*laid out like its primal"):
        call(m, np.zeros((4, 3)).T)                 # right shape, Fortran strides
    with pytest.raises(ValueError, match=r"'m'.*axis 0 of the shadow has 4, the primal's has 3"):
        call(m, np.zeros((4, 4)))
    # an F-ordered primal with an F-ordered shadow is fine
    mf = np.asfortranarray(m)
    dmf = np.zeros_like(mf)
    call(mf, dmf)
    np.testing.assert_allclose(dmf, _weighted_sq_grad(m), rtol=1e-13)


def test_njit_derivative_errors_caught():
    """A derivative's error inside @njit code is a raise there (caught by try /
    except; the leak check of test_cov_arrays covers the views passed in loops)."""
    df = gradjit.autodiff(weighted_sq, "reverse", Duplicated)

    @njit
    def guarded(m, dm):
        try:
            return df(m, dm, 1.0)
        except Exception:             # Numba catches Exception (or all) only
            return -1.0

    m = np.arange(12.0).reshape(3, 4) / 7.0
    assert guarded(m, np.zeros((4, 3)).T) == -1.0
    dm = np.zeros_like(m)
    assert guarded(m, dm) == pytest.approx(weighted_sq(m), rel=1e-14)
    np.testing.assert_allclose(dm, _weighted_sq_grad(m), rtol=1e-13)


def test_njit_shadow_layout_vector_forward():
    n = 3
    fv = gradjit.autodiff(weighted_sq, "forward", Dual, width=n)
    jit = fv.jit

    @njit
    def call(m, dm, dret):
        return jit(m, dm, dret)

    rng = np.random.default_rng(0)
    m = rng.random((3, 4))
    tangents = rng.random((n, 3, 4))
    want = np.einsum("ij,kij->k", _weighted_sq_grad(m), tangents)
    dret = np.zeros(n)
    call(m, tangents.copy(), dret)
    np.testing.assert_allclose(dret, want, rtol=1e-13)
    lane_minor = np.moveaxis(np.ascontiguousarray(np.moveaxis(tangents, 0, -1)), -1, 0)
    np.testing.assert_allclose(fv(m, lane_minor)[1], want, rtol=1e-13)   # Python: in place
    with pytest.raises(ValueError, match="laid out like its primal"):
        call(m, lane_minor, dret)                   # compiled: refused, not misread
    with pytest.raises(ValueError, match="axis 0 of the shadow has 2, not 3"):
        call(m, tangents[:2].copy(), dret)
    with pytest.raises(ValueError, match=r"tangents of the return: axis 0 has 2 entries, not 3"):
        call(m, tangents.copy(), np.zeros(2))


def test_scalar_tangents_strided_and_from_njit():
    n = 3
    fv = gradjit.autodiff(two_args, "forward", Dual, Const, width=n)
    da = np.arange(2.0 * n)[::2]                   # strided tangents of a scalar
    out, dret = fv(1.5, da, 4.0)
    np.testing.assert_allclose(dret, 4.0 * da, rtol=1e-15)
    jit = fv.jit

    @njit
    def call(a, da, b, dret):
        return jit(a, da, b, dret)

    with pytest.raises(ValueError, match="'alpha'.*contiguous array of 3"):
        call(1.5, da, 4.0, np.zeros(n))
    with pytest.raises(ValueError, match="'alpha'.*contiguous array of 3"):
        call(1.5, np.ones(2), 4.0, np.zeros(n))


# --------------------------------------------------------------- TypeError
@pytest.mark.parametrize("fn", [returns_array, returns_int], ids=["array", "int"])
def test_grad_of_non_scalar_function(fn):
    with pytest.raises(TypeError):
        gradjit.grad(fn)(np.ones(3))


def test_grad_of_tuple_returning_function():
    with pytest.raises(TypeError):
        gradjit.grad(returns_tuple)(1.5)


def test_value_and_grad_of_array_function():
    with pytest.raises(TypeError):
        gradjit.value_and_grad(returns_array)(np.ones(3))


# --------------------------------------------------------------- UnsupportedError
# A call to an opaque external function through a ctypes function pointer: the
# AD has no derivative rule for an unknown address, and an active float flows
# into it. This is clearly not differentiable by the engine.
_libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
_ext_cos = _libm.cos
_ext_cos.restype = ctypes.c_double
_ext_cos.argtypes = [ctypes.c_double]


@njit
def calls_external(x):
    y = x * 2.0
    z = _ext_cos(y)  # UNSUPPORTED: opaque external call on an active value
    return z * x


def _line_of(fn, marker):
    lines, start = inspect.getsourcelines(fn.py_func)
    for k, line in enumerate(lines):
        if marker in line:
            return start + k
    raise AssertionError(marker)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_unsupported_external_call(mode):
    assert calls_external(0.3) == pytest.approx(math.cos(0.6) * 0.3)  # primal works
    with pytest.raises(gradjit.UnsupportedError) as ei:
        if mode == "reverse":
            gradjit.grad(calls_external)(0.3)
        else:
            gradjit.jvp(calls_external)((0.3,), (1.0,))
    msg = str(ei.value)
    assert isinstance(ei.value, NotImplementedError)
    assert "test_errors.py" in msg, msg
    line = _line_of(calls_external, "UNSUPPORTED")
    assert f"test_errors.py:{line}" in msg, msg
    assert "indirect call (a ctypes" in msg, msg
    _no_ir_leak(msg)


def test_unsupported_error_via_autodiff():
    with pytest.raises(gradjit.UnsupportedError) as ei:
        gradjit.autodiff(calls_external, "reverse", Active)(0.3, 1.0)
    assert "test_errors.py" in str(ei.value)


@njit
def external_on_constant(x, c):
    # the external call only sees a constant: nothing to differentiate there
    return x * _ext_cos(c)


def test_external_call_on_inactive_value_is_fine():
    g = gradjit.grad(external_on_constant, argnums=0)(0.7, 0.4)
    assert g == pytest.approx(math.cos(0.4), rel=1e-12)


@njit
def prints_active(x, a, n):
    print(n)  # an int: not differentiated, fine
    y = x * 2.0
    print(y)  # PRINT: boxes an active float into a Python object
    return y * np.sum(a)


@njit
def prints_active_array(a):
    print(a)  # PRINT: boxes an active array
    return np.sum(a)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_print_of_active_value_is_named(mode):
    a = np.ones(2)
    for fn, args, tangents in [(prints_active, (0.5, a, 3), (1.0, None, None)),
                               (prints_active_array, (a,), (np.ones(2),))]:
        with pytest.raises(gradjit.UnsupportedError) as ei:
            if mode == "reverse":
                gradjit.grad(fn)(*args)
            else:
                gradjit.jvp(fn)(args, tangents)
        msg = str(ei.value)
        assert "print()" in msg, msg
        assert f"test_errors.py:{_line_of(fn, 'PRINT')}" in msg, msg
        _no_ir_leak(msg)


@njit
def bitcast_roundtrip(x):
    # float -> int64 bits -> float: an identity through integer memory
    a = np.empty(1)
    a[0] = x
    bits = a.view(np.int64)
    back = bits.view(np.float64)
    return back[0] * x


def test_bitcast_roundtrip_supported_or_reported():
    # Either differentiated correctly (d/dx x^2 = 2x) or refused with
    # UnsupportedError -- never a silently wrong gradient.
    try:
        g = gradjit.grad(bitcast_roundtrip)(1.5)
    except gradjit.UnsupportedError as e:
        assert "test_errors.py" in str(e)
    else:
        assert g == pytest.approx(3.0, rel=1e-12)


@njit
def _pick_array(x, c, flag):
    z = x if flag > 0 else c       # MIXED: a Const array may stand in for x
    return np.sum(z * z) + np.sum(x)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_array_chosen_between_active_and_const_is_reported(mode):
    """With autodiff's activities as given, the Const array has no shadow: its
    derivative would be read from and written into the array itself, so the merge
    is reported (and ``c`` left untouched)."""
    x, c = np.arange(3.0), np.full(3, 5.0)
    with pytest.raises(gradjit.UnsupportedError, match="chosen at run time") as ei:
        if mode == "reverse":
            df = gradjit.autodiff(_pick_array, "reverse", Duplicated, Const, Const)
            df(x, np.zeros(3), c, -1, 1.0)
        else:
            df = gradjit.autodiff(_pick_array, "forward", gradjit.Dual, Const, Const)
            df(x, np.ones(3), c, -1)
    assert f"test_errors.py:{_line_of(_pick_array, 'MIXED')}" in str(ei.value)
    assert ei.value.kind == "mixed_merge"
    np.testing.assert_array_equal(c, np.full(3, 5.0))
    _no_ir_leak(str(ei.value))


@pytest.mark.parametrize("flag", [1, -1])
def test_transforms_give_the_const_array_of_a_run_time_choice_a_scratch_shadow(flag):
    """grad / jvp hold ``c`` constant with a scratch shadow: d/dx is 2x + 1 when
    ``x`` is picked, 1 when ``c`` is; ``c`` is left untouched."""
    x, c = np.arange(3.0), np.full(3, 5.0)
    want = (2 * x + 1) if flag > 0 else np.ones(3)
    np.testing.assert_allclose(gradjit.grad(_pick_array)(x, c, flag), want, rtol=1e-15)
    t = np.array([0.5, -1.0, 2.0])
    _, jv = gradjit.jvp(_pick_array)((x, c, flag), (t, None, None))
    assert jv == pytest.approx(float(want @ t), rel=1e-15)
    np.testing.assert_array_equal(c, np.full(3, 5.0))


@njit
def dot_scaled(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i] * a) * x[i]
    return s


def _fd_scalar(f, a, h=1e-6):
    return (f(a + h) - f(a - h)) / (2 * h)


def test_missing_shadow_is_an_activity_error():
    x = np.linspace(0.1, 1.0, 4)
    df = gradjit.autodiff(dot_scaled, "reverse", Duplicated, Active)
    with pytest.raises(gradjit.ActivityError, match="argument 'x'.*is a shadow missing"):
        df(x, 1.4, 1.0)                 # dx forgotten


def test_vector_derivative_from_njit_names_its_trailing_arrays():
    dv = gradjit.autodiff(dot_scaled, "reverse", Duplicated, Active, width=3)

    @njit
    def use(x, a):
        return dv(x, np.zeros((3, x.shape[0])), a, np.ones(3))     # gradient array missing

    with pytest.raises(gradjit.ActivityError, match=r"output array of shape \(1, 3\)"):
        use(np.linspace(0.1, 1.0, 4), 1.4)

    @njit
    def use_right(x, a, dx, g):
        return dv(x, dx, a, np.array([1.0, 2.0, 3.0]), g)

    x, dx, g = np.linspace(0.1, 1.0, 4), np.zeros((3, 4)), np.zeros((1, 3))
    use_right(x, 1.4, dx, g)
    want = _fd_scalar(lambda a: dot_scaled(x, a), 1.4)
    np.testing.assert_allclose(g[0], [want, 2 * want, 3 * want], rtol=1e-6)


# --- the arrays after the activities' arguments of a width-N call from @njit code


@njit
def _quad3(x, a, b):
    s = x[0] - x[0]                 # of x's dtype: a float32 return for float32 inputs
    for i in range(x.shape[0]):
        s += a * x[i] * x[i] + b * x[i]
    return s


def test_njit_vector_reverse_trailing_arrays_checked():
    """Seeds (N,) and gradients (rows, N), float64: a G with too few rows, float32
    arrays and a scalar seed are refused (they were read and written past their
    end, or made an invalid module)."""
    n = 3
    rv = gradjit.autodiff(_quad3, "reverse", Duplicated, Active, Active, width=n)

    @njit
    def call(x, dx, a, b, seeds, g):
        return rv(x, dx, a, b, seeds, g)

    x = np.arange(1.0, 5.0)
    seeds = np.array([1.0, 2.0, 3.0])
    g = np.zeros((2, n))
    dx = np.zeros((n, 4))
    call(x, dx, 0.5, 2.0, seeds, g)
    # d/da = sum x^2 = 30, d/db = sum x = 10, per lane times its seed
    np.testing.assert_allclose(g, [30.0 * seeds, 10.0 * seeds], rtol=1e-14)
    np.testing.assert_allclose(dx, seeds[:, None] * (2 * 0.5 * x + 2.0), rtol=1e-14)
    with pytest.raises(ValueError, match=r"gradients of the Active arguments: axis 0 has 1"):
        call(x, np.zeros((n, 4)), 0.5, 2.0, seeds, np.zeros((1, n)))
    with pytest.raises(gradjit.ActivityError, match="the seeds: .*float64 array of shape \\(3,\\)"):
        call(x, np.zeros((n, 4)), 0.5, 2.0, seeds.astype(np.float32), g)
    with pytest.raises(gradjit.ActivityError, match="the seeds"):
        call(x, np.zeros((n, 4)), 0.5, 2.0, 1.0, g)
    with pytest.raises(gradjit.ActivityError, match="gradients of the Active arguments.*float64"):
        call(x, np.zeros((n, 4)), 0.5, 2.0, seeds, np.zeros((2, n), np.float32))


def test_njit_vector_forward_return_tangents_dtype():
    """The return's tangents have the return's dtype (float32 for a float32
    function); any other dtype is refused instead of written with the wrong width."""
    n = 3
    fv = gradjit.autodiff(_quad3, "forward", Dual, Dual, Dual, width=n)

    @njit
    def call(x, dx, a, da, b, db, dret):
        return fv(x, dx, a, da, b, db, dret)

    for dt in (np.float64, np.float32):
        x = np.arange(1.0, 5.0).astype(dt)
        dx = np.ones((n, 4), dt)
        a, b = dt(0.5), dt(2.0)
        want = fv(x, dx.copy(), a, np.zeros(n, dt), b, np.zeros(n, dt))[1]
        dret = np.zeros(n, dt)
        call(x, dx, a, np.zeros(n, dt), b, np.zeros(n, dt), dret)
        np.testing.assert_allclose(dret, want, rtol=1e-6)
        np.testing.assert_allclose(dret, np.full(n, np.sum(2 * 0.5 * x + 2.0)), rtol=1e-6)
        other = np.float32 if dt == np.float64 else np.float64
        with pytest.raises(gradjit.ActivityError, match="tangents of the return"):
            call(x, dx, a, np.zeros(n, dt), b, np.zeros(n, dt), np.zeros(n, other))
    with pytest.raises(ValueError, match="'a': in vector mode .* 1-D float64 array of its 3"):
        call(np.ones(4), np.ones((n, 4)), 0.5, 0.0, 2.0, np.zeros(n), np.zeros(n))


def test_read_only_shadow_refused_in_reverse_mode():
    df = gradjit.autodiff(weighted_sq, "reverse", Duplicated)
    m = np.ones((2, 3))
    dm = np.zeros((2, 3))
    dm.flags.writeable = False
    with pytest.raises(ValueError, match="'m'.*read-only"):
        df(m, dm, 1.0)

    @njit
    def call(m, dm):
        return df(m, dm, 1.0)

    with pytest.raises(ValueError, match="'m'.*read-only"):
        call(m, dm)


@njit
def _first_of_pair(tp):
    return tp[0][1:]


@njit
def _pair_dot(tp):
    return np.sum(tp[0] * tp[1])


def test_tuple_for_dual_in_vector_mode_is_an_activity_error():
    """A tuple of arrays given to Dual: differentiated at width 1 (members must not
    share memory), an ActivityError naming the argument in vector mode."""
    x, t = np.arange(9.0), np.ones(9)
    with pytest.raises(ValueError, match=r"'tp': array 1 of the tuple shares memory"):
        gradjit.autodiff(_pair_dot, "forward", Dual)((x, x), (t, t))
    y = x + 1.0
    out, dout = gradjit.autodiff(_pair_dot, "forward", Dual)((x, y), (t, 2 * t))
    assert out == float(x @ y) and dout == pytest.approx(float(t @ y + x @ (2 * t)), rel=1e-15)
    shadow = (np.stack([t] * 3), np.stack([t] * 3))
    with pytest.raises(gradjit.ActivityError, match="'tp': a tuple of arrays cannot be Dual in vector"):
        gradjit.autodiff(_first_of_pair, "forward", Dual, width=3)((x, y), shadow)


@njit
def _pick_and_fill(x, c, t, flag):
    a = x if flag else c
    t[0][0] = x[0] * 2.0                  # a differentiated value into a Const tuple
    return a[0] * x[1] + t[0][0] * x[0]


def test_run_time_choice_with_a_written_const_tuple_raises():
    with pytest.raises(ValueError, match="argument 2 is a tuple holding an array"):
        gradjit.grad(_pick_and_fill)(np.array([1.5, 2.0]), np.array([3.0, 4.0]), (np.zeros(1),), True)


@njit
def _fill_both(x, buf, t):
    buf[0] = x[1] * 1.0
    t[0][0] = x[0] * 2.0
    return t[0][0] * x[0] + buf[0] * x[1]


def test_scratch_shadow_decision_follows_tuple_contents():
    """The decision is cached per layout: a tuple's members are part of it (an int
    array in the tuple first, which truncates 2 x0 = 3: d/dx = (3, 2 x1); a float
    array, written, next)."""
    g = gradjit.grad(_fill_both)
    x = np.array([1.5, 2.0])
    np.testing.assert_allclose(g(x, np.zeros(1), (np.zeros(1, np.int64),)), [3.0, 4.0], rtol=1e-15)
    with pytest.raises(ValueError, match="argument 2 is a tuple holding an array"):
        g(x, np.zeros(1), (np.zeros(1),))


def test_activity_warning_points_at_the_caller():
    df = gradjit.autodiff(_fill_both, "reverse", Duplicated, Const, Const, ret=Active)
    with pytest.warns(gradjit.ActivityWarning) as rec:
        df(np.array([1.5, 2.0]), np.zeros(2), np.zeros(1), (np.zeros(1, np.int64),), 1.0)
    assert rec[0].filename == __file__


def test_unsupported_error_pickles_with_its_fields():
    """Errors cross process boundaries (multiprocessing, pytest-xdist) whole."""
    import pickle
    e = gradjit.UnsupportedError("a construct", "f.py:3", "call void @g()", "fn",
                                 kind="mixed_merge")
    back = pickle.loads(pickle.dumps(e))
    assert (back.construct, back.location, back.instruction, back.function, back.kind) == \
        ("a construct", "f.py:3", "call void @g()", "fn", "mixed_merge")
    assert str(back) == str(e)
