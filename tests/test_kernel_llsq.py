"""GradBench ``llsq`` kernel (kernels.llsq): objective and gradjit gradient.

The Numba objective is checked against the independent NumPy reference (a
Vandermonde matrix); the gradjit gradient (reverse mode) against central finite
differences of both, the analytic gradient ``-V^T r``, and forward mode (jvp).
"""
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402
from kernels import llsq as K  # noqa: E402

grad_llsq = gradjit.grad(K.llsq_objective, argnums=0)

# (n, m): odd n has t = 0 exactly (sign 0); m = 1 is a constant fit.
SIZES = [(16, 8), (17, 5), (2, 3), (9, 1), (64, 12)]


def central(f, x, n, i, eps=1e-6):
    xp, xm = x.copy(), x.copy()
    xp[i] += eps
    xm[i] -= eps
    return (f(xp, n) - f(xm, n)) / (2 * eps)


def x_for(n, m):
    return np.random.default_rng(n * 100 + m).random(m)


@pytest.mark.parametrize("n,m", SIZES)
def test_objective_matches_reference(n, m):
    x = x_for(n, m)
    assert K.llsq_objective(x, n) == pytest.approx(
        K.llsq_objective_reference(x, n), rel=1e-13)


def test_objective_matches_reference_gradbench_sizes():
    for n in (16, 1024, 16392):
        args = K.prepare(K.PRIMAL, K.generate(n=n, m=128))
        assert args[0].shape == (128,) and args[1] == n
        assert K.evaluate(K.PRIMAL, args) == pytest.approx(
            K.llsq_objective_reference(*args), rel=1e-12)


@pytest.mark.parametrize("n,m", SIZES)
def test_gradient_matches_finite_differences(n, m):
    x = x_for(n, m)
    g = grad_llsq(x, n)
    assert isinstance(g, np.ndarray) and g.shape == (m,) and g.dtype == np.float64
    scale = max(1.0, np.max(np.abs(g)))
    for i in range(m):
        fd = central(K.llsq_objective, x, n, i)
        ref = central(K.llsq_objective_reference, x, n, i)
        assert abs(g[i] - fd) <= 1e-7 * scale, (i, g[i], fd)
        assert abs(g[i] - ref) <= 1e-7 * scale, (i, g[i], ref)
    np.testing.assert_allclose(g, K.llsq_gradient_reference(x, n), rtol=1e-11,
                               atol=1e-12 * scale)


def test_gradient_gradbench_size_matches_analytic():
    args = K.prepare(K.DERIVATIVE, K.generate(n=1024, m=128))
    g = K.evaluate(K.DERIVATIVE, args)
    want = K.llsq_gradient_reference(*args)
    np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-11 * np.max(np.abs(want)))


def test_reverse_matches_forward():
    jvp = gradjit.jvp(K.llsq_objective)
    rng = np.random.default_rng(5)
    for n, m in SIZES:
        x = x_for(n, m)
        g = grad_llsq(x, n)
        t = rng.normal(size=m)
        value, tout = jvp((x, n), (t, None))
        assert value == pytest.approx(K.llsq_objective_reference(x, n), rel=1e-13)
        assert tout == pytest.approx(float(g @ t), rel=1e-11, abs=1e-12)


def test_interface_round_trip():
    inp = K.generate(n=32, m=128)
    # GradBench's generate: one seed, then one draw per (n, m) sorted by n * m.
    np.random.seed(31337)
    np.random.rand(128)                      # (16, 128)
    assert inp == {"x": np.random.rand(128).tolist(), "n": 32}
    args = K.prepare(K.DERIVATIVE, inp)
    res = K.evaluate(K.DERIVATIVE, args)
    assert len(K.output(K.DERIVATIVE, res)) == 128
    assert isinstance(K.output(K.PRIMAL, K.evaluate(K.PRIMAL, args)), float)
    f, theta = K.flat_problem(args)
    d = K.flat_derivative(res)
    assert d.shape == theta.shape == (128,)
    for i in (0, 1, 50, 127):
        e = np.zeros(128)
        e[i] = 1e-6
        fd = (f(theta + e) - f(theta - e)) / 2e-6
        assert abs(d[i] - fd) <= 1e-6 * max(1.0, abs(fd))
