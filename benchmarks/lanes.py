"""Per-element Jacobians in vector forward mode: lane layouts against reverse mode.

    python benchmarks/lanes.py              # p = 31843 observations (GradBench ba1)
    python benchmarks/lanes.py --p 182072

A common use of ``autodiff(..., width=N)``: a caller's ``@njit`` loop takes the
Jacobian of a small loop-free function once per element.  Here that function is
GradBench's BA reprojection residual (:func:`kernels.ba.compute_reproj_err`: 15
inputs, 2 outputs) and the loop fills the ``(p, 2, 15)`` block Jacobian.  Rows:

* forward, width 15, tangents lane-major (``(15, *shape)`` C-order arrays, the
  layout API.md documents): their loads are gathered into vectors, because the
  function has no loops (:mod:`gradjit.ad.forward_sweep`, packed lanes);
* forward, width 15, tangents interleaved (the lane axis fastest: ``a.T`` of a
  ``(*shape, 15)`` array): one vector load per element;
* forward, width 1, 15 calls per element;
* reverse, width 2 (what ``kernels/ba.py`` uses): one augmented primal and two
  adjoint lanes, one per residual.

Medians of repeated runs after warm-up, single-threaded
(:func:`benchmarks.threads.single_threaded`), in one process, each loop checked
against the reverse-mode one.  Writes ``benchmarks/results/<date>-lanes-<machine>.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.threads import single_threaded  # noqa: E402

single_threaded()

import numba  # noqa: E402
import numpy as np  # noqa: E402

import gradjit  # noqa: E402
from benchmarks.child import write_table  # noqa: E402
from benchmarks.heap import keep_heap  # noqa: E402
from gradjit import Active, Const, Dual, Duplicated  # noqa: E402
from kernels.ba import N_CAM_PARAMS, compute_reproj_err, make_inputs, objective  # noqa: E402

W = N_CAM_PARAMS + 3 + 1          # camera, point, weight

fwd = gradjit.autodiff(compute_reproj_err, "forward", Dual, Dual, Dual, Const, Dual,
                       ret=Const, width=W)
fwd1 = gradjit.autodiff(compute_reproj_err, "forward", Dual, Dual, Dual, Const, Dual,
                        ret=Const)
rev = gradjit.autodiff(compute_reproj_err, "reverse", Duplicated, Duplicated, Active,
                       Const, Duplicated, width=2)


@numba.njit
def _seeds(dcam, dX, dw):
    for j in range(N_CAM_PARAMS):
        dcam[j, j] = 1.0
    for j in range(3):
        dX[N_CAM_PARAMS + j, j] = 1.0
    dw[W - 1] = 1.0


@numba.njit
def forward_lane_major(cams, X, w, obs, feats, jac):
    dcam, dX, dw = np.zeros((W, N_CAM_PARAMS)), np.zeros((W, 3)), np.zeros(W)
    _seeds(dcam, dX, dw)
    err, derr, dret = np.empty(2), np.empty((W, 2)), np.empty(W)
    for i in range(w.shape[0]):
        fwd(cams[obs[i, 0]], dcam, X[obs[i, 1]], dX, w[i], dw, feats[i], err, derr, dret)
        for r in range(2):
            for j in range(W):
                jac[i, r, j] = derr[j, r]


@numba.njit
def forward_interleaved(cams, X, w, obs, feats, jac):
    dcam, dX = np.zeros((N_CAM_PARAMS, W)).T, np.zeros((3, W)).T
    dw = np.zeros(W)
    _seeds(dcam, dX, dw)
    err, dret = np.empty(2), np.empty(W)
    for i in range(w.shape[0]):
        fwd(cams[obs[i, 0]], dcam, X[obs[i, 1]], dX, w[i], dw, feats[i], err,
            jac[i].T, dret)


@numba.njit
def forward_width1(cams, X, w, obs, feats, jac):
    dcam, dX, derr = np.zeros(N_CAM_PARAMS), np.zeros(3), np.empty(2)
    err = np.empty(2)
    for i in range(w.shape[0]):
        for j in range(W):
            dcam[:] = 0.0
            dX[:] = 0.0
            if j < N_CAM_PARAMS:
                dcam[j] = 1.0
            elif j < N_CAM_PARAMS + 3:
                dX[j - N_CAM_PARAMS] = 1.0
            fwd1(cams[obs[i, 0]], dcam, X[obs[i, 1]], dX, w[i], 1.0 if j == W - 1 else 0.0,
                 feats[i], err, derr)
            jac[i, 0, j] = derr[0]
            jac[i, 1, j] = derr[1]


@numba.njit
def reverse_width2(cams, X, w, obs, feats, jac):
    dcam, dX, dw = np.empty((2, N_CAM_PARAMS)), np.empty((2, 3)), np.empty((1, 2))
    err, derr = np.empty(2), np.zeros((2, 2))
    for i in range(w.shape[0]):
        dcam[:, :] = 0.0
        dX[:, :] = 0.0
        dw[0, 0] = dw[0, 1] = 0.0
        derr[0, 0] = derr[1, 1] = 1.0
        rev(cams[obs[i, 0]], dcam, X[obs[i, 1]], dX, w[i], feats[i], err, derr, dw)
        for r in range(2):
            jac[i, r, :N_CAM_PARAMS] = dcam[r]
            jac[i, r, N_CAM_PARAMS:W - 1] = dX[r]
            jac[i, r, W - 1] = dw[0, r]


ROWS = (("forward, width 15, lane-major (gathered)", forward_lane_major),
        ("forward, width 15, interleaved", forward_interleaved),
        ("forward, width 1, 15 calls", forward_width1),
        ("reverse, width 2", reverse_width2))


def _median_ms(f, args, reps):
    f(*args)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=31843, help="observations")
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args(argv)
    keep_heap()
    args = make_inputs(49, 7776, a.p)
    want = np.empty((a.p, 2, W))
    reverse_width2(*args, want)
    primal = _median_ms(objective, args, a.reps)
    lines = [f"# Per-element BA Jacobians, p = {a.p} ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, 1 thread)", "",
             f"Primal (the residuals): {primal:.3f} ms.", "",
             "| derivative | ms | / primal | max rel diff vs reverse |", "|---|---|---|---|"]
    for name, f in ROWS:
        jac = np.empty((a.p, 2, W))
        f(*args, jac)
        diff = float(np.abs(jac - want).max() / np.abs(want).max())
        if diff > 1e-12:
            raise SystemExit(f"{name}: differs from reverse mode by {diff:.1e}")
        ms = _median_ms(f, args + (jac,), a.reps)
        lines.append(f"| {name} | {ms:.3f} | {ms / primal:.2f} | {diff:.1e} |")
    write_table("lanes", lines)


if __name__ == "__main__":
    main()
