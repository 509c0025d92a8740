"""GradBench ``lse``: LogSumExp of a vector and its gradient.

This is the GradBench ``lse`` eval (``evals/lse/README.md`` in
https://github.com/gradbench/gradbench).  For a vector ``x`` of ``n`` doubles,
with the LogSumExp trick::

    a      = max_i x[i]
    LSE(x) = a + log(sum_i exp(x[i] - a))

The eval has two functions: ``primal`` (the float ``LSE(x)``) and ``gradient``
(the ``n``-vector ``d LSE / d x``, which is ``softmax(x)``).  As the README asks,
the Numba kernel :func:`lse` is written in terms of its primitive elements (a
running maximum and a sum in plain loops); gradjit differentiates it in reverse
mode, including through the maximum (whose contribution cancels analytically).

:func:`lse_reference` is an independent vectorised NumPy version used by the
tests.
"""

import math

import numba
import numpy as np

from kernels._gradbench import replay_global_draws

__all__ = ["lse", "lse_reference", "make_inputs"]


# ---------------------------------------------------------------------------
# Numba kernel
# ---------------------------------------------------------------------------


@numba.njit
def lse(x):
    """LogSumExp of ``x``, stabilised by its maximum.

    Parameters
    ----------
    x : float64 array, shape (n,), n >= 1

    Returns
    -------
    float
        ``max(x) + log(sum(exp(x - max(x))))``.
    """
    a = x[0]
    for i in range(1, x.shape[0]):
        a = max(a, x[i])
    s = 0.0
    for i in range(x.shape[0]):
        s += math.exp(x[i] - a)
    return a + math.log(s)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

#: GradBench's default sizes, in the order ``evals/lse/run.py`` draws them.
DEFAULT_N = [2500, 5000, 10000, 20000, 40000, 80000, 160000, 320000, 640000, 1280000]


def make_inputs(n, seed=31337):
    """The vector ``x`` GradBench sends for size ``n`` (float64, shape ``(n,)``).

    GradBench's ``generate`` (``python/gradbench/gradbench/evals/lse/run.py``,
    checked at gradbench/gradbench commit f26651a7) calls
    ``np.random.seed(31337)`` once and then draws ``x = np.random.rand(n)`` for
    each ``n`` of its size list in turn (values uniform on [0, 1)), so the input
    for one size depends on the draws before it.  For an ``n`` of the default list
    :data:`DEFAULT_N` this replays those draws and returns exactly GradBench's
    ``x``; for any other ``n`` it returns the first draw after seeding.
    """
    return replay_global_draws(seed, list(DEFAULT_N), n, lambda size: size)


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def lse_reference(x):
    """Vectorised NumPy LogSumExp of a 1-d array (float)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.max(x)
    return float(a + np.log(np.sum(np.exp(x - a))))


def lse_gradient_reference(x):
    """Analytic gradient of :func:`lse_reference`: ``softmax(x)``, shape ``(n,)``."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "lse"
PRIMAL, DERIVATIVE = "primal", "gradient"
SIZES = {
    "quick": [dict(n=2500), dict(n=80000)],
    "default": [dict(n=n) for n in DEFAULT_N],
}


def generate(seed=31337, n=2500):
    """A GradBench ``lse`` input ``{"x": [...]}`` (see :func:`make_inputs`)."""
    return {"x": make_inputs(n, seed=seed).tolist()}


def prepare(function, input):
    """JSON input -> ``(x,)``, ``x`` a C-contiguous float64 array (not timed)."""
    return (np.ascontiguousarray(np.asarray(input["x"], dtype=np.float64)),)


_grad = None


def evaluate(function, args):
    """The timed computation: :func:`lse`, or its gradient with gradjit."""
    global _grad
    if function == PRIMAL:
        return lse(*args)
    if function == DERIVATIVE:
        if _grad is None:
            import gradjit
            _grad = gradjit.grad(lse, argnums=0)
        return _grad(*args)
    raise ValueError(f"lse has no function {function!r}")


def output(function, result):
    if function == PRIMAL:
        return float(result)
    return np.asarray(result).tolist()


def flat_problem(args):
    """``(f, theta0)``: ``f = lse`` on the flat vector ``x``."""
    x = args[0]
    return (lambda theta: lse(np.ascontiguousarray(theta))), x.copy()


def flat_derivative(result):
    return np.asarray(result, dtype=np.float64).ravel()
