"""Packed lanes of vector forward mode on the CPU.

In vector mode the N tangents of a scalar float are also kept as one
``<N x ty>`` vector, and the tangent code of arithmetic, math calls, phis,
selects, casts and of the loads and stores of interleaved memory (arguments with
the lane axis fastest, and the arrays the function allocates itself) is emitted
once on those vectors.  Values read lane by lane (lane-major arrays in functions
with loops, calls) stay per lane; in loop-free functions lane-major loads are
gathered into vectors.  Every lane is compared with the width-1 forward derivative of its
direction and with central finite differences.
"""

import math
import re

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Const, Dual
from conftest import assert_close


@njit
def many_rules(x, y):
    n = x.shape[0]
    t = np.empty(n)                      # an interleaved allocation
    for i in range(n):
        a, b = x[i], x[(i + 1) % n]
        u = math.sin(a) * math.cos(b) + math.exp(-a * a) - math.log1p(b * b)
        u += math.tanh(a - b) + math.atan2(a, 1.0 + b * b) + math.hypot(a, b)
        u += a ** 2.5 + math.sqrt(b) / (1.0 + a) + abs(a - 0.7) + max(a, b)
        u += math.atan(a) * math.asinh(b) - np.cbrt(a) + math.erf(b - a)
        t[i] = u if a > b else u * b     # a select or a phi
    for i in range(n):
        y[i] = t[i] * t[(i + 2) % n] - y[i]


@njit
def strong_zero(x, y):
    # sqrt(max(x, 0)) at x < 0: the zero tangent must stay 0 (not 0 * inf)
    for i in range(x.shape[0]):
        y[i] = math.sqrt(max(x[i], 0.0)) + math.log(max(x[i], 1e-300)) * 0.0


@njit
def single_precision(x, y):             # float32 data, float64 arithmetic (fpext/fptrunc)
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        y[i] = np.float32(math.sin(v) * v + 1.0 / (1.0 + v * v))


def _interleaved(shape, width, dtype=np.float64):
    """A zeroed ``(width, *shape)`` array whose lane axis is the fastest."""
    return np.moveaxis(np.zeros(shape + (width,), dtype), -1, 0)


def _module(df, mask):
    d = df._variants[mask]
    return d._cache[next(iter(d._cache))].text


def _check_lanes(fn, x, width, dtype=np.float64, rtol=1e-12):
    rng = np.random.default_rng(7)
    n = x.shape[0]
    y = rng.standard_normal(n).astype(dtype)
    dx = _interleaved((n,), width, dtype)
    dx[...] = rng.standard_normal((width, n)).astype(dtype)
    dy = _interleaved((n,), width, dtype)
    dv = gradjit.autodiff(fn, "forward", Dual, Dual, width=width)
    dv(x.copy(), dx, y.copy(), dy)
    d1 = gradjit.autodiff(fn, "forward", Dual, Dual)
    for k in range(width):
        dy1 = np.zeros(n, dtype)
        d1(x.copy(), dx[k].copy(), y.copy(), dy1)
        assert_close(dy[k], dy1, rtol=rtol, atol=rtol, err_msg=f"lane {k}")
    return dv, dx, dy, y


def test_packed_rules_match_width1_and_fd():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.2, 1.4, 11)
    width = 7
    dv, dx, dy, y = _check_lanes(many_rules, x, width)
    text = _module(dv, (True, True))
    assert re.search(rf"fmul <{width} x double>", text)       # the packed path ran
    assert re.search(rf"load <{width} x double>", text)
    h = 1e-6
    for k in range(width):
        yp, ym = y.copy(), y.copy()
        many_rules(x + h * dx[k], yp)
        many_rules(x - h * dx[k], ym)
        assert_close(dy[k], (yp - ym) / (2 * h), rtol=1e-6, atol=1e-7)


def test_packed_strong_zero():
    x = np.array([-1.0, 0.5, -2.0, 2.0, -0.1])
    width = 4
    rng = np.random.default_rng(5)
    dx = _interleaved((5,), width)
    dx[...] = rng.standard_normal((width, 5))
    dy = _interleaved((5,), width)
    y = np.zeros(5)
    gradjit.autodiff(strong_zero, "forward", Dual, Dual, width=width)(x, dx, y, dy)
    assert np.all(np.isfinite(dy))
    neg = x < 0
    assert np.all(dy[:, neg] == 0.0)
    assert_close(dy[:, ~neg], dx[:, ~neg] * (0.5 / np.sqrt(x[~neg])), rtol=1e-13, atol=0)


def test_packed_single_precision():
    x = np.linspace(-1.0, 1.5, 9).astype(np.float32)
    _check_lanes(single_precision, x, 5, dtype=np.float32, rtol=1e-5)


