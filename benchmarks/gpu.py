"""GPU benchmark: reverse-mode kernels made by gradjit next to their primal kernels,
and next to the same gradient in JAX and PyTorch on the same GPU.

    python benchmarks/gpu.py [--n N] [--repeat R] [--no-frameworks] [--out DIR]

Needs a CUDA device (exits with a message otherwise).  For every kernel
(``kernels/cuda_kernels.py``: an elementwise map, a 3-point stencil and an atomic
reduction, float64) it reports

* **GPU ms**: the kernel's own time on the device, from CUDA events recorded
  around one launch while the device is kept busy by a spin kernel launched just
  before (so the host's launch work overlaps and is not counted);
* **wall ms**: the median time of ``launch(); synchronize()`` as a Python user sees
  it (host launch work included);
* **tangent GPU ms**: the forward-mode kernel (one tangent), checked against the
  reverse-mode kernel by ``<seed, J t> = <J^T seed, t>`` first;
* **launch µs**: host time to enqueue one launch (median over back-to-back
  launches of a 1-thread grid), for Numba's dispatcher and gradjit's launcher;
* the gradient of the same scalar objective ``<seed, out>`` in JAX (``jax.vjp``
  under ``jax.jit``) and PyTorch (``backward``), wall ms, each checked against
  gradjit's gradient before it is timed.

Medians of ``--repeat`` runs after a warm-up.  The reverse-mode kernel runs each
thread's augmented primal and then its reverse sweep, so its time includes one
primal evaluation (and writes the primal outputs).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from numba import cuda  # noqa: E402

import gradjit  # noqa: E402
from gradjit import Const, Dual, Duplicated  # noqa: E402
from kernels.cuda_kernels import axpy_sin as elementwise, dot as reduction, stencil  # noqa: E402


@cuda.jit
def _spin(ns):
    """Keeps the device busy for about ``ns`` nanoseconds."""
    t = 0
    while t < ns:
        cuda.nanosleep(1000)
        t += 1000


def gpu_ms(launch, repeat):
    """Median device time of ``launch()`` (CUDA events; host work hidden behind a
    spin kernel)."""
    launch()
    cuda.synchronize()
    ts = []
    for _ in range(repeat):
        a, b = cuda.event(), cuda.event()
        _spin[1, 1](2_000_000)
        a.record()
        launch()
        b.record()
        b.synchronize()
        ts.append(cuda.event_elapsed_time(a, b))
    return float(np.median(ts))


def wall_ms(launch, sync, repeat):
    launch()
    sync()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        launch()
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def launch_us(launch, repeat=2000):
    """Host microseconds to enqueue one launch (tiny grids, no synchronization)."""
    launch()
    cuda.synchronize()
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeat // 5):
            launch()
        ts.append((time.perf_counter() - t) / (repeat // 5))
        cuda.synchronize()
    return float(np.median(ts)) * 1e6


def _frameworks(name, x, y, seed, a=1.5):
    """(JAX, PyTorch) gradient callables of <seed, out> w.r.t. x; each returns the
    gradient as a NumPy array after synchronizing (None where unavailable)."""
    out = {}
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        dev = jax.devices("gpu")[0]
        xj, yj, sj = (jax.device_put(v, dev) for v in (x, y, seed))
        fj = {"elementwise": lambda x_, y_: a * jnp.sin(x_) + y_ * x_,
             "stencil": lambda x_, y_: jnp.zeros_like(x_).at[1:-1].set(
                 0.25 * x_[:-2] + 0.5 * x_[1:-1] + 0.25 * x_[2:] + x_[1:-1] ** 3),
             "reduction": lambda x_, y_: jnp.sum(x_ * y_)[None]}[name]
        g = jax.jit(lambda x_, y_, s_: jax.vjp(lambda z: fj(z, y_), x_)[1](s_)[0])
        s_use = sj if name != "reduction" else sj[:1]
        out["JAX"] = (lambda: g(xj, yj, s_use).block_until_ready(),
                      lambda: np.asarray(g(xj, yj, s_use)))
    except Exception as e:           # not installed, or no GPU backend
        print(f"JAX skipped: {type(e).__name__}: {e}"[:200])
    try:
        import torch
        dev = torch.device("cuda")
        xt = torch.tensor(x, device=dev, requires_grad=True)
        yt, st = torch.tensor(y, device=dev), torch.tensor(seed, device=dev)

        def ft(x_):
            if name == "elementwise":
                return a * torch.sin(x_) + yt * x_
            if name == "stencil":
                o = torch.zeros_like(x_)
                o[1:-1] = 0.25 * x_[:-2] + 0.5 * x_[1:-1] + 0.25 * x_[2:] + x_[1:-1] ** 3
                return o
            return (x_ * yt).sum()[None]

        def grad():
            xt.grad = None
            o = ft(xt)
            o.backward(st if name != "reduction" else st[:1])
            torch.cuda.synchronize()
            return xt.grad

        out["PyTorch"] = (grad, lambda: grad().cpu().numpy())
    except Exception as e:
        print(f"PyTorch skipped: {type(e).__name__}: {e}"[:200])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1 << 24)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--no-frameworks", action="store_true", help="skip JAX and PyTorch")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"))
    opts = p.parse_args(argv)
    if not gradjit.backend.cuda.have_device():
        print("no CUDA device: nothing to measure (the CPU checks run in the test suite)")
        return None
    n, threads, R = opts.n, 256, opts.repeat
    blocks = (n + threads - 1) // threads
    rng = np.random.default_rng(0)
    xh, yh, sh = rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, n), rng.normal(size=n)
    x, y = cuda.to_device(xh), cuda.to_device(yh)
    out, dx = cuda.device_array(n), cuda.device_array(n)
    dout = cuda.device_array(n)
    sync = cuda.synchronize
    small = (cuda.to_device(xh[:1]), cuda.to_device(yh[:1]), cuda.device_array(1),
             cuda.device_array(1), cuda.device_array(1))

    def reset(seed):
        cuda.to_device(np.zeros(n), to=dx)
        cuda.to_device(seed, to=dout)

    sx, sy, so, sdx, sdo = small
    # name: (kernel, activities, primal launch, adjoint launch, tiny primal, tiny adjoint)
    specs = {
        "elementwise": (elementwise, (Const, Duplicated, Const, Duplicated),
                        lambda: elementwise[blocks, threads](1.5, x, y, out),
                        lambda k: k[blocks, threads](1.5, x, dx, y, out, dout),
                        lambda: elementwise[1, 1](1.5, sx, sy, so),
                        lambda k: k[1, 1](1.5, sx, sdx, sy, so, sdo)),
        "stencil": (stencil, (Duplicated, Duplicated),
                    lambda: stencil[blocks, threads](x, out),
                    lambda k: k[blocks, threads](x, dx, out, dout),
                    lambda: stencil[1, 1](sx, so),
                    lambda k: k[1, 1](sx, sdx, so, sdo)),
        "reduction": (reduction, (Duplicated, Const, Duplicated),
                      lambda: reduction[blocks, threads](x, y, out),
                      lambda k: k[blocks, threads](x, dx, y, out, dout),
                      lambda: reduction[1, 1](sx, sy, so),
                      lambda k: k[1, 1](sx, sdx, sy, so, sdo)),
    }
    rows = []
    for name, (kernel, acts, primal, adjoint_of, tiny_primal, tiny_adjoint) in specs.items():
        k = gradjit.autodiff(kernel, "reverse", *acts)
        seed = sh if name != "reduction" else np.concatenate([sh[:1], np.zeros(n - 1)])
        reset(seed)
        adjoint = lambda: adjoint_of(k)  # noqa: E731
        adjoint()
        sync()
        grad = dx.copy_to_host()
        row = {"kernel": name,
               "primal_gpu": gpu_ms(primal, R), "adjoint_gpu": gpu_ms(adjoint, R),
               "primal_wall": wall_ms(primal, sync, R), "adjoint_wall": wall_ms(adjoint, sync, R),
               "primal_launch": launch_us(tiny_primal),
               "adjoint_launch": launch_us(lambda: tiny_adjoint(k))}
        # forward mode (the same argument layout, tangents in place of shadows),
        # checked by <seed, J t> = <J^T seed, t> before it is timed
        kf = gradjit.autodiff(kernel, "forward", *[Dual if a is Duplicated else a for a in acts])
        t = rng.normal(size=n)
        cuda.to_device(t, to=dx)
        cuda.to_device(np.zeros(n), to=dout)
        adjoint_of(kf)
        sync()
        jt = dout.copy_to_host()
        lhs, rhs = float(seed @ jt), float(grad @ t)
        if abs(lhs - rhs) > 1e-6 * max(1.0, abs(rhs)):       # sums of 2^24 terms
            raise SystemExit(f"{name}: forward and reverse kernels disagree ({lhs} vs {rhs})")
        row["tangent_gpu"] = gpu_ms(lambda: adjoint_of(kf), R)
        if not opts.no_frameworks:
            for tool, (run, value) in _frameworks(name, xh, yh, seed).items():
                g = value()
                err = float(np.max(np.abs(g - grad)) / max(1e-300, np.max(np.abs(grad))))
                if err > 1e-10:
                    print(f"{tool} {name}: gradient differs from gradjit's (rel {err:.2e}); "
                          "not timed")
                    continue
                row[tool] = wall_ms(run, lambda: None, R)
        rows.append(row)
        print(row, flush=True)
    loop = loop_row(R, opts.no_frameworks)
    from examples.gpu_fit import fit
    steps = 300
    fit(steps=20, samples=1 << 16, log=None)
    t = time.perf_counter()
    fit(steps=steps, samples=1 << 16, log=None)
    sps = steps / (time.perf_counter() - t)
    return report(rows, n, threads, R, sps, loop, opts.out)


LOOP_STEPS = 200


@cuda.jit
def loop_kernel(x, out):
    """``out[i]`` = ``LOOP_STEPS`` steps of ``s = 1.01 sin(s)`` from ``x[i]``."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        s = x[i]
        for _ in range(LOOP_STEPS):
            s = math.sin(s) * 1.01
        out[i] = s


