"""Derivatives through Numba's LU and Cholesky factorizations, the inverse and the
symmetric eigendecomposition: ``np.linalg.det``, ``slogdet``, ``inv``,
``cholesky``, ``eigh``, ``eigvalsh``, ``svd`` and ``pinv``, and the singular values
behind ``cond`` and ``norm(A, 2)`` (``numba_xxgetrf``, ``numba_ez_xxgetri``, ``numba_xxpotrf``,
``numba_ez_xxxevd``, ``numba_ez_gesdd``).

Every program is checked against central finite differences in reverse and
forward mode, with and without row pivoting, in float32, and in vector mode
against the width-1 derivative of each direction.  ``cholesky`` reads only the
lower triangle of its argument, so its gradient lives there (finite differences
of single entries see the same); so do ``eigh`` and ``eigvalsh``.
"""
import math

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Dual, Duplicated
from conftest import assert_close, fd_grad, fd_jvp


@njit
def det(A):
    return np.linalg.det(A)


@njit
def logabsdet(A):
    sign, logdet = np.linalg.slogdet(A)
    return logdet * sign


@njit
def weighted_inverse(A):
    B = np.linalg.inv(A)
    s = 0.0
    for i in range(B.shape[0]):
        for j in range(B.shape[1]):
            s += B[i, j] * (i + 2 * j + 1) + 0.5 * B[i, j] ** 2
    return s


@njit
def weighted_cholesky(S):
    L = np.linalg.cholesky(S)
    s = 0.0
    for i in range(L.shape[0]):
        for j in range(L.shape[1]):
            s += L[i, j] * (i - j + 3) + L[i, j] ** 2
    return s


@njit
def gaussian_logpdf(S, x):
    """log N(x; 0, S) through the Cholesky factor and forward substitution."""
    n = x.shape[0]
    L = np.linalg.cholesky(S)
    z = np.empty(n)
    for i in range(n):
        acc = x[i]
        for k in range(i):
            acc -= L[i, k] * z[k]
        z[i] = acc / L[i, i]
    logdet = 0.0
    for i in range(n):
        logdet += math.log(L[i, i])
    return -0.5 * np.dot(z, z) - logdet - 0.5 * n * math.log(2.0 * math.pi)


@njit
def inverse_and_det_in_a_loop(A, w):
    s = 0.0
    M = A.copy()
    for _ in range(3):
        M = np.linalg.inv(M) @ A + np.eye(A.shape[0])
        s += np.linalg.det(M) * w
    return s


@njit
def eigen_terms(S):
    """Eigenvalues and a sign-invariant function of the eigenvectors."""
    w, V = np.linalg.eigh(S)
    s = 0.0
    for i in range(w.shape[0]):
        s += w[i] * (i + 1) + 0.1 * w[i] ** 2
    for i in range(V.shape[0]):
        for j in range(V.shape[1]):
            s += V[i, j] * V[i, j] * (i + 1) * (j + 1)   # not a function of w alone
    return s


@njit
def spectral_sum(S):
    w = np.linalg.eigvalsh(S)
    s = 0.0
    for i in range(w.shape[0]):
        s += math.exp(0.3 * w[i]) * (i + 1)
    return s


def _matrices(rng, n=4, dtype=np.float64):
    A = (rng.standard_normal((n, n)) + n * np.eye(n)).astype(dtype)
    P = np.roll(A, -1, axis=0)                         # row interchanges that do not commute
    G = rng.standard_normal((n, n))
    S = (G @ G.T + n * np.eye(n)).astype(dtype)        # symmetric positive definite
    return A, P, S


def _problems(rng, dtype=np.float64):
    A, P, S = _matrices(rng, dtype=dtype)
    x = rng.standard_normal(A.shape[0]).astype(dtype)
    return [(det, (A,)), (det, (P,)), (logabsdet, (P,)), (weighted_inverse, (A,)),
            (weighted_inverse, (P,)), (weighted_cholesky, (S,)), (gaussian_logpdf, (S, x)),
            (inverse_and_det_in_a_loop, (0.3 * A, 0.7)),
            (det, (np.asfortranarray(P),)), (eigen_terms, (S,)), (spectral_sum, (S,))]


_NAMES = ["det", "det_pivoted", "slogdet", "inv", "inv_pivoted", "cholesky",
          "gaussian_logpdf", "loop", "det_fortran", "eigh", "eigvalsh"]


