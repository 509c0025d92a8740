"""GradBench ``ba``: bundle adjustment reprojection residuals and their sparse Jacobian.

This is the GradBench ``ba`` eval (``evals/ba/README.md`` in
https://github.com/gradbench/gradbench; the residuals are defined by the eval's
golden implementation ``cpp/gradbench/evals/ba.hpp``, taken from ADBench).

Problem (NumPy shapes; float64 unless said otherwise): ``n`` cameras, ``m``
points, ``p`` observations::

    cams  : (n, 11)  [r0 r1 r2 | C0 C1 C2 | f | u0 v0 | k1 k2]: Rodrigues rotation
                     vector, camera centre, focal length, principal point,
                     radial distortion
    X     : (m, 3)   3-D points
    w     : (p,)     observation weights
    obs   : (p, 2)   int32 (camera index, point index) of each observation
    feats : (p, 2)   observed 2-D features

Residuals of observation ``i`` with camera ``c = cams[obs[i, 0]]`` and point
``x = X[obs[i, 1]]``::

    y      = R(r) (x - C)                 (Rodrigues: with theta = |r|, k = r / theta,
                                           y = v cos(theta) + (k x v) sin(theta)
                                               + k (k . v)(1 - cos(theta));
                                           for r == 0: y = v + r x v)
    q      = (y0 / y2, y1 / y2)
    q      = q * (1 + k1 |q|^2 + k2 |q|^4)
    proj   = q * f + (u0, v0)
    reproj_err[2i : 2i+2] = w[i] * (proj - feats[i])
    w_err[i]              = 1 - w[i]^2

The eval's ``objective`` returns ``reproj_err`` (2p) and ``w_err`` (p); its
``jacobian`` is the sparse ``3p x (11n + 3m + p)`` Jacobian of
``concat(reproj_err, w_err)`` with respect to ``concat(cams.ravel(), X.ravel(), w)``
in GradBench's CSR layout (``SparseMat`` of ba.hpp): ``rows`` (3p + 1 row
pointers), ``cols`` and ``vals`` (31p entries).  Row ``2i + r`` (``r`` = 0, 1) holds
15 entries, in this order: the 11 parameters of camera ``obs[i, 0]``, the 3
coordinates of point ``obs[i, 1]``, then ``w[i]``; row ``2p + i`` holds the single
entry ``d w_err[i] / d w[i] = -2 w[i]``.

The input sends one camera, one point, one weight and one feature together with
``n, m, p``; the tool replicates them (camera ``i % n`` and point ``i % m`` for
observation ``i``) and must not exploit the duplication, which this module does
not: every block is computed.

:func:`compute_reproj_err` is the per-observation Numba residual;
:func:`ba_objective` loops it over the observations.  The Jacobian
(:func:`ba_jacobian`) is assembled in a Numba loop that calls gradjit's
reverse-mode derivative of :func:`compute_reproj_err` once per residual
component (two calls per observation, seeding ``d err[r] = 1``), which yields a
whole row of the 2 x 15 block per call; the ``w_err`` rows come from the
reverse-mode derivative of :func:`compute_w_err`.  :func:`ba_objective_reference`
is an independent vectorised NumPy version.

JSON output (:func:`output`) follows the eval's golden tool (``to_json`` in
ba.hpp), which the eval validates against, rather than the README's TypeScript
types: the objective as ``{"reproj_error": {"elements": [2 values], "repeated": p},
"w_err": {"element": value, "repeated": p}}``, the Jacobian as the first 30 and
the last entries of ``rows``, ``cols`` and ``vals``.
"""

import math

import numba
import numpy as np

import gradjit  # imported first: its hook must see Numba compile the kernels below
from gradjit import Active, Const, Duplicated

__all__ = [
    "N_CAM_PARAMS",
    "DATA_FILES",
    "ba_objective",
    "ba_objective_reference",
    "ba_jacobian",
    "compute_reproj_err",
    "compute_w_err",
    "make_inputs",
    "jacobian_matrix",
]

N_CAM_PARAMS = 11


# ---------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------
# The per-observation helpers are ``inline="always"``: Numba otherwise calls them as
# separate functions taking exploded array structs, which makes ``ba_objective``
# about 6x slower (measured: 4.4 ms instead of 0.7 ms for ba1's 31843 observations).