def loop_row(repeat, no_frameworks, n=1 << 18):
    """Primal and adjoint times of :func:`loop_kernel` (and JAX/PyTorch gradients of
    ``<seed, out>``, checked against gradjit's first)."""
    rng = np.random.default_rng(1)
    xh, sh = rng.uniform(0.1, 1.0, n), rng.normal(size=n)
    x, out, dx, dout = (cuda.to_device(xh), cuda.device_array(n), cuda.device_array(n),
                        cuda.to_device(sh))
    k = gradjit.autodiff(loop_kernel, "reverse", Duplicated, Duplicated)
    b, t = n // 128, 128
    cuda.to_device(np.zeros(n), to=dx)
    k[b, t](x, dx, out, dout)
    grad = dx.copy_to_host()
    row = {"n": n, "primal": gpu_ms(lambda: loop_kernel[b, t](x, out), repeat),
           "adjoint": gpu_ms(lambda: k[b, t](x, dx, out, dout), repeat),
           "adjoint_wall": wall_ms(lambda: k[b, t](x, dx, out, dout), cuda.synchronize, repeat)}
    if no_frameworks:
        return row
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        dev = jax.devices("gpu")[0]
        xj, sj = jax.device_put(xh, dev), jax.device_put(sh, dev)

        def f(z):
            return jax.lax.fori_loop(0, LOOP_STEPS, lambda _, s: jnp.sin(s) * 1.01, z)

        g = jax.jit(lambda z, s_: jax.vjp(f, z)[1](s_)[0])
        if np.abs(np.asarray(g(xj, sj)) - grad).max() <= 1e-10 * np.abs(grad).max():
            row["JAX"] = wall_ms(lambda: g(xj, sj).block_until_ready(), lambda: None, repeat)
    except Exception as e:
        print(f"JAX skipped (loop): {type(e).__name__}: {e}"[:200])
    try:
        import torch
        xt = torch.tensor(xh, device="cuda", requires_grad=True)
        st = torch.tensor(sh, device="cuda")

        def grad_t():
            xt.grad = None
            s = xt
            for _ in range(LOOP_STEPS):
                s = torch.sin(s) * 1.01
            s.backward(st)
            torch.cuda.synchronize()
            return xt.grad

        if np.abs(grad_t().cpu().numpy() - grad).max() <= 1e-10 * np.abs(grad).max():
            row["PyTorch"] = wall_ms(grad_t, lambda: None, repeat)
    except Exception as e:
        print(f"PyTorch skipped (loop): {type(e).__name__}: {e}"[:200])
    return row


