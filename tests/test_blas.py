"""Derivatives through Numba's BLAS and LAPACK calls (``@``, ``np.dot``,
``np.linalg.norm``, ``np.linalg.solve``): ``numba_xxdot``, ``numba_xxgemv``,
``numba_xxgemm``, ``numba_xxnrm2`` and ``numba_xgesv``.

Every program is checked against central finite differences in both modes, and
vector mode (width 2) against the width-1 derivative of each direction.  Also
here: memory that a function only copies and hands to a callee (``v.copy()``
passed to ``A @ x``), whose element type comes from the copy's source; raw
temporaries of overlapping slice copies; ``math.gamma``/``lgamma``; and the
error for active floats stored in a list.
"""
import math

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Duplicated
from conftest import assert_close, fd_grad, fd_jvp


@njit
def matvec(A, v):
    return np.sum(np.sin(A @ v))


@njit
def vecmat(w, A):
    return np.sum(np.sin(w @ A))


@njit
def dots(v, u):
    return np.dot(v, u) ** 2 + np.dot(v, v) + np.vdot(u, v)


@njit
def norm3(v):
    return np.linalg.norm(v) ** 3


@njit
def matmat(A, B):
    return np.sum(np.cos(A @ B))


@njit
def transposes(A, B):
    C = A.T @ A + B @ B.T + (A.T @ (A @ B)) @ B.T
    return np.sum(C * C)


@njit
def fortran_order(A, B):
    return np.sum(np.tanh(np.asfortranarray(A) @ B))


@njit
def iterated(A, v):
    x = v.copy()
    for _ in range(3):
        x = np.tanh(A.T @ (A @ x))
    return np.sum(x)


@njit
def mlp(W1, b1, W2, x):
    h = np.tanh(W1 @ x + b1)
    y = W2 @ h
    return 0.5 * np.dot(y, y)


def _problems(rng, dtype=np.float64):
    A = rng.standard_normal((4, 3)).astype(dtype)
    B = rng.standard_normal((3, 5)).astype(dtype)
    v = rng.standard_normal(3).astype(dtype)
    w = rng.standard_normal(4).astype(dtype)
    return [
        (matvec, (A, v)), (vecmat, (w, A)), (dots, (v, v[::-1].copy())), (norm3, (v,)),
        (matmat, (A, B)), (transposes, (A, B)), (fortran_order, (A, B)),
        (iterated, (0.5 * A, v)),
        (mlp, (rng.standard_normal((6, 3)).astype(dtype), rng.standard_normal(6).astype(dtype),
               rng.standard_normal((2, 6)).astype(dtype), v)),
    ]


_NAMES = ["matvec", "vecmat", "dots", "norm3", "matmat", "transposes", "fortran_order",
          "iterated", "mlp"]


@pytest.mark.parametrize("k", range(len(_NAMES)), ids=_NAMES)
def test_reverse_against_fd(k, rng):
    f, args = _problems(rng)[k]
    for argnum in range(len(args)):
        g = gradjit.grad(f, argnums=argnum)(*args)
        assert_close(g, fd_grad(f, args, argnum), kind="fd")


@pytest.mark.parametrize("k", range(len(_NAMES)), ids=_NAMES)
def test_forward_against_fd(k, rng):
    f, args = _problems(rng)[k]
    tangents = tuple(rng.standard_normal(a.shape) for a in args)
    _, t = gradjit.jvp(f)(args, tangents)
    assert_close(t, fd_jvp(f, args, tangents), kind="fd")


