"""Gradient of the GradBench GMM objective (kernels.gmm) with gradjit.

Checked against central finite differences of the Numba objective and of the
independent NumPy/SciPy reference (kernels.gmm.gmm_objective_reference), on
inputs drawn as GradBench draws them, and reverse mode against forward mode.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import central

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402
from kernels.gmm import gmm_objective, gmm_objective_reference, make_inputs  # noqa: E402

ARGNUMS = (0, 1, 2, 3)
grad_gmm = gradjit.grad(gmm_objective, argnums=ARGNUMS)




def coords(args, count, rng):
    allc = [(k, idx) for k in ARGNUMS for idx in np.ndindex(args[k].shape)]
    if count is None or len(allc) <= count:
        return allc
    return [allc[i] for i in rng.choice(len(allc), count, replace=False)]


@pytest.mark.parametrize("d,k,n,count", [
    (2, 5, 1000, None), (10, 5, 1000, 120), (2, 25, 1000, 120), (10, 25, 1000, 80),
    (20, 10, 1000, 60), (20, 25, 1000, 40), (3, 4, 10, None),
])
def test_gmm_gradient_matches_finite_differences(d, k, n, count):
    args = make_inputs(d, k, n)
    grads = grad_gmm(*args)
    rng = np.random.default_rng(d * 100 + k)
    scale = max(np.max(np.abs(g)) for g in grads)
    for kk, idx in coords(args, count, rng):
        got = grads[ARGNUMS.index(kk)][idx]
        fd = central(gmm_objective, args, kk, idx, 1e-5)
        ref = central(gmm_objective_reference, args, kk, idx, 1e-5)
        tol = 1e-6 * max(abs(fd), 1e-2 * scale) + 1e-7
        assert abs(got - fd) <= tol, (kk, idx, got, fd)
        assert abs(got - ref) <= 10 * tol, (kk, idx, got, ref)


@pytest.mark.parametrize("m,gamma", [(0, 1.0), (2, 0.7)])
def test_gmm_reverse_matches_forward(m, gamma):
    args = list(make_inputs(4, 3, 30, m=m, gamma=gamma))
    grads = grad_gmm(*args)
    jvp = gradjit.jvp(gmm_objective)
    rng = np.random.default_rng(1)
    tangents = [rng.normal(size=args[a].shape) for a in ARGNUMS]
    value, tout = jvp(tuple(args), tuple(tangents) + (None, None, None))
    assert value == pytest.approx(gmm_objective_reference(*args), rel=1e-12)
    want = sum(np.sum(g * t) for g, t in zip(grads, tangents))
    assert tout == pytest.approx(want, rel=1e-10)


def test_gmm_value_and_grad_value_is_the_objective():
    args = make_inputs(3, 4, 50)
    value, grads = gradjit.value_and_grad(gmm_objective, argnums=ARGNUMS)(*args)
    assert value == pytest.approx(gmm_objective_reference(*args), rel=1e-12)
    assert [g.shape for g in grads] == [args[a].shape for a in ARGNUMS]
