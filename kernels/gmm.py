"""GradBench ``gmm``: log posterior of a Gaussian mixture model with a Wishart prior.

This is the objective of the GradBench ``gmm`` eval (``evals/gmm/README.md`` in
https://github.com/gradbench/gradbench), i.e. the ADBench "GMM" objective
(Srajer, Schkufza & Fitzgibbon, "A benchmark of selected algorithmic
differentiation tools on some problems in computer vision and machine
learning", 2018, section 4.1) *with GradBench's corrections*: the sign of the
prior is consistent with the likelihood, the precision matrix is
``Q^T Q`` (not ``Q Q^T``), and the Wishart prior is placed on the precision
matrices.

Notation (shapes are NumPy shapes; every array is C-contiguous ``float64``)::

    alpha : (k,)             mixture weight logits, phi = softmax(alpha)
    mu    : (k, d)           component means
    q     : (k, d)           log of the diagonal of Q_k
    l     : (k, d*(d-1)//2)  strictly lower-triangular entries of Q_k,
                             column by column (column-major order)
    x     : (n, d)           data points
    gamma : float > 0        Wishart precision, V = I / gamma**2
    m     : int >= 0         extra Wishart degrees of freedom, dof = d + m + 1

``Q_k`` is the ``d x d`` lower-triangular matrix with ``Q_k[j, j] =
exp(q[k, j])`` and whose strictly lower part is filled from ``l[k]`` column by
column: ``l[k, 0..d-2]`` is column 0 (rows 1..d-1), the next ``d-2`` entries are
column 1 (rows 2..d-1), and so on.  The precision matrix of component ``k`` is
``Q_k^T Q_k``.

The objective is (with ``lse`` = log-sum-exp, ``N = dof = d + m + 1``)::

    beta[i, k] = alpha[k] + sum_j q[k, j] - 0.5 * || Q_k (x[i] - mu[k]) ||^2

    log p(X | theta, phi) = - n * (d/2 * log(2 pi) + lse(alpha))
                            + sum_i lse_k(beta[i, k])

    log p(theta) = k * (N d log(gamma / sqrt 2) - log Gamma_d(N / 2))
                   - gamma**2 / 2 * sum_k ||Q_k||_F^2
                   + m * sum_{k, j} q[k, j]

    gmm_objective = log p(X | theta, phi) + log p(theta)

where ``||Q_k||_F^2 = sum_j exp(q[k, j])**2 + sum_t l[k, t]**2`` and
``Gamma_d`` is the multivariate gamma function.  This is a *log posterior*
(to be maximised), exactly the value GradBench's ``gmm.objective`` returns.

Both Numba versions are written the way a Numba user would write them (explicit
loops, scalar ``math`` calls, scratch arrays from ``np.empty``/``np.zeros``) so
that they are realistic inputs for gradjit: :func:`gmm_objective_loops` is all
loops; :func:`gmm_objective` (what the suite and the GradBench tool time) does the
``Q_k (x_i - mu_k)`` products as one ``@`` (BLAS ``dgemm``), 4-5x faster at
``d=20, k=25``, and its gradient is as fast as JAX's.  :func:`gmm_objective_reference`
is an independent vectorised NumPy/SciPy implementation used to test them.
"""

import math

import numba
import numpy as np
import scipy.special

__all__ = [
    "gmm_objective",
    "gmm_objective_loops",
    "gmm_objective_reference",
    "log_multigamma",
    "logsumexp",
    "make_inputs",
]


# ---------------------------------------------------------------------------
# Numba kernel
# ---------------------------------------------------------------------------


@numba.njit
def logsumexp(a):
    """``log(sum(exp(a)))`` of a 1-d float64 array, stabilised by its maximum."""
    mx = a[0]
    for i in range(1, a.shape[0]):
        if a[i] > mx:
            mx = a[i]
    s = 0.0
    for i in range(a.shape[0]):
        s += math.exp(a[i] - mx)
    return mx + math.log(s)


@numba.njit
def log_multigamma(a, p):
    """``log Gamma_p(a)`` for a float ``a > (p - 1) / 2`` and an int ``p >= 1``.

    ``Gamma_p(a) = pi**(p (p - 1) / 4) * prod_{j=1..p} Gamma(a + (1 - j) / 2)``.
    Only depends on ``d`` and ``m``, so it is a constant for differentiation.
    """
    out = 0.25 * p * (p - 1) * math.log(math.pi)
    for j in range(1, p + 1):
        out += math.lgamma(a + 0.5 * (1 - j))
    return out


