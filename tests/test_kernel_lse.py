"""GradBench ``lse`` kernel (kernels.lse): objective and gradjit gradient.

The Numba objective is checked against the independent NumPy reference; the
gradjit gradient (reverse mode) against central finite differences of both, the
analytic gradient softmax(x), and forward mode (jvp).
"""
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402
from kernels import lse as K  # noqa: E402

grad_lse = gradjit.grad(K.lse)


def central(f, x, i, eps=1e-6):
    xp, xm = x.copy(), x.copy()
    xp[i] += eps
    xm[i] -= eps
    return (f(xp) - f(xm)) / (2 * eps)


def inputs():
    rng = np.random.default_rng(7)
    return [
        K.make_inputs(2500)[:7],
        np.array([3.0]),
        rng.normal(size=12) * 30.0,          # wide range: the max matters
        np.array([-5.0, 1.0, 0.5, 1.0 - 1e-3, -700.0]),
        rng.uniform(-100, 100, size=9),      # GradBench's --min/--max range
    ]


@pytest.mark.parametrize("k", range(5))
def test_objective_matches_reference(k):
    x = inputs()[k]
    assert K.lse(x) == pytest.approx(K.lse_reference(x), rel=1e-14, abs=1e-14)


def test_objective_matches_reference_gradbench_sizes():
    for n in (2500, 20000):
        x = K.prepare(K.PRIMAL, K.generate(n=n))[0]
        assert K.evaluate(K.PRIMAL, (x,)) == pytest.approx(K.lse_reference(x), rel=1e-13)


@pytest.mark.parametrize("k", range(5))
def test_gradient_matches_finite_differences(k):
    x = inputs()[k]
    g = grad_lse(x)
    assert isinstance(g, np.ndarray) and g.shape == x.shape and g.dtype == np.float64
    for i in range(x.shape[0]):
        fd = central(K.lse, x, i)
        ref = central(K.lse_reference, x, i)
        assert abs(g[i] - fd) <= 1e-7, (i, g[i], fd)
        assert abs(g[i] - ref) <= 1e-7, (i, g[i], ref)
    np.testing.assert_allclose(g, K.lse_gradient_reference(x), rtol=1e-12, atol=1e-15)


def test_reverse_matches_forward():
    jvp = gradjit.jvp(K.lse)
    rng = np.random.default_rng(3)
    for x in inputs():
        g = grad_lse(x)
        t = rng.normal(size=x.shape)
        value, tout = jvp((x,), (t,))
        assert value == pytest.approx(K.lse_reference(x), rel=1e-14, abs=1e-14)
        assert tout == pytest.approx(float(g @ t), rel=1e-12, abs=1e-14)


def test_interface_round_trip():
    inp = K.generate(n=5000)
    # GradBench's generate: one seed, then one draw per size in order.
    np.random.seed(31337)
    np.random.rand(2500)
    assert inp["x"] == np.random.rand(5000).tolist()
    args = K.prepare(K.DERIVATIVE, inp)
    res = K.evaluate(K.DERIVATIVE, args)
    out = K.output(K.DERIVATIVE, res)
    assert isinstance(out, list) and len(out) == 5000
    assert isinstance(K.output(K.PRIMAL, K.evaluate(K.PRIMAL, args)), float)
    f, theta = K.flat_problem(args)
    d = K.flat_derivative(res)
    assert d.shape == theta.shape
    for i in (0, 17, 4999):
        assert abs(d[i] - central(f, theta, i)) <= 1e-8
    assert d.sum() == pytest.approx(1.0, rel=1e-12)
