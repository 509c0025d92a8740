"""JAX and PyTorch versions of GradBench ``ba`` (benchmarks/tools/{jax,torch}_ba.py)
against kernels.ba: the residuals and the sparse Jacobian from gradjit (compared as
the dense matrices ``flat_derivative`` returns at these sizes).  Skipped when the
framework is not installed."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402,F401  (imported before any kernel is compiled)
from kernels import ba as K  # noqa: E402


def _random_with_zero_rotation():
    cams, X, w, obs, feats = K.random_inputs(4, 7, 25, seed=4)
    cams[2, 0:3] = 0.0
    return cams, X, w, obs, feats


CASES = {
    "gradbench": lambda: K.prepare(K.DERIVATIVE, K.generate(n=5, m=40, p=100)),
    "random": _random_with_zero_rotation,
}


@pytest.mark.parametrize("tool,case", [("jax", "random"), ("torch", "random"),
                                       ("torch", "gradbench")])
def test_tool_matches_gradjit(tool, case):
    pytest.importorskip(tool)
    impl = importlib.import_module(f"benchmarks.tools.{tool}_ba")
    args = CASES[case]()
    primal, derivative = impl.make(args)
    for got, want in zip(primal(), K.evaluate(K.PRIMAL, args)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.max(np.abs(want)))
    want = K.flat_derivative(K.evaluate(K.DERIVATIVE, args))
    got = derivative()
    assert isinstance(got, np.ndarray) and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * float(np.max(np.abs(want))))


def test_sparse_beyond_dense_limit(monkeypatch):
    """Above DENSE_LIMIT entries the kernel and the tools return scipy.sparse CSR."""
    pytest.importorskip("torch")
    import scipy.sparse
    impl = importlib.import_module("benchmarks.tools.torch_ba")
    monkeypatch.setattr(K, "DENSE_LIMIT", 10)
    args = _random_with_zero_rotation()
    want = K.flat_derivative(K.evaluate(K.DERIVATIVE, args))
    got = impl.make(args)[1]()
    assert scipy.sparse.issparse(want) and scipy.sparse.issparse(got)
    assert abs(got - want).max() <= 1e-12 * abs(want).max()