@pytest.mark.parametrize("k", range(len(_NAMES)), ids=_NAMES)
def test_reverse_against_fd(k, rng):
    f, args = _problems(rng)[k]
    for argnum in range(len(args)):
        g = gradjit.grad(f, argnums=argnum)(*args)
        assert_close(g, fd_grad(f, args, argnum), kind="fd")


@pytest.mark.parametrize("k", range(len(_NAMES)), ids=_NAMES)
def test_forward_against_fd(k, rng):
    f, args = _problems(rng)[k]
    tangents = tuple(rng.standard_normal(np.shape(a)) if np.ndim(a) else 1.0 for a in args)
    _, t = gradjit.jvp(f)(args, tangents)
    assert_close(t, fd_jvp(f, args, tangents), kind="fd")


@pytest.mark.parametrize("k", [1, 4, 5, 9], ids=["det_pivoted", "inv_pivoted", "cholesky",
                                               "eigh"])
def test_float32(k, rng):
    f, args = _problems(rng, np.float32)[k]
    g = gradjit.grad(f, argnums=0)(*args)
    assert g.dtype == np.float32
    assert_close(g, fd_grad(f, args, 0), dtype=np.float32)


@pytest.mark.parametrize("k", [4, 5, 9, 10], ids=["inv_pivoted", "cholesky", "eigh", "eigvalsh"])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_vector_mode_matches_each_direction(k, mode, rng):
    f, (M,) = _problems(rng)[k]
    if mode == "reverse":
        dfN = gradjit.autodiff(f, mode, Duplicated, width=3)
        df1 = gradjit.autodiff(f, mode, Duplicated)
        seeds = np.array([1.0, -2.0, 0.5])
        dM = np.zeros((3,) + M.shape)
        dfN(M, dM, seeds)
        for lane, seed in enumerate(seeds):
            d1 = np.zeros_like(M)
            df1(M, d1, seed)
            assert_close(dM[lane], d1, kind="ad")
    else:
        dfN = gradjit.autodiff(f, mode, Dual, width=3)
        df1 = gradjit.autodiff(f, mode, Dual)
        tM = rng.standard_normal((3,) + M.shape)
        _, tN = dfN(M, tM)
        for lane in range(3):
            _, t1 = df1(M, tM[lane])
            assert_close(tN[lane], t1, kind="ad")


def test_det_gradient_is_the_cofactor_matrix(rng):
    """d det(A) / dA = det(A) A^-T (Jacobi's formula), independent of FD."""
    A, P, _ = _matrices(rng, n=5)
    for M in (A, P):
        g = gradjit.grad(det)(M)
        assert_close(g, np.linalg.det(M) * np.linalg.inv(M).T, kind="ad")


def test_cholesky_forward_matches_the_analytic_tangent(rng):
    """dL = L Phi(L^-1 dS L^-T) (Murray 2016, eq. 7) for a symmetric dS."""
    _, _, S = _matrices(rng, n=5)
    G = rng.standard_normal(S.shape)
    dS = G + G.T

    @njit
    def chol(S, out):
        out[...] = np.linalg.cholesky(S)

    L, dL = np.zeros_like(S), np.zeros_like(S)
    gradjit.autodiff(chol, "forward", Dual, Dual)(S, dS, L, dL)
    Li = np.linalg.inv(L)
    X = Li @ dS @ Li.T
    phi = np.tril(X) - 0.5 * np.diag(np.diag(X))
    assert_close(dL, L @ phi, kind="ad")


def test_eigenvalue_gradient_is_the_eigenvector_outer_product(rng):
    """d w_k / dS = v_k v_k^T for a symmetric S (Giles 2008, sec. 3.1), folded onto
    the lower triangle that eigvalsh reads: 2 v_ik v_jk below the diagonal."""
    _, _, S = _matrices(rng, n=5)
    c = np.arange(1.0, 6.0)

    @njit
    def weighted_eigenvalues(S):
        w = np.linalg.eigvalsh(S)
        s = 0.0
        for i in range(w.shape[0]):
            s += w[i] * (i + 1.0)
        return s

    g = gradjit.grad(weighted_eigenvalues)(S)
    _, V = np.linalg.eigh(S)
    full = (V * c) @ V.T
    want = np.tril(2.0 * full) - np.diag(np.diag(full))
    assert_close(g, want, kind="ad")


@njit
def condition_number(A):
    return np.linalg.cond(A)


