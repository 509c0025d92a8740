"""JAX and PyTorch versions of GradBench ``lstm`` (benchmarks/tools/{jax,torch}_lstm.py)
against kernels.lstm: the primal value and the gradient from gradjit.  Skipped when
the framework is not installed."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402,F401  (imported before any kernel is compiled)
from kernels import lstm as K  # noqa: E402


@pytest.mark.parametrize("tool", ["jax", "torch"])
@pytest.mark.parametrize("l,c", [(3, 15)])
def test_tool_matches_gradjit(tool, l, c):
    pytest.importorskip(tool)
    impl = importlib.import_module(f"benchmarks.tools.{tool}_lstm")
    args = K.prepare(K.DERIVATIVE, K.generate(seed=l, l=l, c=c))
    primal, derivative = impl.make(args)
    assert primal() == pytest.approx(K.evaluate(K.PRIMAL, args), rel=1e-12)
    want = K.flat_derivative(K.evaluate(K.DERIVATIVE, args))
    got = np.asarray(derivative(), dtype=np.float64)
    assert got.shape == want.shape == (8 * l * args[3].shape[1] + 3 * args[3].shape[1],)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * float(np.max(np.abs(want))))