@numba.njit(inline="always")
def rodrigues_rotate_point(rot, pt0, pt1, pt2):
    """Rotate the point ``(pt0, pt1, pt2)`` by the angle-axis vector ``rot`` (3,).

    Returns the rotated point as a tuple of three floats.
    """
    sqtheta = rot[0] * rot[0] + rot[1] * rot[1] + rot[2] * rot[2]
    if sqtheta != 0.0:
        theta = math.sqrt(sqtheta)
        costheta = math.cos(theta)
        sintheta = math.sin(theta)
        k0 = rot[0] / theta
        k1 = rot[1] / theta
        k2 = rot[2] / theta
        tmp = (k0 * pt0 + k1 * pt1 + k2 * pt2) * (1.0 - costheta)
        return (pt0 * costheta + (k1 * pt2 - k2 * pt1) * sintheta + k0 * tmp,
                pt1 * costheta + (k2 * pt0 - k0 * pt2) * sintheta + k1 * tmp,
                pt2 * costheta + (k0 * pt1 - k1 * pt0) * sintheta + k2 * tmp)
    return (pt0 + rot[1] * pt2 - rot[2] * pt1,
            pt1 + rot[2] * pt0 - rot[0] * pt2,
            pt2 + rot[0] * pt1 - rot[1] * pt0)


@numba.njit(inline="always")
def project(cam, X):
    """Project point ``X`` (3,) with camera ``cam`` (11,); returns ``(u, v)``."""
    y0, y1, y2 = rodrigues_rotate_point(cam[0:3], X[0] - cam[3], X[1] - cam[4],
                                        X[2] - cam[5])
    p0 = y0 / y2
    p1 = y1 / y2
    rsq = p0 * p0 + p1 * p1
    L = 1.0 + cam[9] * rsq + cam[10] * rsq * rsq
    return p0 * L * cam[6] + cam[7], p1 * L * cam[6] + cam[8]


@numba.njit(inline="always")
def compute_reproj_err(cam, X, w, feat, err):
    """Weighted reprojection error of one observation.

    Parameters
    ----------
    cam : float64 array, shape (11,)
    X : float64 array, shape (3,)
    w : float
    feat : float64 array, shape (2,)
    err : float64 array, shape (2,)
        Output: ``w * (project(cam, X) - feat)``.
    """
    u, v = project(cam, X)
    err[0] = w * (u - feat[0])
    err[1] = w * (v - feat[1])


@numba.njit(inline="always")
def compute_w_err(w):
    """Zach's weight error ``1 - w**2`` of one observation (float -> float)."""
    return 1.0 - w * w


@numba.njit
def ba_objective(cams, X, w, obs, feats, reproj_err, w_err):
    """GradBench ``ba`` objective, written into ``reproj_err`` and ``w_err``.

    Parameters
    ----------
    cams : float64 array, shape (n, 11)
    X : float64 array, shape (m, 3)
    w : float64 array, shape (p,)
    obs : int32 array, shape (p, 2)
    feats : float64 array, shape (p, 2)
    reproj_err : float64 array, shape (p, 2)  (output; GradBench's 2p vector is its ravel)
    w_err : float64 array, shape (p,)         (output)
    """
    p = w.shape[0]
    for i in range(p):
        compute_reproj_err(cams[obs[i, 0]], X[obs[i, 1]], w[i], feats[i], reproj_err[i])
    for i in range(p):
        w_err[i] = compute_w_err(w[i])


def objective(cams, X, w, obs, feats):
    """``(reproj_err (2p,), w_err (p,))`` of :func:`ba_objective` in new arrays."""
    p = w.shape[0]
    reproj_err = np.empty((p, 2))
    w_err = np.empty(p)
    ba_objective(cams, X, w, obs, feats, reproj_err, w_err)
    return reproj_err.reshape(2 * p), w_err


# gradjit derivatives of the per-observation residuals (compiled on first use).
# d_reproj: batched reverse mode, one augmented primal and two adjoint lanes (one
# per residual component): d_reproj(cam, dcam, X, dX, w, feat, err, derr, dw)
# with dcam (2, 11), dX (2, 3), derr (2, 2) (lane r seeds component r; consumed)
# and dw (1, 2) receiving the two derivatives with respect to w.
d_reproj = gradjit.autodiff(compute_reproj_err, "reverse",
                            Duplicated, Duplicated, Active, Const, Duplicated, width=2)