@njit
def spectral_norm(A):
    return np.linalg.norm(A, 2) ** 2


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
@pytest.mark.parametrize("f", [condition_number, spectral_norm])
def test_singular_values_both_modes_against_fd(f, shape, rng):
    A = rng.standard_normal(shape)
    assert_close(gradjit.grad(f)(A), fd_grad(f, (A,), 0), kind="fd")
    T = rng.standard_normal(shape)
    _, t = gradjit.jvp(f)((A,), (T,))
    assert_close(t, fd_jvp(f, (A,), (T,)), kind="fd")


def test_singular_values_float32_and_vector_mode(rng):
    A = rng.standard_normal((5, 3))
    g32 = gradjit.grad(condition_number)(A.astype(np.float32))
    assert g32.dtype == np.float32
    assert_close(g32, fd_grad(condition_number, (A,), 0), dtype=np.float32)
    tA = rng.standard_normal((2,) + A.shape)
    _, tN = gradjit.autodiff(spectral_norm, "forward", Dual, width=2)(A, tA)
    for lane in range(2):
        _, t1 = gradjit.autodiff(spectral_norm, "forward", Dual)(A, tA[lane])
        assert_close(tN[lane], t1, kind="ad")


def test_largest_singular_value_gradient_is_u1_v1(rng):
    """d s_max / dA = u_1 v_1^T (Townsend 2016), independent of FD."""
    A = rng.standard_normal((6, 4))

    @njit
    def smax(A):
        return np.linalg.norm(A, 2)

    U, _, Vt = np.linalg.svd(A)
    assert_close(gradjit.grad(smax)(A), np.outer(U[:, 0], Vt[0]), kind="ad")


# --- np.linalg.svd with vectors, pinv ---------------------------------------------
# Singular vectors are defined up to sign, so the objectives are sign invariant
# (each vector enters multiplied by one of its own entries).

@njit
def svd_terms_thin(A, W1, W2, w):
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    r = 0.0
    for i in range(s.shape[0]):
        r += w[i] * s[i] ** 2
        for j in range(U.shape[0]):
            r += W1[j, i] * U[j, i] * U[0, i]
        for j in range(Vt.shape[1]):
            r += W2[i, j] * Vt[i, j] * Vt[i, 0]
    return r


@njit
def svd_terms_full(A, W1, W2, w):
    U, s, Vt = np.linalg.svd(A)            # full_matrices=True: U is m x m, Vt n x n
    r = 0.0
    for i in range(s.shape[0]):
        r += w[i] * math.sqrt(s[i])
        for j in range(U.shape[0]):
            r += W1[j, i] * U[j, i] * U[j, i]
        for j in range(Vt.shape[1]):
            r += W2[i, j] * Vt[i, j] * Vt[i, 1]
    return r


@njit
def svd_complement_projectors(A, W1, W2):
    """Uses the extra columns of U / rows of Vt only through the projectors onto
    the complement spaces, which are well defined."""
    U, s, Vt = np.linalg.svd(A)
    k = s.shape[0]
    Up = np.ascontiguousarray(U[:, k:])
    Vp = np.ascontiguousarray(Vt[k:, :])
    return np.sum(W1 * (Up @ Up.T)) + np.sum(W2 * (Vp.T @ Vp)) + s[0]


@njit
def pinv_weighted(A, W):
    return np.sum(np.linalg.pinv(A) * W)


def _svd_problem(f, shape, rng):
    m, n = shape
    k = min(m, n)
    A = rng.standard_normal(shape)
    if f is svd_complement_projectors:
        return A, (rng.standard_normal((m, m)), rng.standard_normal((n, n)))
    if f is pinv_weighted:
        return A, (rng.standard_normal((n, m)),)
    return A, (rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal(k))


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
@pytest.mark.parametrize("f", [svd_terms_thin, svd_terms_full, svd_complement_projectors,
                               pinv_weighted])
def test_svd_vectors_both_modes_against_fd(f, shape, rng):
    A, consts = _svd_problem(f, shape, rng)
    args = (A,) + consts
    assert_close(gradjit.grad(f)(*args), fd_grad(f, args, 0), kind="fd")
    tangents = (rng.standard_normal(shape),) + tuple(np.zeros_like(c) for c in consts)
    _, t = gradjit.jvp(f)(args, tangents)
    assert_close(t, fd_jvp(f, args, tangents), kind="fd")