@pytest.mark.parametrize("k", [0, 2, 4, 8], ids=[_NAMES[k] for k in (0, 2, 4, 8)])
def test_float32(k, rng):
    f, args = _problems(rng, np.float32)[k]
    g = gradjit.grad(f, argnums=0)(*args)
    assert g.dtype == np.float32
    assert_close(g, fd_grad(f, args, 0), dtype=np.float32)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_vector_mode_matches_each_direction(mode, rng):
    f, (A, v) = _problems(rng)[7]                      # iterated: gemv in a loop
    act = Duplicated if mode == "reverse" else gradjit.Dual
    dfN = gradjit.autodiff(f, mode, act, Const, width=2)
    df1 = gradjit.autodiff(f, mode, act, Const)
    if mode == "reverse":
        dA = np.zeros((2,) + A.shape)
        dfN(A, dA, v, np.array([1.0, -2.0]))
        for lane, seed in enumerate((1.0, -2.0)):
            d1 = np.zeros_like(A)
            df1(A, d1, v, seed)
            assert_close(dA[lane], d1, kind="ad")
    else:
        tA = rng.standard_normal((2,) + A.shape)
        _, tN = dfN(A, tA, v)
        for lane in range(2):
            _, t1 = df1(A, tA[lane], v)
            assert_close(tN[lane], t1, kind="ad")


def test_const_matrix_gets_no_gradient_and_vector_does(rng):
    f, (A, v) = _problems(rng)[0]
    df = gradjit.autodiff(f, "reverse", Const, Duplicated)
    dv = np.zeros_like(v)
    df(A, v, dv, 1.0)
    assert_close(dv, fd_grad(f, (A, v), 1), kind="fd")


@njit
def _copied_then_multiplied(A, v):
    x = v.copy()          # memory the function itself never loads or stores
    return np.sum(A @ x)


def test_copy_handed_to_a_callee(rng):
    A, v = rng.standard_normal((3, 3)), rng.standard_normal(3)
    g = gradjit.grad(_copied_then_multiplied, argnums=1)(A, v)
    assert_close(g, A.sum(axis=0), kind="ad")