# d_w_err(w, seed) -> (w_err, d w_err / d w * seed)
d_w_err = gradjit.autodiff(compute_w_err, "reverse", Active)


@numba.njit
def ba_jacobian_fill(cams, X, w, obs, feats, rows, cols, vals):
    """Fill GradBench's CSR Jacobian (see the module docstring) with gradjit derivatives.

    ``rows`` int32 (3p + 1,), ``cols`` int32 (31p,), ``vals`` float64 (31p,) are outputs.
    """
    n = cams.shape[0]
    m = X.shape[0]
    p = w.shape[0]
    dcam = np.empty((2, N_CAM_PARAMS))
    dX = np.empty((2, 3))
    err = np.empty(2)
    derr = np.zeros((2, 2))
    dw = np.empty((1, 2))
    xoff = N_CAM_PARAMS * n
    woff = xoff + 3 * m
    nz = 0
    rows[0] = 0
    for i in range(p):
        ci = obs[i, 0]
        pi = obs[i, 1]
        dcam[:, :] = 0.0
        dX[:, :] = 0.0
        dw[0, 0] = 0.0
        dw[0, 1] = 0.0
        derr[0, 0] = 1.0           # seeds; consumed (zeroed) by the reverse pass
        derr[1, 1] = 1.0
        d_reproj(cams[ci], dcam, X[pi], dX, w[i], feats[i], err, derr, dw)
        for r in range(2):
            for j in range(N_CAM_PARAMS):
                cols[nz] = N_CAM_PARAMS * ci + j
                vals[nz] = dcam[r, j]
                nz += 1
            for j in range(3):
                cols[nz] = xoff + 3 * pi + j
                vals[nz] = dX[r, j]
                nz += 1
            cols[nz] = woff + i
            vals[nz] = dw[0, r]
            nz += 1
            rows[2 * i + r + 1] = nz
    for i in range(p):
        _, dwe = d_w_err(w[i], 1.0)
        cols[nz] = woff + i
        vals[nz] = dwe
        nz += 1
        rows[2 * p + i + 1] = nz


class SparseJacobian:
    """GradBench's sparse BA Jacobian: CSR arrays ``rows`` (3p + 1,), ``cols``
    (31p,) int32 and ``vals`` (31p,) float64, and its ``shape`` (3p, 11n + 3m + p)."""

    __slots__ = ("rows", "cols", "vals", "shape")

    def __init__(self, rows, cols, vals, shape):
        self.rows, self.cols, self.vals, self.shape = rows, cols, vals, shape


def ba_jacobian(cams, X, w, obs, feats):
    """The sparse Jacobian (a :class:`SparseJacobian`) of the BA residuals,
    computed with gradjit (arguments as in :func:`ba_objective`)."""
    n, m, p = cams.shape[0], X.shape[0], w.shape[0]
    rows = np.empty(3 * p + 1, dtype=np.int32)
    nnz = (N_CAM_PARAMS + 3 + 1) * 2 * p + p
    cols = np.empty(nnz, dtype=np.int32)
    vals = np.empty(nnz)
    ba_jacobian_fill(cams, X, w, obs, feats, rows, cols, vals)
    return SparseJacobian(rows, cols, vals, (3 * p, N_CAM_PARAMS * n + 3 * m + p))


#: Dense Jacobians up to this many entries are returned as ndarrays by
#: :func:`jacobian_matrix`; larger ones as ``scipy.sparse.csr_matrix``.
DENSE_LIMIT = 50_000_000


