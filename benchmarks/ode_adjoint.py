"""The ``ode`` gradient: gradjit's reverse mode against a hand-written adjoint.

    python benchmarks/ode_adjoint.py

GradBench's ``ode`` gradient (:mod:`kernels.ode`) stays near 4x its primal at
the larger sizes.  To tell what the AD costs from what the algorithm costs, this
times, in one process and on the same inputs, the primal, ``gradjit.grad`` of
:func:`kernels.ode.ode_last`, and :func:`hand_gradient`: the reverse sweep
written by hand with the same store-all strategy (the four stage inputs of
every step on a tape, the adjoint loops of the stages in reverse order, the
adjoints of the scratch arrays zeroed as they are consumed).  Both gradients are
checked against each other first.  Medians of repeated runs after warm-up,
alternating the three functions, single-threaded.  Writes
``benchmarks/results/<date>-ode-adjoint-<machine>.md``.
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

import gradjit  # noqa: E402
from benchmarks.child import write_table  # noqa: E402
from benchmarks.heap import keep_heap  # noqa: E402
from kernels.ode import TF, make_inputs, ode_fun, ode_last, ode_primal  # noqa: E402

SIZES = ((1000, 1), (10000, 1), (100000, 1), (1000, 100), (10000, 10), (100000, 10),
         (10000, 100))


@numba.njit
def _stage_adjoint(x, dx, tape_y, dk, dy):
    """Adjoint of ``ode_fun(x, y, k)`` (``k[i] = x[i] * y[i-1]``) with ``y`` from the tape;
    consumes ``dk``."""
    n = x.shape[0]
    for i in range(n - 1, 0, -1):
        dx[i] += dk[i] * tape_y[i - 1]
        dy[i - 1] += dk[i] * x[i]
        dk[i] = 0.0
    dx[0] += dk[0]
    dk[0] = 0.0


@numba.njit
def _update_adjoint(dyt, dyf, dk, c):
    """Adjoint of ``y_tmp = yf + c * k``; consumes ``dyt``."""
    for i in range(dyt.shape[0] - 1, -1, -1):
        dyf[i] += dyt[i]
        dk[i] += c * dyt[i]
        dyt[i] = 0.0


@numba.njit
def hand_gradient(x, s):
    """Gradient of ``ode_last(x, s)`` with respect to ``x`` (float64 ``(n,)``), by hand."""
    n = x.shape[0]
    h = TF / s
    k1, k2, k3, k4 = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    yt, yf = np.empty(n), np.zeros(n)
    tape = np.empty((s, 4, n))
    for st in range(s):
        tape[st, 0] = yf
        ode_fun(x, yf, k1)
        for i in range(n):
            yt[i] = yf[i] + h * k1[i] / 2.0
        tape[st, 1] = yt
        ode_fun(x, yt, k2)
        for i in range(n):
            yt[i] = yf[i] + h * k2[i] / 2.0
        tape[st, 2] = yt
        ode_fun(x, yt, k3)
        for i in range(n):
            yt[i] = yf[i] + h * k3[i]
        tape[st, 3] = yt
        ode_fun(x, yt, k4)
        for i in range(n):
            yf[i] += h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0
    dx, dyf, dyt = np.zeros(n), np.zeros(n), np.zeros(n)
    dk1, dk2, dk3, dk4 = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    dyf[n - 1] = 1.0
    for st in range(s - 1, -1, -1):
        for i in range(n):
            c = h * dyf[i] / 6.0
            dk1[i] += c
            dk2[i] += 2.0 * c
            dk3[i] += 2.0 * c
            dk4[i] += c
        _stage_adjoint(x, dx, tape[st, 3], dk4, dyt)
        _update_adjoint(dyt, dyf, dk3, h)
        _stage_adjoint(x, dx, tape[st, 2], dk3, dyt)
        _update_adjoint(dyt, dyf, dk2, h / 2.0)
        _stage_adjoint(x, dx, tape[st, 1], dk2, dyt)
        _update_adjoint(dyt, dyf, dk1, h / 2.0)
        _stage_adjoint(x, dx, tape[st, 0], dk1, dyf)
    return dx


def main():
    keep_heap()
    grad = gradjit.grad(ode_last)
    lines = [f"# ode gradient: gradjit vs a hand-written adjoint ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, 1 thread)", "",
             "| n | s | primal ms | gradjit ms | gradjit/primal | hand ms | hand/primal |",
             "|---|---|---|---|---|---|---|"]
    for n, s in SIZES:
        x = make_inputs(n, s)
        g, hnd = grad(x, s), hand_gradient(x, s)
        err = float(np.abs(g - hnd).max() / max(np.abs(hnd).max(), 1e-300))
        if err > 1e-12:
            raise SystemExit(f"n={n} s={s}: gradjit and the hand adjoint differ by {err:.1e}")
        fns = (lambda: ode_primal(x, s), lambda: grad(x, s), lambda: hand_gradient(x, s))
        for f in fns:
            f()
        t0 = time.perf_counter()
        fns[1]()
        reps = int(min(200, max(7, 0.4 / max(time.perf_counter() - t0, 1e-7))))
        ts = [[], [], []]
        for _ in range(reps):
            for k, f in enumerate(fns):
                t0 = time.perf_counter()
                f()
                ts[k].append(time.perf_counter() - t0)
        p, gj, hd = (float(np.median(t)) * 1e3 for t in ts)
        lines.append(f"| {n} | {s} | {p:.3f} | {gj:.3f} | {gj / p:.2f} | {hd:.3f} | {hd / p:.2f} |")
        print(lines[-1], flush=True)
    write_table("ode-adjoint", lines)


if __name__ == "__main__":
    main()