@njit
def _lane_major_input(x, w, y):
    # w is read lane by lane (lane-major tangents), x and the scratch are packed
    n = x.shape[0]
    s = np.zeros(n)
    for i in range(n):
        s[i] = math.exp(x[i]) * w[i]
    for i in range(n):
        y[i] = s[i] * x[(i + 1) % n]


@pytest.mark.parametrize("interleaved", [True, False])
def test_packed_and_per_lane_values_mixed(interleaved):
    # w's tangents are lane-major, so read lane by lane in this function with loops
    # (LLVM's loop vectorizer vectorizes each lane across iterations; speed:
    # benchmarks/lanes.py); x's and y's are interleaved (packed) or lane-major too
    rng = np.random.default_rng(11)
    n, width = 8, 6
    x, w, y = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), np.zeros(n)
    dx = _interleaved((n,), width) if interleaved else np.zeros((width, n))
    dx[...] = rng.standard_normal((width, n))
    dw = rng.standard_normal((width, n))                 # lane-major
    dy = _interleaved((n,), width) if interleaved else np.zeros((width, n))
    df = gradjit.autodiff(_lane_major_input, "forward", Dual, Dual, Dual, width=width)
    df(x, dx, w, dw, y, dy)
    if not interleaved:                  # nothing gathered: no packed arithmetic
        text = df._cache[next(iter(df._cache))].text
        assert not re.search(rf"f(?:mul|add) <{width} x double>", text)
    for k in range(width):
        want = (np.exp(x) * (dx[k] * w + dw[k])) * np.roll(x, -1) + \
            np.exp(x) * w * np.roll(dx[k], -1)
        assert_close(dy[k], want, rtol=1e-13, atol=1e-14)


@njit
def _bones(theta, out):
    # np.empty with a 3-D shape twice: a call to Numba's constructor, which
    # gradjit inlines so that its tangents can be interleaved
    k = theta.shape[0]
    a = np.empty((k, 2, 2))
    b = np.empty((k, 2, 2))
    for i in range(k):
        c, s = math.cos(theta[i]), math.sin(theta[i])
        a[i, 0, 0], a[i, 0, 1], a[i, 1, 0], a[i, 1, 1] = c, -s, s, c
    for i in range(k):
        for r in range(2):
            for q in range(2):
                b[i, r, q] = a[i, r, 0] * a[(i + 1) % k, 0, q] + a[i, r, 1] * a[(i + 1) % k, 1, q]
    for i in range(k):
        out[i] = b[i, 0, 0] + 2.0 * b[i, 1, 0]


def test_constructor_allocations_are_interleaved():
    rng = np.random.default_rng(2)
    k, width = 5, 5
    theta, out = rng.uniform(-1, 1, k), np.zeros(k)
    dtheta = _interleaved((k,), width)
    dtheta[...] = np.eye(k)
    dout = _interleaved((k,), width)
    df = gradjit.autodiff(_bones, "forward", Dual, Dual, width=width)
    df(theta, dtheta, out, dout)
    text = _module(df, (True, True))
    assert not re.search(r"\.s[1-9]\d*\"? = (?:tail )?call ptr @NRT_MemInfo_alloc", text)
    assert not re.search(r"call [^\n]*ol_np_empty", text)
    h = 1e-6
    for j in range(k):
        e = np.zeros(k)
        e[j] = h
        op, om = np.zeros(k), np.zeros(k)
        _bones(theta + e, op)
        _bones(theta - e, om)
        assert_close(dout[j], (op - om) / (2 * h), rtol=1e-7, atol=1e-8)


@njit
def _straight_line(cam, X, out):
    # no loop: a small residual whose Jacobian is taken per call (BA-style);
    # lane-major tangents are gathered into vectors and the code is packed
    r0, r1, r2 = cam[0], cam[1], cam[2]
    v0, v1, v2 = X[0] - cam[3], X[1] - cam[4], X[2] - cam[5]
    th = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
    c, s = math.cos(th), math.sin(th)
    k0, k1, k2 = r0 / th, r1 / th, r2 / th
    t = (k0 * v0 + k1 * v1 + k2 * v2) * (1.0 - c)
    y0 = v0 * c + (k1 * v2 - k2 * v1) * s + k0 * t
    y1 = v1 * c + (k2 * v0 - k0 * v2) * s + k1 * t
    y2 = v2 * c + (k0 * v1 - k1 * v0) * s + k2 * t
    p0, p1 = y0 / y2, y1 / y2
    rsq = p0 * p0 + p1 * p1
    L = 1.0 + cam[6] * rsq if rsq < 4.0 else 1.0 + cam[6] * 4.0     # a select or a phi
    out[0] = p0 * L * cam[7] + math.exp(-cam[8] * cam[8])
    out[1] = p1 * L * cam[7]