def jacobian_matrix(rows, cols, vals, shape):
    """The Jacobian as a dense ``(3p, 11n + 3m + p)`` ndarray, or as a
    ``scipy.sparse.csr_matrix`` when it has more than :data:`DENSE_LIMIT` entries
    (the dense Jacobian of GradBench's smallest default input has 5e9)."""
    import scipy.sparse
    mat = scipy.sparse.csr_matrix((vals, cols, rows), shape=shape)
    if shape[0] * shape[1] <= DENSE_LIMIT:
        return mat.toarray()
    return mat


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def ba_objective_reference(cams, X, w, obs, feats):
    """Vectorised NumPy version of the objective: ``(reproj_err (2p,), w_err (p,))``.

    Builds each observation's rotation matrix ``R = I + sin(t) K + (1 - cos(t)) K^2``
    (``K`` the cross-product matrix of the unit axis; ``R = I + [r]_x`` for
    ``r = 0``) instead of the Rodrigues formula used by the kernel.
    """
    cams = np.asarray(cams, dtype=np.float64)
    cam = cams[obs[:, 0]]                                 # (p, 11)
    x = np.asarray(X, dtype=np.float64)[obs[:, 1]]        # (p, 3)
    r = cam[:, 0:3]
    theta = np.linalg.norm(r, axis=1)
    zero = theta == 0.0
    k = r / np.where(zero, 1.0, theta)[:, None]
    k = np.where(zero[:, None], r, k)
    K = np.zeros((len(r), 3, 3))
    K[:, 0, 1], K[:, 0, 2] = -k[:, 2], k[:, 1]
    K[:, 1, 0], K[:, 1, 2] = k[:, 2], -k[:, 0]
    K[:, 2, 0], K[:, 2, 1] = -k[:, 1], k[:, 0]
    s = np.where(zero, 1.0, np.sin(theta))[:, None, None]
    c = np.where(zero, 0.0, 1.0 - np.cos(theta))[:, None, None]
    R = np.eye(3)[None] + s * K + c * (K @ K)
    y = np.einsum("pij,pj->pi", R, x - cam[:, 3:6])
    q = y[:, :2] / y[:, 2:3]
    rsq = np.sum(q * q, axis=1, keepdims=True)
    q = q * (1.0 + cam[:, 9:10] * rsq + cam[:, 10:11] * rsq**2)
    proj = q * cam[:, 6:7] + cam[:, 7:9]
    reproj = (np.asarray(w)[:, None] * (proj - feats)).ravel()
    return reproj, 1.0 - np.asarray(w) ** 2


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

#: The camera, point, weight and feature of every ADBench/GradBench data file
#: (``evals/ba/data/ba*_n*_m*_p*.txt``; all files share these four lines).
CAM = [-0.758453, -1.109613, -0.845551, 34.556073, 39.676747, 53.881673,
       419.194514, 5.864426, -8.518870, 0.087812, 0.002739]
POINT = [7.203245, 0.001144, 3.023326]
WEIGHT = 0.417022
FEAT = [271.760969, 834.209256]

#: ``(n, m, p)`` of GradBench's data files ``ba1`` .. ``ba20`` (first line of each;
#: ba20's file name says p2987644, its first line 28987644).
DATA_FILES = {
    1: (49, 7776, 31843), 2: (21, 11315, 36455), 3: (161, 48126, 182072),
    4: (372, 47423, 204472), 5: (257, 65132, 225911), 6: (539, 65220, 277273),
    7: (93, 61203, 287451), 8: (88, 64298, 383937), 9: (810, 88814, 393775),
    10: (1197, 126327, 563734), 11: (1723, 156502, 678718), 12: (253, 163691, 899155),
    13: (245, 198739, 1091386), 14: (356, 226730, 1255268), 15: (1102, 780462, 4052340),
    16: (1544, 942409, 4750193), 17: (1778, 993923, 5001946), 18: (1936, 649673, 5213733),
    19: (4585, 1324582, 9125125), 20: (13682, 4456117, 28987644),
}


def make_inputs(n, m, p, cam=CAM, x=POINT, w=WEIGHT, feat=FEAT):
    """Arguments of :func:`ba_objective` (without outputs) for an input's
    ``n, m, p, cam, x, w, feat``, replicated as ba.hpp's ``from_json`` does.

    Returns ``(cams (n, 11), X (m, 3), w (p,), obs (p, 2) int32, feats (p, 2))``.
    """
    cams = np.tile(np.asarray(cam, dtype=np.float64), (n, 1))
    X = np.tile(np.asarray(x, dtype=np.float64), (m, 1))
    ws = np.full(p, float(w))
    i = np.arange(p)
    obs = np.ascontiguousarray(np.stack([i % n, i % m], axis=1).astype(np.int32))
    feats = np.tile(np.asarray(feat, dtype=np.float64), (p, 1))
    return cams, X, ws, obs, feats


