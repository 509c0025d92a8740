"""GradBench ``ht`` (hand tracking) kernel: residuals and their Jacobian with gradjit.

The Numba residuals (kernels.ht) are checked against the independent NumPy/SciPy
reference; the gradjit Jacobian (forward mode, the benchmarked one) against
central finite differences of both, and against gradjit's reverse mode, for the
simple and the complicated variant, on GradBench's own hand1 instances.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kernels import ht  # noqa: E402

VARIANTS = ["simple", "complicated"]


def problem(variant, model="small", n=100, first=None):
    """GradBench's instance with ``n`` points (hand1: 100), optionally cut to its
    ``first`` correspondences."""
    p = ht.make_problem(variant, model, n)
    if first is not None:
        p = p._replace(correspondences=p.correspondences[:first].copy(),
                       points=p.points[:first].copy(),
                       us=p.us[:first].copy() if p.complicated else p.us)
    return p


def central_jacobian(f, x0, eps=1e-6):
    cols = []
    for k in range(x0.size):
        e = np.zeros_like(x0)
        e[k] = eps
        cols.append((f(x0 + e) - f(x0 - e)) / (2 * eps))
    return np.stack(cols, axis=1)


def reference_flat(p):
    """The reference residuals as a function of flat_problem's parameters."""
    if not p.complicated:
        return lambda x: ht.ht_objective_reference(p, theta=x)
    return lambda x: ht.ht_objective_reference(p, theta=x[2:], us=p.us + x[:2])


