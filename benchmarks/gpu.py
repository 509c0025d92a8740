"""GPU benchmark: adjoint-kernel time / primal-kernel time for elementwise, stencil
and reduction kernels, and the training loop's steps per second.

    python benchmarks/gpu.py [--n N]

Needs a CUDA device (exits with a message otherwise).  Times are medians over
repeated launches after a warm-up, with a device synchronization around each.
The reverse-mode kernel runs each thread's augmented primal and reverse sweep, so
its time includes one primal evaluation.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from numba import cuda  # noqa: E402

import gradjit  # noqa: E402
from gradjit import Const, Duplicated  # noqa: E402
from kernels.cuda_kernels import axpy_sin as elementwise, dot as reduction, stencil  # noqa: E402


def timed(launch, repeat=50):
    launch()
    cuda.synchronize()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        launch()
        cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=1 << 24)
    opts = p.parse_args(argv)
    if not gradjit.backend.cuda.have_device():
        print("no CUDA device: nothing to measure (the CPU checks run in the test suite)")
        return None
    n, threads = opts.n, 256
    blocks = (n + threads - 1) // threads
    rng = np.random.default_rng(0)
    d = lambda *s: cuda.to_device(rng.uniform(0.1, 1.0, s))  # noqa: E731
    z = lambda *s: cuda.to_device(np.zeros(s))  # noqa: E731
    x, y, out, dx, dout = d(n), d(n), z(n), z(n), d(n)
    rows = []
    k = gradjit.autodiff(elementwise, "reverse", Const, Duplicated, Const, Duplicated)
    tp = timed(lambda: elementwise[blocks, threads](1.5, x, y, out))
    ta = timed(lambda: k[blocks, threads](1.5, x, dx, y, out, dout))
    rows.append(("elementwise", tp, ta))
    k = gradjit.autodiff(stencil, "reverse", Duplicated, Duplicated)
    tp = timed(lambda: stencil[blocks, threads](x, out))
    ta = timed(lambda: k[blocks, threads](x, dx, out, dout))
    rows.append(("stencil", tp, ta))
    r, dr = z(1), d(1)
    k = gradjit.autodiff(reduction, "reverse", Duplicated, Const, Duplicated)
    tp = timed(lambda: reduction[blocks, threads](x, y, r))
    ta = timed(lambda: k[blocks, threads](x, dx, y, r, dr))
    rows.append(("reduction", tp, ta))
    from examples.gpu_fit import fit
    steps = 200
    t = time.perf_counter()
    fit(steps=steps, samples=1 << 16, log=None)
    sps = steps / (time.perf_counter() - t)
    dev = cuda.get_current_device()
    lines = [f"# GPU benchmark, {datetime.date.today()}, {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}",
             "", f"n = {n} elements, {threads} threads per block", "",
             "| kernel | primal ms | adjoint ms | adjoint/primal |", "|---|---|---|---|"]
    lines += [f"| {name} | {tp * 1e3:.3f} | {ta * 1e3:.3f} | {ta / tp:.2f} |" for name, tp, ta in rows]
    lines += ["", f"training loop (examples/gpu_fit.py, 65536 samples): {sps:.1f} steps/s"]
    text = "\n".join(lines)
    print(text)
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{datetime.date.today()}-gpu.md"), "w") as f:
        f.write(text + "\n")
    return rows


if __name__ == "__main__":
    main()
