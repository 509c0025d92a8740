"""GradBench ``lstm`` kernel (kernels/lstm.py): objective vs the NumPy reference,
gradjit gradient vs central finite differences (of the Numba objective and of the
reference), reverse vs forward mode, and the GradBench interface."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import central

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402
from kernels import lstm as K  # noqa: E402




@pytest.mark.parametrize("l,c", [(1, 2), (2, 30), (3, 17)])
def test_objective_matches_reference(l, c):
    args = K.make_inputs(l, c, seed=l + c)
    state = args[2].copy()
    got = K.lstm_objective(*args)
    assert got == pytest.approx(K.lstm_objective_reference(*args), rel=1e-13)
    np.testing.assert_array_equal(args[2], state)      # the state is not modified


def test_objective_by_hand_one_step():
    """l = 1, c = 2, b = 1: the loss written out with the eval's formulas."""
    mp = np.array([[0.3, -0.2, 0.5, 0.7], [0.1, 0.2, -0.3, 0.4]])
    ep = np.array([[0.9], [1.1], [-0.2]])
    st = np.array([[0.25], [-0.5]])
    seq = np.array([[1.0], [1.0]])
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    x = 1.0 * 0.9
    f, i = sig(x * 0.3 + 0.1), sig(0.25 * -0.2 + 0.2)
    o, g = sig(x * 0.5 - 0.3), math.tanh(0.25 * 0.7 + 0.4)
    cell = -0.5 * f + i * g
    y = o * math.tanh(cell) * 1.1 - 0.2
    want = -(y - math.log(math.exp(y) + 2.0))
    assert K.lstm_objective(mp, ep, st, seq) == pytest.approx(want, rel=1e-14)


def test_gradient_matches_finite_differences():
    args = K.make_inputs(2, 25, seed=3)
    gm, ge = K.gradient(*args)
    assert gm.shape == args[0].shape and ge.shape == args[1].shape
    assert gm.dtype == np.float64 and ge.dtype == np.float64
    rng = np.random.default_rng(0)
    scale = max(np.max(np.abs(gm)), np.max(np.abs(ge)))
    coords = [(0, tuple(ix)) for ix in zip(*(rng.integers(0, s, 40) for s in args[0].shape))]
    coords += [(1, idx) for idx in np.ndindex(args[1].shape)]
    for k, idx in coords:
        got = (gm, ge)[k][idx]
        fd = central(K.lstm_objective, args, k, idx)
        ref = central(K.lstm_objective_reference, args, k, idx)
        tol = 1e-6 * max(abs(fd), 1e-2 * scale) + 1e-9
        assert abs(got - fd) <= tol, (k, idx, got, fd)
        assert abs(got - ref) <= 10 * tol, (k, idx, got, ref)


def test_reverse_matches_forward():
    args = K.make_inputs(3, 12, seed=5)
    gm, ge = K.gradient(*args)
    rng = np.random.default_rng(1)
    tm, te = rng.normal(size=args[0].shape), rng.normal(size=args[1].shape)
    value, tout = gradjit.jvp(K.lstm_objective)(tuple(args), (tm, te, None, None))
    assert value == pytest.approx(K.lstm_objective(*args), rel=1e-14)
    assert tout == pytest.approx(float(np.sum(gm * tm) + np.sum(ge * te)), rel=1e-10)


def test_text_encoding_is_gradbench_s():
    text = K.synthetic_text(300)
    bits = K.char_bits(text)
    assert bits == math.ceil(math.log2(max(ord(ch) for ch in text))) == 14
    want = np.array([[int(d) for d in bin(ord(ch))[2:].zfill(bits)] for ch in text], dtype=float)
    np.testing.assert_array_equal(K.text_to_matrix(text, bits), want)
    assert K.synthetic_text(300) == text                 # deterministic


def test_gradbench_interface():
    inp = K.generate(l=2, c=40)
    assert [np.shape(inp[k]) for k in ("main_params", "extra_params", "state", "sequence")] == \
        [(4, 56), (3, 14), (4, 14), (40, 14)]
    args = K.prepare(K.DERIVATIVE, json.loads(json.dumps(inp)))
    value = K.evaluate(K.PRIMAL, args)
    assert isinstance(K.output(K.PRIMAL, value), float)
    res = K.evaluate(K.DERIVATIVE, args)
    out = K.output(K.DERIVATIVE, res)
    assert len(out) == 8 * 2 * 14 + 3 * 14
    f, theta0 = K.flat_problem(args)
    assert f(theta0) == value
    flat = K.flat_derivative(res)
    np.testing.assert_array_equal(flat, np.array(out))
    i = 123
    e = np.zeros_like(theta0)
    e[i] = 1e-6
    assert flat[i] == pytest.approx((f(theta0 + e) - f(theta0 - e)) / 2e-6, rel=1e-5, abs=1e-9)
    assert {(s["l"], s["c"]) for s in K.SIZES["default"]} == \
        {(l, c) for l in (2, 4, 6) for c in (1024, 4096, 8192)}
