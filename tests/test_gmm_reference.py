"""The Numba GMM objective (kernels.gmm) against independent references.

Primal values only; gradients are tested elsewhere.  The definition is
GradBench's ``gmm`` eval (evals/gmm/README.md in gradbench/gradbench).
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kernels.gmm import (  # noqa: E402
    build_q_matrices,
    gmm_objective,
    gmm_objective_loops,
    gmm_objective_reference,
    make_inputs,
)

SMALL_SIZES = [(1, 1, 1), (1, 3, 7), (2, 1, 5), (2, 3, 4), (3, 4, 10), (5, 3, 20)]
GRADBENCH_SIZES = [(2, 5, 1000), (10, 25, 1000)]


@pytest.mark.parametrize("objective", [gmm_objective, gmm_objective_loops])
@pytest.mark.parametrize("d,k,n", SMALL_SIZES + GRADBENCH_SIZES)
def test_numba_matches_reference(d, k, n, objective):
    args = make_inputs(d, k, n)
    got = objective(*args)
    want = gmm_objective_reference(*args)
    assert np.isfinite(want)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("m,gamma", [(0, 0.5), (2, 1.0), (3, 2.5)])
@pytest.mark.parametrize("d,k,n", [(1, 2, 6), (3, 4, 10), (4, 2, 9)])
@pytest.mark.parametrize("objective", [gmm_objective, gmm_objective_loops])
def test_numba_matches_reference_wishart_params(d, k, n, m, gamma, objective):
    args = make_inputs(d, k, n, seed=7, m=m, gamma=gamma)
    np.testing.assert_allclose(
        objective(*args), gmm_objective_reference(*args), rtol=1e-10, atol=0
    )


def _log_posterior_from_definition(alpha, mu, q, l, x, gamma, m):
    """Log posterior straight from the definition, with scipy.stats densities.

    Mixture of multivariate normals with precision ``Q_k^T Q_k`` and weights
    ``softmax(alpha)``, times a Wishart(dof = d + m + 1, V = I / gamma^2) density
    of each precision matrix.  No algebraic simplification; small sizes only.
    """
    k, d = mu.shape
    Q = build_q_matrices(q, l)
    log_phi = alpha - scipy.special.logsumexp(alpha)
    comp = np.empty((x.shape[0], k))
    logprior = 0.0
    wishart = scipy.stats.wishart(df=d + m + 1, scale=np.eye(d) / gamma**2)
    for j in range(k):
        precision = Q[j].T @ Q[j]
        cov = np.linalg.inv(precision)
        comp[:, j] = log_phi[j] + scipy.stats.multivariate_normal(
            mean=mu[j], cov=cov
        ).logpdf(x).reshape(-1)
        logprior += wishart.logpdf(precision) if d > 1 else wishart.logpdf(
            precision[0, 0]
        )
    return float(np.sum(scipy.special.logsumexp(comp, axis=1)) + logprior)


@pytest.mark.parametrize(
    "d,k,n,m,gamma",
    [(1, 2, 5, 0, 1.0), (2, 3, 8, 0, 1.0), (3, 2, 6, 1, 0.8), (4, 3, 10, 2, 1.3)],
)
def test_reference_matches_definition(d, k, n, m, gamma):
    # Keep the precision matrices well conditioned for the explicit inverse.
    alpha, mu, q, l, x, gamma, m = make_inputs(d, k, n, seed=3, m=m, gamma=gamma)
    q = 0.3 * q
    l = 0.3 * l
    want = _log_posterior_from_definition(alpha, mu, q, l, x, gamma, m)
    np.testing.assert_allclose(
        gmm_objective_reference(alpha, mu, q, l, x, gamma, m), want, rtol=1e-9
    )
    np.testing.assert_allclose(
        gmm_objective(alpha, mu, q, l, x, gamma, m), want, rtol=1e-9
    )


def test_q_matrix_layout_is_column_major():
    # d = 4: l entries fill column 0 (rows 1..3), column 1 (rows 2..3), column 2 (row 3).
    q = np.log(np.array([[1.0, 2.0, 3.0, 4.0]]))
    l = np.array([[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]])
    expected = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],
            [10.0, 2.0, 0.0, 0.0],
            [11.0, 13.0, 3.0, 0.0],
            [12.0, 14.0, 15.0, 4.0],
        ]
    )
    np.testing.assert_allclose(build_q_matrices(q, l)[0], expected, rtol=1e-15)


def test_layout_agrees_between_numba_and_reference():
    # A single point, a single component: only Q (x - mu) distinguishes layouts.
    d = 4
    q = np.zeros((1, d))
    l = np.arange(1.0, 7.0).reshape(1, 6)
    x = np.array([[1.0, -2.0, 0.5, 3.0]])
    mu = np.zeros((1, d))
    alpha = np.zeros(1)
    Q = build_q_matrices(q, l)[0]
    r = Q @ x[0]
    hand = (
        -0.5 * d * np.log(2 * np.pi)
        - 0.5 * r @ r
        + (d + 1) * d * np.log(1 / np.sqrt(2))
        - scipy.special.multigammaln(0.5 * (d + 1), d)
        - 0.5 * np.sum(Q**2)
    )
    args = (alpha, mu, q, l, x, 1.0, 0)
    np.testing.assert_allclose(gmm_objective(*args), hand, rtol=1e-13)
    np.testing.assert_allclose(gmm_objective_reference(*args), hand, rtol=1e-13)


def test_make_inputs_matches_gradbench_draw_order():
    # GradBench draws x, alpha, mu, q, l row by row from one default_rng(seed).
    d, k, n, seed = 3, 4, 5, 31337
    rng = np.random.default_rng(seed)
    x = np.array([rng.normal(size=d) for _ in range(n)])
    alpha = rng.normal(size=k)
    mu = np.array([rng.uniform(size=d) for _ in range(k)])
    q = np.array([rng.normal(size=d) for _ in range(k)])
    l = np.array([rng.normal(size=d * (d - 1) // 2) for _ in range(k)])
    got = make_inputs(d, k, n)
    for a, b in zip(got[:5], (alpha, mu, q, l, x)):
        assert a.dtype == np.float64 and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
    assert got[5] == 1.0 and isinstance(got[5], float)
    assert got[6] == 0 and isinstance(got[6], int)


def test_shapes():
    alpha, mu, q, l, x, gamma, m = make_inputs(10, 25, 1000)
    assert alpha.shape == (25,)
    assert mu.shape == (25, 10)
    assert q.shape == (25, 10)
    assert l.shape == (25, 45)
    assert x.shape == (1000, 10)