@numba.njit
def diag_and_logdet(q):
    """``(exp(q), sum_j q[k, j])`` for ``q`` of shape (k, d), float64: the diagonals of
    the ``Q_k`` factors, shape (k, d), and their log-determinants, shape (k,)."""
    k = q.shape[0]
    d = q.shape[1]
    qdiag = np.empty((k, d))
    sum_qs = np.zeros(k)
    for ik in range(k):
        for j in range(d):
            qdiag[ik, j] = math.exp(q[ik, j])
            sum_qs[ik] += q[ik, j]
    return qdiag, sum_qs


@numba.njit
def log_wishart_prior(qdiag, sum_qs, l, gamma, m):
    """``log p(theta)`` of the module docstring: the Wishart prior on the ``Q_k^T Q_k``.

    ``qdiag``: (k, d) float64, ``exp(q)``; ``sum_qs``: (k,) float64, ``sum_j q[k, j]``;
    ``l``: (k, d*(d-1)//2) float64; ``gamma``: float > 0; ``m``: int >= 0.
    """
    k = qdiag.shape[0]
    d = qdiag.shape[1]
    dof = d + m + 1
    const = dof * d * (math.log(gamma) - 0.5 * math.log(2.0)) - log_multigamma(
        0.5 * dof, d
    )
    ltri = l.shape[1]
    penalty = 0.0
    for ik in range(k):
        frob = 0.0
        for j in range(d):
            frob += qdiag[ik, j] * qdiag[ik, j]
        for t in range(ltri):
            frob += l[ik, t] * l[ik, t]
        penalty += 0.5 * gamma * gamma * frob - m * sum_qs[ik]
    return k * const - penalty


@numba.njit
def gmm_objective(alpha, mu, q, l, x, gamma, m):
    """GradBench ``gmm`` objective: GMM log posterior with a Wishart prior.

    ``Q_k (x_i - mu_k) = Q_k x_i - Q_k mu_k``, so the whole likelihood needs one
    matrix product: ``y = x @ qall`` with the ``Q_k^T`` side by side in ``qall``
    (``(d, k*d)``), which Numba hands to BLAS ``dgemm`` and gradjit differentiates
    with its BLAS rules (``qall`` gets ``x^T @ y_bar``; ``x`` is data).  This is how
    a Numba user speeds up :func:`gmm_objective_loops`, the all-loops version.

    Parameters
    ----------
    alpha : float64 array, shape (k,)
        Mixture weight logits (weights are ``softmax(alpha)``).
    mu : float64 array, shape (k, d)
        Component means.
    q : float64 array, shape (k, d)
        Logarithms of the diagonals of the ``Q_k`` factors.
    l : float64 array, shape (k, d*(d-1)//2)
        Strictly lower-triangular parts of the ``Q_k`` factors, column-major.
    x : float64 array, shape (n, d)
        Observations.
    gamma : float
        Wishart precision (``V = I / gamma**2``).
    m : int
        Additional Wishart degrees of freedom (``dof = d + m + 1``).

    Returns
    -------
    float
        ``log p(X | theta, phi) + log p(theta)``; see the module docstring.
    """
    k = mu.shape[0]
    d = mu.shape[1]
    n = x.shape[0]

    qdiag, sum_qs = diag_and_logdet(q)

    # qall[j, ik*d + i] = Q_k[i, j]: the transposed factors side by side.
    qall = np.zeros((d, k * d))
    for ik in range(k):
        t = 0
        for j in range(d):
            qall[j, ik * d + j] = qdiag[ik, j]
            for i in range(j + 1, d):
                qall[j, ik * d + i] = l[ik, t]
                t += 1
    # qmu[ik*d + i] = (Q_k mu_k)[i]
    qmu = np.zeros(k * d)
    for ik in range(k):
        for j in range(d):
            for i in range(j, d):
                qmu[ik * d + i] += qall[j, ik * d + i] * mu[ik, j]

    y = x @ qall  # (n, k*d): y[ix, ik*d + i] = (Q_k x_ix)[i]
    main_term = np.empty(k)
    slse = 0.0
    for ix in range(n):
        for ik in range(k):
            sqnorm = 0.0
            for i in range(d):
                r = y[ix, ik * d + i] - qmu[ik * d + i]
                sqnorm += r * r
            main_term[ik] = alpha[ik] + sum_qs[ik] - 0.5 * sqnorm
        slse += logsumexp(main_term)

    loglik = -n * (0.5 * d * math.log(2.0 * math.pi) + logsumexp(alpha)) + slse
    return loglik + log_wishart_prior(qdiag, sum_qs, l, gamma, m)


