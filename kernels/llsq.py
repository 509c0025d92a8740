"""GradBench ``llsq``: a linear least-squares objective and its gradient.

This is the GradBench ``llsq`` eval (``evals/llsq/README.md`` in
https://github.com/gradbench/gradbench), adapted there from the ``llsq_obj``
benchmark of cmpad (https://cmpad.readthedocs.io/llsq_obj.html).  Given the
coefficients ``x`` (``m`` doubles) and an int ``n >= 2``::

    t_i  = -1 + i * 2 / (n - 1)            i = 0 .. n-1
    s_i  = sign(t_i)                       (sign(0) = 0)
    y(x) = 1/2 * sum_i (s_i - x_0 - x_1 t_i - x_2 t_i**2 - ... - x_{m-1} t_i**(m-1))**2

i.e. half the squared residual of fitting the sign function on ``n`` equally
spaced points of [-1, 1] with a polynomial of degree ``m - 1``.  The eval has two
functions: ``primal`` (the float ``y(x)``) and ``gradient`` (the ``m``-vector
``dy/dx``).  As in GradBench's reference, the powers of ``t_i`` are built by
repeated multiplication inside the loop over the coefficients.

:func:`llsq_objective` is the Numba kernel (loops, as a Numba user writes it);
gradjit differentiates it in reverse mode.  :func:`llsq_objective_reference` is
an independent NumPy version (a Vandermonde matrix), with the analytic gradient
:func:`llsq_gradient_reference` ``= -V^T r``.
"""

import numba
import numpy as np

from kernels._gradbench import replay_global_draws

__all__ = [
    "llsq_objective",
    "llsq_objective_reference",
    "llsq_gradient_reference",
    "make_inputs",
]


# ---------------------------------------------------------------------------
# Numba kernel
# ---------------------------------------------------------------------------


@numba.njit
def llsq_objective(x, n):
    """GradBench ``llsq`` objective ``y(x)``.

    Parameters
    ----------
    x : float64 array, shape (m,)
        Polynomial coefficients, lowest degree first.
    n : int >= 2
        Number of sample points ``t_i`` on [-1, 1].

    Returns
    -------
    float
        ``0.5 * sum_i (sign(t_i) - sum_j x[j] * t_i**j)**2``.
    """
    m = x.shape[0]
    total = 0.0
    for i in range(n):
        ti = -1.0 + i * 2.0 / (n - 1)
        r = np.sign(ti)
        power = 1.0
        for j in range(m):
            r -= x[j] * power
            power *= ti
        total += r * r
    return total / 2.0


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

#: GradBench's default sizes (``-n`` and ``-m`` of ``evals/llsq/run.py``).
DEFAULT_N = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8196, 16392]
DEFAULT_M = [128]


def _default_order():
    # run.py's order: sorted by n * m (stable, from the n-major product).
    return sorted([(n, m) for n in DEFAULT_N for m in DEFAULT_M], key=lambda v: v[0] * v[1])


def make_inputs(n, m, seed=31337):
    """The coefficients ``x`` GradBench sends for sizes ``(n, m)``: float64, shape ``(m,)``.

    GradBench's ``generate`` (``python/gradbench/gradbench/evals/llsq/run.py``,
    checked at gradbench/gradbench commit f26651a7) calls
    ``np.random.seed(31337)`` once, sorts the ``(n, m)`` combinations by
    ``n * m`` and draws ``x = np.random.rand(m)`` (uniform on [0, 1)) for each in
    turn.  For a combination of the default lists this replays those draws and
    returns exactly GradBench's ``x``; otherwise the first draw after seeding.
    """
    return replay_global_draws(seed, _default_order(), (n, m), lambda key: key[1])


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def _vandermonde(n, m):
    t = -1.0 + np.arange(n, dtype=np.float64) * 2.0 / (n - 1)
    return t, np.vander(t, m, increasing=True)  # (n,), (n, m): V[i, j] = t_i**j


def llsq_objective_reference(x, n):
    """Vectorised NumPy ``y(x)`` (float): ``0.5 * ||sign(t) - V x||^2``."""
    x = np.asarray(x, dtype=np.float64)
    t, V = _vandermonde(int(n), x.shape[0])
    r = np.sign(t) - V @ x
    return float(0.5 * (r @ r))


def llsq_gradient_reference(x, n):
    """Analytic gradient ``-V^T (sign(t) - V x)``, float64 shape ``(m,)``."""
    x = np.asarray(x, dtype=np.float64)
    t, V = _vandermonde(int(n), x.shape[0])
    return -(V.T @ (np.sign(t) - V @ x))


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "llsq"
PRIMAL, DERIVATIVE = "primal", "gradient"
SIZES = {
    "quick": [dict(n=64, m=128), dict(n=1024, m=128)],
    "default": [dict(n=n, m=m) for n, m in _default_order()],
}


def generate(seed=31337, n=16, m=128):
    """A GradBench ``llsq`` input ``{"x": [...], "n": n}`` (see :func:`make_inputs`)."""
    return {"x": make_inputs(n, m, seed=seed).tolist(), "n": int(n)}


def prepare(function, input):
    """JSON input -> ``(x, n)``: C-contiguous float64 ``(m,)`` and an int (not timed)."""
    return (np.ascontiguousarray(np.asarray(input["x"], dtype=np.float64)), int(input["n"]))


_grad = None


def evaluate(function, args):
    """The timed computation: :func:`llsq_objective`, or its gradient with gradjit."""
    global _grad
    if function == PRIMAL:
        return llsq_objective(*args)
    if function == DERIVATIVE:
        if _grad is None:
            import gradjit
            _grad = gradjit.grad(llsq_objective, argnums=0)
        return _grad(*args)
    raise ValueError(f"llsq has no function {function!r}")


def output(function, result):
    if function == PRIMAL:
        return float(result)
    return np.asarray(result).tolist()


def flat_problem(args):
    """``(f, theta0)``: ``f(theta) = llsq_objective(theta, n)``."""
    x, n = args
    return (lambda theta: llsq_objective(np.ascontiguousarray(theta), n)), x.copy()


def flat_derivative(result):
    return np.asarray(result, dtype=np.float64).ravel()
