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
from kernels.gmm import (  # noqa: E402
    gmm_objective, gmm_objective_loops, gmm_objective_reference, make_inputs)

ARGNUMS = (0, 1, 2, 3)
# the BLAS version (one ``@``) and the all-loops version of the same objective
OBJECTIVES = {"blas": gmm_objective, "loops": gmm_objective_loops}
GRADS = {name: gradjit.grad(f, argnums=ARGNUMS) for name, f in OBJECTIVES.items()}




def coords(args, count, rng):
    allc = [(k, idx) for k in ARGNUMS for idx in np.ndindex(args[k].shape)]
    if count is None or len(allc) <= count:
        return allc
    return [allc[i] for i in rng.choice(len(allc), count, replace=False)]


@pytest.mark.parametrize("d,k,n,count", [
    (2, 5, 1000, None), (10, 5, 1000, 120), (2, 25, 1000, 120), (10, 25, 1000, 80),
    (20, 10, 1000, 60), (20, 25, 1000, 40), (3, 4, 10, None),
])
@pytest.mark.parametrize("version", sorted(OBJECTIVES))
def test_gmm_gradient_matches_finite_differences(version, d, k, n, count):
    objective = OBJECTIVES[version]
    args = make_inputs(d, k, n)
    grads = GRADS[version](*args)
    rng = np.random.default_rng(d * 100 + k)
    scale = max(np.max(np.abs(g)) for g in grads)
    for kk, idx in coords(args, count, rng):
        got = grads[ARGNUMS.index(kk)][idx]
        fd = central(objective, args, kk, idx, 1e-5)
        ref = central(gmm_objective_reference, args, kk, idx, 1e-5)
        tol = 1e-6 * max(abs(fd), 1e-2 * scale) + 1e-7
        assert abs(got - fd) <= tol, (kk, idx, got, fd)
        assert abs(got - ref) <= 10 * tol, (kk, idx, got, ref)


@pytest.mark.parametrize("version", sorted(OBJECTIVES))
@pytest.mark.parametrize("m,gamma", [(0, 1.0), (2, 0.7)])
def test_gmm_reverse_matches_forward(m, gamma, version):
    args = list(make_inputs(4, 3, 30, m=m, gamma=gamma))
    grads = GRADS[version](*args)
    jvp = gradjit.jvp(OBJECTIVES[version])
    rng = np.random.default_rng(1)
    tangents = [rng.normal(size=args[a].shape) for a in ARGNUMS]
    value, tout = jvp(tuple(args), tuple(tangents) + (None, None, None))
    assert value == pytest.approx(gmm_objective_reference(*args), rel=1e-12)
    want = sum(np.sum(g * t) for g, t in zip(grads, tangents))
    assert tout == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("version", sorted(OBJECTIVES))
def test_gmm_value_and_grad_value_is_the_objective(version):
    args = make_inputs(3, 4, 50)
    value, grads = gradjit.value_and_grad(OBJECTIVES[version], argnums=ARGNUMS)(*args)
    assert value == pytest.approx(gmm_objective_reference(*args), rel=1e-12)
    assert [g.shape for g in grads] == [args[a].shape for a in ARGNUMS]
