"""Tape records (``gradjit.ad.tape``): packed on the CPU, 8-byte slots on the GPU.

The layout is checked directly; the packing is checked on generated modules (a
loop's branch flag takes one byte per iteration); gradients of loops whose
records mix flags, predecessor indices, pointers and floats are checked against
central finite differences in float64 and float32.
"""

import math
import re

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Active, Duplicated
from gradjit.ad import tape
from conftest import assert_close, fd_grad
from kernels.lse import lse


def test_layout_packs_on_the_cpu_and_slots_on_the_gpu():
    types = ["i1", "double", "i32", "ptr", "float"]
    assert tape.record_bytes(types, "cpu") == 1 + 8 + 4 + 8 + 4
    assert tape.record_bytes(types, "cuda") == 5 * 8
    order, offsets, total = tape._layout([(t, None) for t in types], "cpu")
    # widest alignment first, so each value sits at a multiple of its alignment
    assert [types[k] for k in order] == ["double", "ptr", "i32", "float", "i1"]
    assert [offsets[k] for k in order] == [0, 8, 16, 20, 24]
    assert total == 25


def _pushes(df):
    """The byte counts of the tape pushes in a derivative's generated module."""
    text = df._cache[next(iter(df._cache))].text
    return [int(n) for n in
            re.findall(r"@gj\.tape\.push(?:\.reserved)?\(ptr [^,]+, i64 (\d+)\)", text)]


def test_a_loop_flag_takes_one_byte(rng):
    # GradBench's LSE: a loop recording a flag per element, then one recording a
    # double, which grows the tape from the odd size the first leaves
    df = gradjit.autodiff(lse, "reverse", Duplicated, ret=Active)
    # odd and even tape sizes past the stack buffer and the first heap buffer
    # (the second call reuses the heap buffer the first one kept)
    for n in (50, 3001, 20000, 20001, 100000, 100001, 20000, 100001):
        x = rng.standard_normal(n)
        dx = np.zeros_like(x)
        df(x, dx, 1.0)
        e = np.exp(x - x.max())
        np.testing.assert_allclose(dx, e / e.sum(), rtol=1e-12, atol=1e-13,
                                   err_msg=f"n={n}")
    # the per-iteration record of the max loop is its select's flag alone
    assert 1 in _pushes(df)


@njit
def branchy(x, y, c):
    """Per-iteration records mixing a flag, a predecessor index and floats."""
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] > c:
            t = math.sin(x[i]) * y[i]
        elif x[i] < -c:
            t = x[i] * x[i] * math.exp(y[i])
        else:
            t = math.tanh(x[i] * y[i])
        s += t * t if t > 0.1 else t
        for j in range(i % 3):
            s += math.log1p(y[i] * y[i]) * x[j]
    return s


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mixed_records_gradient(dtype, rng):
    n = 37                           # odd, so packed records leave the tape unaligned
    x = rng.uniform(-1.5, 1.5, n).astype(dtype)
    y = rng.uniform(-1.0, 1.0, n).astype(dtype)
    gx, gy = gradjit.grad(branchy, argnums=(0, 1))(x, y, dtype(0.4))
    # finite differences in float64 on the float64 function (the branches are
    # piecewise smooth; no input is near a kink)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    fx = fd_grad(branchy, [x64, y64, 0.4], argnum=0)
    fy = fd_grad(branchy, [x64, y64, 0.4], argnum=1)
    tol = 1e-6 if dtype == np.float64 else 2e-3
    assert_close(gx, fx, rtol=tol, atol=tol)
    assert_close(gy, fy, rtol=tol, atol=tol)


@njit
def scan_pairs(x, idx):
    """A loop recording an int64 index and a flag per iteration (an int64 next to
    a one-byte flag, as a prange or call record holds)."""
    s = 0.0
    for i in range(idx.shape[0]):
        k = idx[i]
        v = x[k]
        s += v * v if v > 0 else math.exp(v)
        x[k] = 0.5 * v
    return s


def test_overwritten_values_with_packed_records(rng):
    x = rng.standard_normal(9)
    idx = rng.integers(0, 9, 40)
    dx = np.zeros_like(x)
    df = gradjit.autodiff(scan_pairs, "reverse", Duplicated, gradjit.Const, ret=Active)
    xs = x.copy()
    df(xs, dx, idx, 1.0)

    def f(v):
        return scan_pairs(v.copy(), idx)
    assert_close(dx, fd_grad(f, [x]), rtol=1e-6, atol=1e-7)


@njit
def max_then_sines(x):
    """The max loop's flags decide where the derivative of ``a`` goes."""
    a = x[0]
    for i in range(1, x.shape[0]):
        a = max(a, x[i])
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i] * a)
    return a + 1e-3 * s


def test_records_ending_at_the_stack_buffer_end(rng):
    """Tapes whose flag records end at every byte around the end of the stack
    buffer a call starts in, then move to the heap: no flag is lost on the way."""
    g = gradjit.grad(max_then_sines)
    for n in range(tape.STACK_BYTES - 16, tape.STACK_BYTES + 4):
        x = rng.standard_normal(n)
        a, k = x.max(), int(np.argmax(x))
        want = 1e-3 * a * np.cos(x * a)
        want[k] += 1 + 1e-3 * np.sum(x * np.cos(x * a))
        np.testing.assert_allclose(g(x), want, rtol=1e-12, atol=1e-15, err_msg=f"n={n}")
