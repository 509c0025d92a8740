"""Sparse Jacobians by column coloring (gradjit.JacobianColoring).

The coloring is checked for what makes compression exact (no two columns of a
color share a row); the compressed forward mode against the dense vector forward
mode (one lane per column) and central finite differences.
"""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradjit
from conftest import central
from gradjit import Dual


def assert_valid(coloring, pattern):
    """Colors 0..p-1, all used, no two columns of one color in the same row."""
    pattern = np.asarray(pattern) != 0
    colors = coloring.colors
    assert colors.shape == (pattern.shape[1],)
    if pattern.shape[1]:
        assert set(colors.tolist()) == set(range(coloring.n_colors))
    for row in pattern:
        c = colors[row]
        assert len(set(c.tolist())) == c.size


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 12), st.integers(0, 12), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_coloring_is_structurally_orthogonal(m, n, density, seed):
    pattern = np.random.default_rng(seed).random((m, n)) < density
    coloring = gradjit.JacobianColoring(pattern)
    assert_valid(coloring, pattern)
    assert coloring.shape == (m, n)
    # decompressing J @ S.T gives J back for any J on the pattern
    J = np.where(pattern, np.random.default_rng(seed + 1).standard_normal((m, n)), 0.0)
    compressed = J @ coloring.seeds().T
    np.testing.assert_array_equal(coloring.decompress(compressed), J)


def test_banded_pattern_takes_bandwidth_colors():
    n = 50
    pattern = np.zeros((n, n), bool)
    for i in range(n):
        pattern[i, max(0, i - 1):i + 2] = True
    coloring = gradjit.JacobianColoring(pattern)
    assert coloring.n_colors == 3
    assert_valid(coloring, pattern)


def test_scipy_and_dense_patterns_agree():
    sparse = pytest.importorskip("scipy.sparse")
    pattern = np.random.default_rng(0).random((30, 20)) < 0.15
    a = gradjit.JacobianColoring(pattern)
    b = gradjit.JacobianColoring(sparse.csc_matrix(pattern))
    c = gradjit.JacobianColoring.from_csr(*(lambda s: (s.indptr, s.indices))(
        sparse.csr_matrix(pattern)), 20)
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(a.colors, c.colors)


@numba.njit
def banded(x, out):
    """out[i] = x[i-1] x[i] + sin(x[i+1]) (missing neighbours left out)."""
    n = x.shape[0]
    for i in range(n):
        v = np.sin(x[i + 1]) if i + 1 < n else 0.0
        if i > 0:
            v += x[i - 1] * x[i]
        out[i] = v


def banded_pattern(n):
    p = np.zeros((n, n), bool)
    for i in range(n):
        p[i, max(0, i - 1):i + 2] = True
    return p


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compressed_forward_mode_matches_dense_and_finite_differences(dtype):
    n = 40
    x = np.random.default_rng(1).uniform(-1, 1, n).astype(dtype)
    coloring = gradjit.JacobianColoring(banded_pattern(n))
    p = coloring.n_colors
    df = gradjit.autodiff(banded, "forward", Dual, Dual, width=p)
    compressed = np.empty((n, p), dtype)
    df(x, coloring.seeds(dtype=dtype), np.empty(n, dtype), compressed.T)
    J = coloring.decompress(compressed)
    assert J.dtype == dtype and J.shape == (n, n)

    dense_df = gradjit.autodiff(banded, "forward", Dual, Dual, width=n)
    dense = np.empty((n, n), dtype)
    dense_df(x, np.eye(n, dtype=dtype), np.empty(n, dtype), dense.T)
    np.testing.assert_allclose(J, dense, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)

    def values(x):
        out = np.empty(n)
        banded(x, out)
        return out

    x64 = x.astype(np.float64)
    fd = np.stack([central(values, (x64,), 0, k) for k in range(n)], axis=1)
    tol = 1e-4 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(J, fd, rtol=tol, atol=tol)


def test_one_color_runs_two_lanes():
    """An elementwise function's Jacobian is diagonal: one color, but ``lanes`` is 2
    (width 1 is the scalar mode) and the padded lane is ignored."""
    n = 6
    coloring = gradjit.JacobianColoring(np.eye(n))
    assert coloring.n_colors == 1 and coloring.lanes == 2

    @numba.njit
    def square(x, out):
        for i in range(x.shape[0]):
            out[i] = x[i] * x[i]

    df = gradjit.autodiff(square, "forward", Dual, Dual, width=coloring.lanes)
    x = np.linspace(-1.0, 1.0, n)
    compressed = np.empty((n, coloring.lanes))
    df(x, coloring.seeds(), np.empty(n), compressed.T)
    np.testing.assert_array_equal(coloring.decompress(compressed), np.diag(2 * x))


def test_rows_map_and_padding_lanes():
    """A Jacobian whose rows come in two patterns is colored from those two
    rows; padded seed lanes are zero and ignored by decompress."""
    pattern = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    coloring = gradjit.JacobianColoring(pattern)
    assert coloring.n_colors == 2
    seeds = coloring.seeds(width=4)
    assert seeds.shape == (4, 4) and not seeds[2:].any()
    rows = np.array([0, 1, 1, 0, 1])
    J = np.zeros((5, 4))
    for i, r in enumerate(rows):
        J[i, pattern[r] != 0] = np.arange(1, 3) + 10 * i
    compressed = J @ seeds.T  # (5, 4), two padding columns of zeros
    out = np.full((5, 6), np.nan)[:, 1:5]  # strided output
    got = coloring.decompress(compressed, out=out, rows=rows)
    assert got is out
    np.testing.assert_array_equal(out, J)


def test_errors():
    with pytest.raises(ValueError, match="2-D"):
        gradjit.JacobianColoring(np.ones(3))
    with pytest.raises(ValueError, match="row pointers"):
        gradjit.JacobianColoring.from_csr([0, 2, 1], [0, 1], 2)
    with pytest.raises(ValueError, match="column indices"):
        gradjit.JacobianColoring.from_csr([0, 1], [5], 2)
    coloring = gradjit.JacobianColoring(np.eye(3))
    assert coloring.n_colors == 1
    with pytest.raises(ValueError, match="less than"):
        coloring.seeds(width=0)
    with pytest.raises(ValueError, match="expected"):
        coloring.decompress(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="out has shape"):
        coloring.decompress(np.zeros((3, 1)), out=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="outside"):
        coloring.decompress(np.zeros((2, 1)), rows=np.array([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        coloring.decompress(np.zeros((2, 1)), rows=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="integer"):
        gradjit.JacobianColoring.from_csr(np.array([0.0, 1.0]), np.array([0.0]), 2)
    with pytest.raises(ValueError):
        coloring.colors[0] = 5  # read-only
    empty = gradjit.JacobianColoring(np.zeros((2, 0)))
    assert empty.n_colors == 0 and empty.seeds().shape == (2, 0)
    assert empty.decompress(np.zeros((2, 0))).shape == (2, 0)
