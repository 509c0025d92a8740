"""GradBench ``ode``: a Runge-Kutta ODE solution and the gradient of its last element.

This is the GradBench ``ode`` eval (``evals/ode/README.md`` in
https://github.com/gradbench/gradbench), adapted there from the ``an_ode``
benchmark of cmpad (https://cmpad.readthedocs.io/an_ode.html).  Given ``x``
(``n`` doubles) and an int number of steps ``s >= 1``, solve on ``t in [0, 2]``::

    y_0'(t) = x_0
    y_i'(t) = x_i * y_{i-1}(t)          for i > 0
    y_i(0)  = 0                         for all i

with ``s`` steps of the classical fourth-order Runge-Kutta method (step
``h = 2 / s``)::

    k1 = f(y)
    k2 = f(y + h/2 * k1)
    k3 = f(y + h/2 * k2)
    k4 = f(y + h * k3)
    y  = y + h * (k1 + 2 k2 + 2 k3 + k4) / 6

where ``f(y)_0 = x_0`` and ``f(y)_i = x_i * y_{i-1}``.  The README writes the
right-hand side as ``sum_{j=1}^{i} x_j y_{i-1}``; the eval's golden
implementation (``cpp/gradbench/evals/ode.hpp``, which GradBench validates
against) and cmpad use ``x_i * y_{i-1}``, and that is what is computed here.

The eval has two functions: ``primal`` (the ``n``-vector ``y(2)``) and
``gradient`` (the gradient of the *last* element ``y_{n-1}(2)`` with respect
to ``x``, an ``n``-vector).  The step ``s`` is not differentiated.

:func:`ode_primal` is the Numba kernel (loops and scratch arrays, as a Numba user
writes it); :func:`ode_last` returns its last element and is what gradjit
differentiates in reverse mode (the sequential loop over steps is taped).
:func:`ode_primal_reference` is an independent vectorised NumPy version.  For
``n <= 4`` Runge-Kutta 4 is exact here (the solution is a polynomial of degree
``<= 4``: ``y_i(t) = x_0 ... x_i * t**(i+1) / (i+1)!``), which the tests use too.
"""

import numba
import numpy as np

from kernels._gradbench import replay_global_draws

__all__ = ["ode_fun", "ode_primal", "ode_last", "ode_primal_reference", "make_inputs"]

#: Final time of the integration (GradBench's ``tf``).
TF = 2.0


# ---------------------------------------------------------------------------
# Numba kernel
# ---------------------------------------------------------------------------


@numba.njit
def ode_fun(x, y, z):
    """Right-hand side ``z = f(y)``: ``z[0] = x[0]``, ``z[i] = x[i] * y[i-1]``.

    ``x``, ``y``, ``z``: float64 arrays of shape (n,); ``z`` is written.
    """
    z[0] = x[0]
    for i in range(1, x.shape[0]):
        z[i] = x[i] * y[i - 1]


@numba.njit
def ode_primal(x, s):
    """GradBench ``ode`` primal: ``y(2)`` after ``s`` Runge-Kutta 4 steps.

    Parameters
    ----------
    x : float64 array, shape (n,), n >= 1
        Coefficients of the ODE.
    s : int >= 1
        Number of steps.

    Returns
    -------
    float64 array, shape (n,)
        The approximate solution at ``t = 2``.
    """
    n = x.shape[0]
    h = TF / s
    k1 = np.empty(n)
    k2 = np.empty(n)
    k3 = np.empty(n)
    k4 = np.empty(n)
    y_tmp = np.empty(n)
    yf = np.zeros(n)
    for _ in range(s):
        ode_fun(x, yf, k1)
        for i in range(n):
            y_tmp[i] = yf[i] + h * k1[i] / 2.0
        ode_fun(x, y_tmp, k2)
        for i in range(n):
            y_tmp[i] = yf[i] + h * k2[i] / 2.0
        ode_fun(x, y_tmp, k3)
        for i in range(n):
            y_tmp[i] = yf[i] + h * k3[i]
        ode_fun(x, y_tmp, k4)
        for i in range(n):
            yf[i] += h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0
    return yf