def test_straight_line_lane_major_is_gathered_and_packed():
    rng = np.random.default_rng(17)
    cam = np.array([0.3, -0.2, 0.5, 0.1, 0.2, -5.0, 0.05, 1.3, 0.4])
    X = np.array([0.4, -0.3, 1.0])
    width = cam.size + X.size
    dcam = np.zeros((width, cam.size))                   # C order: lane-major
    dcam[:cam.size] = np.eye(cam.size)
    dX = np.zeros((width, X.size))
    dX[cam.size:] = np.eye(X.size)
    dX += 0.1 * rng.standard_normal(dX.shape)            # mixed directions too
    out, dout = np.zeros(2), np.zeros((width, 2))
    df = gradjit.autodiff(_straight_line, "forward", Dual, Dual, Dual, width=width)
    df(cam, dcam, X, dX, out, dout)
    text = df._cache[next(iter(df._cache))].text               # lane-major: no variant
    assert re.search(rf"fmul <{width} x double>", text)       # packed, not per lane
    assert re.search(rf"insertelement <{width} x double>", text)
    d1 = gradjit.autodiff(_straight_line, "forward", Dual, Dual, Dual)
    h = 1e-6
    for k in range(width):
        dout1 = np.zeros(2)
        d1(cam, dcam[k].copy(), X, dX[k].copy(), np.zeros(2), dout1)
        assert_close(dout[k], dout1, rtol=1e-13, atol=1e-14, err_msg=f"lane {k}")
        op, om = np.zeros(2), np.zeros(2)
        _straight_line(cam + h * dcam[k], X + h * dX[k], op)
        _straight_line(cam - h * dcam[k], X - h * dX[k], om)
        assert_close(dout[k], (op - om) / (2 * h), rtol=1e-6, atol=1e-8)


# --- batched reverse mode ---------------------------------------------------------
# The N adjoints of a scalar float are one <N x ty> stack slot; the adjoint code of
# arithmetic, math, selects, casts, loads and phis runs once on vectors, and code
# that works lane by lane (memory shadows, calls) reads and writes its element.

@njit
def _helper_rev(u, v):
    return math.exp(-u * v) + math.sqrt(u * u + 1.0)


@njit
def _rpow(u, n):                       # recursive: stays a call (per-lane adjoints)
    if n == 0:
        return 1.0
    return u * _rpow(u, n - 1)


@njit
def reverse_mix(x, w, out):
    s = 0.0
    for i in range(x.shape[0]):
        a = x[i]
        c, sn = math.cos(a), math.sin(a)               # companions
        t = max(c * sn, a * 0.5)                       # a select
        if a > 1.0:                                    # a phi
            t = t / (1.0 + a * a)
        f = np.float32(t) * np.float32(w[i])           # fptrunc / fpext
        out[i] = np.float64(f) + _helper_rev(a, w[i]) + _rpow(a, i % 3 + 1)   # calls, a store
        s += out[i] * a
    return s + math.atan2(s, 2.0)


def test_packed_reverse_matches_width1_and_fd():
    rng = np.random.default_rng(13)
    n, width = 7, 5
    x, w = rng.uniform(-0.5, 1.5, n), rng.uniform(0.5, 1.5, n)
    seeds = rng.standard_normal(width)
    dout = rng.standard_normal((width, n))
    dv = gradjit.autodiff(reverse_mix, "reverse", gradjit.Duplicated, gradjit.Duplicated,
                          gradjit.Duplicated, width=width)
    dx, dw = np.zeros((width, n)), np.zeros((width, n))
    dv(x.copy(), dx, w.copy(), dw, np.zeros(n), dout.copy(), seeds)
    text = dv._cache[next(iter(dv._cache))].text
    assert re.search(rf"fmul <{width} x double>", text)        # the packed path ran
    d1 = gradjit.autodiff(reverse_mix, "reverse", gradjit.Duplicated, gradjit.Duplicated,
                          gradjit.Duplicated)
    for k in range(width):
        dx1, dw1 = np.zeros(n), np.zeros(n)
        d1(x.copy(), dx1, w.copy(), dw1, np.zeros(n), dout[k].copy(), seeds[k])
        assert_close(dx[k], dx1, rtol=1e-13, atol=1e-13, err_msg=f"lane {k}")
        assert_close(dw[k], dw1, rtol=1e-13, atol=1e-13, err_msg=f"lane {k}")
    # lane 0 against central differences of seed * s + <dout, out> (the float32
    # rounding inside limits them to ~1e-4: a step of 1e-3)
    def obj(xx):
        out = np.zeros(n)
        s = reverse_mix(xx, w, out)
        return seeds[0] * s + float(np.dot(dout[0], out))
    h = 1e-3
    fd = [(obj(x + h * e) - obj(x - h * e)) / (2 * h) for e in np.eye(n)]
    assert_close(dx[0], np.array(fd), rtol=2e-3, atol=2e-3)
