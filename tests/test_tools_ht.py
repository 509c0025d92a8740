"""JAX and PyTorch versions of the ``ht`` eval (benchmarks/tools) agree with gradjit
and with the Numba residuals.  Skipped when the framework is not installed."""
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kernels import ht  # noqa: E402


@pytest.fixture(scope="module", params=["simple", "complicated"])
def case(request):
    p = ht.make_problem(request.param, "small", 100)
    return p, ht.ht_residuals(p), np.asarray(ht.evaluate(ht.DERIVATIVE, p))


@pytest.mark.parametrize("tool", ["jax", "torch"])
def test_tool_matches_gradjit(tool, case):
    pytest.importorskip(tool)
    from importlib import import_module

    impl = import_module(f"benchmarks.tools.{tool}_ht")
    p, res, jac = case
    primal, derivative = impl.make(p)
    np.testing.assert_allclose(np.asarray(primal()), res, rtol=1e-12, atol=1e-12)
    got = np.asarray(derivative())
    assert got.shape == jac.shape
    np.testing.assert_allclose(got, jac, rtol=1e-10, atol=1e-11)
