"""The examples run and do what they say."""
import sys
from pathlib import Path

import numpy as np

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from examples import train_in_numba  # noqa: E402


def test_training_loop_in_numba_calls_the_gradient():
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 200)
    y = 1.5 * np.sin(0.8 * x) + 0.3
    theta = np.array([1.0, 1.0, 0.0])
    history = train_in_numba.train(theta, x, y, 400, 0.05)
    assert history[-1] < 1e-3 * history[0]
    np.testing.assert_allclose(theta, [1.5, 0.8, 0.3], atol=1e-2)


def test_gpu_training_loop_runs_on_the_emulator():
    pytest = __import__("pytest")
    pytest.importorskip("numba.cuda")
    from examples import gpu_fit
    history, params = gpu_fit.fit(steps=120, samples=128, emulate=True, log=None)
    assert history[-1] < 0.05 * history[0]
    np.testing.assert_allclose(np.asarray(params), [1.3, 2.0, 0.3, 0.4], atol=0.05)


def test_prange_heat_fit_recovers_the_coefficient():
    from examples import prange_heat_fit
    history, kappa = prange_heat_fit.fit(n=300, steps=60, iters=25, log=None)
    assert history[-1] < 1e-6 * history[0]
    assert abs(kappa - 0.23) < 1e-3
