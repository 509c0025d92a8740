"""GradBench ``ba`` kernel (kernels/ba.py): residuals vs the NumPy reference, the
gradjit sparse Jacobian vs central finite differences (of the Numba objective and of
the reference), reverse vs forward mode per block, the CSR layout and the GradBench
interface."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402
from gradjit import Const, Dual  # noqa: E402
from kernels import ba as K  # noqa: E402


def inputs_with_zero_rotation(n=3, m=5, p=9, seed=1):
    cams, X, w, obs, feats = K.random_inputs(n, m, p, seed=seed)
    cams[1, 0:3] = 0.0          # exercises the r == 0 branch of the Rodrigues rotation
    return cams, X, w, obs, feats


def fd_jacobian(fun, args, eps=1e-6):
    """Central differences of concat(reproj_err, w_err) wrt concat(cams, X, w)."""
    cams, X, w, obs, feats = args
    theta0 = np.concatenate([cams.ravel(), X.ravel(), w])
    a, b = cams.size, cams.size + X.size

    def f(t):
        r, e = fun(t[:a].reshape(cams.shape).copy(), t[a:b].reshape(X.shape).copy(),
                   t[b:].copy(), obs, feats)
        return np.concatenate([r, e])
    cols = []
    for j in range(theta0.size):
        h = eps * max(1.0, abs(theta0[j]))
        tp, tm = theta0.copy(), theta0.copy()
        tp[j] += h
        tm[j] -= h
        cols.append((f(tp) - f(tm)) / (2 * h))
    return np.array(cols).T


@pytest.mark.parametrize("make", [
    lambda: K.make_inputs(3, 4, 10), lambda: K.random_inputs(4, 6, 20, seed=2),
    inputs_with_zero_rotation])
def test_objective_matches_reference(make):
    args = make()
    r, e = K.objective(*args)
    rr, er = K.ba_objective_reference(*args)
    assert r.shape == (2 * len(args[2]),) and e.shape == (len(args[2]),)
    np.testing.assert_allclose(r, rr, rtol=1e-12, atol=1e-12 * np.max(np.abs(rr)))
    np.testing.assert_allclose(e, er, rtol=1e-15)


def test_one_residual_by_hand():
    """Zero rotation and distortion: y = x - C, proj = f * y[:2] / y[2] + (u0, v0)."""
    cam = np.array([0, 0, 0, 1.0, 2.0, -1.0, 500.0, 3.0, 4.0, 0, 0])
    x = np.array([2.0, 0.0, 3.0])
    err = np.empty(2)
    K.compute_reproj_err(cam, x, 0.5, np.array([10.0, 20.0]), err)
    np.testing.assert_allclose(err, 0.5 * (np.array([500 * 1 / 4 + 3, 500 * -2 / 4 + 4]) - [10, 20]))


@pytest.mark.parametrize("make", [lambda: K.random_inputs(3, 4, 8, seed=3),
                                  inputs_with_zero_rotation,
                                  lambda: K.make_inputs(2, 3, 7)])
def test_jacobian_matches_finite_differences(make):
    args = make()
    J = K.flat_derivative(K.ba_jacobian(*args))
    n, m, p = len(args[0]), len(args[1]), len(args[2])
    assert isinstance(J, np.ndarray) and J.shape == (3 * p, 11 * n + 3 * m + p)
    for fun in (K.objective, K.ba_objective_reference):
        fd = fd_jacobian(fun, args)
        scale = np.maximum(np.abs(fd), 1e-3 * np.max(np.abs(fd), axis=1, keepdims=True))
        assert np.max(np.abs(J - fd) / scale) < 2e-5, fun.__name__
        assert np.all(fd[J == 0] == 0)                   # nothing outside the sparsity pattern


def test_reverse_blocks_match_forward_mode():
    """Each 2 x 15 block (reverse mode, one pass per residual) equals the 15
    forward-mode columns of the same residual function."""
    cams, X, w, obs, feats = args = inputs_with_zero_rotation(p=6)
    jac = K.ba_jacobian(*args)
    fwd = gradjit.autodiff(K.compute_reproj_err, "forward", Dual, Dual, Dual, Const, Dual)
    for i in range(len(w)):
        c, q = obs[i]
        cols = []
        for k in range(15):
            dcam, dX, dw = np.zeros(11), np.zeros(3), 0.0
            if k < 11:
                dcam[k] = 1.0
            elif k < 14:
                dX[k - 11] = 1.0
            else:
                dw = 1.0
            err, derr = np.empty(2), np.zeros(2)
            fwd(cams[c], dcam, X[q], dX, w[i], dw, feats[i], err, derr)
            cols.append(derr)
        block = np.array(cols).T                           # (2, 15)
        got = jac.vals[30 * i:30 * i + 30].reshape(2, 15)
        np.testing.assert_allclose(got, block, rtol=1e-12, atol=1e-12 * np.max(np.abs(block)))


def test_csr_layout_is_gradbench_s():
    n, m, p = 3, 4, 10
    args = K.make_inputs(n, m, p)
    jac = K.ba_jacobian(*args)
    assert jac.rows.dtype == np.int32 and jac.cols.dtype == np.int32
    assert jac.rows.shape == (3 * p + 1,) and jac.vals.shape == (31 * p,)
    np.testing.assert_array_equal(np.diff(jac.rows), [15] * (2 * p) + [1] * p)
    for i in range(p):
        c, q = i % n, i % m
        want = list(range(11 * c, 11 * c + 11)) + [11 * n + 3 * q + j for j in range(3)] + \
            [11 * n + 3 * m + i]
        np.testing.assert_array_equal(jac.cols[30 * i:30 * i + 15], want)
        np.testing.assert_array_equal(jac.cols[30 * i + 15:30 * i + 30], want)
        assert jac.cols[30 * p + i] == 11 * n + 3 * m + i
    np.testing.assert_allclose(jac.vals[30 * p:], -2 * args[2], rtol=1e-15)


def test_gradbench_interface():
    inp = K.generate(n=21, m=11315, p=36455)          # ba2
    assert inp == {"n": 21, "m": 11315, "p": 36455, "cam": K.CAM, "x": K.POINT,
                   "w": K.WEIGHT, "feat": K.FEAT}
    small = json.loads(json.dumps(K.generate(n=4, m=7, p=30)))
    args = K.prepare(K.PRIMAL, small)
    cams, X, w, obs, feats = args
    np.testing.assert_array_equal(obs, np.stack([np.arange(30) % 4, np.arange(30) % 7], 1))
    res = K.evaluate(K.PRIMAL, args)
    out = K.output(K.PRIMAL, res)
    assert out["reproj_error"]["repeated"] == 30 and out["w_err"]["repeated"] == 30
    assert out["reproj_error"]["elements"] == list(res[0][:2])
    assert out["w_err"]["element"] == pytest.approx(1 - K.WEIGHT ** 2)
    jac = K.evaluate(K.DERIVATIVE, args)
    jout = json.loads(json.dumps(K.output(K.DERIVATIVE, jac)))
    assert [len(jout[k]) for k in ("rows", "cols", "vals")] == [31, 31, 31]
    assert jout["rows"][:3] == [0, 15, 30] and jout["rows"][-1] == 31 * 30
    assert jout["vals"][-1] == pytest.approx(-2 * K.WEIGHT)
    f, theta0 = K.flat_problem(args)
    np.testing.assert_array_equal(f(theta0), np.concatenate(res))
    J = K.flat_derivative(jac)
    assert J.shape == (90, 11 * 4 + 3 * 7 + 30)
    e = np.zeros_like(theta0)
    e[5] = 1e-6
    np.testing.assert_allclose(J[:, 5], (f(theta0 + e) - f(theta0 - e)) / 2e-6,
                               rtol=1e-5, atol=1e-6 * np.max(np.abs(J[:, 5])))
    assert [tuple(s.values()) for s in K.SIZES["default"]] == [K.DATA_FILES[i] for i in range(1, 15)]
