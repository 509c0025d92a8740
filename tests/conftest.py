"""Shared helpers for the gradjit test suite.

Everything here is independent of gradjit's own output: reference derivatives
come from central finite differences (``fd_*``) evaluated in float64, from
analytic formulas written in the tests, or from the other AD mode.

Compilation is the expensive part (numba + AD, ~0.3-1 s per distinct
function/signature/activity pattern), so the differentiated callables are
created once through the ``get_*`` caches below and shared by every
parametrization that needs the same one.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


DTYPES = [np.float64, np.float32]
MODES = ["reverse", "forward"]
DTYPE_IDS = {np.float64: "f64", np.float32: "f32"}


# --------------------------------------------------------------------------
# argument classification and casting
# --------------------------------------------------------------------------


def is_float_scalar(a):
    return isinstance(a, (float, np.floating)) and not isinstance(a, bool)


def is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def is_active_arg(a):
    return is_float_scalar(a) or is_float_array(a)


def scalar(v, dtype):
    """A float scalar of `dtype` as numba would see it (np.float32 or float)."""
    if np.dtype(dtype) == np.float32:
        return np.float32(v)
    return float(v)


def as64(a):
    """float64 copy of a float argument; other arguments unchanged."""
    if is_float_array(a):
        return np.array(a, dtype=np.float64)
    if is_float_scalar(a):
        return float(a)
    return a


def copy_arg(a):
    return a.copy() if isinstance(a, np.ndarray) else a


def copy_args(args):
    return [copy_arg(a) for a in args]


def zeros_like_arg(a):
    """A zero shadow/tangent with the same shape and dtype (scalar or array)."""
    if is_float_array(a):
        return np.zeros_like(a)
    if isinstance(a, np.floating):
        return type(a)(0.0)
    return 0.0


def dtype_of(args):
    """float32 if any float argument is float32, else float64."""
    for a in args:
        if is_float_array(a) and a.dtype == np.float32:
            return np.float32
        if isinstance(a, np.float32):
            return np.float32
    return np.float64


def make_array(rng, shape, layout="C", dtype=np.float64, low=-1.0, high=1.0):
    """Random array with the given memory layout.

    layout: "C" (C-contiguous), "F" (Fortran-contiguous) or "A" (a
    non-contiguous strided view into a larger buffer).
    """
    shape = tuple(shape)
    if layout == "C":
        a = rng.uniform(low, high, size=shape).astype(dtype)
        assert a.flags.c_contiguous
        return a
    if layout == "F":
        a = np.asfortranarray(rng.uniform(low, high, size=shape).astype(dtype))
        if len(shape) > 1:
            assert a.flags.f_contiguous and not a.flags.c_contiguous
        return a
    if layout == "A":
        if len(shape) == 1:
            base = rng.uniform(low, high, size=(2 * shape[0] + 1,)).astype(dtype)
            a = base[1::2]
        elif len(shape) == 2:
            base = rng.uniform(low, high, size=(shape[0], shape[1] + 1)).astype(dtype)
            a = base[:, 1:]
        else:
            big = (shape[0], 2 * shape[1]) + shape[2:]
            base = rng.uniform(low, high, size=big).astype(dtype)
            a = base[:, ::2]
        assert a.shape == shape
        assert not a.flags.c_contiguous and not a.flags.f_contiguous
        return a
    raise ValueError(layout)


# --------------------------------------------------------------------------
# finite differences (always in float64)
# --------------------------------------------------------------------------


def _step(x, eps):
    return eps * max(1.0, abs(float(x)))


def _eval64(f, args64):
    """Evaluate f on fresh copies (f may mutate its array arguments)."""
    out = f(*copy_args(args64))
    return np.array(out, dtype=np.float64) if isinstance(out, np.ndarray) else float(out)


def fd_grad(f, args, argnum=0, eps=1e-6):
    """Central finite-difference gradient of scalar-valued ``f`` wrt ``args[argnum]``.

    All float arguments are cast to float64 first (for float32 inputs this is
    a float64 reference evaluation of the same function). ``f`` may be a numba
    dispatcher or a plain Python callable. Returns a float for a scalar
    argument and a float64 ndarray of the argument's shape for an array.
    """
    args64 = [as64(a) for a in args]
    x = args64[argnum]

    if is_float_scalar(x):
        h = _step(x, eps)
        lo = list(args64)
        hi = list(args64)
        lo[argnum] = x - h
        hi[argnum] = x + h
        return (_eval64(f, hi) - _eval64(f, lo)) / (2.0 * h)

    assert is_float_array(x), "fd_grad: argument must be a float scalar or array"
    g = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        h = _step(x[idx], eps)
        xp = x.copy()
        xm = x.copy()
        xp[idx] += h
        xm[idx] -= h
        hi = list(args64)
        lo = list(args64)
        hi[argnum] = xp
        lo[argnum] = xm
        g[idx] = (_eval64(f, hi) - _eval64(f, lo)) / (2.0 * h)
    return g


def fd_jvp(f, args, tangents, eps=1e-6):
    """Central finite-difference directional derivative of ``f`` (scalar or
    array valued) along ``tangents`` (one per argument, None = constant)."""
    args64 = [as64(a) for a in args]
    scale = 1.0
    for a, t in zip(args64, tangents):
        if t is not None:
            scale = max(scale, float(np.max(np.abs(a))) if np.size(a) else 1.0)
    h = eps * scale
    hi, lo = [], []
    for a, t in zip(args64, tangents):
        if t is None:
            hi.append(a)
            lo.append(a)
        else:
            t64 = np.asarray(t, dtype=np.float64) if is_float_array(a) else float(t)
            hi.append(a + h * t64)
            lo.append(a - h * t64)
    return (_eval64(f, hi) - _eval64(f, lo)) / (2.0 * h)


def fd_vjp(f, args, argnum, cotangent, eps=1e-6):
    """Finite-difference vector-Jacobian product for an array-valued ``f``:
    the gradient of ``sum(cotangent * f(args))`` wrt ``args[argnum]``."""
    cot = np.asarray(cotangent, dtype=np.float64)

    def phi(*a):
        return float(np.sum(cot * np.asarray(f(*a), dtype=np.float64)))

    return fd_grad(phi, args, argnum, eps)


def state_fn(fn, out_seeds=None, ret_seed=0.0):
    """Scalar function of the *initial* arguments of a mutating ``fn``:

        phi(args) = ret_seed * fn(args) + sum_k sum(out_seeds[k] * args[k] after fn)

    Its gradient is what reverse mode must leave in the shadows: a seed in
    the shadow of array k is the cotangent of k's final value.
    """
    out_seeds = {
        k: np.asarray(v, dtype=np.float64) for k, v in (out_seeds or {}).items()
    }

    def phi(*a):
        a = copy_args(a)
        r = fn(*a)
        total = 0.0
        if ret_seed:
            total += ret_seed * float(r)
        for k, s in out_seeds.items():
            total += float(np.sum(s * a[k]))
        return total

    return phi


def final_state(fn, argnum):
    """Array-valued function: ``args -> args[argnum]`` after calling ``fn``."""

    def g(*a):
        a = copy_args(a)
        fn(*a)
        return np.array(a[argnum], dtype=np.float64)

    return g


# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------


def tol(dtype, kind="fd"):
    """Default tolerances.

    kind="fd": AD result vs central differences (float64 reference).
    kind="ad": AD vs AD (forward vs reverse) or vs an analytic formula.
    """
    f32 = np.dtype(dtype) == np.float32
    if kind == "fd":
        return (1e-3, 1e-4) if f32 else (1e-5, 1e-7)
    return (1e-4, 1e-5) if f32 else (1e-9, 1e-12)


def assert_close(got, want, dtype=np.float64, kind="fd", rtol=None, atol=None, err_msg=""):
    """allclose with the atol scaled by the size of the reference values."""
    r, a = tol(dtype, kind)
    rtol = r if rtol is None else rtol
    atol = a if atol is None else atol
    want = np.asarray(want, dtype=np.float64)
    got_arr = np.asarray(got, dtype=np.float64)
    assert got_arr.shape == want.shape, (
        f"shape mismatch: got {got_arr.shape}, want {want.shape}. {err_msg}"
    )
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got_arr, want, rtol=rtol, atol=atol * scale, err_msg=err_msg)


# --------------------------------------------------------------------------
# cached differentiated callables
# --------------------------------------------------------------------------

_CACHE = {}


def _cache_key(parts):
    key = []
    for p in parts:
        if isinstance(p, (tuple, list)):
            key.append(tuple(_cache_key(p)))
        elif isinstance(p, type) or p is None or isinstance(p, (int, str, float)):
            key.append(p)
        else:
            key.append((type(p), id(p)))
    return tuple(key)


def _cached(parts, make):
    key = _cache_key(parts)
    obj = _CACHE.get(key)
    if obj is None:
        obj = make()
        _CACHE[key] = obj
    return obj


def get_grad(fn, argnums=0):
    import gradjit

    return _cached(("grad", fn, argnums), lambda: gradjit.grad(fn, argnums=argnums))


def get_value_and_grad(fn, argnums=0):
    import gradjit

    return _cached(
        ("vag", fn, argnums), lambda: gradjit.value_and_grad(fn, argnums=argnums)
    )


def get_jvp(fn):
    import gradjit

    return _cached(("jvp", fn), lambda: gradjit.jvp(fn))


def get_vjp(fn, argnums=0):
    import gradjit

    return _cached(("vjp", fn, argnums), lambda: gradjit.vjp(fn, argnums=argnums))


def get_autodiff(fn, mode, *activities, ret=None, width=1):
    import gradjit

    return _cached(
        ("autodiff", fn, mode, tuple(activities), ret, width),
        lambda: gradjit.autodiff(fn, mode, *activities, ret=ret, width=width),
    )


# --------------------------------------------------------------------------
# gradient of a scalar-valued function in either mode
# --------------------------------------------------------------------------


def float_argnums(args):
    return tuple(i for i, a in enumerate(args) if is_active_arg(a))


def _basis_tangent(a, idx):
    if is_float_array(a):
        t = np.zeros_like(a)
        t[idx] = 1
        return t
    return scalar(1.0, np.float32 if isinstance(a, np.float32) else np.float64)


def ad_grads(mode, fn, args, wrt=None):
    """Gradient of a scalar-valued ``fn`` wrt ``args[i]`` for i in ``wrt``
    (default: every float argument), as a list in the order of ``wrt``.

    mode "reverse": ``gradjit.grad(fn, argnums=wrt)``.
    mode "forward": ``gradjit.jvp(fn)`` with basis tangents. Every float
    argument always gets a tangent (zeros where it is not the direction) so
    that only one forward derivative is compiled per signature.
    """
    wrt = float_argnums(args) if wrt is None else tuple(wrt)
    if mode == "reverse":
        g = get_grad(fn, argnums=wrt)(*copy_args(args))
        assert isinstance(g, tuple) and len(g) == len(wrt)
        return list(g)

    assert mode == "forward", mode
    jvp = get_jvp(fn)
    zero_t = [zeros_like_arg(a) if is_active_arg(a) else None for a in args]
    grads = []
    for i in wrt:
        a = args[i]
        idxs = list(np.ndindex(*a.shape)) if is_float_array(a) else [None]
        g = np.zeros(a.shape, dtype=np.float64) if is_float_array(a) else 0.0
        for idx in idxs:
            tangents = list(zero_t)
            tangents[i] = _basis_tangent(a, idx)
            tangents = [copy_arg(t) for t in tangents]
            _, t_out = jvp(tuple(copy_args(args)), tuple(tangents))
            if idx is None:
                g = float(t_out)
            else:
                g[idx] = float(t_out)
        grads.append(g)
    return grads


def check_grads(mode, fn, args, wrt=None, fd_fn=None, kind="fd", eps=1e-6, rtol=None, atol=None):
    """AD gradient in `mode` vs central finite differences of ``fd_fn`` (default ``fn``)."""
    wrt = float_argnums(args) if wrt is None else tuple(wrt)
    got = ad_grads(mode, fn, args, wrt)
    dt = dtype_of(args)
    for i, g in zip(wrt, got):
        a = args[i]
        if is_float_array(a):
            assert isinstance(g, np.ndarray), f"gradient of array arg {i} is {type(g)}"
            assert g.shape == a.shape
        want = fd_grad(fd_fn or fn, args, i, eps)
        assert_close(g, want, dt, kind, rtol=rtol, atol=atol, err_msg=f"{mode} grad of arg {i}")
    return got


def random_tangents(rng, args):
    out = []
    for a in args:
        if is_float_array(a):
            out.append(rng.standard_normal(a.shape).astype(a.dtype))
        elif is_float_scalar(a):
            out.append(scalar(rng.standard_normal(), np.float32 if isinstance(a, np.float32) else np.float64))
        else:
            out.append(None)
    return out


def dot_grads_tangents(grads, wrt, tangents):
    total = 0.0
    for i, g in zip(wrt, grads):
        t = tangents[i]
        total += float(np.sum(np.asarray(g, dtype=np.float64) * np.asarray(t, dtype=np.float64)))
    return total


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def central(f, args, k, idx, eps=1e-6):
    """Central difference of ``f(*args)`` in coordinate ``idx`` of array ``args[k]``
    (the array is copied; ``args`` is left unchanged)."""
    a = list(args)
    x = a[k].copy()
    a[k] = x
    old = x[idx]
    x[idx] = old + eps
    fp = f(*a)
    x[idx] = old - eps
    fm = f(*a)
    return (fp - fm) / (2 * eps)