@njit
def _gammas(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.lgamma(x[i]) + math.gamma(0.5 * x[i])
    return s


def test_lgamma_and_gamma(rng):
    """digamma values: psi(1) = -gamma_E, psi(n + 1) = H_n - gamma_E, psi(1/2) =
    -gamma_E - 2 ln 2 (A&S 6.3.2-6.3.4); plus FD at negative and large points."""
    euler = 0.57721566490153286
    x = np.array([1.0, 4.0, 0.5])
    g = gradjit.grad(_lgamma_sum)(x)
    assert_close(g, np.array([-euler, 1 + 0.5 + 1 / 3 - euler, -euler - 2 * math.log(2.0)]),
                 kind="ad")
    x = np.array([0.3, 2.5, 7.0, 12.0, 55.0, -0.4, -2.7])
    assert_close(gradjit.grad(_gammas)(x), fd_grad(_gammas, (x,), 0), kind="fd")
    _, t = gradjit.jvp(_gammas)((x,), (np.ones_like(x),))
    assert_close(t, fd_grad(_gammas, (x,), 0).sum(), kind="fd")


@njit
def _lgamma_sum(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.lgamma(x[i])
    return s


@njit
def _list_of_floats(x):
    items = []
    for i in range(x.shape[0]):
        items.append(2.0 * x[i])
    s = 0.0
    for t in items:
        s += t * t
    return s


def test_list_of_active_floats_is_reported():
    with pytest.raises(gradjit.UnsupportedError, match="list"):
        gradjit.grad(_list_of_floats)(np.arange(3.0))


# --- np.linalg.solve (LAPACK gesv) -----------------------------------------------

@njit
def _solve_vec(A, b):
    return np.sum(np.sin(np.linalg.solve(A, b)))


@njit
def _solve_mat(A, B):
    X = np.linalg.solve(A, B)
    return np.sum(X * X)


@njit
def _solve_iterated(A, b):
    x = b.copy()
    for _ in range(2):
        x = np.linalg.solve(A, np.tanh(x))
    return np.sum(x)


@njit
def _solve_into(A, b):
    out = np.empty_like(b)
    out[:] = np.linalg.solve(A, b)      # a slice copy: its helper is linked in twice
    return np.sum(out * out)


def _solve_problems(rng, dtype=np.float64):
    A = (rng.standard_normal((4, 4)) + 4 * np.eye(4)).astype(dtype)
    P = A[[2, 1, 0, 3]].copy()                 # row pivoting in the factorization
    b = rng.standard_normal(4).astype(dtype)
    B = rng.standard_normal((4, 2)).astype(dtype)
    return [(_solve_vec, (A, b)), (_solve_vec, (P, b)), (_solve_mat, (A, B)),
            (_solve_iterated, (A, b)), (_solve_into, (A, b))]


@pytest.mark.parametrize("k", range(5), ids=["vector", "pivoted", "matrix", "iterated", "into"])
def test_solve_both_modes_against_fd(k, rng):
    f, args = _solve_problems(rng)[k]
    for argnum in range(2):
        assert_close(gradjit.grad(f, argnums=argnum)(*args), fd_grad(f, args, argnum), kind="fd")
    tangents = tuple(rng.standard_normal(a.shape) for a in args)
    _, t = gradjit.jvp(f)(args, tangents)
    assert_close(t, fd_jvp(f, args, tangents), kind="fd")


def test_solve_float32(rng):
    f, args = _solve_problems(rng, np.float32)[0]
    g = gradjit.grad(f, argnums=0)(*args)
    assert g.dtype == np.float32
    assert_close(g, fd_grad(f, args, 0), dtype=np.float32)


def test_solve_forward_repeated_keeps_the_heap_sound(rng):
    """Forward mode of a 2-D solve many times: a meminfo without a shadow (a list's)
    merged by a phi with an array's must not be reference-counted twice."""
    f, (A, B) = _solve_problems(rng)[2]
    df = gradjit.autodiff(f, "forward", Const, gradjit.Dual)
    dB = np.ones_like(B)
    results = [df(A, B, dB)[1] for _ in range(20)]
    junk = [np.ones(64) for _ in range(2000)]         # reuse freed blocks
    assert len(junk) == 2000
    assert_close(results[-1], results[0], kind="ad")
    assert_close(results[0], fd_jvp(f, (A, B), (None, dB)), kind="fd")


# --- overlapping slice copies (Numba copies through a raw NRT_Allocate buffer) ---

@njit
def _shift_rows(X):
    Y = X.copy()
    Y[1:, :] = Y[:-1, :]
    return np.sum(Y * Y * np.arange(Y.shape[1]))


def test_overlapping_slice_copy(rng):
    X = rng.standard_normal((4, 3))
    assert_close(gradjit.grad(_shift_rows)(X), fd_grad(_shift_rows, (X,), 0), kind="fd")
    T = rng.standard_normal(X.shape)
    _, t = gradjit.jvp(_shift_rows)((X,), (T,))
    assert_close(t, fd_jvp(_shift_rows, (X,), (T,)), kind="fd")


@njit
def _gp_data_fit(X, y, lengthscale):
    """The data-fit term of a Gaussian-process likelihood: y^T K^-1 y / 2."""
    n = X.shape[0]
    K = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            d = X[i] - X[j]
            K[i, j] = np.exp(-0.5 * np.dot(d, d) / lengthscale ** 2)
        K[i, i] += 0.1
    return 0.5 * np.dot(y, np.linalg.solve(K, y))


def test_gaussian_process_data_fit(rng):
    X, y = rng.standard_normal((5, 2)), rng.standard_normal(5)
    args = (X, y, 0.8)
    gX, gy, gl = gradjit.grad(_gp_data_fit, argnums=(0, 1, 2))(*args)
    assert_close(gX, fd_grad(_gp_data_fit, args, 0), kind="fd")
    assert_close(gy, fd_grad(_gp_data_fit, args, 1), kind="fd")
    assert_close(gl, fd_grad(_gp_data_fit, args, 2), kind="fd")
