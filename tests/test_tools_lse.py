"""JAX and PyTorch versions of GradBench ``lse`` (benchmarks/tools/{jax,torch}_lse.py)
against kernels.lse: the primal value and the derivative from gradjit.  Skipped
when the framework is not installed."""
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402,F401  (imported before any kernel is compiled)
from kernels import lse as K  # noqa: E402

SIZES = [dict(n=20000)]

@pytest.mark.parametrize("tool", ["jax", "torch"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_tool_matches_gradjit(tool, size):
    pytest.importorskip(tool)
    import importlib
    impl = importlib.import_module(f"benchmarks.tools.{tool}_lse")
    args = K.prepare(K.DERIVATIVE, K.generate(**size))
    primal, derivative = impl.make(args)
    want_p = np.asarray(K.evaluate(K.PRIMAL, args), dtype=np.float64)
    np.testing.assert_allclose(np.asarray(primal(), dtype=np.float64), want_p, rtol=1e-10,
                               atol=1e-12 * max(1.0, float(np.max(np.abs(want_p)))))
    want = K.flat_derivative(K.evaluate(K.DERIVATIVE, args))
    got = np.asarray(derivative(), dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * max(1.0, float(np.max(np.abs(want)))))
