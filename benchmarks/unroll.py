"""Pre-AD unrolling benchmark: gradients of code with small constant-trip loops.

    python benchmarks/unroll.py             # n = 1,000,000 elements / points
    python benchmarks/unroll.py --n 100000

Numba lowers ``x ** 2`` (an int exponent) to ``int_power``'s square-and-multiply
loop; small fixed-size loops (``for j in range(3)``) are common in per-point
kernels.  gradjit unrolls such loops before AD (:mod:`gradjit.ir.unroll`).  For
each program this runs the primal and the gradient twice, each in a fresh
process: with unrolling (the default) and without (``GRADJIT_UNROLL_TRIPS=0``),
and reports medians of repeated runs after warm-up, the first gradient call's
time (capture, AD, LLVM) and the largest difference between the two gradients.
Single-threaded (:func:`benchmarks.threads.single_threaded`).  Writes
``benchmarks/results/<date>-unroll-<machine>.md`` and prints the table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.child import PRELUDE, off_and_on, run_child, write_table  # noqa: E402
PROGRAMS = ("squares", "residual_jacobian", "rotations")

_CHILD = PRELUDE + r'''

@njit
def squares(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += (x[i] - y[i]) ** 2 + 0.5 * x[i] ** 3
    return s

@njit
def residual(p, w):
    return w * (p[1] - p[0] ** 2) ** 2 + (1.0 - p[0]) ** 2

d_residual = gradjit.autodiff(residual, "reverse", Duplicated, Active)

@njit
def residual_sum(ps, w):
    s = 0.0
    for i in range(ps.shape[0]):
        s += residual(ps[i], w[i])
    return s

@njit
def residual_jacobian(ps, w, out):
    dp = np.zeros(2)
    for i in range(ps.shape[0]):
        dp[:] = 0.0
        d_residual(ps[i], dp, w[i], 1.0)
        out[i, 0] = dp[0]
        out[i, 1] = dp[1]
    return out

@njit
def rotations(r, pts):
    s = 0.0
    q = np.empty(3)
    for k in range(pts.shape[0]):
        for i in range(3):
            q[i] = 0.0
            for j in range(3):
                q[i] += r[i, j] * pts[k, j]
        s += math.sqrt(q[0] * q[0] + q[1] * q[1] + 1.0) * q[2]
    return s

n = N
rng = np.random.default_rng(0)
name = NAME
if name == "squares":
    args = (rng.random(n), rng.random(n))
    primal = lambda: squares(*args)
    g = gradjit.grad(squares)
    grad = lambda: g(*args)
elif name == "residual_jacobian":
    ps, w, out = rng.normal(size=(n, 2)), rng.uniform(0.5, 2.0, n), np.empty((n, 2))
    primal = lambda: residual_sum(ps, w)
    grad = lambda: residual_jacobian(ps, w, out)
else:
    r, pts = rng.normal(size=(3, 3)), rng.normal(size=(n, 3))
    primal = lambda: rotations(r, pts)
    g = gradjit.grad(rotations)
    grad = lambda: g(r, pts)
primal()
t = time.perf_counter()
res = grad()
first = time.perf_counter() - t
np.save(OUT, np.asarray(res, dtype=np.float64))
print(json.dumps(dict(primal=median_time(primal), grad=median_time(grad), first=first)))
'''


def _run(name, n, trips, out):
    src = (_CHILD.replace("ROOT", repr(ROOT)).replace("NAME", repr(name))
           .replace("OUT", repr(out)).replace(" = N\n", f" = {int(n)}\n"))
    return run_child(src, dict(GRADJIT_UNROLL_TRIPS=str(trips)),
                     f"{name} (GRADJIT_UNROLL_TRIPS={trips})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--programs", nargs="*", default=list(PROGRAMS), choices=PROGRAMS)
    a = ap.parse_args(argv)
    import numpy as np
    from benchmarks.run import cpu_model
    rows = []
    for name in a.programs:
        off, on, g0, g1 = off_and_on(lambda k, out: _run(name, a.n, 8 * k, out),
                                     f"unroll-{name}")
        diff = float(np.max(np.abs(g0 - g1)))
        rows.append((name, on["primal"], off["grad"], on["grad"], off["first"], on["first"], diff))
    machine = f"{platform.machine()}-{os.cpu_count()}cpu"
    lines = [f"# Pre-AD unrolling, n = {a.n} ({cpu_model()}, {machine}, 1 thread)", "",
             "| program | primal ms | gradient ms, rolled | gradient ms, unrolled | speedup "
             "| first call s, rolled | first call s, unrolled | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    for name, p, g0, g1, f0, f1, d in rows:
        lines.append(f"| {name} | {p * 1e3:.3f} | {g0 * 1e3:.3f} | {g1 * 1e3:.3f} | {g0 / g1:.2f} "
                     f"| {f0:.2f} | {f1:.2f} | {d:.1e} |")
    write_table("unroll", lines)


if __name__ == "__main__":
    main()