def report(rows, n, threads, repeat, steps_per_s, loop, out_dir):
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    tools = [t for t in ("JAX", "PyTorch") if any(t in r for r in rows)]
    lines = [f"# GPU benchmark, {datetime.date.today()}, {name}", "",
             f"n = {n} float64 elements, {threads} threads per block; medians of {repeat} runs "
             "after a warm-up.  GPU ms: CUDA events around one launch with the host's launch "
             "work hidden; wall ms: launch + synchronize from Python; launch µs: host time to "
             "enqueue a 1-thread launch; tangent: the forward-mode kernel (one tangent).  JAX (jit of vjp) and PyTorch (backward) compute the "
             "same gradient on the same GPU, wall ms, checked against gradjit first.", "",
             "| kernel | primal GPU ms | adjoint GPU ms | adjoint/primal | tangent GPU ms | "
             "tangent/primal | primal wall ms | "
             "adjoint wall ms | Numba launch µs | gradjit launch µs |"
             + "".join(f" {t} wall ms |" for t in tools),
             "|---" * (10 + len(tools)) + "|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['primal_gpu']:.3f} | {r['adjoint_gpu']:.3f} | "
                     f"{r['adjoint_gpu'] / r['primal_gpu']:.2f} | {r['tangent_gpu']:.3f} | "
                     f"{r['tangent_gpu'] / r['primal_gpu']:.2f} | {r['primal_wall']:.3f} | "
                     f"{r['adjoint_wall']:.3f} | {r['primal_launch']:.1f} | "
                     f"{r['adjoint_launch']:.1f} |"
                     + "".join(f" {r[t]:.3f} |" if t in r else " – |" for t in tools))
    lines += ["", f"Training loop (examples/gpu_fit.py, 65536 samples, CuPy arrays, one adjoint "
              f"launch and an Adam step per iteration): {steps_per_s:.1f} steps/s"]
    lines += ["", f"Loop kernel (`s = 1.01 sin(s)`, {LOOP_STEPS} dependent steps per thread, "
              f"{loop['n']} threads; the reverse sweep keeps a {8 * LOOP_STEPS}-byte tape per "
              "thread in its stack buffer; the launch synchronizes to check the heap fallback): "
              f"primal {loop['primal']:.3f} ms, adjoint {loop['adjoint']:.3f} ms "
              f"({loop['adjoint'] / loop['primal']:.1f}×), adjoint wall {loop['adjoint_wall']:.3f} ms"
              + "".join(f", {t} {loop[t]:.3f} ms" for t in ("JAX", "PyTorch") if t in loop)]
    text = "\n".join(lines)
    print(text)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{datetime.date.today()}-gpu.md"), "w") as f:
        f.write(text + "\n")
    return rows


if __name__ == "__main__":
    main()
