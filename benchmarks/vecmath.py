"""Vector math benchmark: derivatives whose loops call exp/log/tanh/..., with and
without glibc's vector variants (:mod:`gradjit.backend.vecmath`).

    python benchmarks/vecmath.py
    python benchmarks/vecmath.py --programs lse mixed

Each program runs in a fresh process twice: with vector math (the default) and
with ``GRADJIT_VECTOR_MATH=0``; the table gives medians of repeated runs after a
warm-up (primal, gradient) and the largest relative difference between the two
gradients.  For ``lse`` the JAX gradient (CPU, float64, ``jit``) is timed in the
same process, interleaved with gradjit's, when JAX is installed.  Single-threaded
(:func:`benchmarks.threads.single_threaded`).  Writes
``benchmarks/results/<date>-vecmath-<machine>.md`` and prints the table.

Programs: ``lse`` (GradBench LSE, n = 1,280,000, its largest default size),
``gmm`` (GradBench GMM, d=20, k=25, n=1000), ``lstm`` (GradBench LSTM, l=2,
c=4096), ``mixed`` (a sum of ``tanh(x) * log1p(y*y) + sin(x) * y**2.5`` over
n = 1,000,000).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.child import PRELUDE, off_and_on, run_child, write_table  # noqa: E402

PROGRAMS = {"lse": ("lse", dict(n=1_280_000)), "gmm": ("gmm", dict(d=20, k=25, n=1000)),
            "lstm": ("lstm", dict(l=2, c=4096)), "mixed": (None, dict(n=1_000_000))}

_CHILD = PRELUDE + r'''

@njit
def mixed(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.tanh(x[i]) * math.log1p(y[i] * y[i]) + math.sin(x[i]) * y[i] ** 2.5
    return s

module, size = MODULE, SIZE
if module is None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=size["n"]), rng.uniform(0.1, 2.0, size["n"])
    g = gradjit.grad(mixed, argnums=(0, 1))
    primal = lambda: mixed(x, y)
    grad = lambda: np.concatenate(g(x, y))
else:
    m = importlib.import_module("kernels." + module)
    inp = m.prepare(m.DERIVATIVE, m.generate(**size))
    primal = lambda: m.evaluate(m.PRIMAL, inp)
    grad = lambda: np.ravel(np.asarray(m.flat_derivative(m.evaluate(m.DERIVATIVE, inp))))
primal()
res = grad()
np.save(OUT, res)
out = dict(primal=median_time(primal), grad=median_time(grad))
if module == "lse" and JAX:
    try:
        from benchmarks.tools import jax_lse
    except ImportError:
        jax_lse = None
    if jax_lse is not None:
        try:
            _, jd = jax_lse.make(inp)
        except ImportError:
            jd = None
        if jd is not None:
            jd()
            tj, tg = [], []
            for _ in range(40):
                t = time.perf_counter(); jd(); tj.append(time.perf_counter() - t)
                t = time.perf_counter(); grad(); tg.append(time.perf_counter() - t)
            out.update(jax=float(np.median(tj)), grad_interleaved=float(np.median(tg)))
print(json.dumps(out))
'''


def _run(name, on, out):
    module, size = PROGRAMS[name]
    src = (_CHILD.replace("ROOT", repr(ROOT)).replace("MODULE, SIZE", f"{module!r}, {size!r}")
           .replace("OUT", repr(out)).replace("JAX:", f"{bool(on)}:"))
    return run_child(src, dict(GRADJIT_VECTOR_MATH="1" if on else "0"),
                     f"{name} (GRADJIT_VECTOR_MATH={int(on)})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", nargs="*", default=list(PROGRAMS), choices=list(PROGRAMS))
    a = ap.parse_args(argv)
    import numpy as np
    from benchmarks.run import cpu_model
    rows = []
    for name in a.programs:
        off, on, g0, g1 = off_and_on(lambda k, out: _run(name, k, out), f"vecmath-{name}")
        diff = float(np.max(np.abs(g0 - g1) / np.maximum(np.abs(g0), 1e-300)))
        rows.append((name, PROGRAMS[name][1], on, off, diff))
    machine = f"{platform.machine()}-{os.cpu_count()}cpu"
    lines = [f"# Vector math in derivatives ({cpu_model()}, {machine}, 1 thread)", "",
             "| program | size | primal ms | gradient ms, scalar math | gradient ms, vector math "
             "| speedup | max rel diff | JAX gradient ms (interleaved: gradjit ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, size, on, off, d in rows:
        jax = (f"{on['jax'] * 1e3:.3f} ({on['grad_interleaved'] * 1e3:.3f})"
               if "jax" in on else "-")
        sz = ",".join(f"{k}={v}" for k, v in size.items())
        lines.append(f"| {name} | {sz} | {on['primal'] * 1e3:.3f} | {off['grad'] * 1e3:.3f} "
                     f"| {on['grad'] * 1e3:.3f} | {off['grad'] / on['grad']:.2f} | {d:.1e} | {jax} |")
    write_table("vecmath", lines)


if __name__ == "__main__":
    main()