def random_inputs(n, m, p, seed=0):
    """Non-replicated inputs for tests: every camera, point, weight and feature
    different (seeded ``numpy.random.default_rng``), perturbed around the data
    files' values so that the points stay in front of the cameras; observation
    ``i`` pairs camera ``i % n`` with a random point."""
    rng = np.random.default_rng(seed)
    cams = np.asarray(CAM) * (1.0 + 0.1 * rng.standard_normal((n, N_CAM_PARAMS)))
    X = np.asarray(POINT) + rng.standard_normal((m, 3))
    w = WEIGHT * (1.0 + 0.5 * rng.random(p))
    obs = np.stack([np.arange(p) % n, rng.integers(0, m, p)], axis=1).astype(np.int32)
    feats = np.asarray(FEAT) + 10.0 * rng.standard_normal((p, 2))
    return cams, X, w, np.ascontiguousarray(obs), feats


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "ba"
PRIMAL, DERIVATIVE = "objective", "jacobian"
SIZES = {
    # scaled-down synthetic sizes with the data files' values (dense Jacobian fits)
    "quick": [dict(n=5, m=40, p=100), dict(n=20, m=300, p=1000)],
    # evals/ba/run.py: --min 1 --max 14, i.e. the data files ba1 .. ba14
    "default": [dict(n=n, m=m, p=p) for k, (n, m, p) in sorted(DATA_FILES.items()) if k <= 14],
}


def generate(seed=None, n=49, m=7776, p=31843):
    """A GradBench ``ba`` input: ``parse`` of evals/ba/run.py on the data file with
    these ``n, m, p`` (all data files carry the same camera, point, weight and
    feature).  ``seed`` is unused: the eval is deterministic."""
    return {"n": int(n), "m": int(m), "p": int(p), "cam": list(CAM), "x": list(POINT),
            "w": WEIGHT, "feat": list(FEAT)}


def prepare(function, input):
    """JSON input -> ``(cams, X, w, obs, feats)`` replicated as the golden tool does."""
    return make_inputs(int(input["n"]), int(input["m"]), int(input["p"]), input["cam"],
                       input["x"], input["w"], input["feat"])


def evaluate(function, args):
    """The timed computation: the residuals, or their sparse Jacobian with gradjit."""
    if function == PRIMAL:
        return objective(*args)
    if function == DERIVATIVE:
        return ba_jacobian(*args)
    raise ValueError(f"ba has no function {function!r}")


def output(function, result):
    """The golden tool's JSON (``to_json`` of ba.hpp): the objective as its first
    two reprojection errors and first weight error with their repetition counts;
    the Jacobian as the first 30 and the last entries of ``rows``, ``cols``, ``vals``."""
    if function == PRIMAL:
        reproj_err, w_err = result
        return {"reproj_error": {"elements": [float(v) for v in reproj_err[:2]],
                                 "repeated": len(reproj_err) // 2},
                "w_err": {"element": float(w_err[0]), "repeated": len(w_err)}}

    def dedup(a, conv):
        return [conv(v) for v in a[:30]] + [conv(a[-1])]
    return {"rows": dedup(result.rows, int), "cols": dedup(result.cols, int),
            "vals": dedup(result.vals, float)}


def flat_problem(args):
    """``(f, theta0)``: ``concat(reproj_err, w_err)`` as a function of
    ``theta = concat(cams.ravel(), X.ravel(), w)``."""
    cams, X, w, obs, feats = args
    a, b = cams.size, cams.size + X.size
    theta0 = np.concatenate([cams.ravel(), X.ravel(), w])

    def f(theta):
        r, e = objective(np.ascontiguousarray(theta[:a].reshape(cams.shape)),
                         np.ascontiguousarray(theta[a:b].reshape(X.shape)),
                         np.ascontiguousarray(theta[b:]), obs, feats)
        return np.concatenate([r, e])
    return f, theta0


def flat_derivative(result):
    """The Jacobian of ``flat_problem``'s ``f``: dense ``(3p, 11n + 3m + p)`` ndarray,
    or ``scipy.sparse.csr_matrix`` beyond :data:`DENSE_LIMIT` entries."""
    return jacobian_matrix(result.rows, result.cols, result.vals, result.shape)
