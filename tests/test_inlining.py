"""Derivatives called from @njit code: a small loop-free derivative is inlined into
the caller (gradjit.backend.cpu.INLINE_LIMIT), one with loops stays a call; the
derivatives are the same either way (checked against analytic derivatives and
against the call from Python)."""
import math

import numba
import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Active, Duplicated
from gradjit.analysis.cfg import has_cycle
from gradjit.ir.model import Block, Function


def _function(edges, blocks):
    fn = Function("f", "void", [], blocks=[Block(b) for b in blocks])
    for b in fn.blocks:
        b.succs = list(edges.get(b.name, []))
    fn.index()
    return fn


@pytest.mark.parametrize("edges,cyclic", [
    ({"a": ["b", "c"], "b": ["d"], "c": ["d"]}, False),          # diamond
    ({"a": ["b"], "b": ["b", "c"]}, True),                       # self loop
    ({"a": ["b"], "b": ["c"], "c": ["b", "d"]}, True),           # two-block loop
    ({"a": ["c", "b"], "b": ["c"], "c": ["d"], "d": []}, False),  # forward edges only
    ({"a": ["b", "c"], "b": ["c"], "c": ["b"]}, True),           # irreducible
    ({"a": ["d"], "b": ["c"], "c": ["b"], "d": []}, False),       # cycle unreachable
])
def test_has_cycle(edges, cyclic):
    fn = _function(edges, ["a", "b", "c", "d"])
    assert has_cycle(fn) is cyclic


@njit
def _residual(p, w):
    # straight-line code: r = w * sin(p0) * exp(p1) + p2^2 / (1 + p0^2)
    return w * math.sin(p[0]) * math.exp(p[1]) + p[2] * p[2] / (1.0 + p[0] * p[0])


@njit
def _sum_sq(p, w):
    s = 0.0
    for i in range(p.shape[0]):
        s += w * p[i] * p[i]
    return s


def _residual_grad(p, w):
    s, e = math.sin(p[0]), math.exp(p[1])
    d0 = w * math.cos(p[0]) * e - p[2] ** 2 * 2 * p[0] / (1 + p[0] ** 2) ** 2
    return np.array([d0, w * s * e, 2 * p[2] / (1 + p[0] ** 2)]), s * e


def _compiled(df, *args):
    df(*args)
    return df.compile(tuple(numba.typeof(a) for a in args))


def test_loop_free_derivative_is_inlined_into_njit_callers():
    d = gradjit.autodiff(_residual, "reverse", Duplicated, Active)
    d_loop = gradjit.autodiff(_sum_sq, "reverse", Duplicated, Active)
    p, dp = np.array([0.3, -0.2, 1.5]), np.zeros(3)
    assert _compiled(d, p, dp, 2.0, 1.0).library.inlinable
    assert not _compiled(d_loop, p, np.zeros(3), 2.0, 1.0).library.inlinable

    @njit
    def jacobian(ps, w, out, dws):
        dp = np.zeros(ps.shape[1])
        for i in range(ps.shape[0]):
            dp[:] = 0.0
            _, dw = d(ps[i], dp, w[i], 1.0)
            out[i, :] = dp
            dws[i] = dw
        return out

    rng = np.random.default_rng(0)
    ps, w = rng.normal(size=(50, 3)), rng.uniform(0.5, 2.0, 50)
    out, dws = np.empty((50, 3)), np.empty(50)
    jacobian(ps, w, out, dws)
    for i in range(50):
        g, dw = _residual_grad(ps[i], w[i])
        np.testing.assert_allclose(out[i], g, rtol=1e-13, atol=1e-14)
        assert dws[i] == pytest.approx(dw, rel=1e-13)
        dpy = np.zeros(3)
        _, dwp = d(ps[i], dpy, w[i], 1.0)          # the call from Python: not inlined
        np.testing.assert_array_equal(dpy, out[i])
        assert dwp == dws[i]


def test_derivative_with_loops_called_from_njit():
    d = gradjit.autodiff(_sum_sq, "reverse", Duplicated, Active)

    @njit
    def many(ps, w, out):
        dp = np.zeros(ps.shape[1])
        for i in range(ps.shape[0]):
            dp[:] = 0.0
            d(ps[i], dp, w, 1.0)
            out[i, :] = dp
        return out

    ps = np.random.default_rng(1).normal(size=(20, 7))
    out = many(ps, 0.7, np.empty((20, 7)))
    np.testing.assert_allclose(out, 2 * 0.7 * ps, rtol=1e-14)