@pytest.mark.parametrize("model", ["small", "big"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_residuals_match_reference(variant, model):
    p = problem(variant, model)
    r = ht.ht_residuals(p)
    assert r.shape == (300,)
    np.testing.assert_allclose(r, ht.ht_objective_reference(p), rtol=0, atol=1e-12)
    # GradBench's points are noisy observations of the posed hand.
    assert 0.01 < np.std(r) < 1.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_residuals_other_branches(variant):
    """Mirrored model and a global rotation below the 1e-4 threshold."""
    p = problem(variant)
    p = p._replace(is_mirrored=True)
    np.testing.assert_allclose(ht.ht_residuals(p), ht.ht_objective_reference(p), atol=1e-12)
    theta = p.theta.copy()
    theta[:3] = [2e-5, -3e-5, 1e-5]
    np.testing.assert_allclose(ht.ht_residuals(p, theta=theta),
                               ht.ht_objective_reference(p, theta=theta), atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_jacobian_matches_finite_differences(variant):
    p = problem(variant)  # GradBench's hand1 of {variant}_small: 100 points
    jac = ht.evaluate(ht.DERIVATIVE, p)
    ncols = 28 if variant == "complicated" else 26
    assert jac.shape == (300, ncols)
    f, x0 = ht.flat_problem(p)
    fd = central_jacobian(f, x0)
    fd_ref = central_jacobian(reference_flat(p), x0)
    scale = np.max(np.abs(fd))
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(jac, fd_ref, rtol=1e-6, atol=1e-7 * scale)
    if variant == "complicated":
        # the compressed us columns are the only non-zeros of d err / d us
        i = 7
        us = p.us.copy()
        for k in range(2):
            up, um = us.copy(), us.copy()
            up[i, k] += 1e-6
            um[i, k] -= 1e-6
            d = (ht.ht_residuals(p, us=up) - ht.ht_residuals(p, us=um)) / 2e-6
            np.testing.assert_allclose(d[3 * i:3 * i + 3], jac[3 * i:3 * i + 3, k], rtol=1e-6)
            d[3 * i:3 * i + 3] = 0.0
            assert np.max(np.abs(d)) < 1e-9


@pytest.mark.parametrize("mode", ["colored", "dense"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_reverse(variant, mode):
    """The vector forward sweep (colored lanes or one lane per column) and reverse
    mode (one sweep per residual) give the same Jacobian."""
    p = problem(variant, first=5)
    fwd = ht.ht_jacobian(p, mode)
    rev = ht.ht_jacobian(p, "reverse")
    assert rev.shape == fwd.shape == (15, 28 if variant == "complicated" else 26)
    np.testing.assert_allclose(fwd, rev, rtol=1e-12, atol=1e-13)
    # a second reverse pass gives the same (the seeds are consumed, shadows fresh)
    np.testing.assert_array_equal(ht.ht_jacobian(p, "reverse"), rev)


@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_sparsity_pattern_covers_the_jacobian(variant, mirrored):
    """The pattern built from the model's structure contains every non-zero of the
    dense (one lane per column) Jacobian, misses none of its columns, and lets
    fewer lanes than columns reproduce it exactly."""
    p = problem(variant, n=400)._replace(is_mirrored=mirrored)
    coloring, rows = ht.ht_sparsity(p)
    pattern = coloring.decompress(np.ones((p.n_residuals, coloring.n_colors)), rows=rows)
    dense = ht.ht_jacobian(p, "dense")
    theta_cols = dense[:, 2:] if p.complicated else dense
    assert np.all(pattern[theta_cols != 0] == 1)
    # the pattern is tight: every entry it claims is a true non-zero somewhere
    assert np.count_nonzero(theta_cols) == np.count_nonzero(pattern)
    assert coloring.n_colors < ht.N_THETA
    np.testing.assert_allclose(ht.ht_jacobian(p, "colored"), dense, rtol=1e-14, atol=0)


def test_forward_picks_dense_lanes_for_many_points():
    """Past N = 2 V points the benchmarked mode writes the dense Jacobian directly
    (the colored result would need an extra pass); both give the same."""
    p = problem("simple", model="small", n=1600)  # V = 544
    assert not ht._colored(p) and ht._colored(problem("simple", model="small", n=800))
    assert ht.compile_key(ht.DERIVATIVE, p) == "dense"
    dense = ht.ht_jacobian(p, "dense")
    np.testing.assert_array_equal(ht.ht_jacobian(p, "forward"), dense)
    np.testing.assert_allclose(ht.ht_jacobian(p, "colored"), dense, rtol=1e-14, atol=0)


def test_big_model_is_gradbench_layout():
    small = ht.load_model("small")
    big = ht.load_model("big")
    assert small["base_positions"].shape == (544, 4)
    assert big["base_positions"].shape == (10000, 4) and big["weights"].shape == (10000, 22)
    np.testing.assert_array_equal(big["base_positions"][544:1088], small["base_positions"])
    np.testing.assert_array_equal(big["base_positions"][:, 3], 1.0)
    np.testing.assert_allclose(big["weights"].sum(axis=1), 1.0, atol=1e-5)
    assert small["parents"][0] == -1 and all(
        0 <= q < b for b, q in enumerate(small["parents"]) if b > 0)
    assert small["triangles"].shape == (1084, 3) and small["triangles"].max() < 544


@pytest.mark.parametrize("variant", VARIANTS)
def test_interface(variant):
    size = dict(variant=variant, model="small", n=192)
    inp = ht.generate(**size)
    inp = json.loads(json.dumps(inp))  # JSON round trip, as GradBench sends it
    assert len(inp["theta"]) == 26 and len(inp["data"]["correspondences"]) == 192
    assert (len(inp["us"]) == 192) == (variant == "complicated")
    p = ht.prepare(ht.PRIMAL, inp)
    out = ht.output(ht.PRIMAL, ht.evaluate(ht.PRIMAL, p))
    assert len(out) == 3 * 192 and isinstance(out[0], float)
    res = ht.evaluate(ht.DERIVATIVE, p)
    out = ht.output(ht.DERIVATIVE, res)
    ncols = 28 if variant == "complicated" else 26
    assert len(out) == 3 * 192 and all(len(row) == ncols for row in out)
    f, x0 = ht.flat_problem(p)
    assert ht.flat_derivative(res).shape == (f(x0).size, x0.size)
    np.testing.assert_array_equal(f(x0), ht.evaluate(ht.PRIMAL, p))
    for sizes in ht.SIZES.values():
        for s in sizes:
            assert s["variant"] in VARIANTS and s["n"] in ht.N_POINTS.values()


@pytest.mark.parametrize("variant", VARIANTS)
def test_synthetic_instance(variant):
    """Instances beyond the stored files: GradBench's size, same structure."""
    m = ht.load_model("small")
    theta, corr, points, us = ht.synthetic_instance(m, 50, variant == "complicated", seed=3)
    assert theta.shape == (26,) and corr.shape == (50,) and points.shape == (50, 3)
    assert us.shape == ((50, 2) if variant == "complicated" else (0, 2))
    p = ht._problem(theta, us, m, corr, points)
    r = ht.ht_residuals(p)
    assert 0.05 < np.std(r) < 0.2  # the noise, like GradBench's files
