"""GMM gradient benchmark: gradjit vs the primal, vs central finite differences,
and AD compile time vs Numba's compile time of the primal.

    python benchmarks/gmm.py              # GradBench sizes d in {2,10,20}, k in {5,10,25}, n=1000
    python benchmarks/gmm.py --quick      # d=10, k=25 only

Single-threaded (``benchmarks/threads.py``: Numba, OpenBLAS and OpenMP get one
thread).  Times are medians of repeated runs after warm-up.  Finite differences are timed as 2 * (number of inputs)
objective evaluations (the cost of a full central-difference gradient); their
error is measured on a random subset of coordinates (all of them for small sizes).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.threads import single_threaded  # noqa: E402

single_threaded()

import numpy as np  # noqa: E402

import numba  # noqa: E402

import gradjit  # noqa: E402
from benchmarks.heap import keep_heap  # noqa: E402
from kernels.gmm import gmm_objective, make_inputs  # noqa: E402

ARGNUMS = (0, 1, 2, 3)   # alpha, mu, q, l


def median_time(f, repeat=15, min_time=0.2):
    f()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
        if len(times) > 1000:
            break
    return float(np.median(times))


def fd_gradient(f, args, argnum, index, eps=1e-6):
    """Central difference of ``f`` in one coordinate ``index`` of ``args[argnum]``."""
    a = list(args)
    x = a[argnum].copy()
    a[argnum] = x
    old = x[index]
    x[index] = old + eps
    fp = f(*a)
    x[index] = old - eps
    fm = f(*a)
    return (fp - fm) / (2 * eps)


def max_rel_error(grads, args, max_coords=None, seed=0):
    rng = np.random.default_rng(seed)
    coords = [(k, idx) for k in ARGNUMS for idx in np.ndindex(args[k].shape)]
    if max_coords and len(coords) > max_coords:
        pick = rng.choice(len(coords), max_coords, replace=False)
        coords = [coords[i] for i in pick]
    scale = max(np.max(np.abs(g)) for g in grads)
    err = 0.0
    for k, idx in coords:
        fd = fd_gradient(gmm_objective, args, k, idx)
        got = grads[ARGNUMS.index(k)][idx]
        err = max(err, abs(got - fd) / max(abs(fd), 1e-3 * scale))
    return err, len(coords)


def numba_compile_time(args):
    """Seconds Numba takes to compile the primal (fresh dispatcher, warm process)."""
    sig = tuple(numba.typeof(a) for a in args)
    disp = numba.njit(gmm_objective.py_func)
    t = time.perf_counter()
    disp.compile(sig)
    return time.perf_counter() - t


_warm = []


def _warm_up():
    """Initialize gradjit's and Numba's one-time machinery once per process, so
    both compile times below are measured in a warm process."""
    if not _warm:
        f = numba.njit(lambda x: x * x)
        gradjit.grad(f)(1.0)
        _warm.append(True)


def measure(d, k, n=1000, max_coords=300):
    _warm_up()
    args = make_inputs(d, k, n)
    gmm_objective(*args)                              # compile the primal first
    t_numba = numba_compile_time(args)
    g = gradjit.grad(gmm_objective, argnums=ARGNUMS)
    t = time.perf_counter()
    grads = g(*args)
    t_first = time.perf_counter() - t
    t_primal = median_time(lambda: gmm_objective(*args))
    t_grad = median_time(lambda: g(*args))
    t_compile = max(t_first - t_grad, 0.0)
    nin = sum(args[a].size for a in ARGNUMS)
    t_fd = 2 * nin * t_primal
    err, ncoords = max_rel_error(grads, args, max_coords)
    value = gmm_objective(*args)
    return dict(d=d, k=k, n=n, inputs=nin, value=value,
                grad_norm=float(np.sqrt(sum(np.sum(x * x) for x in grads))),
                primal=t_primal, grad=t_grad, ratio=t_grad / t_primal, fd=t_fd,
                fd_speedup=t_fd / t_grad, fd_err=err, fd_coords=ncoords,
                ad_compile=t_compile, numba_compile=t_numba,
                compile_ratio=t_compile / t_numba)


HEADER = ("| d | k | n | inputs | primal ms | grad ms | grad/primal | FD ms | FD/grad | "
          "max rel err vs FD | AD compile s | numba compile s | compile ratio |")


def row(r):
    return (f"| {r['d']} | {r['k']} | {r['n']} | {r['inputs']} | {r['primal'] * 1e3:.3f} | "
            f"{r['grad'] * 1e3:.3f} | {r['ratio']:.2f} | {r['fd'] * 1e3:.1f} | "
            f"{r['fd_speedup']:.0f} | {r['fd_err']:.1e} ({r['fd_coords']}) | "
            f"{r['ad_compile']:.2f} | {r['numba_compile']:.2f} | {r['compile_ratio']:.2f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only d=10, k=25")
    p.add_argument("-n", type=int, default=1000)
    opts = p.parse_args(argv)
    keep_heap()
    sizes = [(10, 25)] if opts.quick else [(d, k) for d in (2, 10, 20) for k in (5, 10, 25)]
    print(HEADER)
    print("|" + "---|" * 13)
    rows = []
    for d, k in sizes:
        r = measure(d, k, opts.n)
        rows.append(r)
        print(row(r), flush=True)
    return rows


if __name__ == "__main__":
    main()