@numba.njit
def ode_last(x, s):
    """The last element ``y_{n-1}(2)`` of :func:`ode_primal` (float); the function
    whose gradient with respect to ``x`` (shape (n,)) is the eval's ``gradient``."""
    yf = ode_primal(x, s)
    return yf[yf.shape[0] - 1]


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

#: GradBench's default sizes (``-n`` and ``-s`` of ``evals/ode/run.py``).
DEFAULT_N = [1000, 10000, 100000]
DEFAULT_S = [1, 10, 100]


def _default_order():
    # run.py's order: sorted by n * s (stable, from the n-major product).
    return sorted([(n, s) for n in DEFAULT_N for s in DEFAULT_S], key=lambda v: v[0] * v[1])


def make_inputs(n, s, seed=31337):
    """The vector ``x`` GradBench sends for sizes ``(n, s)``: float64, shape ``(n,)``.

    GradBench's ``generate`` (``python/gradbench/gradbench/evals/ode/run.py``,
    checked at gradbench/gradbench commit f26651a7) calls
    ``np.random.seed(31337)`` once, sorts the ``(n, s)`` combinations by
    ``n * s`` and draws ``x = np.random.rand(n)`` (uniform on [0, 1)) for each in
    turn.  For a combination of the default lists this replays those draws and
    returns exactly GradBench's ``x``; otherwise the first draw after seeding.
    """
    return replay_global_draws(seed, _default_order(), (n, s), lambda key: key[0])


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def ode_primal_reference(x, s):
    """Vectorised NumPy Runge-Kutta 4 solution ``y(2)``, float64 shape ``(n,)``."""
    x = np.asarray(x, dtype=np.float64)
    h = TF / int(s)

    def f(y):
        return np.concatenate([x[:1], x[1:] * y[:-1]])

    y = np.zeros_like(x)
    for _ in range(int(s)):
        k1 = f(y)
        k2 = f(y + (h / 2) * k1)
        k3 = f(y + (h / 2) * k2)
        k4 = f(y + h * k3)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def ode_exact(x, t=TF):
    """Exact solution ``y_i(t) = x_0 ... x_i * t**(i+1) / (i+1)!`` (shape ``(n,)``)."""
    x = np.asarray(x, dtype=np.float64)
    i = np.arange(1, x.shape[0] + 1)
    return np.cumprod(x) * np.cumprod(t / i)


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "ode"
PRIMAL, DERIVATIVE = "primal", "gradient"
SIZES = {
    "quick": [dict(n=1000, s=10), dict(n=10000, s=10)],
    "default": [dict(n=n, s=s) for n, s in _default_order()],
}


def generate(seed=31337, n=1000, s=1):
    """A GradBench ``ode`` input ``{"x": [...], "s": s}`` (see :func:`make_inputs`)."""
    return {"x": make_inputs(n, s, seed=seed).tolist(), "s": int(s)}


def prepare(function, input):
    """JSON input -> ``(x, s)``: C-contiguous float64 ``(n,)`` and an int (not timed)."""
    return (np.ascontiguousarray(np.asarray(input["x"], dtype=np.float64)), int(input["s"]))


_grad = None


def evaluate(function, args):
    """The timed computation: :func:`ode_primal`, or the gradient of :func:`ode_last`
    with gradjit (reverse mode)."""
    global _grad
    if function == PRIMAL:
        return ode_primal(*args)
    if function == DERIVATIVE:
        if _grad is None:
            import gradjit
            _grad = gradjit.grad(ode_last, argnums=0)
        return _grad(*args)
    raise ValueError(f"ode has no function {function!r}")


def output(function, result):
    return np.asarray(result, dtype=np.float64).tolist()


def flat_problem(args):
    """``(f, theta0)``: ``f(theta) = ode_last(theta, s)`` (the differentiated scalar)."""
    x, s = args
    return (lambda theta: ode_last(np.ascontiguousarray(theta), s)), x.copy()


def flat_derivative(result):
    return np.asarray(result, dtype=np.float64).ravel()