def test_svd_reconstruction_has_the_identity_derivative(rng):
    """U diag(s) V^T is A again, so its derivative is the identity in both modes
    whatever the SVD rules do to each factor -- a check independent of FD."""
    @njit
    def reconstruct(A, out):
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        out[:, :] = (U * s) @ Vt

    for shape in [(5, 3), (3, 5)]:
        A, W = rng.standard_normal(shape), rng.standard_normal(shape)
        dA = np.zeros(shape)
        gradjit.autodiff(reconstruct, "reverse", Duplicated, Duplicated)(
            A, dA, np.zeros(shape), W.copy())
        assert_close(dA, W, kind="ad")
        T = rng.standard_normal(shape)
        dout = np.zeros(shape)
        gradjit.autodiff(reconstruct, "forward", Dual, Dual)(A, T, np.zeros(shape), dout)
        assert_close(dout, T, kind="ad")


def test_svd_float32_and_vector_mode(rng):
    A, (W,) = _svd_problem(pinv_weighted, (5, 3), rng)
    g32 = gradjit.grad(pinv_weighted)(A.astype(np.float32), W.astype(np.float32))
    assert g32.dtype == np.float32
    assert_close(g32, fd_grad(pinv_weighted, (A, W), 0), dtype=np.float32)
    tA = rng.standard_normal((3,) + A.shape)
    _, tN = gradjit.autodiff(pinv_weighted, "forward", Dual, Const, width=3)(A, tA, W)
    seeds = np.array([1.0, -2.0, 0.5])
    dN = np.zeros((3,) + A.shape)
    gradjit.autodiff(pinv_weighted, "reverse", Duplicated, Const, width=3)(A, dN, W, seeds)
    for lane in range(3):
        _, t1 = gradjit.autodiff(pinv_weighted, "forward", Dual, Const)(A, tA[lane], W)
        assert_close(tN[lane], t1, kind="ad")
        d1 = np.zeros_like(A)
        gradjit.autodiff(pinv_weighted, "reverse", Duplicated, Const)(A, d1, W, seeds[lane])
        assert_close(dN[lane], d1, kind="ad")


def test_lstsq_is_reported(rng):
    @njit
    def residual_norm(A, b):
        x, res, rank, sv = np.linalg.lstsq(A, b)
        return np.sum(x * x)

    with pytest.raises(gradjit.UnsupportedError, match="gelsd"):
        gradjit.grad(residual_norm)(rng.standard_normal((5, 3)), rng.standard_normal(5))


def test_eigenvalues_alone_with_repeated_eigenvalues():
    """sum(eigvalsh(A)) = trace(A): gradient I even with equal eigenvalues (the
    eigenvector term, the only one dividing by eigenvalue gaps, is zero)."""
    @njit
    def trace_by_eigenvalues(A):
        return np.linalg.eigvalsh(A).sum()

    A = np.diag([1.0, 2.0, 2.0])
    assert_close(gradjit.grad(trace_by_eigenvalues)(A), np.tril(2.0 * np.eye(3)) - np.eye(3),
                 kind="ad")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exactly_singular_matrix_gives_finite_derivatives_in_both_modes(dtype):
    """getrf reports a zero pivot: Numba's det returns the constant 0 (and slogdet
    (0, -inf)), so the program's derivative is 0 in both modes (it was NaN in
    reverse mode: the adjoint solved with the singular U)."""
    A = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]], dtype=dtype)

    @njit
    def f(a):
        return np.linalg.det(a) + np.linalg.slogdet(a)[0]

    g = gradjit.grad(f)(A)
    _, t = gradjit.jvp(f)((A,), (np.ones_like(A),))
    assert np.all(np.isfinite(g)) and np.all(g == 0) and t == 0
    # a regular matrix right after still gets the cofactor matrix
    B = np.array([[2.0, 1.0], [1.0, 3.0]], dtype=dtype)
    np.testing.assert_allclose(gradjit.grad(f)(B), [[3.0, -1.0], [-1.0, 2.0]], rtol=1e-5)


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_pinv_of_fortran_and_strided_views(layout, rng):
    # Numba's linalg copies a non-Fortran input into a Fortran buffer: a meminfo
    # merge of the argument's and the copy's (was reported as a Const/active choice
    # for strided views)
    R = rng.standard_normal((4, 3))
    if layout == "F":
        A = np.asfortranarray(R)
    else:
        big = np.zeros((8, 4))
        big[::2, 1:] = R
        A = big[::2, 1:]
    W = rng.standard_normal((3, 4))
    g = gradjit.grad(pinv_weighted)(A, W)
    assert_close(g, fd_grad(pinv_weighted, (R, W), 0), kind="fd")
    t = rng.standard_normal((4, 3))
    _, dy = gradjit.jvp(pinv_weighted)((A, W), (t, None))
    assert_close(dy, float(np.sum(fd_grad(pinv_weighted, (R, W), 0) * t)), kind="fd")
