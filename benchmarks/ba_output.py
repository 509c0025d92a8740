"""The ``ba`` Jacobian: how much of its time is writing GradBench's CSR output.

    python benchmarks/ba_output.py

GradBench's BA Jacobian (:mod:`kernels.ba`) is a CSR matrix with 31 non-zeros per
observation (two residual rows of 15 entries and a weight row), written as int32
column indices and float64 values: 372 bytes per observation, against the 24
bytes of the primal's three residuals.  This times, in one process and on the
same inputs, the primal, gradjit's Jacobian (the benchmarked
:func:`kernels.ba.ba_jacobian`), and :func:`csr_writes`: the same CSR arrays
filled with the same column indices and constant values, no derivatives.  The
last is what any tool pays for the output format.  Medians of repeated runs
after warm-up, alternating the three, single-threaded.  Writes
``benchmarks/results/<date>-ba-output-<machine>.md``.
"""
from __future__ import annotations

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

from benchmarks.child import write_table  # noqa: E402
from benchmarks.heap import keep_heap  # noqa: E402
from kernels import ba  # noqa: E402


@numba.njit
def _fill_structure(obs, n, m, rows, cols, vals):
    """The CSR arrays ``ba_jacobian_fill`` writes (same entries, same order),
    with a constant for every derivative."""
    p = obs.shape[0]
    k = ba.N_CAM_PARAMS
    per_row = k + 3 + 1  # camera, point, weight
    xoff = k * n
    woff = xoff + 3 * m
    rows[0] = 0
    for i in range(p):
        cam0 = k * obs[i, 0]
        pt0 = xoff + 3 * obs[i, 1] - k
        for r in range(2):
            start = (2 * i + r) * per_row
            for j in range(per_row):
                cols[start + j] = cam0 + j if j < k else (pt0 + j if j < k + 3 else woff + i)
                vals[start + j] = 0.5
            rows[2 * i + r + 1] = start + per_row
    base = 2 * p * per_row
    for i in range(p):
        cols[base + i] = woff + i
        vals[base + i] = 2.0
        rows[2 * p + i + 1] = base + i + 1


def csr_writes(cams, X, w, obs, feats):
    """The CSR arrays of :func:`kernels.ba.ba_jacobian`, allocated and filled the
    same way, without derivatives."""
    n, m, p = cams.shape[0], X.shape[0], w.shape[0]
    nnz = (ba.N_CAM_PARAMS + 3 + 1) * 2 * p + p
    rows = np.empty(3 * p + 1, dtype=np.int32)
    cols = np.empty(nnz, dtype=np.int32)
    vals = np.empty(nnz)
    _fill_structure(obs, n, m, rows, cols, vals)
    return rows, cols, vals


def main():
    keep_heap()
    lines = [f"# ba Jacobian: the CSR output alone ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, 1 thread)", "",
             "| size | primal ms | gradjit ms | gradjit/primal | CSR writes ms | writes/primal |",
             "|---|---|---|---|---|---|"]
    sizes = ba.SIZES["default"]
    for size in (sizes[0], sizes[len(sizes) // 2], sizes[-1]):
        args = ba.prepare(ba.DERIVATIVE, ba.generate(**size))
        jac = ba.evaluate(ba.DERIVATIVE, args)
        rows, cols, _ = csr_writes(*args)
        if not (np.array_equal(rows, jac.rows) and np.array_equal(cols, jac.cols)):
            raise SystemExit(f"{size}: the CSR structure differs from ba_jacobian's")
        fns = (lambda: ba.evaluate(ba.PRIMAL, args), lambda: ba.evaluate(ba.DERIVATIVE, args),
               lambda: csr_writes(*args))
        for f in fns:
            f()
        ts = [[], [], []]
        for _ in range(7):
            for k, f in enumerate(fns):
                t0 = time.perf_counter()
                f()
                ts[k].append(time.perf_counter() - t0)
        p, g, wr = (float(np.median(t)) * 1e3 for t in ts)
        name = ",".join(f"{k}={v}" for k, v in size.items())
        lines.append(f"| {name} | {p:.3f} | {g:.3f} | {g / p:.2f} | {wr:.3f} | {wr / p:.2f} |")
        print(lines[-1], flush=True)
    write_table("ba-output", lines)


if __name__ == "__main__":
    main()
