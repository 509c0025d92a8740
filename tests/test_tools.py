"""JAX and PyTorch versions of the GradBench objectives (benchmarks/tools/) against
the kernels: the primal value and the derivative from gradjit.  Skipped when the
framework is not installed.  (lstm, ba and ht have files of their own.)"""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402,F401  (imported before any kernel is compiled)

# (eval, size, input overrides)
CASES = [
    ("gmm", dict(d=3, k=4, n=50), {}),
    ("lse", dict(n=20000), {}),
    ("llsq", dict(n=1024, m=128), {}),
    ("ode", dict(n=1000, s=10), {}),
    ("ode", dict(n=9, s=3), {"x": np.linspace(0.6, 1.8, 9).tolist()}),   # non-negligible gradient
]


@pytest.mark.parametrize("tool", ["jax", "torch"])
@pytest.mark.parametrize("name,size,override", CASES,
                         ids=[f"{c[0]}-" + ",".join(f"{k}={v}" for k, v in c[1].items()) for c in CASES])
def test_tool_matches_gradjit(tool, name, size, override):
    pytest.importorskip(tool)
    K = importlib.import_module(f"kernels.{name}")
    impl = importlib.import_module(f"benchmarks.tools.{tool}_{name}")
    inp = K.generate(**size)
    inp.update(override)
    args = K.prepare(K.DERIVATIVE, inp)
    primal, derivative = impl.make(args)
    want_p = np.asarray(K.evaluate(K.PRIMAL, args), dtype=np.float64)
    np.testing.assert_allclose(np.asarray(primal(), dtype=np.float64), want_p, rtol=1e-10,
                               atol=1e-12 * max(1.0, float(np.max(np.abs(want_p)))))
    want = K.flat_derivative(K.evaluate(K.DERIVATIVE, args))
    got = np.asarray(derivative(), dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9,
                               atol=1e-12 * max(1.0, float(np.max(np.abs(want)))))
