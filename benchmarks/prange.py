"""prange benchmark: gradients of ``@njit(parallel=True)`` functions.

    python benchmarks/prange.py            # n = 2,000,000
    python benchmarks/prange.py --n 100000

For each program and each thread count (1 .. all cores, ``numba.set_num_threads``)
it times the primal and the gradient of the parallel function and of the same code
compiled serially, and checks the parallel gradient against the serial one.  Times
are medians of repeated runs after warm-up.  Writes
``benchmarks/results/<date>-prange-<machine>.md`` and prints the table.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402

from benchmarks.heap import keep_heap  # noqa: E402

import gradjit  # noqa: E402
from benchmarks.gmm import median_time  # noqa: E402


def elementwise(x):
    # private accesses: plain shadow adds
    s = 0.0
    for i in prange(x.shape[0]):
        s += np.sin(x[i]) * np.exp(-x[i] * x[i])
    return s


def neighbours(x):
    # x[i + 1] is read by two iterations: atomic shadow adds
    n = x.shape[0]
    s = 0.0
    for i in prange(n):
        s += np.sin(x[i]) * np.cos(x[(i + 1) % n])
    return s


def rows(A, w):
    # a serial inner loop per parallel iteration (taped per work item)
    m, k = A.shape
    s = 0.0
    for i in prange(m):
        acc = 0.0
        for j in range(k):
            acc += np.tanh(A[i, j] * w[j])
        s += acc * acc
    return s


PROGRAMS = {
    "elementwise": (elementwise, lambda n, r: (r.standard_normal(n),)),
    "neighbours": (neighbours, lambda n, r: (r.standard_normal(n),)),
    "rows": (rows, lambda n, r: (r.standard_normal((n // 16, 16)), r.standard_normal(16))),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2_000_000)
    args = ap.parse_args(argv)
    keep_heap()
    rng = np.random.default_rng(0)
    cores = numba.config.NUMBA_NUM_THREADS
    rows_out = []
    for name, (py, make) in PROGRAMS.items():
        par, ser = njit(parallel=True)(py), njit(py)
        inputs = make(args.n, rng)
        argnums = tuple(range(len(inputs)))
        gpar, gser = gradjit.grad(par, argnums), gradjit.grad(ser, argnums)
        for a, b in zip(gpar(*inputs), gser(*inputs)):
            err = float(np.max(np.abs(a - b)) / max(1e-300, np.max(np.abs(b))))
            assert err < 1e-9, (name, err)
        t_ser = median_time(lambda: ser(*inputs)) * 1e3
        g_ser = median_time(lambda: gser(*inputs)) * 1e3
        for threads in sorted({1, cores}):
            numba.set_num_threads(threads)
            t_par = median_time(lambda: par(*inputs)) * 1e3
            g_par = median_time(lambda: gpar(*inputs)) * 1e3
            rows_out.append((name, threads, t_ser, g_ser, t_par, g_par))
            print(f"{name:12s} threads={threads}: serial primal {t_ser:8.2f} ms grad {g_ser:8.2f} ms | "
                  f"parallel primal {t_par:8.2f} ms grad {g_par:8.2f} ms (grad/primal {g_par / t_par:.2f})",
                  flush=True)
        numba.set_num_threads(cores)
    machine = f"{platform.machine()}-{os.cpu_count()}cpu"
    lines = [f"# prange gradients, n = {args.n}, {machine}, {datetime.date.today()}", "",
             "| program | threads | serial primal ms | serial grad ms | parallel primal ms | "
             "parallel grad ms | parallel grad / primal |", "|---|---|---|---|---|---|---|"]
    for name, th, ts, gs, tp, gp in rows_out:
        lines.append(f"| {name} | {th} | {ts:.2f} | {gs:.2f} | {tp:.2f} | {gp:.2f} | {gp / tp:.2f} |")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       f"{datetime.date.today()}-prange-{machine}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