@numba.njit
def gmm_objective_loops(alpha, mu, q, l, x, gamma, m):
    """GradBench ``gmm`` objective, all loops (same arguments and value as
    :func:`gmm_objective`): ``Q_k (x_i - mu_k)`` as a triangular matrix-vector
    product per point and component, the way a Numba user writes it first.
    Arguments (shapes, dtypes) and return value as :func:`gmm_objective`.
    """
    k = mu.shape[0]
    d = mu.shape[1]
    n = x.shape[0]

    # Diagonals of Q_k and the log-determinants sum_j q[k, j].
    qdiag, sum_qs = diag_and_logdet(q)

    # Likelihood: sum over points of logsumexp over components.
    xcentered = np.empty(d)
    Qxcentered = np.empty(d)
    main_term = np.empty(k)
    slse = 0.0
    for ix in range(n):
        for ik in range(k):
            for j in range(d):
                xcentered[j] = x[ix, j] - mu[ik, j]
            # Qxcentered = Q_k @ xcentered, Q_k lower triangular.
            for j in range(d):
                Qxcentered[j] = qdiag[ik, j] * xcentered[j]
            t = 0
            for j in range(d):  # column of Q_k
                for i in range(j + 1, d):  # row of Q_k
                    Qxcentered[i] += l[ik, t] * xcentered[j]
                    t += 1
            sqnorm = 0.0
            for j in range(d):
                sqnorm += Qxcentered[j] * Qxcentered[j]
            main_term[ik] = alpha[ik] + sum_qs[ik] - 0.5 * sqnorm
        slse += logsumexp(main_term)

    loglik = -n * (0.5 * d * math.log(2.0 * math.pi) + logsumexp(alpha)) + slse
    return loglik + log_wishart_prior(qdiag, sum_qs, l, gamma, m)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def make_inputs(d, k, n, seed=31337, m=0, gamma=1.0):
    """Random inputs for :func:`gmm_objective`, drawn the way GradBench draws them.

    Matches ``generate`` in GradBench's ``python/gradbench/gradbench/evals/gmm/run.py``
    (checked against gradbench/gradbench at commit f26651a7): one
    ``numpy.random.default_rng(seed)`` (default seed 31337, as in the eval) and
    the draws, in this order,

    1. ``x``     : ``n`` rows of ``normal(size=d)``
    2. ``alpha`` : ``normal(size=k)``
    3. ``mu``    : ``k`` rows of ``uniform(size=d)`` (on [0, 1))
    4. ``q``     : ``k`` rows of ``normal(size=d)``
    5. ``l``     : ``k`` rows of ``normal(size=d*(d-1)//2)``

    with ``m = 0`` and ``gamma = 1.0`` by default (the eval's defaults).  Each
    row-by-row draw is done here as a single ``(rows, cols)`` draw, which
    consumes the generator identically and gives bit-identical arrays.
    (GradBench sends the values through JSON, which round-trips float64
    exactly.)

    Returns
    -------
    tuple
        ``(alpha, mu, q, l, x, gamma, m)`` in :func:`gmm_objective` argument
        order; arrays are C-contiguous float64 with the shapes documented there,
        ``gamma`` is a Python float and ``m`` a Python int.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    alpha = rng.normal(size=k)
    mu = rng.uniform(size=(k, d))
    q = rng.normal(size=(k, d))
    l = rng.normal(size=(k, d * (d - 1) // 2))
    return alpha, mu, q, l, x, float(gamma), int(m)


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def build_q_matrices(q, l):
    """The ``(k, d, d)`` lower-triangular factors ``Q_k`` from ``q`` and ``l``.

    The diagonal is ``exp(q)``; ``l[k]`` fills the strictly lower part column by
    column (GradBench's order).
    """
    q = np.asarray(q, dtype=np.float64)
    l = np.asarray(l, dtype=np.float64)
    k, d = q.shape
    Q = np.zeros((k, d, d))
    diag = np.arange(d)
    Q[:, diag, diag] = np.exp(q)
    # triu_indices lists (i, j), i < j, sorted by i then j; read as
    # (column, row) that is the strictly lower part in column-major order.
    cols, rows = np.triu_indices(d, 1)
    Q[:, rows, cols] = l
    return Q


def gmm_objective_reference(alpha, mu, q, l, x, gamma, m):
    """Vectorised NumPy/SciPy version of :func:`gmm_objective` (same arguments).

    Independent of the Numba code: it builds the ``Q_k`` matrices explicitly,
    uses ``scipy.special.logsumexp`` and ``scipy.special.multigammaln``, and
    evaluates the GradBench formula for all points and components at once
    (memory ``O(k * n * d)``).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    k, d = mu.shape
    n = x.shape[0]

    Q = build_q_matrices(q, l)  # (k, d, d)
    sum_qs = q.sum(axis=1)  # (k,)
    xc = x[None, :, :] - mu[:, None, :]  # (k, n, d)
    Qxc = np.einsum("kij,knj->kni", Q, xc)  # (k, n, d)
    beta = alpha[:, None] + sum_qs[:, None] - 0.5 * np.sum(Qxc**2, axis=2)  # (k, n)
    loglik = -n * (
        0.5 * d * np.log(2.0 * np.pi) + scipy.special.logsumexp(alpha)
    ) + np.sum(scipy.special.logsumexp(beta, axis=0))

    dof = d + m + 1
    logprior = (
        k
        * (
            dof * d * np.log(gamma / np.sqrt(2.0))
            - scipy.special.multigammaln(0.5 * dof, d)
        )
        - 0.5 * gamma**2 * np.sum(Q**2)
        + m * np.sum(sum_qs)
    )
    return float(loglik + logprior)


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "gmm"
PRIMAL, DERIVATIVE = "objective", "jacobian"
SIZES = {
    "quick": [dict(d=2, k=5, n=1000), dict(d=10, k=25, n=1000)],
    "default": [dict(d=d, k=k, n=1000) for d in (2, 10, 20) for k in (5, 10, 25)],
}
_ARGNUMS = (0, 1, 2, 3)


def generate(seed=31337, d=2, k=5, n=1000, m=0, gamma=1.0):
    """A GradBench ``gmm`` input (``generate`` of evals/gmm/run.py, same draws)."""
    alpha, mu, q, l, x, gamma, m = make_inputs(d, k, n, seed=seed, m=m, gamma=gamma)
    return {"d": d, "k": k, "n": n, "x": x.tolist(), "m": m, "gamma": gamma,
            "alpha": alpha.tolist(), "mu": mu.tolist(), "q": q.tolist(), "l": l.tolist()}


def prepare(function, input):
    """JSON input -> argument tuple of :func:`gmm_objective` (not timed)."""
    d = int(input["d"])
    f = lambda key, shape: np.ascontiguousarray(np.asarray(input[key], dtype=np.float64).reshape(shape))
    k = int(input["k"])
    return (f("alpha", (k,)), f("mu", (k, d)), f("q", (k, d)), f("l", (k, d * (d - 1) // 2)),
            f("x", (int(input["n"]), d)), float(input["gamma"]), int(input["m"]))


_grad = None


def evaluate(function, args):
    """The timed computation: the objective, or its gradient with gradjit."""
    global _grad
    if function == PRIMAL:
        return gmm_objective(*args)
    if function == DERIVATIVE:
        if _grad is None:
            import gradjit
            _grad = gradjit.grad(gmm_objective, argnums=_ARGNUMS)
        return _grad(*args)
    raise ValueError(f"gmm has no function {function!r}")


def output(function, result):
    if function == PRIMAL:
        return float(result)
    alpha, mu, q, l = result
    return {"alpha": alpha.tolist(), "mu": mu.tolist(), "q": q.tolist(), "l": l.tolist()}


def flat_problem(args):
    """``(f, theta0)``: the objective as a function of the flattened (alpha, mu, q, l)."""
    shapes = [args[a].shape for a in _ARGNUMS]
    sizes = [int(np.prod(s)) for s in shapes]
    theta0 = np.concatenate([args[a].ravel() for a in _ARGNUMS])

    def f(theta):
        parts, off = [], 0
        for s, n in zip(shapes, sizes):
            parts.append(np.ascontiguousarray(theta[off:off + n].reshape(s)))
            off += n
        return gmm_objective(*parts, *args[4:])
    return f, theta0


def flat_derivative(result):
    return np.concatenate([np.ravel(g) for g in result])
